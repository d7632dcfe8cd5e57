package ledger

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// fuzzEvent turns 4 bytes into one event of order O-1001 (sometimes another order, sometimes
// invalid: FuzzApply skips those, as the run stage dead-letters them before the ledger): op picks the kind, a the line (including an unknown one), b a quantity 0..3
// (0 is invalid for shipments and cancellations), c the day and the id (so ids repeat and
// duplicates, conflicting duplicates and a second OrderAccepted occur).
func fuzzEvent(op, a, b, c byte) schemas.Event {
	line := []string{"L1", "L2", "L3", "L9"}[a%4]
	q := fmt.Sprint(b % 4)
	at := day(int(c % 40))
	id := fmt.Sprintf("e%d", c%24)
	order := "O-1001"
	if a%17 == 16 {
		order = "O-OTHER"
	}
	switch op % 12 {
	case 0:
		e := o1001()
		e.EventID, e.OccurredAt = id, at
		return e
	case 1, 2:
		e := shipment(id, order, "S"+id, at, qty{line, q})
		e.ShipmentConfirmed.IsReship = b%8 == 7
		return e
	case 3, 4:
		return returned(id, order, "R"+id, at, qty{line, q})
	case 5:
		return cancelled(id, order, "C"+id, at, b%5 == 4, qty{line, q})
	case 6:
		return confirmed(id, order, []string{"RSV-1", "RSV-X"}[b%2], int64(b)*10, at)
	case 7:
		return schemas.Event{Envelope: envelope(id, schemas.TypePointsAccrualPosted, at, order),
			PointsAccrualPosted: &schemas.PointsAccrualPosted{LedgerEntryID: "LE" + q, RequestID: id, OrderID: order, MemberID: "M-77", Currency: "EUR", Points: int64(b) - 2, TierMultiplier: dec("1.5"), PostedAt: at}}
	case 8:
		return schemas.Event{Envelope: envelope(id, schemas.TypePointsReversed, at, order),
			PointsReversed: &schemas.PointsReversed{LedgerEntryID: "LR" + q, RequestID: id, OrderID: order, MemberID: "M-77", Reason: "RETURN", Points: int64(b), FromPending: int64(b), ReversedAt: at}}
	case 9:
		return schemas.Event{Envelope: envelope(id, schemas.TypeInvoicePosted, at, order),
			InvoicePosted: &schemas.BillingDocument{BillingDocumentID: "D" + q, BillingType: "F2", OrderID: order, ErpSalesOrderID: "SO1", AccountingTransferStatus: "TRANSFERRED",
				Currency: []string{"EUR", "USD"}[b%2], FxRate: dec("1"), BillingDate: at,
				Lines: []schemas.BillingLine{{BillingItem: "10", OrderLineID: line, ReferenceDocument: "S" + id, Quantity: decimal.RequireFromString(q), Net: decimal.New(int64(c), 0)}}}}
	case 10:
		return schemas.Event{Envelope: envelope(id, schemas.TypeBillingDocCancelled, at, order),
			BillingDocCancelled: &schemas.BillingDocCancelled{BillingDocumentID: "X" + id, CancelsBillingDocumentID: "D" + q, OrderID: order, CancelledAt: at}}
	default:
		return schemas.Event{Envelope: envelope(id, schemas.TypeErpSalesOrderCreated, at, order),
			ErpSalesOrderCreated: &schemas.ErpSalesOrderCreated{ErpSalesOrderID: "SO" + q, OrderID: order, Currency: "EUR",
				Items: []schemas.ErpItemLink{{ErpItem: "1", OrderLineID: line, Quantity: decimal.RequireFromString(q)}}}}
	}
}

// FuzzApply feeds arbitrary sequences of valid events. Invariants: Apply never panics; the line
// invariants and points identities hold after every event; a rejected event leaves the ledger
// unchanged and its error names the event; every command has points > 0 and the contract id;
// commands never repeat a request id.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 1, 0, 2, 2, 3, 1, 1, 3})
	f.Add([]byte{3, 1, 2, 5, 1, 1, 2, 6, 0, 0, 0, 7, 5, 0, 4, 8})
	f.Add([]byte{6, 0, 0, 1, 5, 0, 4, 2, 0, 0, 0, 0, 7, 1, 2, 3, 8, 1, 2, 4, 9, 2, 1, 5, 10, 1, 1, 6, 11, 0, 2, 7})
	f.Add([]byte{4, 1, 3, 30, 1, 1, 1, 0, 0, 0, 0, 1, 2, 1, 1, 39})
	p := DefaultPolicy()
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Ledger
		ids := map[string]bool{}
		for i := 0; i+3 < len(data) && i < 4*64; i += 4 {
			e := fuzzEvent(data[i], data[i+1], data[i+2], data[i+3])
			if e.Validate() != nil {
				continue // the ledger takes valid events (schemas is the one validator)
			}
			before := l.State()
			n, cmds, err := l.Apply(e, p)
			if err != nil {
				var ee *EventError
				if !errors.As(err, &ee) || ee.EventID != e.EventID || ee.EventType != e.EventType {
					t.Fatalf("error does not name event %s (%s): %v", e.EventID, e.EventType, err)
				}
				if len(cmds) != 0 || !equalStates(before, n.State()) {
					t.Fatalf("rejected %s changed the ledger or emitted %d commands", e.EventID, len(cmds))
				}
				continue
			}
			l = n
			checkInvariants(t, l)
			for _, c := range cmds {
				if c.Points <= 0 || c.RequestID != schemas.CommandRequestID("O-1001", c.CausingEventID, c.CommandType) || ids[c.RequestID] {
					t.Fatalf("bad command %+v", c)
				}
				ids[c.RequestID] = true
			}
			if !l.Clock().IsZero() && l.Clock().Before(e.OccurredAt) {
				t.Fatalf("clock %v behind event %v", l.Clock(), e.OccurredAt)
			}
		}
	})
}

