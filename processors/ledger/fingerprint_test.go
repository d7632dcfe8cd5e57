package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

var (
	decimalType = reflect.TypeFor[decimal.Decimal]()
	timeType    = reflect.TypeFor[time.Time]()
)

// fill sets every field reachable from v to a distinct non-zero value: pointers allocated,
// slices of two elements.
func fill(v reflect.Value, n *int) {
	*n++
	switch {
	case v.Type() == decimalType:
		v.Set(reflect.ValueOf(decimal.New(int64(*n)*125, -2)))
		return
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(t0.Add(time.Duration(*n) * time.Hour)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

// deepCopy copies dst ← src with no shared pointer or slice (decimals and times are values).
func deepCopy(dst, src reflect.Value) {
	if src.Type() == decimalType || src.Type() == timeType {
		dst.Set(src)
		return
	}
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		dst.Set(reflect.New(src.Type().Elem()))
		deepCopy(dst.Elem(), src.Elem())
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		for i := range src.NumField() {
			deepCopy(dst.Field(i), src.Field(i))
		}
	default:
		dst.Set(src)
	}
}

// mutation changes one node of an event; variants are tried on every node where they apply.
type mutation struct {
	name  string
	apply func(v reflect.Value) bool // false: does not apply to this node
}

var mutations = []mutation{
	{"other value", func(v reflect.Value) bool {
		switch {
		case v.Type() == decimalType:
			v.Set(reflect.ValueOf(v.Interface().(decimal.Decimal).Add(decimal.New(1, -3))))
		case v.Type() == timeType:
			v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Nanosecond)))
		case v.Kind() == reflect.String:
			v.SetString(v.String() + "x")
		case v.Kind() == reflect.Int32 || v.Kind() == reflect.Int64:
			v.SetInt(v.Int() + 1)
		case v.Kind() == reflect.Bool:
			v.SetBool(!v.Bool())
		default:
			return false
		}
		return true
	}},
	{"same value, other representation", func(v reflect.Value) bool {
		switch {
		case v.Type() == decimalType: // 12.50 → 12.5000: equal in JSON
			d := v.Interface().(decimal.Decimal)
			v.Set(reflect.ValueOf(decimal.NewFromBigInt(new(big.Int).Mul(d.Coefficient(), big.NewInt(100)), d.Exponent()-2)))
		case v.Type() == timeType: // same instant and offset, other zone name: equal in JSON
			v.Set(reflect.ValueOf(v.Interface().(time.Time).In(time.FixedZone("ZULU", 0))))
		default:
			return false
		}
		return true
	}},
	{"same instant, other offset", func(v reflect.Value) bool {
		if v.Type() != timeType {
			return false
		}
		v.Set(reflect.ValueOf(v.Interface().(time.Time).In(time.FixedZone("CET", 3600))))
		return true
	}},
	{"invalid UTF-8", func(v reflect.Value) bool {
		if v.Kind() != reflect.String || v.Type() == timeType {
			return false
		}
		v.SetString(v.String() + "\xff")
		return true
	}},
	{"another invalid UTF-8 byte", func(v reflect.Value) bool { // JSON: both U+FFFD
		if v.Kind() != reflect.String {
			return false
		}
		v.SetString(v.String() + "\xfe")
		return true
	}},
	{"U+FFFD itself", func(v reflect.Value) bool { // JSON: raw, unlike an escaped invalid byte
		if v.Kind() != reflect.String {
			return false
		}
		v.SetString(v.String() + "\uFFFD")
		return true
	}},
	{"nil", func(v reflect.Value) bool {
		if (v.Kind() != reflect.Pointer && v.Kind() != reflect.Slice) || v.IsNil() {
			return false
		}
		v.SetZero()
		return true
	}},
	{"empty", func(v reflect.Value) bool {
		if v.Kind() != reflect.Slice {
			return false
		}
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		return true
	}},
	{"one element fewer", func(v reflect.Value) bool {
		if v.Kind() != reflect.Slice || v.Len() == 0 {
			return false
		}
		v.Set(v.Slice(1, v.Len()))
		return true
	}},
}

// nodes lists the paths of every node reachable from v (in walk order).
func nodes(v reflect.Value, path string, visit func(path string, v reflect.Value)) {
	visit(path, v)
	if v.Type() == decimalType || v.Type() == timeType {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			nodes(v.Elem(), path, visit)
		}
	case reflect.Slice:
		for i := range v.Len() {
			nodes(v.Index(i), fmt.Sprintf("%s[%d]", path, i), visit)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			nodes(v.Field(i), path+"."+v.Type().Field(i).Name, visit)
		}
	}
}

