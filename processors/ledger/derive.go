package ledger

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// moneyPlaces is the rounding of OMS values compared with ERP amounts (contracts C6:
// round_half_even(line_net × qty / q_ord, 2)).
const moneyPlaces = 2

// Fact groups, for recompute: which recorded facts an Apply changed. Each derived field is a
// function of some of the groups (and of the clock); recompute derives only the fields whose
// groups changed, so a loyalty or ERP event does not re-derive the order's quantities, values
// and points. The derived fields of the groups an event leaves alone are, in the state it
// starts from, what a full recompute gave them: every state this ledger version writes was
// derived by these rules (an older StateVersion, or a state carrying a DeferredRefund, is
// recomputed in full once). TestIncrementalRecomputeIsFull holds recompute(touched) to
// recompute(touchAll) after every Apply of the property and scenario traffic.
const (
	// touchOMS: the order, its lines, shipments, returns, cancellations, held events and
	// commands (OrderAccepted and the OMS events). It derives everything: quantities feed the
	// values and points, shipment and return lines the billing match.
	touchOMS = 1 << iota
	// touchBilling: ERP sales orders, billing documents and their cancellations (matchErp).
	touchBilling
	// touchPostings: loyalty postings and reservations (sumPostings).
	touchPostings

	touchAll = touchOMS | touchBilling | touchPostings
)

// recompute derives what is a function of the recorded facts in the groups touched (above):
// effective quantities, values, basis and points (touchOMS), ERP matching (touchOMS,
// touchBilling), posted points and reservation statuses (touchPostings); and always the
// exceptions and closure, which also depend on the clock. It runs after every Apply, so the
// state never holds a stale derived field. It writes a derived field only when its value
// changes, so an event that changes nothing derived copies nothing (cow.go).
func (n *Ledger) recompute(p Policy, touched int) {
	if touched&touchOMS != 0 {
		n.refreshQuantities()
	}
	if touched&(touchOMS|touchBilling) != 0 {
		n.matchErp()
	}
	if touched&touchPostings != 0 {
		n.sumPostings()
	}
	if touched&touchOMS != 0 {
		n.deriveValues()
	}
	scratch := exceptionScratch.Get().(*[]Exception)
	now := n.deriveExceptions(p, (*scratch)[:0])
	n.s.Exceptions = mergeExceptions(n.s.Exceptions, now, n.s.Clock)
	clear(now) // mergeExceptions returned old, nil or a copy: nothing refers to now
	*scratch = now[:0]
	exceptionScratch.Put(scratch)
	n.close(p)
}

// exceptionScratch holds the slices deriveExceptions appends to: a local array escaped (the
// closure that appends captures it), which was one 640-byte allocation per Apply.
var exceptionScratch = sync.Pool{New: func() any { s := make([]Exception, 0, 8); return &s }}

// deriveValues derives, from the lines' quantities and the order, each line's refundable points
// and net shipped value and the order's basis, entitled points and refund due.
func (n *Ledger) deriveValues() {
	r := getRatio()
	defer putRatio(r)
	var due int64
	for i := range n.s.Lines {
		ln := &n.s.Lines[i]
		rr := refundable(ln, r)
		due += rr
		v := netShippedValue(ln, ln.NetShippedValue, r)
		if rr != ln.RefundablePoints || !sameDecimal(v, ln.NetShippedValue) {
			ln = &n.mutLines()[i]
			ln.RefundablePoints, ln.NetShippedValue = rr, v
		}
	}
	basis(n.s.Lines, r)
	n.s.Points.Basis = basisRounded(r, n.s.Points.Basis)
	n.s.Points.Entitled = entitledFrom(n.s.Order, r)
	n.s.Points.RedemptionRefundDue = due
}

// docCancelled reports whether a BillingDocumentCancelled names document id.
func (n *Ledger) docCancelled(id string) bool {
	for i := range n.s.DocCancels {
		if n.s.DocCancels[i].CancelsDocumentID == id {
			return true
		}
	}
	return false
}

