package topology

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/headers"
)

func rerouteTopology() Topology {
	t := sumTopology()
	t.Stages[0].Reroute = "sum-reroute"
	return t
}

func TestValidateReroute(t *testing.T) {
	top := rerouteTopology()
	if err := top.Validate(); err != nil {
		t.Fatal(err)
	}
	top.Stages[0].Reroute = "in-a"
	if err := top.Validate(); err == nil {
		t.Fatal("a re-route topic that is also an input was accepted")
	}
}

// TestRunnerReroutesMisplacedRecords: a producer with another partitioner puts some keys on
// the wrong partition of one input. The runner re-routes them through the re-route topic, in the
// same transaction as their offsets, so every key's sum covers both inputs exactly once; the
// outputs name the original inputs; a record written to the re-route topic by someone else is
// dead-lettered as misrouted. Then a second incarnation restores and continues.
func TestRunnerReroutesMisplacedRecords(t *testing.T) {
	f := newFixture(t)
	inputs := map[string][]int64{}
	misplaced := 0
	put := func(topic, key string, v int64, partition int32) {
		if err := f.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(strconv.FormatInt(v, 10)), Partition: partition}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		inputs[key] = append(inputs[key], v)
	}
	for i := range 6 {
		for k := range 8 {
			key := fmt.Sprintf("k%d", k)
			right := kafka.KeyPartition([]byte(key), testPartitions)
			v := int64(i + 1)
			if i%2 == 0 {
				put("in-a", key, v, right) // a murmur2 producer
			} else {
				wrong := (right + 1 + int32(k%2)) % testPartitions // another partitioner
				put("in-b", key, v, wrong)
				misplaced++
			}
		}
	}
	// The runner creates its re-route topic itself (no EnsureTopics above names it); a first
	// incarnation with nothing to do creates it.
	r0, err := NewRunner(rerouteTopology(), sumStage(nil), f.options("0", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := r0.verifyTopics(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A record on the re-route topic without origin headers: not the runtime's.
	if err := f.prod.ProduceSync(context.Background(), &kgo.Record{Topic: "sum-reroute", Key: []byte("k0"), Value: []byte("5"),
		Partition: kafka.KeyPartition([]byte("k0"), testPartitions)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	m := NewCounters(0)
	st := sumStage(nil)
	r, err := NewRunner(rerouteTopology(), st, f.options("0", m))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	rn := &running{r: r, cancel: cancel, done: done}
	total := 0
	for _, ns := range inputs {
		total += len(ns)
	}
	outs := f.committed("out", total)
	checkSums(t, outs, inputs)
	for _, o := range outs {
		if want := kafka.KeyPartition(o.Key, testPartitions); o.Partition != want {
			t.Errorf("output %s on partition %d, its key's is %d", o.Value, o.Partition, want)
		}
		if topic := header(o, headers.SourceTopic); topic != "in-a" && topic != "in-b" {
			t.Errorf("output %s names source topic %q, want the original input", o.Value, topic)
		}
	}
	dl := f.committed("dlq", 1)
	if len(dl) != 1 || header(dl[0], headers.ErrorClassKey) != string(headers.ClassMisrouted) {
		t.Fatalf("dead letters %d, want 1 misrouted", len(dl))
	}
	rn.stop(t)
	if got := m.Snapshot().Rerouted["in-b"]; got != misplaced {
		t.Errorf("rerouted counter %d, want %d", got, misplaced)
	}

	// A second incarnation restores the sums and continues them, misplaced records included.
	more := map[string][]int64{}
	for k := range 8 {
		key := fmt.Sprintf("k%d", k)
		wrong := (kafka.KeyPartition([]byte(key), testPartitions) + 1) % testPartitions
		if err := f.prod.ProduceSync(context.Background(), &kgo.Record{Topic: "in-a", Key: []byte(key), Value: []byte("100"), Partition: wrong}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		inputs[key] = append(inputs[key], 100)
		more[key] = inputs[key]
	}
	r2, err := NewRunner(rerouteTopology(), sumStage(nil), f.options("1", NewCounters(0)))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- r2.Run(ctx2) }()
	defer (&running{r: r2, cancel: cancel2, done: done2}).stop(t)
	checkSums(t, f.committed("out", total+8), more)
}

// A runner stopped while it is still starting (SIGTERM during its start-up checks) stops
// cleanly: Run returns nil, as after a stop between transactions.
func TestRunnerStoppedWhileStartingIsClean(t *testing.T) {
	f := newFixture(t)
	r, err := NewRunner(rerouteTopology(), sumStage(nil), f.options("0", nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run with a cancelled context = %v, want nil", err)
	}
}
