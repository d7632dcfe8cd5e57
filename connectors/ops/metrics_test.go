package ops_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/topology"
)

// The processor hands *RuntimeMetrics to the runner as its Metrics hooks.
var _ topology.Metrics = (*ops.RuntimeMetrics)(nil)

func TestRuntimeMetricsExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := ops.NewRuntimeMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Consumed("retail.orders.v1", 3)
	m.Consumed("retail.orders.v1", 2)
	m.Consumed("retail.shipments.v1", 1)
	m.Produced("retailflow.loyalty-commands.v1", 4)
	m.DeadLettered("retail.orders.v1", "decode", 2)
	m.Committed(5, 20*time.Millisecond)
	m.Committed(1, 30*time.Millisecond)
	m.Aborted("rebalance")
	m.Latency(150 * time.Millisecond)
	m.RestoreProgress(3, 0, 1000, false)
	m.RestoreProgress(3, 400, 1000, false)
	m.StateSize(3, 42, 4096)

	body := scrape(t, reg)
	for _, line := range []string{
		"# TYPE retailflow_records_consumed_total counter",
		`retailflow_records_consumed_total{topic="retail.orders.v1"} 5`,
		`retailflow_records_consumed_total{topic="retail.shipments.v1"} 1`,
		`retailflow_records_produced_total{topic="retailflow.loyalty-commands.v1"} 4`,
		`retailflow_records_dead_lettered_total{class="decode",topic="retail.orders.v1"} 2`,
		`retailflow_transactions_committed_total 2`,
		`retailflow_transactions_aborted_total{reason="rebalance"} 1`,
		`retailflow_transaction_duration_seconds_count 2`,
		`retailflow_transaction_records_sum 6`,
		`retailflow_processing_latency_seconds_count 1`,
		`retailflow_state_restore_remaining_records{partition="3"} 600`,
		`retailflow_state_restore_read_records{partition="3"} 400`,
		`retailflow_partition_restored{partition="3"} 0`,
		`retailflow_state_entries{partition="3"} 42`,
		`retailflow_state_bytes{partition="3"} 4096`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	m.RestoreProgress(3, 1000, 1000, true)
	m.RestoreProgress(4, 0, 0, true) // an empty changelog: one report, done at once
	body = scrape(t, reg)
	for _, line := range []string{
		`retailflow_partition_restored{partition="3"} 1`,
		`retailflow_partition_restored{partition="4"} 1`,
		`retailflow_state_restore_remaining_records{partition="3"} 0`,
		`retailflow_state_restore_duration_seconds_count 2`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics after restore lacks %q", line)
		}
	}

	m.StateSize(3, -1, 0)
	body = scrape(t, reg)
	for _, gone := range []string{`{partition="3"}`} {
		if strings.Contains(body, gone) {
			t.Errorf("/metrics still has series with %s after the partition was revoked:\n%s", gone, grep(body, "retailflow_"))
		}
	}
	if !strings.Contains(body, `retailflow_partition_restored{partition="4"} 1`) {
		t.Error("revoking partition 3 dropped partition 4's series")
	}

	if _, err := ops.NewRuntimeMetrics(reg); err == nil {
		t.Error("registering the runtime metrics twice in one registry succeeded, want an error")
	}
}

// scrape returns what /metrics serves for reg.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(ops.NewServer("unused:0", reg, nil).Handler())
	defer srv.Close()
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	return body
}

func TestNilMetricsAreNoOps(t *testing.T) {
	var r *ops.RuntimeMetrics
	r.Consumed("t", 1)
	r.Produced("t", 1)
	r.DeadLettered("t", "decode", 1)
	r.Committed(1, time.Second)
	r.Aborted("rebalance")
	r.Latency(time.Second)
	r.StateSize(0, 1, 1)
	r.RestoreProgress(0, 1, 2, false)
	r.RestoreProgress(0, 2, 2, true)
	r.StateSize(0, -1, 0)
	var s *ops.SinkMetrics
	s.Consumed("t", 1)
	s.BatchInserted("orders", 10, time.Second)
	s.ClickHouseError("orders", "insert")
	s.SetPaused(true)
}

// The sink's metrics are served by /metrics with their labels.
func TestSinkMetricsServed(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := ops.NewSinkMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Consumed("retailflow.order-ledger.changelog", 7)
	m.BatchInserted("order_ledger", 5000, 40*time.Millisecond)
	m.BatchInserted("order_ledger", 3000, 20*time.Millisecond)
	m.ClickHouseError("order_ledger", "insert")
	m.SetPaused(true)

	body := scrape(t, reg)
	for _, line := range []string{
		`retailflow_sink_records_consumed_total{topic="retailflow.order-ledger.changelog"} 7`,
		`retailflow_sink_rows_inserted_total{table="order_ledger"} 8000`,
		`retailflow_sink_batch_rows_count{table="order_ledger"} 2`,
		`retailflow_sink_batch_rows_sum{table="order_ledger"} 8000`,
		`retailflow_sink_insert_duration_seconds_count{table="order_ledger"} 2`,
		`retailflow_clickhouse_errors_total{op="insert",table="order_ledger"} 1`,
		`retailflow_sink_paused 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// kprom's client metrics land in the same registry under retailflow_kafka_*, one label set per
// client, and two clients can share a registry.
func TestKafkaClientMetrics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "ops-kprom"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	for _, name := range []string{"ledger", "restore"} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.WithHooks(ops.KafkaClientMetrics(reg, name)))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ops-kprom", Value: []byte(name)}).FirstErr(); err != nil {
			t.Fatalf("produce via %s: %v", name, err)
		}
	}
	// franz-go runs the batch-written hook after the produce promise, so the last client's
	// counter can appear a moment after ProduceSync returns.
	wants := []string{`retailflow_kafka_produce_records_total{client="ledger"`, `retailflow_kafka_produce_records_total{client="restore"`}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, missing := scrape(t, reg), ""
		for _, want := range wants {
			if !strings.Contains(body, want) {
				missing = want
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s…", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
