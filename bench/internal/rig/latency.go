package rig

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/headers"
)

// Sent records when each input was produced, by its coordinates; safe for concurrent use.
type Sent struct{ m sync.Map }

func (s *Sent) record(r *kgo.Record) {
	s.m.Store(coordinates(r.Topic, strconv.Itoa(int(r.Partition)), strconv.FormatInt(r.Offset, 10)), r.Timestamp)
}

func coordinates(topic, partition, offset string) string {
	return topic + "/" + partition + "@" + offset
}

// Latency measures, for each record that becomes visible on output to a read_committed
// consumer while produce runs, the time from its input's timestamp to that moment. The input
// is found by the record's rf.source.* headers (both engines write them) in the Sent that
// produce fills (see Produce); produce should return once the processor has caught up. Output
// already on the topic before the call is not read. The latencies come back sorted.
func Latency(ctx context.Context, conn kafka.Conn, adm *kadm.Client, output string, produce func(*Sent) error) ([]time.Duration, error) {
	ends, err := adm.ListEndOffsets(ctx, output)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", output, err)
	}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { start[o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(append(conn.Options(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{output: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var sent Sent
	var lats []time.Duration
	done := make(chan struct{})
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
		for pctx.Err() == nil {
			fs := cl.PollFetches(pctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var t, p, o string
				for _, h := range r.Headers {
					switch h.Key {
					case headers.SourceTopic:
						t = string(h.Value)
					case headers.SourcePartition:
						p = string(h.Value)
					case headers.SourceOffset:
						o = string(h.Value)
					}
				}
				src := coordinates(t, p, o)
				for range 50 { // the promise may store the timestamp a moment after the record is visible
					if ts, ok := sent.m.Load(src); ok {
						lats = append(lats, now.Sub(ts.(time.Time)))
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
	}()
	err = produce(&sent)
	if err == nil {
		time.Sleep(time.Second) // the last transactions' records reach the consumer
	}
	cancel()
	<-done
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return lats, err
}

// Quantile is the q-quantile (0 ≤ q ≤ 1) of sorted latencies, the element at ⌊q·(n−1)⌋; 0 for
// none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}
