package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// DLQMaxValue: a value longer than this cannot travel in a dead letter (the runtime's producer
// keeps franz-go's default batch limit of 1 000 012 bytes, below the broker's 1 MiB), so its
// dead letter drops it and is classed output-rejected.
const DLQMaxValue = 1_000_000

// Sent is a produced record and where the broker put it.
type Sent struct {
	Topic     schemas.Topic
	EventID   string // "" for bytes that carry none
	Malformed bool   // the generator (or the suite) expects it in the DLQ
	Oversized bool   // larger than a dead letter can carry: its dead letter must drop the value
	Class     schemas.ErrorClass
	Partition int32 // −1 until acknowledged
	Offset    int64
}

// Producer produces generated records to the pipeline's inputs and remembers where each landed,
// so that every dead letter can be traced back to the record sent. Its client is idempotent: a
// record the broker acknowledged once is there once, across broker restarts, so every duplicate
// the oracles find is the pipeline's.
type Producer struct {
	p  *Pipeline
	cl *kgo.Client

	mu       sync.Mutex
	sent     []Sent         // every record produced, in send order
	bySource map[string]int // "topic/partition@offset" → index into sent
	err      error
}

// NewProducer opens the producer; opts are added to its client's options.
func (p *Pipeline) NewProducer(opts ...kgo.Opt) *Producer {
	cl, err := kgo.NewClient(append(append(p.Conn.Options(), kgo.MaxBufferedRecords(20000),
		kgo.ProducerLinger(5*time.Millisecond)), opts...)...)
	if err != nil {
		p.T.Fatal(err)
	}
	p.T.Cleanup(cl.Close)
	return &Producer{p: p, cl: cl, bySource: map[string]int{}}
}

// Produce sends records one every per (paced; the broker's acknowledgements are awaited at the
// end). Malformed records keep the generator's bytes; valid ones are Avro-encoded with the serde.
func (pr *Producer) Produce(records []generate.Record, per time.Duration) error {
	start := time.Now()
	var inflight atomic.Int64
	for i, r := range records {
		value := r.Raw
		if value == nil && r.Event != nil {
			var err error
			if value, err = pr.p.Serde.EncodeEvent(r.Topic, r.Event); err != nil {
				return fmt.Errorf("encode record %d (%s): %w", i, r.Event.EventID, err)
			}
		}
		if wait := time.Until(start.Add(per * time.Duration(i))); wait > 0 {
			time.Sleep(wait)
		}
		s := Sent{Topic: r.Topic, Malformed: r.Malformed != "", Class: r.Class, Partition: -1, Oversized: len(value) > DLQMaxValue}
		if r.Event != nil {
			s.EventID = r.Event.EventID
		}
		pr.mu.Lock()
		idx := len(pr.sent)
		pr.sent = append(pr.sent, s)
		pr.mu.Unlock()
		inflight.Add(1)
		pr.send(idx, &kgo.Record{Topic: pr.p.Names[r.Topic], Key: []byte(r.Key), Value: value}, 0, &inflight)
	}
	for inflight.Load() > 0 {
		if err := pr.cl.Flush(pr.p.Ctx); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.err
}

// send produces one record; a failure (the broker restarting under a chaos fault) is retried for
// up to two minutes. The idempotent producer keeps an acknowledged record single; a retry after
// an unacknowledged failure can at worst re-send the same event, which the pipeline must absorb.
func (pr *Producer) send(idx int, rec *kgo.Record, attempt int, inflight *atomic.Int64) {
	pr.cl.Produce(pr.p.Ctx, rec, func(got *kgo.Record, err error) {
		if err != nil && attempt < 240 && pr.p.Ctx.Err() == nil {
			go func() {
				time.Sleep(500 * time.Millisecond)
				pr.send(idx, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value}, attempt+1, inflight)
			}()
			return
		}
		defer inflight.Add(-1)
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if err != nil {
			if pr.err == nil {
				pr.err = fmt.Errorf("produce to %s after %d attempts: %w", got.Topic, attempt+1, err)
			}
			return
		}
		pr.sent[idx].Partition, pr.sent[idx].Offset = got.Partition, got.Offset
		pr.bySource[fmt.Sprintf("%s/%d@%d", got.Topic, got.Partition, got.Offset)] = idx
	})
}

// SentSoFar is a copy of what was sent and the index by source coordinates.
func (pr *Producer) SentSoFar() ([]Sent, map[string]int) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	bySource := make(map[string]int, len(pr.bySource))
	for k, i := range pr.bySource {
		bySource[k] = i
	}
	return append([]Sent(nil), pr.sent...), bySource
}
