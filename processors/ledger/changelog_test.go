package ledger

import (
	"context"
	"testing"

	"github.com/retailflow/retailflow/schemas"
)

// TestStateRoundTrip encodes a ledger that exercises every part of the state (held events,
// a deferred refund, postings, ERP documents, exceptions) and decodes it back, unchanged.
func TestStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	for name, l := range richLedgers(t, p) {
		b, err := EncodeState(serde, l)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b[0] != 0 || len(b) < schemas.HeaderSize {
			t.Fatalf("%s: not Confluent framed: % x", name, b[:min(len(b), 8)])
		}
		back, err := DecodeState(ctx, serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: 0, Offset: 1}, b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !equalStates(l.State(), back.State()) {
			t.Fatalf("%s: round trip changed the state", name)
		}
		// The decoded ledger keeps working: applying the same next event gives the same result.
		next := returned("e-next", "O-1001", "RN", day(50), qty{"L1", "1"})
		a, ca, errA := l.Apply(next, p)
		bk, cb, errB := back.Apply(next, p)
		if (errA == nil) != (errB == nil) || len(ca) != len(cb) || !equalStates(a.State(), bk.State()) {
			t.Fatalf("%s: decoded ledger diverges: %v / %v", name, errA, errB)
		}
	}
	if _, err := DecodeState(ctx, serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, []byte{0, 0, 0}); err == nil {
		t.Fatal("short value decoded")
	}
}

// richLedgers builds ledgers in several shapes for codec tests.
func richLedgers(t testing.TB, p Policy) map[string]Ledger {
	empty, _ := run(t, p, shipment("e-s0", "O-1001", "S0", day(1), qty{"L1", "1"}))
	full, _ := run(t, p, o1001(),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"}, qty{"L9", "1"}),
		returned("e-r", "O-1001", "R", day(2), qty{"L2", "2"}),
		cancelled("e-c", "O-1001", "C", day(2), false, qty{"L2", "1"}),
		confirmed("e-rc", "O-1001", "RSV-1", 999, day(0)),
		schemas.Event{Envelope: envelope("e-pr", schemas.TypePointsReserved, day(0), "O-1001"),
			PointsReserved: &schemas.PointsReserved{ReservationID: "RSV-1", MemberID: "M-77", CheckoutID: "CO", OrderID: ptr("O-1001"), Points: 1000,
				Value: schemas.Money{Amount: dec("10"), Currency: "EUR"}, ConversionRate: dec("0.01"), ReservedAt: day(0), ExpiresAt: day(1)}},
		schemas.Event{Envelope: envelope("e-pa", schemas.TypePointsAccrualPosted, day(1), "O-1001"),
			PointsAccrualPosted: &schemas.PointsAccrualPosted{LedgerEntryID: "LE1", RequestID: "x", OrderID: "O-1001", Points: 140, TierMultiplier: dec("1.5"), PostedAt: day(1)}},
		schemas.Event{Envelope: envelope("e-inv", schemas.TypeInvoicePosted, day(2), "O-1001"),
			InvoicePosted: &schemas.BillingDocument{BillingDocumentID: "90001", BillingType: "F2", OrderID: "O-1001", Currency: "USD", BillingDate: day(2),
				Net: dec("68.80"), Tax: dec("13.76"), Gross: dec("82.56"), ReturnID: ptr("R"),
				Lines: []schemas.BillingLine{{BillingItem: "1", OrderLineID: "L1", ReferenceDocument: "S1", Quantity: dec("1"), Net: dec("68.80"), Tax: dec("13.76")}}}},
		schemas.Event{Envelope: envelope("e-erp", schemas.TypeErpSalesOrderCreated, day(0), "O-1001"),
			ErpSalesOrderCreated: &schemas.ErpSalesOrderCreated{ErpSalesOrderID: "SO1", OrderID: "O-1001", Currency: "EUR",
				Items: []schemas.ErpItemLink{{ErpItem: "10", OrderLineID: "L1", Quantity: dec("2")}}}},
		schemas.Event{Envelope: envelope("e-bc", schemas.TypeBillingDocCancelled, day(3), "O-1001"),
			BillingDocCancelled: &schemas.BillingDocCancelled{BillingDocumentID: "90002", CancelsBillingDocumentID: "90009", OrderID: "O-1001", CancelledAt: day(3)}},
	)
	deferred, _ := run(t, p, o1001(), cancelled("e-c", "O-1001", "C1", day(1), true, qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"}))
	// A late shipment: moves, and a correction carrying a later return's share.
	late, lateCmds := run(t, p, o1001(),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"}),
		returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"}),
		shipment("e-s2", "O-1001", "S2", day(4), qty{"L1", "1"}, qty{"L2", "2"}))
	if len(late.State().Moves) != 3 || len(lateCmds) != 5 {
		t.Fatalf("late ledger: %d moves, commands %q", len(late.State().Moves), cmdSummary(lateCmds))
	}
	return map[string]Ledger{"orphan": empty, "full": full, "deferred": deferred, "zero": New("O-1001"), "late": late}
}
