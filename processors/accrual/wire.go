package accrual

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// The core's projection of the input events: the fields the rules read and no others, by the
// schemas' field names, decimals as schemas.Unscaled. schemas.Project walks the other fields
// (addresses, tenders, taxes, prices, discounts…) without building them, and reads the
// decimals without a big.Int. Each input topic's payload union has only these branches; a
// branch a new schema version adds must be named here too, or its records fail to decode (as
// they would into schemas.Event until it named the branch).
type (
	wireEvent struct {
		EventID    string    `json:"event_id"`
		OccurredAt time.Time `json:"occurred_at"`

		OrderAccepted       *wireOrder        `avro:"payload=OrderAccepted"`
		OrderLinesCancelled *wireCancellation `avro:"payload=OrderLinesCancelled"`
		ShipmentConfirmed   *wireShipment     `avro:"payload=ShipmentConfirmed"`
		ReturnReceived      *wireReturn       `avro:"payload=ReturnReceived"`
	}
	wireOrder struct {
		OrderID            string            `json:"order_id"`
		LoyaltyMemberID    *string           `json:"loyalty_member_id"`
		LoyaltyTierAtOrder *string           `json:"loyalty_tier_at_order"`
		Currency           string            `json:"currency"`
		LoyaltyRedemption  *wireRedemption   `json:"loyalty_redemption"`
		Lines              []wireOrderLine   `json:"lines"`
		EarnRate           *schemas.Unscaled `json:"earn_rate"`
		TierMultiplier     *schemas.Unscaled `json:"tier_multiplier"`
	}
	wireRedemption struct {
		Accounting string `json:"accounting"`
	}
	wireOrderLine struct {
		OrderLineID     string           `json:"order_line_id"`
		IsGiftCard      bool             `json:"is_gift_card"`
		Quantity        schemas.Unscaled `json:"quantity"`
		LineNet         schemas.Unscaled `json:"line_net"`
		RedemptionAlloc *wireAlloc       `json:"loyalty_redemption_allocation"`
	}
	wireAlloc struct {
		Value schemas.Unscaled `json:"value"`
	}
	wireCancellation struct {
		Lines []struct {
			OrderLineID       string           `json:"order_line_id"`
			QuantityCancelled schemas.Unscaled `json:"quantity_cancelled"`
		} `json:"lines"`
	}
	wireShipment struct {
		IsReship bool `json:"is_reship"`
		Lines    []struct {
			OrderLineID     string           `json:"order_line_id"`
			QuantityShipped schemas.Unscaled `json:"quantity_shipped"`
		} `json:"lines"`
	}
	wireReturn struct {
		Lines []struct {
			OrderLineID      string           `json:"order_line_id"`
			QuantityAccepted schemas.Unscaled `json:"quantity_accepted"`
		} `json:"lines"`
	}
)

// Decode reads a framed orders, shipments or returns value into the core's event: what the full
// schemas.Decode reduced with decimal arithmetic gives (TestDecodeAgreesWithReference), without
// building the fields the core does not read. Its errors are schemas.Decode's
// (*schemas.DecodeError), or name the event and the field whose value has more decimals than
// its unit or does not fit 18 digits.
//
// The projection is decoded borrowing (schemas.ProjectInto) into a scratch value reused from
// decode to decode: its strings are views of value, and are copied, all into one allocation,
// before fromWire reads them.
func Decode(ctx context.Context, serde *schemas.Serde, ref schemas.RecordRef, value []byte) (Event, error) {
	s := scratches.Get().(*scratch)
	defer scratches.Put(s)
	return s.decode(ctx, serde, ref, value)
}

// decode is Decode with this scratch.
func (s *scratch) decode(ctx context.Context, serde *schemas.Serde, ref schemas.RecordRef, value []byte) (Event, error) {
	w := &s.wire
	// Each payload branch's struct is kept across decodes of other branches (the decode sets
	// the branches it does not read to nil): an order after a shipment reuses the last order's
	// struct and lines.
	w.OrderAccepted, w.OrderLinesCancelled, w.ShipmentConfirmed, w.ReturnReceived = s.order, s.cancel, s.ship, s.ret
	if err := schemas.ProjectInto(ctx, serde, ref, value, w); err != nil {
		// the failed decode may have left views of value in any of the structs: drop them
		*s = scratch{text: s.text}
		return Event{}, err
	}
	// Every string moves from the input to one copy of all of them (the event's text), so that
	// neither the event nor the scratch keeps a view of value: the runner recycles its buffer.
	text := s.text[:0]
	wireStrings(w, func(p *string) { text = append(text, *p...) })
	s.text = text
	all, at := string(text), 0
	wireStrings(w, func(p *string) { *p, at = all[at:at+len(*p)], at+len(*p) })
	e, err := fromWire(w)
	s.keep()
	return e, err
}

