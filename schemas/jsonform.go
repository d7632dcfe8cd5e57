package schemas

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// The JSON form is what `retailflow produce` reads and `retailflow consume` writes: one value
// per line, shaped by the Go json tags (Envelope flattened, the body under its json key such as
// "order_accepted"), decimals as strings ("137.60"), timestamps RFC 3339 in UTC, []byte as
// base64, nil pointers omitted, empty lists as []. Parsing rejects unknown fields and names
// the line and field path in every error; EncodeJSON writes back exactly that shape, so
// consume → produce round-trips.

// maxJSONLine bounds one line of the JSON form; a larger event is refused rather than
// buffered without limit (the largest real events are orders with a few hundred lines).
const maxJSONLine = 16 << 20

// JSONReader reads events in the JSON form, one per line; blank lines are skipped.
type JSONReader struct {
	sc   *bufio.Scanner
	line int
}

// NewJSONReader reads events from r.
func NewJSONReader(r io.Reader) *JSONReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxJSONLine)
	return &JSONReader{sc: sc}
}

// Next returns the next event, or io.EOF after the last. Errors start with "line N: ".
// Next checks the structure (exactly one body, matching event_type) but not the contract
// rules: call Validate for those.
func (r *JSONReader) Next() (*Event, error) {
	for r.sc.Scan() {
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		e, err := DecodeEventJSON(b)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", r.line, err)
		}
		return e, nil
	}
	if err := r.sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", r.line+1, err)
	}
	return nil, io.EOF
}

// Line returns the number of the line Next last read.
func (r *JSONReader) Line() int { return r.line }

// DecodeEventJSON parses one event in the JSON form and checks that exactly one body is set
// and that event_type names it.
func DecodeEventJSON(b []byte) (*Event, error) {
	e, err := DecodeJSON[Event](b)
	if err != nil {
		return nil, err
	}
	set := e.setBodies()
	switch {
	case len(set) == 0:
		return nil, errors.New("no body: one of order_accepted, shipment_confirmed, … is required")
	case len(set) > 1:
		return nil, fmt.Errorf("%s and %s: exactly one body is allowed", set[0].key, set[1].key)
	}
	if bt := e.BodyType(); e.EventType != bt {
		return nil, fmt.Errorf("event_type: %q does not match the body %s (want %q)", e.EventType, set[0].key, bt)
	}
	return e, nil
}

// DecodeJSON parses one value of any type in the JSON form.
func DecodeJSON[T any](b []byte) (*T, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value on the line")
	}
	v := new(T)
	if err := fromJSONTree(tree, reflect.ValueOf(v).Elem()); err != nil {
		return nil, err
	}
	return v, nil
}

