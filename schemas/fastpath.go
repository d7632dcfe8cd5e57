package schemas

import (
	"errors"
	"math"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shopspring/decimal"
)

// The direct binary path: Avro bytes ↔ Go values without goavro's native form.
//
// goavro stays the codec of record (schema parsing, canonical form, resolution of other writer
// versions, every error message), but its native form costs a map per record, a *big.Rat per
// decimal and an interface per value; on the hot types that was most of the cost of encode and
// decode (schemas/BENCH.md).
// A fast plan is compiled once per (schema, Go type) from the parsed schema and the same field
// mapping as the goavro plan, and reads and writes the bytes itself. It covers what the
// retailflow schemas use: records (flattened embedded structs), arrays, ["null", T] unions and
// tagged union groups, boolean, int, long, string, enum, bytes, bytes decimal(p ≤ 18) and long
// timestamp-micros. Any other construct (maps, floats, fixed, other logical types, fields
// filled from defaults, resolving codecs) leaves the codec on the goavro path.
//
// Contract, checked by FuzzFastDecode/FuzzFastEncode against goavro as the reference: the
// bytes written are identical to goavro's; decoding any input either yields the value the
// goavro path yields, or fails where the goavro path fails. The fast path never builds error
// messages: on any failure Codec reruns the goavro path, which reports the error (or, for a
// value the fast path merely does not handle — errFastUnsupported — produces the result).

var (
	// errFastInvalid: the input or value is invalid; the goavro path fails on it too.
	errFastInvalid = errors.New("schemas: invalid for the direct binary path")
	// errFastUnsupported: valid, but outside what the direct path handles (a decimal whose
	// coefficient has more than 18 digits); the goavro path handles it.
	errFastUnsupported = errors.New("schemas: not handled by the direct binary path")
	// errNoFastPlan: at plan time, the type/schema pair uses a construct the direct path lacks.
	errNoFastPlan = errors.New("schemas: no direct binary plan")
)

type (
	fastEnc func(buf []byte, p unsafe.Pointer) ([]byte, error)
	fastDec func(buf []byte, p unsafe.Pointer) ([]byte, error)
)

// fastCodec is the compiled direct path of one Codec.
type fastCodec struct {
	enc fastEnc
	dec fastDec
	// inPlace: dec reads the caller's bytes (a projection's plan copies its strings) instead
	// of an immutable copy that its strings share
	inPlace bool
	// borrow: a borrowing projection's plan (NewBorrowingProjectionCodec): its strings are
	// views of the caller's bytes, and it reuses the pointers and backing arrays the value
	// holds from an earlier decode
	borrow bool
}

type fastPlanner struct {
	encs    map[planKey]*fastEnc
	decs    map[planKey]*fastDec
	minSize map[*avroType]int // see minSizes; array decoding bounds its allocation by it
	skip    bool              // a projection: writer fields T lacks are skipped (compileFastDecode)
	borrow  bool              // a borrowing projection (compileFastDecode): see fastCodec.borrow
	skips   map[*avroType]*fastDec
}

// compileFast builds the direct path for T against schema a (writer = reader), or returns
// errNoFastPlan. It runs after the goavro plan compiled, so the mapping is known to be valid.
func compileFast(t reflect.Type, a *avroType) (*fastCodec, error) {
	p := &fastPlanner{encs: map[planKey]*fastEnc{}, decs: map[planKey]*fastDec{}, minSize: minSizes(a)}
	enc, err := p.encoder(t, a)
	if err != nil {
		return nil, err
	}
	dec, err := p.decoder(t, a)
	if err != nil {
		return nil, err
	}
	return &fastCodec{enc: enc, dec: dec}, nil
}

// compileFastDecode builds a decode-only direct path for T, a projection of schema a
// (NewProjectionCodec): writer fields T lacks are walked by a skipper compiled from schema a,
// which fails where goavro's decoding would, and not built.
//
// With borrow, the plan decodes into a value that may hold an earlier decode's result: it
// reuses the objects that value points to (an optional's or a union branch's struct, an
// array's backing array when it is large enough) instead of allocating new ones, sets every
// field it maps (a field the schema lacks, or a union group's other members, to zero), and
// leaves its strings pointing into the input.
func compileFastDecode(t reflect.Type, a *avroType, borrow bool) (*fastCodec, error) {
	p := &fastPlanner{decs: map[planKey]*fastDec{}, minSize: minSizes(a), skip: true, borrow: borrow, skips: map[*avroType]*fastDec{}}
	dec, err := p.decoder(t, a)
	if err != nil {
		return nil, err
	}
	return &fastCodec{dec: dec, inPlace: true, borrow: borrow}, nil
}

// ---------------------------------------------------------------------------- primitives
// readLong and readInt are goavro's varint readers (longNativeFromBinary, intNativeFromBinary)
// byte for byte: overlong encodings are accepted the same way, and an int wider than 32 bits
// is truncated the same way.

func readLong(buf []byte) (int64, []byte, bool) {
	var value uint64
	var shift uint
	for i := 0; i < len(buf); i++ {
		b := buf[i]
		value |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return int64(value>>1) ^ -int64(value&1), buf[i+1:], true
		}
		shift += 7
	}
	return 0, nil, false
}

func readInt(buf []byte) (int32, []byte, bool) {
	var value int
	var shift uint
	for i := 0; i < len(buf); i++ {
		b := buf[i]
		value |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return int32(value>>1) ^ -int32(value&1), buf[i+1:], true
		}
		shift += 7
	}
	return 0, nil, false
}

