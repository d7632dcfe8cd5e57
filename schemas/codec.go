package schemas

import (
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
)

// Codec converts between Go values of type T and the Avro binary encoding of one schema
// (the body only; Serde adds the Confluent header).
//
// The mapping is by reflection over T's `json` tags: an Avro field maps to the Go field whose
// json name equals the Avro field name; embedded structs without a json name are flattened
// (Envelope into every event record). Supported: records ↔ structs, arrays ↔ slices, maps ↔
// map[string]V, ["null", X] ↔ *X (or a nil slice/map/[]byte), bytes decimal(p,s) ↔
// decimal.Decimal (exact: a value with more than s decimal places or more than p digits is
// rejected, never rounded), long timestamp-micros/millis ↔ time.Time (UTC, truncated to the
// unit; years 1–9999), int ↔ int32/int, long ↔ int64/int, boolean, string and enum ↔ string
// kinds, bytes ↔ []byte, float/double ↔ float32/float64. A union of records maps to a group of
// pointer fields tagged `avro:"<field>=<BranchRecordName>"`, exactly one of which is non-nil
// (the Event sum type).
//
// A codec made by NewCodec or NewCodecFromSchema encodes and decodes, and requires every Go
// field to have an Avro field and every Avro field without default to have a Go field. One made
// by NewResolvingCodec only decodes: it reads data written with an older or newer writer schema
// into T, ignoring writer fields T lacks and filling T's fields the writer lacked with the
// reader schema's defaults (goavro has no schema resolution of its own).
//
// Encoding and decoding take the direct binary path (fastpath.go) when T and the schema are
// covered by it, and goavro's otherwise; both give the same bytes and values (doc.go).
//
// A Codec is immutable and safe for concurrent use; build it once and keep it.
type Codec[T any] struct {
	schema string // compact writer schema text
	avro   *goavro.Codec
	enc    encFn // nil for a decode-only codec (a projection, or resolving an older writer)
	dec    decFn
	fast   *fastCodec // direct binary path (fastpath.go); nil when the pair is not covered

	writer *avroType
	guard  fastDec // the writer schema's skipper (fastPlanner.skipper): walked before goavro
}

// NewCodec returns a codec for T against the embedded schema with that name
// (see SchemaNames), e.g. NewCodec[schemas.Event]("orders") or, from another package,
// NewCodec[ledger.State]("order_ledger").
func NewCodec[T any](name SchemaName) (*Codec[T], error) {
	text, err := SchemaText(name)
	if err != nil {
		return nil, err
	}
	c, err := NewCodecFromSchema[T](text)
	if err != nil {
		return nil, fmt.Errorf("schemas: codec %s for %s: %w", reflect.TypeFor[T](), name, err)
	}
	return c, nil
}

// NewCodecFromSchema returns an encoding and decoding codec for T against schema text.
func NewCodecFromSchema[T any](schema string) (*Codec[T], error) {
	return newCodec[T](schema, "", true)
}

// NewResolvingCodec returns a decode-only codec that reads data written with writerSchema
// into T, taking defaults for fields the writer lacked from readerSchema (T's current schema).
// Encode on it returns an error.
func NewResolvingCodec[T any](writerSchema, readerSchema string) (*Codec[T], error) {
	return newCodec[T](writerSchema, readerSchema, false)
}

func newCodec[T any](writerText, readerText string, encode bool) (*Codec[T], error) {
	compact, err := compactJSON(writerText)
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	w, err := parseAvroSchema(compact)
	if err != nil {
		return nil, err
	}
	r := w
	if readerText != "" {
		if r, err = parseAvroSchema(readerText); err != nil {
			return nil, fmt.Errorf("reader schema: %w", err)
		}
	}
	ac, err := goavro.NewCodec(compact)
	if err != nil {
		return nil, fmt.Errorf("goavro: %w", err)
	}
	t := reflect.TypeFor[T]()
	p := &planner{encs: map[planKey]*encFn{}, decs: map[planKey]*decFn{}, strict: encode}
	c := &Codec[T]{schema: compact, avro: ac, writer: w, guard: compileSkipper(w)}
	if encode {
		if c.enc, err = p.encoder(t, w); err != nil {
			return nil, err
		}
	}
	if c.dec, err = p.decoder(t, w, r); err != nil {
		return nil, err
	}
	if encode {
		// Only for writer = reader; errNoFastPlan just leaves the codec on the goavro path.
		c.fast, _ = compileFast(t, w)
	}
	return c, nil
}

// Schema returns the codec's writer schema, compacted.
func (c *Codec[T]) Schema() string { return c.schema }

// Encode returns the Avro binary encoding of *v.
func (c *Codec[T]) Encode(v *T) ([]byte, error) { return c.AppendEncode(nil, v) }

