package oracle

import (
	"math/big"
	"sort"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// Command is one loyalty command the pipeline must emit (DESIGN.md invariant 13).
//
// Points are each event's canonical share: the events of an order folded in canonical order
// (occurred_at, event_id) with the holding rules, Δ = P − P_requested after each. That share is
// independent of arrival order, and comparable with any run of the pipeline (DESIGN.md
// invariant 13): the pipeline's commands carrying one event's share (same reason and source
// ref, its corrections included) sum to this command's points. When the events that move points
// reach the pipeline in canonical order, its commands are exactly these, request ids and points;
// otherwise it adds corrections (causing_event_id "<late>/<corrected>", not predicted here) and
// the points of an individual command may differ, as may the ids of events whose canonical share
// is 0. Per order, the sums (OrderTruth.RequestedNet, RefundRequested) always match.
type Command struct {
	RequestID      string            // schemas.CommandRequestID(OrderID, CausingEventID, Type)
	Type           schemas.EventType // AccrualRequested | ReversalRequested | RedemptionRefundRequested
	OrderID        string
	MemberID       string
	Points         int64 // > 0; direction from Type
	CausingEventID string
	SourceRefID    string // shipment_id / return_id / cancellation_id
	Reason         string // SHIPMENT | RETURN | CANCELLATION
	ReservationID  string // refunds only
	BusinessTime   time.Time
	ActivatesAt    time.Time       // accruals: shipped_at + lock days
	EntitledPoints int64           // P after the causing event
	BasisAmount    decimal.Decimal // B after the causing event, HALF_EVEN to 4 dp (display only)
	EarnRate       decimal.Decimal
	TierCode       string
	TierMultiplier decimal.Decimal
}

// LineTruth is the final state of one order line.
type LineTruth struct {
	OrderLineID   string
	SKU           string
	Earns         bool // not a gift card, not an excluded SKU
	Ordered       decimal.Decimal
	Cancelled     decimal.Decimal
	Shipped       decimal.Decimal // excluding reships
	Reshipped     decimal.Decimal
	Returned      decimal.Decimal // accepted quantity
	Invoiced      decimal.Decimal // Σ InvoicePosted lines, cancelled documents excluded
	Credited      decimal.Decimal // Σ CreditMemoPosted lines, cancelled documents excluded
	LineNet       decimal.Decimal // N(l)
	EligibleValue decimal.Decimal // E(l): N(l) less a TENDER redemption share; 0 when !Earns
	// InvoicedNet − CreditedNet is the ERP net billed amount of the line.
	InvoicedNet decimal.Decimal
	CreditedNet decimal.Decimal
	// OMSNetValue = round_half_even(N × (Shipped − Returned) / Ordered, 2).
	OMSNetValue      decimal.Decimal
	RedemptionPoints int64 // alloc_pts(l)
}

// OrderTruth is the final state of one order as the pipeline must see it.
type OrderTruth struct {
	OrderID        string
	Accepted       bool // an OrderAccepted was seen; otherwise every OMS event stayed held
	MemberID       string
	Tier           string
	Currency       string
	AcceptedAt     time.Time
	EarnRate       decimal.Decimal
	TierMultiplier decimal.Decimal
	Lines          []*LineTruth
	FullyCancelled bool

	Basis          decimal.Decimal // B, HALF_EVEN to 4 dp (display only; P is computed exactly)
	EntitledPoints int64           // P

	ReservationID       string
	RedemptionPoints    int64 // OrderAccepted.loyalty_redemption.points
	RedemptionConfirmed bool

	AccrualRequested  int64 // Σ points of AccrualRequested
	ReversalRequested int64
	RefundRequested   int64
	AccrualPosted     int64 // Σ PointsAccrualPosted.points
	ReversalPosted    int64 // Σ PointsReversed.points
	RefundPosted      int64 // Σ RedemptionRefunded.points

	Commands         []string // request ids in emission order
	CappedReturns    []string // return ids applied capped (RETURN_EXCEEDS_SHIPPED)
	HeldReturns      []string // return ids still held at the end
	HeldWithoutOrder int      // events that never found their OrderAccepted
}

// RequestedNet is Σ accruals − Σ reversals requested; equals EntitledPoints unless returns are held.
func (o *OrderTruth) RequestedNet() int64 { return o.AccrualRequested - o.ReversalRequested }

// PostedNet is Σ accruals − Σ reversals posted by the loyalty platform.
func (o *OrderTruth) PostedNet() int64 { return o.AccrualPosted - o.ReversalPosted }

// Line returns the line with id, or nil.
func (o *OrderTruth) Line(id string) *LineTruth {
	for _, l := range o.Lines {
		if l.OrderLineID == id {
			return l
		}
	}
	return nil
}

// MemberTruth sums a member's points over all its orders.
type MemberTruth struct {
	MemberID          string
	AccrualRequested  int64
	ReversalRequested int64
	Redeemed          int64 // confirmed redemptions
	RefundRequested   int64
}

// Net is the member's expected point movement from the generated orders once every command is
// posted: accrued − reversed − redeemed + refunded.
func (m MemberTruth) Net() int64 {
	return m.AccrualRequested - m.ReversalRequested - m.Redeemed + m.RefundRequested
}

// Totals are the sums to compare with ClickHouse.
type Totals struct {
	AccrualRequested  int64
	ReversalRequested int64
	RefundRequested   int64
	AccrualPosted     int64
	ReversalPosted    int64
	RefundPosted      int64
	RedeemedConfirmed int64
	// ERP net amounts per currency, cancelled documents excluded.
	ErpInvoicedNet map[string]decimal.Decimal
	ErpCreditedNet map[string]decimal.Decimal
}

// Expected is everything the oracle derives from a set of input events.
type Expected struct {
	// Orders by grouping key: every order_id seen, and the checkout id of a reservation that
	// never became an order (Accepted false, like an order whose OrderAccepted never came).
	Orders   map[string]*OrderTruth
	Commands map[string]Command // by request id
	Members  map[string]*MemberTruth
	Views    map[string][]ViewRow // by view name (ViewC1 … ViewC6), rows sorted by Key
	Totals   Totals
	// Policy and AsOf are what Compute was given: a checker that folds a subset of the events
	// again (an order the runtime evicted and a late event re-created) folds it by the same rules.
	Policy Policy
	AsOf   time.Time
}

// Compute folds events (any order, duplicates allowed) into the expected outputs. Views are
// evaluated at asOf: a row is expected once asOf − business_time ≥ p.ReconGrace, and C3
// OPEN_PAST_TTL once the reservation expired before asOf.
//
// Events are grouped per order (the body's order_id, else the correlation id), deduplicated by
// event_id (first occurrence wins) and folded in canonical order (occurred_at, then event_id),
// with the holding rules of DESIGN.md invariant 6.
func Compute(events []schemas.Event, p Policy, asOf time.Time) *Expected {
	groups, order := groupByOrder(events)
	x := &Expected{
		Orders:   map[string]*OrderTruth{},
		Commands: map[string]Command{},
		Members:  map[string]*MemberTruth{},
		Totals:   Totals{ErpInvoicedNet: map[string]decimal.Decimal{}, ErpCreditedNet: map[string]decimal.Decimal{}},
		Policy:   p,
		AsOf:     asOf,
	}
	folded := make([]*orderFold, 0, len(order))
	for _, key := range order {
		f := foldOrder(key, groups[key], p)
		folded = append(folded, f)
		x.Orders[key] = f.truth
		for _, c := range f.commands {
			x.Commands[c.RequestID] = c
		}
	}
	for _, f := range folded {
		o := f.truth
		x.Totals.AccrualRequested += o.AccrualRequested
		x.Totals.ReversalRequested += o.ReversalRequested
		x.Totals.RefundRequested += o.RefundRequested
		x.Totals.AccrualPosted += o.AccrualPosted
		x.Totals.ReversalPosted += o.ReversalPosted
		x.Totals.RefundPosted += o.RefundPosted
		for cur, v := range f.invoicedNet {
			x.Totals.ErpInvoicedNet[cur] = x.Totals.ErpInvoicedNet[cur].Add(v)
		}
		for cur, v := range f.creditedNet {
			x.Totals.ErpCreditedNet[cur] = x.Totals.ErpCreditedNet[cur].Add(v)
		}
		if o.Accepted && o.MemberID != "" {
			m := x.Members[o.MemberID]
			if m == nil {
				m = &MemberTruth{MemberID: o.MemberID}
				x.Members[o.MemberID] = m
			}
			m.AccrualRequested += o.AccrualRequested
			m.ReversalRequested += o.ReversalRequested
			m.RefundRequested += o.RefundRequested
			if o.RedemptionConfirmed {
				m.Redeemed += o.RedemptionPoints
			}
		}
		if o.RedemptionConfirmed {
			x.Totals.RedeemedConfirmed += o.RedemptionPoints
		}
	}
	x.Views = computeViews(folded, p, asOf, nil)
	return x
}

// ViewsFor evaluates the views as Compute does, except that the views that read individual
// commands, joining postings to them by request id — C4, and C5's POINTS_ON_INELIGIBLE — are
// evaluated over issued, the commands a pipeline run actually emitted (any order; grouped by
// OrderID). A run whose
// point-moving events arrived out of canonical order emits corrections and other per-command
// points than Commands predicts (DESIGN.md invariant 13; checked separately, per event share),
// so its C4 rows follow from what it emitted, not from the inputs alone.
func ViewsFor(events []schemas.Event, p Policy, asOf time.Time, issued []Command) map[string][]ViewRow {
	groups, order := groupByOrder(events)
	folded := make([]*orderFold, 0, len(order))
	for _, key := range order {
		folded = append(folded, foldOrder(key, groups[key], p))
	}
	byOrder := map[string][]Command{}
	for _, c := range issued {
		byOrder[c.OrderID] = append(byOrder[c.OrderID], c)
	}
	return computeViews(folded, p, asOf, byOrder)
}

// Commands returns the loyalty commands one order's events cause, in emission order. events must
// all belong to the same order; duplicates and any order of arrival are allowed.
func Commands(events []schemas.Event, p Policy) []Command {
	groups, order := groupByOrder(events)
	var out []Command
	for _, key := range order {
		out = append(out, foldOrder(key, groups[key], p).commands...)
	}
	return out
}

// OrderKey is the order an event belongs to: the body's order_id when it has one, else the
// envelope's correlation id (a reservation made before any order exists).
func OrderKey(e *schemas.Event) string {
	if id := e.OrderID(); id != "" {
		return id
	}
	return e.CorrelationID
}

// groupByOrder dedups by event id and groups per order, each group in canonical order.
func groupByOrder(events []schemas.Event) (map[string][]*schemas.Event, []string) {
	seen := make(map[string]bool, len(events))
	groups := map[string][]*schemas.Event{}
	var order []string
	for i := range events {
		e := &events[i]
		if seen[e.EventID] {
			continue
		}
		seen[e.EventID] = true
		k := OrderKey(e)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, g := range groups {
		sort.SliceStable(g, func(i, j int) bool { return canonicalLess(g[i], g[j]) })
	}
	sort.Strings(order)
	return groups, order
}

func canonicalLess(a, b *schemas.Event) bool {
	if !a.OccurredAt.Equal(b.OccurredAt) {
		return a.OccurredAt.Before(b.OccurredAt)
	}
	return a.EventID < b.EventID
}

// ------------------------------------------------------------------------------------ fold

// line is the working state of one order line during the fold.
type line struct {
	*LineTruth
	eligible *big.Rat // E(l)
	ordered  *big.Rat
	shipped  decimal.Decimal
	returned decimal.Decimal
}

// orderFold is the working state of one order; truth is what Compute publishes.
type orderFold struct {
	truth    *OrderTruth
	events   []*schemas.Event // canonical order
	accepted *schemas.OrderAccepted
	lines    []*line
	byID     map[string]*line
	commands []Command
	policy   Policy

	confirmedEver bool // some RedemptionConfirmed for this order's reservation exists at all
	shippedAny    bool // a unit was shipped (reships excluded): FIRST_SHIPMENT confirms here
	held          []*schemas.Event

	invoicedNet map[string]decimal.Decimal
	creditedNet map[string]decimal.Decimal
}

func foldOrder(key string, events []*schemas.Event, p Policy) *orderFold {
	f := &orderFold{
		truth:       &OrderTruth{OrderID: key},
		events:      events,
		byID:        map[string]*line{},
		policy:      p,
		invoicedNet: map[string]decimal.Decimal{},
		creditedNet: map[string]decimal.Decimal{},
	}
	var oa *schemas.Event
	for _, e := range events {
		if e.OrderAccepted != nil {
			oa = e
			break
		}
	}
	if oa != nil {
		f.accept(oa)
	}
	f.foldLoyaltyAndERP()
	if oa == nil {
		for _, e := range events {
			if e.OrderLinesCancelled != nil || e.ShipmentConfirmed != nil || e.ReturnReceived != nil {
				f.truth.HeldWithoutOrder++
			}
		}
		return f
	}
	// Events before OrderAccepted were held and are applied, in canonical order, when it
	// arrives; that is the same sequence as canonical order with OrderAccepted first.
	for _, e := range events {
		if e == oa || e.OrderAccepted != nil {
			continue
		}
		if e.OrderLinesCancelled == nil && e.ShipmentConfirmed == nil && e.ReturnReceived == nil {
			continue
		}
		switch {
		case e.OrderLinesCancelled != nil:
			f.cancel(e)
		case e.ShipmentConfirmed != nil:
			// Only a shipment ends a held return's grace (the ledger's rule: returns and
			// cancellations come on topics that may run ahead of the shipments).
			f.releaseExpiredHolds(e.OccurredAt)
			f.ship(e)
			f.releaseFittingHolds()
		case e.ReturnReceived != nil:
			if f.returnFits(e.ReturnReceived) {
				f.applyReturn(e, false)
			} else {
				f.held = append(f.held, e)
			}
		}
	}
	for _, e := range f.held {
		f.truth.HeldReturns = append(f.truth.HeldReturns, e.ReturnReceived.ReturnID)
	}
	f.finish()
	return f
}

func (f *orderFold) accept(e *schemas.Event) {
	a := e.OrderAccepted
	f.accepted = a
	t := f.truth
	t.Accepted = true
	t.Currency = a.Currency
	t.AcceptedAt = a.AcceptedAt
	if a.LoyaltyMemberID != nil {
		t.MemberID = *a.LoyaltyMemberID
	}
	if a.LoyaltyTierAtOrder != nil {
		t.Tier = *a.LoyaltyTierAtOrder
	}
	t.EarnRate = f.policy.earnRate(a.EarnRate, a.Currency)
	t.TierMultiplier = f.policy.multiplier(a.TierMultiplier, t.Tier)
	tender := a.LoyaltyRedemption != nil && a.LoyaltyRedemption.Accounting == "TENDER"
	if a.LoyaltyRedemption != nil {
		t.ReservationID = a.LoyaltyRedemption.ReservationID
		t.RedemptionPoints = a.LoyaltyRedemption.Points
	}
	for _, ol := range a.Lines {
		lt := &LineTruth{
			OrderLineID: ol.OrderLineID, SKU: ol.SKU, Ordered: ol.Quantity, LineNet: ol.LineNet,
			Earns: !ol.IsGiftCard && !f.policy.ExcludedSKUs[ol.SKU],
		}
		if ol.RedemptionAlloc != nil {
			lt.RedemptionPoints = ol.RedemptionAlloc.Points
		}
		if lt.Earns {
			lt.EligibleValue = ol.LineNet
			if tender && ol.RedemptionAlloc != nil {
				lt.EligibleValue = ol.LineNet.Sub(ol.RedemptionAlloc.Value)
			}
		}
		l := &line{LineTruth: lt, eligible: lt.EligibleValue.Rat(), ordered: ol.Quantity.Rat()}
		f.lines = append(f.lines, l)
		f.byID[ol.OrderLineID] = l
		t.Lines = append(t.Lines, lt)
	}
}

// foldLoyaltyAndERP records confirmations, postings and ERP documents of the order.
func (f *orderFold) foldLoyaltyAndERP() {
	t := f.truth
	cancelledDocs := map[string]bool{}
	for _, e := range f.events {
		if e.BillingDocCancelled != nil {
			cancelledDocs[e.BillingDocCancelled.CancelsBillingDocumentID] = true
		}
	}
	for _, e := range f.events {
		switch {
		case e.RedemptionConfirmed != nil:
			if t.ReservationID != "" && e.RedemptionConfirmed.ReservationID == t.ReservationID {
				f.confirmedEver = true
				t.RedemptionConfirmed = true
			}
		case e.PointsAccrualPosted != nil:
			t.AccrualPosted += e.PointsAccrualPosted.Points
		case e.PointsReversed != nil:
			t.ReversalPosted += e.PointsReversed.Points
		case e.RedemptionRefunded != nil:
			t.RefundPosted += e.RedemptionRefunded.Points
		case e.InvoicePosted != nil && !cancelledDocs[e.InvoicePosted.BillingDocumentID]:
			f.invoicedNet[e.InvoicePosted.Currency] = f.invoicedNet[e.InvoicePosted.Currency].Add(e.InvoicePosted.Net)
			for _, bl := range e.InvoicePosted.Lines {
				if l := f.byID[bl.OrderLineID]; l != nil {
					l.Invoiced = l.Invoiced.Add(bl.Quantity)
					l.InvoicedNet = l.InvoicedNet.Add(bl.Net)
				}
			}
		case e.CreditMemoPosted != nil && !cancelledDocs[e.CreditMemoPosted.BillingDocumentID]:
			f.creditedNet[e.CreditMemoPosted.Currency] = f.creditedNet[e.CreditMemoPosted.Currency].Add(e.CreditMemoPosted.Net)
			for _, bl := range e.CreditMemoPosted.Lines {
				if l := f.byID[bl.OrderLineID]; l != nil {
					l.Credited = l.Credited.Add(bl.Quantity)
					l.CreditedNet = l.CreditedNet.Add(bl.Net)
				}
			}
		}
	}
}

func (f *orderFold) cancel(e *schemas.Event) {
	c := e.OrderLinesCancelled
	for _, cl := range c.Lines {
		l := f.byID[cl.OrderLineID]
		if l == nil {
			continue
		}
		open := l.Ordered.Sub(l.Cancelled).Sub(l.shipped)
		q := decimal.Min(cl.QuantityCancelled, decimal.Max(open, decimal.Zero))
		l.Cancelled = l.Cancelled.Add(q)
	}
	if c.IsFullOrder {
		f.truth.FullyCancelled = true
	}
	f.refund(e, c.CancellationID, "CANCELLATION")
}

func (f *orderFold) ship(e *schemas.Event) {
	s := e.ShipmentConfirmed
	for _, sl := range s.Lines {
		l := f.byID[sl.OrderLineID]
		if l == nil {
			continue
		}
		if s.IsReship {
			l.Reshipped = l.Reshipped.Add(sl.QuantityShipped)
			continue
		}
		l.shipped = l.shipped.Add(sl.QuantityShipped)
		if sl.QuantityShipped.IsPositive() {
			f.shippedAny = true
		}
	}
	f.accrueOrReverse(e, s.ShipmentID, "SHIPMENT", s.ShippedAt)
	// Under FIRST_SHIPMENT this shipment may be what confirms the reservation: what was
	// cancelled before it becomes refundable now. (Under the default it never refunds anything:
	// a shipment moves neither q_cxl nor q_ret.)
	f.refund(e, s.ShipmentID, "SHIPMENT")
}

// returnFits reports whether every line of r fits within shipped − already returned.
func (f *orderFold) returnFits(r *schemas.ReturnReceived) bool {
	want := map[string]decimal.Decimal{}
	for _, rl := range r.Lines {
		want[rl.OrderLineID] = want[rl.OrderLineID].Add(rl.QuantityAccepted)
	}
	for id, q := range want {
		l := f.byID[id]
		if l == nil {
			continue
		}
		if q.GreaterThan(l.shipped.Sub(l.returned)) {
			return false
		}
	}
	return true
}

func (f *orderFold) applyReturn(e *schemas.Event, capped bool) {
	r := e.ReturnReceived
	for _, rl := range r.Lines {
		l := f.byID[rl.OrderLineID]
		if l == nil {
			continue
		}
		q := decimal.Min(rl.QuantityAccepted, decimal.Max(l.shipped.Sub(l.returned), decimal.Zero))
		l.returned = l.returned.Add(q)
	}
	if capped {
		f.truth.CappedReturns = append(f.truth.CappedReturns, r.ReturnID)
	}
	f.accrueOrReverse(e, r.ReturnID, "RETURN", r.ReceivedAt)
	f.refund(e, r.ReturnID, "RETURN")
}

// releaseFittingHolds applies, in canonical order, held returns that now fit.
func (f *orderFold) releaseFittingHolds() {
	var still []*schemas.Event
	for _, h := range f.held {
		if f.returnFits(h.ReturnReceived) {
			f.applyReturn(h, false)
		} else {
			still = append(still, h)
		}
	}
	f.held = still
}

// releaseExpiredHolds applies, capped, held returns whose grace period ended before now.
func (f *orderFold) releaseExpiredHolds(now time.Time) {
	var still []*schemas.Event
	for _, h := range f.held {
		if !now.Before(h.OccurredAt.Add(f.policy.OrphanGrace)) {
			f.applyReturn(h, true)
		} else {
			still = append(still, h)
		}
	}
	f.held = still
}

// basis is B = Σ E(l) × F(l) / q_ord(l), exact.
func (f *orderFold) basis() *big.Rat {
	b := new(big.Rat)
	for _, l := range f.lines {
		if !l.Earns || l.ordered.Sign() == 0 {
			continue
		}
		fq := l.shipped.Sub(l.returned)
		if fq.IsNegative() {
			fq = decimal.Zero
		}
		if fq.GreaterThan(l.Ordered) {
			fq = l.Ordered
		}
		term := new(big.Rat).Mul(l.eligible, fq.Rat())
		term.Quo(term, l.ordered)
		b.Add(b, term)
	}
	return b
}

// entitled is P = floor(B × earn_rate × tier_multiplier); 0 for guest orders.
func (f *orderFold) entitled(b *big.Rat) int64 {
	if f.truth.MemberID == "" {
		return 0
	}
	x := new(big.Rat).Mul(b, f.truth.EarnRate.Rat())
	x.Mul(x, f.truth.TierMultiplier.Rat())
	return floorRat(x)
}

func floorRat(x *big.Rat) int64 {
	q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for a positive denominator
	return q.Int64()
}

func ratToDecimal4(x *big.Rat) decimal.Decimal {
	d, _ := decimal.NewFromString(x.FloatString(12))
	return d.RoundBank(4)
}

func (f *orderFold) accrueOrReverse(e *schemas.Event, ref, reason string, at time.Time) {
	t := f.truth
	if t.MemberID == "" {
		return
	}
	b := f.basis()
	p := f.entitled(b)
	delta := p - t.RequestedNet()
	if delta == 0 {
		return
	}
	c := Command{
		OrderID: t.OrderID, MemberID: t.MemberID, CausingEventID: e.EventID, SourceRefID: ref,
		Reason: reason, BusinessTime: e.OccurredAt, EntitledPoints: p, BasisAmount: ratToDecimal4(b),
		EarnRate: t.EarnRate, TierCode: t.Tier, TierMultiplier: t.TierMultiplier,
	}
	if delta > 0 {
		c.Type, c.Points = schemas.TypeAccrualRequested, delta
		c.ActivatesAt = at.AddDate(0, 0, f.policy.LockDays)
		t.AccrualRequested += delta
	} else {
		c.Type, c.Points = schemas.TypeReversalRequested, -delta
		t.ReversalRequested += -delta
	}
	f.emit(c)
}

// confirmed reports whether the order's reservation is CONFIRMED by now, per the one confirmation rule (DESIGN.md)
// "Reservation lifecycle" and the policy's trigger. The loyalty platform's RedemptionConfirmed
// event is not the trigger (B.1: "same events, different trigger"); it is what view C3 checks.
func (f *orderFold) confirmed() bool {
	t := f.truth
	if t.ReservationID == "" || t.RedemptionPoints <= 0 {
		return false
	}
	if f.policy.ConfirmTrigger == ConfirmAtFirstShipment {
		return f.shippedAny
	}
	return true
}

// refund emits RedemptionRefundRequested for what became refundable ("Redemption
// refunds"): Σ_l RR(l) − already requested, with the cumulative
// RR(l) = floor(alloc_pts(l) × (q_cxl(l) + q_ret(l)) / q_ord(l)), for a confirmed reservation
// only. B.1 has no other refund rule: "full cancel/return refunds exactly alloc_pts(l)" is what
// this gives when q_cxl + q_ret = q_ord, and a full-order cancellation of an order that already
// shipped units refunds the share of the units it cancelled, not the shipped units'.
func (f *orderFold) refund(e *schemas.Event, ref, reason string) {
	t := f.truth
	if t.MemberID == "" || !f.confirmed() {
		return
	}
	var due int64
	for _, l := range f.lines {
		if l.RedemptionPoints == 0 || l.ordered.Sign() == 0 {
			continue
		}
		x := new(big.Rat).SetInt64(l.RedemptionPoints)
		x.Mul(x, l.Cancelled.Add(l.returned).Rat())
		x.Quo(x, l.ordered)
		rr := floorRat(x)
		if rr > l.RedemptionPoints {
			rr = l.RedemptionPoints
		}
		due += rr
	}
	delta := due - t.RefundRequested
	if delta <= 0 {
		return
	}
	t.RefundRequested += delta
	f.emit(Command{
		Type: schemas.TypeRedemptionRefundRequested, OrderID: t.OrderID, MemberID: t.MemberID,
		Points: delta, CausingEventID: e.EventID, SourceRefID: ref, Reason: reason,
		ReservationID: t.ReservationID, BusinessTime: e.OccurredAt, EntitledPoints: f.entitled(f.basis()),
		EarnRate: t.EarnRate, TierCode: t.Tier, TierMultiplier: t.TierMultiplier,
	})
}

func (f *orderFold) emit(c Command) {
	c.RequestID = schemas.CommandRequestID(c.OrderID, c.CausingEventID, c.Type)
	f.commands = append(f.commands, c)
	f.truth.Commands = append(f.truth.Commands, c.RequestID)
}

// finish publishes the final line quantities, B, P and the OMS net values.
func (f *orderFold) finish() {
	t := f.truth
	b := f.basis()
	t.Basis = ratToDecimal4(b)
	t.EntitledPoints = f.entitled(b)
	full := len(f.lines) > 0
	for _, l := range f.lines {
		l.Shipped = l.shipped
		l.Returned = l.returned
		if l.Cancelled.LessThan(l.Ordered) {
			full = false
		}
		if l.Ordered.Sign() > 0 {
			v := new(big.Rat).Mul(l.LineNet.Rat(), l.shipped.Sub(l.returned).Rat())
			v.Quo(v, l.ordered)
			l.OMSNetValue = roundHalfEven2(v)
		}
	}
	if full {
		t.FullyCancelled = true
	}
}

// roundHalfEven2 rounds an exact ratio HALF_EVEN to 2 decimal places.
func roundHalfEven2(x *big.Rat) decimal.Decimal {
	scaled := new(big.Rat).Mul(x, big.NewRat(100, 1))
	q, r := new(big.Int).QuoRem(scaled.Num(), scaled.Denom(), new(big.Int))
	// q truncates toward zero; compare 2|r| with the denominator to decide.
	twice := new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2))
	switch c := twice.Cmp(scaled.Denom()); {
	case c > 0 || (c == 0 && q.Bit(0) == 1):
		if scaled.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(q, -2)
}
