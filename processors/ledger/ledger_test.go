package ledger

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// TestWorkedExamplesB2 reproduces every number of the worked example of the accrual rules (order O-1001: GOLD member, €25 coupon, 1,000 points redeemed, two shipments, a return).
func TestWorkedExamplesB2(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"})
	s2 := shipment("e-s2", "O-1001", "S2", day(4), qty{"L1", "1"}, qty{"L2", "2"})
	cases := []struct {
		name     string
		events   []schemas.Event
		want     []string // commands of the whole sequence
		entitled int64
		basis    string
	}{
		{
			name:     "A: split shipment posts 141 then 181 = 322, not 321",
			events:   []schemas.Event{o1001(), s1, s2},
			want:     []string{"AccrualRequested 141 S1", "AccrualRequested 181 S2"},
			entitled: 322, basis: "215",
		},
		{
			name:     "A': one shipment of everything gives the same 322",
			events:   []schemas.Event{o1001(), shipment("e-s", "O-1001", "S", day(1), qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"})},
			want:     []string{"AccrualRequested 322 S"},
			entitled: 322, basis: "215",
		},
		{
			name:     "B: cancellation after S1 keeps 141 and refunds 320 + 240 = 560",
			events:   []schemas.Event{o1001(), s1, cancelled("e-c", "O-1001", "C1", day(3), false, qty{"L1", "1"}, qty{"L2", "2"})},
			want:     []string{"AccrualRequested 141 S1", "RedemptionRefundRequested 560 C1"},
			entitled: 141, basis: "94.6",
		},
		{
			name: "C: returns reverse 39 then 77 and refund 120 then 240",
			events: []schemas.Event{o1001(), s1, s2,
				returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"}),
				returned("e-r2", "O-1001", "R2", day(40), qty{"L2", "2"})},
			want: []string{"AccrualRequested 141 S1", "AccrualRequested 181 S2",
				"ReversalRequested 39 R1", "RedemptionRefundRequested 120 R1",
				"ReversalRequested 77 R2", "RedemptionRefundRequested 240 R2"},
			entitled: 206, basis: "137.6",
		},
		{
			name: "D: full return nets accrual to 0 and refunds all 1,000 points",
			events: []schemas.Event{o1001(), s1, s2,
				returned("e-r", "O-1001", "R", day(10), qty{"L1", "2"}, qty{"L2", "3"})},
			want: []string{"AccrualRequested 141 S1", "AccrualRequested 181 S2",
				"ReversalRequested 322 R", "RedemptionRefundRequested 1000 R"},
			entitled: 0, basis: "0",
		},
		{
			name: "full cancellation before shipment of a confirmed redemption refunds 1,000",
			events: []schemas.Event{o1001(), confirmed("e-rc", "O-1001", "RSV-1", 1000, day(0)),
				cancelled("e-c", "O-1001", "C1", day(1), true, qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"})},
			want:     []string{"RedemptionRefundRequested 1000 C1"},
			entitled: 0, basis: "0",
		},
		{
			// B.1: the reservation is CONFIRMED when OrderAccepted references it; a full-order
			// cancellation refunds at once like any other refund path, RedemptionConfirmed or not.
			name: "full cancellation before shipment refunds 1,000 without waiting for RedemptionConfirmed",
			events: []schemas.Event{o1001(),
				cancelled("e-c", "O-1001", "C1", day(1), true, qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"})},
			want:     []string{"RedemptionRefundRequested 1000 C1"},
			entitled: 0, basis: "0",
		},
		{
			// Issue 10: RR(l) = floor(alloc × (q_cxl + q_ret) / q_ord) also for a full-order
			// cancellation: floor(533 × 1/2) + 267 = 533; the shipped unit's share stays redeemed.
			name:     "full cancellation after a partial shipment refunds 533 of 800, not 800",
			events:   []schemas.Event{o800(), s800(), cancelled("e-c", "O-800", "C1", day(2), true, qty{"L1", "1"}, qty{"L2", "3"})},
			want:     []string{"AccrualRequested 50 S1", "RedemptionRefundRequested 533 C1"},
			entitled: 50, basis: "50",
		},
		{
			name:     "the same without lines (cancels whatever is open) and with RedemptionConfirmed",
			events:   []schemas.Event{o800(), confirmed("e-rc", "O-800", "RSV-8", 800, day(0)), s800(), cancelled("e-c", "O-800", "C1", day(2), true)},
			want:     []string{"AccrualRequested 50 S1", "RedemptionRefundRequested 533 C1"},
			entitled: 50, basis: "50",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, cmds := run(t, p, tc.events...)
			if got := cmdSummary(cmds); !slices.Equal(got, tc.want) {
				t.Fatalf("commands\n got %q\nwant %q", got, tc.want)
			}
			pt := l.Points()
			if pt.Entitled != tc.entitled || pt.Requested != tc.entitled {
				t.Fatalf("P = %d, requested %d, want %d", pt.Entitled, pt.Requested, tc.entitled)
			}
			if !pt.Basis.Equal(dec(tc.basis)) {
				t.Fatalf("B = %s, want %s", pt.Basis, tc.basis)
			}
		})
	}
}

// TestScenarioDMemberNetsToZero: −1,000 redeemed +141 +181 −322 +1,000 refunded = 0.
func TestScenarioDMemberNetsToZero(t *testing.T) {
	_, cmds := run(t, DefaultPolicy(), o1001(),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"}),
		shipment("e-s2", "O-1001", "S2", day(4), qty{"L1", "1"}, qty{"L2", "2"}),
		returned("e-r", "O-1001", "R", day(10), qty{"L1", "2"}, qty{"L2", "3"}))
	net := int64(-1000)
	for _, c := range cmds {
		switch c.CommandType {
		case schemas.TypeAccrualRequested, schemas.TypeRedemptionRefundRequested:
			net += c.Points
		case schemas.TypeReversalRequested:
			net -= c.Points
		}
	}
	if net != 0 {
		t.Fatalf("member ledger for the order nets to %d, want 0", net)
	}
}

func TestCommandFields(t *testing.T) {
	p := DefaultPolicy()
	_, cmds := run(t, p, o1001(), shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}))
	if len(cmds) != 1 {
		t.Fatalf("want 1 command, got %d", len(cmds))
	}
	c := cmds[0]
	if c.RequestID != schemas.CommandRequestID("O-1001", "e-s1", schemas.TypeAccrualRequested) {
		t.Fatalf("request id %s is not the contract id", c.RequestID)
	}
	if c.ActivatesAt == nil || !c.ActivatesAt.Equal(day(31)) {
		t.Fatalf("activates_at %v, want day 31", c.ActivatesAt)
	}
	if c.PolicyVersion != p.Version || c.MemberID != "M-77" || c.TierCode != "GOLD" || !c.TierMultiplier.Equal(dec("1.5")) ||
		!c.BasisAmount.Equal(dec("94.6")) || c.EntitledPoints != 141 || c.Reason != "SHIPMENT" || !c.RequestedAt.Equal(day(1)) {
		t.Fatalf("command fields: %+v", c)
	}
}

func TestDuplicateIsNoOp(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"})
	l, _ := run(t, p, o1001(), s1)
	again := s1
	again.PublishedAt = day(9) // a re-publication of the same fact
	l2, cmds, err := l.Apply(again, p)
	if err != nil || len(cmds) != 0 {
		t.Fatalf("duplicate: cmds %v err %v", cmds, err)
	}
	if !equalStates(l.State(), l2.State()) {
		t.Fatal("duplicate changed the ledger")
	}
	bad := s1
	bad.ShipmentConfirmed = &schemas.ShipmentConfirmed{ShipmentID: "S1", OrderID: "O-1001", ShippedAt: day(1),
		Lines: []schemas.ShipmentLine{{OrderLineID: "L1", QuantityShipped: dec("2")}}}
	_, _, err = l.Apply(bad, p)
	var ee *EventError
	if !errors.Is(err, ErrConflictingDuplicate) || !errors.As(err, &ee) || ee.EventID != "e-s1" || ee.OrderID != "O-1001" {
		t.Fatalf("same id, different payload: %v", err)
	}
}

func TestApplyDoesNotMutateReceiver(t *testing.T) {
	p := DefaultPolicy()
	l, _ := run(t, p, o1001(), shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}))
	before := l.State()
	_, _, err := l.Apply(returned("e-r", "O-1001", "R", day(2), qty{"L1", "1"}), p)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _ = l.Apply(shipment("e-s2", "O-1001", "S2", day(2), qty{"L1", "1"}, qty{"L2", "3"}), p)
	if !equalStates(before, l.State()) {
		t.Fatal("Apply mutated the committed ledger")
	}
}

func TestHeldBeforeOrder(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"})
	r1 := returned("e-r1", "O-1001", "R1", day(2), qty{"L2", "1"})
	var l Ledger
	var err error
	var cmds []schemas.LoyaltyCommand
	for _, e := range []schemas.Event{r1, s1} {
		if l, cmds, err = l.Apply(e, p); err != nil || len(cmds) != 0 {
			t.Fatalf("orphan %s: cmds %v err %v", e.EventID, cmds, err)
		}
	}
	if l.Held() != 2 || l.Accepted() {
		t.Fatalf("held %d", l.Held())
	}
	// A much later loyalty event moves the clock past the grace: the orphans become exceptions.
	late := confirmed("e-rc", "O-1001", "RSV-1", 1000, day(5))
	if l, _, err = l.Apply(late, p); err != nil {
		t.Fatal(err)
	}
	if ex := l.Exceptions(); len(ex) != 2 || !hasException(ex, ExcHeldWithoutOrder, "e-s1") || !ex[1].FirstSeen.Equal(day(1).Add(p.OrphanGrace)) {
		t.Fatalf("exceptions %+v", ex)
	}
	l, cmds, err = l.Apply(o1001(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"AccrualRequested 141 S1", "ReversalRequested 38 R1", "RedemptionRefundRequested 120 R1"}
	if got := cmdSummary(cmds); !slices.Equal(got, want) {
		t.Fatalf("released commands %q, want %q", got, want)
	}
	if l.Held() != 0 || len(l.Exceptions()) != 0 {
		t.Fatalf("after order: held %d exceptions %+v", l.Held(), l.Exceptions())
	}
}

func TestOverReturnHeldThenCapped(t *testing.T) {
	p := DefaultPolicy()
	l, cmds := run(t, p, o1001(),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L2", "1"}),
		returned("e-r", "O-1001", "R", day(2), qty{"L2", "2"}))
	if l.Held() != 1 || len(cmds) != 1 {
		t.Fatalf("held %d cmds %q", l.Held(), cmdSummary(cmds))
	}
	// The second unit ships within the grace: the return applies in full.
	l2, cmds2 := run(t, p, o1001(),
		shipment("e-s1", "O-1001", "S1", day(1), qty{"L2", "1"}),
		returned("e-r", "O-1001", "R", day(2), qty{"L2", "2"}),
		shipment("e-s2", "O-1001", "S2", day(2).Add(time.Hour), qty{"L2", "1"}))
	if l2.Held() != 0 || !l2.Lines()[1].Returned.Equal(dec("2")) {
		t.Fatalf("fitting return not applied: held %d", l2.Held())
	}
	if got := cmdSummary(cmds2)[2:]; !slices.Equal(got, []string{"ReversalRequested 77 R", "RedemptionRefundRequested 240 R"}) {
		t.Fatalf("fitting return commands %q", got)
	}
	// A cancellation more than a day later does not end the wait (the orders topic may run ahead
	// of the shipments): the return stays held, flagged once the ledger clock passes the grace.
	l3, cmds3, err := l.Apply(cancelled("e-c", "O-1001", "C", day(3).Add(time.Hour), false, qty{"L1", "1"}), p)
	if err != nil {
		t.Fatal(err)
	}
	if l3.Held() != 1 || !l3.Lines()[1].Returned.IsZero() {
		t.Fatalf("return expired by a cancellation: held %d returned %s", l3.Held(), l3.Lines()[1].Returned)
	}
	if got := cmdSummary(cmds3); !slices.Equal(got, []string{"RedemptionRefundRequested 320 C"}) {
		t.Fatalf("cancellation commands %q", got)
	}
	if ex := l3.Exceptions(); !hasException(ex, ExcReturnExceedsShipped, "R") {
		t.Fatalf("held past grace, exceptions %+v", ex)
	}
	// A later shipment ends the grace: the return applies first, capped at the 1 shipped unit,
	// flagged; then the shipment itself.
	l4, cmds4, err := l3.Apply(shipment("e-s3", "O-1001", "S3", day(4), qty{"L1", "1"}), p)
	if err != nil {
		t.Fatal(err)
	}
	if l4.Held() != 0 || !l4.Lines()[1].Returned.Equal(dec("1")) {
		t.Fatalf("capped return: held %d returned %s", l4.Held(), l4.Lines()[1].Returned)
	}
	if got := cmdSummary(cmds4); !slices.Equal(got, []string{"ReversalRequested 38 R", "RedemptionRefundRequested 120 R", "AccrualRequested 103 S3"}) {
		t.Fatalf("capped commands %q", got)
	}
	if ex := l4.Exceptions(); !hasException(ex, ExcReturnExceedsShipped, "R") {
		t.Fatalf("exceptions %+v", ex)
	}
}

// TestConfirmTrigger: one confirmation rule for every refund path (issue 10). Under the default
// (B.1: CONFIRMED when OrderAccepted references the reservation) partial and full cancellations
// and returns refund at once, RedemptionConfirmed or not; under FIRST_SHIPMENT nothing is
// refundable before the order's first shipment, which then requests what was cancelled before it.
func TestConfirmTrigger(t *testing.T) {
	first := DefaultPolicy()
	first.ConfirmTrigger = ConfirmOnFirstShipment
	full := cancelled("e-c", "O-1001", "C1", day(1), true, qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"})
	partial := cancelled("e-c", "O-1001", "C1", day(1), false, qty{"L1", "1"}, qty{"L2", "2"})
	s1 := shipment("e-s1", "O-1001", "S1", day(2), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"})
	reship := shipment("e-rs", "O-1001", "RS", day(2), qty{"L1", "1"})
	reship.ShipmentConfirmed.IsReship = true
	cases := []struct {
		name   string
		p      Policy
		events []schemas.Event
		want   []string
	}{
		{"default: full cancellation refunds at once", DefaultPolicy(), []schemas.Event{o1001(), full},
			[]string{"RedemptionRefundRequested 1000 C1"}},
		{"default: partial cancellation refunds at once", DefaultPolicy(), []schemas.Event{o1001(), partial},
			[]string{"RedemptionRefundRequested 560 C1"}},
		{"first shipment: full cancellation before any shipment refunds nothing (the platform releases)", first,
			[]schemas.Event{o1001(), confirmed("e-rc", "O-1001", "RSV-1", 1000, day(0)), full}, nil},
		{"first shipment: a reship confirms nothing", first, []schemas.Event{o1001(), partial, reship}, nil},
		{"first shipment: the first shipment requests the refund of the earlier cancellation", first,
			[]schemas.Event{o1001(), partial, s1},
			[]string{"AccrualRequested 141 S1", "RedemptionRefundRequested 560 S1"}},
		{"first shipment: after it a cancellation refunds at once", first,
			[]schemas.Event{o1001(), s1, cancelled("e-c", "O-1001", "C1", day(3), false, qty{"L1", "1"}, qty{"L2", "2"})},
			[]string{"AccrualRequested 141 S1", "RedemptionRefundRequested 560 C1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, cmds := run(t, tc.p, tc.events...)
			if got := cmdSummary(cmds); !slices.Equal(got, tc.want) {
				t.Fatalf("commands\n got %q\nwant %q", got, tc.want)
			}
			for _, c := range cmds {
				if c.PolicyVersion != tc.p.Version {
					t.Fatalf("policy version %q stamped, want %q", c.PolicyVersion, tc.p.Version)
				}
			}
			if ConfirmTrigger(l.State().Order.ConfirmTrigger) != tc.p.ConfirmTrigger {
				t.Fatalf("snapshot trigger %q, want %q", l.State().Order.ConfirmTrigger, tc.p.ConfirmTrigger)
			}
		})
	}
	// The trigger is snapshotted: an order accepted under FIRST_SHIPMENT keeps it under a policy
	// that changed since.
	l, _ := run(t, first, o1001())
	if _, cmds, err := l.Apply(full, DefaultPolicy()); err != nil || len(cmds) != 0 {
		t.Fatalf("order accepted under FIRST_SHIPMENT refunded under the new policy: %q %v", cmdSummary(cmds), err)
	}
}

// TestLegacyDeferredRefund: a state written by a 2026-11-v1 ledger may hold a full-order
// cancellation's refund waiting for RedemptionConfirmed; the next event applied requests it,
// caused by the cancellation, by the RR rule.
func TestLegacyDeferredRefund(t *testing.T) {
	p := DefaultPolicy()
	// What the old ledger left after the cancellation: quantities applied, refund deferred.
	l2, _ := run(t, p, o800(), s800(), cancelled("e-c", "O-800", "C1", day(2), true, qty{"L1", "1"}, qty{"L2", "3"}))
	st := l2.State()
	st.Commands = slices.DeleteFunc(st.Commands, func(c CommandRecord) bool { return c.CommandType == string(schemas.TypeRedemptionRefundRequested) })
	st.Points.RefundRequested = 0
	st.DeferredRefund = &DeferredRefund{EventID: "e-c", CancellationID: "C1", OccurredAt: day(2)}
	st.Order.ConfirmTrigger = ""
	got, cmds, err := FromState(st).Apply(confirmed("e-rc", "O-800", "RSV-8", 800, day(0)), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || cmds[0].RequestID != schemas.CommandRequestID("O-800", "e-c", schemas.TypeRedemptionRefundRequested) || cmds[0].Points != 533 {
		t.Fatalf("legacy deferred refund %q", cmdSummary(cmds))
	}
	if got.State().DeferredRefund != nil {
		t.Fatal("deferred refund not cleared")
	}
}

func TestGuestOrderEarnsNothing(t *testing.T) {
	p := DefaultPolicy()
	oa := accepted("e-oa", "O-2", day(0), "", "", nil, orderLine("L1", "SKU-A", 1, "100", "100", false, 0, ""))
	l, cmds := run(t, p, oa, shipment("e-s", "O-2", "S", day(1), qty{"L1", "1"}))
	if len(cmds) != 0 || l.Points().Entitled != 0 {
		t.Fatalf("guest order: %q P=%d", cmdSummary(cmds), l.Points().Entitled)
	}
}

func TestTenderRedemptionAndExclusions(t *testing.T) {
	p := DefaultPolicy()
	p.ExcludedSKUs = []string{"SKU-X"}
	oa := accepted("e-oa", "O-3", day(0), "M-1", "BASE",
		&schemas.LoyaltyRedemption{ReservationID: "R", Points: 500, Value: dec("5"), Accounting: "TENDER"},
		orderLine("L1", "SKU-A", 1, "100", "100", false, 500, "5"),
		orderLine("L2", "SKU-X", 1, "40", "40", false, 0, ""))
	l, cmds := run(t, p, oa, shipment("e-s", "O-3", "S", day(1), qty{"L1", "1"}, qty{"L2", "1"}))
	if got := cmdSummary(cmds); !slices.Equal(got, []string{"AccrualRequested 95 S"}) {
		t.Fatalf("commands %q", got)
	}
	if ln := l.Lines(); !ln[0].EligibleValue.Equal(dec("95")) || !ln[1].EligibleValue.IsZero() || ln[1].Eligible {
		t.Fatalf("eligible values %s %s", ln[0].EligibleValue, ln[1].EligibleValue)
	}
}

func TestRedemptionAllocatedByLargestRemainder(t *testing.T) {
	// No line carries an allocation: 100 points over weights 1:1:1 → 34, 33, 33.
	oa := accepted("e-oa", "O-4", day(0), "M-1", "BASE",
		&schemas.LoyaltyRedemption{ReservationID: "R", Points: 100, Value: dec("1.00"), Accounting: "DISCOUNT"},
		orderLine("A", "A", 1, "10", "10", false, 0, ""), orderLine("B", "B", 1, "10", "10", false, 0, ""),
		orderLine("C", "C", 1, "10", "10", false, 0, ""), orderLine("G", "G", 1, "10", "10", true, 0, ""))
	l, _ := run(t, DefaultPolicy(), oa)
	var pts []int64
	var value []string
	for _, ln := range l.Lines() {
		pts = append(pts, ln.RedemptionPoints)
		value = append(value, ln.RedemptionValue.StringFixed(2))
	}
	if !slices.Equal(pts, []int64{34, 33, 33, 0}) || !slices.Equal(value, []string{"0.34", "0.33", "0.33", "0.00"}) {
		t.Fatalf("allocation %v %v", pts, value)
	}
}

func TestLoyaltyAndErpFeeds(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"})
	l, cmds := run(t, p, o1001(), s1)
	req := cmds[0].RequestID
	posted := schemas.Event{Envelope: envelope("e-pa", schemas.TypePointsAccrualPosted, day(1), "O-1001"),
		PointsAccrualPosted: &schemas.PointsAccrualPosted{LedgerEntryID: "LE1", RequestID: req, OrderID: "O-1001", Points: 140,
			TierMultiplier: dec("1.25"), SourceRef: "S1", PostedAt: day(1)}}
	activated := schemas.Event{Envelope: envelope("e-act", schemas.TypePointsActivated, day(31), "O-1001"),
		PointsActivated: &schemas.PointsActivated{LedgerEntryID: "LE1", OrderID: "O-1001", Points: 140, ActivatedAt: day(31)}}
	erp := schemas.Event{Envelope: envelope("e-erp", schemas.TypeErpSalesOrderCreated, day(0), "O-1001"),
		ErpSalesOrderCreated: &schemas.ErpSalesOrderCreated{ErpSalesOrderID: "SO1", OrderID: "O-1001", Currency: "EUR",
			Items: []schemas.ErpItemLink{{ErpItem: "10", OrderLineID: "L1", Quantity: dec("2")}, {ErpItem: "20", OrderLineID: "L2", Quantity: dec("2")}, {ErpItem: "30", OrderLineID: "L3", Quantity: dec("1")}}}}
	inv := schemas.Event{Envelope: envelope("e-inv", schemas.TypeInvoicePosted, day(2), "O-1001"),
		InvoicePosted: &schemas.BillingDocument{BillingDocumentID: "90001", BillingType: "F2", OrderID: "O-1001", AccountingTransferStatus: "NOT_TRANSFERRED",
			Currency: "EUR", BillingDate: day(2), Net: dec("144.60"), Lines: []schemas.BillingLine{
				{BillingItem: "1", OrderLineID: "L1", ReferenceDocument: "S1", Quantity: dec("1"), Net: dec("68.80")},
				{BillingItem: "2", OrderLineID: "L2", ReferenceDocument: "S1", Quantity: dec("1"), Net: dec("25.80")},
				{BillingItem: "3", OrderLineID: "L3", ReferenceDocument: "S1", Quantity: dec("1"), Net: dec("50.00")}}}}
	// ERP first, activation before its accrual: order of arrival must not matter.
	for _, e := range []schemas.Event{erp, activated, inv, posted} {
		var err error
		if l, _, err = l.Apply(e, p); err != nil {
			t.Fatal(err)
		}
	}
	pt := l.Points()
	if pt.Posted != 140 || pt.Pending != 0 || pt.Active != 140 {
		t.Fatalf("points %+v", pt)
	}
	ex := l.Exceptions()
	for _, want := range [][2]string{{ExcPostedNotRequested, req}, {ExcWrongMultiplier, "LE1"}, {ExcErpQtyDiff, "L2"}} {
		if !hasException(ex, want[0], want[1]) {
			t.Fatalf("missing %v in %+v", want, ex)
		}
	}
	if hasException(ex, ExcBilledQtyDiff, "L1") || hasException(ex, ExcBilledAmountDiff, "L1") {
		t.Fatalf("billed S1 fully, yet %+v", ex)
	}
	st := l.State()
	if sl := st.Shipments[0].Lines[0]; !sl.Billed.Equal(dec("1")) || !sl.BilledNotTransferred {
		t.Fatalf("shipment line billing %+v", sl)
	}
	// Cancelling the invoice reverses it.
	cxl := schemas.Event{Envelope: envelope("e-cxl", schemas.TypeBillingDocCancelled, day(3), "O-1001"),
		BillingDocCancelled: &schemas.BillingDocCancelled{BillingDocumentID: "90002", CancelsBillingDocumentID: "90001", OrderID: "O-1001", CancelledAt: day(3)}}
	l, _, err := l.Apply(cxl, p)
	if err != nil {
		t.Fatal(err)
	}
	if ln := l.Lines()[0]; !ln.Invoiced.IsZero() || !ln.InvoicedNet.IsZero() || !hasException(l.Exceptions(), ExcBilledQtyDiff, "L1") {
		t.Fatalf("cancelled invoice still counted: %s %s", ln.Invoiced, ln.InvoicedNet)
	}
}

func TestRejections(t *testing.T) {
	p := DefaultPolicy()
	l, _ := run(t, p, o1001())
	cases := []struct {
		name string
		e    schemas.Event
		want error
	}{
		{"other order", shipment("e-x", "O-9", "S", day(1), qty{"L1", "1"}), ErrWrongOrder},
		{"second order", accepted("e-oa2", "O-1001", day(0), "", "", nil, orderLine("L1", "A", 1, "1", "1", false, 0, "")), ErrOrderAlreadyAccepted},
		{"body mismatch", schemas.Event{Envelope: envelope("e-b", schemas.TypeReturnReceived, day(1), "O-1001"),
			ShipmentConfirmed: &schemas.ShipmentConfirmed{ShipmentID: "S", OrderID: "O-1001"}}, ErrInvalidEvent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, cmds, err := l.Apply(tc.e, p)
			var ee *EventError
			if !errors.Is(err, tc.want) || !errors.As(err, &ee) || ee.EventID != tc.e.EventID || len(cmds) != 0 {
				t.Fatalf("err %v", err)
			}
			if !strings.Contains(err.Error(), "O-1001") && tc.want != ErrWrongOrder {
				t.Fatalf("error does not name the order: %v", err)
			}
			if !equalStates(got.State(), l.State()) {
				t.Fatal("rejected event changed the ledger")
			}
		})
	}
	small := p
	small.MaxEventsPerOrder = 1
	if _, _, err := l.Apply(shipment("e-s", "O-1001", "S", day(1), qty{"L1", "1"}), small); !errors.Is(err, ErrTooManyEvents) {
		t.Fatalf("bound: %v", err)
	}
}

func TestUnknownLineAndOverShipment(t *testing.T) {
	p := DefaultPolicy()
	l, cmds := run(t, p, o1001(),
		cancelled("e-c", "O-1001", "C", day(1), false, qty{"L1", "1"}),
		shipment("e-s", "O-1001", "S", day(2), qty{"L1", "2"}, qty{"L9", "1"}))
	ln := l.Lines()[0]
	if !ln.Shipped.Equal(dec("2")) || !ln.Cancelled.IsZero() {
		t.Fatalf("shipment must win over the cancellation: shipped %s cancelled %s", ln.Shipped, ln.Cancelled)
	}
	ex := l.Exceptions()
	if !hasException(ex, ExcShipmentExceedsOpen, "L1") || !hasException(ex, ExcUnknownOrderLine, "S/L9") {
		t.Fatalf("exceptions %+v", ex)
	}
	_ = cmds
}

func TestClosureAfterReturnWindow(t *testing.T) {
	p := DefaultPolicy()
	l, _ := run(t, p, o1001(), shipment("e-s", "O-1001", "S", day(1), qty{"L1", "2"}, qty{"L2", "3"}, qty{"L3", "1"}))
	if _, closed := l.EvictAfter(); closed {
		t.Fatal("closed inside the return window")
	}
	late := schemas.Event{Envelope: envelope("e-act", schemas.TypePointsActivated, day(31), "O-1001"),
		PointsActivated: &schemas.PointsActivated{LedgerEntryID: "LE1", OrderID: "O-1001", Points: 322, ActivatedAt: day(31)}}
	l, _, err := l.Apply(late, p)
	if err != nil {
		t.Fatal(err)
	}
	at, closed := l.EvictAfter()
	if !closed || !at.Equal(day(31).Add(p.RetentionAfterClose)) {
		t.Fatalf("evict after %v closed %v", at, closed)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	p.Version = ""
	p.LockDays = -1
	p.MaxEventsPerOrder = 0
	p.ConfirmTrigger = "REDEMPTION_CONFIRMED"
	err := p.Validate()
	for _, field := range []string{"Version", "LockDays", "MaxEventsPerOrder", "ConfirmTrigger"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Fatalf("Validate() = %v, want it to name %s", err, field)
		}
	}
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("not a *PolicyError: %v", err)
	}
}

func hasException(ex []Exception, code, ref string) bool {
	for _, x := range ex {
		if x.Code == code && x.Ref == ref {
			return true
		}
	}
	return false
}

// erp v2's sales-order replica (ErpSalesOrderChanged): versions may arrive in any order, so a
// lower or equal version than one seen — even with another body — is stale, never a conflicting
// duplicate (that is kept for a creation re-sent with another body, and for one event id with
// two bodies). The ledger derives nothing from a replica (C1 CANCELLED_IN_OMS_OPEN_IN_ERP is the
// views' finding, from the sink's facts): it keeps none, so its state and exceptions do not
// depend on which replicas came or in what order.
func TestErpReplicaVersionsAreNeverConflicts(t *testing.T) {
	p := DefaultPolicy()
	replica := func(id string, version int64, status string, rejected string) schemas.Event {
		return schemas.Event{Envelope: envelope(id, schemas.TypeErpSalesOrderChanged, day(1), "O-1001"),
			ErpSalesOrderChanged: &schemas.ErpSalesOrderChanged{ErpSalesOrderID: "SO1", OrderID: "O-1001", ErpVersion: version,
				Status: status, ChangedAt: day(1), Items: []schemas.ErpReplicaItem{
					{ErpItem: "10", OrderLineID: "L1", Quantity: dec("2"), RejectedQuantity: dec(rejected)}}}}
	}
	cxl := cancelled("e-c1", "O-1001", "CX1", day(1), false, qty{"L1", "1"})
	base, _ := run(t, p, o1001(), cxl)
	v2 := replica("e-v2", 2, "OPEN", "1")
	v1 := replica("e-v1", 1, "OPEN", "0")       // lower version, other body: stale
	v2b := replica("e-v2b", 2, "REJECTED", "2") // equal version, other body: stale
	v3 := replica("e-v3", 3, "PARTIALLY_PROCESSED", "1")
	for _, order := range [][]schemas.Event{{v2, v1, v2b, v3}, {v3, v2b, v1, v2}, {v1, v2, v3, v2b}} {
		l := base
		for _, e := range order {
			var cmds []schemas.LoyaltyCommand
			var err error
			if l, cmds, err = l.Apply(e, p); err != nil {
				t.Fatalf("%s after %v: %v", e.EventID, order, err)
			}
			if len(cmds) != 0 {
				t.Fatalf("%s: commands %v", e.EventID, cmds)
			}
		}
		if got, want := l.Exceptions(), base.Exceptions(); !reflect.DeepEqual(got, want) {
			t.Fatalf("replicas changed the exceptions:\n got %+v\nwant %+v", got, want)
		}
		if st := l.State(); len(st.Seen) != len(base.State().Seen)+4 || len(st.ErpOrders) != 0 {
			t.Fatalf("seen %d, erp orders %+v", len(st.Seen), st.ErpOrders)
		}
		// The same event again is a duplicate; the same event id with another body is not.
		if l2, _, err := l.Apply(v2, p); err != nil || !equalStates(l2.State(), l.State()) {
			t.Fatalf("duplicate replica: err %v", err)
		}
		forged := replica("e-v2", 2, "COMPLETED", "0")
		if _, _, err := l.Apply(forged, p); !errors.Is(err, ErrConflictingDuplicate) {
			t.Fatalf("one event id, two bodies: err %v, want %v", err, ErrConflictingDuplicate)
		}
	}
	// Before its order, a replica is recorded (not held): there is nothing to apply it to.
	var l Ledger
	l, _, err := l.Apply(v2, p)
	if err != nil || len(l.State().Held) != 0 {
		t.Fatalf("replica before the order: err %v, held %d", err, len(l.State().Held))
	}
}