// AppendEncode appends the Avro binary encoding of *v to dst. Errors name the field path
// (`payload.lines[2].quantity: …`).
func (c *Codec[T]) AppendEncode(dst []byte, v *T) ([]byte, error) {
	if c.fast != nil && c.fast.enc != nil && v != nil {
		if out, err := c.fast.enc(dst, unsafe.Pointer(v)); err == nil {
			return out, nil
		}
		// The goavro path reports the error with its field path (or encodes what the direct
		// path does not handle).
	}
	return c.goavroEncode(dst, v)
}

// goavroEncode is the reference encoding: Go value → goavro native form → bytes.
func (c *Codec[T]) goavroEncode(dst []byte, v *T) ([]byte, error) {
	if c.enc == nil {
		return dst, errors.New("schemas: codec is decode-only (a projection, or resolving an older writer schema)")
	}
	if v == nil {
		return dst, errors.New("schemas: encode nil value")
	}
	native, err := c.enc(reflect.ValueOf(v).Elem())
	if err != nil {
		return dst, err
	}
	out, err := c.avro.BinaryFromNative(dst, native)
	if err != nil {
		return dst, fmt.Errorf("goavro: %w", err)
	}
	return out, nil
}

// Decode decodes one Avro binary value; bytes left over after the value are an error.
// Decoding arbitrary bytes never panics.
func (c *Codec[T]) Decode(b []byte) (*T, error) {
	v := new(T)
	if err := c.DecodeInto(b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// DecodeInto decodes into *v, which should be the zero value.
func (c *Codec[T]) DecodeInto(b []byte, v *T) (err error) {
	defer func() {
		// A record must never crash the processor: a panic (goavro has had index-out-of-range
		// bugs on hostile input) becomes an avro error for this record.
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panicked on input: %v", r)
		}
	}()
	if c.fast != nil {
		// The direct path reads from an immutable copy of b (one allocation), and every string
		// it decodes is a slice of that copy instead of an allocation of its own: a decoded
		// ledger state has dozens of strings. A string keeps the whole copy alive, which is
		// about what its value's strings took before. A projection's plan (inPlace) reads b
		// itself and copies its few strings: they must not keep a whole record alive.
		in := b
		if !c.fast.inPlace {
			own := string(b)
			in = unsafe.Slice(unsafe.StringData(own), len(own))
		}
		rest, err := c.fast.dec(in, unsafe.Pointer(v))
		if err == nil && len(rest) == 0 {
			return nil
		}
		// The goavro path reports the error (or decodes what the direct path does not handle).
		var zero T
		*v = zero
	}
	return c.goavroDecodeInto(b, v)
}

// goavroDecodeInto is the reference decoding: bytes → goavro native form → Go value.
func (c *Codec[T]) goavroDecodeInto(b []byte, v *T) error {
	if _, err := c.guard(b, nil); errors.Is(err, errOversized) {
		return err
	}
	native, rest, err := c.avro.NativeFromBinary(b)
	if err != nil {
		return fmt.Errorf("goavro: %w", err)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%d bytes left after the value", len(rest))
	}
	return c.dec(native, reflect.ValueOf(v).Elem())
}

// ---------------------------------------------------------------------------- planning

type (
	encFn func(v reflect.Value) (any, error)
	decFn func(native any, dst reflect.Value) error
)

type planKey struct {
	w, r *avroType
	t    reflect.Type
}

// planner builds encoders and decoders; the maps make recursive types terminate.
type planner struct {
	encs   map[planKey]*encFn
	decs   map[planKey]*decFn
	strict bool
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	decimalType = reflect.TypeFor[decimal.Decimal]()
	bytesType   = reflect.TypeFor[[]byte]()
)

// pathError prefixes an error with the field path where it happened.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// atPath prefixes err with a path segment: a field name or "[i]" / "[key]".
func atPath(seg string, err error) error {
	var pe *pathError
	if errors.As(err, &pe) && pe == err {
		if strings.HasPrefix(pe.path, "[") {
			return &pathError{path: seg + pe.path, err: pe.err}
		}
		return &pathError{path: seg + "." + pe.path, err: pe.err}
	}
	return &pathError{path: seg, err: err}
}

// goField is a field of a Go struct as the codec sees it.
type goField struct {
	name   string // json name
	index  []int
	typ    reflect.Type
	union  string // for `avro:"union=Branch"` fields: the Avro union field name
	branch string // … and the branch record's short name
}

// goFields lists a struct's mapped fields, flattening embedded structs without a json name.
func goFields(t reflect.Type) []goField {
	var out []goField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range goFields(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		gf := goField{name: name, index: []int{i}, typ: f.Type}
		if a := f.Tag.Get("avro"); a != "" {
			gf.union, gf.branch, _ = strings.Cut(a, "=")
		}
		out = append(out, gf)
	}
	return out
}

func (p *planner) encoder(t reflect.Type, a *avroType) (encFn, error) {
	k := planKey{w: a, t: t}
	if f, ok := p.encs[k]; ok {
		return func(v reflect.Value) (any, error) { return (*f)(v) }, nil
	}
	slot := new(encFn)
	p.encs[k] = slot
	f, err := p.buildEncoder(t, a)
	if err != nil {
		delete(p.encs, k)
		return nil, err
	}
	*slot = f
	return f, nil
}

func (p *planner) decoder(t reflect.Type, w, r *avroType) (decFn, error) {
	k := planKey{w: w, r: r, t: t}
	if f, ok := p.decs[k]; ok {
		return func(n any, v reflect.Value) error { return (*f)(n, v) }, nil
	}
	slot := new(decFn)
	p.decs[k] = slot
	f, err := p.buildDecoder(t, w, r)
	if err != nil {
		delete(p.decs, k)
		return nil, err
	}
	*slot = f
	return f, nil
}

func mismatch(t reflect.Type, a *avroType) error {
	return fmt.Errorf("Go type %s cannot map to Avro %s", t, a)
}

// ---------------------------------------------------------------------------- encoding

func (p *planner) buildEncoder(t reflect.Type, a *avroType) (encFn, error) {
	if a.kind == "union" {
		return p.unionEncoder(t, a)
	}
	if t.Kind() == reflect.Pointer {
		elem, err := p.encoder(t.Elem(), a)
		if err != nil {
			return nil, err
		}
		return func(v reflect.Value) (any, error) {
			if v.IsNil() {
				return nil, fmt.Errorf("nil, but Avro %s is not nullable", a)
			}
			return elem(v.Elem())
		}, nil
	}
	switch {
	case a.logical == "decimal" && a.kind == "bytes":
		if t != decimalType {
			return nil, mismatch(t, a)
		}
		prec, scale := a.prec, a.scale
		return func(v reflect.Value) (any, error) {
			return decimalToRat(v.Interface().(decimal.Decimal), prec, scale)
		}, nil
	case a.kind == "long" && (a.logical == "timestamp-micros" || a.logical == "timestamp-millis"):
		if t != timeType {
			return nil, mismatch(t, a)
		}
		return func(v reflect.Value) (any, error) {
			tm := v.Interface().(time.Time)
			if y := tm.UTC().Year(); y < 1 || y > 9999 {
				return nil, fmt.Errorf("time %s outside years 1-9999", tm)
			}
			// The native form is int64 micros so goavro's own time conversion is not involved.
			return tm.Unix()*1e6 + int64(tm.Nanosecond()/1e3), nil
		}, nil
	}
	switch a.kind {
	case "null":
		return func(reflect.Value) (any, error) { return nil, nil }, nil
	case "boolean":
		if t.Kind() != reflect.Bool {
			return nil, mismatch(t, a)
		}
		return func(v reflect.Value) (any, error) { return v.Bool(), nil }, nil
	case "int", "long":
		if !isInt(t) {
			return nil, mismatch(t, a)
		}
		if a.kind == "int" {
			return func(v reflect.Value) (any, error) {
				i := v.Int()
				if int64(int32(i)) != i {
					return nil, fmt.Errorf("%d overflows Avro int", i)
				}
				return int32(i), nil
			}, nil
		}
		return func(v reflect.Value) (any, error) { return v.Int(), nil }, nil
	case "float", "double":
		if t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
			return nil, mismatch(t, a)
		}
		if a.kind == "float" {
			return func(v reflect.Value) (any, error) { return float32(v.Float()), nil }, nil
		}
		return func(v reflect.Value) (any, error) { return v.Float(), nil }, nil
	case "string", "enum":
		if t.Kind() != reflect.String {
			return nil, mismatch(t, a)
		}
		if a.kind == "enum" {
			syms := a.symbols
			return func(v reflect.Value) (any, error) {
				s := v.String()
				for _, sym := range syms {
					if sym == s {
						return s, nil
					}
				}
				return nil, fmt.Errorf("%q is not a symbol of enum %s", s, a.name)
			}, nil
		}
		return func(v reflect.Value) (any, error) { return v.String(), nil }, nil
	case "bytes":
		if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8 {
			return nil, mismatch(t, a)
		}
		return func(v reflect.Value) (any, error) {
			b := v.Bytes()
			if b == nil {
				b = []byte{}
			}
			return b, nil
		}, nil
	case "array":
		if t.Kind() != reflect.Slice || t == bytesType {
			return nil, mismatch(t, a)
		}
		item, err := p.encoder(t.Elem(), a.items)
		if err != nil {
			return nil, atPath("[]", err)
		}
		return func(v reflect.Value) (any, error) {
			out := make([]any, v.Len())
			for i := range out {
				n, err := item(v.Index(i))
				if err != nil {
					return nil, atPath(fmt.Sprintf("[%d]", i), err)
				}
				out[i] = n
			}
			return out, nil
		}, nil
	case "map":
		if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
			return nil, mismatch(t, a)
		}
		val, err := p.encoder(t.Elem(), a.values)
		if err != nil {
			return nil, atPath("[]", err)
		}
		return func(v reflect.Value) (any, error) {
			out := make(map[string]any, v.Len())
			it := v.MapRange()
			for it.Next() {
				n, err := val(it.Value())
				if err != nil {
					return nil, atPath(fmt.Sprintf("[%q]", it.Key().String()), err)
				}
				out[it.Key().String()] = n
			}
			return out, nil
		}, nil
	case "record":
		if t.Kind() != reflect.Struct {
			return nil, mismatch(t, a)
		}
		return p.recordEncoder(t, a)
	}
	return nil, fmt.Errorf("Avro %s is not supported", a)
}