// matchErp marks cancelled documents and sums billing per line (quantities, and nets of the
// documents in the order's currency) and per shipment/return line (what billing lines that
// reference it bill). Each sum is recomputed from the documents, exactly, and written only
// when it changed.
func (n *Ledger) matchErp() {
	for di := range n.s.Documents {
		if c := n.docCancelled(n.s.Documents[di].BillingDocumentID); c != n.s.Documents[di].Cancelled {
			n.mutDocuments()[di].Cancelled = c
		}
	}
	orderCur := ""
	if n.s.Order != nil {
		orderCur = n.s.Order.Currency
	}
	r := getRatio()
	defer putRatio(r)
	erpQty, inv, cred, invNet, credNet := &r.s1, &r.s2, &r.s3, &r.s4, &r.s5
	for i := range n.s.Lines {
		ln := &n.s.Lines[i]
		erpQty.reset()
		hasErp := false
		if len(n.s.ErpOrders) > 0 {
			for _, it := range n.s.ErpOrders[0].Items {
				if it.OrderLineID == ln.OrderLineID {
					hasErp = true
					erpQty.add(it.Quantity, false)
				}
			}
		}
		inv.reset()
		cred.reset()
		invNet.reset()
		credNet.reset()
		var billingLines int32
		for di := range n.s.Documents {
			d := &n.s.Documents[di]
			if d.Cancelled {
				continue
			}
			sameCurrency := orderCur == "" || d.Currency == orderCur
			for bi := range d.Lines {
				bl := &d.Lines[bi]
				if bl.OrderLineID != ln.OrderLineID {
					continue
				}
				if d.Kind == DocInvoice {
					inv.add(bl.Quantity, false)
					if sameCurrency {
						invNet.add(bl.Net, false)
					}
				} else {
					cred.add(bl.Quantity, false)
					if sameCurrency {
						credNet.add(bl.Net, false)
					}
				}
				billingLines++
			}
		}
		if hasErp != ln.HasErpItem || !erpQty.equal(ln.ErpQuantity) || !inv.equal(ln.Invoiced) || !cred.equal(ln.Credited) ||
			!invNet.equal(ln.InvoicedNet) || !credNet.equal(ln.CreditedNet) || billingLines != ln.BillingLines {
			ln = &n.mutLines()[i]
			ln.HasErpItem, ln.ErpQuantity, ln.BillingLines = hasErp, erpQty.value(ln.ErpQuantity), billingLines
			ln.Invoiced, ln.Credited = inv.value(ln.Invoiced), cred.value(ln.Credited)
			ln.InvoicedNet, ln.CreditedNet = invNet.value(ln.InvoicedNet), credNet.value(ln.CreditedNet)
		}
	}
	for si := range n.s.Shipments {
		s := &n.s.Shipments[si]
		for li := range s.Lines {
			if billed, notTransferred := n.billedRef(s.ShipmentID, s.Lines, li, DocInvoice, &r.s1); !billed.equal(s.Lines[li].Billed) || notTransferred != s.Lines[li].BilledNotTransferred {
				rl := &n.mutShipments()[si].Lines[li]
				rl.Billed, rl.BilledNotTransferred = billed.value(rl.Billed), notTransferred
				s = &n.s.Shipments[si]
			}
		}
	}
	for ri := range n.s.Returns {
		rt := &n.s.Returns[ri]
		for li := range rt.Lines {
			if billed, notTransferred := n.billedRef(rt.ReturnID, rt.Lines, li, DocCreditMemo, &r.s1); !billed.equal(rt.Lines[li].Billed) || notTransferred != rt.Lines[li].BilledNotTransferred {
				rl := &n.mutReturns()[ri].Lines[li]
				rl.Billed, rl.BilledNotTransferred = billed.value(rl.Billed), notTransferred
				rt = &n.s.Returns[ri]
			}
		}
	}
}