// readBytes is goavro's bytesNativeFromBinary: the result aliases buf.
func readBytes(buf []byte) ([]byte, []byte, bool) {
	if len(buf) < 1 {
		return nil, nil, false
	}
	n, rest, ok := readLong(buf)
	if !ok || n < 0 || n > int64(len(rest)) {
		return nil, nil, false
	}
	return rest[:n], rest[n:], true
}

func appendLong(buf []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

func appendString(buf []byte, s string) []byte {
	return append(appendLong(buf, int64(len(s))), s...)
}

// readBlockCount reads an array block count as goavro does: a negative count is followed by
// a block size (ignored), MinInt64 and counts above goavro.MaxBlockCount are refused.
func readBlockCount(buf []byte) (int64, []byte, bool) {
	n, buf, ok := readLong(buf)
	if !ok {
		return 0, nil, false
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, nil, false
		}
		n = -n
		if _, buf, ok = readLong(buf); !ok {
			return 0, nil, false
		}
	}
	if n > math.MaxInt32 { // goavro.MaxBlockCount
		return 0, nil, false
	}
	return n, buf, true
}

// ---------------------------------------------------------------------------- decimals

var pow10Int64 = func() [19]int64 {
	var out [19]int64
	out[0] = 1
	for i := 1; i < len(out); i++ {
		out[i] = out[i-1] * 10
	}
	return out
}()

// appendDecimal writes d as Avro bytes decimal(prec, scale) (prec ≤ 18): the unscaled value in
// minimal big-endian two's complement, as goavro writes it. Like decimalUnscaled it refuses a
// value with more than scale decimal places or more than prec digits, never rounding.
func appendDecimal(buf []byte, d decimal.Decimal, prec, scale int) ([]byte, error) {
	var u int64
	if d.Sign() != 0 {
		if d.NumDigits() > 18 {
			return buf, errFastUnsupported // e.g. 1000…0e-20: exact, but not in an int64 here
		}
		c := d.CoefficientInt64()
		shift := int(d.Exponent()) + scale
		switch {
		case shift > 18:
			return buf, errFastInvalid // |c| ≥ 1, so |u| ≥ 10^shift > 10^prec
		case shift >= 0:
			limit := pow10Int64[prec] / pow10Int64[shift]
			if c >= limit || c <= -limit {
				return buf, errFastInvalid
			}
			u = c * pow10Int64[shift]
		case shift < -18:
			return buf, errFastInvalid // |c| < 10^18: dividing by 10^19 or more leaves a remainder
		default:
			p := pow10Int64[-shift]
			if c%p != 0 {
				return buf, errFastInvalid
			}
			u = c / p
		}
		if u >= pow10Int64[prec] || u <= -pow10Int64[prec] {
			return buf, errFastInvalid
		}
	}
	n := 1 // bytes of the minimal two's complement form; 0 is one zero byte, as in goavro
	for n < 8 && (u >= 1<<(8*n-1) || u < -(1<<(8*n-1))) {
		n++
	}
	buf = appendLong(buf, int64(n))
	for i := n - 1; i >= 0; i-- {
		buf = append(buf, byte(u>>(8*i)))
	}
	return buf, nil
}

// decimalFromBytes reads an Avro bytes decimal(prec, scale) (prec ≤ 18) as decimal.Decimal with
// exponent -scale, refusing a value of more than prec digits (as ratToDecimal does).
func decimalFromBytes(b []byte, prec, scale int) (decimal.Decimal, bool) {
	u, ok := unscaledFromBytes(b, prec)
	if !ok {
		return decimal.Decimal{}, false
	}
	return NewDecimal(u, int32(-scale)), true
}

// unscaledFromBytes reads an Avro decimal's unscaled value (big-endian two's complement), which
// must have at most prec ≤ 18 digits.
func unscaledFromBytes(b []byte, prec int) (int64, bool) {
	for len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
		b = b[1:] // redundant sign extension
	}
	if len(b) > 8 {
		return 0, false // |u| ≥ 2^63 > 10^18 ≥ 10^prec
	}
	var u int64
	if len(b) > 0 && b[0]&0x80 != 0 {
		u = -1
	}
	for _, x := range b {
		u = u<<8 | int64(x)
	}
	if u >= pow10Int64[prec] || u <= -pow10Int64[prec] {
		return 0, false
	}
	return u, true
}

// NewDecimal is u·10^exp, as decimal.New makes it, without an allocation when the value is a
// small integer (sharedDecimals) or one decimalCache holds. The ledger makes its derived values
// with it, so that amounts it computes share the decoders' cache.
func NewDecimal(u int64, exp int32) decimal.Decimal {
	if scale := int(-exp); scale >= 0 && scale < len(sharedDecimals) && u >= 0 && u <= maxSharedDecimal*pow10Int64[scale] && u%pow10Int64[scale] == 0 {
		return sharedDecimals[scale][u/pow10Int64[scale]]
	}
	return cachedDecimal(u, exp)
}

// decimalCacheBits sizes decimalCache: 2^13 slots, ≈ 0.7 MB when full.
const decimalCacheBits = 13

