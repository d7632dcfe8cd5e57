package oracle

import (
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

var day0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func strp(s string) *string { return &s }

func env(id string, t schemas.EventType, at time.Time) schemas.Envelope {
	return schemas.Envelope{EventID: id, EventType: t, SchemaVersion: 1, OccurredAt: at, PublishedAt: at,
		AggregateID: "O-1001", CorrelationID: "O-1001", TenantID: "t"}
}

// o1001 is the worked example's base order: GOLD member, €25 coupon, 1,000 points redeemed.
func o1001() schemas.Event {
	mult := dec("1.5")
	return schemas.Event{Envelope: env("e-oa", schemas.TypeOrderAccepted, day0), OrderAccepted: &schemas.OrderAccepted{
		OrderID: "O-1001", AcceptedAt: day0, Currency: "EUR", LoyaltyMemberID: strp("M-77"),
		LoyaltyTierAtOrder: strp("GOLD"), TierMultiplier: &mult,
		LoyaltyRedemption: &schemas.LoyaltyRedemption{ReservationID: "R-1", Points: 1000, Value: dec("10.00"), Accounting: "DISCOUNT"},
		Lines: []schemas.OrderLine{
			{OrderLineID: "L1", SKU: "SKU-A", Quantity: dec("2"), LineNet: dec("137.60"),
				RedemptionAlloc: &schemas.RedemptionAlloc{Points: 640, Value: dec("6.40")}},
			{OrderLineID: "L2", SKU: "SKU-B", Quantity: dec("3"), LineNet: dec("77.40"),
				RedemptionAlloc: &schemas.RedemptionAlloc{Points: 360, Value: dec("3.60")}},
			{OrderLineID: "L3", SKU: "SKU-GC", Quantity: dec("1"), LineNet: dec("50.00"), IsGiftCard: true},
		},
	}}
}

// o800 is issue 10's order (under the fixtures' order id): L1 (2 units) carries 533 redeemed
// points and L2 (3 units) 267; a BASE member earns 1 point per euro of line_net.
func o800() schemas.Event {
	return schemas.Event{Envelope: env("e-oa", schemas.TypeOrderAccepted, day0), OrderAccepted: &schemas.OrderAccepted{
		OrderID: "O-1001", AcceptedAt: day0, Currency: "EUR", LoyaltyMemberID: strp("M-8"), LoyaltyTierAtOrder: strp("BASE"),
		LoyaltyRedemption: &schemas.LoyaltyRedemption{ReservationID: "R-8", Points: 800, Value: dec("8.00"), Accounting: "DISCOUNT"},
		Lines: []schemas.OrderLine{
			{OrderLineID: "L1", SKU: "SKU-A", Quantity: dec("2"), LineNet: dec("100.00"),
				RedemptionAlloc: &schemas.RedemptionAlloc{Points: 533, Value: dec("5.33")}},
			{OrderLineID: "L2", SKU: "SKU-B", Quantity: dec("3"), LineNet: dec("60.00"),
				RedemptionAlloc: &schemas.RedemptionAlloc{Points: 267, Value: dec("2.67")}},
		},
	}}
}

func confirmed() schemas.Event {
	return schemas.Event{Envelope: env("e-conf", schemas.TypeRedemptionConfirmed, day0.Add(time.Minute)),
		RedemptionConfirmed: &schemas.RedemptionConfirmed{ReservationID: "R-1", RedemptionID: "RD-1", OrderID: "O-1001", Points: 1000}}
}

func shipment(id string, days int, qty map[string]string) schemas.Event {
	at := day0.AddDate(0, 0, days)
	s := &schemas.ShipmentConfirmed{ShipmentID: id, OrderID: "O-1001", ShippedAt: at}
	for _, l := range []string{"L1", "L2", "L3"} {
		if q, ok := qty[l]; ok {
			s.Lines = append(s.Lines, schemas.ShipmentLine{ShipmentLineID: id + l, OrderLineID: l, QuantityShipped: dec(q)})
		}
	}
	return schemas.Event{Envelope: env("e-"+id, schemas.TypeShipmentConfirmed, at), ShipmentConfirmed: s}
}

func ret(id string, days int, qty map[string]string) schemas.Event {
	at := day0.AddDate(0, 0, days)
	r := &schemas.ReturnReceived{ReturnID: id, OrderID: "O-1001", ReceivedAt: at}
	for _, l := range []string{"L1", "L2", "L3"} {
		if q, ok := qty[l]; ok {
			r.Lines = append(r.Lines, schemas.ReturnLine{ReturnLineID: id + l, OrderLineID: l, QuantityReceived: dec(q), QuantityAccepted: dec(q)})
		}
	}
	return schemas.Event{Envelope: env("e-"+id, schemas.TypeReturnReceived, at), ReturnReceived: r}
}

func cancel(id string, days int, full bool, qty map[string]string) schemas.Event {
	at := day0.AddDate(0, 0, days)
	c := &schemas.OrderLinesCancelled{CancellationID: id, OrderID: "O-1001", CancelledAt: at, IsFullOrder: full, IsPreFulfillment: true}
	for _, l := range []string{"L1", "L2", "L3"} {
		if q, ok := qty[l]; ok {
			c.Lines = append(c.Lines, schemas.CancelledLine{OrderLineID: l, QuantityCancelled: dec(q)})
		}
	}
	return schemas.Event{Envelope: env("e-"+id, schemas.TypeOrderLinesCancelled, at), OrderLinesCancelled: c}
}

// summary renders commands as "Type:points@source" in emission order.
func summary(cmds []Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, fmt.Sprintf("%s:%d@%s", c.Type, c.Points, c.SourceRefID))
	}
	return out
}