func isInt(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func (p *planner) unionEncoder(t reflect.Type, a *avroType) (encFn, error) {
	other, hasNull := a.nullable()
	if other == nil {
		return nil, fmt.Errorf("union %s maps only to a tagged group of fields (`avro:\"field=Branch\"`) or to a pointer for [\"null\", T]", a)
	}
	key := other.unionKey()
	switch {
	case t.Kind() == reflect.Pointer && hasNull:
		elem, err := p.encoder(t.Elem(), other)
		if err != nil {
			return nil, err
		}
		return func(v reflect.Value) (any, error) {
			if v.IsNil() {
				return nil, nil
			}
			n, err := elem(v.Elem())
			if err != nil {
				return nil, err
			}
			return map[string]any{key: n}, nil
		}, nil
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Map) && hasNull:
		elem, err := p.encoder(t, other)
		if err != nil {
			return nil, err
		}
		return func(v reflect.Value) (any, error) {
			if v.IsNil() {
				return nil, nil
			}
			n, err := elem(v)
			if err != nil {
				return nil, err
			}
			return map[string]any{key: n}, nil
		}, nil
	default:
		// A non-pointer Go value for ["null", T]: always the T branch.
		elem, err := p.encoder(t, other)
		if err != nil {
			return nil, err
		}
		return func(v reflect.Value) (any, error) {
			n, err := elem(v)
			if err != nil {
				return nil, err
			}
			return map[string]any{key: n}, nil
		}, nil
	}
}