// decimalCache holds recently decoded decimals, one per slot (direct-mapped by value and scale).
// Money values repeat across records: catalog prices, tax rates, the tier multipliers, common
// amounts. A decoded ledger state holds dozens of decimals and each is one big.Int allocation
// (the state is decoded again in every transaction that touches its order); a hit returns the
// slot's decimal, which shares its coefficient like sharedDecimals do (a decimal.Decimal never
// mutates its coefficient). A slot is read and replaced atomically: decoders run concurrently
// (restores, the run loop, the sink), and a slot's decimal is never modified once published,
// so a reader checks the value it loaded, not the slot. An entry carries its coefficient and
// exponent beside the decimal: a hit compares them in the entry (one load) instead of going
// through the decimal's big.Int to its words (three dependent loads, each a likely cache miss in
// a table this size).
var decimalCache [1 << decimalCacheBits]atomic.Pointer[decimalEntry]

// decimalEntry is one published slot of decimalCache: d is u·10^exp. Immutable once stored.
type decimalEntry struct {
	u   int64
	exp int32
	d   decimal.Decimal
}

func decimalSlot(u int64, exp int32) uint64 {
	return (uint64(u) ^ uint64(uint32(exp))<<32) * 0x9E3779B97F4A7C15 >> (64 - decimalCacheBits)
}

// cachedDecimal is u·10^exp, from decimalCache when a slot holds it.
func cachedDecimal(u int64, exp int32) decimal.Decimal {
	slot := &decimalCache[decimalSlot(u, exp)]
	if e := slot.Load(); e != nil && e.u == u && e.exp == exp {
		return e.d
	}
	e := &decimalEntry{u: u, exp: exp, d: decimal.New(u, exp)}
	slot.Store(e)
	return e.d
}

// maxSharedDecimal: the integers 0…maxSharedDecimal are decoded without allocating.
const maxSharedDecimal = 100

// sharedDecimals[s][i] is the integer i with exponent -s (s ≤ 16, so i·10^s fits an int64).
// Decoded values equal to a small integer (zero amounts, whole quantities, rates of 1) share
// it: a decimal.Decimal never mutates its coefficient (every operation returns a new one;
// copies share it all the time).
var sharedDecimals = func() (out [17][maxSharedDecimal + 1]decimal.Decimal) {
	for s := range out {
		for i := range out[s] {
			out[s][i] = decimal.New(int64(i)*pow10Int64[s], int32(-s))
		}
	}
	return out
}()

// ---------------------------------------------------------------------------- timestamps

// Unix seconds of 0001-01-01 and 10000-01-01 UTC: the years a timestamp may have.
const (
	minUnixSecond = -62135596800
	endUnixSecond = 253402300800
)

// ---------------------------------------------------------------------------- encoding

func (p *fastPlanner) encoder(t reflect.Type, a *avroType) (fastEnc, error) {
	k := planKey{w: a, t: t}
	if f, ok := p.encs[k]; ok {
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return (*f)(buf, ptr) }, nil
	}
	slot := new(fastEnc)
	p.encs[k] = slot
	f, err := p.buildEncoder(t, a)
	if err != nil {
		return nil, err
	}
	*slot = f
	return f, nil
}

func (p *fastPlanner) buildEncoder(t reflect.Type, a *avroType) (fastEnc, error) {
	if a.kind == "union" {
		return p.unionEncoder(t, a)
	}
	if t.Kind() == reflect.Pointer {
		elem, err := p.encoder(t.Elem(), a)
		if err != nil {
			return nil, err
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			v := *(*unsafe.Pointer)(ptr)
			if v == nil {
				return buf, errFastInvalid
			}
			return elem(buf, v)
		}, nil
	}
	switch {
	case a.logical == "decimal" && a.kind == "bytes":
		if t != decimalType || a.prec > 18 || a.prec < 1 || a.scale < 0 || a.scale > a.prec {
			return nil, errNoFastPlan // Unscaled is decode-only
		}
		prec, scale := a.prec, a.scale
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			return appendDecimal(buf, *(*decimal.Decimal)(ptr), prec, scale)
		}, nil
	case a.kind == "long" && a.logical == "timestamp-micros":
		if t != timeType {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			tm := (*time.Time)(ptr)
			s := tm.Unix()
			if s < minUnixSecond || s >= endUnixSecond {
				return buf, errFastInvalid
			}
			return appendLong(buf, s*1e6+int64(tm.Nanosecond()/1e3)), nil
		}, nil
	case a.logical != "":
		return nil, errNoFastPlan
	}
	switch a.kind {
	case "null":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) { return buf, nil }, nil
	case "boolean":
		if t.Kind() != reflect.Bool {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			if *(*bool)(ptr) {
				return append(buf, 1), nil
			}
			return append(buf, 0), nil
		}, nil
	case "int", "long":
		get := intGetter(t)
		if get == nil {
			return nil, errNoFastPlan
		}
		if a.kind == "int" {
			return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
				i := get(ptr)
				if int64(int32(i)) != i {
					return buf, errFastInvalid
				}
				return appendLong(buf, i), nil
			}, nil
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return appendLong(buf, get(ptr)), nil }, nil
	case "string":
		if t.Kind() != reflect.String {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return appendString(buf, *(*string)(ptr)), nil }, nil
	case "enum":
		if t.Kind() != reflect.String {
			return nil, errNoFastPlan
		}
		syms := a.symbols
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			s := *(*string)(ptr)
			for i, sym := range syms {
				if sym == s {
					return appendLong(buf, int64(i)), nil
				}
			}
			return buf, errFastInvalid
		}, nil
	case "bytes":
		if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8 {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			b := *(*[]byte)(ptr)
			return append(appendLong(buf, int64(len(b))), b...), nil
		}, nil
	case "array":
		if t.Kind() != reflect.Slice || t == bytesType {
			return nil, errNoFastPlan
		}
		item, err := p.encoder(t.Elem(), a.items)
		if err != nil {
			return nil, err
		}
		size := t.Elem().Size()
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			s := (*sliceHeader)(ptr)
			if s.len > 0 {
				buf = appendLong(buf, int64(s.len)) // one block, as goavro writes it
				for i := 0; i < s.len; i++ {
					var err error
					if buf, err = item(buf, unsafe.Add(s.data, uintptr(i)*size)); err != nil {
						return buf, err
					}
				}
			}
			return append(buf, 0), nil
		}, nil
	case "record":
		if t.Kind() != reflect.Struct {
			return nil, errNoFastPlan
		}
		return p.recordEncoder(t, a)
	}
	return nil, errNoFastPlan // map (goavro writes Go map order), float, double, fixed
}