func TestWorkedExampleO1001(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	s2 := shipment("S2", 4, map[string]string{"L1": "1", "L2": "2"})
	cases := []struct {
		name   string
		events []schemas.Event
		want   []string
		p      int64
	}{
		{"A partial+split shipment", []schemas.Event{o1001(), confirmed(), s1, s2},
			[]string{"AccrualRequested:141@S1", "AccrualRequested:181@S2"}, 322},
		{"B cancellation instead of S2", []schemas.Event{o1001(), confirmed(), s1, cancel("C1", 3, false, map[string]string{"L1": "1", "L2": "2"})},
			[]string{"AccrualRequested:141@S1", "RedemptionRefundRequested:560@C1"}, 141},
		{"B full cancellation before shipment", []schemas.Event{o1001(), confirmed(), cancel("C1", 1, true, map[string]string{"L1": "2", "L2": "3", "L3": "1"})},
			[]string{"RedemptionRefundRequested:1000@C1"}, 0},
		{"C partial returns after A", []schemas.Event{o1001(), confirmed(), s1, s2,
			ret("R1", 20, map[string]string{"L2": "1"}), ret("R2", 40, map[string]string{"L2": "2"})},
			[]string{"AccrualRequested:141@S1", "AccrualRequested:181@S2",
				"ReversalRequested:39@R1", "RedemptionRefundRequested:120@R1",
				"ReversalRequested:77@R2", "RedemptionRefundRequested:240@R2"}, 206},
		// B.1: CONFIRMED when OrderAccepted references the reservation, so a full cancellation
		// refunds at once, with or without the platform's RedemptionConfirmed.
		{"B full cancellation before shipment, no RedemptionConfirmed", []schemas.Event{o1001(), cancel("C1", 1, true, map[string]string{"L1": "2", "L2": "3", "L3": "1"})},
			[]string{"RedemptionRefundRequested:1000@C1"}, 0},
		// Issue 10: floor(533 × 1/2) + floor(267 × 3/3) = 533; the shipped unit's share stays redeemed.
		{"full cancellation after a partial shipment refunds 533 of 800", []schemas.Event{o800(),
			shipment("S1", 1, map[string]string{"L1": "1"}), cancel("C1", 2, true, map[string]string{"L1": "1", "L2": "3"})},
			[]string{"AccrualRequested:50@S1", "RedemptionRefundRequested:533@C1"}, 50},
		{"D full return after A", []schemas.Event{o1001(), confirmed(), s1, s2, ret("R1", 10, map[string]string{"L1": "2", "L2": "3"})},
			[]string{"AccrualRequested:141@S1", "AccrualRequested:181@S2",
				"ReversalRequested:322@R1", "RedemptionRefundRequested:1000@R1"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := Compute(tc.events, p, day0.AddDate(0, 2, 0))
			o := x.Orders["O-1001"]
			got := summary(Commands(tc.events, p))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("commands\n got %v\nwant %v", got, tc.want)
			}
			if o.EntitledPoints != tc.p || o.RequestedNet() != tc.p {
				t.Fatalf("P = %d, requested net = %d, want %d", o.EntitledPoints, o.RequestedNet(), tc.p)
			}
			if len(x.Commands) != len(tc.want) {
				t.Fatalf("Expected.Commands has %d, want %d", len(x.Commands), len(tc.want))
			}
		})
	}
}