type fieldEnc struct {
	name  string
	index []int
	enc   encFn
	def   any // native default when the Go type has no such field
	group *groupEnc
}

// groupEnc encodes a union of records from a group of tagged pointer fields.
type groupEnc struct {
	members []groupMember
}

type groupMember struct {
	goName string
	index  []int
	key    string // union key (full name); "" when the branch is not in this schema
	enc    encFn
}

func (p *planner) recordEncoder(t reflect.Type, a *avroType) (encFn, error) {
	gfs := goFields(t) // in declaration order, for deterministic errors and defaults
	byName, groups := splitFields(t)
	var plan []fieldEnc
	used := map[string]bool{}
	for _, af := range a.fields {
		if gf, ok := byName[af.name]; ok {
			enc, err := p.encoder(gf.typ, af.typ)
			if err != nil {
				return nil, atPath(af.name, err)
			}
			plan = append(plan, fieldEnc{name: af.name, index: gf.index, enc: enc})
			used[af.name] = true
			continue
		}
		if members, ok := groups[af.name]; ok {
			g, err := p.groupEncoder(members, af)
			if err != nil {
				return nil, atPath(af.name, err)
			}
			plan = append(plan, fieldEnc{name: af.name, group: g})
			used[af.name] = true
			continue
		}
		if !af.hasDef {
			return nil, fmt.Errorf("record %s: field %s has no default and %s has no field with json name %q", a.name, af.name, t, af.name)
		}
		def, err := nativeDefault(af.typ, af.def)
		if err != nil {
			return nil, atPath(af.name, err)
		}
		plan = append(plan, fieldEnc{name: af.name, def: def})
	}
	if p.strict {
		for _, gf := range gfs {
			name := gf.name
			if gf.union != "" {
				name = gf.union
			}
			if !used[name] && gf.union == "" {
				return nil, fmt.Errorf("record %s has no field %q for %s.%s (it would be lost on encode)", a.name, name, t, name)
			}
		}
	}
	return func(v reflect.Value) (any, error) {
		m := make(map[string]any, len(plan))
		for i := range plan {
			f := &plan[i]
			switch {
			case f.group != nil:
				n, err := f.group.encode(v)
				if err != nil {
					return nil, atPath(f.name, err)
				}
				m[f.name] = n
			case f.enc != nil:
				n, err := f.enc(v.FieldByIndex(f.index))
				if err != nil {
					return nil, atPath(f.name, err)
				}
				m[f.name] = n
			default:
				m[f.name] = f.def
			}
		}
		return m, nil
	}, nil
}