// sliceHeader is the layout of every Go slice.
type sliceHeader struct {
	data unsafe.Pointer
	len  int
	cap  int
}

// intGetter reads a Go integer of t's kind as int64, or is nil for a non-integer kind.
func intGetter(t reflect.Type) func(unsafe.Pointer) int64 {
	if !isInt(t) {
		return nil
	}
	switch t.Size() {
	case 1:
		return func(p unsafe.Pointer) int64 { return int64(*(*int8)(p)) }
	case 2:
		return func(p unsafe.Pointer) int64 { return int64(*(*int16)(p)) }
	case 4:
		return func(p unsafe.Pointer) int64 { return int64(*(*int32)(p)) }
	}
	return func(p unsafe.Pointer) int64 { return *(*int64)(p) }
}

// intSetter stores an int64 into a Go integer of t's kind, reporting false when it overflows
// (reflect.Value.OverflowInt's rule).
func intSetter(t reflect.Type) func(unsafe.Pointer, int64) bool {
	if !isInt(t) {
		return nil
	}
	switch t.Size() {
	case 1:
		return func(p unsafe.Pointer, v int64) bool { *(*int8)(p) = int8(v); return int64(int8(v)) == v }
	case 2:
		return func(p unsafe.Pointer, v int64) bool { *(*int16)(p) = int16(v); return int64(int16(v)) == v }
	case 4:
		return func(p unsafe.Pointer, v int64) bool { *(*int32)(p) = int32(v); return int64(int32(v)) == v }
	}
	return func(p unsafe.Pointer, v int64) bool { *(*int64)(p) = v; return true }
}

// branchIndex is the position of b among u's branches.
func branchIndex(u, b *avroType) int64 {
	for i, x := range u.branches {
		if x == b {
			return int64(i)
		}
	}
	return -1
}

func nullIndex(u *avroType) int64 {
	for i, x := range u.branches {
		if x.kind == "null" {
			return int64(i)
		}
	}
	return -1
}

func (p *fastPlanner) unionEncoder(t reflect.Type, a *avroType) (fastEnc, error) {
	other, hasNull := a.nullable()
	if other == nil {
		return nil, errNoFastPlan
	}
	oi, ni := branchIndex(a, other), nullIndex(a)
	nilable := hasNull && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice)
	target := t
	if hasNull && t.Kind() == reflect.Pointer {
		target = t.Elem()
	}
	elem, err := p.encoder(target, other)
	if err != nil {
		return nil, err
	}
	switch {
	case nilable && t.Kind() == reflect.Pointer:
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			v := *(*unsafe.Pointer)(ptr)
			if v == nil {
				return appendLong(buf, ni), nil
			}
			return elem(appendLong(buf, oi), v)
		}, nil
	case nilable: // a slice: nil is null
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			if (*sliceHeader)(ptr).data == nil {
				return appendLong(buf, ni), nil
			}
			return elem(appendLong(buf, oi), ptr)
		}, nil
	}
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return elem(appendLong(buf, oi), ptr) }, nil
}

type fastFieldEnc struct {
	off uintptr
	enc fastEnc
}

// fieldOffset is the byte offset of the field at index (embedded structs only, never through
// a pointer: goFields flattens only those).
func fieldOffset(t reflect.Type, index []int) uintptr {
	var off uintptr
	for _, i := range index {
		f := t.Field(i)
		off += f.Offset
		t = f.Type
	}
	return off
}

func (p *fastPlanner) recordEncoder(t reflect.Type, a *avroType) (fastEnc, error) {
	byName, groups := splitFields(t)
	var plan []fastFieldEnc
	for _, af := range a.fields {
		if gf, ok := byName[af.name]; ok {
			enc, err := p.encoder(gf.typ, af.typ)
			if err != nil {
				return nil, err
			}
			plan = append(plan, fastFieldEnc{off: fieldOffset(t, gf.index), enc: enc})
			continue
		}
		if members, ok := groups[af.name]; ok {
			enc, err := p.groupEncoder(t, members, af.typ)
			if err != nil {
				return nil, err
			}
			plan = append(plan, fastFieldEnc{enc: enc})
			continue
		}
		return nil, errNoFastPlan // a field written from its default
	}
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		for i := range plan {
			var err error
			if buf, err = plan[i].enc(buf, unsafe.Add(ptr, plan[i].off)); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}, nil
}