// billedRef sums into sum the quantities of the non-cancelled documents' lines of kind (invoices
// for shipments, credit memos for returns) that reference (ref, lines[li].OrderLineID), and
// reports whether one of those documents is not TRANSFERRED. A billing line counts on the first
// line of the shipment/return with its order line only.
func (n *Ledger) billedRef(ref string, lines []RefLine, li int, kind string, sum *decSum) (*decSum, bool) {
	sum.reset()
	id := lines[li].OrderLineID
	for k := range li {
		if lines[k].OrderLineID == id {
			return sum, false
		}
	}
	notTransferred := false
	for di := range n.s.Documents {
		d := &n.s.Documents[di]
		if d.Cancelled || d.Kind != kind {
			continue
		}
		for bi := range d.Lines {
			if bl := &d.Lines[bi]; bl.ReferenceDocument == ref && bl.OrderLineID == id {
				sum.add(bl.Quantity, false)
				if d.TransferStatus != "TRANSFERRED" {
					notTransferred = true
				}
			}
		}
	}
	return sum, notTransferred
}

// sumPostings derives the posted side of PointsState from the loyalty bookings.
func (n *Ledger) sumPostings() {
	pt := &n.s.Points
	var accrued, activated, reversed, fromPending, fromActive, shortfall, refunded int64
	for _, p := range n.s.Postings {
		switch p.Kind {
		case PostingAccrual:
			accrued += p.Points
		case PostingActivation:
			activated += p.Points
		case PostingReversal:
			reversed += p.Points
			fromPending += p.FromPending
			fromActive += p.FromActive
			shortfall += p.Shortfall
		case PostingRefund:
			refunded += p.Points
		}
	}
	pt.AccrualPosted, pt.Reversed, pt.Posted = accrued, reversed, accrued-reversed
	pt.Pending = accrued - activated - fromPending
	pt.Active = activated - fromActive
	pt.Shortfall, pt.RefundPosted = shortfall, refunded
	for i := range n.s.Reservations {
		r := &n.s.Reservations[i]
		var status string
		switch {
		case r.Confirmed:
			status = ReservationConfirmed
		case r.Released:
			status = ReservationReleased
		case r.Reserved:
			status = ReservationReserved
		default:
			status = ReservationUnknown
		}
		if status != r.Status {
			n.mutReservations()[i].Status = status
		}
	}
}

