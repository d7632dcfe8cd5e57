package ops_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/ops"
)

// lagCluster starts kfake with the topic "orders" (3 partitions) holding 10, 5 and 0 records.
func lagCluster(t *testing.T) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "commands"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	var recs []*kgo.Record
	for p, n := range map[int32]int{0: 10, 1: 5} {
		for range n {
			recs = append(recs, &kgo.Record{Topic: "orders", Partition: p, Value: []byte("x")})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("seed orders: %v", err)
	}
	return c, kadm.NewClient(cl)
}

func commit(t *testing.T, adm *kadm.Client, group, topic string, offsets map[int32]int64) {
	t.Helper()
	var os kadm.Offsets
	for p, o := range offsets {
		os.AddOffset(topic, p, o, -1)
	}
	if err := adm.CommitAllOffsets(context.Background(), group, os); err != nil {
		t.Fatalf("commit %s %v for %s: %v", topic, offsets, group, err)
	}
}

func wantLag(t *testing.T, lc *ops.LagCollector, group, topic string, partition int32, want int64) {
	t.Helper()
	got, ok := lc.Lag(group, topic, partition)
	if !ok || got != want {
		t.Errorf("lag %s %s/%d = %d (found %v), want %d", group, topic, partition, got, ok, want)
	}
}

func TestLagCollector(t *testing.T) {
	_, adm := lagCluster(t)
	commit(t, adm, "ledger", "orders", map[int32]int64{0: 4, 1: 5})
	commit(t, adm, "ledger", "commands", map[int32]int64{0: 0})
	commit(t, adm, "sink", "orders", map[int32]int64{0: 10})

	lc, err := ops.NewLagCollector(adm, ops.LagOptions{Groups: []string{"ledger", "sink"}, Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Poll(context.Background()); err != nil {
		t.Fatalf("poll: %v", err)
	}
	wantLag(t, lc, "ledger", "orders", 0, 6)
	wantLag(t, lc, "ledger", "orders", 1, 0)
	wantLag(t, lc, "sink", "orders", 0, 0)
	if _, ok := lc.Lag("ledger", "commands", 0); ok {
		t.Error("lag reported for topic commands, which LagOptions.Topics excludes")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(lc)
	body := scrape(t, reg)
	for _, line := range []string{
		`retailflow_consumer_lag{group="ledger",partition="0",topic="orders"} 6`,
		`retailflow_consumer_lag{group="ledger",partition="1",topic="orders"} 0`,
		`retailflow_consumer_lag{group="sink",partition="0",topic="orders"} 0`,
		`retailflow_consumer_lag_poll_errors_total{group="ledger"} 0`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// The group sum covers every partition of the topic the group knows of; partition 2 is
	// empty, so whether kadm lists it or not the sum is 6.
	if !strings.Contains(body, `retailflow_consumer_group_lag{group="ledger"} 6`+"\n") {
		t.Errorf("/metrics lacks the ledger group's lag sum 6:\n%s", grep(body, "retailflow_consumer"))
	}
	if !strings.Contains(body, `retailflow_consumer_lag_last_success_timestamp_seconds{group="ledger"}`) {
		t.Error("/metrics lacks the last-success timestamp")
	}

	// The group catches up: the next poll replaces the samples.
	commit(t, adm, "ledger", "orders", map[int32]int64{0: 10})
	if err := lc.Poll(context.Background()); err != nil {
		t.Fatalf("poll: %v", err)
	}
	wantLag(t, lc, "ledger", "orders", 0, 0)
}

// On a transactional topic the commit marker takes an offset: a group that has consumed and
// committed every data record still shows lag 1 per partition.
func TestLagCountsTransactionMarker(t *testing.T) {
	c, adm := lagCluster(t)
	txn, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("ops-lag-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "commands", Partition: 0, Value: []byte("cmd")}).FirstErr(); err != nil {
			t.Fatalf("produce in txn: %v", err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit txn: %v", err)
	}

	// A read_committed consumer sees 5 records at offsets 0..4 and commits 5, the offset after
	// the last record it saw.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"commands": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var last int64 = -1
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for seen := 0; seen < 5; {
		fs := consumer.PollFetches(pctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume commands: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen++; last = r.Offset })
	}
	commit(t, adm, "sink", "commands", map[int32]int64{0: last + 1})

	lc, err := ops.NewLagCollector(adm, ops.LagOptions{Groups: []string{"sink"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Poll(ctx); err != nil {
		t.Fatalf("poll: %v", err)
	}
	wantLag(t, lc, "sink", "commands", 0, 1)
}

// A failed poll is counted, keeps the last good samples and does not stop Run; Run returns nil
// when its context is cancelled.
func TestLagPollFailureAndRun(t *testing.T) {
	c, adm := lagCluster(t)
	commit(t, adm, "ledger", "orders", map[int32]int64{0: 7})
	lc, err := ops.NewLagCollector(adm, ops.LagOptions{Groups: []string{"ledger"}, Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lc.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := lc.Lag("ledger", "orders", 0); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not produce a sample within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}

	c.Close()
	if err := lc.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "group ledger") {
		t.Errorf("poll of a closed cluster = %v, want an error naming the group", err)
	}
	wantLag(t, lc, "ledger", "orders", 0, 3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(lc)
	if body := scrape(t, reg); !strings.Contains(body, `retailflow_consumer_lag_poll_errors_total{group="ledger"} 1`+"\n") {
		t.Errorf("poll errors not counted:\n%s", grep(body, "retailflow_consumer"))
	}
}

func TestNewLagCollectorValidates(t *testing.T) {
	_, adm := lagCluster(t)
	for name, o := range map[string]ops.LagOptions{
		"no group":         {},
		"empty group":      {Groups: []string{""}},
		"negative timeout": {Groups: []string{"g"}, Timeout: -time.Second},
	} {
		if _, err := ops.NewLagCollector(adm, o); err == nil {
			t.Errorf("%s: NewLagCollector accepted %+v", name, o)
		}
	}
	if _, err := ops.NewLagCollector(nil, ops.LagOptions{Groups: []string{"g"}}); err == nil {
		t.Error("NewLagCollector accepted a nil kadm client")
	}
}

func grep(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
