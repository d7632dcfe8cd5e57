// Package accrual is the accrual core: the part of the order ledger that DOMAIN B.1 defines for
// points, and nothing else. It exists to compare engines on equal work (bench/kstreams runs it
// as a retailflow stage, topology/accrualcore, and as a Kafka Streams processor,
// bench/kstreams/src, which implements these rules line for line); the production ledger is
// processors/ledger, which does far more (redemption refunds, reservations, ERP matching,
// exceptions, canonical replay and corrections for late events, eviction).
//
// The rules, per order (the Kafka key):
//
//   - Dedup: an event id seen before for the order is ignored (no state change, no command),
//     whatever its payload. At most MaxEvents distinct ids per order (ErrTooManyEvents).
//   - Join to the order: a shipment, return or cancellation that arrives before the order's
//     OrderAccepted is held in the state; OrderAccepted applies the held events in the order
//     they arrived. A second OrderAccepted (new event id) is rejected (ErrOrderAlreadyAccepted).
//   - Eligible value per line E(l) = line_net − (the line's redemption allocation value when the
//     redemption is accounted as TENDER), never below 0; 0 for a gift card.
//   - Quantities: shipped(l) = min(Σ quantity_shipped of non-reship shipments, ordered);
//     returns apply at most shipped − returned per line; lines the order does not have are
//     ignored.
//   - Returns wait for fulfilment: a return is applied once the order is fulfilled (every line
//     shipped or cancelled: shipped + requested cancellations ≥ ordered, or a full-order
//     cancellation without lines); until then it waits in the state, and the waiting returns
//     are applied in arrival order when the order becomes fulfilled. Shipments, returns and
//     cancellations each come from one partition of one topic in log order, so with this rule
//     the commands are a function of the input logs alone, however an engine interleaves the
//     five topics (the full ledger gets the same property with canonical replay and
//     corrections instead, DESIGN.md invariant 13).
//   - Points: B = Σ_l E(l) × (shipped(l) − returned(l)) / ordered(l), exact;
//     P = floor(B × earn_rate × tier_multiplier) — the ledger's rule (floor of the cumulative
//     entitlement, never per event; processors/ledger entitledFrom). 0 for a guest order.
//   - Commands: after each shipment, applied return or cancellation, Δ = P − requested;
//     Δ > 0 → AccrualRequested(Δ), Δ < 0 → ReversalRequested(−Δ), caused by that event:
//     request_id = schemas.CommandRequestID(order_id, event_id, type).
//   - Earn rate and multiplier: the order's own snapshot (earn_rate, tier_multiplier) when it
//     carries one, otherwise the Policy's rate for the currency (none: 0) and its multiplier for
//     the tier (none or unknown: 1).
//
// Units: quantities are integers in thousandths (Avro decimal(12,3)), money in ten-thousandths
// of the currency unit (decimal(18,4), the wire's scale, so exact), rates in millionths
// (decimal(9,6)). The only rounding is the floor of P, on the exact rational B.
package accrual

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"sort"

	"github.com/retailflow/retailflow/schemas"
)

// Scales of the integer units (powers of ten).
const (
	QtyScale   = 3 // Qty is thousandths
	MoneyScale = 4 // Money is ten-thousandths of the currency unit
	RateScale  = 6 // Rate is millionths
)

// Qty, Money and Rate are exact integers in the units above.
type (
	Qty   int64
	Money int64
	Rate  int64
)

// One is the Rate 1.
const One Rate = 1_000_000

// Kind is what an event is to the core.
type Kind uint8

const (
	Other        Kind = iota // an input the core does not use (loyalty, ERP): no state change
	Accepted                 // OrderAccepted
	Shipment                 // ShipmentConfirmed
	Return                   // ReturnReceived
	Cancellation             // OrderLinesCancelled
)

// Event is an input event reduced to what the core reads.
type Event struct {
	EventID    string
	Kind       Kind
	OccurredAt int64 // business time, µs since the epoch (the command's requested_at)
	// Order is set for Accepted.
	Order *OrderFacts
	// Move is set for Shipment, Return and Cancellation.
	Move *Move
}

// OrderFacts is what the core takes from OrderAccepted.
type OrderFacts struct {
	OrderID    string
	MemberID   string // "" for a guest order
	Currency   string
	Tier       string
	EarnRate   *Rate // the order's own snapshot, when it carries one
	Multiplier *Rate
	Lines      []OrderLine
}

