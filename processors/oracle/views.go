package oracle

import (
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
)

// Views lists the view names in C1…C6 order.
var Views = []string{
	ViewOrdersAwaitingERP, ViewShipmentsNotInvoiced, ViewRedemptionsPending,
	ViewReturnsNotInLoyalty, ViewAccrualVsFulfilment, ViewThreeWayLine,
}

// ViewRow is one expected row of a reconciliation view. Only the business keys of its view are
// set: C1 and C6 (OrderID, OrderLineID), C2 (ShipmentID, OrderLineID), C3 (ReservationID,
// OrderID), C4 (ReturnID, OrderID), C5 (OrderID). OrderLineID is "" for order-level C1 codes.
type ViewRow struct {
	View          string
	OrderID       string
	OrderLineID   string
	ShipmentID    string
	ReturnID      string
	ReservationID string
	MismatchCode  string
	BusinessTime  time.Time       // the event time the row's age is measured from
	Points        int64           // C4: requested − posted; C5: posted − entitled
	Amount        decimal.Decimal // C2: shipped − billed qty; C6 AMOUNT_DIFF: ERP net − OMS net
}

// Keys are the row's two business keys in the view's column order (the second is "" for C5).
func (r ViewRow) Keys() (string, string) {
	switch r.View {
	case ViewShipmentsNotInvoiced:
		return r.ShipmentID, r.OrderLineID
	case ViewRedemptionsPending:
		return r.ReservationID, r.OrderID
	case ViewReturnsNotInLoyalty:
		return r.ReturnID, r.OrderID
	case ViewAccrualVsFulfilment:
		return r.OrderID, ""
	}
	return r.OrderID, r.OrderLineID
}

