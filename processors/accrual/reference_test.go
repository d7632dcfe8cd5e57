package accrual

import (
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/schemas"
)

// FromEvent reduces a decoded, valid input event to what the core reads. A quantity or amount
// with more decimals than its Avro scale (which a valid event cannot have) is an error.
func FromEvent(e *schemas.Event) (Event, error) {
	out := Event{EventID: e.EventID, OccurredAt: e.OccurredAt.UnixMicro()}
	var err error
	// units converts d at scale, keeping the first error (the event is rejected whole).
	units := func(what string, d decimal.Decimal, scale int32) int64 {
		v, e2 := Units(d, scale)
		if e2 != nil && err == nil {
			err = fmt.Errorf("event %s: %s: %w", e.EventID, what, e2)
		}
		return v
	}
	switch {
	case e.OrderAccepted != nil:
		o := e.OrderAccepted
		out.Kind = Accepted
		f := &OrderFacts{OrderID: o.OrderID, Currency: o.Currency, Lines: make([]OrderLine, len(o.Lines))}
		if o.LoyaltyMemberID != nil {
			f.MemberID = *o.LoyaltyMemberID
		}
		if o.LoyaltyTierAtOrder != nil {
			f.Tier = *o.LoyaltyTierAtOrder
		}
		if o.EarnRate != nil {
			rr := Rate(units("earn_rate", *o.EarnRate, RateScale))
			f.EarnRate = &rr
		}
		if o.TierMultiplier != nil {
			rr := Rate(units("tier_multiplier", *o.TierMultiplier, RateScale))
			f.Multiplier = &rr
		}
		tender := o.LoyaltyRedemption != nil && o.LoyaltyRedemption.Accounting == "TENDER"
		for i, l := range o.Lines {
			ln := OrderLine{ID: l.OrderLineID, Ordered: Qty(units("quantity", l.Quantity, QtyScale))}
			if !l.IsGiftCard {
				v := units("line_net", l.LineNet, MoneyScale)
				if tender && l.RedemptionAlloc != nil {
					v -= units("redemption allocation", l.RedemptionAlloc.Value, MoneyScale)
				}
				ln.Eligible = Money(max(v, 0))
			}
			f.Lines[i] = ln
		}
		out.Order = f
	case e.ShipmentConfirmed != nil:
		s := e.ShipmentConfirmed
		out.Kind = Shipment
		m := &Move{EventID: e.EventID, Kind: Shipment, OccurredAt: out.OccurredAt, Reship: s.IsReship, Lines: make([]MoveLine, len(s.Lines))}
		for i, l := range s.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_shipped", l.QuantityShipped, QtyScale))}
		}
		out.Move = m
	case e.ReturnReceived != nil:
		r := e.ReturnReceived
		out.Kind = Return
		m := &Move{EventID: e.EventID, Kind: Return, OccurredAt: out.OccurredAt, Lines: make([]MoveLine, len(r.Lines))}
		for i, l := range r.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_accepted", l.QuantityAccepted, QtyScale))}
		}
		out.Move = m
	case e.OrderLinesCancelled != nil:
		c := e.OrderLinesCancelled
		out.Kind = Cancellation
		m := &Move{EventID: e.EventID, Kind: Cancellation, OccurredAt: out.OccurredAt, CancelAll: len(c.Lines) == 0, Lines: make([]MoveLine, len(c.Lines))}
		for i, l := range c.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_cancelled", l.QuantityCancelled, QtyScale))}
		}
		out.Move = m
	default:
		out.Kind = Other
	}
	return out, err
}
