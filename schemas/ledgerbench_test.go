package schemas_test

import (
	"context"
	"testing"

	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
)

// BenchmarkLedgerState measures the changelog codec as processors/ledger uses it
// (EncodeState/DecodeState through the Serde) on the state of an order after acceptance,
// a cancellation, a shipment, an accrual posting, an activation, an ERP order and an invoice.
func BenchmarkLedgerState(b *testing.B) {
	ctx := context.Background()
	s, err := schemas.NewSerde(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := ledger.DefaultPolicy()
	l := ledger.New("O-1001")
	all := schemas.SampleEvents()
	for _, i := range []int{0, 1, 2, 8, 9, 11, 12} {
		if l, _, err = l.Apply(*all[i], p); err != nil {
			b.Fatalf("%s: %v", all[i].EventType, err)
		}
	}
	value, err := ledger.EncodeState(s, l)
	if err != nil {
		b.Fatal(err)
	}
	ref := schemas.RecordRef{Topic: schemas.TopicChangelog}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			if _, err := ledger.EncodeState(s, l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			if _, err := ledger.DecodeState(ctx, s, ref, value); err != nil {
				b.Fatal(err)
			}
		}
	})
}
