package schemas

import (
	"bytes"
	"context"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"
)

// A schema with every kind a projection has to skip, and the Go types of all of it (full) and
// of a few fields (proj).
const projSchema = `{"type":"record","name":"P","fields":[
 {"name":"id","type":"string"},
 {"name":"flag","type":"boolean"},
 {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},
 {"name":"ratio","type":"double"},
 {"name":"f32","type":"float"},
 {"name":"raw","type":"bytes"},
 {"name":"attrs","type":{"type":"map","values":"long"}},
 {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}},
 {"name":"rate","type":["null",{"type":"bytes","logicalType":"decimal","precision":9,"scale":6}],"default":null},
 {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"note","type":["null","string"],"default":null},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[
   {"name":"sku","type":"string"},
   {"name":"gift","type":"boolean"},
   {"name":"grade","type":"K"},
   {"name":"qty","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":3}},
   {"name":"tags","type":{"type":"array","items":"string"}}]}}},
 {"name":"tail","type":"string"}]}`

type projFullItem struct {
	SKU   string          `json:"sku"`
	Gift  bool            `json:"gift"`
	Grade string          `json:"grade"`
	Qty   decimal.Decimal `json:"qty"`
	Tags  []string        `json:"tags"`
}

type projFull struct {
	ID     string           `json:"id"`
	Flag   bool             `json:"flag"`
	Kind   string           `json:"kind"`
	Ratio  float64          `json:"ratio"`
	F32    float32          `json:"f32"`
	Raw    []byte           `json:"raw"`
	Attrs  map[string]int64 `json:"attrs"`
	Amount decimal.Decimal  `json:"amount"`
	Rate   *decimal.Decimal `json:"rate"`
	At     time.Time        `json:"at"`
	Note   *string          `json:"note"`
	Items  []projFullItem   `json:"items"`
	Tail   string           `json:"tail"`
}

type projItem struct {
	Qty Unscaled `json:"qty"`
	SKU string   `json:"sku"`
}

type proj struct {
	ID     string     `json:"id"`
	Amount Unscaled   `json:"amount"`
	Rate   *Unscaled  `json:"rate"`
	Items  []projItem `json:"items"`
	Tail   string     `json:"tail"`
}

// projCodecs are the full codec of projSchema and the projection codec of proj.
func projCodecs(t *testing.T) (*Codec[projFull], *Codec[proj]) {
	t.Helper()
	full, err := NewCodecFromSchema[projFull](projSchema)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := NewProjectionCodec[proj](projSchema)
	if err != nil {
		t.Fatal(err)
	}
	return full, pc
}

