package ledger

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestIncrementalRecomputeIsFull: Apply derives only the fact groups the event touched
// (derive.go). After every Apply of generated traffic — every fault, duplicates, late and
// out-of-order delivery, topics interleaved, both confirmation triggers — and of fuzz
// sequences, the state must equal what a full recompute derives from the same facts. Each
// step starts, as in the runtime, from the state decoded from the changelog bytes of the step
// before, and the comparison is of the changelog bytes.
func TestIncrementalRecomputeIsFull(t *testing.T) {
	serde, err := schemas.NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	faults := everyFault(0.1)
	orders := 250
	if testing.Short() {
		orders = 80
	}
	var sequences [][]schemas.Event
	for i, opts := range []generate.Options{
		{Seed: 31, OutOfOrderRate: 0.3, LateRate: 0.1, DuplicateRate: 0.2, Faults: faults},
		{Seed: 32, LateRate: 0.3, Faults: faults},
	} {
		opts.Orders = orders
		tr, err := generate.Generate(opts)
		if err != nil {
			t.Fatal(err)
		}
		byOrder, keys := recordsByOrder(tr)
		r := rand.New(rand.NewPCG(uint64(i), 7))
		for _, key := range keys {
			sequences = append(sequences, eventsOf(byOrder[key]), interleaveTopics(r, byOrder[key]))
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		var events []schemas.Event
		for range 24 {
			events = append(events, fuzzEvent(byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))))
		}
		sequences = append(sequences, events)
	}
	for _, trigger := range []ConfirmTrigger{ConfirmOnOrderAccepted, ConfirmOnFirstShipment} {
		p := DefaultPolicy()
		p.ConfirmTrigger = trigger
		var partial, steps int
		for si, events := range sequences {
			var l Ledger
			for i, e := range events {
				n, _, err := l.Apply(e, p)
				if err != nil {
					continue
				}
				steps++
				full := FromState(n.State())
				full.recompute(p, touchAll)
				b, err := EncodeState(serde, n)
				if err != nil {
					t.Fatalf("sequence %d step %d: encode: %v", si, i, err)
				}
				// The changelog bytes: the state as every reader sees it (cmp only to explain a
				// difference; it is slow).
				if fb, err := EncodeState(serde, full); err != nil || !bytes.Equal(b, fb) {
					t.Fatalf("trigger %s, sequence %d, step %d (%s %s): incremental state differs from the full recompute (-incremental +full):\n%s",
						trigger, si, i, e.EventType, e.EventID, cmp.Diff(n.s, full.s, stateOpts...))
				}
				if e.OrderAccepted == nil && e.ShipmentConfirmed == nil && e.ReturnReceived == nil && e.OrderLinesCancelled == nil {
					partial++
				}
				if l, err = DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, b); err != nil {
					t.Fatalf("sequence %d step %d: decode: %v", si, i, err)
				}
			}
		}
		t.Logf("trigger %s: %d sequences, %d applied steps, %d of them derived in part", trigger, len(sequences), steps, partial)
		if partial < steps/4 {
			t.Fatalf("too little coverage: %d of %d steps derived in part", partial, steps)
		}
	}
}
