package accrual

import (
	"context"
	"reflect"
	"testing"
	"unsafe"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// After each decode, good or refused, the scratch holds no string that points into the input
// (the runner recycles record buffers), and a decode of one payload branch after another reuses
// the first one's struct from before: alternating orders and shipments allocates no more than
// runs of each.
func TestScratchKeepsNoViews(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := generate.Generate(generate.Options{Seed: 3, Orders: 200, MalformedRate: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	var s scratch
	byKind := map[Kind][]byte{}
	decoded := 0
	for _, in := range DecodedInputs(t, serde, tr) {
		i, r, value := in.Index, in.Record, in.Value
		e, err := s.decode(ctx, serde, schemas.RecordRef{Topic: r.Topic}, value)
		if err == nil {
			decoded++
			if byKind[e.Kind] == nil {
				byKind[e.Kind] = value
			}
		}
		if p := viewInto(reflect.ValueOf(&s).Elem(), value); p != "" {
			t.Fatalf("record %d (%s, error %v): the scratch still holds a view of the input at %s", i, r.Topic, err, p)
		}
	}
	if decoded < 500 || byKind[Accepted] == nil || byKind[Shipment] == nil {
		t.Fatalf("only %d records decoded (%d kinds)", decoded, len(byKind))
	}
	allocs := func(a, b []byte) float64 {
		var s scratch
		ref := func(v []byte) schemas.RecordRef {
			if reflect.ValueOf(v).Pointer() == reflect.ValueOf(byKind[Accepted]).Pointer() {
				return schemas.RecordRef{Topic: schemas.TopicOrders}
			}
			return schemas.RecordRef{Topic: schemas.TopicShipments}
		}
		return testing.AllocsPerRun(50, func() {
			if _, err := s.decode(ctx, serde, ref(a), a); err != nil {
				t.Fatal(err)
			}
			if _, err := s.decode(ctx, serde, ref(b), b); err != nil {
				t.Fatal(err)
			}
		})
	}
	o, sh := byKind[Accepted], byKind[Shipment]
	if alt, same := allocs(o, sh), (allocs(o, o)+allocs(sh, sh))/2; alt > same {
		t.Errorf("an order and a shipment in turn: %.1f allocations; in runs of each, %.1f", alt, same)
	}
}

// viewInto returns the path of a string reachable from v whose bytes lie inside b, or "".
func viewInto(v reflect.Value, b []byte) string {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	var walk func(v reflect.Value, path string) string
	walk = func(v reflect.Value, path string) string {
		switch v.Kind() {
		case reflect.String:
			if s := v.String(); len(s) > 0 {
				p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
				if p >= start && p < start+uintptr(len(b)) {
					return path
				}
			}
		case reflect.Pointer:
			if !v.IsNil() {
				return walk(v.Elem(), path)
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if p := walk(v.Field(i), path+"."+v.Type().Field(i).Name); p != "" {
					return p
				}
			}
		case reflect.Slice:
			for i := range v.Cap() { // past the length too: a reused array's spare slots
				if p := walk(v.Slice(0, v.Cap()).Index(i), path+"[]"); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(v, "scratch")
}

// DecodedInput is a generated record of a topic the core decodes (orders, shipments, returns)
// with its value as the stage reads it: its malformed bytes, or its event encoded in the
// topic's schema. Index is its position in the traffic.
type DecodedInput struct {
	Index  int
	Record generate.Record
	Value  []byte
}

// DecodedInputs returns tr's records of the topics the core decodes, framed.
func DecodedInputs(tb testing.TB, serde *schemas.Serde, tr *generate.Traffic) []DecodedInput {
	tb.Helper()
	var out []DecodedInput
	for i, r := range tr.Records {
		if r.Topic != schemas.TopicOrders && r.Topic != schemas.TopicShipments && r.Topic != schemas.TopicReturns {
			continue
		}
		value := r.Raw
		if value == nil {
			var err error
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				tb.Fatalf("record %d: %v", i, err)
			}
		}
		out = append(out, DecodedInput{i, r, value})
	}
	return out
}
