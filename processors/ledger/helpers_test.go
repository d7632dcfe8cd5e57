package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

var t0 = time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.AddDate(0, 0, n) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

func envelope(id string, typ schemas.EventType, at time.Time, orderID string) schemas.Envelope {
	return schemas.Envelope{EventID: id, EventType: typ, SchemaVersion: 1, SourceSystem: "TEST", OccurredAt: at,
		PublishedAt: at, AggregateID: orderID, CorrelationID: orderID, TenantID: "t1"}
}

// orderLine builds an order line; alloc is the redemption points and value on the line.
func orderLine(id, sku string, qty int64, subtotal, net string, gift bool, allocPts int64, allocValue string) schemas.OrderLine {
	l := schemas.OrderLine{OrderLineID: id, SKU: sku, IsGiftCard: gift, Quantity: decimal.NewFromInt(qty), UOM: "EA",
		LineSubtotal: dec(subtotal), LineNet: dec(net), FulfillmentMethod: "SHIP"}
	if allocPts > 0 {
		l.RedemptionAlloc = &schemas.RedemptionAlloc{Points: allocPts, Value: dec(allocValue)}
	}
	return l
}

func accepted(id, orderID string, at time.Time, member, tier string, redemption *schemas.LoyaltyRedemption, lines ...schemas.OrderLine) schemas.Event {
	o := &schemas.OrderAccepted{OrderID: orderID, AcceptedAt: at, PlacedAt: at, CustomerID: "C-1", Currency: "EUR",
		RoundingMode: "HALF_EVEN", TaxCalculationMode: "LINE", LoyaltyRedemption: redemption, Lines: lines}
	if member != "" {
		o.LoyaltyMemberID = &member
		o.LoyaltyTierAtOrder = &tier
	}
	return schemas.Event{Envelope: envelope(id, schemas.TypeOrderAccepted, at, orderID), OrderAccepted: o}
}

// qtys is "L1:2,L2:1" style: order line id and quantity pairs.
type qty struct {
	line string
	q    string
}

func shipment(id, orderID, shipmentID string, at time.Time, lines ...qty) schemas.Event {
	s := &schemas.ShipmentConfirmed{ShipmentID: shipmentID, OrderID: orderID, ShippedAt: at, FulfillmentType: "WAREHOUSE"}
	for i, l := range lines {
		s.Lines = append(s.Lines, schemas.ShipmentLine{ShipmentLineID: fmt.Sprint(i + 1), OrderLineID: l.line, QuantityShipped: dec(l.q)})
	}
	return schemas.Event{Envelope: envelope(id, schemas.TypeShipmentConfirmed, at, orderID), ShipmentConfirmed: s}
}

func returned(id, orderID, returnID string, at time.Time, lines ...qty) schemas.Event {
	r := &schemas.ReturnReceived{ReturnID: returnID, OrderID: orderID, ReceivedAt: at, Channel: "MAIL"}
	for i, l := range lines {
		r.Lines = append(r.Lines, schemas.ReturnLine{ReturnLineID: fmt.Sprint(i + 1), OrderLineID: l.line,
			QuantityReceived: dec(l.q), QuantityAccepted: dec(l.q), Disposition: "RESTOCK"})
	}
	return schemas.Event{Envelope: envelope(id, schemas.TypeReturnReceived, at, orderID), ReturnReceived: r}
}

func cancelled(id, orderID, cancellationID string, at time.Time, full bool, lines ...qty) schemas.Event {
	c := &schemas.OrderLinesCancelled{CancellationID: cancellationID, OrderID: orderID, CancelledAt: at, ReasonCode: "inventory", IsFullOrder: full}
	for _, l := range lines {
		c.Lines = append(c.Lines, schemas.CancelledLine{OrderLineID: l.line, QuantityCancelled: dec(l.q)})
	}
	return schemas.Event{Envelope: envelope(id, schemas.TypeOrderLinesCancelled, at, orderID), OrderLinesCancelled: c}
}

func confirmed(id, orderID, reservationID string, points int64, at time.Time) schemas.Event {
	return schemas.Event{Envelope: envelope(id, schemas.TypeRedemptionConfirmed, at, orderID),
		RedemptionConfirmed: &schemas.RedemptionConfirmed{ReservationID: reservationID, RedemptionID: "RD-" + reservationID, OrderID: orderID, Points: points, ConfirmedAt: at}}
}

