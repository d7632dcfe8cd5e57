// Package ledger is the order ledger: a pure function of (ledger state, event) → (new state,
// loyalty commands) for one order, with no I/O. The runtime (topology/) keys it by order_id,
// keeps it in a per-partition store restored from the changelog, and applies the returned state
// only after the transaction that carried the event commits.
//
// Rules (DESIGN.md invariants 6, 7 and 13): entitled points P = floor(B × earn_rate ×
// tier_multiplier) with B = Σ E(l) × F(l) / q_ord(l) computed exactly (math/big), recomputed
// cumulatively on every shipment, return and cancellation; Δ = P − P_requested becomes an
// AccrualRequested or ReversalRequested; redemption refunds follow the cumulative floor rule
// RR(l) = floor(alloc_pts(l) × (q_cxl + q_ret) / q_ord) on every refund path, once the
// redemption is confirmed (Policy.ConfirmTrigger). Events that arrive before their
// OrderAccepted, and returns that exceed what was shipped, are held in the state and applied in
// canonical order (occurred_at, event_id) when they can be, so the final state does not depend
// on how the five input topics interleave; each event's share of points is its canonical one,
// a late event adding corrections where needed (attrib.go).
//
// What is rejected (Apply returns an *EventError; the runtime sends the record to the DLQ) vs
// applied with an exception (recorded in State.Exceptions for the reconciliation views):
//
//   - rejected before the ledger, by schemas.Event.Validate in the run stage's decode (class
//     "invalid"): every field rule — ids present, quantities and points with the right sign,
//     an order with lines and unique line ids, the body that event_type names. Apply takes
//     valid events and checks only that the body matches event_type.
//   - rejected by the ledger, from the order's state (class "ledger"): a body for another
//     order; the same event id with a different payload; a second OrderAccepted; a loyalty or
//     ERP document id booked twice with different content; more than
//     Policy.MaxEventsPerOrder distinct events.
//   - applied with an exception: unknown order line (that line is skipped, the rest applies);
//     currency different from the order's; shipment or cancellation beyond the open quantity
//     (the shipment wins, the cancellation is reduced); a return beyond what was shipped past
//     the grace period (held, then applied capped by a later shipment); postings that differ from what was requested or carry
//     a wrong multiplier; ERP quantities or amounts that disagree; an event still waiting for
//     its order past the grace period.
package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// Ledger is the state of one order as this pipeline has seen it.
//
// Ledger is a value with copy-on-write semantics: Apply never modifies the receiver or anything
// reachable from it. The Ledger it returns may share memory with the receiver, but only memory
// that no Apply on either of them will ever write (see cow.go). The runtime can therefore keep
// the committed Ledger in its store, hand the result of Apply to a per-transaction overlay, and
// drop the overlay on abort. The zero Ledger is an empty ledger whose order id is taken from the
// first event applied.
type Ledger struct {
	s   State
	own uint8 // during Apply only: which shared slices this value already copied (cow.go)
	// quiet, during Apply only, applies OMS events without emitting commands: a late event's
	// commands come from re-attribution (attrib.go).
	quiet bool
}

// Sentinel errors wrapped by *EventError.
var (
	ErrInvalidEvent         = errors.New("invalid event")
	ErrWrongOrder           = errors.New("event belongs to another order")
	ErrConflictingDuplicate = errors.New("same id already seen with a different payload")
	ErrOrderAlreadyAccepted = errors.New("order already accepted by another event")
	ErrTooManyEvents        = errors.New("order exceeds Policy.MaxEventsPerOrder distinct events")
)

// EventError is a rejected event: the runtime sends it to the DLQ. It names the order and the
// event; Err wraps one of the sentinel errors above.
type EventError struct {
	OrderID   string
	EventID   string
	EventType schemas.EventType
	Err       error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("ledger: order %q event %q (%s): %v", e.OrderID, e.EventID, e.EventType, e.Err)
}

func (e *EventError) Unwrap() error { return e.Err }

// New returns an empty ledger for orderID.
func New(orderID string) Ledger {
	return Ledger{s: State{StateVersion: StateVersion, OrderID: orderID}}
}

// FromState wraps a State (e.g. decoded from the changelog). The State's slices become owned by
// the Ledger: the caller must not modify them afterwards.
func FromState(s State) Ledger { return Ledger{s: s} }