// Key identifies the row for diffing: view|key1|key2|mismatch_code.
func (r ViewRow) Key() string {
	a, b := r.Keys()
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
// commands a pipeline run actually emitted per order key, which C4 (the one view that reads
// individual commands) then uses instead of the canonical ones.
func computeViews(folded []*orderFold, p Policy, asOf time.Time, issued map[string][]Command) map[string][]ViewRow {
	v := &viewSet{asOf: asOf, grace: p.ReconGrace, rows: map[string][]ViewRow{}}
	for _, name := range Views {
		v.rows[name] = []ViewRow{}
	}
	for _, f := range folded {
		cancelled := cancelledDocs(f.events)
		if f.accepted != nil {
			c1(v, f)
			c5(v, f)
			c6(v, f, cancelled, p.AmountTolerance)
		}
		c2(v, f, cancelled)
		cmds := f.commands
		if issued != nil {
			cmds = issued[f.truth.OrderID]
		}
		c4(v, f, cmds)
	}
	c3(v, folded, p.ConfirmTrigger)
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

// c1: orders awaiting ERP. The latest ErpSalesOrderCreated (canonical order) is the ERP's replica.
func c1(v *viewSet, f *orderFold) {
	a := f.accepted
	var erp *schemas.ErpSalesOrderCreated
	for _, e := range f.events {
		if e.ErpSalesOrderCreated != nil {
			erp = e.ErpSalesOrderCreated
		}
	}
	row := ViewRow{View: ViewOrdersAwaitingERP, OrderID: a.OrderID, BusinessTime: a.AcceptedAt}
	if erp == nil {
		if !f.truth.FullyCancelled {
			row.MismatchCode = "NOT_REPLICATED"
			v.add(row)
		}
		return
	}
	if len(erp.Items) != len(a.Lines) {
		row.MismatchCode = "LINE_COUNT_DIFF"
		v.add(row)
	}
	erpQty := map[string]decimal.Decimal{}
	for _, it := range erp.Items {
		erpQty[it.OrderLineID] = erpQty[it.OrderLineID].Add(it.Quantity)
	}
	for _, ol := range a.Lines {
		q, ok := erpQty[ol.OrderLineID]
		if ok && !q.Equal(ol.Quantity) {
			r := row
			r.OrderLineID, r.MismatchCode = ol.OrderLineID, "QTY_DIFF"
			v.add(r)
		}
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

// c4: returns not reflected in loyalty, per (return, code), from the reversal and refund
// commands that carry a return's share (source ref = the return id: its own commands, and
// corrections for late events, DESIGN.md invariant 13) and the postings answering them by
// request id. Points are summed per (return, code) over the commands with that code:
// REVERSAL_MISSING and REFUND_MISSING the requested points, REVERSAL_SHORT requested − posted,
// SHORTFALL the shortfall posted.
func c4(v *viewSet, f *orderFold, commands []Command) {
	reversedPts := map[string]int64{}
	answers := map[string]int{}
	shortfall := map[string]int64{}
	refunded := map[string]bool{}
	for _, e := range f.events {
		switch {
		case e.PointsReversed != nil:
			r := e.PointsReversed
			answers[r.RequestID]++
			reversedPts[r.RequestID] += r.Points
			shortfall[r.RequestID] += r.ShortfallPoints
		case e.RedemptionRefunded != nil && e.RedemptionRefunded.RequestID != nil:
			refunded[*e.RedemptionRefunded.RequestID] = true
		}
	}
	receivedAt := map[string]time.Time{}
	for _, e := range f.events {
		if r := e.ReturnReceived; r != nil {
			if at, ok := receivedAt[r.ReturnID]; !ok || r.ReceivedAt.Before(at) {
				receivedAt[r.ReturnID] = r.ReceivedAt
			}
		}
	}
	type key struct{ ret, code string }
	rows := map[key]*ViewRow{}
	var order []key
	add := func(c Command, code string, pts int64) {
		k := key{c.SourceRefID, code}
		r := rows[k]
		if r == nil {
			r = &ViewRow{View: ViewReturnsNotInLoyalty, ReturnID: c.SourceRefID, OrderID: c.OrderID, MismatchCode: code, BusinessTime: receivedAt[c.SourceRefID]}
			rows[k] = r
			order = append(order, k)
		}
		r.Points += pts
	}
	for _, c := range commands {
		if _, isReturn := receivedAt[c.SourceRefID]; !isReturn {
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
		case schemas.TypeRedemptionRefundRequested:
			if !refunded[c.RequestID] {
				add(c, "REFUND_MISSING", c.Points)
			}
		}
	}
	for _, k := range order {
		v.add(*rows[k])
	}
}

// c5: accrual vs fulfilment, per member order.
func c5(v *viewSet, f *orderFold) {
	t := f.truth
	if t.MemberID == "" {
		return
	}
	posted := t.PostedNet()
	if t.EntitledPoints <= 0 && posted == 0 {
		return
	}
	at := t.AcceptedAt
	accruals := 0
	wrong := false
	for _, e := range f.events {
		switch {
		case e.ShipmentConfirmed != nil:
			at = e.OccurredAt
		case e.ReturnReceived != nil:
			at = e.OccurredAt
		case e.PointsAccrualPosted != nil:
			accruals++
			if !e.PointsAccrualPosted.TierMultiplier.Equal(t.TierMultiplier) {
				wrong = true
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
}

// c6: the three-way line match OMS ↔ ERP.
func c6(v *viewSet, f *orderFold, cancelled map[string]bool, tolerance decimal.Decimal) {
	latest := map[string]time.Time{}
	touch := func(id string, t time.Time) {
		if t.After(latest[id]) {
			latest[id] = t
		}
	}
	extra := map[string]*LineTruth{} // ERP lines the order does not have
	billingLines := map[string]int64{} // live invoice and credit memo lines per order line
	for _, e := range f.events {
		switch {
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
		switch {
		case l.Shipped.GreaterThan(l.Invoiced):
			emit("SHIPPED_NOT_INVOICED")
		case l.Invoiced.GreaterThan(l.Shipped):
			emit("INVOICED_NOT_SHIPPED")
		}
		switch {
		case l.Returned.GreaterThan(l.Credited):
			emit("RETURNED_NOT_CREDITED")
		case l.Credited.GreaterThan(l.Returned):
			emit("CREDITED_NOT_RETURNED")
		}
		// AMOUNT_DIFF only when the quantities agree: a quantity code already explains the money.
		// The tolerance is per rounded billing line behind the ERP net (at least one).
		erpNet := l.InvoicedNet.Sub(l.CreditedNet)
		allowed := tolerance.Mul(decimal.NewFromInt(max(billingLines[l.OrderLineID], 1)))
		if diff := erpNet.Sub(l.OMSNetValue); l.Shipped.Equal(l.Invoiced) && l.Returned.Equal(l.Credited) && diff.Abs().GreaterThan(allowed) {
			row.Amount = diff
			emit("AMOUNT_DIFF")
		}
	}
}
