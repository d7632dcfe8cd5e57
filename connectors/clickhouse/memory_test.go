package clickhouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkBufferBoundedInBytes (issue 11 item 4): with a row-count bound far away, wide rows
// (undecodable 64 KB records: each a dead_letters row carrying its value) must still be flushed
// at MaxBufferBytes, within one fetch, and all of them stored.
func TestSinkBufferBoundedInBytes(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 1)
	const n, size = 160, 64 << 10 // 10 MiB in all
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte('a' + rng.IntN(26)) // not Confluent-framed: a sink-decode dead letter
		}
		recs = append(recs, &kgo.Record{Topic: e.topics[schemas.TopicOrders], Key: []byte(fmt.Sprintf("O-%d", i)), Value: v})
	}
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := e.sinkOptions()
	o.BatchRows, o.BatchTimeout, o.MaxBufferBytes = 1_000_000, 30*time.Second, 1<<20
	o.DeadLetterValues = DeadLetterFull      // wide rows: what the byte bound is about
	s, took := e.drain(t, o, 25*time.Second) // before BatchTimeout: only the byte bound can have flushed
	t.Logf("caught up in %s; peak buffer %d KiB (bound %d KiB, one record ≈ %d KiB of rows and record)",
		took.Round(time.Millisecond), s.peakBytes>>10, o.MaxBufferBytes>>10, 2*size>>10)
	if s.peakBytes > o.MaxBufferBytes+3*size {
		t.Errorf("buffer peaked at %d bytes, bound %d (+ one record)", s.peakBytes, o.MaxBufferBytes)
	}
	var got uint64
	if err := e.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL WHERE origin = 'sink-decode' AND length(record_value) = %d", e.db, size)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("dead_letters holds %d of the %d wide records", got, n)
	}
}
