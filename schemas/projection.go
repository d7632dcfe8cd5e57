package schemas

import (
	"context"
	"fmt"
	"reflect"

	"github.com/shopspring/decimal"
)

// Unscaled is an Avro decimal as its unscaled integer and its schema's scale: V·10^−Scale. A
// codec reads a decimal of precision ≤ 18 into it without a big.Int; a stage that computes in
// integer units (processors/accrual) converts it to its own scale exactly.
type Unscaled struct {
	V     int64
	Scale int32
}

var unscaledType = reflect.TypeFor[Unscaled]()

// String is the decimal's text, e.g. 12.500 for {12500, 3}.
func (u Unscaled) String() string { return decimal.New(u.V, -u.Scale).String() }

// NewProjectionCodec returns a decode-only codec that reads data of writerSchema into T, a
// projection of it: a struct with some of the schema's fields, mapped by name as NewCodec maps
// them, whose decimals may be Unscaled. Writer fields T lacks are walked and checked (they fail
// where goavro's decoding fails) but not built, so a stage that reads five fields of an event
// with fifty pays for five.
func NewProjectionCodec[T any](writerSchema string) (*Codec[T], error) {
	return newProjectionCodec[T](writerSchema, false)
}

// NewBorrowingProjectionCodec is NewProjectionCodec for a caller that copies what it keeps
// from each decoded value before the next decode into it, and before the input bytes change
// (processors/accrual's Decode): DecodeInto's strings are views of its input bytes, not
// copies, and it reuses what *v holds from an earlier DecodeInto (an optional's or a union
// branch's struct, an array's backing array) instead of allocating again. *v need not be the
// zero value; every field the plan maps is set (a union group's other branches to nil). After
// a decode that fails, *v must not be read.
func NewBorrowingProjectionCodec[T any](writerSchema string) (*Codec[T], error) {
	return newProjectionCodec[T](writerSchema, true)
}

func newProjectionCodec[T any](writerSchema string, borrow bool) (*Codec[T], error) {
	c, err := newCodec[T](writerSchema, "", false)
	if err != nil {
		return nil, err
	}
	if err := checkProjection(reflect.TypeFor[T](), c.writer, map[reflect.Type]bool{}); err != nil {
		return nil, fmt.Errorf("schemas: %s is not a projection of the schema: %w", reflect.TypeFor[T](), err)
	}
	// errNoFastPlan leaves the codec on the goavro path, which ignores the fields T lacks too.
	c.fast, _ = compileFastDecode(reflect.TypeFor[T](), c.writer, borrow)
	return c, nil
}

// Project decodes a framed value of ref.Topic into T, a projection of the topic's schema (see
// NewProjectionCodec), with Decode's errors. A writer schema other than the topic's current
// one is resolved against the current one, as Decode does.
func Project[T any](ctx context.Context, s *Serde, ref RecordRef, value []byte) (*T, error) {
	v := new(T)
	if err := decode(ctx, s, ref, value, decodeProject, v); err != nil {
		return nil, err
	}
	return v, nil
}

// ProjectInto is Project into *dst with a borrowing codec (NewBorrowingProjectionCodec): the
// strings of *dst are views of value, and *dst's pointers and backing arrays from an earlier
// ProjectInto are reused. The caller copies what it keeps before value changes and before the
// next ProjectInto into dst; dst must not be shared between goroutines. On an error *dst is
// left zero or partly decoded, and must not be read.
func ProjectInto[T any](ctx context.Context, s *Serde, ref RecordRef, value []byte, dst *T) error {
	return decode(ctx, s, ref, value, decodeBorrow, dst)
}

// checkProjection requires every Go field of t (and of the structs it reaches) to name a field
// of the schema's record (a union group's members may name branches other topics' schemas
// have, as Event's do): a misspelt json name would otherwise read as a zero value on every
// record (a resolving codec fills a field the writer lacks with its default, and here the
// reader is the writer).
func checkProjection(t reflect.Type, a *avroType, seen map[reflect.Type]bool) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	a = unwrapNullable(a)
	switch {
	case t.Kind() == reflect.Slice && a.kind == "array":
		return checkProjection(t.Elem(), a.items, seen)
	case t.Kind() == reflect.Map && a.kind == "map":
		return checkProjection(t.Elem(), a.values, seen)
	case t.Kind() != reflect.Struct || a.kind != "record" || t == timeType || t == decimalType || t == unscaledType || seen[t]:
		return nil // a leaf: the codec's own plan checks it
	}
	seen[t] = true
	fields := map[string]*avroType{}
	for _, f := range a.fields {
		fields[f.name] = f.typ
	}
	byName, groups := splitFields(t)
	for name, gf := range byName {
		ft, ok := fields[name]
		if !ok {
			return fmt.Errorf("%s.%s: record %s has no field %q", t, t.FieldByIndex(gf.index).Name, a.name, name)
		}
		if err := checkProjection(gf.typ, ft, seen); err != nil {
			return err
		}
	}
	for union, members := range groups {
		u, ok := fields[union]
		if !ok || u.kind != "union" {
			return fmt.Errorf("%s: record %s has no union field %q", t, a.name, union)
		}
		for _, gf := range members {
			var branch *avroType
			for _, b := range u.branches {
				if b.kind == "record" && b.shortName() == gf.branch {
					branch = b
				}
			}
			if branch == nil {
				continue // a sum type spans topics: a member for another topic's branch stays nil
			}
			if err := checkProjection(gf.typ, branch, seen); err != nil {
				return err
			}
		}
	}
	return nil
}
