package rig

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// Produce encodes the records (their events with serde; a malformed record's raw bytes as
// they are) and produces each to topic(its logical topic), timestamped now: unpaced when rate
// is 0, else rate records a second from the first. When sent is set, it records each record's
// coordinates and timestamp (for Latency). It returns once every record is acknowledged, with
// the number produced or the first error.
func Produce(ctx context.Context, conn kafka.Conn, serde *schemas.Serde, records []generate.Record, topic func(schemas.Topic) string, rate float64, sent *Sent) (int, error) {
	// 50 000 records (a few MB of Avro) in flight keep the broker busy without holding a whole
	// large traffic in memory
	cl, err := kgo.NewClient(append(conn.Options(), kgo.MaxBufferedRecords(50000), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var failed firstError
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			failed.set(fmt.Errorf("producing to %s: %w", r.Topic, err))
			return
		}
		if sent != nil {
			sent.record(r)
		}
	}
	start := time.Now()
	for i, r := range records {
		value := r.Raw
		if r.Event != nil {
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				return i, fmt.Errorf("encoding record %d (%s, key %s): %w", i, r.Topic, r.Key, err)
			}
		}
		if rate > 0 {
			if w := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); w > 0 {
				time.Sleep(w)
			}
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic(r.Topic), Key: []byte(r.Key), Value: value, Timestamp: time.Now()}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return len(records), err
	}
	return len(records), failed.get()
}

// firstError keeps the first of the errors that produce promises report; safe for concurrent
// use.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// WaitCaughtUp waits up to limit until group has committed the end offset of every partition
// of inputs (an empty partition needs no commit), polling every 50 ms. alive, when set, is
// checked each round: its error (the processor exited) ends the wait at once.
func WaitCaughtUp(ctx context.Context, adm *kadm.Client, group string, inputs []string, limit time.Duration, alive func() error) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		ends, err1 := adm.ListEndOffsets(ctx, inputs...)
		com, err2 := adm.FetchOffsets(ctx, group)
		if err1 == nil && err2 == nil && CaughtUp(ends, com) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("group %s not caught up on %v within %s", group, inputs, limit)
}

// CaughtUp reports whether the committed offsets reach the end of every listed partition; a
// partition with no records needs no commit.
func CaughtUp(ends kadm.ListedOffsets, committed kadm.OffsetResponses) bool {
	behind := false
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if (!ok && o.Offset > 0) || (ok && c.At < o.Offset) {
			behind = true
		}
	})
	return !behind
}