func (p *planner) groupEncoder(members []goField, af *avroField) (*groupEnc, error) {
	if af.typ.kind != "union" {
		return nil, fmt.Errorf("tagged fields need a union, Avro field is %s", af.typ)
	}
	g := &groupEnc{}
	for _, gf := range members {
		if gf.typ.Kind() != reflect.Pointer {
			return nil, fmt.Errorf("%s: union member fields must be pointers", gf.name)
		}
		m := groupMember{goName: gf.name, index: gf.index}
		for _, b := range af.typ.branches {
			if b.kind == "record" && b.shortName() == gf.branch {
				enc, err := p.encoder(gf.typ.Elem(), b)
				if err != nil {
					return nil, atPath(gf.name, err)
				}
				m.key, m.enc = b.name, enc
			}
		}
		g.members = append(g.members, m)
	}
	return g, nil
}

func (g *groupEnc) encode(v reflect.Value) (any, error) {
	var out any
	set := ""
	for _, m := range g.members {
		fv := v.FieldByIndex(m.index)
		if fv.IsNil() {
			continue
		}
		if set != "" {
			return nil, fmt.Errorf("both %s and %s are set; exactly one body is allowed", set, m.goName)
		}
		set = m.goName
		if m.enc == nil {
			return nil, fmt.Errorf("%s is not carried by this schema", m.goName)
		}
		n, err := m.enc(fv.Elem())
		if err != nil {
			return nil, atPath(m.goName, err)
		}
		out = map[string]any{m.key: n}
	}
	if set == "" {
		return nil, errors.New("no body set; exactly one is required")
	}
	return out, nil
}

// ---------------------------------------------------------------------------- decoding