// splitFields indexes a struct's mapped fields by json name, and its tagged union members by
// union field name.
func splitFields(t reflect.Type) (map[string]goField, map[string][]goField) {
	byName := map[string]goField{}
	groups := map[string][]goField{}
	for _, gf := range goFields(t) {
		if gf.union != "" {
			groups[gf.union] = append(groups[gf.union], gf)
		} else {
			byName[gf.name] = gf
		}
	}
	return byName, groups
}

type fastMember struct {
	off    uintptr
	branch int64 // union index; -1 when the branch is not in this schema
	enc    fastEnc
}

// groupEncoder writes a union of records from a group of tagged pointer fields of the record
// at ptr: exactly one must be non-nil.
func (p *fastPlanner) groupEncoder(t reflect.Type, members []goField, u *avroType) (fastEnc, error) {
	if u.kind != "union" {
		return nil, errNoFastPlan
	}
	var ms []fastMember
	for _, gf := range members {
		if gf.typ.Kind() != reflect.Pointer {
			return nil, errNoFastPlan
		}
		m := fastMember{off: fieldOffset(t, gf.index), branch: -1}
		for i, b := range u.branches {
			if b.kind == "record" && b.shortName() == gf.branch {
				enc, err := p.encoder(gf.typ.Elem(), b)
				if err != nil {
					return nil, err
				}
				m.branch, m.enc = int64(i), enc
			}
		}
		ms = append(ms, m)
	}
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		var set *fastMember
		var body unsafe.Pointer
		for i := range ms {
			if v := *(*unsafe.Pointer)(unsafe.Add(ptr, ms[i].off)); v != nil {
				if set != nil {
					return buf, errFastInvalid
				}
				set, body = &ms[i], v
			}
		}
		if set == nil || set.enc == nil {
			return buf, errFastInvalid
		}
		return set.enc(appendLong(buf, set.branch), body)
	}, nil
}

// ---------------------------------------------------------------------------- decoding

func (p *fastPlanner) decoder(t reflect.Type, a *avroType) (fastDec, error) {
	k := planKey{w: a, r: a, t: t}
	if f, ok := p.decs[k]; ok {
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return (*f)(buf, ptr) }, nil
	}
	slot := new(fastDec)
	p.decs[k] = slot
	f, err := p.buildDecoder(t, a)
	if err != nil {
		return nil, err
	}
	*slot = f
	return f, nil
}

func (p *fastPlanner) buildDecoder(t reflect.Type, a *avroType) (fastDec, error) {
	if a.kind == "union" {
		return p.unionDecoder(t, a)
	}
	if t.Kind() == reflect.Pointer {
		elemType := t.Elem()
		elem, err := p.decoder(elemType, a)
		if err != nil {
			return nil, err
		}
		reuse := p.borrow
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			v := *(*unsafe.Pointer)(ptr)
			if !reuse || v == nil {
				v = reflect.New(elemType).UnsafePointer()
			}
			buf, err := elem(buf, v)
			if err != nil {
				return buf, err
			}
			*(*unsafe.Pointer)(ptr) = v
			return buf, nil
		}, nil
	}
	switch {
	case a.logical == "decimal" && a.kind == "bytes":
		if (t != decimalType && t != unscaledType) || a.prec > 18 || a.prec < 1 || a.scale < 0 || a.scale > a.prec {
			return nil, errNoFastPlan
		}
		prec, scale := a.prec, a.scale
		if t == unscaledType {
			return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
				b, rest, ok := readBytes(buf)
				if !ok {
					return buf, errFastInvalid
				}
				u, ok := unscaledFromBytes(b, prec)
				if !ok {
					return buf, errFastInvalid
				}
				*(*Unscaled)(ptr) = Unscaled{V: u, Scale: int32(scale)}
				return rest, nil
			}, nil
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			b, rest, ok := readBytes(buf)
			if !ok {
				return buf, errFastInvalid
			}
			d, ok := decimalFromBytes(b, prec, scale)
			if !ok {
				return buf, errFastInvalid
			}
			*(*decimal.Decimal)(ptr) = d
			return rest, nil
		}, nil
	case a.kind == "long" && a.logical == "timestamp-micros":
		if t != timeType {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			us, rest, ok := readLong(buf)
			if !ok {
				return buf, errFastInvalid
			}
			// goavro's conversion (nativeFromTimeStampMicros), then the codec's year check.
			sec := us / 1e6
			tm := time.Unix(sec, (us-sec*1e6)*1e3).UTC()
			if s := tm.Unix(); s < minUnixSecond || s >= endUnixSecond {
				return buf, errFastInvalid
			}
			*(*time.Time)(ptr) = tm
			return rest, nil
		}, nil
	case a.logical != "":
		return nil, errNoFastPlan
	}
	switch a.kind {
	case "null":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) { return buf, nil }, nil
	case "boolean":
		if t.Kind() != reflect.Bool {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			if len(buf) == 0 || buf[0] > 1 {
				return buf, errFastInvalid
			}
			*(*bool)(ptr) = buf[0] == 1
			return buf[1:], nil
		}, nil
	case "int", "long":
		set := intSetter(t)
		if set == nil {
			return nil, errNoFastPlan
		}
		if a.kind == "int" {
			return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
				i, rest, ok := readInt(buf)
				if !ok || !set(ptr, int64(i)) {
					return buf, errFastInvalid
				}
				return rest, nil
			}, nil
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			i, rest, ok := readLong(buf)
			if !ok || !set(ptr, i) {
				return buf, errFastInvalid
			}
			return rest, nil
		}, nil
	case "string":
		if t.Kind() != reflect.String {
			return nil, errNoFastPlan
		}
		copyStrings := p.skip && !p.borrow
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			b, rest, ok := readBytes(buf)
			if !ok {
				return buf, errFastInvalid
			}
			switch {
			case len(b) == 0:
				*(*string)(ptr) = ""
			case copyStrings:
				*(*string)(ptr) = string(b)
			default:
				// buf is Codec.DecodeInto's immutable copy of the input (the only caller of a
				// decode plan), or a borrowing projection's input: the string shares its bytes
				*(*string)(ptr) = unsafe.String(&b[0], len(b))
			}
			return rest, nil
		}, nil
	case "enum":
		if t.Kind() != reflect.String {
			return nil, errNoFastPlan
		}
		syms := a.symbols
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			i, rest, ok := readLong(buf)
			if !ok || i < 0 || i >= int64(len(syms)) {
				return buf, errFastInvalid
			}
			*(*string)(ptr) = syms[i]
			return rest, nil
		}, nil
	case "bytes":
		if t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8 {
			return nil, errNoFastPlan
		}
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
			b, rest, ok := readBytes(buf)
			if !ok {
				return buf, errFastInvalid
			}
			*(*[]byte)(ptr) = append([]byte{}, b...) // never nil, as on the goavro path
			return rest, nil
		}, nil
	case "array":
		if t.Kind() != reflect.Slice || t == bytesType {
			return nil, errNoFastPlan
		}
		return p.arrayDecoder(t, a)
	case "record":
		if t.Kind() != reflect.Struct {
			return nil, errNoFastPlan
		}
		return p.recordDecoder(t, a)
	}
	return nil, errNoFastPlan
}

