package accrual_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// fromEvent is the reference for accrual.Decode (TestDecodeAgreesWithReference): the core's
// event reduced from the fully decoded schemas.Event with decimal arithmetic (Units), as the
// core read its input before it decoded a projection. A quantity or amount with more decimals
// than its scale is an error.
func fromEvent(e *schemas.Event) (accrual.Event, error) {
	out := accrual.Event{EventID: e.EventID, OccurredAt: e.OccurredAt.UnixMicro()}
	var err error
	// units converts d at scale, keeping the first error (the event is rejected whole).
	units := func(what string, d decimal.Decimal, scale int32) int64 {
		v, e2 := accrual.Units(d, scale)
		if e2 != nil && err == nil {
			err = fmt.Errorf("event %s: %s: %w", e.EventID, what, e2)
		}
		return v
	}
	switch {
	case e.OrderAccepted != nil:
		o := e.OrderAccepted
		out.Kind = accrual.Accepted
		f := &accrual.OrderFacts{OrderID: o.OrderID, Currency: o.Currency, Lines: make([]accrual.OrderLine, len(o.Lines))}
		if o.LoyaltyMemberID != nil {
			f.MemberID = *o.LoyaltyMemberID
		}
		if o.LoyaltyTierAtOrder != nil {
			f.Tier = *o.LoyaltyTierAtOrder
		}
		if o.EarnRate != nil {
			rr := accrual.Rate(units("earn_rate", *o.EarnRate, accrual.RateScale))
			f.EarnRate = &rr
		}
		if o.TierMultiplier != nil {
			rr := accrual.Rate(units("tier_multiplier", *o.TierMultiplier, accrual.RateScale))
			f.Multiplier = &rr
		}
		tender := o.LoyaltyRedemption != nil && o.LoyaltyRedemption.Accounting == "TENDER"
		for i, l := range o.Lines {
			ln := accrual.OrderLine{ID: l.OrderLineID, Ordered: accrual.Qty(units("quantity", l.Quantity, accrual.QtyScale))}
			if !l.IsGiftCard {
				v := units("line_net", l.LineNet, accrual.MoneyScale)
				if tender && l.RedemptionAlloc != nil {
					v -= units("redemption allocation", l.RedemptionAlloc.Value, accrual.MoneyScale)
				}
				ln.Eligible = accrual.Money(max(v, 0))
			}
			f.Lines[i] = ln
		}
		out.Order = f
	case e.ShipmentConfirmed != nil:
		s := e.ShipmentConfirmed
		out.Kind = accrual.Shipment
		m := &accrual.Move{EventID: e.EventID, Kind: accrual.Shipment, OccurredAt: out.OccurredAt, Reship: s.IsReship, Lines: make([]accrual.MoveLine, len(s.Lines))}
		for i, l := range s.Lines {
			m.Lines[i] = accrual.MoveLine{LineID: l.OrderLineID, Qty: accrual.Qty(units("quantity_shipped", l.QuantityShipped, accrual.QtyScale))}
		}
		out.Move = m
	case e.ReturnReceived != nil:
		r := e.ReturnReceived
		out.Kind = accrual.Return
		m := &accrual.Move{EventID: e.EventID, Kind: accrual.Return, OccurredAt: out.OccurredAt, Lines: make([]accrual.MoveLine, len(r.Lines))}
		for i, l := range r.Lines {
			m.Lines[i] = accrual.MoveLine{LineID: l.OrderLineID, Qty: accrual.Qty(units("quantity_accepted", l.QuantityAccepted, accrual.QtyScale))}
		}
		out.Move = m
	case e.OrderLinesCancelled != nil:
		c := e.OrderLinesCancelled
		out.Kind = accrual.Cancellation
		m := &accrual.Move{EventID: e.EventID, Kind: accrual.Cancellation, OccurredAt: out.OccurredAt, CancelAll: len(c.Lines) == 0, Lines: make([]accrual.MoveLine, len(c.Lines))}
		for i, l := range c.Lines {
			m.Lines[i] = accrual.MoveLine{LineID: l.OrderLineID, Qty: accrual.Qty(units("quantity_cancelled", l.QuantityCancelled, accrual.QtyScale))}
		}
		out.Move = m
	default:
		out.Kind = accrual.Other
	}
	return out, err
}

// decoded reads a generated record as the stage reads it: encoded in its topic's schema, then
// accrual.Decode.
func decoded(tb testing.TB, serde *schemas.Serde, r generate.Record) accrual.Event {
	tb.Helper()
	v, err := serde.EncodeEvent(r.Topic, r.Event)
	if err != nil {
		tb.Fatal(err)
	}
	if r.Topic != schemas.TopicOrders && r.Topic != schemas.TopicShipments && r.Topic != schemas.TopicReturns {
		return accrual.Event{Kind: accrual.Other} // the stage reads only the framing of the others
	}
	e, err := accrual.Decode(context.Background(), serde, schemas.RecordRef{Topic: r.Topic}, v)
	if err != nil {
		tb.Fatalf("%s: %v", r.Event.EventID, err)
	}
	return e
}

func offlineSerde(tb testing.TB) *schemas.Serde {
	s, err := schemas.NewSerde(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
