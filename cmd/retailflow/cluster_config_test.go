package main

import (
	"strings"
	"testing"
)

// TestClusterSettings: topics.min_insync_replicas and topics.replication_factor reach every
// topic retailflow creates, and clickhouse.cluster reaches the ClickHouse connection (what the
// cluster's env file sets: infra/cluster.sh env).
func TestClusterSettings(t *testing.T) {
	t.Setenv("RETAILFLOW_TOPICS_REPLICATION_FACTOR", "3")
	t.Setenv("RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS", "2")
	t.Setenv("RETAILFLOW_CLICKHOUSE_CLUSTER", "retailflow")
	c, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.TopicSpecs() {
		if s.ReplicationFactor != 3 || s.MinInsyncReplicas != 2 {
			t.Errorf("topic %s: RF %d, min ISR %d; want 3 and 2", s.Name, s.ReplicationFactor, s.MinInsyncReplicas)
		}
	}
	if got := c.ClickHouseConn().Cluster; got != "retailflow" {
		t.Errorf("ClickHouseConn().Cluster = %q", got)
	}

	for env, want := range map[string]string{
		"RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS": "topics.min_insync_replicas",
		"RETAILFLOW_CLICKHOUSE_CLUSTER":         "clickhouse.cluster",
	} {
		t.Run(want, func(t *testing.T) {
			t.Setenv(env, map[string]string{"RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS": "4", "RETAILFLOW_CLICKHOUSE_CLUSTER": "no-dashes"}[env])
			if _, err := LoadConfig("", nil); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error naming %s", err, want)
			}
		})
	}
}