// minSizes returns the least number of bytes a value of each type reachable from root
// occupies. A record is 0 while it is being computed, so a record that contains itself without
// an array or union in between counts as 0 there, which only weakens the bound.
func minSizes(root *avroType) map[*avroType]int {
	out := map[*avroType]int{}
	var size func(a *avroType) int
	size = func(a *avroType) int {
		if n, ok := out[a]; ok {
			return n
		}
		out[a] = 0
		n := 1 // a varint, a length or a union index
		switch a.kind {
		case "null":
			n = 0
		case "float":
			n = 4
		case "double":
			n = 8
		case "fixed":
			n = a.size
		case "record":
			n = 0
			for _, f := range a.fields {
				n += size(f.typ)
			}
		}
		for _, b := range a.branches {
			size(b)
		}
		if a.items != nil {
			size(a.items)
		}
		if a.values != nil {
			size(a.values)
		}
		out[a] = n
		return n
	}
	size(root)
	return out
}

func (p *fastPlanner) arrayDecoder(t reflect.Type, a *avroType) (fastDec, error) {
	itemMin := p.minSize[a.items]
	if itemMin == 0 {
		// goavro would allocate and loop for any claimed count; not worth matching.
		return nil, errNoFastPlan
	}
	item, err := p.decoder(t.Elem(), a.items)
	if err != nil {
		return nil, err
	}
	size := t.Elem().Size()
	// Backing arrays of up to len(arrays) items are allocated as [n]T, one object, instead of
	// by reflect.MakeSlice, which also allocates the slice header it returns.
	var arrays [8]reflect.Type
	for i := 1; i < len(arrays); i++ {
		arrays[i] = reflect.ArrayOf(i, t.Elem())
	}
	reuse := p.borrow
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		var s reflect.Value
		var data unsafe.Pointer
		var have int // reuse: the capacity of the backing array ptr holds
		if reuse {
			old := *(*sliceHeader)(ptr)
			data, have = old.data, old.cap
		}
		n := 0
		for {
			count, rest, ok := readBlockCount(buf)
			if !ok {
				return buf, errFastInvalid
			}
			buf = rest
			if count == 0 {
				break
			}
			if count > int64(len(buf)/itemMin) {
				return buf, errFastInvalid // fewer bytes left than count items need
			}
			c := int(count)
			switch {
			case n+c <= have:
				// reuse: the earlier decode's backing array (data) holds these items too
			case n == 0 && c < len(arrays):
				data = reflect.New(arrays[c]).UnsafePointer()
			default: // a large block, or a further block (rare: goavro writes one)
				grown := reflect.MakeSlice(t, n+c, n+c)
				if n > 0 {
					if s.IsValid() {
						reflect.Copy(grown, s)
					} else {
						reflect.Copy(grown, reflect.NewAt(reflect.ArrayOf(n, t.Elem()), data).Elem())
					}
				}
				s, data, have = grown, grown.UnsafePointer(), n+c
			}
			for i := n; i < n+c; i++ {
				var err error
				if buf, err = item(buf, unsafe.Add(data, uintptr(i)*size)); err != nil {
					return buf, err
				}
			}
			n += c
		}
		switch {
		case reuse && have > n:
			// the backing array keeps its capacity for the next decode, also when empty (Go's
			// nil/empty distinction is not the borrowing plan's: its caller reads len)
			*(*sliceHeader)(ptr) = sliceHeader{data: data, len: n, cap: have}
		case n == 0:
			*(*sliceHeader)(ptr) = sliceHeader{} // empty is nil: the canonical Go form
		default:
			*(*sliceHeader)(ptr) = sliceHeader{data: data, len: n, cap: n}
		}
		return buf, nil
	}, nil
}