func (p *planner) buildDecoder(t reflect.Type, w, r *avroType) (decFn, error) {
	if w.kind == "union" {
		return p.unionDecoder(t, w, r)
	}
	if t.Kind() == reflect.Pointer {
		elem, err := p.decoder(t.Elem(), w, unwrapNullable(r))
		if err != nil {
			return nil, err
		}
		return func(n any, v reflect.Value) error {
			ptr := reflect.New(t.Elem())
			if err := elem(n, ptr.Elem()); err != nil {
				return err
			}
			v.Set(ptr)
			return nil
		}, nil
	}
	r = unwrapNullable(r)
	switch {
	case w.logical == "decimal" && w.kind == "bytes":
		if t != decimalType && !(t == unscaledType && w.prec <= 18) {
			return nil, mismatch(t, w)
		}
		prec, scale, unscaled := w.prec, w.scale, t == unscaledType
		return func(n any, v reflect.Value) error {
			rat, ok := n.(*big.Rat)
			if !ok {
				return fmt.Errorf("decimal: native %T", n)
			}
			d, err := ratToDecimal(rat, prec, scale)
			if err != nil {
				return err
			}
			if unscaled {
				// exact at scale and below 10^prec ≤ 10^18: the coefficient fits an int64
				v.Set(reflect.ValueOf(Unscaled{V: d.CoefficientInt64(), Scale: int32(scale)}))
				return nil
			}
			v.Set(reflect.ValueOf(d))
			return nil
		}, nil
	case w.kind == "long" && (w.logical == "timestamp-micros" || w.logical == "timestamp-millis"):
		if t != timeType {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			var tm time.Time
			switch x := n.(type) {
			case time.Time:
				tm = x.UTC()
			case int64: // a default value
				tm = time.UnixMicro(x).UTC()
			default:
				return fmt.Errorf("timestamp: native %T", n)
			}
			if y := tm.Year(); y < 1 || y > 9999 {
				return fmt.Errorf("timestamp %s outside years 1-9999", tm)
			}
			v.Set(reflect.ValueOf(tm))
			return nil
		}, nil
	}
	switch w.kind {
	case "null":
		return func(any, reflect.Value) error { return nil }, nil
	case "boolean":
		if t.Kind() != reflect.Bool {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			b, ok := n.(bool)
			if !ok {
				return fmt.Errorf("boolean: native %T", n)
			}
			v.SetBool(b)
			return nil
		}, nil
	case "int", "long":
		if !isInt(t) {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			var i int64
			switch x := n.(type) {
			case int32:
				i = int64(x)
			case int64:
				i = x
			default:
				return fmt.Errorf("integer: native %T", n)
			}
			if v.OverflowInt(i) {
				return fmt.Errorf("%d overflows %s", i, t)
			}
			v.SetInt(i)
			return nil
		}, nil
	case "float", "double":
		if t.Kind() != reflect.Float32 && t.Kind() != reflect.Float64 {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			switch x := n.(type) {
			case float32:
				v.SetFloat(float64(x))
			case float64:
				v.SetFloat(x)
			default:
				return fmt.Errorf("float: native %T", n)
			}
			return nil
		}, nil
	case "string", "enum":
		if t.Kind() != reflect.String {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			s, ok := n.(string)
			if !ok {
				return fmt.Errorf("string: native %T", n)
			}
			v.SetString(s)
			return nil
		}, nil
	case "bytes":
		if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8 {
			return nil, mismatch(t, w)
		}
		return func(n any, v reflect.Value) error {
			b, ok := n.([]byte)
			if !ok {
				return fmt.Errorf("bytes: native %T", n)
			}
			v.SetBytes(append([]byte{}, b...))
			return nil
		}, nil
	case "array":
		if t.Kind() != reflect.Slice || t == bytesType {
			return nil, mismatch(t, w)
		}
		var ri *avroType
		if r != nil && r.kind == "array" {
			ri = r.items
		}
		item, err := p.decoder(t.Elem(), w.items, ri)
		if err != nil {
			return nil, atPath("[]", err)
		}
		return func(n any, v reflect.Value) error {
			xs, ok := n.([]any)
			if !ok {
				return fmt.Errorf("array: native %T", n)
			}
			if len(xs) == 0 {
				v.SetZero() // empty is nil: the canonical Go form
				return nil
			}
			s := reflect.MakeSlice(t, len(xs), len(xs))
			for i, x := range xs {
				if err := item(x, s.Index(i)); err != nil {
					return atPath(fmt.Sprintf("[%d]", i), err)
				}
			}
			v.Set(s)
			return nil
		}, nil
	case "map":
		if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String {
			return nil, mismatch(t, w)
		}
		var rv *avroType
		if r != nil && r.kind == "map" {
			rv = r.values
		}
		val, err := p.decoder(t.Elem(), w.values, rv)
		if err != nil {
			return nil, atPath("[]", err)
		}
		return func(n any, v reflect.Value) error {
			xs, ok := n.(map[string]any)
			if !ok {
				return fmt.Errorf("map: native %T", n)
			}
			if len(xs) == 0 {
				v.SetZero()
				return nil
			}
			m := reflect.MakeMapWithSize(t, len(xs))
			for k, x := range xs {
				e := reflect.New(t.Elem()).Elem()
				if err := val(x, e); err != nil {
					return atPath(fmt.Sprintf("[%q]", k), err)
				}
				m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
			}
			v.Set(m)
			return nil
		}, nil
	case "record":
		if t.Kind() != reflect.Struct {
			return nil, mismatch(t, w)
		}
		return p.recordDecoder(t, w, r)
	}
	return nil, fmt.Errorf("Avro %s is not supported", w)
}

// unwrapNullable returns X for ["null", X], else t.
func unwrapNullable(t *avroType) *avroType {
	if t == nil {
		return nil
	}
	if o, ok := t.nullable(); ok && o != nil {
		return o
	}
	return t
}

func (p *planner) unionDecoder(t reflect.Type, w, r *avroType) (decFn, error) {
	type branchDec struct{ dec decFn }
	decs := map[string]decFn{}
	target := t
	isPtr := t.Kind() == reflect.Pointer
	if isPtr {
		target = t.Elem()
	}
	rr := unwrapNullable(r)
	for _, b := range w.branches {
		if b.kind == "null" {
			continue
		}
		d, err := p.decoder(target, b, rr)
		if err != nil {
			return nil, err
		}
		decs[b.unionKey()] = d
	}
	return func(n any, v reflect.Value) error {
		if n == nil {
			v.SetZero()
			return nil
		}
		m, ok := n.(map[string]any)
		if !ok || len(m) != 1 {
			return fmt.Errorf("union: native %T", n)
		}
		for k, x := range m {
			d, ok := decs[k]
			if !ok {
				return fmt.Errorf("union branch %s has no Go mapping", k)
			}
			if !isPtr {
				return d(x, v)
			}
			ptr := reflect.New(target)
			if err := d(x, ptr.Elem()); err != nil {
				return err
			}
			v.Set(ptr)
		}
		return nil
	}, nil
}

type fieldDec struct {
	name  string
	index []int
	dec   decFn
	group map[string]groupDec // union key of a branch → member
}

type groupDec struct {
	index []int
	typ   reflect.Type
	dec   decFn
}

type defaultDec struct {
	name   string
	index  []int
	native any
	dec    decFn
}