// deriveExceptions lists every inconsistency the facts show now. FirstSeen is set here only
// where the exception is about one event; mergeExceptions fills the rest.
//
// Details are formatted into a scratch buffer and the previous Detail string is reused when it
// reads the same, so an exception that persists unchanged costs no allocation; out is appended
// to (pass a scratch slice; mergeExceptions copies what it keeps).
func (n *Ledger) deriveExceptions(p Policy, out []Exception) []Exception {
	var buf [160]byte
	add := func(code, ref string, at time.Time, format string, args ...any) {
		d := appendDetail(buf[:0], format, args...)
		detail := ""
		if old, ok := findException(n.s.Exceptions, code, ref); ok && old.Detail == string(d) {
			detail = old.Detail
		} else {
			detail = string(d)
		}
		out = append(out, Exception{Code: code, Ref: ref, Detail: detail, FirstSeen: at})
	}
	for _, h := range n.s.Held {
		if n.s.Clock.Sub(h.OccurredAt) <= p.OrphanGrace {
			continue
		}
		switch h.Reason {
		case HoldNoOrder:
			add(ExcHeldWithoutOrder, h.EventID, h.OccurredAt.Add(p.OrphanGrace), "%s waits for OrderAccepted", h.EventType)
		case HoldExceedsShipped:
			add(ExcReturnExceedsShipped, n.heldReturnID(h), h.OccurredAt, "accepted quantity exceeds shipped; held")
		}
	}
	for _, r := range n.s.Returns {
		if r.Capped {
			add(ExcReturnExceedsShipped, r.ReturnID, r.ReceivedAt, "accepted quantity exceeds shipped; applied capped")
		}
	}
	for _, r := range n.s.Reservations {
		if r.Confirmed && r.Released {
			add(ExcRedemptionConflict, r.ReservationID, time.Time{}, "reservation both confirmed and released")
		}
	}
	o := n.s.Order
	if o == nil {
		return out
	}
	if o.EarnRateMissing {
		add(ExcNoEarnRate, o.Currency, o.AcceptedAt, "policy %s has no earn rate for %s", o.PolicyVersion, o.Currency)
	}
	if o.TierUnknown {
		add(ExcUnknownTier, o.TierCode, o.AcceptedAt, "policy %s has no multiplier for tier %q", o.PolicyVersion, o.TierCode)
	}
	unknown := func(ref, line string, at time.Time) {
		add(ExcUnknownOrderLine, ref+"/"+line, at, "order has no line %q", line)
	}
	for _, s := range n.s.Shipments {
		if s.Currency != "" && s.Currency != o.Currency {
			add(ExcCurrencyMismatch, s.ShipmentID, s.ShippedAt, "shipment currency %s, order %s", s.Currency, o.Currency)
		}
		for _, l := range s.Lines {
			if !l.Known {
				unknown(s.ShipmentID, l.OrderLineID, s.ShippedAt)
			}
		}
	}
	for _, r := range n.s.Returns {
		if r.RefundCurrency != "" && r.RefundCurrency != o.Currency {
			add(ExcCurrencyMismatch, r.ReturnID, r.ReceivedAt, "refund currency %s, order %s", r.RefundCurrency, o.Currency)
		}
		for _, l := range r.Lines {
			if !l.Known {
				unknown(r.ReturnID, l.OrderLineID, r.ReceivedAt)
			}
		}
	}
	for _, c := range n.s.Cancellations {
		for _, l := range c.Lines {
			if !l.Known {
				unknown(c.CancellationID, l.OrderLineID, c.CancelledAt)
			}
		}
	}
	for _, d := range n.s.Documents {
		if d.Currency != o.Currency {
			add(ExcCurrencyMismatch, d.BillingDocumentID, d.BillingDate, "document currency %s, order %s", d.Currency, o.Currency)
		}
		for _, l := range d.Lines {
			if n.lineIndex(l.OrderLineID) < 0 {
				unknown(d.BillingDocumentID, l.OrderLineID, d.BillingDate)
			}
		}
	}
	for _, eo := range n.s.ErpOrders {
		if eo.Currency != "" && eo.Currency != o.Currency {
			add(ExcCurrencyMismatch, eo.ErpSalesOrderID, eo.CreatedAt, "ERP order currency %s, order %s", eo.Currency, o.Currency)
		}
		for _, it := range eo.Items {
			if n.lineIndex(it.OrderLineID) < 0 {
				unknown(eo.ErpSalesOrderID, it.OrderLineID, eo.CreatedAt)
			}
		}
		if len(eo.Items) != len(n.s.Lines) {
			add(ExcErpLineCountDiff, eo.ErpSalesOrderID, time.Time{}, "ERP has %d items, order %d lines", len(eo.Items), len(n.s.Lines))
		}
	}
	r := getRatio()
	defer putRatio(r)
	for i := range n.s.Lines {
		ln := &n.s.Lines[i]
		if r.s1.reset2(ln.ShippedReported, ln.CancelRequested).add(ln.Ordered, true).sign() > 0 {
			add(ExcShipmentExceedsOpen, ln.OrderLineID, time.Time{}, "shipped %s + cancelled %s > ordered %s", ln.ShippedReported, ln.CancelRequested, ln.Ordered)
		}
		if ln.HasErpItem && !ln.ErpQuantity.Equal(ln.Ordered) {
			add(ExcErpQtyDiff, ln.OrderLineID, time.Time{}, "ERP quantity %s, ordered %s", ln.ErpQuantity, ln.Ordered)
		}
		if !n.onBillingDocument(ln.OrderLineID) {
			continue // not billed at all: the views' NOT_BILLED, aged from the shipment
		}
		// OMS net shipped (shipped − returned) vs ERP net billed (invoiced − credited).
		if r.s1.reset2(ln.Shipped, ln.Credited).add(ln.Returned, true).add(ln.Invoiced, true).sign() != 0 {
			add(ExcBilledQtyDiff, ln.OrderLineID, time.Time{}, "OMS net shipped %s, ERP net billed %s", ln.Shipped.Sub(ln.Returned), ln.Invoiced.Sub(ln.Credited))
		}
		// |ERP net − OMS net| > tolerance × billing lines
		k := int64(max(ln.BillingLines, 1))
		r.s1.reset()
		diff := r.s1.add(ln.InvoicedNet, false).add(ln.CreditedNet, true).add(ln.NetShippedValue, true)
		if diff.sign() < 0 {
			diff.z.Neg(&diff.z)
		}
		r.s2.reset()
		r.s2.add(p.AmountTolerance, false).z.Mul(&r.s2.z, r.a.SetInt64(k))
		if diff.addSum(&r.s2, true).sign() > 0 {
			tol := p.AmountTolerance.Mul(decimal.NewFromInt(k))
			add(ExcBilledAmountDiff, ln.OrderLineID, time.Time{}, "ERP net %s, OMS net %s (tolerance %s)", ln.InvoicedNet.Sub(ln.CreditedNet), ln.NetShippedValue, tol)
		}
	}
	var postedArr [8]posted
	postedFor := postedArr[:0]
	for _, ps := range n.s.Postings {
		if ps.Kind == PostingActivation || ps.RequestID == "" {
			continue
		}
		if ps.Kind == PostingAccrual && o.MemberID != "" && !ps.TierMultiplier.Equal(o.TierMultiplier) {
			add(ExcWrongMultiplier, ps.EntryID, ps.PostedAt, "posted multiplier %s, order %s", ps.TierMultiplier, o.TierMultiplier)
		}
		if _, ok := n.commandRecord(ps.RequestID); !ok {
			add(ExcPostingUnknown, ps.EntryID, time.Time{}, "%s names request %s, not a command of this order", ps.Kind, ps.RequestID)
			continue
		}
		postedFor = append(postedFor, posted{ps.RequestID, ps.Points})
	}
	// Σ points posted per request id, in request id order.
	slices.SortStableFunc(postedFor, func(a, b posted) int { return strings.Compare(a.requestID, b.requestID) })
	for i := 0; i < len(postedFor); {
		id, sum := postedFor[i].requestID, int64(0)
		for ; i < len(postedFor) && postedFor[i].requestID == id; i++ {
			sum += postedFor[i].points
		}
		if c, _ := n.commandRecord(id); sum != c.Points {
			add(ExcPostedNotRequested, id, time.Time{}, "%s requested %d, posted %d", c.CommandType, c.Points, sum)
		}
	}
	return out
}