func (p *fastPlanner) unionDecoder(t reflect.Type, a *avroType) (fastDec, error) {
	isPtr := t.Kind() == reflect.Pointer
	target := t
	if isPtr {
		target = t.Elem()
	}
	decs := make([]fastDec, len(a.branches)) // nil for the null branch
	for i, b := range a.branches {
		if b.kind == "null" {
			continue
		}
		d, err := p.decoder(target, b)
		if err != nil {
			return nil, err
		}
		decs[i] = d
	}
	zero := zeroer(t)
	reuse := p.borrow
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		i, rest, ok := readLong(buf)
		if !ok || i < 0 || i >= int64(len(decs)) {
			return buf, errFastInvalid
		}
		d := decs[i]
		if d == nil {
			zero(ptr)
			return rest, nil
		}
		if !isPtr {
			return d(rest, ptr)
		}
		v := *(*unsafe.Pointer)(ptr)
		if !reuse || v == nil {
			v = reflect.New(target).UnsafePointer()
		}
		rest, err := d(rest, v)
		if err != nil {
			return buf, err
		}
		*(*unsafe.Pointer)(ptr) = v
		return rest, nil
	}, nil
}

// zeroer returns a function that sets a value of type t to its zero value.
func zeroer(t reflect.Type) func(unsafe.Pointer) {
	switch t.Kind() {
	case reflect.Pointer:
		return func(p unsafe.Pointer) { *(*unsafe.Pointer)(p) = nil }
	case reflect.Slice:
		return func(p unsafe.Pointer) { *(*sliceHeader)(p) = sliceHeader{} }
	}
	return func(p unsafe.Pointer) { reflect.NewAt(t, p).Elem().SetZero() }
}

type fastFieldDec struct {
	off uintptr
	dec fastDec
}

func (p *fastPlanner) recordDecoder(t reflect.Type, a *avroType) (fastDec, error) {
	byName, groups := splitFields(t)
	var plan []fastFieldDec
	set := map[string]bool{} // Go fields (json names) and groups (union names) the plan sets
	for _, af := range a.fields {
		if gf, ok := byName[af.name]; ok {
			dec, err := p.decoder(gf.typ, af.typ)
			if err != nil {
				return nil, err
			}
			plan = append(plan, fastFieldDec{off: fieldOffset(t, gf.index), dec: dec})
			set[af.name] = true
			continue
		}
		if members, ok := groups[af.name]; ok {
			dec, err := p.groupDecoder(t, members, af.typ)
			if err != nil {
				return nil, err
			}
			plan = append(plan, fastFieldDec{dec: dec})
			set["union "+af.name] = true
			continue
		}
		if !p.skip {
			return nil, errNoFastPlan // a writer field T lacks: only a projection skips it
		}
		plan = append(plan, fastFieldDec{dec: p.skipper(af.typ)})
	}
	if p.borrow {
		// The value may hold an earlier decode's result: a Go field the schema does not set is
		// zeroed first (a projection has none but a union group's members, which groupDecoder
		// sets; this keeps the plan right for any T).
		var unset []goField
		for name, gf := range byName {
			if !set[name] {
				unset = append(unset, gf)
			}
		}
		for union, members := range groups {
			if !set["union "+union] {
				unset = append(unset, members...)
			}
		}
		zero := make([]fastFieldDec, len(unset))
		for i, gf := range unset {
			z := zeroer(gf.typ)
			zero[i] = fastFieldDec{off: fieldOffset(t, gf.index), dec: func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { z(ptr); return buf, nil }}
		}
		plan = append(zero, plan...)
	}
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		for i := range plan {
			var err error
			if buf, err = plan[i].dec(buf, unsafe.Add(ptr, plan[i].off)); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}, nil
}

type fastGroupBranch struct {
	off  uintptr
	typ  reflect.Type
	dec  fastDec
	some bool // the branch has a Go field
}

// groupDecoder reads a union of records into the tagged pointer field of its branch, in the
// record at ptr; a null branch or a branch without Go field is invalid (as on the goavro path).
func (p *fastPlanner) groupDecoder(t reflect.Type, members []goField, u *avroType) (fastDec, error) {
	if u.kind != "union" {
		return nil, errNoFastPlan
	}
	branches := make([]fastGroupBranch, len(u.branches))
	for i, b := range u.branches {
		for _, gf := range members {
			if b.kind != "record" || b.shortName() != gf.branch {
				continue
			}
			dec, err := p.decoder(gf.typ.Elem(), b)
			if err != nil {
				return nil, err
			}
			branches[i] = fastGroupBranch{off: fieldOffset(t, gf.index), typ: gf.typ.Elem(), dec: dec, some: true}
		}
	}
	reuse := p.borrow
	offs := make([]uintptr, len(members)) // reuse: every member, the ones not decoded are set to nil
	for i, gf := range members {
		offs[i] = fieldOffset(t, gf.index)
	}
	return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) {
		i, rest, ok := readLong(buf)
		if !ok || i < 0 || i >= int64(len(branches)) || !branches[i].some {
			return buf, errFastInvalid
		}
		b := &branches[i]
		var v unsafe.Pointer
		if reuse {
			v = *(*unsafe.Pointer)(unsafe.Add(ptr, b.off))
			for _, off := range offs {
				if off != b.off {
					*(*unsafe.Pointer)(unsafe.Add(ptr, off)) = nil
				}
			}
		}
		if v == nil {
			v = reflect.New(b.typ).UnsafePointer()
		}
		rest, err := b.dec(rest, v)
		if err != nil {
			return buf, err
		}
		*(*unsafe.Pointer)(unsafe.Add(ptr, b.off)) = v
		return rest, nil
	}, nil
}