// A projection reads what the full codec reads for its fields (decimals as their unscaled
// value at the schema's scale), on the direct path and on goavro's alike; writer fields it
// lacks are skipped, and a skipped field's malformed bytes fail both paths the same way.
func TestProjection(t *testing.T) {
	full, pc := projCodecs(t)
	if pc.fast == nil || !pc.fast.inPlace {
		t.Fatal("the projection has no direct, in-place path")
	}
	if _, err := pc.Encode(&proj{}); err == nil {
		t.Error("a projection codec encoded")
	}
	if _, err := NewCodecFromSchema[proj](projSchema); err == nil {
		t.Error("a full codec accepted a type that lacks writer fields")
	}
	r := rand.New(rand.NewPCG(17, 4))
	decoded := 0
	for i := range 600 {
		v := &projFull{}
		(&valueGen{r: r, wild: []float64{0, 0.02, 0.2}[i%3]}).fill(reflect.ValueOf(v).Elem(), 0)
		syms := []string{"A", "B", "C"} // valueGen knows no enum's symbols
		v.Kind = syms[r.IntN(3)]
		for j := range v.Items {
			v.Items[j].Grade = syms[r.IntN(3)]
		}
		b, err := full.Encode(v)
		if err != nil {
			continue // a random value the schema refuses (an enum symbol, a fixed's size…)
		}
		if err := fastDecodeAgrees(pc, b); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		var fv projFull
		if err := full.DecodeInto(b, &fv); err != nil {
			t.Fatalf("value %d: the full codec refuses its own encoding: %v", i, err)
		}
		in := append([]byte(nil), b...)
		got, err := pc.Decode(in)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		want := proj{ID: fv.ID, Amount: Unscaled{fv.Amount.Shift(4).IntPart(), 4}, Tail: fv.Tail}
		if fv.Rate != nil {
			want.Rate = &Unscaled{fv.Rate.Shift(6).IntPart(), 6}
		}
		for _, it := range fv.Items {
			want.Items = append(want.Items, projItem{Qty: Unscaled{it.Qty.Shift(3).IntPart(), 3}, SKU: it.SKU})
		}
		if d := cmp.Diff(want, *got, cmp.Comparer(func(a, b []projItem) bool { return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b)) })); d != "" {
			t.Fatalf("value %d (-full +projection):\n%s", i, d)
		}
		// the strings are the projection's own: the input's buffer may be reused
		for j := range in {
			in[j] = 'x'
		}
		if got.ID != fv.ID || got.Tail != fv.Tail {
			t.Fatalf("value %d: a decoded string shares the input's bytes", i)
		}
		decoded++
		for range 16 {
			if err := fastDecodeAgrees(pc, mutate(r, b)); err != nil {
				t.Fatalf("value %d, mutated: %v", i, err)
			}
		}
	}
	if decoded < 200 {
		t.Fatalf("only %d of 600 random values encoded", decoded)
	}
}