// OrderLine is one line of OrderFacts.
type OrderLine struct {
	ID       string
	Ordered  Qty
	Eligible Money // E(l)
}

// Move is a shipment, return or cancellation: quantities per order line.
type Move struct {
	EventID    string
	Kind       Kind
	OccurredAt int64
	Reship     bool // a reship earns nothing (its units were shipped before)
	CancelAll  bool // a full-order cancellation without lines: everything still open
	Lines      []MoveLine
}

// MoveLine is one line of a Move.
type MoveLine struct {
	LineID string
	Qty    Qty
}

// State is one order's state. Apply never writes into a State it is given.
type State struct {
	OrderID   string
	Order     *Order   // nil until OrderAccepted
	Seen      []string // event ids applied or held, sorted
	Held      []Move   // arrived before OrderAccepted, in arrival order
	Waiting   []Move   // returns waiting for the order to be fulfilled, in arrival order
	Requested int64    // Σ accruals − Σ reversals requested
}

// Order is the accepted order with its per-line quantities.
type Order struct {
	MemberID   string
	EarnRate   Rate
	Multiplier Rate
	CancelAll  bool
	Lines      []Line
}

// Line is one order line's facts and quantities.
type Line struct {
	ID              string
	Ordered         Qty
	Eligible        Money
	Shipped         Qty // Σ non-reship shipped, capped at Ordered when applied
	Returned        Qty
	CancelRequested Qty
}

// Command is an accrual or reversal request.
type Command struct {
	RequestID      string
	Type           schemas.EventType // TypeAccrualRequested or TypeReversalRequested
	OrderID        string
	MemberID       string
	CausingEventID string
	Points         int64 // > 0
	EntitledPoints int64 // P after the causing event
	RequestedAt    int64 // the causing event's business time, µs
}

// Policy is the earn rule the core reads when the order carries no snapshot of its own.
type Policy struct {
	EarnRates       map[string]Rate // per ISO 4217 currency
	TierMultipliers map[string]Rate // per tier code
	MaxEvents       int             // distinct event ids per order (the dedup set's bound)
}

// Errors Apply returns for an event the order's state refuses.
var (
	ErrOrderAlreadyAccepted = errors.New("accrual: order already accepted")
	ErrTooManyEvents        = errors.New("accrual: too many events for one order")
	ErrWrongOrder           = errors.New("accrual: OrderAccepted names another order")
)

// Apply folds e into s and returns the new state, the commands e caused (in order) and
// whether the state changed. A duplicate event id, or an event of Kind Other, changes nothing.
func Apply(orderID string, s State, found bool, e Event, p Policy) (State, []Command, bool, error) {
	if e.Kind == Other {
		return s, nil, false, nil
	}
	i, dup := slices.BinarySearch(s.Seen, e.EventID)
	if dup {
		return s, nil, false, nil
	}
	if len(s.Seen) >= p.MaxEvents {
		return s, nil, false, fmt.Errorf("%w (%d): event %s", ErrTooManyEvents, p.MaxEvents, e.EventID)
	}
	if e.Kind == Accepted && s.Order != nil {
		return s, nil, false, fmt.Errorf("%w: event %s", ErrOrderAlreadyAccepted, e.EventID)
	}
	if e.Kind == Accepted && e.Order.OrderID != orderID {
		return s, nil, false, fmt.Errorf("%w: key %q, body %q (event %s)", ErrWrongOrder, orderID, e.Order.OrderID, e.EventID)
	}
	n := s.clone()
	if !found {
		n.OrderID = orderID
	}
	n.Seen = slices.Insert(slices.Clip(s.Seen), i, e.EventID) // Clip: Insert copies
	var cmds []Command
	switch {
	case e.Kind == Accepted:
		n.Order = accept(e.Order, p)
		held := n.Held
		n.Held = nil
		for _, m := range held {
			cmds = n.move(m, cmds)
		}
	case n.Order == nil:
		n.Held = append(n.Held, *e.Move)
	default:
		cmds = n.move(*e.Move, cmds)
	}
	return n, cmds, true, nil
}