// Apply folds one event into the ledger and returns the new ledger and the loyalty commands the
// change causes, in the order they must be produced.
//
// Apply is deterministic: "now" is business time (the latest occurred_at seen), never the wall
// clock. A duplicate event (same EventID and payload) returns l unchanged and no commands; a
// rejected event returns l unchanged, no commands and an *EventError. Like p, which must be
// valid (Policy.Validate), e must be valid (schemas.Event.Validate, which the run stage calls
// when it decodes): Apply does not re-validate either, and rejects only what the order's state
// refuses (another order's event, a conflicting duplicate, a second OrderAccepted, a billing
// document that conflicts with one seen, too many events).
func (l Ledger) Apply(e schemas.Event, p Policy) (Ledger, []schemas.LoyaltyCommand, error) {
	fail := func(err error) (Ledger, []schemas.LoyaltyCommand, error) {
		orderID := l.s.OrderID
		if orderID == "" {
			orderID, _ = bodyOrderID(e)
		}
		return l, nil, &EventError{OrderID: orderID, EventID: e.EventID, EventType: e.EventType, Err: err}
	}
	orderID, err := bodyOrderID(e)
	if err != nil {
		return fail(err)
	}
	if orderID != "" && l.s.OrderID != "" && orderID != l.s.OrderID {
		return fail(fmt.Errorf("%w: body names order %q", ErrWrongOrder, orderID))
	}
	fp, err := fingerprint(&e)
	if err != nil {
		return fail(fmt.Errorf("%w: cannot encode: %v", ErrInvalidEvent, err))
	}
	if i, ok := l.seenIndex(e.EventID); ok {
		if old := l.s.Seen[i].Fingerprint; old == fp || legacyDuplicate(e, old) {
			return l, nil, nil
		}
		return fail(ErrConflictingDuplicate)
	}
	if len(l.s.Seen) >= p.MaxEventsPerOrder {
		return fail(fmt.Errorf("%w (%d)", ErrTooManyEvents, p.MaxEventsPerOrder))
	}
	if e.OrderAccepted != nil && l.s.Order != nil {
		return fail(fmt.Errorf("%w %q", ErrOrderAlreadyAccepted, l.s.Order.EventID))
	}
	if err := l.checkDocumentConflict(e); err != nil {
		return fail(err)
	}

	n := l
	n.own = 0
	if n.s.OrderID == "" {
		n.s.OrderID = orderID
	}
	n.s.StateVersion = StateVersion
	n.s.Seen = insertSorted(n.s.Seen, SeenEvent{EventID: e.EventID, Fingerprint: fp},
		func(a, b SeenEvent) bool { return a.EventID < b.EventID })
	if t := e.OccurredAt.UTC(); t.After(n.s.Clock) {
		n.s.Clock = t
	}

	var cmds []schemas.LoyaltyCommand
	touched := touchAll
	switch {
	case e.OrderAccepted != nil:
		n.accept(e, p)
		cmds = n.releaseHeldOrphans(p, cmds)
	case e.ShipmentConfirmed != nil, e.ReturnReceived != nil, e.OrderLinesCancelled != nil:
		switch {
		case n.s.Order == nil:
			n.hold(e, nil, HoldNoOrder)
		case n.late(e):
			cmds = n.applyLate(e, p, cmds)
		default:
			cmds = n.applyOMS(e, nil, p, cmds)
		}
	default:
		touched = n.applyFeed(e)
	}
	if l.s.StateVersion < StateVersion || l.s.DeferredRefund != nil {
		touched = touchAll // derived by older rules: once in full (derive.go)
	}
	cmds = n.emitDeferredRefund(cmds)
	n.recompute(p, touched)
	n.own, n.quiet = 0, false
	return n, cmds, nil
}

// ---------------------------------------------------------------------------- precondition

// bodyOrderID returns the event's order id ("" when the body has none, e.g. a reservation made
// before the order existed). Apply takes valid events — schemas.Event.Validate is the one
// validator of fields, and the run stage rejects an invalid record before the ledger sees it
// (class "invalid") — so this checks only what routing the event needs: exactly the body its
// event_type names is set, and that type is an input of the ledger (not a loyalty command).
func bodyOrderID(e schemas.Event) (string, error) {
	t := e.BodyType()
	if t == "" || t != e.EventType {
		return "", fmt.Errorf("%w: event_type %q does not match its body (call schemas.Event.Validate first)", ErrInvalidEvent, e.EventType)
	}
	if topic, _ := schemas.TopicOf(t); !slices.Contains(schemas.InputTopics, topic) {
		return "", fmt.Errorf("%w: event_type %q is not an input of the order ledger", ErrInvalidEvent, e.EventType)
	}
	return e.OrderID(), nil
}

// legacyDuplicate reports whether e is a duplicate of a seen event whose fingerprint old was
// recorded by a state-version-1 ledger (legacyFingerprint). It runs only when the current
// fingerprint differs, i.e. on the rare conflict path.
func legacyDuplicate(e schemas.Event, old int64) bool {
	fp, err := legacyFingerprint(e)
	return err == nil && fp == old
}

func (l Ledger) seenIndex(id string) (int, bool) {
	i := sort.Search(len(l.s.Seen), func(i int) bool { return l.s.Seen[i].EventID >= id })
	return i, i < len(l.s.Seen) && l.s.Seen[i].EventID == id
}