// o1001 is the base order of the worked example (TestWorkedExamplesB2): GOLD member, coupon and a 1,000-point redemption
// (DISCOUNT) already allocated, a gift card line.
func o1001() schemas.Event {
	return accepted("e-oa", "O-1001", day(0), "M-77", "GOLD",
		&schemas.LoyaltyRedemption{ReservationID: "RSV-1", Points: 1000, Value: dec("10.00"), Accounting: "DISCOUNT"},
		orderLine("L1", "SKU-A", 2, "160.00", "137.60", false, 640, "6.40"),
		orderLine("L2", "SKU-B", 3, "90.00", "77.40", false, 360, "3.60"),
		orderLine("L3", "SKU-GC", 1, "50.00", "50.00", true, 0, ""),
	)
}

// o800 is issue 10's order: L1 (2 units) carries 533 redeemed points and L2 (3 units) 267; a
// BASE member earns 1 point per euro of line_net.
func o800() schemas.Event {
	return accepted("e-oa", "O-800", day(0), "M-8", "BASE",
		&schemas.LoyaltyRedemption{ReservationID: "RSV-8", Points: 800, Value: dec("8.00"), Accounting: "DISCOUNT"},
		orderLine("L1", "SKU-A", 2, "100.00", "100.00", false, 533, "5.33"),
		orderLine("L2", "SKU-B", 3, "60.00", "60.00", false, 267, "2.67"),
	)
}

// s800 ships one unit of o800's L1.
func s800() schemas.Event { return shipment("e-s1", "O-800", "S1", day(1), qty{"L1", "1"}) }

// run applies events in order, failing the test on any error, and returns the ledger and every
// command emitted.
func run(t testing.TB, p Policy, events ...schemas.Event) (Ledger, []schemas.LoyaltyCommand) {
	t.Helper()
	var l Ledger
	var all []schemas.LoyaltyCommand
	for _, e := range events {
		var cmds []schemas.LoyaltyCommand
		var err error
		l, cmds, err = l.Apply(e, p)
		if err != nil {
			t.Fatalf("apply %s: %v", e.EventID, err)
		}
		checkInvariants(t, l)
		all = append(all, cmds...)
	}
	return l, all
}

// checkInvariants asserts 0 ≤ returned ≤ shipped ≤ ordered − cancelled on every line, and the
// points bookkeeping identities.
func checkInvariants(t testing.TB, l Ledger) {
	t.Helper()
	for _, ln := range l.Lines() {
		if ln.Returned.IsNegative() || ln.Returned.GreaterThan(ln.Shipped) || ln.Shipped.GreaterThan(ln.Ordered.Sub(ln.Cancelled)) || ln.Cancelled.IsNegative() {
			t.Fatalf("order %s line %s: returned %s shipped %s ordered %s cancelled %s breaks 0 ≤ returned ≤ shipped ≤ ordered − cancelled",
				l.OrderID(), ln.OrderLineID, ln.Returned, ln.Shipped, ln.Ordered, ln.Cancelled)
		}
		if ln.RefundablePoints < 0 || ln.RefundablePoints > ln.RedemptionPoints {
			t.Fatalf("line %s refundable %d outside [0, %d]", ln.OrderLineID, ln.RefundablePoints, ln.RedemptionPoints)
		}
	}
	pt := l.Points()
	if pt.Requested != pt.AccrualRequested-pt.ReversalRequested || pt.Posted != pt.AccrualPosted-pt.Reversed {
		t.Fatalf("points identities broken: %+v", pt)
	}
	if o := l.State().Order; o != nil && o.MemberID != "" && pt.Requested != pt.Entitled {
		t.Fatalf("order %s: requested %d, entitled %d: the commands do not bring requested to P", l.OrderID(), pt.Requested, pt.Entitled)
	}
	if pt.AccrualRequested < 0 || pt.ReversalRequested < 0 || pt.RefundRequested < 0 {
		t.Fatalf("negative requested points: %+v", pt)
	}
}

// cmdSummary is "type points source" per command, for readable table tests.
func cmdSummary(cmds []schemas.LoyaltyCommand) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = fmt.Sprintf("%s %d %s", c.CommandType, c.Points, c.SourceRefID)
	}
	return out
}

// equalStates compares two states with decimals by value and times by instant.
func equalStates(a, b State) bool { return cmp.Equal(a, b, stateOpts...) }

var stateOpts = []cmp.Option{
	cmp.Comparer(func(x, y decimal.Decimal) bool { return x.Equal(y) }),
	cmp.Comparer(func(x, y time.Time) bool { return x.Equal(y) }),
	cmpopts.EquateEmpty(),
}

// everyFault is every generator fault at rate.
func everyFault(rate float64) generate.Faults {
	var faults generate.Faults
	for _, f := range generate.AllFaults() {
		faults.Set(f, rate)
	}
	return faults
}
