package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReadToEnd (kfake): EndStable reads what is committed when the read starts and does not
// wait for a transaction still open; EndQuiescent waits for it; an unknown topic and an error of
// fn are returned as such.
func TestReadToEnd(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	conn := Conn{Brokers: c.ListenAddrs(), Timeout: 5 * time.Second}

	tx, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("tx"), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	produce := func(p int32, vals ...string) {
		for _, v := range vals {
			if err := tx.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(0, "a", "b", "c")
	produce(1, "d", "e")
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(0, "open")

	read := func(ctx context.Context, until End) (map[int32][]string, error) {
		got := map[int32][]string{}
		err := ReadToEnd(ctx, conn, "t", ReadOptions{Until: until, PollTimeout: 2 * time.Second}, func(r *kgo.Record) error {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			return nil
		})
		return got, err
	}
	got, err := read(ctx, EndStable)
	if err != nil || len(got[0]) != 3 || len(got[1]) != 2 || len(got[2]) != 0 {
		t.Fatalf("EndStable read %v, %v; want a b c / d e, nothing of the open transaction", got, err)
	}

	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = read(wctx, EndQuiescent)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EndQuiescent with an open transaction: %v, want it to wait (deadline)", err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	got, err = read(ctx, EndQuiescent)
	if err != nil || len(got[0]) != 4 || got[0][3] != "open" {
		t.Fatalf("EndQuiescent after the commit read %v, %v", got, err)
	}

	// an aborted transaction: invisible read_committed, seen read_uncommitted
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(0, "aborted")
	if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if got, err = read(ctx, EndQuiescent); err != nil || len(got[0]) != 4 {
		t.Fatalf("read_committed after an abort read %v, %v; want the 4 committed records", got, err)
	}
	var unc []string
	err = ReadToEnd(ctx, conn, "t", ReadOptions{Partitions: []int32{0}, Until: EndQuiescent, Uncommitted: true}, func(r *kgo.Record) error {
		unc = append(unc, string(r.Value))
		return nil
	})
	if err != nil || len(unc) != 5 || unc[4] != "aborted" {
		t.Fatalf("read_uncommitted read %v, %v; want the 4 committed records and the aborted one", unc, err)
	}

	stop := errors.New("stop")
	n := 0
	err = ReadToEnd(ctx, conn, "t", ReadOptions{Partitions: []int32{0}}, func(*kgo.Record) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error: %v after %d records", err, n)
	}
	if err := ReadToEnd(ctx, conn, "nosuch", ReadOptions{}, func(*kgo.Record) error { return nil }); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
}