func accept(o *OrderFacts, p Policy) *Order {
	ord := &Order{MemberID: o.MemberID, EarnRate: 0, Multiplier: One, Lines: make([]Line, len(o.Lines))}
	if o.MemberID != "" {
		switch m, ok := p.TierMultipliers[o.Tier]; {
		case o.Multiplier != nil:
			ord.Multiplier = *o.Multiplier
		case ok:
			ord.Multiplier = m
		}
		switch r, ok := p.EarnRates[o.Currency]; {
		case o.EarnRate != nil:
			ord.EarnRate = *o.EarnRate
		case ok:
			ord.EarnRate = r
		}
	}
	for i, l := range o.Lines {
		ord.Lines[i] = Line{ID: l.ID, Ordered: l.Ordered, Eligible: l.Eligible}
	}
	return ord
}

// move applies a shipment, return or cancellation to an accepted order and appends the
// commands it causes.
func (n *State) move(m Move, cmds []Command) []Command {
	switch m.Kind {
	case Shipment:
		if !m.Reship {
			for _, ml := range m.Lines {
				if ln := n.line(ml.LineID); ln != nil {
					ln.Shipped = min(ln.Shipped+ml.Qty, ln.Ordered)
				}
			}
		}
	case Return:
		if !n.fulfilled() {
			n.Waiting = append(n.Waiting, m)
			return cmds
		}
		n.applyReturn(m)
	case Cancellation:
		if m.CancelAll {
			n.Order.CancelAll = true
		}
		for _, ml := range m.Lines {
			if ln := n.line(ml.LineID); ln != nil {
				ln.CancelRequested += ml.Qty
			}
		}
	}
	cmds = n.request(m, cmds)
	if len(n.Waiting) > 0 && n.fulfilled() {
		waiting := n.Waiting
		n.Waiting = nil
		for _, w := range waiting {
			n.applyReturn(w)
			cmds = n.request(w, cmds)
		}
	}
	return cmds
}

func (n *State) applyReturn(m Move) {
	for _, ml := range m.Lines {
		if ln := n.line(ml.LineID); ln != nil {
			ln.Returned += min(ml.Qty, ln.Shipped-ln.Returned)
		}
	}
}

// fulfilled reports whether every line is shipped or cancelled.
func (n *State) fulfilled() bool {
	if n.Order.CancelAll {
		return true
	}
	for i := range n.Order.Lines {
		ln := &n.Order.Lines[i]
		if ln.Shipped+ln.CancelRequested < ln.Ordered {
			return false
		}
	}
	return true
}

func (n *State) line(id string) *Line {
	for i := range n.Order.Lines {
		if n.Order.Lines[i].ID == id {
			return &n.Order.Lines[i]
		}
	}
	return nil
}

// request appends the command for Δ = P − requested caused by m, if Δ ≠ 0.
func (n *State) request(m Move, cmds []Command) []Command {
	o := n.Order
	if o.MemberID == "" {
		return cmds
	}
	p := Entitled(o)
	d := p - n.Requested
	if d == 0 {
		return cmds
	}
	typ := schemas.TypeAccrualRequested
	if d < 0 {
		typ = schemas.TypeReversalRequested
	}
	n.Requested = p
	return append(cmds, Command{
		RequestID: schemas.CommandRequestID(n.OrderID, m.EventID, typ), Type: typ,
		OrderID: n.OrderID, MemberID: o.MemberID, CausingEventID: m.EventID,
		Points: max(d, -d), EntitledPoints: p, RequestedAt: m.OccurredAt,
	})
}

// pow10_16 is 10^(MoneyScale + 2·RateScale): B × rate × multiplier in integer units carries
// that factor.
var pow10_16 = new(big.Int).Exp(big.NewInt(10), big.NewInt(MoneyScale+2*RateScale), nil)

// Entitled is P = floor(B × earn_rate × tier_multiplier) with
// B = Σ_l E(l) × (shipped(l) − returned(l)) / ordered(l), computed exactly (one common
// denominator, one truncating division; every term is ≥ 0, so truncation is the floor). The
// common denominator is the least common multiple of the ordered quantities, and the sum is
// taken in 128 bits; where a product would not fit, in math/big (entitledBig, the reference
// TestEntitledFastIsExact holds the fast path to).
func Entitled(o *Order) int64 {
	if p, ok := entitled128(o); ok {
		return p
	}
	return entitledBig(o)
}