func (p *planner) recordDecoder(t reflect.Type, w, r *avroType) (decFn, error) {
	if r != nil && r.kind != "record" {
		r = nil
	}
	gfs := goFields(t) // in declaration order, for deterministic errors and defaults
	byName, groups := splitFields(t)
	var plan []fieldDec
	seen := map[string]bool{}
	for _, wf := range w.fields {
		var rt *avroType
		if r != nil {
			if rf := r.field(wf.name); rf != nil {
				rt = rf.typ
			}
		}
		if gf, ok := byName[wf.name]; ok {
			dec, err := p.decoder(gf.typ, wf.typ, rt)
			if err != nil {
				return nil, atPath(wf.name, err)
			}
			plan = append(plan, fieldDec{name: wf.name, index: gf.index, dec: dec})
			seen[wf.name] = true
			continue
		}
		if members, ok := groups[wf.name]; ok {
			if wf.typ.kind != "union" {
				return nil, atPath(wf.name, fmt.Errorf("tagged fields need a union, Avro field is %s", wf.typ))
			}
			g := map[string]groupDec{}
			for _, b := range wf.typ.branches {
				for _, gf := range members {
					if b.kind != "record" || b.shortName() != gf.branch {
						continue
					}
					var rb *avroType
					if rt != nil {
						for _, x := range rt.branches {
							if x.kind == "record" && x.shortName() == gf.branch {
								rb = x
							}
						}
					}
					dec, err := p.decoder(gf.typ.Elem(), b, rb)
					if err != nil {
						return nil, atPath(wf.name+"."+gf.name, err)
					}
					g[b.name] = groupDec{index: gf.index, typ: gf.typ.Elem(), dec: dec}
				}
			}
			plan = append(plan, fieldDec{name: wf.name, group: g})
			seen[wf.name] = true
		}
		// A writer field T does not have: dropped, as Avro resolution does.
	}
	var defaults []defaultDec
	if r != nil {
		for _, gf := range gfs {
			if gf.union != "" || seen[gf.name] {
				continue
			}
			rf := r.field(gf.name)
			if rf == nil || !rf.hasDef {
				continue // zero value
			}
			native, err := nativeDefault(rf.typ, rf.def)
			if err != nil {
				return nil, atPath(gf.name, err)
			}
			dec, err := p.decoder(gf.typ, rf.typ, rf.typ)
			if err != nil {
				return nil, atPath(gf.name, err)
			}
			defaults = append(defaults, defaultDec{name: gf.name, index: gf.index, native: native, dec: dec})
		}
	}
	return func(n any, v reflect.Value) error {
		m, ok := n.(map[string]any)
		if !ok {
			return fmt.Errorf("record: native %T", n)
		}
		for i := range plan {
			f := &plan[i]
			x := m[f.name]
			if f.group == nil {
				if err := f.dec(x, v.FieldByIndex(f.index)); err != nil {
					return atPath(f.name, err)
				}
				continue
			}
			u, ok := x.(map[string]any)
			if !ok || len(u) != 1 {
				return atPath(f.name, fmt.Errorf("union: native %T", x))
			}
			for k, body := range u {
				g, ok := f.group[k]
				if !ok {
					return atPath(f.name, fmt.Errorf("branch %s has no Go field", k))
				}
				ptr := reflect.New(g.typ)
				if err := g.dec(body, ptr.Elem()); err != nil {
					return atPath(f.name, err)
				}
				v.FieldByIndex(g.index).Set(ptr)
			}
		}
		for _, d := range defaults {
			if err := d.dec(d.native, v.FieldByIndex(d.index)); err != nil {
				return atPath(d.name, err)
			}
		}
		return nil
	}, nil
}

