package ledger

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/retailflow/retailflow/schemas"
)

// TestCopyOnWrite: Apply shares unchanged slices between the receiver and its result, so it
// must never write into a shared one. At every step of generated orders (valid ones, and
// arbitrary fuzz sequences), the ledger is branched: a few of the events still to come are
// applied to it. Neither the ledger nor a branch taken earlier may change, not even in
// representation.
func TestCopyOnWrite(t *testing.T) {
	p := DefaultPolicy()
	r := rand.New(rand.NewPCG(3, 4))
	var sequences [][]schemas.Event
	for o := range 8 {
		events := genOrder(r, fmt.Sprintf("O-%04d", o))
		r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		sequences = append(sequences, events)
	}
	for range 8 {
		var events []schemas.Event
		for range 24 {
			events = append(events, fuzzEvent(byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))))
		}
		sequences = append(sequences, events)
	}
	for si, events := range sequences {
		var l Ledger
		for i, e := range events {
			before := l.State()
			var branches []Ledger
			var snapshots []State
			for k := range 4 {
				other := events[i+r.IntN(len(events)-i)]
				if k == 0 {
					other = e
				}
				b, _, err := l.Apply(other, p)
				if err != nil {
					continue
				}
				branches = append(branches, b)
				snapshots = append(snapshots, b.State())
				// A branch of the branch writes what it needs; neither parent may see it.
				if _, _, err := b.Apply(events[len(events)-1], p); err == nil && !reflect.DeepEqual(snapshots[len(snapshots)-1], b.State()) {
					t.Fatalf("sequence %d step %d: applying to a branch changed the branch", si, i)
				}
			}
			if !reflect.DeepEqual(before, l.State()) {
				t.Fatalf("sequence %d step %d: Apply wrote into the receiver", si, i)
			}
			for k := range branches {
				if !reflect.DeepEqual(snapshots[k], branches[k].State()) {
					t.Fatalf("sequence %d step %d: branch %d changed by a sibling's Apply", si, i, k)
				}
			}
			if n, _, err := l.Apply(e, p); err == nil {
				l = n
			}
		}
	}
}
