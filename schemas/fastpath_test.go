package schemas

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"
)

// The direct binary path (fastpath.go) is checked against goavro, the reference: for every
// value it encodes byte-identically or fails where goavro fails; for every input it decodes to
// the identical value or fails where goavro fails.

// strictEqual compares decoded values exactly: decimals by coefficient and exponent (not only
// numerically), times by representation, nil and empty slices as different.
var strictEqual = []cmp.Option{
	cmp.Comparer(func(a, b decimal.Decimal) bool {
		return a.Exponent() == b.Exponent() && a.Coefficient().Cmp(b.Coefficient()) == 0
	}),
	cmp.Comparer(func(a, b time.Time) bool { return a == b }),
	cmp.Exporter(func(reflect.Type) bool { return true }),
}

// fastDecodeAgrees decodes b on both paths and reports any disagreement.
func fastDecodeAgrees[T any](c *Codec[T], b []byte) error {
	if c.fast == nil {
		return errors.New("codec has no direct path")
	}
	var fv, gv T
	rest, ferr := c.fast.dec(b, unsafe.Pointer(&fv))
	if ferr == nil && len(rest) > 0 {
		ferr = errFastInvalid
	}
	gerr := c.goavroDecodeInto(b, &gv)
	switch {
	case errors.Is(ferr, errFastUnsupported):
		return nil
	case ferr != nil && gerr == nil:
		return fmt.Errorf("direct path refused input that goavro decodes: % x", b)
	case ferr == nil && gerr != nil:
		return fmt.Errorf("direct path decoded input that goavro refuses (%v): % x", gerr, b)
	case ferr == nil:
		if d := cmp.Diff(gv, fv, strictEqual...); d != "" {
			return fmt.Errorf("decoded values differ (-goavro +direct):\n%s", d)
		}
	}
	return nil
}

// fastEncodeAgrees encodes v on both paths and reports any disagreement; it returns the
// bytes when both succeed.
func fastEncodeAgrees[T any](c *Codec[T], v *T) ([]byte, error) {
	if c.fast == nil {
		return nil, errors.New("codec has no direct path")
	}
	prefix := []byte{9, 9} // appends after existing bytes
	fb, ferr := c.fast.enc(append([]byte(nil), prefix...), unsafe.Pointer(v))
	gb, gerr := c.goavroEncode(append([]byte(nil), prefix...), v)
	switch {
	case errors.Is(ferr, errFastUnsupported):
		return nil, nil
	case ferr != nil && gerr == nil:
		return nil, errors.New("direct path refused a value that goavro encodes")
	case ferr == nil && gerr != nil:
		return nil, fmt.Errorf("direct path encoded a value that goavro refuses: %v", gerr)
	case ferr == nil && string(fb) != string(gb):
		return nil, fmt.Errorf("encodings differ:\n goavro % x\n direct % x", gb, fb)
	case ferr == nil:
		return fb[len(prefix):], nil
	}
	return nil, nil
}

// valueGen fills Go values with random contents: mostly values every schema accepts, and, with
// probability wild per leaf, values some schema refuses (too many decimal places or digits,
// years outside 1–9999, int overflow, several or no union bodies).
type valueGen struct {
	r      *rand.Rand
	wild   float64
	bodies map[string]bool // json names of the union members to choose from; nil: any
}