func jsonForm(t *testing.T, e schemas.Event) []byte {
	t.Helper()
	e.PublishedAt = time.Time{}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFingerprintMatchesJSON holds fingerprint to the equivalence the JSON fingerprint of state
// version 1 defined: on an event with every field of every body set, each single change (every
// field, every variant) changes the fingerprint exactly when it changes the JSON form. A field
// added to schemas.Event but not to the fingerprint fails here by name.
func TestFingerprintMatchesJSON(t *testing.T) {
	var base schemas.Event
	n := 0
	fill(reflect.ValueOf(&base).Elem(), &n)
	baseFP, err := fingerprint(&base)
	if err != nil {
		t.Fatal(err)
	}
	baseJSON := jsonForm(t, base)
	var paths []string
	nodes(reflect.ValueOf(&base).Elem(), "Event", func(p string, _ reflect.Value) { paths = append(paths, p) })
	checked := 0
	for k, path := range paths {
		for _, m := range mutations {
			var e schemas.Event
			deepCopy(reflect.ValueOf(&e).Elem(), reflect.ValueOf(&base).Elem())
			i, applied := 0, false
			nodes(reflect.ValueOf(&e).Elem(), "Event", func(_ string, v reflect.Value) {
				if i == k {
					applied = m.apply(v)
				}
				i++
			})
			if !applied {
				continue
			}
			checked++
			fp, err := fingerprint(&e)
			if err != nil {
				t.Fatalf("%s (%s): %v", path, m.name, err)
			}
			sameJSON := bytes.Equal(jsonForm(t, e), baseJSON)
			if sameFP := fp == baseFP; sameFP != sameJSON {
				t.Errorf("%s (%s): same fingerprint %v, same JSON %v", path, m.name, sameFP, sameJSON)
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d mutations checked: the walk is broken", checked)
	}
	// Both invalid-UTF-8 variants of one string are the same JSON, hence the same fingerprint.
	a, b := base, base
	a.EventID, b.EventID = "e\xff", "e\xfe"
	fa, _ := fingerprint(&a)
	fb, _ := fingerprint(&b)
	if fa != fb || !bytes.Equal(jsonForm(t, a), jsonForm(t, b)) {
		t.Fatal("invalid UTF-8 bytes: JSON and fingerprint disagree")
	}
	// A time without an RFC 3339 form is rejected by both.
	base.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := fingerprint(&base); err == nil {
		t.Fatal("year 10000 fingerprinted; JSON cannot encode it")
	}
}

// TestFingerprintIgnoresPublishedAt: a re-publication of the same fact is the same event.
func TestFingerprintIgnoresPublishedAt(t *testing.T) {
	e := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"})
	f1, _ := fingerprint(&e)
	e.PublishedAt = day(9)
	f2, _ := fingerprint(&e)
	if f1 != f2 {
		t.Fatal("published_at changed the fingerprint")
	}
}

// TestLegacyFingerprintHonoured: a state written by version 1 (JSON fingerprints) still treats
// a re-delivered event as a duplicate and a different payload under its id as a conflict.
func TestLegacyFingerprintHonoured(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"})
	l, _ := run(t, p, o1001(), s1)
	st := l.State()
	st.StateVersion = 1
	for i := range st.Seen {
		legacy, err := legacyFingerprint(map[string]schemas.Event{"e-oa": o1001(), "e-s1": s1}[st.Seen[i].EventID])
		if err != nil {
			t.Fatal(err)
		}
		st.Seen[i].Fingerprint = legacy
	}
	v1 := FromState(st)
	again, cmds, err := v1.Apply(s1, p)
	if err != nil || len(cmds) != 0 || !equalStates(again.State(), st) {
		t.Fatalf("duplicate against a version-1 fingerprint: %v, %d commands", err, len(cmds))
	}
	bad := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "2"})
	if _, _, err := v1.Apply(bad, p); err == nil {
		t.Fatal("different payload under a version-1 fingerprint accepted")
	}
}

// TestAppendDecimal: appendDecimal writes exactly decimal.String().
func TestAppendDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []decimal.Decimal{{}, decimal.New(0, -5), decimal.New(0, 3), decimal.New(-1, -30), decimal.New(123, 17),
		decimal.New(1<<62, 2), decimal.New(-(1 << 62), -3), decimal.New(999999999999999999, -18), decimal.New(5, -19),
		decimal.RequireFromString("123456789012345678901234567890.5"), decimal.RequireFromString("-0.000100")}
	for range 5000 {
		c := r.Int64N(1_000_000_000_000) - 500_000_000_000
		if r.IntN(3) == 0 {
			c *= int64(pow10u[r.IntN(6)])
		}
		vals = append(vals, decimal.New(c, int32(r.IntN(30)-22)))
	}
	for _, d := range vals {
		if got, want := string(appendDecimal(nil, d)), d.String(); got != want {
			t.Fatalf("appendDecimal(%s) = %q (coefficient %s, exponent %d)", want, got, d.Coefficient(), d.Exponent())
		}
	}
}
