package ledger

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestHeldEventsDecodeAsStd holds the held events' reader (unhold, unholdReturn: goccy/go-json)
// to encoding/json's Unmarshal of the same bytes, on every event of generated traffic with every
// fault: each event type, optional fields present and absent, decimals of every scale.
func TestHeldEventsDecodeAsStd(t *testing.T) {
	faults := everyFault(0.1)
	orders := 300
	if testing.Short() {
		orders = 80
	}
	tr, err := generate.Generate(generate.Options{Seed: 71, Orders: orders, LateRate: 0.1, OutOfOrderRate: 0.3, DuplicateRate: 0.1, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	types := map[schemas.EventType]int{}
	var n Ledger
	for _, r := range tr.Records {
		if r.Event == nil {
			continue
		}
		e := *r.Event
		e.PublishedAt = time.Time{} // as hold stores it
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var want schemas.Event
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		h := HeldEvent{EventID: e.EventID, Event: raw}
		if got := n.unhold(h); !reflect.DeepEqual(got, want) {
			t.Fatalf("event %s (%s): held form read back as\n%+v\nencoding/json reads\n%+v", e.EventID, e.EventType, got, want)
		}
		id, lines, ok := n.unholdReturn(h)
		if ok != (want.ReturnReceived != nil) {
			t.Fatalf("event %s (%s): unholdReturn ok=%v", e.EventID, e.EventType, ok)
		}
		if ok && (id != want.ReturnReceived.ReturnID || !reflect.DeepEqual(lines, want.ReturnReceived.Lines)) {
			t.Fatalf("event %s: return %s %+v, encoding/json reads %s %+v", e.EventID, id, lines, want.ReturnReceived.ReturnID, want.ReturnReceived.Lines)
		}
		types[e.EventType]++
	}
	if len(types) < 12 {
		t.Fatalf("only %d event types in the traffic: %v", len(types), types)
	}
	t.Logf("%d event types: %v", len(types), types)
}
