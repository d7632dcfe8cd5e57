package rig

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
)

// Drain is one measured drain of input events.
type Drain struct {
	Events int
	Wall   time.Duration
	CPU    time.Duration
}

// PerCPU is events per CPU-second.
func (d Drain) PerCPU() float64 { return float64(d.Events) / d.CPU.Seconds() }

// Rate is events per second of wall time.
func (d Drain) Rate() float64 { return float64(d.Events) / d.Wall.Seconds() }

// PassThrough consumes n records of inputs from their start in a fresh group (read_committed)
// and produces each unchanged to out, on its own partition number (no transactions, no
// decoding): the floor cost of moving the bytes with franz-go. CPU is this process's over the
// loop, so nothing else should run in it meanwhile.
func PassThrough(ctx context.Context, conn kafka.Conn, inputs []string, out, group string, n int) (Drain, error) {
	// 50 000 buffered records: as Produce, a few MB
	cl, err := kgo.NewClient(append(conn.Options(), kgo.ConsumerGroup(group), kgo.ConsumeTopics(inputs...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MaxBufferedRecords(50000), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return Drain{}, err
	}
	defer cl.Close()
	var failed firstError
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			failed.set(fmt.Errorf("pass-through: producing to %s: %w", r.Topic, err))
		}
	}
	cpu0, err := SelfCPU()
	if err != nil {
		return Drain{}, err
	}
	began := time.Now()
	got := 0
	for got < n {
		fs := cl.PollRecords(ctx, 5000)
		if err := ctx.Err(); err != nil {
			return Drain{}, err
		}
		fs.EachError(func(t string, p int32, e error) { failed.set(fmt.Errorf("pass-through: fetching %s[%d]: %w", t, p, e)) })
		fs.EachRecord(func(r *kgo.Record) {
			got++
			cl.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Partition: r.Partition}, promise)
		})
		if err := failed.get(); err != nil {
			return Drain{}, err
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return Drain{}, err
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		return Drain{}, err
	}
	wall := time.Since(began)
	cpu, err := SelfCPU()
	if err != nil {
		return Drain{}, err
	}
	return Drain{Events: got, Wall: wall, CPU: cpu - cpu0}, failed.get()
}