// scratch is one decoder's reused projection, each payload branch's struct, and the buffer its
// strings are gathered in. It holds no view of an input between decodes.
type scratch struct {
	wire   wireEvent
	order  *wireOrder
	cancel *wireCancellation
	ship   *wireShipment
	ret    *wireReturn
	text   []byte
}

// keep saves the decoded branch's struct for later decodes.
func (s *scratch) keep() {
	switch w := &s.wire; {
	case w.OrderAccepted != nil:
		s.order = w.OrderAccepted
	case w.OrderLinesCancelled != nil:
		s.cancel = w.OrderLinesCancelled
	case w.ShipmentConfirmed != nil:
		s.ship = w.ShipmentConfirmed
	case w.ReturnReceived != nil:
		s.ret = w.ReturnReceived
	}
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// fromWire reduces the projection to the core's event. The event shares e's strings, which
// must not be views of the input (Decode copies them first).
func fromWire(e *wireEvent) (Event, error) {
	out := Event{EventID: e.EventID, OccurredAt: e.OccurredAt.UnixMicro()}
	var err error
	// units converts u to scale, keeping the first error (the event is rejected whole).
	units := func(what string, u schemas.Unscaled, scale int32) int64 {
		v, e2 := unitsOf(u, scale)
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
		m := out.move(Shipment, len(s.Lines))
		m.Reship = s.IsReship
		for i, l := range s.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_shipped", l.QuantityShipped, QtyScale))}
		}
	case e.ReturnReceived != nil:
		r := e.ReturnReceived
		m := out.move(Return, len(r.Lines))
		for i, l := range r.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_accepted", l.QuantityAccepted, QtyScale))}
		}
	case e.OrderLinesCancelled != nil:
		c := e.OrderLinesCancelled
		m := out.move(Cancellation, len(c.Lines))
		m.CancelAll = len(c.Lines) == 0
		for i, l := range c.Lines {
			m.Lines[i] = MoveLine{LineID: l.OrderLineID, Qty: Qty(units("quantity_cancelled", l.QuantityCancelled, QtyScale))}
		}
	default:
		out.Kind = Other
	}
	return out, err
}

// wireStrings calls f with every string of e (the event id and the decoded payload branch's).
func wireStrings(e *wireEvent, f func(*string)) {
	f(&e.EventID)
	switch {
	case e.OrderAccepted != nil:
		o := e.OrderAccepted
		f(&o.OrderID)
		f(&o.Currency)
		if o.LoyaltyMemberID != nil {
			f(o.LoyaltyMemberID)
		}
		if o.LoyaltyTierAtOrder != nil {
			f(o.LoyaltyTierAtOrder)
		}
		if o.LoyaltyRedemption != nil {
			f(&o.LoyaltyRedemption.Accounting)
		}
		for i := range o.Lines {
			f(&o.Lines[i].OrderLineID)
		}
	case e.ShipmentConfirmed != nil:
		for i := range e.ShipmentConfirmed.Lines {
			f(&e.ShipmentConfirmed.Lines[i].OrderLineID)
		}
	case e.ReturnReceived != nil:
		for i := range e.ReturnReceived.Lines {
			f(&e.ReturnReceived.Lines[i].OrderLineID)
		}
	case e.OrderLinesCancelled != nil:
		for i := range e.OrderLinesCancelled.Lines {
			f(&e.OrderLinesCancelled.Lines[i].OrderLineID)
		}
	}
}

// move makes e a shipment, return or cancellation of n lines (to be filled in) and returns it.
func (e *Event) move(kind Kind, n int) *Move {
	e.Kind = kind
	e.Move = &Move{EventID: e.EventID, Kind: kind, OccurredAt: e.OccurredAt, Lines: make([]MoveLine, n)}
	return e.Move
}

// unitsOf is Units for an unscaled decimal: u as an integer in units of 10^−scale, or an error
// when u has more decimals than scale or does not fit 18 digits there. Nothing is rounded.
func unitsOf(u schemas.Unscaled, scale int32) (int64, error) {
	v := u.V
	if v == 0 {
		return 0, nil
	}
	switch d := scale - u.Scale; {
	case d < 0:
		p := pow10(-d)
		if p == 0 || v%p != 0 {
			return 0, fmt.Errorf("accrual: %s has more than %d decimals", u, scale)
		}
		v /= p
	case d > 0:
		p := pow10(d)
		if p == 0 || v > maxUnits/p || v < -maxUnits/p {
			return 0, fmt.Errorf("accrual: %s does not fit 64 bits at scale %d", u, scale)
		}
		v *= p
	}
	if v > maxUnits || v < -maxUnits {
		return 0, fmt.Errorf("accrual: %s does not fit 64 bits at scale %d", u, scale)
	}
	return v, nil
}

// maxUnits is the largest integer of 18 digits, Units' bound.
const maxUnits = 999_999_999_999_999_999

// pow10 is 10^n for 0 ≤ n ≤ 18, and 0 beyond (no int64 holds it).
func pow10(n int32) int64 {
	if n < 0 || n > 18 {
		return 0
	}
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}