type posted struct {
	requestID string
	points    int64
}

// commandRecord finds the command with request id id (the last one, should a restored state
// hold two).
func (n *Ledger) commandRecord(id string) (CommandRecord, bool) {
	cs := n.s.Commands
	i := sort.Search(len(cs), func(i int) bool { return cs[i].RequestID > id })
	if i > 0 && cs[i-1].RequestID == id {
		return cs[i-1], true
	}
	return CommandRecord{}, false
}

// onBillingDocument reports whether some billing document, cancelled or not, has a line for
// order line id.
func (n *Ledger) onBillingDocument(id string) bool {
	for di := range n.s.Documents {
		for bi := range n.s.Documents[di].Lines {
			if n.s.Documents[di].Lines[bi].OrderLineID == id {
				return true
			}
		}
	}
	return false
}

// findException finds the exception (code, ref) in xs, sorted by (code, ref).
func findException(xs []Exception, code, ref string) (Exception, bool) {
	i := sort.Search(len(xs), func(i int) bool {
		return xs[i].Code > code || xs[i].Code == code && xs[i].Ref >= ref
	})
	if i < len(xs) && xs[i].Code == code && xs[i].Ref == ref {
		return xs[i], true
	}
	return Exception{}, false
}

// mergeExceptions keeps FirstSeen of exceptions still open, stamps new ones without an event
// time with clock, drops those no longer open, and sorts by (code, ref). It returns old itself
// when nothing changed, and otherwise a new slice (now, which may be scratch, is not kept).
func mergeExceptions(old, now []Exception, clock time.Time) []Exception {
	if len(now) > 1 {
		sort.Slice(now, func(i, j int) bool {
			if now[i].Code != now[j].Code {
				return now[i].Code < now[j].Code
			}
			return now[i].Ref < now[j].Ref
		})
	}
	out := now[:0]
	for i, x := range now {
		if i > 0 && x.Code == now[i-1].Code && x.Ref == now[i-1].Ref {
			continue
		}
		for _, o := range old {
			if o.Code == x.Code && o.Ref == x.Ref {
				x.FirstSeen = o.FirstSeen
				break
			}
		}
		if x.FirstSeen.IsZero() {
			x.FirstSeen = clock
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil
	}
	if slices.EqualFunc(out, old, func(a, b Exception) bool {
		return a.Code == b.Code && a.Ref == b.Ref && a.Detail == b.Detail && a.FirstSeen == b.FirstSeen
	}) {
		return old
	}
	return slices.Clone(out)
}

// close decides whether the order is closed: every line cancelled, or everything not cancelled
// shipped and the return window (from the last shipment) passed on the ledger clock.
func (n *Ledger) close(p Policy) {
	n.s.Closed, n.s.ClosedAt, n.s.EvictAt = false, time.Time{}, time.Time{}
	o := n.s.Order
	if o == nil {
		return
	}
	allCancelled, allDone := true, true
	r := getRatio()
	defer putRatio(r)
	for i := range n.s.Lines {
		ln := &n.s.Lines[i]
		if !ln.Cancelled.Equal(ln.Ordered) {
			allCancelled = false
		}
		if r.s1.reset2(ln.Shipped, ln.Cancelled).add(ln.Ordered, true).sign() != 0 {
			allDone = false
		}
	}
	var at time.Time
	switch {
	case allCancelled:
		for _, c := range n.s.Cancellations {
			if c.CancelledAt.After(at) {
				at = c.CancelledAt
			}
		}
	case allDone:
		var last time.Time
		for _, s := range n.s.Shipments {
			if !s.IsReship && s.ShippedAt.After(last) {
				last = s.ShippedAt
			}
		}
		at = last.AddDate(0, 0, int(o.ReturnWindowDays))
		if n.s.Clock.Before(at) {
			return
		}
	default:
		return
	}
	n.s.Closed, n.s.ClosedAt, n.s.EvictAt = true, at, at.Add(p.RetentionAfterClose)
}

// appendDetail appends the exception detail fmt.Sprintf(format, args...) would give, for the
// verbs and types the details use (%s of a string or decimal, %q of a string, %d of an
// integer), without fmt's allocations; anything else goes through fmt.
func appendDetail(b []byte, format string, args ...any) []byte {
	start, next := len(b), 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+1 >= len(format) || next >= len(args) {
			return fmt.Appendf(b[:start], format, args...)
		}
		i++
		switch v := args[next]; {
		case format[i] == 's' && isString(v):
			b = append(b, asString(v)...)
		case format[i] == 'q' && isString(v):
			b = strconv.AppendQuote(b, asString(v))
		case format[i] == 's':
			d, ok := v.(decimal.Decimal)
			if !ok {
				return fmt.Appendf(b[:start], format, args...)
			}
			b = appendDecimal(b, d)
		case format[i] == 'd':
			switch x := v.(type) {
			case int:
				b = strconv.AppendInt(b, int64(x), 10)
			case int32:
				b = strconv.AppendInt(b, int64(x), 10)
			case int64:
				b = strconv.AppendInt(b, x, 10)
			default:
				return fmt.Appendf(b[:start], format, args...)
			}
		default:
			return fmt.Appendf(b[:start], format, args...)
		}
		next++
	}
	if next != len(args) {
		return fmt.Appendf(b[:start], format, args...)
	}
	return b
}

func isString(v any) bool {
	switch v.(type) {
	case string, schemas.EventType:
		return true
	}
	return false
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case schemas.EventType:
		return string(x)
	}
	return ""
}
