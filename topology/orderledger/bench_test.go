package orderledger_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// BenchmarkRunLedger drains generated traffic (1000 orders) through the production order-ledger
// stage on the exactly-once runner against an in-process kfake broker, once per iteration into
// fresh topics, with `retailflow run`'s default runtime settings. It reports ns and allocations
// per input event; kfake's own CPU is included (it runs in the same process), so profile with
// -cpuprofile and read the runner's share from there. bench/runtime measures the real broker;
// bench/RESULTS.md has the figures.
//
//	go test -run '^$' -bench RunLedger -benchtime 3x -cpuprofile cpu.out ./topology/orderledger
func BenchmarkRunLedger(b *testing.B) {
	tr, err := generate.Generate(generate.Options{Seed: 42, Orders: 1000})
	if err != nil {
		b.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()
	conn := kafka.Conn{Brokers: cluster.ListenAddrs(), ClientID: "bench", Timeout: 10 * time.Second}
	b.ReportAllocs()
	var events int
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		suffix := "-" + strconv.Itoa(i)
		topics := benchTopics(suffix)
		n := preload(b, ctx, conn, topics, tr)
		events += n
		serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(topics.Names))
		if err != nil {
			b.Fatal(err)
		}
		m := topology.NewCounters(0)
		runner, err := topology.NewRunner(orderledger.Topology(topics),
			orderledger.NewProcessor(ctx, topics, orderledger.Options{Serde: serde, Policy: ledger.DefaultPolicy(), MaxEventSkew: time.Hour}),
			topology.Options{
				Conn: conn, Group: "bench" + suffix, InstanceID: "0",
				TransactionTimeout: 10 * time.Second, SessionTimeout: 3 * time.Second, HeartbeatInterval: time.Second,
				RebalanceTimeout: 5 * time.Second, MaxRecordsPerTxn: 2000, MaxTxnDuration: 200 * time.Millisecond,
				MaxBufferedRecords: 10000, Parallelism: 1, OffsetReset: kafka.ResetNone,
				Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- runner.Run(rctx) }()
		for m.Snapshot().CommittedRecords < n {
			select {
			case err := <-done:
				b.Fatalf("runner stopped: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}

// benchTopics names every topic of the pipeline with a suffix (fresh topics per iteration).
func benchTopics(suffix string) orderledger.Topics {
	names := map[schemas.Topic]string{}
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		names[t] = "bench." + string(t) + suffix
	}
	return orderledger.Topics{Names: names, Reroute: "bench.reroute" + suffix}
}

// ensureTopics creates the pipeline's topics with n co-partitioned partitions each, the
// changelog compacted and fingerprinted.
func ensureTopics(tb testing.TB, ctx context.Context, conn kafka.Conn, topics orderledger.Topics, n int32) {
	tb.Helper()
	var specs []kafka.TopicSpec
	for t, name := range topics.Names {
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: n, ReplicationFactor: 1, Compacted: t == schemas.TopicChangelog, CoPartitioned: true})
	}
	specs = append(specs, kafka.TopicSpec{Name: topics.Reroute, Partitions: n, ReplicationFactor: 1, CoPartitioned: true},
		kafka.FingerprintSpec(topics.Names[schemas.TopicChangelog], 1))
	if _, err := kafka.EnsureTopics(ctx, conn, specs); err != nil {
		tb.Fatal(err)
	}
}

// preload creates the pipeline's topics (6 co-partitioned partitions, the changelog compacted)
// and produces the traffic (Avro, keyed by order id).
func preload(b *testing.B, ctx context.Context, conn kafka.Conn, topics orderledger.Topics, tr *generate.Traffic) int {
	b.Helper()
	ensureTopics(b, ctx, conn, topics, 6)
	cl, err := kgo.NewClient(append(conn.Options(), kgo.MaxBufferedRecords(50000), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(topics.Names))
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range tr.Records {
		value := r.Raw
		if r.Event != nil {
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				b.Fatal(err)
			}
		}
		cl.Produce(ctx, &kgo.Record{Topic: topics.Names[r.Topic], Key: []byte(r.Key), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	return len(tr.Records)
}