// TestConfirmTrigger: one confirmation rule for every refund path, (DESIGN.md "One confirmation rule"). Default:
// CONFIRMED when OrderAccepted references the reservation, so every cancellation refunds at
// once. Variant FIRST_SHIPMENT: nothing is refundable before a unit ships; that shipment requests
// what was cancelled before it; a fully cancelled order that never shipped is a release (C3).
func TestConfirmTrigger(t *testing.T) {
	first := DefaultPolicy()
	first.ConfirmTrigger = ConfirmAtFirstShipment
	partial := cancel("C1", 1, false, map[string]string{"L1": "1", "L2": "2"})
	full := cancel("C1", 1, true, map[string]string{"L1": "2", "L2": "3", "L3": "1"})
	s1 := shipment("S1", 2, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	cases := []struct {
		name   string
		p      Policy
		events []schemas.Event
		want   []string
		c3     []string
	}{
		{"default, partial cancellation", DefaultPolicy(), []schemas.Event{o1001(), partial},
			[]string{"RedemptionRefundRequested:560@C1"}, []string{"ORDER_ACCEPTED_NOT_CONFIRMED"}},
		{"default, full cancellation", DefaultPolicy(), []schemas.Event{o1001(), full},
			[]string{"RedemptionRefundRequested:1000@C1"}, []string{"ORDER_ACCEPTED_NOT_CONFIRMED", "ORDER_CANCELLED_NOT_RELEASED"}},
		{"first shipment, full cancellation before it", first, []schemas.Event{o1001(), full},
			nil, []string{"ORDER_CANCELLED_NOT_RELEASED"}},
		{"first shipment, partial cancellation then the shipment", first, []schemas.Event{o1001(), partial, s1},
			[]string{"AccrualRequested:141@S1", "RedemptionRefundRequested:560@S1"}, []string{"ORDER_ACCEPTED_NOT_CONFIRMED"}},
		{"first shipment, unshipped order is not pending confirmation", first, []schemas.Event{o1001(), partial},
			nil, nil},
		{"first shipment, confirmed by the platform", first, []schemas.Event{o1001(), confirmed(), partial, s1},
			[]string{"AccrualRequested:141@S1", "RedemptionRefundRequested:560@S1"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := summary(Commands(tc.events, tc.p)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("commands\n got %v\nwant %v", got, tc.want)
			}
			var c3 []string
			for _, r := range Compute(tc.events, tc.p, day0.AddDate(0, 2, 0)).Views[ViewRedemptionsPending] {
				c3 = append(c3, r.MismatchCode)
			}
			if fmt.Sprint(c3) != fmt.Sprint(tc.c3) {
				t.Fatalf("C3 %v, want %v", c3, tc.c3)
			}
		})
	}
}

// TestArrivalOrderIndependence: shuffled arrival, duplicates and a shipment before its order give
// the same commands (same request ids): request ids are deterministic (DESIGN.md "Delivery guarantees").
func TestArrivalOrderIndependence(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	s2 := shipment("S2", 4, map[string]string{"L1": "1", "L2": "2"})
	r1 := ret("R1", 20, map[string]string{"L2": "1"})
	base := Commands([]schemas.Event{o1001(), confirmed(), s1, s2, r1}, p)
	shuffled := Commands([]schemas.Event{r1, s2, s1, s2, confirmed(), o1001(), r1}, p)
	if fmt.Sprint(summary(base)) != fmt.Sprint(summary(shuffled)) {
		t.Fatalf("arrival order changed commands:\n%v\n%v", summary(base), summary(shuffled))
	}
	for i := range base {
		if base[i].RequestID != shuffled[i].RequestID {
			t.Fatalf("request id %d differs", i)
		}
	}
}

// TestReturnBeforeShipmentIsHeld: a return exceeding what was shipped waits for the shipment,
// and past the grace period is applied capped.
func TestReturnBeforeShipmentIsHeld(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("S1", 1, map[string]string{"L1": "1"})
	early := ret("R1", 2, map[string]string{"L1": "2"}) // only 1 shipped so far
	s2 := shipment("S2", 2, map[string]string{"L1": "1"})
	s2.OccurredAt = s2.OccurredAt.Add(time.Hour)
	got := summary(Commands([]schemas.Event{o1001(), s1, early, s2}, p))
	want := []string{"AccrualRequested:103@S1", "AccrualRequested:103@S2", "ReversalRequested:206@R1", "RedemptionRefundRequested:640@R1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("held return\n got %v\nwant %v", got, want)
	}
	late := shipment("S3", 5, map[string]string{"L2": "1"}) // grace (24h) over: R1 applied capped at 1
	x := Compute([]schemas.Event{o1001(), s1, early, late}, p, day0.AddDate(0, 1, 0))
	o := x.Orders["O-1001"]
	if fmt.Sprint(o.CappedReturns) != "[R1]" || o.Line("L1").Returned.String() != "1" {
		t.Fatalf("capped returns %v, L1 returned %s", o.CappedReturns, o.Line("L1").Returned)
	}
}

func TestRoundHalfEven2(t *testing.T) {
	for _, tc := range []struct {
		num, den int64
		want     string
	}{
		{1, 200, "0"}, {3, 200, "0.02"}, {5, 200, "0.02"}, {-3, 200, "-0.02"}, {2, 3, "0.67"}, {1, 3, "0.33"},
	} {
		got := roundHalfEven2(new(big.Rat).SetFrac64(tc.num, tc.den))
		if !got.Equal(dec(tc.want)) {
			t.Errorf("round(%d/%d) = %s, want %s", tc.num, tc.den, got, tc.want)
		}
	}
}

// TestViewsForIssuedCommands: C4 follows the commands a run emitted. The platform answered
// R1's reversal with the canonical 39 points; a run that got S2 late asked 38 under R1's request
// id and 1 more in a correction, which nobody answered: REVERSAL_MISSING 1, where the canonical
// commands expect no row.
func TestViewsForIssuedCommands(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	s2 := shipment("S2", 4, map[string]string{"L1": "1", "L2": "2"})
	r1 := ret("R1", 20, map[string]string{"L2": "1"})
	canonical := Commands([]schemas.Event{o1001(), s1, s2, r1}, p)
	var rev Command
	for _, c := range canonical {
		if c.Type == schemas.TypeReversalRequested {
			rev = c
		}
	}
	posted := schemas.Event{Envelope: env("e-prev", schemas.TypePointsReversed, day0.AddDate(0, 0, 21)),
		PointsReversed: &schemas.PointsReversed{LedgerEntryID: "LE-9", RequestID: rev.RequestID, OrderID: "O-1001", Points: 39, SourceRefID: "R1"}}
	refunded := schemas.Event{Envelope: env("e-pref", schemas.TypeRedemptionRefunded, day0.AddDate(0, 0, 21)),
		RedemptionRefunded: &schemas.RedemptionRefunded{RefundEntryID: "RF-9", OrderID: "O-1001", Points: 120, SourceRefID: "R1"}}
	for _, c := range canonical {
		if c.Type == schemas.TypeRedemptionRefundRequested {
			refunded.RedemptionRefunded.RequestID = strp(c.RequestID)
		}
	}
	events := []schemas.Event{o1001(), s1, s2, r1, posted, refunded}
	asOf := day0.AddDate(0, 2, 0)
	if rows := Compute(events, p, asOf).Views[ViewReturnsNotInLoyalty]; len(rows) != 0 {
		t.Fatalf("canonical C4 rows %+v, want none", rows)
	}
	issued := append([]Command(nil), canonical...)
	for i := range issued {
		if issued[i].Type == schemas.TypeReversalRequested {
			issued[i].Points = 38
		}
	}
	corr := rev
	corr.CausingEventID, corr.Points = "e-S2/e-R1", 1
	corr.RequestID = schemas.CommandRequestID("O-1001", corr.CausingEventID, corr.Type)
	issued = append(issued, corr)
	rows := ViewsFor(events, p, asOf, issued)[ViewReturnsNotInLoyalty]
	if len(rows) != 1 || rows[0].Key() != ViewReturnsNotInLoyalty+"|R1|L2@O-1001|REVERSAL_MISSING" || rows[0].Points != 1 {
		t.Fatalf("C4 rows %+v, want REVERSAL_MISSING 1 for R1", rows)
	}
}

// TestReturnsCappedByTheShipmentEndingTheirGrace is the ledger's FuzzApply failure
// (processors/ledger testdata/fuzz/FuzzApply/late-return-capped): four returns (three of L1,
// one of L2) precede L1's only shipment by more than the grace, so that shipment applies them
// capped at nothing before itself, and accrues its points; the order is accepted last. Whatever
// the arrival order, no reversal: P stays 103 (B.1 with the holding rules of invariant 6).
func TestReturnsCappedByTheShipmentEndingTheirGrace(t *testing.T) {
	p := DefaultPolicy()
	oa := o1001()
	oa.OccurredAt = day0.AddDate(0, 0, 27)
	events := []schemas.Event{
		ret("R1", 9, map[string]string{"L1": "1"}),
		shipment("S8", 16, map[string]string{"L1": "1"}),
		ret("R3", 3, map[string]string{"L1": "1"}),
		ret("R18", 10, map[string]string{"L2": "1"}),
		oa,
		ret("R2", 10, map[string]string{"L1": "1"}),
	}
	want := []string{"AccrualRequested:103@S8"}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {4, 2, 0, 3, 5, 1}} {
		var evs []schemas.Event
		for _, i := range order {
			evs = append(evs, events[i])
		}
		if got := summary(Commands(evs, p)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("arrival %v: got %v, want %v", order, got, want)
		}
		o := Compute(evs, p, day0.AddDate(0, 2, 0)).Orders["O-1001"]
		if capped := slices.Sorted(slices.Values(o.CappedReturns)); fmt.Sprint(capped) != "[R1 R18 R2 R3]" || !o.Line("L1").Returned.IsZero() || !o.Line("L2").Returned.IsZero() {
			t.Errorf("arrival %v: capped %v, L1 returned %s", order, o.CappedReturns, o.Line("L1").Returned)
		}
	}
}