// nativeDefault converts a field's JSON default into goavro's native form for its type
// (Avro spec: the default of a union is for its first branch; bytes are ISO-8859-1 code points).
func nativeDefault(t *avroType, def any) (any, error) {
	if t.kind == "union" {
		if len(t.branches) == 0 {
			return nil, errors.New("empty union")
		}
		first := t.branches[0]
		if first.kind == "null" {
			return nil, nil
		}
		n, err := nativeDefault(first, def)
		if err != nil {
			return nil, err
		}
		return map[string]any{first.unionKey(): n}, nil
	}
	switch t.kind {
	case "null":
		return nil, nil
	case "boolean":
		b, ok := def.(bool)
		if !ok {
			return nil, fmt.Errorf("default %v is not a boolean", def)
		}
		return b, nil
	case "int", "long":
		num, ok := def.(interface{ Int64() (int64, error) })
		if !ok {
			return nil, fmt.Errorf("default %v is not an integer", def)
		}
		i, err := num.Int64()
		if err != nil {
			return nil, fmt.Errorf("default %v: %w", def, err)
		}
		if t.kind == "int" {
			return int32(i), nil
		}
		return i, nil
	case "float", "double":
		num, ok := def.(interface{ Float64() (float64, error) })
		if !ok {
			return nil, fmt.Errorf("default %v is not a number", def)
		}
		f, err := num.Float64()
		if t.kind == "float" {
			return float32(f), err
		}
		return f, err
	case "string", "enum":
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("default %v is not a string", def)
		}
		return s, nil
	case "bytes":
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("default %v is not a string", def)
		}
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, fmt.Errorf("bytes default has code point %U > U+00FF", r)
			}
			b = append(b, byte(r))
		}
		if t.logical == "decimal" {
			num := fromTwosComplement(b)
			return new(big.Rat).SetFrac(num, pow10(t.scale)), nil
		}
		return b, nil
	case "array":
		xs, ok := def.([]any)
		if !ok {
			return nil, fmt.Errorf("default %v is not an array", def)
		}
		out := make([]any, len(xs))
		for i, x := range xs {
			n, err := nativeDefault(t.items, x)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case "map", "record":
		xs, ok := def.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("default %v is not an object", def)
		}
		out := make(map[string]any, len(xs))
		if t.kind == "map" {
			for k, x := range xs {
				n, err := nativeDefault(t.values, x)
				if err != nil {
					return nil, err
				}
				out[k] = n
			}
			return out, nil
		}
		for _, f := range t.fields {
			x, ok := xs[f.name]
			if !ok {
				if !f.hasDef {
					return nil, fmt.Errorf("default of record %s lacks field %s", t.name, f.name)
				}
				x = f.def
			}
			n, err := nativeDefault(f.typ, x)
			if err != nil {
				return nil, err
			}
			out[f.name] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("defaults of Avro %s are not supported", t)
}

// ---------------------------------------------------------------------------- decimals

var pow10Table = func() []*big.Int {
	out := make([]*big.Int, 40)
	out[0] = big.NewInt(1)
	for i := 1; i < len(out); i++ {
		out[i] = new(big.Int).Mul(out[i-1], big.NewInt(10))
	}
	return out
}()

// pow10 returns 10^n; callers must not modify the result.
func pow10(n int) *big.Int {
	if n < len(pow10Table) {
		return pow10Table[n]
	}
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// decimalUnscaled returns d × 10^scale as an integer, or an error when d has more than scale
// decimal places or more than prec digits in all. It never rounds.
func decimalUnscaled(d decimal.Decimal, prec, scale int) (*big.Int, error) {
	coef := d.Coefficient()
	if coef.Sign() == 0 {
		return coef, nil
	}
	shift := int64(d.Exponent()) + int64(scale)
	var unscaled *big.Int
	switch {
	case shift > int64(prec):
		return nil, fmt.Errorf("%s does not fit decimal(%d,%d)", d, prec, scale)
	case shift >= 0:
		unscaled = coef.Mul(coef, pow10(int(shift)))
	case -shift > int64(len(coef.String())):
		return nil, fmt.Errorf("%s has more than %d decimal places (decimal(%d,%d); not rounded)", d, scale, prec, scale)
	default:
		q, r := new(big.Int).QuoRem(coef, pow10(int(-shift)), new(big.Int))
		if r.Sign() != 0 {
			return nil, fmt.Errorf("%s has more than %d decimal places (decimal(%d,%d); not rounded)", d, scale, prec, scale)
		}
		unscaled = q
	}
	if new(big.Int).Abs(unscaled).Cmp(pow10(prec)) >= 0 {
		return nil, fmt.Errorf("%s does not fit decimal(%d,%d)", d, prec, scale)
	}
	return unscaled, nil
}

func decimalToRat(d decimal.Decimal, prec, scale int) (*big.Rat, error) {
	u, err := decimalUnscaled(d, prec, scale)
	if err != nil {
		return nil, err
	}
	return new(big.Rat).SetFrac(u, pow10(scale)), nil
}

func ratToDecimal(r *big.Rat, prec, scale int) (decimal.Decimal, error) {
	num := new(big.Int).Mul(r.Num(), pow10(scale))
	u, rem := new(big.Int).QuoRem(num, r.Denom(), new(big.Int))
	if rem.Sign() != 0 {
		return decimal.Decimal{}, fmt.Errorf("decimal %s is not exact at scale %d", r.RatString(), scale)
	}
	if new(big.Int).Abs(u).Cmp(pow10(prec)) >= 0 {
		return decimal.Decimal{}, fmt.Errorf("decimal %s exceeds precision %d", r.FloatString(scale), prec)
	}
	return decimal.NewFromBigInt(u, int32(-scale)), nil
}

// fromTwosComplement reads a big-endian two's-complement integer (the Avro decimal encoding).
func fromTwosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}