var benchSink []schemas.LoyaltyCommand

// BenchmarkApply measures one shipment and one return applied to an accepted three-line order
// with a redemption, a confirmation, an ERP order and an invoice already in state (the shape of
// a typical mid-life order), including the copy-on-write clone.
func BenchmarkApply(b *testing.B) {
	p := DefaultPolicy()
	l, _ := run(b, p, o1001(), confirmed("e-rc", "O-1001", "RSV-1", 1000, day(0)),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"}))
	s2 := shipment("e-s2", "O-1001", "S2", day(4), qty{"L1", "1"}, qty{"L2", "2"})
	r1 := returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"})
	b.Run("shipment", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cmds, err := l.Apply(s2, p)
			if err != nil || len(cmds) != 1 {
				b.Fatal(err, len(cmds))
			}
			benchSink = cmds
		}
	})
	l2, _, _ := l.Apply(s2, p)
	b.Run("return", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cmds, err := l2.Apply(r1, p)
			if err != nil || len(cmds) != 2 {
				b.Fatal(err, len(cmds))
			}
			benchSink = cmds
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := l2.Apply(s2, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The feed events: no commands, but the same derived state to keep current.
	_, s2cmds, _ := l.Apply(s2, p)
	feeds := map[string]schemas.Event{
		"accrual-posted": {Envelope: envelope("e-pa2", schemas.TypePointsAccrualPosted, day(4), "O-1001"),
			PointsAccrualPosted: &schemas.PointsAccrualPosted{LedgerEntryID: "LE2", RequestID: s2cmds[0].RequestID, OrderID: "O-1001", MemberID: "M-77",
				Points: s2cmds[0].Points, Status: "PENDING", ActivatesAt: day(34), SourceRef: "S2", BasisAmount: dec("120.4"), Currency: "EUR",
				EarnRate: dec("1"), TierCode: "GOLD", TierMultiplier: dec("1.5"), RuleVersion: p.Version, PostedAt: day(4)}},
		"invoice": {Envelope: envelope("e-inv2", schemas.TypeInvoicePosted, day(5), "O-1001"),
			InvoicePosted: &schemas.BillingDocument{BillingDocumentID: "90002", BillingType: "F2", OrderID: "O-1001", ErpSalesOrderID: "SO1",
				AccountingTransferStatus: "TRANSFERRED", Currency: "EUR", BillingDate: day(5), FxRate: dec("1"), Net: dec("120.40"), Tax: dec("24.08"), Gross: dec("144.48"),
				Lines: []schemas.BillingLine{
					{BillingItem: "1", OrderLineID: "L1", ReferenceDocument: "S2", Quantity: dec("1"), Net: dec("68.80"), Tax: dec("13.76")},
					{BillingItem: "2", OrderLineID: "L2", ReferenceDocument: "S2", Quantity: dec("2"), Net: dec("51.60"), Tax: dec("10.32")}}}},
	}
	for _, name := range []string{"accrual-posted", "invoice"} {
		e := feeds[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, cmds, err := l2.Apply(e, p)
				if err != nil || len(cmds) != 0 {
					b.Fatal(err, len(cmds))
				}
			}
		})
	}
	b.Run("order-accepted", func(b *testing.B) {
		b.ReportAllocs()
		oa := o1001()
		for b.Loop() {
			if _, _, err := (Ledger{}).Apply(oa, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The catch-up shape: a confirmation, a shipment and a return arrived before their order
	// (the shipment and the return held, as JSON in the state); the OrderAccepted releases them.
	b.Run("order-releasing-held", func(b *testing.B) {
		b.ReportAllocs()
		held, _ := run(b, p, confirmed("e-rc", "O-1001", "RSV-1", 1000, day(0)),
			shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"}),
			returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"}))
		if len(held.State().Held) != 2 {
			b.Fatalf("%d events held, want 2", len(held.State().Held))
		}
		oa := o1001()
		for b.Loop() {
			_, cmds, err := held.Apply(oa, p)
			if err != nil || len(cmds) == 0 {
				b.Fatal(err, len(cmds))
			}
			benchSink = cmds
		}
	})
	_ = time.Second
}
