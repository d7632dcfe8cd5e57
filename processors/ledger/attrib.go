package ledger

import (
	"slices"
	"sort"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// Canonical attribution of points (DESIGN.md invariant 13).
//
// P and Σ RR are cumulative: the points one shipment, return or cancellation moves depend on
// which events were applied before it. The share of each point-moving event is therefore
// defined on canonical order (occurred_at, event_id), with the holding rules: the share of
// event X is what the commands X causes carry when every event of the order is applied in that
// order — exactly what the oracle computes. Events that arrive in canonical order get their
// share at once, in their own commands. An event that arrives late (canonically before an
// event already applied) may change the share of the events after it; since a command in
// Kafka cannot be recalled, the ledger then replays the order's moves in canonical order and
// requests the difference of each changed share as a correction: a command caused by the late
// event L and carrying X's share, causing_event_id "L/X" (so request_id =
// CommandRequestID(order, "L/X", type), deterministic), with X's source ref and reason. An
// event that has no command yet gets its own command instead (its canonical request id).
//
// Afterwards, for every applied move X, the points of the commands carrying X's share (signed:
// accruals minus reversals; refunds) equal X's canonical share, and Σ requested = P. The one
// exception is a refund share that shrinks (per-line floors make RR's unit increments uneven):
// a refund cannot be taken back, so the excess stays where it was requested and the late
// event's own refund is smaller by as much; the order's refund total stays Σ RR.

// correctionCause is the causing_event_id of a correction caused by late carrying x's share.
func correctionCause(late, x string) string { return late + "/" + x }

func moveLess(a, b MoveRecord) bool {
	if !a.OccurredAt.Equal(b.OccurredAt) {
		return a.OccurredAt.Before(b.OccurredAt)
	}
	return a.EventID < b.EventID
}

// addMove records e, just applied, among the order's moves.
func (n *Ledger) addMove(e schemas.Event, kind, ref string, noLines bool) {
	m := MoveRecord{EventID: e.EventID, OccurredAt: e.OccurredAt.UTC(), Kind: kind, Ref: ref, NoLines: noLines}
	n.s.Moves = insertSorted(n.s.Moves, m, moveLess)
}

// maxReattributedMoves bounds the cost of a late event: re-attribution replays every move of
// the order (and each replayed insertion copies), so an order past this many moves — far beyond
// any real order, but MaxEventsPerOrder allows thousands — keeps the arrival-order shares.
const maxReattributedMoves = 256

// late reports whether e's canonical position is before an applied move, and the moves are
// complete (a state written before Moves existed is never re-attributed: its early moves are
// not recorded) and within maxReattributedMoves.
func (n *Ledger) late(e schemas.Event) bool {
	k := len(n.s.Moves)
	if k == 0 || k >= maxReattributedMoves || k != len(n.s.Shipments)+len(n.s.Returns)+len(n.s.Cancellations) {
		return false
	}
	return moveLess(MoveRecord{EventID: e.EventID, OccurredAt: e.OccurredAt.UTC()}, n.s.Moves[k-1])
}

// applyLate applies a late OMS event without commands, then brings the order's quantities to
// what canonical order gives (invariant 6) and requests what the canonical attribution of every
// applied move now asks for.
//
// Applying e on the arrival-order state is not enough: the holding rules depend on the position
// of e among the moves. A return that canonically precedes every shipment of its line, and
// whose grace a shipment ends, is applied capped at nothing there; applied late it fits the
// shipment already applied, and would drop P while the canonical shares, from which the
// commands come, ask for no reversal (requested ≠ P). Two returns of one line may also swap
// which one fits. So the state adopts the canonical replay's quantities, applied and held
// returns, and moves.
func (n *Ledger) applyLate(e schemas.Event, p Policy, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	n.quiet = true
	n.applyOMS(e, nil, p, nil)
	n.quiet = false
	rp := n.canonicalReplay(p)
	n.adopt(&rp)
	return n.reattribute(e.EventID, rp.sharesOf(), cmds)
}

// adopt takes the replay's OMS facts: each line's quantities, the applied shipments, returns and
// cancellations (what each applied, which return was capped), the returns held for want of
// shipped units, and the moves. What the replay does not carry is kept from n: a shipment's
// stated currency, a return's refund currency (Billed and the exceptions are derived from the
// documents by recompute).
func (n *Ledger) adopt(rp *Ledger) {
	for i := range n.s.Lines {
		r, ln := &rp.s.Lines[i], n.s.Lines[i]
		if r.CancelRequested.Equal(ln.CancelRequested) && r.ShippedReported.Equal(ln.ShippedReported) && r.Cancelled.Equal(ln.Cancelled) &&
			r.Shipped.Equal(ln.Shipped) && r.Reshipped.Equal(ln.Reshipped) && r.Returned.Equal(ln.Returned) {
			continue
		}
		m := &n.mutLines()[i]
		m.CancelRequested, m.ShippedReported, m.Cancelled = r.CancelRequested, r.ShippedReported, r.Cancelled
		m.Shipped, m.Reshipped, m.Returned = r.Shipped, r.Reshipped, r.Returned
	}
	for i := range rp.s.Shipments {
		s := &rp.s.Shipments[i]
		if j := slices.IndexFunc(n.s.Shipments, func(x ShipmentState) bool { return x.EventID == s.EventID }); j >= 0 {
			s.Currency = n.s.Shipments[j].Currency
		}
	}
	for i := range rp.s.Returns {
		r := &rp.s.Returns[i]
		if j := slices.IndexFunc(n.s.Returns, func(x ReturnState) bool { return x.EventID == r.EventID }); j >= 0 {
			r.RefundCurrency = n.s.Returns[j].RefundCurrency
		}
	}
	held := slices.DeleteFunc(slices.Clone(n.s.Held), func(h HeldEvent) bool { return h.Reason == HoldExceedsShipped })
	for _, h := range rp.s.Held {
		held = insertSorted(held, h, heldLess)
	}
	n.s.Shipments, n.s.Returns, n.s.Cancellations, n.s.Moves, n.s.Held = rp.s.Shipments, rp.s.Returns, rp.s.Cancellations, rp.s.Moves, held
	n.own |= ownShipments | ownReturns // fresh slices, owned by n alone
	n.refreshQuantities()
}

// share is what a move carries: points (accruals − reversals) and refund points.
type share struct {
	points, refund       int64
	hasPoints, hasRefund bool // some command carries it (even of 0 net points)
}

// reattribute brings every applied move's share to its canonical value, emitting own commands
// for moves without one and corrections caused by late for the others, in canonical order.
func (n *Ledger) reattribute(late string, want map[string]share, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	o := n.s.Order
	if o.MemberID == "" {
		return cmds
	}
	have := sumShares(n.s.Commands)
	r := getRatio()
	defer putRatio(r)
	due := n.refundDue(r)
	if !n.redemptionConfirmed() {
		due = 0
	}
	basis(n.s.Lines, r)
	pts := entitledFrom(o, r)
	b := basisRounded(r, decimal.Decimal{})
	// The moves, and the held returns that carry a share: a return applied in arrival order
	// may be held in canonical order (another return of its line took the units shipped so far),
	// so its share is now 0.
	type item struct {
		m MoveRecord
		x schemas.Event
	}
	items := make([]item, 0, len(n.s.Moves))
	for _, m := range n.s.Moves {
		items = append(items, item{m, n.moveEvent(m)})
	}
	heldShare := false
	for _, h := range n.s.Held {
		if sh := have[h.EventID]; h.Reason == HoldExceedsShipped && (sh.hasPoints || sh.hasRefund) {
			x := n.unhold(h)
			items = append(items, item{MoveRecord{EventID: h.EventID, OccurredAt: h.OccurredAt, Kind: MoveReturn, Ref: x.ReturnReceived.ReturnID}, x})
			heldShare = true
		}
	}
	if heldShare {
		sort.SliceStable(items, func(i, j int) bool { return moveLess(items[i].m, items[j].m) })
	}
	for _, it := range items {
		m, x := it.m, it.x
		w, h := want[m.EventID], have[m.EventID]
		// A move without a command of a kind gets its own (as in canonical order); one that has
		// it gets a correction caused by the late event.
		corr, corrAttr := x, ""
		if m.EventID != late {
			corr.EventID, corrAttr = correctionCause(late, m.EventID), m.EventID
		}
		if d := w.points - h.points; d != 0 {
			cause, attributed := corr, corrAttr
			if !h.hasPoints {
				cause, attributed = x, ""
			}
			cmds = append(cmds, n.pointsCommand(cause, attributed, d, m.Ref, m.Kind, b, pts))
		}
		if d := min(w.refund-h.refund, due-n.s.Points.RefundRequested); d > 0 {
			cause, attributed := corr, corrAttr
			if !h.hasRefund {
				cause, attributed = x, ""
			}
			cmds = append(cmds, n.refundOf(cause, attributed, d, m.Ref, m.Kind, b, pts))
		}
	}
	return cmds
}

// canonicalReplay replays the applied moves, and the returns held for want of shipped units,
// on a fresh copy of the order in canonical order.
func (n *Ledger) canonicalReplay(p Policy) Ledger {
	rp := Ledger{s: State{StateVersion: StateVersion, OrderID: n.s.OrderID, Clock: n.s.Clock, Order: n.s.Order}, own: ownLines}
	rp.s.Lines = make([]LineState, len(n.s.Lines))
	for i, ln := range n.s.Lines {
		rp.s.Lines[i] = LineState{
			OrderLineID: ln.OrderLineID, LineNumber: ln.LineNumber, SKU: ln.SKU, IsGiftCard: ln.IsGiftCard, Eligible: ln.Eligible,
			Ordered: ln.Ordered, LineNet: ln.LineNet, EligibleValue: ln.EligibleValue,
			RedemptionPoints: ln.RedemptionPoints, RedemptionValue: ln.RedemptionValue,
			CancelRequested: decimal.Zero, ShippedReported: decimal.Zero, Cancelled: decimal.Zero,
			Shipped: decimal.Zero, Reshipped: decimal.Zero, Returned: decimal.Zero,
		}
	}
	type input struct {
		key MoveRecord
		ev  schemas.Event
		raw []byte
	}
	ins := make([]input, 0, len(n.s.Moves)+len(n.s.Held))
	for _, m := range n.s.Moves {
		ins = append(ins, input{key: m, ev: n.moveEvent(m)})
	}
	for _, h := range n.s.Held {
		if h.Reason == HoldExceedsShipped {
			ins = append(ins, input{key: MoveRecord{EventID: h.EventID, OccurredAt: h.OccurredAt}, ev: n.unhold(h), raw: h.Event})
		}
	}
	sort.Slice(ins, func(i, j int) bool { return moveLess(ins[i].key, ins[j].key) })
	for _, in := range ins {
		rp.applyOMS(in.ev, in.raw, p, nil)
	}
	rp.own = 0
	return rp
}

// sharesOf returns what each move's own commands carry in a replay (a replay has no
// corrections, so each command's share is its causing event's).
func (rp *Ledger) sharesOf() map[string]share { return sumShares(rp.s.Commands) }

// sumShares adds up, per event whose share they carry (shareOf), the points (accruals −
// reversals) and refunds of cmds, and notes which kinds of command each has.
func sumShares(cmds []CommandRecord) map[string]share {
	out := make(map[string]share, len(cmds))
	for i := range cmds {
		c := &cmds[i]
		sh := out[shareOf(c)]
		switch schemas.EventType(c.CommandType) {
		case schemas.TypeAccrualRequested:
			sh.points += c.Points
			sh.hasPoints = true
		case schemas.TypeReversalRequested:
			sh.points -= c.Points
			sh.hasPoints = true
		case schemas.TypeRedemptionRefundRequested:
			sh.refund += c.Points
			sh.hasRefund = true
		}
		out[shareOf(c)] = sh
	}
	return out
}

// moveEvent rebuilds the OMS event of an applied move from what the state recorded of it
// (what applyShipment, applyReturn and applyCancellation read), found by event id: two events
// may carry the same shipment, return or cancellation id.
func (n *Ledger) moveEvent(m MoveRecord) schemas.Event {
	e := schemas.Event{Envelope: schemas.Envelope{EventID: m.EventID, OccurredAt: m.OccurredAt}}
	switch m.Kind {
	case MoveShipment:
		st := &n.s.Shipments[slices.IndexFunc(n.s.Shipments, func(x ShipmentState) bool { return x.EventID == m.EventID })]
		s := &schemas.ShipmentConfirmed{ShipmentID: st.ShipmentID, OrderID: n.s.OrderID, ShippedAt: st.ShippedAt, IsReship: st.IsReship}
		for _, l := range st.Lines {
			s.Lines = append(s.Lines, schemas.ShipmentLine{OrderLineID: l.OrderLineID, QuantityShipped: l.Quantity})
		}
		e.EventType, e.ShipmentConfirmed = schemas.TypeShipmentConfirmed, s
	case MoveReturn:
		st := &n.s.Returns[slices.IndexFunc(n.s.Returns, func(x ReturnState) bool { return x.EventID == m.EventID })]
		r := &schemas.ReturnReceived{ReturnID: st.ReturnID, OrderID: n.s.OrderID, ReceivedAt: st.ReceivedAt}
		if st.RefundCurrency != "" {
			r.Refund = &schemas.Refund{Currency: st.RefundCurrency} // all the ledger reads of it
		}
		for _, l := range st.Lines {
			r.Lines = append(r.Lines, schemas.ReturnLine{OrderLineID: l.OrderLineID, QuantityAccepted: l.Quantity})
		}
		e.EventType, e.ReturnReceived = schemas.TypeReturnReceived, r
	default:
		st := &n.s.Cancellations[slices.IndexFunc(n.s.Cancellations, func(x CancellationState) bool { return x.EventID == m.EventID })]
		c := &schemas.OrderLinesCancelled{CancellationID: st.CancellationID, OrderID: n.s.OrderID, CancelledAt: st.CancelledAt, IsFullOrder: st.IsFullOrder}
		if !m.NoLines {
			for _, l := range st.Lines {
				c.Lines = append(c.Lines, schemas.CancelledLine{OrderLineID: l.OrderLineID, QuantityCancelled: l.Quantity})
			}
		}
		e.EventType, e.OrderLinesCancelled = schemas.TypeOrderLinesCancelled, c
	}
	return e
}
