package accrual_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// accrual.Decode (a projection of the input, decimals as unscaled integers) gives what the full
// decode and the decimal reference (fromEvent) give, on generated traffic with every generator
// fault, duplicates and malformed records: the same event, or an error for the same records (a
// *schemas.DecodeError of the same class where the reference's is one).
func TestDecodeAgreesWithReference(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	faults := generate.Faults{}
	for _, f := range generate.AllFaults() {
		faults.Set(f, 0.1)
	}
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 600, Faults: faults, DuplicateRate: 0.05, MalformedRate: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[accrual.Kind]int{}
	refused := 0
	var kept [][2]accrual.Event
	for _, x := range accrual.DecodedInputs(t, serde, tr) {
		i, r, value := x.Index, x.Record, x.Value
		ref := schemas.RecordRef{Topic: r.Topic, Offset: int64(i)}
		var want accrual.Event
		full, werr := schemas.Decode[schemas.Event](ctx, serde, ref, value)
		if werr == nil {
			want, werr = fromEvent(full)
		}
		// Decode borrows from its input: the event must keep nothing of it (the bytes are
		// scribbled over after the decode) nor of its reused scratch (every event is compared
		// again at the end, after all later decodes)
		in := bytes.Clone(value)
		got, gerr := accrual.Decode(ctx, serde, ref, in)
		for j := range in {
			in[j] = 0xAA
		}
		switch {
		case (werr == nil) != (gerr == nil):
			t.Fatalf("record %d (%s, malformed %q): reference error %v, Decode error %v", i, r.Topic, r.Malformed, werr, gerr)
		case werr != nil:
			refused++
			var wd, gd *schemas.DecodeError
			if errors.As(werr, &wd) && (!errors.As(gerr, &gd) || gd.Class != wd.Class) {
				t.Fatalf("record %d: reference %v, Decode %v", i, werr, gerr)
			}
		default:
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("record %d (%s) (-reference +Decode):\n%s", i, r.Topic, d)
			}
			kinds[got.Kind]++
			kept = append(kept, [2]accrual.Event{want, got})
		}
	}
	for i, k := range kept {
		if d := cmp.Diff(k[0], k[1]); d != "" {
			t.Fatalf("event %d changed after later decodes (-reference +Decode):\n%s", i, d)
		}
	}
	for _, k := range []accrual.Kind{accrual.Accepted, accrual.Shipment, accrual.Return, accrual.Cancellation} {
		if kinds[k] < 20 {
			t.Errorf("only %d events of kind %d: the traffic does not exercise Decode", kinds[k], k)
		}
	}
	if refused < 5 {
		t.Errorf("only %d records refused: the malformed traffic does not reach Decode", refused)
	}
}
