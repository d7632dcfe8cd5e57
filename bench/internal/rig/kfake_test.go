package rig

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// TestProduceLatencyPassThrough runs the benchmarks' traffic, latency and pass-through loops on
// an in-process broker (kfake) against an echo processor that copies each input to an output
// topic with its rf.source.* headers, as the engines do: every input is produced and
// acknowledged, every output is matched to its input and timed, and the pass-through moves
// exactly the inputs.
func TestProduceLatencyPassThrough(t *testing.T) {
	names := map[schemas.Topic]string{}
	var topics, inputs []string
	for _, tp := range schemas.InputTopics {
		names[tp] = "in." + string(tp)
		inputs = append(inputs, names[tp])
	}
	topics = append(append(topics, inputs...), "out", "pass")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := kafka.Conn{Brokers: cluster.ListenAddrs(), Timeout: 10 * time.Second}
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(names))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(conn.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// the echo processor: input → "out" with the input's coordinates, then the offsets
	echo, err := kgo.NewClient(append(conn.Options(), kgo.ConsumerGroup("echo"), kgo.ConsumeTopics(inputs...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	ectx, stopEcho := context.WithCancel(ctx)
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for ectx.Err() == nil {
			fs := echo.PollFetches(ectx)
			var out []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				out = append(out, &kgo.Record{Topic: "out", Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
					{Key: headers.SourceTopic, Value: []byte(r.Topic)},
					{Key: headers.SourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
					{Key: headers.SourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))}}})
			})
			if len(out) > 0 && echo.ProduceSync(ectx, out...).FirstErr() == nil {
				_ = echo.CommitUncommittedOffsets(ectx)
			}
		}
	}()
	defer func() { stopEcho(); <-echoDone }()

	tr, err := generate.Generate(generate.Options{Seed: 5, Orders: 20, MalformedRate: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	topic := func(tp schemas.Topic) string { return names[tp] }
	var n int
	began := time.Now()
	lats, err := Latency(ctx, conn, adm, "out", func(sent *Sent) error {
		var err error
		if n, err = Produce(ctx, conn, serde, tr.Records, topic, 500, sent); err != nil {
			return err
		}
		return WaitCaughtUp(ctx, adm, "echo", inputs, time.Minute, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(tr.Records) || n < 50 {
		t.Fatalf("produced %d of %d records", n, len(tr.Records))
	}
	// paced at 500/s: the last record went out no sooner than (n-1)/500 s after the first
	if took := time.Since(began); took < time.Duration(n-1)*time.Second/500 {
		t.Errorf("%d records at 500/s took %s: not paced", n, took)
	}
	if len(lats) != n {
		t.Fatalf("%d latencies for %d inputs: every output must be matched to its input", len(lats), n)
	}
	for i, l := range lats {
		if l <= 0 || l > time.Minute || (i > 0 && l < lats[i-1]) {
			t.Fatalf("latency %d of %d is %s: want positive, bounded and sorted", i, n, l)
		}
	}
	t.Logf("%d records: p50 %s, p99 %s", n, Quantile(lats, 0.5), Quantile(lats, 0.99))

	d, err := PassThrough(ctx, conn, inputs, "pass", "pass-group", n)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "pass")
	if err != nil {
		t.Fatal(err)
	}
	var passed int64
	ends.Each(func(o kadm.ListedOffset) { passed += o.Offset })
	if d.Events != n || passed != int64(n) || d.Wall <= 0 || d.CPU <= 0 {
		t.Errorf("pass-through: %+v, %d records on the output; want %d", d, passed, n)
	}
}