// EncodeJSON writes one value in the JSON form (no trailing newline).
func EncodeJSON[T any](v *T) ([]byte, error) {
	var buf bytes.Buffer
	if err := toJSON(&buf, reflect.ValueOf(v).Elem()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func fromJSONTree(n any, v reflect.Value) error {
	t := v.Type()
	if n == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			v.SetZero()
			return nil
		}
		return fmt.Errorf("null is not allowed here (%s)", jsonKind(t))
	}
	switch t {
	case decimalType:
		var s string
		switch x := n.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			return fmt.Errorf("%s is not a decimal", show(n))
		}
		d, err := decimal.NewFromString(s)
		if err != nil {
			return fmt.Errorf("%q is not a decimal", s)
		}
		v.Set(reflect.ValueOf(d))
		return nil
	case timeType:
		s, ok := n.(string)
		if !ok {
			return fmt.Errorf("%s is not an RFC 3339 timestamp", show(n))
		}
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("%q is not an RFC 3339 timestamp", s)
		}
		v.Set(reflect.ValueOf(tm.UTC()))
		return nil
	case bytesType:
		s, ok := n.(string)
		if !ok {
			return fmt.Errorf("%s is not base64", show(n))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("%q is not base64", s)
		}
		v.SetBytes(b)
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := fromJSONTree(n, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.String:
		s, ok := n.(string)
		if !ok {
			return fmt.Errorf("%s is not a string", show(n))
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := n.(bool)
		if !ok {
			return fmt.Errorf("%s is not true or false", show(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		num, ok := n.(json.Number)
		if !ok {
			return fmt.Errorf("%s is not an integer", show(n))
		}
		i, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil || v.OverflowInt(i) {
			return fmt.Errorf("%s is not an integer that fits %s", num, t.Kind())
		}
		v.SetInt(i)
		return nil
	case reflect.Float32, reflect.Float64:
		num, ok := n.(json.Number)
		if !ok {
			return fmt.Errorf("%s is not a number", show(n))
		}
		f, err := num.Float64()
		if err != nil {
			return fmt.Errorf("%s is not a number", num)
		}
		v.SetFloat(f)
		return nil
	case reflect.Slice:
		xs, ok := n.([]any)
		if !ok {
			return fmt.Errorf("%s is not a list", show(n))
		}
		if len(xs) == 0 {
			v.SetZero() // empty is nil: the canonical Go form, as the Avro codec decodes it
			return nil
		}
		s := reflect.MakeSlice(t, len(xs), len(xs))
		for i, x := range xs {
			if err := fromJSONTree(x, s.Index(i)); err != nil {
				return atPath(fmt.Sprintf("[%d]", i), err)
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		xs, ok := n.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return fmt.Errorf("%s is not an object", show(n))
		}
		if len(xs) == 0 {
			v.SetZero()
			return nil
		}
		m := reflect.MakeMapWithSize(t, len(xs))
		for k, x := range xs {
			e := reflect.New(t.Elem()).Elem()
			if err := fromJSONTree(x, e); err != nil {
				return atPath(fmt.Sprintf("[%q]", k), err)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		v.Set(m)
		return nil
	case reflect.Struct:
		obj, ok := n.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", show(n))
		}
		fields := goFields(t)
		byName := make(map[string]goField, len(fields))
		for _, f := range fields {
			byName[f.name] = f
		}
		// Keys in sorted order so the first error reported does not depend on map order.
		for _, k := range sortedKeys(obj) {
			f, ok := byName[k]
			if !ok {
				return atPath(k, errors.New("unknown field"))
			}
			if err := fromJSONTree(obj[k], v.FieldByIndex(f.index)); err != nil {
				return atPath(k, err)
			}
		}
		return nil
	}
	return fmt.Errorf("Go type %s has no JSON form", t)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // insertion sort: objects are small
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func jsonKind(t reflect.Type) string {
	switch t {
	case decimalType:
		return "a decimal string"
	case timeType:
		return "an RFC 3339 timestamp"
	}
	return t.Kind().String()
}

// show renders a JSON tree value briefly for an error message.
func show(n any) string {
	switch x := n.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return strconv.Quote(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprint(n)
}

func toJSON(buf *bytes.Buffer, v reflect.Value) error {
	t := v.Type()
	switch t {
	case decimalType:
		buf.WriteByte('"')
		buf.WriteString(v.Interface().(decimal.Decimal).String())
		buf.WriteByte('"')
		return nil
	case timeType:
		buf.WriteByte('"')
		buf.WriteString(v.Interface().(time.Time).UTC().Format(time.RFC3339Nano))
		buf.WriteByte('"')
		return nil
	case bytesType:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		buf.WriteByte('"')
		buf.WriteString(base64.StdEncoding.EncodeToString(v.Bytes()))
		buf.WriteByte('"')
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			buf.WriteString("null")
			return nil
		}
		return toJSON(buf, v.Elem())
	case reflect.String:
		b, _ := json.Marshal(v.String())
		buf.Write(b)
	case reflect.Bool:
		buf.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		buf.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Float32, reflect.Float64:
		b, err := json.Marshal(v.Float())
		if err != nil {
			return err
		}
		buf.Write(b)
	case reflect.Slice:
		buf.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := toJSON(buf, v.Index(i)); err != nil {
				return atPath(fmt.Sprintf("[%d]", i), err)
			}
		}
		buf.WriteByte(']')
	case reflect.Map:
		keys := make(map[string]any, v.Len())
		for _, k := range v.MapKeys() {
			keys[k.String()] = nil
		}
		buf.WriteByte('{')
		for i, k := range sortedKeys(keys) {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := toJSON(buf, v.MapIndex(reflect.ValueOf(k).Convert(t.Key()))); err != nil {
				return atPath(fmt.Sprintf("[%q]", k), err)
			}
		}
		buf.WriteByte('}')
	case reflect.Struct:
		buf.WriteByte('{')
		first := true
		for _, f := range goFields(t) {
			fv := v.FieldByIndex(f.index)
			if f.typ.Kind() == reflect.Pointer && fv.IsNil() {
				continue // optional fields and unset bodies are omitted
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			kb, _ := json.Marshal(f.name)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := toJSON(buf, fv); err != nil {
				return atPath(f.name, err)
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("Go type %s has no JSON form", t)
	}
	return nil
}
