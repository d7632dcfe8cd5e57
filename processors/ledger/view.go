package ledger

import (
	"slices"
	"time"
)

// clone returns a deep copy: no slice or pointer of the result is shared with l. HeldEvent.Event
// bytes are shared because nothing ever writes into them after hold.
func (l Ledger) clone() Ledger {
	s := l.s
	if s.Order != nil {
		o := *s.Order
		s.Order = &o
	}
	s.Lines = slices.Clone(s.Lines)
	s.Shipments = slices.Clone(s.Shipments)
	for i := range s.Shipments {
		s.Shipments[i].Lines = slices.Clone(s.Shipments[i].Lines)
	}
	s.Returns = slices.Clone(s.Returns)
	for i := range s.Returns {
		s.Returns[i].Lines = slices.Clone(s.Returns[i].Lines)
	}
	s.Cancellations = slices.Clone(s.Cancellations)
	for i := range s.Cancellations {
		s.Cancellations[i].Lines = slices.Clone(s.Cancellations[i].Lines)
	}
	s.Reservations = slices.Clone(s.Reservations)
	s.Commands = slices.Clone(s.Commands)
	s.Postings = slices.Clone(s.Postings)
	s.ErpOrders = slices.Clone(s.ErpOrders)
	for i := range s.ErpOrders {
		s.ErpOrders[i].Items = slices.Clone(s.ErpOrders[i].Items)
	}
	s.Documents = slices.Clone(s.Documents)
	for i := range s.Documents {
		s.Documents[i].Lines = slices.Clone(s.Documents[i].Lines)
	}
	s.DocCancels = slices.Clone(s.DocCancels)
	s.Held = slices.Clone(s.Held)
	if s.DeferredRefund != nil {
		d := *s.DeferredRefund
		s.DeferredRefund = &d
	}
	s.Exceptions = slices.Clone(s.Exceptions)
	s.Seen = slices.Clone(s.Seen)
	return Ledger{s: s}
}

// State returns a deep copy of the ledger's state (for the changelog and the sink).
func (l Ledger) State() State { return l.clone().s }

// OrderID is the order this ledger belongs to ("" for a zero Ledger before its first event).
func (l Ledger) OrderID() string { return l.s.OrderID }

// Accepted reports whether OrderAccepted has been applied.
func (l Ledger) Accepted() bool { return l.s.Order != nil }

// Order returns the acceptance snapshot, if the order has been accepted.
func (l Ledger) Order() (OrderSnapshot, bool) {
	if l.s.Order == nil {
		return OrderSnapshot{}, false
	}
	return *l.s.Order, true
}

// Lines returns a copy of the per-line state, in order line order.
func (l Ledger) Lines() []LineState { return slices.Clone(l.s.Lines) }

// Points returns the order-level points picture.
func (l Ledger) Points() PointsState { return l.s.Points }

// Exceptions returns a copy of the open exceptions, sorted by (code, ref).
func (l Ledger) Exceptions() []Exception { return slices.Clone(l.s.Exceptions) }

// Held returns how many events wait (for their order, or for the shipment a return refers to).
func (l Ledger) Held() int { return len(l.s.Held) }

// Clock is the latest business time of any event applied.
func (l Ledger) Clock() time.Time { return l.s.Clock }

// EvictAfter reports whether the order is closed and, if so, the business time after which the
// runtime may evict it (write a tombstone to the changelog). An order is closed when all its
// lines are cancelled, or when everything not cancelled has shipped and the return window since
// the last shipment has passed on the ledger clock; closure is re-evaluated on every Apply, so a
// late event can reopen an order. A ledger that never saw its OrderAccepted never closes: its
// held events must not be dropped silently (they surface as HELD_WITHOUT_ORDER).
func (l Ledger) EvictAfter() (time.Time, bool) {
	return l.s.EvictAt, l.s.Closed
}

// ExpiresAt is the business time after which the runtime may evict the order when no later
// event changes it (a time-driven sweep; EvictAfter is the rule on the order's own clock), and
// whether the order has one:
//   - closed: EvictAt;
//   - accepted, every line not cancelled shipped: the end of the return window since the last
//     shipment (when it closes on any later clock) plus RetentionAfterClose;
//   - never accepted (an orphan: its events wait for an OrderAccepted, or a checkout's
//     reservation): the later of its clock and the time its latest event reached the log
//     (Arrived), plus OrphanGrace (from then on its held events are the HELD_WITHOUT_ORDER
//     exception) plus RetentionAfterClose, kept as long as a closed order for an OrderAccepted
//     that comes very late. The arrival counts because stream time is business time: an event
//     that reaches the log a fortnight after it occurred (a backlog an upstream system sends
//     after an outage) is already past its clock's expiry when it arrives, and its
//     OrderAccepted, a record behind it in the same backlog, would find it evicted;
//   - otherwise (open): none.
//
// It reads the state only: the closure rule runs on a copy whose clock is at the end of time.
func (l Ledger) ExpiresAt(p Policy) (time.Time, bool) {
	if l.s.Order == nil {
		if l.s.Clock.IsZero() {
			return time.Time{}, false
		}
		since := l.s.Clock
		if l.s.OrphanSince.After(since) {
			since = l.s.OrphanSince
		}
		return since.Add(p.OrphanGrace).Add(p.RetentionAfterClose), true
	}
	if l.s.Closed {
		return l.s.EvictAt, true
	}
	n := Ledger{s: l.s} // close writes only the scalar closure fields of its copy of s
	n.s.Clock = time.Unix(1<<62, 0)
	n.close(p)
	return n.s.EvictAt, n.s.Closed
}

// Arrived records that an event of this ledger's order reached the log at t (its Kafka record's
// timestamp), on a ledger Apply returned for it. While the order has no OrderAccepted the
// latest such time is kept (State.OrphanSince: an orphan's expiry counts from it, ExpiresAt);
// an accepted order keeps none. It writes a scalar of its own copy only, so it keeps Apply's
// copy-on-write promise.
//
// A record timestamp is the producer's say, not checked against anything (max_event_skew bounds
// the event's times against it, not it against the clock), so it counts at most MaxArrivalLag
// past the order's clock: a producer whose clock is wrong (or one that writes microseconds
// where Kafka wants milliseconds, year 58,000) keeps an orphan at most that much longer,
// instead of for ever or with a state the changelog cannot encode.
func (l Ledger) Arrived(t time.Time) Ledger {
	if l.s.Order != nil {
		l.s.OrphanSince = time.Time{}
		return l
	}
	if t.UnixMilli() <= 0 || l.s.Clock.IsZero() { // no timestamp (-1, or unset) says nothing
		return l
	}
	if limit := l.s.Clock.Add(MaxArrivalLag); t.After(limit) {
		t = limit
	}
	if t.After(l.s.OrphanSince) {
		l.s.OrphanSince = t.UTC().Truncate(time.Microsecond) // the changelog keeps microseconds
	}
	return l
}

// MaxArrivalLag is how far past an orphan's clock its record timestamps count (Arrived): a
// backlog later than this is kept as if it had arrived this late.
const MaxArrivalLag = 366 * 24 * time.Hour