// checkDocumentConflict rejects a loyalty or ERP document whose id was already booked by another
// event with different content; an identical re-booking is accepted and changes nothing.
func (l Ledger) checkDocumentConflict(e schemas.Event) error {
	conflict := func(kind, id string) error {
		return fmt.Errorf("%w: %s %q already booked with different content", ErrConflictingDuplicate, kind, id)
	}
	if k, p, ok := postingOf(e); ok {
		if old, found := findPosting(l.s.Postings, k, p.EntryID); found && !equalPosting(old, p) {
			return conflict(k+" entry", p.EntryID)
		}
	}
	if d, ok := documentOf(e); ok {
		for _, old := range l.s.Documents {
			old.Cancelled = false // derived from DocCancels, not part of the document
			if old.BillingDocumentID == d.BillingDocumentID && !equalJSON(old, d) {
				return conflict("billing document", d.BillingDocumentID)
			}
		}
	}
	if eo := e.ErpSalesOrderCreated; eo != nil {
		for _, old := range l.s.ErpOrders {
			if old.ErpSalesOrderID == eo.ErpSalesOrderID && !equalJSON(old, erpOrderOf(eo)) {
				return conflict("ERP sales order", eo.ErpSalesOrderID)
			}
		}
	}
	return nil
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// ---------------------------------------------------------------------------- order

func (n *Ledger) accept(e schemas.Event, p Policy) {
	o := e.OrderAccepted
	snap := &OrderSnapshot{
		EventID:          e.EventID,
		AcceptedAt:       o.AcceptedAt.UTC(),
		CustomerID:       o.CustomerID,
		Currency:         o.Currency,
		PolicyVersion:    p.Version,
		LockDays:         int32(p.LockDays),
		ReturnWindowDays: int32(p.ReturnWindowDays),
		EarnRate:         decimal.Zero,
		TierMultiplier:   decimal.NewFromInt(1),
		RedemptionValue:  decimal.Zero,
		ConfirmTrigger:   string(p.ConfirmTrigger),
	}
	if o.ReturnWindowDays > 0 {
		snap.ReturnWindowDays = o.ReturnWindowDays
	}
	if o.LoyaltyMemberID != nil {
		snap.MemberID = *o.LoyaltyMemberID
	}
	if snap.MemberID != "" {
		if o.LoyaltyTierAtOrder != nil {
			snap.TierCode = *o.LoyaltyTierAtOrder
		}
		switch m, ok := p.TierMultipliers[snap.TierCode]; {
		case o.TierMultiplier != nil:
			snap.TierMultiplier = *o.TierMultiplier
		case ok:
			snap.TierMultiplier = m
		case snap.TierCode != "":
			snap.TierUnknown = true
		}
		switch r, ok := p.EarnRates[o.Currency]; {
		case o.EarnRate != nil:
			snap.EarnRate = *o.EarnRate
		case ok:
			snap.EarnRate = r
		default:
			snap.EarnRateMissing = true
		}
	}
	if r := o.LoyaltyRedemption; r != nil {
		snap.ReservationID = r.ReservationID
		snap.RedemptionPoints = r.Points
		snap.RedemptionValue = r.Value
		snap.RedemptionAccounting = r.Accounting
	}
	n.s.Order = snap

	lines := make([]LineState, len(o.Lines))
	for i, ol := range o.Lines {
		eligible := !ol.IsGiftCard && !p.excluded(ol.SKU)
		lines[i] = LineState{
			OrderLineID: ol.OrderLineID, LineNumber: ol.LineNumber, SKU: ol.SKU, IsGiftCard: ol.IsGiftCard,
			Eligible: eligible, Ordered: ol.Quantity, LineNet: ol.LineNet,
			CancelRequested: decimal.Zero, ShippedReported: decimal.Zero, Cancelled: decimal.Zero,
			Shipped: decimal.Zero, Reshipped: decimal.Zero, Returned: decimal.Zero,
			EligibleValue: decimal.Zero, RedemptionValue: decimal.Zero, NetShippedValue: decimal.Zero,
			ErpQuantity: decimal.Zero, Invoiced: decimal.Zero, Credited: decimal.Zero,
			InvoicedNet: decimal.Zero, CreditedNet: decimal.Zero,
		}
	}
	allocateRedemption(lines, o)
	for i := range lines {
		ln := &lines[i]
		if !ln.Eligible {
			continue
		}
		ev := ln.LineNet
		if snap.RedemptionAccounting == "TENDER" {
			ev = ev.Sub(ln.RedemptionValue)
		}
		if ev.IsNegative() {
			ev = decimal.Zero
		}
		ln.EligibleValue = ev
	}
	n.s.Lines = lines
	n.own |= ownLines
}

// allocateRedemption sets RedemptionPoints and RedemptionValue per line. Allocations carried by
// the order lines are authoritative; without them the header redemption is spread over the
// non-gift-card lines in proportion to line_subtotal − line discounts, points by largest
// remainder (ties to the earlier line) and value HALF_EVEN to 2 places with the residual cent on
// the largest line, so Σ lines = header.
func allocateRedemption(lines []LineState, o *schemas.OrderAccepted) {
	given := false
	for i, ol := range o.Lines {
		if ol.RedemptionAlloc != nil {
			given = true
			lines[i].RedemptionPoints = ol.RedemptionAlloc.Points
			lines[i].RedemptionValue = ol.RedemptionAlloc.Value
		}
	}
	r := o.LoyaltyRedemption
	if given || r == nil || r.Points <= 0 {
		return
	}
	weights := make([]*big.Rat, len(lines))
	total := new(big.Rat)
	for i, ol := range o.Lines {
		w := new(big.Rat)
		if !ol.IsGiftCard {
			base := ol.LineSubtotal
			for _, d := range ol.DiscountAllocations {
				base = base.Sub(d.Amount)
			}
			if base.IsPositive() {
				w = base.Rat()
			}
		}
		weights[i] = w
		total.Add(total, w)
	}
	if total.Sign() == 0 {
		return
	}
	pts := largestRemainder(r.Points, weights, total)
	largest := 0
	var valueSum decimal.Decimal
	for i := range lines {
		lines[i].RedemptionPoints = pts[i]
		share := new(big.Rat).Mul(r.Value.Rat(), weights[i])
		share.Quo(share, total)
		lines[i].RedemptionValue = roundHalfEven(share, 2)
		valueSum = valueSum.Add(lines[i].RedemptionValue)
		if weights[i].Cmp(weights[largest]) > 0 {
			largest = i
		}
	}
	lines[largest].RedemptionValue = lines[largest].RedemptionValue.Add(r.Value.Sub(valueSum))
}

// largestRemainder splits total integer points in proportion to weights (Σ weights = sum):
// floors first, then one point each to the largest remainders, ties to the lower index.
func largestRemainder(total int64, weights []*big.Rat, sum *big.Rat) []int64 {
	out := make([]int64, len(weights))
	rem := make([]*big.Rat, len(weights))
	var given int64
	for i, w := range weights {
		q := new(big.Rat).Mul(big.NewRat(total, 1), w)
		q.Quo(q, sum)
		fl := ratFloor(q)
		out[i] = fl
		given += fl
		rem[i] = q.Sub(q, big.NewRat(fl, 1))
	}
	idx := make([]int, len(weights))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return rem[idx[a]].Cmp(rem[idx[b]]) > 0 })
	for k := 0; given < total; k++ {
		out[idx[k%len(idx)]]++
		given++
	}
	return out
}