func (g *valueGen) fill(v reflect.Value, depth int) {
	t := v.Type()
	switch {
	case t == decimalType:
		v.Set(reflect.ValueOf(g.decimal()))
		return
	case t == timeType:
		v.Set(reflect.ValueOf(g.time()))
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(g.r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch g.r.IntN(4) {
		case 0:
			i = 0
		case 1:
			i = g.r.Int64N(300) - 150
		default:
			i = g.r.Int64N(1 << 31)
		}
		if g.chaos() {
			i = g.r.Int64() - g.r.Int64()
		}
		if !v.OverflowInt(i) {
			v.SetInt(i)
		}
	case reflect.String:
		v.SetString(g.string())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if g.r.IntN(4) == 0 {
				return // nil
			}
			b := make([]byte, g.r.IntN(6))
			for i := range b {
				b[i] = byte(g.r.UintN(256))
			}
			v.SetBytes(b)
			return
		}
		n := g.r.IntN(4)
		if depth > 4 {
			n = 0
		}
		if n == 0 {
			if g.r.IntN(3) == 0 {
				v.Set(reflect.MakeSlice(t, 0, 0)) // empty, not nil
			}
			return
		}
		s := reflect.MakeSlice(t, n, n)
		for i := 0; i < n; i++ {
			g.fill(s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Pointer:
		if depth > 4 || g.r.IntN(3) == 0 {
			return
		}
		p := reflect.New(t.Elem())
		g.fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Map:
		if depth > 4 || g.r.IntN(2) == 0 {
			return
		}
		m := reflect.MakeMap(t)
		for i := g.r.IntN(3); i > 0; i-- {
			k := reflect.New(t.Key()).Elem()
			g.fill(k, depth+1)
			e := reflect.New(t.Elem()).Elem()
			g.fill(e, depth+1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		g.fillStruct(v, depth)
	}
}

// fillStruct fills every exported field; of a group of tagged union members (the Event body)
// it sets exactly one, unless wild.
func (g *valueGen) fillStruct(v reflect.Value, depth int) {
	t := v.Type()
	var members []int
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case !f.IsExported():
		case f.Tag.Get("avro") != "":
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if g.bodies == nil || g.bodies[name] || g.chaos() {
				members = append(members, i)
			}
		default:
			g.fill(v.Field(i), depth+1)
		}
	}
	if len(members) == 0 {
		return
	}
	set := 1
	if g.chaos() {
		set = g.r.IntN(3) // none, one or two
	}
	for ; set > 0; set-- {
		f := v.Field(members[g.r.IntN(len(members))])
		p := reflect.New(f.Type().Elem())
		g.fill(p.Elem(), depth+1)
		f.Set(p)
	}
}

func (g *valueGen) chaos() bool { return g.wild > 0 && g.r.Float64() < g.wild }

func (g *valueGen) string() string {
	const alphabet = "AZaz09-_.é\x00€"
	var b strings.Builder
	for i := g.r.IntN(9); i > 0; i-- {
		b.WriteByte(alphabet[g.r.IntN(len(alphabet))])
	}
	return b.String()
}

func (g *valueGen) decimal() decimal.Decimal {
	if g.chaos() {
		coef := g.r.Int64() >> g.r.UintN(64)
		if g.r.IntN(2) == 0 {
			coef = -coef
		}
		d := decimal.New(coef, int32(g.r.IntN(40))-25)
		if g.r.IntN(4) == 0 { // a coefficient beyond int64 that may still fit
			d = d.Mul(decimal.New(1, 20)).Shift(-20)
		}
		return d
	}
	switch g.r.IntN(5) {
	case 0:
		return decimal.Decimal{}
	case 1:
		return decimal.New(0, -int32(g.r.IntN(5)))
	}
	// Below 1000 with at most 3 places: fits decimal(12,3), (18,4), (9,6) and (18,9);
	// sometimes up to 10^8 (fits all but (9,6)).
	k := g.r.IntN(4)
	limit := pow10Int64[3+k]
	if g.r.IntN(8) == 0 {
		limit = pow10Int64[8+k]
	}
	return decimal.New(g.r.Int64N(2*limit-1)-(limit-1), -int32(k))
}

func (g *valueGen) time() time.Time {
	if g.chaos() {
		switch g.r.IntN(3) {
		case 0:
			return time.Time{}.Add(-time.Hour) // year 0
		case 1:
			return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.FixedZone("x", 3600))
	}
	if g.r.IntN(6) == 0 {
		return time.Time{}
	}
	us := g.r.Int64N(4_000_000_000_000_000) - 1_000_000_000_000_000
	tm := time.UnixMicro(us)
	if g.r.IntN(4) == 0 {
		tm = tm.Add(time.Duration(g.r.IntN(1000))) // sub-microsecond part, truncated on encode
	}
	if g.r.IntN(3) == 0 {
		return tm.In(time.FixedZone("CET", 3600))
	}
	return tm.UTC()
}

// mutate returns a copy of b with a few random byte-level changes.
func mutate(r *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	for n := 1 + r.IntN(3); n > 0; n-- {
		switch r.IntN(5) {
		case 0:
			if len(out) > 0 {
				out[r.IntN(len(out))] ^= byte(1 << r.UintN(8))
			}
		case 1:
			if len(out) > 0 {
				out[r.IntN(len(out))] = byte(r.UintN(256))
			}
		case 2:
			out = out[:r.IntN(len(out)+1)]
		case 3:
			i := r.IntN(len(out) + 1)
			out = append(out[:i], append([]byte{byte(r.UintN(256))}, out[i:]...)...)
		case 4: // a large varint somewhere: block counts, lengths, union indexes
			i := r.IntN(len(out) + 1)
			big := []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}
			out = append(out[:i], append(big[r.IntN(len(big)):], out[i:]...)...)
		}
	}
	return out
}

// checkFastAgreement runs n random values of T through codec c: encode on both paths, decode
// the encoding and mutations of it on both paths.
func checkFastAgreement[T any](t *testing.T, c *Codec[T], seed uint64, n int, bodies map[string]bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	encoded := 0
	for i := 0; i < n; i++ {
		g := &valueGen{r: r, wild: []float64{0, 0, 0.02, 0.2}[i%4], bodies: bodies}
		v := new(T)
		g.fill(reflect.ValueOf(v).Elem(), 0)
		b, err := fastEncodeAgrees(c, v)
		if err != nil {
			t.Fatalf("value %d: %v\n%+v", i, err, v)
		}
		if b == nil {
			continue
		}
		encoded++
		if err := fastDecodeAgrees(c, b); err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		for j := 0; j < 8; j++ {
			if err := fastDecodeAgrees(c, mutate(r, b)); err != nil {
				t.Fatalf("value %d mutation %d: %v", i, j, err)
			}
		}
	}
	if encoded < n/4 {
		t.Fatalf("only %d of %d random values encoded: the generator does not exercise the codec", encoded, n)
	}
}

// topicCodecs are the codecs the pipeline uses, by schema name.
func eventCodecs(t testing.TB) map[SchemaName]*Codec[Event] {
	out := map[SchemaName]*Codec[Event]{}
	for _, topic := range []Topic{TopicOrders, TopicShipments, TopicReturns, TopicLoyalty, TopicERP, TopicCommands} {
		name, _ := ValueSchema(topic)
		c, err := NewCodec[Event](name)
		if err != nil {
			t.Fatal(err)
		}
		if c.fast == nil {
			t.Fatalf("%s: no direct binary path", name)
		}
		out[name] = c
	}
	return out
}

func TestFastPathAgreesWithGoavro(t *testing.T) {
	for name, c := range eventCodecs(t) {
		t.Run(string(name), func(t *testing.T) {
			// Random events, mostly with a body the topic carries.
			carried := map[string]bool{}
			for _, b := range bodies {
				if n, _ := ValueSchema(b.topic); n == name {
					carried[b.key] = true
				}
			}
			checkFastAgreement(t, c, uint64(len(name)), 1500, carried)
		})
	}
	t.Run("dlq", func(t *testing.T) {
		c, err := NewCodec[DeadLetter]("dlq")
		if err != nil {
			t.Fatal(err)
		}
		checkFastAgreement(t, c, 1, 1000, nil)
	})
}

// TestFastPathOnSamples checks agreement on every fixture, and that the codec takes the
// direct path for them (no fallback).
func TestFastPathOnSamples(t *testing.T) {
	codecs := eventCodecs(t)
	for _, e := range sampleEvents() {
		topic, _ := TopicOf(e.BodyType())
		name, _ := ValueSchema(topic)
		c := codecs[name]
		b, err := fastEncodeAgrees(c, e)
		if err != nil || b == nil {
			t.Fatalf("%s: %v", e.EventType, err)
		}
		if err := fastDecodeAgrees(c, b); err != nil {
			t.Fatalf("%s: %v", e.EventType, err)
		}
		var got Event
		if rest, err := c.fast.dec(b, unsafe.Pointer(&got)); err != nil || len(rest) != 0 {
			t.Fatalf("%s: direct decode: %v", e.EventType, err)
		}
	}
}

// TestGoavroPathRefusesOversizedBlocks: a 7-byte value claiming 2^31-1 array items made goavro
// allocate 32 GiB (fatal, unrecoverable); both paths now refuse it as an ordinary error.
func TestGoavroPathRefusesOversizedBlocks(t *testing.T) {
	c, err := NewCodecFromSchema[[]string](`{"type":"array","items":"string"}`)
	if err != nil {
		t.Fatal(err)
	}
	hostile := []byte{0xfe, 0xff, 0xff, 0xff, 0x0f, 0x02, 'a'}
	var v []string
	if err := c.goavroDecodeInto(hostile, &v); err == nil || !strings.Contains(err.Error(), "claims more items") {
		t.Fatalf("goavro path: err = %v", err)
	}
	if _, err := c.Decode(hostile); err == nil {
		t.Fatal("decoded")
	}
	ok := []byte{0x04, 0x02, 'a', 0x02, 'b', 0x00}
	if got, err := c.Decode(ok); err != nil || len(*got) != 2 {
		t.Fatalf("valid array: %v %v", got, err)
	}
}

// FuzzFastDecode: on arbitrary bytes, as a value of every topic, the direct path and goavro
// agree (same value, or both refuse), and nothing panics.
func FuzzFastDecode(f *testing.F) {
	codecs := eventCodecs(f)
	dlq, err := NewCodec[DeadLetter]("dlq")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range sampleEvents() {
		topic, _ := TopicOf(e.BodyType())
		name, _ := ValueSchema(topic)
		b, err := codecs[name].Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := dlq.Encode(sampleDeadLetter())
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0xfe, 0xff, 0xff, 0xff, 0x0f, 0x02, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, c := range codecs {
			if err := fastDecodeAgrees(c, b); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if err := fastDecodeAgrees(dlq, b); err != nil {
			t.Fatalf("dlq: %v", err)
		}
	})
}

// FuzzFastEncode: for random values (drawn from the fuzzed seed, wild or not), the direct path
// writes exactly goavro's bytes or fails where goavro fails.
func FuzzFastEncode(f *testing.F) {
	codecs := eventCodecs(f)
	dlq, err := NewCodec[DeadLetter]("dlq")
	if err != nil {
		f.Fatal(err)
	}
	for i := range 8 {
		f.Add(uint64(i), uint8(i*30))
	}
	f.Fuzz(func(t *testing.T, seed uint64, wild uint8) {
		g := &valueGen{r: rand.New(rand.NewPCG(seed, 11)), wild: float64(wild) / 512}
		for name, c := range codecs {
			g.bodies = map[string]bool{}
			for _, b := range bodies {
				if n, _ := ValueSchema(b.topic); n == name {
					g.bodies[b.key] = true
				}
			}
			var e Event
			g.fill(reflect.ValueOf(&e).Elem(), 0)
			if _, err := fastEncodeAgrees(c, &e); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		var d DeadLetter
		g.fill(reflect.ValueOf(&d).Elem(), 0)
		if _, err := fastEncodeAgrees(dlq, &d); err != nil {
			t.Fatalf("dlq: %v", err)
		}
	})
}

// A type that exercises what the direct path supports beyond retailflow's own schemas: enums,
// Avro int into narrow Go integers, nested arrays, nullable array items, a non-pointer Go value
// for ["null", T], a nullable array, optional decimals.
type fastShape struct {
	Kind   string           `json:"kind"`
	Small  int16            `json:"small"`
	Count  int32            `json:"count"`
	Grid   [][]string       `json:"grid"`
	Maybe  []*string        `json:"maybe"`
	Plain  string           `json:"plain"`
	Opt    []int64          `json:"opt"`
	Amount *decimal.Decimal `json:"amount"`
	At     time.Time        `json:"at"`
	Flag   bool             `json:"flag"`
	Raw    []byte           `json:"raw"`
}

const fastShapeSchema = `{"type":"record","name":"S","fields":[
 {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},
 {"name":"small","type":"int"},
 {"name":"count","type":"int"},
 {"name":"grid","type":{"type":"array","items":{"type":"array","items":"string"}}},
 {"name":"maybe","type":{"type":"array","items":["null","string"]}},
 {"name":"plain","type":["null","string"]},
 {"name":"opt","type":["null",{"type":"array","items":"long"}]},
 {"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}]},
 {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"flag","type":"boolean"},
 {"name":"raw","type":"bytes"}]}`

func TestFastPathAgreesOnOtherShapes(t *testing.T) {
	c, err := NewCodecFromSchema[fastShape](fastShapeSchema)
	if err != nil {
		t.Fatal(err)
	}
	// Enum symbols are rarely drawn at random: half of the values get a valid one.
	r := rand.New(rand.NewPCG(5, 5))
	encoded := 0
	for i := 0; i < 3000; i++ {
		g := &valueGen{r: r, wild: []float64{0, 0.05, 0.3}[i%3]}
		var v fastShape
		g.fill(reflect.ValueOf(&v).Elem(), 0)
		if i%2 == 0 {
			v.Kind = []string{"A", "B", "C"}[r.IntN(3)]
		}
		b, err := fastEncodeAgrees(c, &v)
		if err != nil {
			t.Fatalf("value %d: %v\n%+v", i, err, v)
		}
		if b == nil {
			continue
		}
		encoded++
		if err := fastDecodeAgrees(c, b); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 8; j++ {
			if err := fastDecodeAgrees(c, mutate(r, b)); err != nil {
				t.Fatalf("value %d mutation %d: %v", i, j, err)
			}
		}
	}
	if encoded < 500 {
		t.Fatalf("only %d values encoded", encoded)
	}
	// Encodings goavro never writes but other writers do: arrays in several blocks, blocks
	// with a negative count and a byte size, overlong varints, non-minimal decimals.
	tenNulls, nineNulls := make([]byte, 10), make([]byte, 9)
	longBlocks := append(append(append(append([]byte{0, 0, 0, 0, 0x14}, tenNulls...), 0x12), nineNulls...), 0, 0, 0, 0, 0, 0, 0)
	for i, b := range [][]byte{ // the first five are valid
		// maybe = 19 nulls in a block of 10 and one of 9 (larger than the small-array sizes)
		longBlocks,
		// kind=B small=-1 count=1 grid=[[x],[y]] in two blocks (second with count -1, size 4) maybe=[] plain=null opt=null amount=null at=0 flag raw
		{2, 1, 2, 2, 2, 2, 'x', 0, 1, 4, 2, 2, 'y', 0, 0, 0, 0, 0, 0, 0, 1, 0},
		// small as an overlong varint (0x81 0x80 0x00 = 1 with padding), opt = [] (non-null, empty)
		{0, 0x81, 0x80, 0x00, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0},
		// amount = 2 bytes 00 05 (non-minimal 0.05) and ff ff fb (non-minimal -0.05)
		{0, 0, 0, 0, 0, 0, 0, 2, 4, 0, 5, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 2, 6, 0xff, 0xff, 0xfb, 0, 0, 0},
		// amount = 10^9 (exceeds precision 9): refused by both
		{0, 0, 0, 0, 0, 0, 0, 2, 8, 0x3b, 0x9a, 0xca, 0x00, 0, 0, 0},
		// small = 40000 (Avro int, overflows int16): refused by both
		{0, 0x80, 0xf1, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		// enum index 3 of 3 symbols: refused by both
		{6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if err := fastDecodeAgrees(c, b); err != nil {
			t.Errorf("% x: %v", b, err)
		}
		if _, err := c.Decode(b); (err == nil) != (i < 5) {
			t.Errorf("case %d: err = %v", i, err)
		}
	}
}

// A decoded decimal comes from decimalCache when a slot holds the same value: equal to a fresh
// one, without an allocation on a hit, and right when two values share a slot or decoders on
// several goroutines replace each other's slots (run with -race).
func TestDecimalCache(t *testing.T) {
	decode := func(u int64, scale int) decimal.Decimal {
		t.Helper()
		var b []byte
		for i := 7; i >= 0; i-- {
			b = append(b, byte(u>>(8*i)))
		}
		d, ok := decimalFromBytes(b, 18, scale)
		if !ok {
			t.Fatalf("decimalFromBytes(%d, scale %d) refused", u, scale)
		}
		if want := decimal.New(u, int32(-scale)); !d.Equal(want) || d.Exponent() != want.Exponent() {
			t.Fatalf("decoded %d at scale %d as %s (exponent %d), want %s", u, scale, d, d.Exponent(), want)
		}
		return d
	}
	decode(129900, 4)
	b := []byte{0x01, 0xfb, 0x6c} // 129900
	if n := testing.AllocsPerRun(100, func() { decimalFromBytes(b, 18, 4) }); n != 0 {
		t.Errorf("a cached value allocated %.0f times per decode", n)
	}
	// the same coefficient at another scale is another value, also when the slot holds it
	decode(129900, 2)
	decode(129900, 4)
	// an entry is matched by its own key, never by the decimal it holds
	decimalCache[decimalSlot(129900, -4)].Store(&decimalEntry{u: 129900, exp: -2, d: decimal.New(129900, -2)})
	decode(129900, 4)
	// values that share a slot evict each other and are still decoded right
	slotOf := func(u int64, scale int) uint64 { return decimalSlot(u, int32(-scale)) }
	other := int64(129901)
	for slotOf(other, 4) != slotOf(129900, 4) {
		other++
	}
	for range 3 {
		decode(129900, 4)
		decode(other, 4)
		decode(-other, 4)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20000 {
				u, scale := r.Int64N(4096)*37-70000, 2+r.IntN(3)
				var b []byte
				for i := 7; i >= 0; i-- {
					b = append(b, byte(u>>(8*i)))
				}
				d, ok := decimalFromBytes(b, 18, scale)
				if want := decimal.New(u, int32(-scale)); !ok || !d.Equal(want) || d.Exponent() != want.Exponent() {
					t.Errorf("goroutine %d: %d at scale %d decoded as %s", g, u, scale, d)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