// compileSkipper is the skipper of schema a on its own.
func compileSkipper(a *avroType) fastDec {
	p := &fastPlanner{minSize: minSizes(a), skips: map[*avroType]*fastDec{}}
	return p.skipper(a)
}

// skipper returns a walk over one value of schema a that builds nothing: a projection takes
// it over a field it lacks, and the goavro path over the whole value first (Codec.guard). It
// stops at the first problem, where goavro's decoding fails too: errOversized for a block count
// the bytes left cannot hold, errFastInvalid for anything else (a short or malformed primitive,
// a boolean byte other than 0/1, an enum or union index out of range, a map key twice). ptr is
// ignored.
func (p *fastPlanner) skipper(a *avroType) fastDec {
	if f, ok := p.skips[a]; ok {
		return func(buf []byte, ptr unsafe.Pointer) ([]byte, error) { return (*f)(buf, ptr) }
	}
	slot := new(fastDec)
	p.skips[a] = slot
	*slot = p.buildSkipper(a)
	return *slot
}

func (p *fastPlanner) buildSkipper(a *avroType) fastDec {
	fixed := func(n int) fastDec {
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			if len(buf) < n {
				return buf, errFastInvalid
			}
			return buf[n:], nil
		}
	}
	switch a.kind {
	case "null":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) { return buf, nil }
	case "boolean":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			if len(buf) == 0 || buf[0] > 1 {
				return buf, errFastInvalid
			}
			return buf[1:], nil
		}
	case "int", "long":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			if _, rest, ok := readLong(buf); ok {
				return rest, nil
			}
			return buf, errFastInvalid
		}
	case "enum":
		n := int64(len(a.symbols))
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			if i, rest, ok := readLong(buf); ok && i >= 0 && i < n {
				return rest, nil
			}
			return buf, errFastInvalid
		}
	case "float":
		return fixed(4)
	case "double":
		return fixed(8)
	case "fixed":
		return fixed(a.size)
	case "bytes", "string":
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			if _, rest, ok := readBytes(buf); ok {
				return rest, nil
			}
			return buf, errFastInvalid
		}
	case "record":
		fields := make([]fastDec, len(a.fields))
		for i, f := range a.fields {
			fields[i] = p.skipper(f.typ)
		}
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			for _, f := range fields {
				var err error
				if buf, err = f(buf, nil); err != nil {
					return buf, err
				}
			}
			return buf, nil
		}
	case "union":
		branches := make([]fastDec, len(a.branches))
		for i, b := range a.branches {
			branches[i] = p.skipper(b)
		}
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			i, rest, ok := readLong(buf)
			if !ok || i < 0 || i >= int64(len(branches)) {
				return buf, errFastInvalid
			}
			return branches[i](rest, nil)
		}
	case "array", "map":
		isMap := a.kind == "map"
		item, itemMin := a.items, 0
		if isMap {
			item, itemMin = a.values, 1 // the key's length
		}
		itemMin += p.minSize[item]
		skip := p.skipper(item)
		return func(buf []byte, _ unsafe.Pointer) ([]byte, error) {
			var keys map[string]struct{} // a map's keys: goavro refuses a duplicate
			for {
				count, rest, ok := readBlockCount(buf)
				if !ok {
					return buf, errFastInvalid
				}
				buf = rest
				if count == 0 {
					return buf, nil
				}
				if (itemMin > 0 && count > int64(len(buf)/itemMin)) || (itemMin == 0 && count > maxZeroSizeItems) {
					return buf, errOversized
				}
				for i := int64(0); i < count; i++ {
					if isMap {
						var key []byte
						if key, buf, ok = readBytes(buf); !ok || !newKey(&keys, key) {
							return buf, errFastInvalid
						}
					}
					var err error
					if buf, err = skip(buf, nil); err != nil {
						return buf, err
					}
				}
			}
		}
	}
	return func(buf []byte, _ unsafe.Pointer) ([]byte, error) { return buf, errFastInvalid }
}

// ---------------------------------------------------------------------------- bounds guard

// maxZeroSizeItems bounds the count of an array or map block whose items occupy no bytes
// (null, a record of nulls): the bytes cannot bound it, and goavro allocates the whole count.
const maxZeroSizeItems = 1 << 16

// errOversized: an array or map block claims more items than the bytes left can hold. goavro
// allocates capacity for a claimed count before reading the items, so a 7-byte record claiming
// 2^31-1 items makes it allocate 32 GiB and kills the process with an unrecoverable
// out-of-memory error: the goavro path walks the value with the writer schema's skipper first
// (Codec.guard) and refuses it itself. goavro reads in the same order and would fail at the same
// place (the items cannot all be there), so no input goavro accepts is refused.
var errOversized = errors.New("malformed Avro: an array or map block claims more items than the bytes left can hold")

// newKey adds key to *keys (made on first use) and reports whether it was not there yet.
func newKey(keys *map[string]struct{}, key []byte) bool {
	if *keys == nil {
		*keys = map[string]struct{}{}
	}
	if _, dup := (*keys)[string(key)]; dup {
		return false
	}
	(*keys)[string(key)] = struct{}{}
	return true
}