// ---------------------------------------------------------------------------- holding

// hold keeps e in the state, as raw (its JSON encoding, published_at cleared) or, when raw is
// nil, encoded here.
func (n *Ledger) hold(e schemas.Event, raw []byte, reason string) {
	if raw == nil {
		e.PublishedAt = time.Time{}
		var err error
		if raw, err = json.Marshal(e); err != nil {
			// Apply has fingerprinted e, which fails on exactly what json.Marshal fails on.
			panic(fmt.Sprintf("ledger: order %s: event %s has no JSON form after fingerprinting: %v", n.s.OrderID, e.EventID, err))
		}
	}
	h := HeldEvent{EventID: e.EventID, EventType: string(e.EventType), OccurredAt: e.OccurredAt.UTC(), Reason: reason, Event: raw}
	n.s.Held = insertSorted(n.s.Held, h, heldLess)
}

func heldLess(a, b HeldEvent) bool {
	if !a.OccurredAt.Equal(b.OccurredAt) {
		return a.OccurredAt.Before(b.OccurredAt)
	}
	return a.EventID < b.EventID
}

// releaseHeldOrphans applies, in canonical order, the events that waited for OrderAccepted.
func (n *Ledger) releaseHeldOrphans(p Policy, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	var keep, run []HeldEvent
	for _, h := range n.s.Held {
		if h.Reason == HoldNoOrder {
			run = append(run, h)
		} else {
			keep = append(keep, h)
		}
	}
	n.s.Held = keep
	for _, h := range run {
		cmds = n.applyOMS(n.unhold(h), h.Event, p, cmds)
	}
	return cmds
}