// A skipped boolean other than 0 or 1, a skipped enum index outside its symbols or a skipped
// map with a key twice fails the direct path as it fails goavro: the projection never accepts
// what a full decode refuses.
func TestProjectionSkipsStrictly(t *testing.T) {
	full, pc := projCodecs(t)
	b, err := full.Encode(&projFull{ID: "abc", Kind: "B", Amount: decimal.New(12345, -4), At: time.UnixMicro(1e15).UTC(), Tail: "z"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Decode(b); err != nil {
		t.Fatal(err)
	}
	// id is 1+3 bytes; flag is the next byte, kind the one after
	for _, c := range []struct {
		what string
		at   int
		to   byte
	}{{"boolean 2", 4, 2}, {"enum index 3", 5, 6}, {"enum index -1", 5, 1}, {"map key twice", -1, 0}} {
		bad := append([]byte(nil), b...)
		if c.at >= 0 {
			bad[c.at] = c.to
		} else if bad, err = full.Encode(&projFull{ID: "abc", Kind: "B", Attrs: map[string]int64{"k": 1, "l": 2}, Amount: decimal.New(12345, -4), At: time.UnixMicro(1e15).UTC(), Tail: "z"}); err != nil {
			t.Fatal(err)
		} else {
			// the map's second key "l" becomes "k" (2 items: count, then key, value, key, value)
			i := bytes.LastIndex(bad, []byte{2, 'l'})
			if i < 0 {
				t.Fatal("no key l in the encoding")
			}
			bad[i+1] = 'k'
		}
		if _, err := pc.Decode(bad); err == nil {
			t.Errorf("%s in a skipped field: decoded", c.what)
		}
		if _, err := full.Decode(bad); err == nil {
			t.Errorf("%s: the full codec decoded it (the test's offsets are wrong)", c.what)
		}
		if err := fastDecodeAgrees(pc, bad); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
}

// A projection's Go field without a schema field (a misspelt json name) is refused when the
// codec is built, not read as a zero value on every record.
func TestProjectionFieldsExist(t *testing.T) {
	type item struct {
		Qty Unscaled `json:"quantity"`
	}
	type badItem struct {
		ID    string `json:"id"`
		Items []item `json:"items"`
	}
	type badTop struct {
		ID    string `json:"id"`
		Items []projItem
	}
	if _, err := NewProjectionCodec[badTop](projSchema); err == nil || !strings.Contains(err.Error(), `no field "Items"`) {
		t.Errorf("a field named by its Go name: err = %v", err)
	}
	if _, err := NewProjectionCodec[badItem](projSchema); err == nil || !strings.Contains(err.Error(), `no field "quantity"`) {
		t.Errorf("a nested field: err = %v", err)
	}
}

// The projection of a schema's decimal of precision > 18 into Unscaled is refused when the
// codec is built, naming the type.
func TestUnscaledNeedsPrecision18(t *testing.T) {
	s := strings.Replace(projSchema, `"precision":18,"scale":4`, `"precision":20,"scale":4`, 1)
	if _, err := NewProjectionCodec[proj](s); err == nil || !strings.Contains(err.Error(), "Unscaled") {
		t.Fatalf("err = %v", err)
	}
}

// The skipper (the goavro path's guard, and a projection's walk over the fields it lacks) walks
// exactly one value: every event schema's random values whole, and of their mutations every one
// the goavro path decodes; it refuses none of those.
func TestSkipperAcceptsWhatGoavroAccepts(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	checked, mutants := 0, 0
	for name, c := range eventCodecs(t) {
		skip := compileSkipper(c.writer)
		for i := range 150 {
			v := new(Event)
			(&valueGen{r: r, wild: []float64{0, 0.05}[i%2]}).fill(reflect.ValueOf(v).Elem(), 0)
			b, err := c.Encode(v)
			if err != nil {
				continue
			}
			if rest, err := skip(b, nil); err != nil || len(rest) != 0 {
				t.Fatalf("%s: the skipper left %d bytes (%v) of a value: % x", name, len(rest), err, b)
			}
			checked++
			for range 8 {
				m := mutate(r, b)
				var into Event
				if err := c.goavroDecodeInto(m, &into); err != nil {
					continue // refused by goavro (or by the guard, as oversized: goavro must not see those)
				}
				mutants++
				if rest, err := skip(m, nil); err != nil || len(rest) != 0 {
					t.Fatalf("%s: goavro decodes a mutated value the skipper refuses (%v, %d bytes left): % x", name, err, len(rest), m)
				}
			}
		}
	}
	if checked < 100 || mutants < 50 {
		t.Fatalf("only %d random events and %d decodable mutations", checked, mutants)
	}
}

// Decode and Project of one type on one Serde get codecs of their own: the projection's is
// decode-only and reads in place, the full one encodes and shares one copy of the record.
func TestProjectionCodecCachedApart(t *testing.T) {
	ctx := context.Background()
	s, err := NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.SchemaID(TopicOrders)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := codecForID[Event](ctx, s, id, TopicOrders, decodeProject)
	if err != nil {
		t.Fatal(err)
	}
	full, err := codecForID[Event](ctx, s, id, TopicOrders, decodeFull)
	if err != nil {
		t.Fatal(err)
	}
	if proj == full || full.fast == nil || full.fast.inPlace || full.enc == nil || proj.fast == nil || !proj.fast.inPlace || proj.enc != nil {
		t.Fatalf("Decode's codec %p (encodes: %t) and Project's %p share or swap their kinds", full, full.enc != nil, proj)
	}
}

// A borrowing projection decodes every value into one reused destination as the copying
// projection decodes it into a fresh one — across values with fewer or more items, absent
// optionals and malformed bytes between them — its strings point into the input, and once
// the destination has room a decode allocates nothing.
func TestBorrowingProjection(t *testing.T) {
	full, pc := projCodecs(t)
	bc, err := NewBorrowingProjectionCodec[proj](projSchema)
	if err != nil {
		t.Fatal(err)
	}
	if bc.fast == nil || !bc.fast.borrow || pc.fast.borrow {
		t.Fatal("the borrowing projection has no borrowing direct path, or the copying one borrows")
	}
	r := rand.New(rand.NewPCG(23, 5))
	var dst proj
	decoded := 0
	for i := range 800 {
		v := &projFull{}
		(&valueGen{r: r, wild: []float64{0, 0.05}[i%2]}).fill(reflect.ValueOf(v).Elem(), 0)
		v.Kind = "A"
		for j := range v.Items {
			v.Items[j].Grade = "B"
		}
		b, err := full.Encode(v)
		if err != nil {
			continue
		}
		if i%7 == 3 { // a malformed value between good ones: both fail, dst is not read after
			b = b[:len(b)/2]
		}
		want, werr := pc.Decode(b)
		gerr := bc.DecodeInto(b, &dst)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("value %d: copying projection error %v, borrowing %v", i, werr, gerr)
		}
		if werr != nil {
			continue
		}
		decoded++
		if d := cmp.Diff(*want, dst, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("value %d: borrowing decode differs (-copying +borrowing):\n%s", i, d)
		}
		if dst.ID != "" && !within(dst.ID, b) {
			t.Fatalf("value %d: the borrowed id is not a view of the input", i)
		}
	}
	if decoded < 300 {
		t.Fatalf("only %d values decoded", decoded)
	}

	big := &projFull{ID: "order-1", Tail: "t", Rate: &decimal.Zero, Items: make([]projFullItem, 5)}
	small := &projFull{ID: "order-2", Tail: "u", Rate: &decimal.Zero, Items: make([]projFullItem, 3)}
	bare := &projFull{ID: "order-3", Tail: "v"}
	var enc [3][]byte
	for i, v := range []*projFull{big, small, bare} {
		for j := range v.Items {
			v.Items[j] = projFullItem{SKU: "sku", Grade: "A", Qty: decimal.New(int64(j), 0), Tags: []string{}}
		}
		v.Kind, v.Attrs, v.Raw = "A", map[string]int64{}, []byte{}
		if enc[i], err = full.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.DecodeInto(enc[0], &dst); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = bc.DecodeInto(enc[1], &dst)
		_ = bc.DecodeInto(enc[0], &dst)
	}); n != 0 {
		t.Fatalf("a borrowing decode into a destination with room allocated %.1f times", n)
	}
	if err := bc.DecodeInto(enc[1], &dst); err != nil || dst.ID != "order-2" || len(dst.Items) != 3 || dst.Rate == nil {
		t.Fatalf("after the small value: %v, %+v", err, dst)
	}
	if err := bc.DecodeInto(enc[2], &dst); err != nil || dst.ID != "order-3" || len(dst.Items) != 0 || dst.Rate != nil {
		t.Fatalf("after the value without items or rate: %v, %+v", err, dst)
	}
}

// within reports whether s's bytes lie inside b.
func within(s string, b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= start && p+uintptr(len(s)) <= start+uintptr(len(b))
}

// ProjectInto reads framed events of several topics into one destination whose union group
// (the payload's branches) changes from value to value: the branch not in a value is nil.
func TestProjectInto(t *testing.T) {
	type line struct {
		OrderLineID string   `json:"order_line_id"`
		Quantity    Unscaled `json:"quantity"`
	}
	type shipLine struct {
		OrderLineID string   `json:"order_line_id"`
		Shipped     Unscaled `json:"quantity_shipped"`
	}
	type event struct {
		EventID string `json:"event_id"`
		Order   *struct {
			OrderID string  `json:"order_id"`
			Member  *string `json:"loyalty_member_id"`
			Lines   []line  `json:"lines"`
		} `avro:"payload=OrderAccepted"`
		Shipment *struct {
			Lines []shipLine `json:"lines"`
		} `avro:"payload=ShipmentConfirmed"`
		Return *struct {
			Lines []struct {
				OrderLineID string `json:"order_line_id"`
			} `json:"lines"`
		} `avro:"payload=ReturnReceived"`
	}
	ctx := context.Background()
	s, err := NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// the sample events this type reads (it names three payload branches; the others are refused)
	type framed struct {
		ref RecordRef
		b   []byte
	}
	var good []framed
	branches := map[[3]bool]bool{}
	for _, e := range sampleEvents() {
		topic, ok := TopicOf(e.EventType)
		if !ok {
			t.Fatalf("%s: no topic for %s", e.EventID, e.EventType)
		}
		b, err := s.EncodeEvent(topic, e)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := Project[event](ctx, s, RecordRef{Topic: topic}, b); err == nil {
			good = append(good, framed{RecordRef{Topic: topic}, b})
			branches[[3]bool{v.Order != nil, v.Shipment != nil, v.Return != nil}] = true
		}
	}
	if len(branches) != 3 {
		t.Fatalf("the sample events that decode (%d) cover %d of the three branches", len(good), len(branches))
	}
	// every event after every event (itself included), into a destination that holds the
	// first one's decode: each branch's struct and arrays reused, or replaced, or set to nil
	for _, a := range good {
		for _, b := range good {
			var dst event
			if err := ProjectInto(ctx, s, a.ref, a.b, &dst); err != nil {
				t.Fatal(err)
			}
			if err := ProjectInto(ctx, s, b.ref, b.b, &dst); err != nil {
				t.Fatal(err)
			}
			want, err := Project[event](ctx, s, b.ref, b.b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(*want, dst, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s after %s: ProjectInto differs (-Project +ProjectInto):\n%s", b.ref.Topic, a.ref.Topic, d)
			}
		}
	}
}

// Arrays written in several blocks (counts positive or negative with a byte size, as other
// writers do; goavro writes one) decode through a borrowing plan into a reused destination as
// they do fresh and on goavro's path, whatever the destination held before: a longer or a
// shorter array, its backing array grown across blocks.
func TestBorrowingProjectionBlocks(t *testing.T) {
	const schema = `{"type":"record","name":"M","fields":[
 {"name":"id","type":"string"},
 {"name":"xs","type":{"type":"array","items":{"type":"record","name":"X","fields":[
   {"name":"s","type":"string"},{"name":"q","type":"long"},{"name":"opt","type":["null","string"],"default":null}]}}}]}`
	type x struct {
		S   string  `json:"s"`
		Q   int64   `json:"q"`
		Opt *string `json:"opt"`
	}
	type m struct {
		ID string `json:"id"`
		Xs []x    `json:"xs"`
	}
	pc, err := NewProjectionCodec[m](schema)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := NewBorrowingProjectionCodec[m](schema)
	if err != nil {
		t.Fatal(err)
	}
	if bc.fast == nil || !bc.fast.borrow {
		t.Fatal("no borrowing direct path")
	}
	r := rand.New(rand.NewPCG(7, 8))
	item := func(b []byte, i int) []byte {
		b = appendString(b, strings.Repeat("s", r.IntN(4))+string(rune('a'+i%26)))
		b = appendLong(b, r.Int64N(1000)-500)
		if r.IntN(2) == 0 {
			return appendLong(b, 0)
		}
		return appendString(appendLong(b, 1), "o"+string(rune('a'+i%26)))
	}
	var dst m
	for i := range 3000 {
		b := appendString(nil, "m"+strings.Repeat("x", i%5))
		n := r.IntN(21)
		for left := n; left > 0; {
			c := 1 + r.IntN(left)
			if r.IntN(3) == 0 && left > 1 {
				c = left / 2
			}
			var items []byte
			for j := range c {
				items = item(items, n-left+j)
			}
			if r.IntN(2) == 0 {
				b = appendLong(b, int64(c))
			} else {
				b = appendLong(appendLong(b, -int64(c)), int64(len(items)))
			}
			b = append(b, items...)
			left -= c
		}
		b = appendLong(b, 0)
		if err := fastDecodeAgrees(pc, b); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		want, err := pc.Decode(b)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if err := bc.DecodeInto(b, &dst); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if d := cmp.Diff(*want, dst, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("value %d (%d items): borrowing decode differs (-fresh +borrowing):\n%s", i, n, d)
		}
	}
}
