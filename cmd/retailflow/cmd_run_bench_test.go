package main

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
	"github.com/retailflow/retailflow/topology"
)

// BenchmarkRunLedger drains generated traffic (BENCH_ORDERS orders, default 1000) through the
// production ledger stage on the exactly-once runner against an in-process kfake broker, once
// per iteration into fresh topics. It reports ns and allocations per input event; kfake's own
// CPU is included (it runs in the same process), so profile with -cpuprofile and read the
// runner's share from there. bench/runtime measures the real broker.
//
//	go test -run '^$' -bench RunLedger -benchtime 3x -cpuprofile cpu.out ./cmd/retailflow
func BenchmarkRunLedger(b *testing.B) {
	orders := 1000
	tr, err := generate.Generate(generate.Options{Seed: 42, Orders: orders})
	if err != nil {
		b.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()
	b.ReportAllocs()
	var events int
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		c := DefaultConfig()
		c.Kafka.Brokers = cluster.ListenAddrs()
		c.Runtime.Group = "bench-" + strconv.Itoa(i)
		c.Runtime.SessionTimeout, c.Runtime.RebalanceTimeout = 3*time.Second, 5*time.Second
		suffix := "-" + strconv.Itoa(i)
		t := &c.Topics
		for _, n := range []*string{&t.Orders, &t.Shipments, &t.Returns, &t.Loyalty, &t.ERP, &t.Commands, &t.Changelog, &t.DLQ} {
			*n += suffix
		}
		n := preload(b, ctx, c, tr)
		events += n
		serde, err := c.NewSerde(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p, err := c.LedgerPolicy()
		if err != nil {
			b.Fatal(err)
		}
		m := topology.NewCounters(0)
		o := c.RunnerOptions()
		o.Metrics, o.Logger = m, slog.New(slog.NewTextHandler(io.Discard, nil))
		runner, err := topology.NewRunner(c.LedgerTopology(), c.LedgerStage(ctx, serde, p), o)
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

// preload creates the config's topics and produces the traffic (Avro, keyed by order id).
func preload(b *testing.B, ctx context.Context, c Config, tr *generate.Traffic) int {
	b.Helper()
	cl, err := kgo.NewClient(append(c.KafkaConn().Options(), kgo.MaxBufferedRecords(50000), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.EnsureTopics(ctx, c.KafkaConn(), c.TopicSpecs()); err != nil {
		b.Fatal(err)
	}
	serde, err := c.NewSerde(ctx)
	if err != nil {
		b.Fatal(err)
	}
	names := c.TopicNames()
	for _, r := range tr.Records {
		value := r.Raw
		if r.Event != nil {
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				b.Fatal(err)
			}
		}
		cl.Produce(ctx, &kgo.Record{Topic: names[r.Topic], Key: []byte(r.Key), Value: value}, func(_ *kgo.Record, err error) {
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