// unhold decodes a held event. The bytes were produced by json.Marshal of a schemas.Event in
// this package (or restored from the changelog that carried them); failing to read them back is
// a corrupted state, not bad input, hence the panic. They are read with goccy/go-json, a
// drop-in for encoding/json's Unmarshal at about a third of its CPU (a catch-up drain, where
// most events wait for their order, spent a tenth of the process here); TestHeldEventsDecodeAsStd
// holds it to encoding/json's result on every kind of generated event.
func (n *Ledger) unhold(h HeldEvent) schemas.Event {
	var e schemas.Event
	if err := gojson.Unmarshal(h.Event, &e); err != nil {
		panic(fmt.Sprintf("ledger: order %s: held event %s unreadable: %v", n.s.OrderID, h.EventID, err))
	}
	return e
}

// heldReturn is the part of a held return's JSON form that deciding about it reads: decoding
// only this skips the envelope and the rest of the body, most of a held event's decode (a
// shipment re-checks every held return).
type heldReturn struct {
	ReturnReceived *struct {
		ReturnID string               `json:"return_id"`
		Lines    []schemas.ReturnLine `json:"lines"`
	} `json:"return_received"`
}

// unholdReturn decodes the return id and lines of a held return; the ok result is false for a
// held event that is not a return.
func (n *Ledger) unholdReturn(h HeldEvent) (string, []schemas.ReturnLine, bool) {
	var r heldReturn
	if err := gojson.Unmarshal(h.Event, &r); err != nil {
		panic(fmt.Sprintf("ledger: order %s: held event %s unreadable: %v", n.s.OrderID, h.EventID, err))
	}
	if r.ReturnReceived == nil {
		return "", nil, false
	}
	return r.ReturnReceived.ReturnID, r.ReturnReceived.Lines, true
}

// heldReturnID is the return id of a held return (decoded: held returns are the faulty minority).
func (n *Ledger) heldReturnID(h HeldEvent) string {
	if id, _, ok := n.unholdReturn(h); ok {
		return id
	}
	return h.EventID
}

// releaseReturns applies held over-returns: with forced, those whose grace period ended by
// business time now (capped at what was shipped; now is the business time of a shipment, see
// applyOMS); otherwise those that now fit what was shipped. Both go in canonical order.
func (n *Ledger) releaseReturns(now time.Time, forced bool, p Policy, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	var keep []HeldEvent
	changed := false
	// One at a time, re-checking against the state the previous one left: two held returns may
	// each fit alone but not together.
	for _, h := range n.s.Held {
		if h.Reason != HoldExceedsShipped {
			keep = append(keep, h)
			continue
		}
		// Forced, only a return whose grace ended goes; otherwise only one that fits. The grace
		// needs no decode, the fit only the return's lines.
		if forced && now.Before(h.OccurredAt.Add(p.OrphanGrace)) {
			keep = append(keep, h)
			continue
		}
		if !forced {
			if _, lines, ok := n.unholdReturn(h); ok && !n.returnFits(lines) {
				keep = append(keep, h)
				continue
			}
		}
		if e := n.unhold(h); e.ReturnReceived != nil {
			n.applyReturn(e, forced)
			cmds = n.commandsFor(e, e.ReturnReceived.ReturnID, "RETURN", cmds)
			changed = true
			continue
		}
		keep = append(keep, h)
	}
	if changed {
		n.s.Held = keep
	}
	return cmds
}

// emitDeferredRefund upgrades a state written by a 2026-11-v1 ledger, which held a full-order
// cancellation's refund until RedemptionConfirmed: it requests, caused by that cancellation (the
// request id the old ledger would have used), the refund due now by the one rule (refundDue),
// and clears the hold.
func (n *Ledger) emitDeferredRefund(cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	d := n.s.DeferredRefund
	if d == nil || n.s.Order == nil {
		return cmds
	}
	n.s.DeferredRefund = nil
	e := schemas.Event{Envelope: schemas.Envelope{EventID: d.EventID, EventType: schemas.TypeOrderLinesCancelled, OccurredAt: d.OccurredAt}}
	r := getRatio()
	defer putRatio(r)
	basis(n.s.Lines, r)
	return n.refundCommand(e, d.CancellationID, "CANCELLATION", basisRounded(r, decimal.Decimal{}), entitledFrom(n.s.Order, r), cmds)
}

