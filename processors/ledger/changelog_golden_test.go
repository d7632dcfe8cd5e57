package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"reflect"
	"testing"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
)

// testdata/changelog-main-5fd796d.bin holds 68 changelog values (length-prefixed) that main's
// codec wrote at 5fd796d: the final states of 60 generated orders with every fault at 20 %
// (held events, documents, exceptions, moves). Issue 16 changed how the direct decode path
// builds strings; the changelog contract must not move: every value decodes to what goavro (the
// reference path) decodes, restores into a ledger, and encodes back to the same bytes. The
// schema has moved on since (order_ledger v3 adds orphan_since at the end): the values are read
// as released v2 wrote them, and re-encoded they keep v2's bytes with the new field after them.
func TestChangelogWrittenByMainDecodes(t *testing.T) {
	raw, err := os.ReadFile("testdata/changelog-main-5fd796d.bin")
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	text, err := schemas.SchemaText("order_ledger")
	if err != nil {
		t.Fatal(err)
	}
	released, err := schemas.ReleasedSchemas("order_ledger")
	if err != nil || len(released) < 2 {
		t.Fatalf("order_ledger v2 not released: %v", err)
	}
	v2 := released[1].Text
	ref, err := schemas.NewResolvingCodec[ledgerstate.State](v2, text) // goavro only: no direct path
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for len(raw) > 0 {
		size := binary.BigEndian.Uint32(raw)
		value := raw[4 : 4+size]
		raw = raw[4+size:]
		n++
		l, err := DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: int64(n)}, value)
		if err != nil {
			t.Fatalf("value %d: %v", n, err)
		}
		want, err := ref.Decode(value[schemas.HeaderSize:])
		if err != nil {
			t.Fatalf("value %d, reference decode: %v", n, err)
		}
		if got := l.State(); !reflect.DeepEqual(got, *want) {
			t.Fatalf("value %d (order %s): the direct path decodes\n%+v\nthe reference\n%+v", n, want.OrderID, got, *want)
		}
		again, err := EncodeState(serde, l)
		if err != nil {
			t.Fatalf("value %d: encode: %v", n, err)
		}
		body, old := again[schemas.HeaderSize:], value[schemas.HeaderSize:]
		if !bytes.HasPrefix(body, old) {
			t.Fatalf("value %d (order %s): re-encoded bytes differ from main's", n, want.OrderID)
		}
		// the current layout decodes by the direct path (the golden bytes, under v2's id, went
		// through resolution) to the same state
		back, err := DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: int64(n)}, again)
		if err != nil {
			t.Fatalf("value %d re-encoded: %v", n, err)
		}
		if got := back.State(); !reflect.DeepEqual(got, *want) {
			t.Fatalf("value %d (order %s): re-encoded, the direct path decodes\n%+v\nthe reference\n%+v", n, want.OrderID, got, *want)
		}
		// orphan_since at its default (1970-01-01: 0 µs, the one byte 0x00)
		if tail := body[len(old):]; !bytes.Equal(tail, []byte{0}) {
			t.Fatalf("value %d (order %s): % x after v2's fields, want orphan_since's default 00", n, want.OrderID, tail)
		}
	}
	if n != 68 {
		t.Fatalf("%d values, want 68", n)
	}
}
