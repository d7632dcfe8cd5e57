package oracle

import (
	"math/big"
	"sort"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// The reconciliation views (connectors/clickhouse/migrations/views/recon.sql).
const (
	ViewOrdersAwaitingERP    = "recon_orders_awaiting_erp"              // C1
	ViewShipmentsNotInvoiced = "recon_shipments_not_invoiced"           // C2
	ViewRedemptionsPending   = "recon_redemptions_pending_confirmation" // C3
	ViewReturnsNotInLoyalty  = "recon_returns_not_reflected_in_loyalty" // C4
	ViewAccrualVsFulfilment  = "recon_accrual_vs_fulfilment"            // C5
	ViewThreeWayLine         = "recon_three_way_line"                   // C6
	ViewRefundSettlement     = "recon_refunds_vs_credit_memos"          // refunds vs ERP credit memos
	ViewLoyaltyLiability     = "recon_loyalty_liability"                // C7
)

// Views lists the view names in C1…C6 order, then the refund settlement check, then C7.
var Views = []string{
	ViewOrdersAwaitingERP, ViewShipmentsNotInvoiced, ViewRedemptionsPending,
	ViewReturnsNotInLoyalty, ViewAccrualVsFulfilment, ViewThreeWayLine, ViewRefundSettlement,
	ViewLoyaltyLiability,
}

// ViewRow is one expected row of a reconciliation view. Only the business keys of its view are
// set: C1 and C6 (OrderID, OrderLineID), C2 (ShipmentID, OrderLineID), C3 (ReservationID,
// OrderID), C4 (ReturnID, OrderLineID, OrderID), C5 (OrderID), C7 (MemberID, Period).
// OrderLineID is "" for order-level C1 codes.
type ViewRow struct {
	View          string
	OrderID       string
	OrderLineID   string
	ShipmentID    string
	ReturnID      string
	ReservationID string
	MemberID      string // C7
	Period        string // C7: the first day of the month, YYYY-MM-DD (UTC)
	MismatchCode  string
	BusinessTime  time.Time       // the event time the row's age is measured from
	Points        int64           // C4: the line's share of the return's finding; C5: see c5; C7: see c7
	Amount        decimal.Decimal // C2: shipped − billed qty; C6 AMOUNT_DIFF: ERP net − OMS net; refunds: refunded − credited
}

// Keys are the row's two business keys in the view's column order (the second is "" for C5;
// C4's third key, its order, is in Key).
func (r ViewRow) Keys() (string, string) {
	switch r.View {
	case ViewShipmentsNotInvoiced:
		return r.ShipmentID, r.OrderLineID
	case ViewRedemptionsPending:
		return r.ReservationID, r.OrderID
	case ViewRefundSettlement:
		return r.ReturnID, r.OrderID
	case ViewReturnsNotInLoyalty:
		return r.ReturnID, r.OrderLineID
	case ViewAccrualVsFulfilment:
		return r.OrderID, ""
	case ViewLoyaltyLiability:
		return r.MemberID, r.Period
	}
	return r.OrderID, r.OrderLineID
}

// Key identifies the row for diffing: view|key1|key2|mismatch_code (C4: view|return|line@order|code).
func (r ViewRow) Key() string {
	a, b := r.Keys()
	if r.View == ViewReturnsNotInLoyalty {
		b += "@" + r.OrderID
	}
	return r.View + "|" + a + "|" + b + "|" + r.MismatchCode
}

type viewSet struct {
	asOf  time.Time
	grace time.Duration
	rows  map[string][]ViewRow
}

func (v *viewSet) add(r ViewRow) {
	if v.asOf.Sub(r.BusinessTime) < v.grace {
		return
	}
	v.rows[r.View] = append(v.rows[r.View], r)
}

// computeViews evaluates every view over the folded orders; issued, when not nil, holds the
// commands a pipeline run actually emitted per order key, which the views that read individual
// commands (C4, C5's POINTS_ON_INELIGIBLE) then use instead of the canonical ones.
func computeViews(folded []*orderFold, p Policy, asOf time.Time, issued map[string][]Command) map[string][]ViewRow {
	v := &viewSet{asOf: asOf, grace: p.ReconGrace, rows: map[string][]ViewRow{}}
	for _, name := range Views {
		v.rows[name] = []ViewRow{}
	}
	confirmedRes := map[string]bool{}     // reservations the platform confirmed
	confirmedPts := map[string]int64{}    // their confirmed points (the first confirmation)
	rates := map[string]decimal.Decimal{} // value per point of each reservation (its first PointsReserved)
	for _, f := range folded {
		for _, e := range f.events {
			if c := e.RedemptionConfirmed; c != nil && !confirmedRes[c.ReservationID] {
				confirmedRes[c.ReservationID] = true
				confirmedPts[c.ReservationID] = c.Points
			}
			if r := e.PointsReserved; r != nil {
				if _, ok := rates[r.ReservationID]; !ok {
					rates[r.ReservationID] = r.ConversionRate
				}
			}
		}
	}
	for _, f := range folded {
		cancelled := cancelledDocs(f.events)
		cmds := f.commands
		if issued != nil {
			cmds = issued[f.truth.OrderID]
		}
		if f.accepted != nil {
			c1(v, f)
			c5(v, f, cmds)
			c6(v, f, cancelled, p.AmountTolerance)
			if lr := f.accepted.LoyaltyRedemption; lr != nil && confirmedRes[lr.ReservationID] {
				c6Redemption(v, f)
				c6RedemptionValue(v, f, cancelled, p.AmountTolerance, confirmedPts[lr.ReservationID], rates[lr.ReservationID])
			}
		}
		c2(v, f, cancelled)
		c4(v, f, cmds)
		refundSettlement(v, f, cancelled, p.AmountTolerance)
	}
	c3(v, folded, p.ConfirmTrigger)
	c7(v, folded, issued)
	for _, rows := range v.rows {
		sort.Slice(rows, func(i, j int) bool { return rows[i].Key() < rows[j].Key() })
	}
	return v.rows
}

func cancelledDocs(events []*schemas.Event) map[string]bool {
	out := map[string]bool{}
	for _, e := range events {
		if e.BillingDocCancelled != nil {
			out[e.BillingDocCancelled.CancelsBillingDocumentID] = true
		}
	}
	return out
}

// erpSalesOrder is what the ERP holds for one sales order: the replica with the highest
// erp_version (erp v2's ErpSalesOrderChanged; of equal versions the first seen), else the
// creation, which is version 0, OPEN, nothing rejected.
type erpSalesOrder struct {
	version int64
	status  string
	items   []schemas.ErpReplicaItem
}

// erpSalesOrders returns the order's sales orders in order of first appearance.
func erpSalesOrders(events []*schemas.Event) []*erpSalesOrder {
	var out []*erpSalesOrder
	byID := map[string]*erpSalesOrder{}
	get := func(id string) *erpSalesOrder {
		so := byID[id]
		if so == nil {
			so = &erpSalesOrder{version: -1}
			byID[id] = so
			out = append(out, so)
		}
		return so
	}
	for _, e := range events {
		switch {
		case e.ErpSalesOrderCreated != nil:
			c := e.ErpSalesOrderCreated
			if so := get(c.ErpSalesOrderID); so.version < 0 {
				so.version, so.status = 0, "OPEN"
				for _, it := range c.Items {
					so.items = append(so.items, schemas.ErpReplicaItem{ErpItem: it.ErpItem, OrderLineID: it.OrderLineID, Quantity: it.Quantity})
				}
			}
		case e.ErpSalesOrderChanged != nil:
			c := e.ErpSalesOrderChanged
			if so := get(c.ErpSalesOrderID); c.ErpVersion > so.version {
				so.version, so.status, so.items = c.ErpVersion, c.Status, c.Items
			}
		}
	}
	return out
}

// c1: orders awaiting ERP, against what the ERP holds now (erpSalesOrders).
// CANCELLED_IN_OMS_OPEN_IN_ERP (DOMAIN C1): per order line with units the OMS cancelled, the
// units the ERP still holds open — quantity − rejected_quantity over the items of sales orders
// whose status is neither REJECTED nor COMPLETED — exceed ordered − cancelled; for an order the
// OMS cancelled whole (a full-order cancellation, or every line cancelled) while a sales order is
// still OPEN, one order-level row (an empty OrderLineID) instead of line rows. Quantities are
// the facts as sent (cancelled = Σ quantity_cancelled); a line the ERP has no item for is not
// compared (the view joins the two sides). Aged from the line's (order's) latest cancellation.
func c1(v *viewSet, f *orderFold) {
	a := f.accepted
	sos := erpSalesOrders(f.events)
	row := ViewRow{View: ViewOrdersAwaitingERP, OrderID: a.OrderID, BusinessTime: a.AcceptedAt}
	cancelled := map[string]decimal.Decimal{}
	cancelledAt := map[string]time.Time{}
	var lastCancel time.Time
	fullFlag := false
	for _, e := range f.events {
		c := e.OrderLinesCancelled
		if c == nil {
			continue
		}
		fullFlag = fullFlag || c.IsFullOrder
		if c.CancelledAt.After(lastCancel) {
			lastCancel = c.CancelledAt
		}
		for _, cl := range c.Lines {
			cancelled[cl.OrderLineID] = cancelled[cl.OrderLineID].Add(cl.QuantityCancelled)
			if c.CancelledAt.After(cancelledAt[cl.OrderLineID]) {
				cancelledAt[cl.OrderLineID] = c.CancelledAt
			}
		}
	}
	full := fullFlag
	if !full && len(a.Lines) > 0 {
		full = true
		for _, ol := range a.Lines {
			if cancelled[ol.OrderLineID].LessThan(ol.Quantity) {
				full = false
			}
		}
	}
	if len(sos) == 0 {
		if !full {
			row.MismatchCode = "NOT_REPLICATED"
			v.add(row)
		}
		return
	}
	if last := sos[len(sos)-1]; len(last.items) != len(a.Lines) {
		row.MismatchCode = "LINE_COUNT_DIFF"
		v.add(row)
	}
	erpQty := map[string]decimal.Decimal{}
	erpOpen := map[string]decimal.Decimal{}
	soOpen := false
	for _, so := range sos {
		soOpen = soOpen || so.status == "OPEN"
		live := so.status != "REJECTED" && so.status != "COMPLETED"
		for _, it := range so.items {
			erpQty[it.OrderLineID] = erpQty[it.OrderLineID].Add(it.Quantity)
			if live {
				erpOpen[it.OrderLineID] = erpOpen[it.OrderLineID].Add(it.Quantity.Sub(it.RejectedQuantity))
			}
		}
	}
	for _, ol := range a.Lines {
		q, ok := erpQty[ol.OrderLineID]
		if ok && !q.Equal(ol.Quantity) {
			r := row
			r.OrderLineID, r.MismatchCode = ol.OrderLineID, "QTY_DIFF"
			v.add(r)
		}
	}
	if full && soOpen {
		r := row
		r.MismatchCode, r.BusinessTime = "CANCELLED_IN_OMS_OPEN_IN_ERP", lastCancel
		v.add(r)
		return
	}
	for _, ol := range a.Lines {
		cx := cancelled[ol.OrderLineID]
		if _, inERP := erpQty[ol.OrderLineID]; !inERP || cx.Sign() <= 0 || !erpOpen[ol.OrderLineID].GreaterThan(ol.Quantity.Sub(cx)) {
			continue
		}
		r := row
		r.OrderLineID, r.MismatchCode, r.BusinessTime = ol.OrderLineID, "CANCELLED_IN_OMS_OPEN_IN_ERP", cancelledAt[ol.OrderLineID]
		v.add(r)
	}
}

// c2: shipments not invoiced, per non-reship shipment line.
func c2(v *viewSet, f *orderFold, cancelled map[string]bool) {
	type key struct{ shipment, line string }
	billed := map[key]decimal.Decimal{}
	untransferred := map[key]bool{}
	for _, e := range f.events {
		inv := e.InvoicePosted
		if inv == nil || cancelled[inv.BillingDocumentID] {
			continue
		}
		for _, bl := range inv.Lines {
			k := key{bl.ReferenceDocument, bl.OrderLineID}
			billed[k] = billed[k].Add(bl.Quantity)
			if inv.AccountingTransferStatus != "TRANSFERRED" {
				untransferred[k] = true
			}
		}
	}
	for _, e := range f.events {
		s := e.ShipmentConfirmed
		if s == nil || s.IsReship {
			continue
		}
		shipped := map[string]decimal.Decimal{}
		var ids []string
		for _, sl := range s.Lines {
			if _, ok := shipped[sl.OrderLineID]; !ok {
				ids = append(ids, sl.OrderLineID)
			}
			shipped[sl.OrderLineID] = shipped[sl.OrderLineID].Add(sl.QuantityShipped)
		}
		for _, id := range ids {
			k := key{s.ShipmentID, id}
			b, q := billed[k], shipped[id]
			row := ViewRow{View: ViewShipmentsNotInvoiced, ShipmentID: s.ShipmentID, OrderLineID: id,
				OrderID: s.OrderID, BusinessTime: s.ShippedAt, Amount: q.Sub(b)}
			switch {
			case b.IsZero():
				row.MismatchCode = "NOT_BILLED"
			case b.LessThan(q):
				row.MismatchCode = "PARTIALLY_BILLED"
			case b.GreaterThan(q):
				row.MismatchCode = "OVER_BILLED"
			case untransferred[k]:
				row.MismatchCode = "BILLED_NOT_POSTED"
			default:
				continue
			}
			v.add(row)
		}
	}
}

// c3: redemptions pending confirmation, over every reservation seen anywhere.
//
// Which reservations should be CONFIRMED follows the policy's trigger, the same
// rule that makes their points refundable: under ORDER_ACCEPTED every reservation an accepted
// order references (ORDER_ACCEPTED_NOT_CONFIRMED when the platform neither confirmed nor
// released it, and ORDER_CANCELLED_NOT_RELEASED besides when the order was fully cancelled);
// under FIRST_SHIPMENT only once the order shipped a unit (ORDER_ACCEPTED_NOT_CONFIRMED), while
// a fully cancelled order that never shipped should have its reservation released
// (ORDER_CANCELLED_NOT_RELEASED alone).
func c3(v *viewSet, folded []*orderFold, trigger string) {
	type reservation struct {
		reserved *schemas.PointsReserved
		confirms []*schemas.RedemptionConfirmed
		released bool
		orders   []*orderFold // whose OrderAccepted references it
	}
	res := map[string]*reservation{}
	get := func(id string) *reservation {
		r := res[id]
		if r == nil {
			r = &reservation{}
			res[id] = r
		}
		return r
	}
	accepted := map[string]*orderFold{}
	for _, f := range folded {
		if f.accepted != nil {
			accepted[f.accepted.OrderID] = f
			if lr := f.accepted.LoyaltyRedemption; lr != nil {
				r := get(lr.ReservationID)
				r.orders = append(r.orders, f)
			}
		}
		for _, e := range f.events {
			switch {
			case e.PointsReserved != nil:
				get(e.PointsReserved.ReservationID).reserved = e.PointsReserved
			case e.RedemptionConfirmed != nil:
				r := get(e.RedemptionConfirmed.ReservationID)
				r.confirms = append(r.confirms, e.RedemptionConfirmed)
			case e.RedemptionReleased != nil:
				get(e.RedemptionReleased.ReservationID).released = true
			}
		}
	}
	for id, r := range res {
		var reservedAt time.Time
		if r.reserved != nil {
			reservedAt = r.reserved.ReservedAt
		}
		at := func(fallback time.Time) time.Time {
			if r.reserved != nil {
				return reservedAt
			}
			return fallback
		}
		for _, f := range r.orders {
			a := f.accepted
			row := ViewRow{View: ViewRedemptionsPending, ReservationID: id, OrderID: a.OrderID, BusinessTime: at(a.AcceptedAt)}
			if len(r.confirms) == 0 && !r.released {
				due := trigger != ConfirmAtFirstShipment || f.shippedAny
				if due {
					row.MismatchCode = "ORDER_ACCEPTED_NOT_CONFIRMED"
					v.add(row)
				}
				if f.truth.FullyCancelled && (trigger != ConfirmAtFirstShipment || !due) {
					row.MismatchCode = "ORDER_CANCELLED_NOT_RELEASED"
					v.add(row)
				}
			}
			if len(r.confirms) > 0 {
				var confirmed int64
				for _, c := range r.confirms {
					confirmed += c.Points
				}
				if confirmed != a.LoyaltyRedemption.Points {
					row.MismatchCode = "POINTS_DIFF"
					row.Points = confirmed - a.LoyaltyRedemption.Points
					v.add(row)
				}
			}
		}
		for _, c := range r.confirms {
			if accepted[c.OrderID] == nil {
				v.add(ViewRow{View: ViewRedemptionsPending, ReservationID: id, OrderID: c.OrderID,
					MismatchCode: "CONFIRMED_WITHOUT_ORDER", BusinessTime: at(c.ConfirmedAt)})
			}
		}
		if r.reserved != nil && len(r.confirms) == 0 && !r.released && len(r.orders) == 0 &&
			r.reserved.ExpiresAt.Before(v.asOf) {
			orderID := ""
			if r.reserved.OrderID != nil {
				orderID = *r.reserved.OrderID
			}
			v.add(ViewRow{View: ViewRedemptionsPending, ReservationID: id, OrderID: orderID,
				MismatchCode: "OPEN_PAST_TTL", BusinessTime: reservedAt})
		}
	}
}

// c4: returns not reflected in loyalty, per accepted return line.
//
// A return's findings come from the reversal and refund commands that carry its share (source
// ref = the return id: its own commands, and corrections for late events, DESIGN.md invariant
// 13) and the postings answering them by request id, summed per (return, code):
// REVERSAL_MISSING and REFUND_MISSING the requested points, REVERSAL_SHORT requested − posted,
// SHORTFALL the shortfall posted, REVERSED_AFTER_ACTIVATION the points taken from the ACTIVE
// balance (PointsReversed.from_active: the lock had ended, the member may have spent them).
// Commands carry no per-line share, so each finding is allocated to the return's lines it
// concerns (allocateToReturnLines).
func c4(v *viewSet, f *orderFold, commands []Command) {
	reversedPts := map[string]int64{}
	answers := map[string]int{}
	shortfall := map[string]int64{}
	fromActive := map[string]int64{}
	refunded := map[string]bool{}
	for _, e := range f.events {
		switch {
		case e.PointsReversed != nil:
			r := e.PointsReversed
			answers[r.RequestID]++
			reversedPts[r.RequestID] += r.Points
			shortfall[r.RequestID] += r.ShortfallPoints
			fromActive[r.RequestID] += r.FromActive
		case e.RedemptionRefunded != nil && e.RedemptionRefunded.RequestID != nil:
			refunded[*e.RedemptionRefunded.RequestID] = true
		}
	}
	returns := map[string]*returnLines{}
	for _, e := range f.events {
		if r := e.ReturnReceived; r != nil {
			rl := returns[r.ReturnID]
			if rl == nil {
				rl = &returnLines{receivedAt: r.ReceivedAt, qty: map[string]decimal.Decimal{}}
				returns[r.ReturnID] = rl
			}
			if r.ReceivedAt.Before(rl.receivedAt) {
				rl.receivedAt = r.ReceivedAt
			}
			for _, l := range r.Lines {
				rl.qty[l.OrderLineID] = rl.qty[l.OrderLineID].Add(l.QuantityAccepted)
			}
		}
	}
	type key struct{ ret, code string }
	found := map[key]int64{}
	var order []key
	add := func(c Command, code string, pts int64) {
		k := key{c.SourceRefID, code}
		if _, ok := found[k]; !ok {
			order = append(order, k)
		}
		found[k] += pts
	}
	for _, c := range commands {
		if returns[c.SourceRefID] == nil {
			continue
		}
		switch c.Type {
		case schemas.TypeReversalRequested:
			switch {
			case answers[c.RequestID] == 0:
				add(c, "REVERSAL_MISSING", c.Points)
			case reversedPts[c.RequestID] < c.Points:
				add(c, "REVERSAL_SHORT", c.Points-reversedPts[c.RequestID])
			}
			if shortfall[c.RequestID] > 0 {
				add(c, "SHORTFALL", shortfall[c.RequestID])
			}
			if fromActive[c.RequestID] > 0 {
				add(c, "REVERSED_AFTER_ACTIVATION", fromActive[c.RequestID])
			}
		case schemas.TypeRedemptionRefundRequested:
			if !refunded[c.RequestID] {
				add(c, "REFUND_MISSING", c.Points)
			}
		}
	}
	for _, k := range order {
		rl := returns[k.ret]
		for _, share := range allocateToReturnLines(f, rl, k.code, found[k]) {
			v.add(ViewRow{View: ViewReturnsNotInLoyalty, ReturnID: k.ret, OrderLineID: share.line, OrderID: f.truth.OrderID,
				MismatchCode: k.code, BusinessTime: rl.receivedAt, Points: share.points})
		}
	}
}

// returnLines is one return's accepted quantity per order line.
type returnLines struct {
	receivedAt time.Time
	qty        map[string]decimal.Decimal
}

type lineShare struct {
	line   string
	points int64
}

// allocateToReturnLines splits a return's finding of pts points over the return's lines it
// concerns, in order_line_id order. Weights: for REFUND_MISSING the line's redeemed points ×
// units returned; for the reversal codes the value of the returned units, round_half_even(N(l) ×
// q / q_ord, 2), and 0 for a gift card (E(l) = 0: it never earned) or a quantity that is not a
// whole number of at most the ordered units. share = floor(pts × w / Σw); the remainder goes to
// the heaviest line (ties: the smallest id), as DOMAIN B.3 places a residual. Lines of weight 0
// get no share and no row; when every weight is 0 every line weighs 1.
func allocateToReturnLines(f *orderFold, rl *returnLines, code string, pts int64) []lineShare {
	ids := make([]string, 0, len(rl.qty))
	for id := range rl.qty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	weights := make([]int64, len(ids))
	var total int64
	for i, id := range ids {
		q := rl.qty[id]
		var ol *schemas.OrderLine
		if f.accepted != nil {
			for n := range f.accepted.Lines {
				if f.accepted.Lines[n].OrderLineID == id {
					ol = &f.accepted.Lines[n]
				}
			}
		}
		if ol == nil {
			continue
		}
		if code == "REFUND_MISSING" {
			if ol.RedemptionAlloc != nil {
				weights[i] = ol.RedemptionAlloc.Points * q.Shift(3).IntPart()
			}
		} else if !ol.IsGiftCard && q.IsInteger() && !q.IsNegative() && ol.Quantity.IsInteger() && ol.Quantity.IsPositive() &&
			!q.GreaterThan(ol.Quantity) && ol.Quantity.LessThanOrEqual(decimal.NewFromInt(1000)) {
			value := new(big.Rat).Mul(ol.LineNet.Rat(), q.Rat())
			value.Quo(value, ol.Quantity.Rat())
			weights[i] = roundHalfEven2(value).Shift(4).IntPart()
		}
		total += weights[i]
	}
	if total == 0 {
		for i := range weights {
			weights[i] = 1
		}
		total = int64(len(weights))
	}
	out := make([]lineShare, 0, len(ids))
	top, given := -1, int64(0)
	for i, id := range ids {
		if weights[i] == 0 {
			continue
		}
		sh := new(big.Int).Mul(big.NewInt(pts), big.NewInt(weights[i]))
		sh.Quo(sh, big.NewInt(total))
		out = append(out, lineShare{line: id, points: sh.Int64()})
		given += sh.Int64()
		if top < 0 || weights[i] > weights[top] {
			top = i
		}
	}
	for n := range out {
		if out[n].line == ids[top] {
			out[n].points += pts - given
		}
	}
	return out
}

// c5: accrual vs fulfilment, per member order. Besides P against posted (UNDER/OVER_ACCRUED,
// MEMBER_ORDER_NO_ACCRUAL) and the multiplier (WRONG_MULTIPLIER), two checks of the postings:
//   - ACCRUED_BEFORE_SHIPMENT: accruals posted (posted_at, to the second as ClickHouse keeps it)
//     before the order's first non-reship shipment, or when it has none; points = Σ their points.
//   - POINTS_ON_INELIGIBLE: accruals whose basis_amount exceeds the basis of the AccrualRequested
//     they answer (request id): the platform's basis holds value the pipeline excluded as
//     ineligible (E(l) = 0: gift cards, excluded SKUs, fees); points = Σ (posted − requested).
//
// Points: ACCRUED_BEFORE_SHIPMENT and POINTS_ON_INELIGIBLE as above, every other code posted − P.
func c5(v *viewSet, f *orderFold, commands []Command) {
	t := f.truth
	if t.MemberID == "" {
		return
	}
	posted := t.PostedNet()
	postedAny := false
	for _, e := range f.events {
		postedAny = postedAny || e.PointsAccrualPosted != nil
	}
	// an order that nets to nothing is still checked when the platform posted to it: an accrual
	// posted too early or on ineligible value is a fault even if a full return reversed it
	if t.EntitledPoints <= 0 && posted == 0 && !postedAny {
		return
	}
	requested := map[string]Command{}
	for _, c := range commands {
		if c.Type == schemas.TypeAccrualRequested {
			requested[c.RequestID] = c
		}
	}
	var firstShip time.Time
	for _, e := range f.events {
		if s := e.ShipmentConfirmed; s != nil && !s.IsReship && (firstShip.IsZero() || s.ShippedAt.Before(firstShip)) {
			firstShip = s.ShippedAt
		}
	}
	at := t.AcceptedAt
	accruals := 0
	wrong := false
	var early, earlyPts, ineligible, ineligiblePts int64
	for _, e := range f.events {
		switch {
		case e.ShipmentConfirmed != nil:
			at = e.OccurredAt
		case e.ReturnReceived != nil:
			at = e.OccurredAt
		case e.PointsAccrualPosted != nil:
			a := e.PointsAccrualPosted
			accruals++
			if !a.TierMultiplier.Equal(t.TierMultiplier) {
				wrong = true
			}
			if firstShip.IsZero() || a.PostedAt.Truncate(time.Second).Before(firstShip.Truncate(time.Second)) {
				early++
				earlyPts += a.Points
			}
			if c, ok := requested[a.RequestID]; ok && a.BasisAmount.GreaterThan(c.BasisAmount) {
				ineligible++
				ineligiblePts += a.Points - c.Points
			}
		}
	}
	row := ViewRow{View: ViewAccrualVsFulfilment, OrderID: t.OrderID, BusinessTime: at, Points: posted - t.EntitledPoints}
	switch {
	case t.EntitledPoints > 0 && accruals == 0:
		row.MismatchCode = "MEMBER_ORDER_NO_ACCRUAL"
		v.add(row)
	case posted < t.EntitledPoints && accruals > 0:
		row.MismatchCode = "UNDER_ACCRUED"
		v.add(row)
	case posted > t.EntitledPoints:
		row.MismatchCode = "OVER_ACCRUED"
		v.add(row)
	}
	if wrong {
		row.MismatchCode = "WRONG_MULTIPLIER"
		v.add(row)
	}
	if early > 0 {
		r := row
		r.MismatchCode, r.Points = "ACCRUED_BEFORE_SHIPMENT", earlyPts
		v.add(r)
	}
	if ineligible > 0 {
		r := row
		r.MismatchCode, r.Points = "POINTS_ON_INELIGIBLE", ineligiblePts
		v.add(r)
	}
}

// c6: the three-way line match OMS ↔ ERP: quantities (SHIPPED_NOT_INVOICED, INVOICED_NOT_SHIPPED
// or, when the invoiced quantity exceeds ordered − cancelled on a line with cancelled units and
// no duplicate billing explains the excess, INVOICED_CANCELLED_LINE; RETURNED_NOT_CREDITED, CREDITED_NOT_RETURNED), DUPLICATE_BILLING (a
// reference document's line billed by two live invoices), CURRENCY_DIFF (a live document in
// another currency than the order's), AMOUNT_DIFF where quantities and currencies agree, and
// TAX_DIFF where the nets agree as well.
func c6(v *viewSet, f *orderFold, cancelled map[string]bool, tolerance decimal.Decimal) {
	latest := map[string]time.Time{}
	touch := func(id string, t time.Time) {
		if t.After(latest[id]) {
			latest[id] = t
		}
	}
	extra := map[string]*LineTruth{}             // ERP lines the order does not have
	billingLines := map[string]int64{}           // live invoice and credit memo lines per order line
	cancelledQty := map[string]decimal.Decimal{} // Σ quantity_cancelled per line, as stated
	type ref struct{ doc, line string }
	invoicesOf := map[ref]map[string]bool{} // live invoices per (reference document, line)
	foreign := map[string]bool{}            // lines a live document bills in another currency
	erpTax := map[string]decimal.Decimal{}  // Σ live invoice line tax − Σ live credit memo line tax
	for _, e := range f.events {
		switch {
		case e.OrderLinesCancelled != nil:
			for _, l := range e.OrderLinesCancelled.Lines {
				cancelledQty[l.OrderLineID] = cancelledQty[l.OrderLineID].Add(l.QuantityCancelled)
			}
		case e.ShipmentConfirmed != nil && !e.ShipmentConfirmed.IsReship:
			for _, l := range e.ShipmentConfirmed.Lines {
				touch(l.OrderLineID, e.OccurredAt)
			}
		case e.ReturnReceived != nil:
			for _, l := range e.ReturnReceived.Lines {
				touch(l.OrderLineID, e.OccurredAt)
			}
		case e.InvoicePosted != nil && !cancelled[e.InvoicePosted.BillingDocumentID],
			e.CreditMemoPosted != nil && !cancelled[e.CreditMemoPosted.BillingDocumentID]:
			doc, credit := e.InvoicePosted, false
			if doc == nil {
				doc, credit = e.CreditMemoPosted, true
			}
			for _, bl := range doc.Lines {
				touch(bl.OrderLineID, e.OccurredAt)
				billingLines[bl.OrderLineID]++
				if credit {
					erpTax[bl.OrderLineID] = erpTax[bl.OrderLineID].Sub(bl.Tax)
				} else {
					erpTax[bl.OrderLineID] = erpTax[bl.OrderLineID].Add(bl.Tax)
				}
				if doc.Currency != f.accepted.Currency {
					foreign[bl.OrderLineID] = true
				}
				if !credit {
					k := ref{bl.ReferenceDocument, bl.OrderLineID}
					if invoicesOf[k] == nil {
						invoicesOf[k] = map[string]bool{}
					}
					invoicesOf[k][doc.BillingDocumentID] = true
				}
				if f.byID[bl.OrderLineID] != nil {
					continue
				}
				x := extra[bl.OrderLineID]
				if x == nil {
					x = &LineTruth{OrderLineID: bl.OrderLineID}
					extra[bl.OrderLineID] = x
				}
				if credit {
					x.Credited, x.CreditedNet = x.Credited.Add(bl.Quantity), x.CreditedNet.Add(bl.Net)
				} else {
					x.Invoiced, x.InvoicedNet = x.Invoiced.Add(bl.Quantity), x.InvoicedNet.Add(bl.Net)
				}
			}
		}
	}
	lines := append([]*LineTruth{}, f.truth.Lines...)
	for _, x := range extra {
		lines = append(lines, x)
	}
	for _, l := range lines {
		at := latest[l.OrderLineID]
		if at.IsZero() {
			at = f.accepted.AcceptedAt
		}
		row := ViewRow{View: ViewThreeWayLine, OrderID: f.accepted.OrderID, OrderLineID: l.OrderLineID, BusinessTime: at}
		emit := func(code string) {
			r := row
			r.MismatchCode = code
			v.add(r)
		}
		duplicate := false
		for k, docs := range invoicesOf {
			duplicate = duplicate || (k.line == l.OrderLineID && len(docs) > 1)
		}
		switch cx := cancelledQty[l.OrderLineID]; {
		case l.Shipped.GreaterThan(l.Invoiced):
			emit("SHIPPED_NOT_INVOICED")
		case l.Invoiced.GreaterThan(l.Shipped) && !duplicate && cx.IsPositive() && l.Invoiced.GreaterThan(l.Ordered.Sub(cx)):
			emit("INVOICED_CANCELLED_LINE") // the ERP billed units the OMS cancelled
		case l.Invoiced.GreaterThan(l.Shipped):
			emit("INVOICED_NOT_SHIPPED")
		}
		switch {
		case l.Returned.GreaterThan(l.Credited):
			emit("RETURNED_NOT_CREDITED")
		case l.Credited.GreaterThan(l.Returned):
			emit("CREDITED_NOT_RETURNED")
		}
		if duplicate {
			emit("DUPLICATE_BILLING") // one shipment line billed by two live invoices
		}
		if foreign[l.OrderLineID] {
			emit("CURRENCY_DIFF") // billed in another currency than the order's
		}
		// AMOUNT_DIFF only when the quantities and currencies agree: a quantity or currency code
		// already explains the money. The tolerance is per rounded billing line behind the ERP
		// net (at least one).
		erpNet := l.InvoicedNet.Sub(l.CreditedNet)
		allowed := tolerance.Mul(decimal.NewFromInt(max(billingLines[l.OrderLineID], 1)))
		comparable := l.Shipped.Equal(l.Invoiced) && l.Returned.Equal(l.Credited) && !foreign[l.OrderLineID]
		diff := erpNet.Sub(l.OMSNetValue)
		if comparable && diff.Abs().GreaterThan(allowed) {
			r := row
			r.MismatchCode, r.Amount = "AMOUNT_DIFF", diff
			v.add(r)
		}
		// TAX_DIFF where the nets agree too (a net difference explains the tax): the ERP's tax
		// (Σ per billing line, each rounded) against the OMS tax of the net shipped value at the
		// line's rate (Σ of its tax lines' rates), rounded once HALF_EVEN — ½ minor unit per
		// rounded amount on either side (DOMAIN B.3): tolerance × (billing lines + 1).
		if comparable && !diff.Abs().GreaterThan(allowed) {
			omsTax := l.OMSNetValue.Mul(taxRate(f, l.OrderLineID)).RoundBank(2)
			taxAllowed := tolerance.Mul(decimal.NewFromInt(billingLines[l.OrderLineID] + 1))
			if d := erpTax[l.OrderLineID].Sub(omsTax); d.Abs().GreaterThan(taxAllowed) {
				r := row
				r.MismatchCode, r.Amount = "TAX_DIFF", d
				v.add(r)
			}
		}
	}
}

// taxRate is the order line's tax rate: the sum of its tax lines' rates (0 for a line the order
// does not have).
func taxRate(f *orderFold, lineID string) decimal.Decimal {
	rate := decimal.Zero
	for _, ol := range f.accepted.Lines {
		if ol.OrderLineID == lineID {
			for _, tl := range ol.TaxLines {
				rate = rate.Add(tl.Rate)
			}
		}
	}
	return rate
}

// refundSettlement: per return with a refund (the first ReturnReceived of each return id), the
// money refunded to the customer (merchandise + tax + shipping − return fee) against the gross
// of the live credit memos naming the return: REFUND_NOT_CREDITED without one,
// REFUND_AMOUNT_DIFF when |refunded − credited| > tolerance × the memos' lines (at least one).
// Amount: refunded − credited.
func refundSettlement(v *viewSet, f *orderFold, cancelled map[string]bool, tolerance decimal.Decimal) {
	type memos struct {
		gross decimal.Decimal
		lines int64
		any   bool
	}
	credited := map[string]*memos{}
	for _, e := range f.events {
		cm := e.CreditMemoPosted
		if cm == nil || cm.ReturnID == nil || *cm.ReturnID == "" || cancelled[cm.BillingDocumentID] {
			continue
		}
		m := credited[*cm.ReturnID]
		if m == nil {
			m = &memos{}
			credited[*cm.ReturnID] = m
		}
		m.gross, m.lines, m.any = m.gross.Add(cm.Gross), m.lines+int64(len(cm.Lines)), true
	}
	seen := map[string]bool{}
	for _, e := range f.events {
		r := e.ReturnReceived
		if r == nil || r.Refund == nil || seen[r.ReturnID] {
			continue
		}
		seen[r.ReturnID] = true
		refunded := r.Refund.MerchandiseNet.Add(r.Refund.Tax).Add(r.Refund.ShippingRefund).Sub(r.Refund.ReturnFee)
		row := ViewRow{View: ViewRefundSettlement, ReturnID: r.ReturnID, OrderID: r.OrderID, BusinessTime: r.ReceivedAt}
		m := credited[r.ReturnID]
		switch {
		case m == nil:
			row.MismatchCode, row.Amount = "REFUND_NOT_CREDITED", refunded
		case refunded.Sub(m.gross).Abs().GreaterThan(tolerance.Mul(decimal.NewFromInt(max(m.lines, 1)))):
			row.MismatchCode, row.Amount = "REFUND_AMOUNT_DIFF", refunded.Sub(m.gross)
		default:
			continue
		}
		v.add(row)
	}
}

// c6Redemption: C6 POINTS_DIFF, one order-level row (order_line_id ""), for an order whose
// redemption the platform confirmed: the redeemed points it refunded (Σ RedemptionRefunded)
// against the share the OMS cancelled and returned, DOMAIN B.1's cumulative refundable
// RR(l) = floor(alloc_pts(l) × min(q_cxl(l) + q_ret(l), q_ord(l)) / q_ord(l)) summed over the
// lines, from the stated quantities (Σ quantity_cancelled, Σ quantity_accepted). Points:
// refunded − RR. Aged from the latest of acceptance, cancellations, returns and refunds.
func c6Redemption(v *viewSet, f *orderFold) {
	moved := map[string]decimal.Decimal{} // q_cxl + q_ret per line
	at := f.accepted.AcceptedAt
	var refunded int64
	for _, e := range f.events {
		switch {
		case e.OrderLinesCancelled != nil:
			for _, l := range e.OrderLinesCancelled.Lines {
				moved[l.OrderLineID] = moved[l.OrderLineID].Add(l.QuantityCancelled)
			}
			at = maxTime(at, e.OccurredAt)
		case e.ReturnReceived != nil:
			for _, l := range e.ReturnReceived.Lines {
				moved[l.OrderLineID] = moved[l.OrderLineID].Add(l.QuantityAccepted)
			}
			at = maxTime(at, e.OccurredAt)
		case e.RedemptionRefunded != nil:
			refunded += e.RedemptionRefunded.Points
			at = maxTime(at, e.RedemptionRefunded.RefundedAt)
		}
	}
	var expected int64
	for _, ol := range f.accepted.Lines {
		if ol.RedemptionAlloc == nil || ol.RedemptionAlloc.Points <= 0 || !ol.Quantity.IsPositive() {
			continue
		}
		q := decimal.Min(moved[ol.OrderLineID], ol.Quantity)
		// in thousandths, as the view computes it (integers: no Decimal division)
		rr := new(big.Int).Mul(big.NewInt(ol.RedemptionAlloc.Points), big.NewInt(q.Shift(3).IntPart()))
		rr.Quo(rr, big.NewInt(ol.Quantity.Shift(3).IntPart()))
		expected += rr.Int64()
	}
	if refunded != expected {
		v.add(ViewRow{View: ViewThreeWayLine, OrderID: f.accepted.OrderID, MismatchCode: "POINTS_DIFF",
			Points: refunded - expected, BusinessTime: at})
	}
}

// c6RedemptionValue: C6 REDEMPTION_VALUE_DIFF (DOMAIN C6: ERP discount/tender vs loyalty
// confirmed value), one order-level row (an empty OrderLineID) per order whose redemption the platform
// confirmed. ERP side: Σ redemption_value of the live invoices − Σ of the live credit memos (erp
// v2; an order with a live document that carries none — a v1 writer — is not compared: its ERP
// side is unknown). Loyalty side: (confirmed points − Σ RedemptionRefunded points) × the
// reservation's conversion rate (value per point; a reservation without one is not compared).
// Compared only once the order's quantities are settled — on every OMS line, invoiced −
// credited (live documents) = ordered − cancelled − returned (accepted) — so a value the ERP has
// simply not billed yet is not reported (C6's quantity codes report that). The allowance is
// amount_tolerance × (live billing lines + 1) (½ minor unit per cumulative rounding of a line's
// share, B.3, and one for the allocation) + one point's value per OMS line with cancelled or
// returned units (the platform refunds whole points, B.1's floor). amount = ERP − loyalty, at
// the views' 4 places (truncated, as ClickHouse converts the 6-place product); aged from the
// latest event of the three sides.
func c6RedemptionValue(v *viewSet, f *orderFold, cancelled map[string]bool, tol decimal.Decimal, confirmedPts int64, rate decimal.Decimal) {
	a := f.accepted
	if !rate.IsPositive() {
		return
	}
	type qty struct{ cancelled, returned, invoiced, credited decimal.Decimal }
	lines := map[string]*qty{}
	for _, ol := range a.Lines {
		lines[ol.OrderLineID] = &qty{}
	}
	at := a.AcceptedAt
	var erp decimal.Decimal
	var refunded int64
	billingLines := 0
	for _, e := range f.events {
		switch {
		case e.OrderLinesCancelled != nil:
			for _, l := range e.OrderLinesCancelled.Lines {
				if q := lines[l.OrderLineID]; q != nil {
					q.cancelled = q.cancelled.Add(l.QuantityCancelled)
				}
			}
			at = maxTime(at, e.OccurredAt)
		case e.ReturnReceived != nil:
			for _, l := range e.ReturnReceived.Lines {
				if q := lines[l.OrderLineID]; q != nil {
					q.returned = q.returned.Add(l.QuantityAccepted)
				}
			}
			at = maxTime(at, e.OccurredAt)
		case e.ShipmentConfirmed != nil && !e.ShipmentConfirmed.IsReship:
			at = maxTime(at, e.OccurredAt)
		case e.RedemptionRefunded != nil:
			refunded += e.RedemptionRefunded.Points
			at = maxTime(at, e.RedemptionRefunded.RefundedAt)
		case e.RedemptionConfirmed != nil:
			at = maxTime(at, e.RedemptionConfirmed.ConfirmedAt)
		case e.InvoicePosted != nil || e.CreditMemoPosted != nil:
			d, invoice := e.InvoicePosted, true
			if d == nil {
				d, invoice = e.CreditMemoPosted, false
			}
			if cancelled[d.BillingDocumentID] {
				continue
			}
			if d.RedemptionValue == nil {
				return // the ERP side is unknown
			}
			at = maxTime(at, e.OccurredAt)
			billingLines += len(d.Lines)
			for _, bl := range d.Lines {
				q := lines[bl.OrderLineID]
				switch {
				case q == nil:
				case invoice:
					q.invoiced = q.invoiced.Add(bl.Quantity)
				default:
					q.credited = q.credited.Add(bl.Quantity)
				}
			}
			if invoice {
				erp = erp.Add(*d.RedemptionValue)
			} else {
				erp = erp.Sub(*d.RedemptionValue)
			}
		}
	}
	moved := 0
	for _, ol := range a.Lines {
		q := lines[ol.OrderLineID]
		if !q.invoiced.Sub(q.credited).Equal(ol.Quantity.Sub(q.cancelled).Sub(q.returned)) {
			return // not settled
		}
		if q.cancelled.Add(q.returned).IsPositive() {
			moved++
		}
	}
	loyalty := decimal.NewFromInt(confirmedPts - refunded).Mul(rate)
	allowance := tol.Mul(decimal.NewFromInt(int64(billingLines + 1))).Add(rate.Mul(decimal.NewFromInt(int64(moved))))
	if diff := erp.Sub(loyalty); diff.Abs().GreaterThan(allowance) {
		v.add(ViewRow{View: ViewThreeWayLine, OrderID: a.OrderID, MismatchCode: "REDEMPTION_VALUE_DIFF",
			Amount: diff.Truncate(4), BusinessTime: at})
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