// redemptionConfirmed reports whether the order's redemption reservation is CONFIRMED by the
// trigger snapshotted at acceptance (Policy.ConfirmTrigger): at once for ORDER_ACCEPTED, after
// a shipment of a unit (reships excluded) for FIRST_SHIPMENT. The loyalty platform's own
// RedemptionConfirmed is a fact for view C3, not a trigger.
func (n *Ledger) redemptionConfirmed() bool {
	o := n.s.Order
	if o == nil || o.ReservationID == "" || o.RedemptionPoints <= 0 {
		return false
	}
	if ConfirmTrigger(o.ConfirmTrigger) != ConfirmOnFirstShipment {
		return true
	}
	for i := range n.s.Lines {
		if n.s.Lines[i].Shipped.IsPositive() {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------- OMS facts

func (n *Ledger) lineIndex(id string) int {
	for i := range n.s.Lines {
		if n.s.Lines[i].OrderLineID == id {
			return i
		}
	}
	return -1
}

// applyOMS applies a shipment, return or cancellation to an accepted order and appends the
// commands it causes. Before a shipment, held over-returns whose grace ended by the shipment's
// business time are applied capped; held returns that the shipment makes fit go right after it.
//
// Only a shipment ends a held return's grace. A held return waits for the shipments stream, and
// only that stream's progress says the wait is over: a later return or cancellation comes from
// another topic, which may run days ahead of the shipments (a backlog, a replay), so its business
// time proves nothing about shipments still to come. Were it allowed to expire the hold, a return
// that fits once the order's earlier shipments arrive would be capped (at nothing) and its
// commands lost, depending on how the topics interleave.
func (n *Ledger) applyOMS(e schemas.Event, raw []byte, p Policy, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	switch {
	case e.ShipmentConfirmed != nil:
		cmds = n.releaseReturns(e.OccurredAt.UTC(), true, p, cmds)
		n.applyShipment(e)
		cmds = n.commandsFor(e, e.ShipmentConfirmed.ShipmentID, "SHIPMENT", cmds)
		cmds = n.releaseReturns(time.Time{}, false, p, cmds)
	case e.ReturnReceived != nil:
		if !n.returnFits(e.ReturnReceived.Lines) {
			n.hold(e, raw, HoldExceedsShipped)
			return cmds
		}
		n.applyReturn(e, false)
		cmds = n.commandsFor(e, e.ReturnReceived.ReturnID, "RETURN", cmds)
	case e.OrderLinesCancelled != nil:
		n.applyCancellation(e)
		cmds = n.commandsFor(e, e.OrderLinesCancelled.CancellationID, "CANCELLATION", cmds)
	}
	return cmds
}

func (n *Ledger) applyShipment(e schemas.Event) {
	s := e.ShipmentConfirmed
	st := ShipmentState{ShipmentID: s.ShipmentID, EventID: e.EventID, ShippedAt: s.ShippedAt.UTC(), IsReship: s.IsReship}
	if s.Currency != nil {
		st.Currency = *s.Currency
	}
	for _, sl := range s.Lines {
		rl := RefLine{OrderLineID: sl.OrderLineID, Quantity: sl.QuantityShipped, Applied: decimal.Zero, Billed: decimal.Zero}
		if i := n.lineIndex(sl.OrderLineID); i >= 0 {
			rl.Known, rl.Applied = true, sl.QuantityShipped
			ln := &n.mutLines()[i]
			if s.IsReship {
				ln.Reshipped = ln.Reshipped.Add(sl.QuantityShipped)
			} else {
				ln.ShippedReported = ln.ShippedReported.Add(sl.QuantityShipped)
			}
		}
		st.Lines = append(st.Lines, rl)
	}
	n.s.Shipments = insertSorted(n.s.Shipments, st, func(a, b ShipmentState) bool { return a.ShipmentID < b.ShipmentID })
	n.addMove(e, MoveShipment, s.ShipmentID, false)
	n.refreshQuantities()
}

// returnFits reports whether every known line of r has its accepted quantity within
// shipped − returned.
func (n *Ledger) returnFits(lines []schemas.ReturnLine) bool {
	need := map[int]decimal.Decimal{}
	for _, rl := range lines {
		if i := n.lineIndex(rl.OrderLineID); i >= 0 {
			need[i] = need[i].Add(rl.QuantityAccepted)
		}
	}
	for i, q := range need {
		ln := n.s.Lines[i]
		if q.GreaterThan(ln.Shipped.Sub(ln.Returned)) {
			return false
		}
	}
	return true
}

func (n *Ledger) applyReturn(e schemas.Event, forced bool) {
	r := e.ReturnReceived
	st := ReturnState{ReturnID: r.ReturnID, EventID: e.EventID, ReceivedAt: r.ReceivedAt.UTC()}
	if r.Refund != nil {
		st.RefundCurrency = r.Refund.Currency
	}
	for _, x := range r.Lines {
		rl := RefLine{OrderLineID: x.OrderLineID, Quantity: x.QuantityAccepted, Applied: decimal.Zero, Billed: decimal.Zero}
		if i := n.lineIndex(x.OrderLineID); i >= 0 {
			ln := &n.mutLines()[i]
			rl.Known = true
			q := decimal.Min(x.QuantityAccepted, ln.Shipped.Sub(ln.Returned))
			if q.LessThan(x.QuantityAccepted) && forced {
				st.Capped = true
			}
			rl.Applied = q
			ln.Returned = ln.Returned.Add(q)
		}
		st.Lines = append(st.Lines, rl)
	}
	n.s.Returns = insertSorted(n.s.Returns, st, func(a, b ReturnState) bool { return a.ReturnID < b.ReturnID })
	n.addMove(e, MoveReturn, r.ReturnID, false)
	n.refreshQuantities()
}

func (n *Ledger) applyCancellation(e schemas.Event) {
	c := e.OrderLinesCancelled
	st := CancellationState{CancellationID: c.CancellationID, EventID: e.EventID, CancelledAt: c.CancelledAt.UTC(), IsFullOrder: c.IsFullOrder}
	if len(c.Lines) == 0 {
		// A full-order cancellation without lines cancels whatever is still open.
		for i := range n.s.Lines {
			ln := &n.mutLines()[i]
			open := ln.Ordered.Sub(ln.Shipped).Sub(ln.Cancelled)
			if open.IsPositive() {
				ln.CancelRequested = ln.CancelRequested.Add(open)
				st.Lines = append(st.Lines, RefLine{OrderLineID: ln.OrderLineID, Quantity: open, Applied: open, Billed: decimal.Zero, Known: true})
			}
		}
	}
	for _, cl := range c.Lines {
		rl := RefLine{OrderLineID: cl.OrderLineID, Quantity: cl.QuantityCancelled, Applied: decimal.Zero, Billed: decimal.Zero}
		if i := n.lineIndex(cl.OrderLineID); i >= 0 {
			ln := &n.mutLines()[i]
			rl.Known = true
			rl.Applied = decimal.Min(cl.QuantityCancelled, ln.Ordered.Sub(ln.Shipped).Sub(ln.Cancelled))
			ln.CancelRequested = ln.CancelRequested.Add(cl.QuantityCancelled)
		}
		st.Lines = append(st.Lines, rl)
	}
	n.s.Cancellations = insertSorted(n.s.Cancellations, st, func(a, b CancellationState) bool { return a.CancellationID < b.CancellationID })
	n.addMove(e, MoveCancellation, c.CancellationID, len(c.Lines) == 0)
	n.refreshQuantities()
}

// refreshQuantities derives the effective quantities from the reported ones so that the line
// invariant 0 ≤ Returned ≤ Shipped ≤ Ordered − Cancelled holds whatever the arrival order:
// shipped units are a physical fact and win over a cancellation of the same units.
// Shipped = min(ShippedReported, Ordered), Cancelled = min(CancelRequested, Ordered − Shipped).
func (n *Ledger) refreshQuantities() {
	r := getRatio()
	defer putRatio(r)
	for i := range n.s.Lines {
		ln := &n.s.Lines[i]
		shipped := decimal.Min(ln.ShippedReported, ln.Ordered)
		cancelled := ln.CancelRequested
		// CancelRequested + Shipped > Ordered: capped at what is still open.
		if !ln.CancelRequested.IsZero() && r.s1.reset2(ln.CancelRequested, shipped).add(ln.Ordered, true).sign() > 0 {
			cancelled = ln.Ordered.Sub(shipped)
		}
		if !sameDecimal(shipped, ln.Shipped) || !sameDecimal(cancelled, ln.Cancelled) {
			ln = &n.mutLines()[i]
			ln.Shipped, ln.Cancelled = shipped, cancelled
		}
	}
}

// ---------------------------------------------------------------------------- points

// refundDue returns Σ RR(l) over the lines (see refundable).
func (n *Ledger) refundDue(r *ratio) int64 {
	var due int64
	for i := range n.s.Lines {
		due += refundable(&n.s.Lines[i], r)
	}
	return due
}

// commandsFor emits the commands caused by the OMS event e: Δ = P − P_requested as an accrual
// or reversal, and the redemption refund due beyond what was already requested (refundCommand).
func (n *Ledger) commandsFor(e schemas.Event, sourceRef, reason string, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	o := n.s.Order
	if o.MemberID == "" || n.quiet {
		return cmds
	}
	r := getRatio()
	defer putRatio(r)
	basis(n.s.Lines, r)
	p := entitledFrom(o, r)
	b := basisRounded(r, decimal.Decimal{})
	if d := p - n.s.Points.Requested; d != 0 {
		cmds = append(cmds, n.pointsCommand(e, "", d, sourceRef, reason, b, p))
	}
	return n.refundCommand(e, sourceRef, reason, b, p, cmds)
}

// pointsCommand records and returns the accrual (d > 0) or reversal (d < 0) of |d| points
// caused by e and carrying the share of attributedTo ("" for e's own). An accrual activates
// LockDays after e's shipment time (its business time when e is not a shipment).
func (n *Ledger) pointsCommand(e schemas.Event, attributedTo string, d int64, sourceRef, reason string, b decimal.Decimal, p int64) schemas.LoyaltyCommand {
	if d < 0 {
		return n.command(e, attributedTo, schemas.TypeReversalRequested, -d, sourceRef, reason, b, p)
	}
	c := n.command(e, attributedTo, schemas.TypeAccrualRequested, d, sourceRef, reason, b, p)
	from := e.OccurredAt
	if e.ShipmentConfirmed != nil {
		from = e.ShipmentConfirmed.ShippedAt
	}
	at := from.UTC().AddDate(0, 0, int(n.s.Order.LockDays))
	c.ActivatesAt = &at
	return c
}

// refundCommand emits the redemption refund that e made due (b and p are B and P, stamped on
// the command): Σ RR(l) − already requested, where
// RR(l) = floor(alloc_pts(l) × (q_cxl + q_ret) / q_ord) once the reservation is confirmed
// (redemptionConfirmed) and 0 before. It is the only refund rule: partial and full-order
// cancellations and returns all go through it, so a full cancellation after a partial shipment
// refunds the unshipped units' share only, and one of everything refunds exactly alloc_pts.
func (n *Ledger) refundCommand(e schemas.Event, sourceRef, reason string, b decimal.Decimal, p int64, cmds []schemas.LoyaltyCommand) []schemas.LoyaltyCommand {
	if n.s.Order.MemberID == "" || !n.redemptionConfirmed() {
		return cmds
	}
	r := getRatio()
	defer putRatio(r)
	if d := n.refundDue(r) - n.s.Points.RefundRequested; d > 0 {
		cmds = append(cmds, n.refundOf(e, "", d, sourceRef, reason, b, p))
	}
	return cmds
}

// refundOf records and returns a redemption refund of d points caused by e and carrying the
// share of attributedTo ("" for e's own).
func (n *Ledger) refundOf(e schemas.Event, attributedTo string, d int64, sourceRef, reason string, b decimal.Decimal, p int64) schemas.LoyaltyCommand {
	c := n.command(e, attributedTo, schemas.TypeRedemptionRefundRequested, d, sourceRef, reason, b, p)
	rid, policy := n.s.Order.ReservationID, "RESTORE_ORIGINAL"
	c.ReservationID, c.ExpiryPolicy = &rid, &policy
	return c
}

// command records and returns a command caused by e (its request id is CommandRequestID of e's
// event id); attributedTo is the event whose share it carries when that is not e (a
// correction); basis is B rounded half-even to 4 places, p is P.
func (n *Ledger) command(e schemas.Event, attributedTo string, typ schemas.EventType, points int64, sourceRef, reason string, basis decimal.Decimal, p int64) schemas.LoyaltyCommand {
	o := n.s.Order
	c := schemas.LoyaltyCommand{
		RequestID:      schemas.CommandRequestID(n.s.OrderID, e.EventID, typ),
		CommandType:    typ,
		OrderID:        n.s.OrderID,
		MemberID:       o.MemberID,
		Points:         points,
		CausingEventID: e.EventID,
		SourceRefID:    sourceRef,
		Reason:         reason,
		BasisAmount:    basis,
		Currency:       o.Currency,
		EarnRate:       o.EarnRate,
		TierCode:       o.TierCode,
		TierMultiplier: o.TierMultiplier,
		EntitledPoints: p,
		PolicyVersion:  o.PolicyVersion,
		RequestedAt:    e.OccurredAt.UTC(),
	}
	rec := CommandRecord{RequestID: c.RequestID, CommandType: string(typ), Points: points, CausingEventID: e.EventID, SourceRefID: sourceRef,
		RequestedAt: c.RequestedAt, AttributedTo: attributedTo}
	n.s.Commands = insertSorted(n.s.Commands, rec, func(a, b CommandRecord) bool { return a.RequestID < b.RequestID })
	switch typ {
	case schemas.TypeAccrualRequested:
		n.s.Points.AccrualRequested += points
		n.s.Points.Requested += points
	case schemas.TypeReversalRequested:
		n.s.Points.ReversalRequested += points
		n.s.Points.Requested -= points
	case schemas.TypeRedemptionRefundRequested:
		n.s.Points.RefundRequested += points
	}
	return c
}

// ---------------------------------------------------------------------------- exact arithmetic

// ratFloor is ⌊x⌋ for x ≥ 0 (the ledger never floors a negative quantity).
func ratFloor(x *big.Rat) int64 {
	q := new(big.Int).Quo(x.Num(), x.Denom())
	return q.Int64()
}

// roundHalfEven rounds x to places decimals, ties to even (banker's rounding, DESIGN.md invariant 7).
func roundHalfEven(x *big.Rat, places int32) decimal.Decimal {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	num := new(big.Int).Mul(x.Num(), scale)
	q, r := new(big.Int).QuoRem(num, x.Denom(), new(big.Int))
	// |2r| vs denominator decides; QuoRem truncates toward zero, so fix up by sign.
	r2 := new(big.Int).Abs(r)
	r2.Lsh(r2, 1)
	switch c := r2.Cmp(x.Denom()); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		if x.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(q, -places)
}
