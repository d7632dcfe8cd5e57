package generate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/retailflow/retailflow/schemas"
)

// TestRecordsOnTheWire: every valid record passes the stateless validation and survives the
// Avro serde and the JSON form unchanged; every malformed record fails decoding with its class.
func TestRecordsOnTheWire(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr := gen(t, Options{Seed: 9, Orders: 250, MalformedRate: 0.3, DuplicateRate: 0.05, LateRate: 0.1,
		Faults: Faults{WrongMultiplier: 0.1, ShortReversal: 0.2, ShortInvoice: 0.1, AbandonedReservation: 0.1}})
	classes := map[schemas.ErrorClass]int{}
	for i, r := range tr.Records {
		ref := schemas.RecordRef{Topic: r.Topic, Offset: int64(i)}
		value := r.Raw
		if r.Event != nil {
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				t.Fatalf("record %d (%s %s): encode: %v", i, r.Topic, r.Event.EventType, err)
			}
		}
		got, err := serde.DecodeEvent(ctx, ref, value)
		if r.Malformed != "" {
			var de *schemas.DecodeError
			if !errors.As(err, &de) || de.Class != r.Class {
				t.Fatalf("record %d (%s): want a decode error of class %s, got %v", i, r.Malformed, r.Class, err)
			}
			classes[de.Class]++
			continue
		}
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want, _ := schemas.EncodeJSON(r.Event)
		back, _ := schemas.EncodeJSON(got)
		if !bytes.Equal(want, back) {
			t.Fatalf("record %d changed through Avro:\n%s\n%s", i, want, back)
		}
		viaJSON, err := schemas.DecodeEventJSON(want)
		if err != nil {
			t.Fatalf("record %d: JSON form: %v", i, err)
		}
		if again, _ := schemas.EncodeJSON(viaJSON); !bytes.Equal(want, again) {
			t.Fatalf("record %d changed through JSON:\n%s\n%s", i, want, again)
		}
		if id := r.Event.OrderID(); (id != "" && r.Key != id) || (id == "" && !strings.HasPrefix(r.Key, "checkout:")) {
			t.Fatalf("record %d: key %q, order id %q", i, r.Key, id)
		}
	}
	if len(classes) != 3 {
		t.Fatalf("malformed classes seen: %v", classes)
	}
}
