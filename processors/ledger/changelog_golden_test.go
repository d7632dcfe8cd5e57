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
// reference path) decodes, restores into a ledger, and encodes back to the same bytes.
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
	ref, err := schemas.NewResolvingCodec[ledgerstate.State](text, text) // goavro only: no direct path
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
		if !bytes.Equal(again, value) {
			t.Fatalf("value %d (order %s): re-encoded bytes differ from main's", n, want.OrderID)
		}
	}
	if n != 68 {
		t.Fatalf("%d values, want 68", n)
	}
}