// entitled128 is Entitled in 128-bit integers, or false when an intermediate value would not fit.
func entitled128(o *Order) (int64, bool) {
	if o.EarnRate < 0 || o.Multiplier < 0 {
		return 0, false
	}
	// L = lcm of the ordered quantities of the lines that count
	l := uint64(1)
	for i := range o.Lines {
		ln := &o.Lines[i]
		if ln.kept() <= 0 {
			continue
		}
		q := uint64(ln.Ordered)
		hi, lo := bits.Mul64(l/gcd(l, q), q)
		if hi != 0 {
			return 0, false
		}
		l = lo
	}
	// num = Σ E·f·(L/q), 128 bits
	var nhi, nlo uint64
	for i := range o.Lines {
		ln := &o.Lines[i]
		f := ln.kept()
		if f <= 0 {
			continue
		}
		thi, tlo := bits.Mul64(uint64(ln.Eligible), uint64(f))
		if thi != 0 {
			return 0, false
		}
		thi, tlo = bits.Mul64(tlo, l/uint64(ln.Ordered))
		var c uint64
		nlo, c = bits.Add64(nlo, tlo, 0)
		if nhi, c = bits.Add64(nhi, thi, c); c != 0 {
			return 0, false
		}
	}
	if nhi == 0 && nlo == 0 {
		return 0, true
	}
	// num × rate × multiplier, still 128 bits
	for _, m := range []uint64{uint64(o.EarnRate), uint64(o.Multiplier)} {
		h1, l1 := bits.Mul64(nlo, m)
		h2, l2 := bits.Mul64(nhi, m)
		if h2 != 0 {
			return 0, false
		}
		var c uint64
		if nhi, c = bits.Add64(h1, l2, 0); c != 0 {
			return 0, false
		}
		nlo = l1
	}
	// floor(num / (10^16 · L)) = floor(floor(num / 10^16) / L) for positive integers
	for _, d := range []uint64{pow10_16u, l} {
		if nhi >= d {
			qhi := nhi / d
			var qlo uint64
			qlo, _ = bits.Div64(nhi%d, nlo, d)
			nhi, nlo = qhi, qlo
		} else {
			nlo, _ = bits.Div64(nhi, nlo, d)
			nhi = 0
		}
	}
	if nhi != 0 || nlo > math.MaxInt64 {
		return 0, false
	}
	return int64(nlo), true
}

// kept is the line's shipped quantity not returned when it counts towards B (eligible value
// and a positive ordered quantity), and 0 when it does not.
func (ln *Line) kept() int64 {
	if ln.Eligible <= 0 || ln.Ordered <= 0 {
		return 0
	}
	return max(int64(ln.Shipped-ln.Returned), 0)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pow10_16u is pow10_16 as a uint64.
const pow10_16u = 10_000_000_000_000_000

// entitledBig is Entitled in math/big: one common denominator, the product of the ordered
// quantities.
func entitledBig(o *Order) int64 {
	var num, den, t big.Int
	num.SetInt64(0)
	den.SetInt64(1)
	for i := range o.Lines {
		ln := &o.Lines[i]
		f := ln.kept()
		if f <= 0 {
			continue
		}
		// num/den + E·f/q = (num·q + E·f·den) / (den·q)
		q := big.NewInt(int64(ln.Ordered))
		num.Mul(&num, q)
		t.SetInt64(int64(ln.Eligible))
		t.Mul(&t, big.NewInt(f))
		t.Mul(&t, &den)
		num.Add(&num, &t)
		den.Mul(&den, q)
	}
	if num.Sign() == 0 {
		return 0
	}
	num.Mul(&num, big.NewInt(int64(o.EarnRate)))
	num.Mul(&num, big.NewInt(int64(o.Multiplier)))
	den.Mul(&den, pow10_16)
	return num.Quo(&num, &den).Int64()
}

// clone copies s deeply enough that Apply's writes never reach the original (Seen is
// replaced, never written, by Apply).
func (s State) clone() State {
	n := s
	n.Held = slices.Clone(s.Held)
	n.Waiting = slices.Clone(s.Waiting)
	if s.Order != nil {
		o := *s.Order
		o.Lines = slices.Clone(o.Lines)
		n.Order = &o
	}
	return n
}

// SortCommands orders commands by request id (for comparing command sets).
func SortCommands(cs []Command) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].RequestID < cs[j].RequestID })
}
