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
)

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
	m.DeadLettered("retail.orders.v1", "decode")
	m.TxnCommitted(20 * time.Millisecond)
	m.TxnCommitted(30 * time.Millisecond)
	m.TxnAborted("rebalance", 5*time.Millisecond)
	m.ObserveLatency(150 * time.Millisecond)
	m.RestoreStarted(3, 1000)
	m.RestoreProgress(3, 400, 600)
	m.SetStateSize(3, 42, 4096)

	body := scrape(t, reg)
	for _, line := range []string{
		"# TYPE retailflow_records_consumed_total counter",
		`retailflow_records_consumed_total{topic="retail.orders.v1"} 5`,
		`retailflow_records_consumed_total{topic="retail.shipments.v1"} 1`,
		`retailflow_records_produced_total{topic="retailflow.loyalty-commands.v1"} 4`,
		`retailflow_records_dead_lettered_total{reason="decode",topic="retail.orders.v1"} 1`,
		`retailflow_transactions_committed_total 2`,
		`retailflow_transactions_aborted_total{reason="rebalance"} 1`,
		`retailflow_transaction_duration_seconds_count{outcome="committed"} 2`,
		`retailflow_transaction_duration_seconds_count{outcome="aborted"} 1`,
		`retailflow_processing_latency_seconds_count 1`,
		`retailflow_state_restore_remaining_records{partition="3"} 600`,
		`retailflow_state_restored_records_total{partition="3"} 400`,
		`retailflow_partition_assigned{partition="3"} 0`,
		`retailflow_state_entries{partition="3"} 42`,
		`retailflow_state_bytes{partition="3"} 4096`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	m.RestoreFinished(3, 2*time.Second)
	body = scrape(t, reg)
	for _, line := range []string{
		`retailflow_partition_assigned{partition="3"} 1`,
		`retailflow_state_restore_remaining_records{partition="3"} 0`,
		`retailflow_state_restore_duration_seconds_count 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics after restore lacks %q", line)
		}
	}

	m.PartitionRevoked(3)
	body = scrape(t, reg)
	for _, gone := range []string{"retailflow_state_entries{", "retailflow_partition_assigned{", "retailflow_state_restore_remaining_records{"} {
		if strings.Contains(body, gone) {
			t.Errorf("/metrics still has %s…} after the partition was revoked", gone)
		}
	}
	if !strings.Contains(body, `retailflow_state_restored_records_total{partition="3"} 400`) {
		t.Error("the restored-records counter was dropped on revoke; counters must stay monotonic")
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
	r.DeadLettered("t", "decode")
	r.TxnCommitted(time.Second)
	r.TxnAborted("x", time.Second)
	r.ObserveLatency(time.Second)
	r.SetStateSize(0, 1, 1)
	r.RestoreStarted(0, 1)
	r.RestoreProgress(0, 1, 0)
	r.RestoreFinished(0, time.Second)
	r.PartitionRevoked(0)
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
	body := scrape(t, reg)
	for _, want := range []string{`retailflow_kafka_produce_records_total{client="ledger"`, `retailflow_kafka_produce_records_total{client="restore"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s…", want)
		}
	}
}
