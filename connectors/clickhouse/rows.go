package clickhouse

import (
	"fmt"
	"math/big"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/shopspring/decimal"
)

// Source locates the Kafka record a row came from.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// FactVersion is the version of a row from an input topic: the first record of a business key
// wins (2^63 − offset), as in the ledger, where a later record re-using an id is a duplicate or a
// conflict.
func FactVersion(offset int64) uint64 { return 1<<63 - uint64(offset) }

// OutputVersion is the version of a row from one of retailflow's own topics: the latest wins.
func OutputVersion(offset int64) uint64 { return uint64(offset) + 1 }

// maxValueQty bounds order_lines.net_value_by_qty: lines with more units (or fractional
// quantities) get no precomputed values and C6 skips AMOUNT_DIFF for them.
const maxValueQty = 1000

// colv is one column of a row being built: its name and value.
type colv struct {
	k string
	v any
}

// cols are the columns a mapper names for one row, in any order.
type cols []colv

// rowBuilder builds the rows of one record straight into their tables' column order (no map
// per row): the values a record's rows share (version, source coordinates, event id and time)
// are boxed once per record, and each row's values are one slice.
type rowBuilder struct {
	rows []Row
	src  Source
	ver  uint64
	// eventID, occurredAt and correlationID are set by EventRows: addEvent adds them as
	// event_id, occurred_at and correlation_id
	eventID       string
	occurredAt    time.Time
	correlationID string
	// the shared values, boxed once
	boxed struct {
		ver, topic, partition, offset, eventID, occurredAt, correlationID any
	}
	// slab holds the rows' values of a builder the sink reuses (reused): one allocation for
	// many rows, overwritten by the next record's (the sink copies every value into its column
	// buffers before it maps the next record). A builder of the exported mappers allocates
	// each row's values on their own, as the rows outlive it.
	slab   []any
	reused bool
}

func newRowBuilder(src Source, ver uint64) *rowBuilder {
	b := &rowBuilder{}
	b.reset(src, ver)
	return b
}

// reset starts the rows of the next record; the rows returned before are no longer valid.
func (b *rowBuilder) reset(src Source, ver uint64) {
	clear(b.slab)
	clear(b.rows)
	*b = rowBuilder{rows: b.rows[:0], slab: b.slab[:0], reused: b.reused, src: src, ver: ver}
	b.boxed.ver, b.boxed.topic, b.boxed.partition, b.boxed.offset = ver, src.Topic, src.Partition, src.Offset
}

// values returns n zeroed values from the slab.
func (b *rowBuilder) values(n int) []any {
	if !b.reused {
		return make([]any, n)
	}
	if cap(b.slab)-len(b.slab) < n {
		b.slab = make([]any, 0, max(n, 2*cap(b.slab), 32))
	}
	l := len(b.slab)
	b.slab = b.slab[:l+n]
	return b.slab[l : l+n : l+n]
}

// layout is where the columns one mapper call names (in its order: its cols, then the extra
// ones, then row_id, version and the source coordinates) go in its table: found once per call
// site and table, then by comparing the names (the literals of the call site, equal at once)
// instead of a map lookup per column per row.
type layout struct {
	names []string
	pos   []int // -1: not a column of the table
	err   error // a name that is not a column, or a column no name fills (a mapping bug)
}

var (
	layoutsMu sync.Mutex                           // serializes the writers of layouts
	layouts   atomic.Pointer[map[string][]*layout] // table → the layouts seen; copied on write
	fixedCols = [...]string{"row_id", "version", "src_topic", "src_partition", "src_offset"}
)

func (l *layout) matches(c cols, extra []colv) bool {
	if len(l.names) != len(c)+len(extra)+len(fixedCols) {
		return false
	}
	for i, x := range c {
		if l.names[i] != x.k {
			return false
		}
	}
	for i, x := range extra {
		if l.names[len(c)+i] != x.k {
			return false
		}
	}
	return true
}

// layoutFor returns the layout of c and extra in table (nil: no such table).
func layoutFor(table string, c cols, extra []colv) *layout {
	if m := layouts.Load(); m != nil {
		for _, l := range (*m)[table] {
			if l.matches(c, extra) {
				return l
			}
		}
	}
	t, idx := tableColumns(table)
	if idx == nil {
		return nil
	}
	l := &layout{}
	for _, x := range c {
		l.names = append(l.names, x.k)
	}
	for _, x := range extra {
		l.names = append(l.names, x.k)
	}
	l.names = append(l.names, fixedCols[:]...)
	filled := make([]bool, len(t.Columns))
	for _, k := range l.names {
		i, ok := idx[k]
		if !ok {
			i = -1
			if l.err == nil {
				l.err = fmt.Errorf("row for %s has unknown columns [%s]", table, k)
			}
		} else {
			filled[i] = true
		}
		l.pos = append(l.pos, i)
	}
	for i, ok := range filled {
		if !ok && l.err == nil {
			l.err = fmt.Errorf("row for %s lacks column %s", table, t.Columns[i])
		}
	}
	layoutsMu.Lock()
	defer layoutsMu.Unlock()
	next := map[string][]*layout{}
	if m := layouts.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	next[table] = append(append([]*layout{}, next[table]...), l)
	layouts.Store(&next)
	return l
}

// addEvent adds a row of an input event's fact table: c plus event_id, occurred_at and
// correlation_id.
func (b *rowBuilder) addEvent(table, rowID string, c cols) {
	if b.boxed.eventID == nil {
		b.boxed.eventID, b.boxed.occurredAt, b.boxed.correlationID = b.eventID, b.occurredAt, b.correlationID
	}
	b.addWith(table, rowID, c, colv{"event_id", b.boxed.eventID}, colv{"occurred_at", b.boxed.occurredAt},
		colv{"correlation_id", b.boxed.correlationID})
}

// add adds a row: c plus row_id, version and the source coordinates.
func (b *rowBuilder) add(table, rowID string, c cols) { b.addWith(table, rowID, c) }

func (b *rowBuilder) addWith(table, rowID string, c cols, extra ...colv) {
	r := Row{Table: table}
	l := layoutFor(table, c, extra)
	if l == nil {
		r.err = fmt.Errorf("no table %s in the migrations", table)
		b.rows = append(b.rows, r)
		return
	}
	t, _ := tableColumns(table)
	r.vals, r.err = b.values(len(t.Columns)), l.err
	set := func(i int, v any) {
		if p := l.pos[i]; p >= 0 {
			r.vals[p] = v
		}
	}
	for i, x := range c {
		set(i, x.v)
	}
	for i, x := range extra {
		set(len(c)+i, x.v)
	}
	n := len(c) + len(extra)
	set(n, rowID)
	set(n+1, b.boxed.ver)
	set(n+2, b.boxed.topic)
	set(n+3, b.boxed.partition)
	set(n+4, b.boxed.offset)
	if r.err == nil {
		for i, v := range r.vals {
			if v == nil {
				r.err = fmt.Errorf("row for %s lacks column %s", table, t.Columns[i])
				break
			}
		}
	}
	b.rows = append(b.rows, r)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// decOr0 is *d, or 0 for nil; a column that stores it has a flag column saying which.
func decOr0(d *decimal.Decimal) decimal.Decimal {
	if d == nil {
		return decimal.Zero
	}
	return *d
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func ts(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC()
}

// EventRows maps one input event to the rows of its fact tables and of the audit ledger.
func EventRows(e *schemas.Event, src Source) ([]Row, error) {
	return newRowBuilder(src, FactVersion(src.Offset)).eventRows(e, src)
}

// eventRows is EventRows into b (reset for the record).
func (b *rowBuilder) eventRows(e *schemas.Event, src Source) ([]Row, error) {
	b.reset(src, FactVersion(src.Offset))
	b.eventID, b.occurredAt, b.correlationID = e.EventID, ts(e.OccurredAt), e.CorrelationID
	audit := func(orderID, kind, member string, points int64, amount decimal.Decimal, currency, requestID, sourceRef string, at time.Time, detail string) {
		b.add("audit_ledger", e.EventID+":"+kind, cols{
			{"order_id", orderID}, {"movement_id", e.EventID + ":" + kind}, {"movement_kind", kind}, {"member_id", member},
			{"points", points}, {"amount", amount}, {"currency", currency}, {"event_id", e.EventID}, {"causing_event_id", ""},
			{"request_id", requestID}, {"source_ref", sourceRef}, {"business_time", ts(at)}, {"detail", detail},
		})
	}
	switch {
	case e.OrderAccepted != nil:
		o := e.OrderAccepted
		mult, hasMult := decimal.Zero, uint8(0)
		if o.TierMultiplier != nil {
			mult, hasMult = *o.TierMultiplier, 1
		}
		rate := decimal.Zero
		if o.EarnRate != nil {
			rate = *o.EarnRate
		}
		var resID string
		var resPts int64
		resVal := decimal.Zero
		if lr := o.LoyaltyRedemption; lr != nil {
			resID, resPts, resVal = lr.ReservationID, lr.Points, lr.Value
		}
		b.addEvent("orders", o.OrderID, cols{
			{"order_id", o.OrderID}, {"accepted_at", ts(o.AcceptedAt)}, {"customer_id", o.CustomerID},
			{"loyalty_member_id", str(o.LoyaltyMemberID)}, {"tier_code", str(o.LoyaltyTierAtOrder)}, {"currency", o.Currency},
			{"earn_rate", rate}, {"tier_multiplier", mult}, {"has_tier_multiplier", hasMult},
			{"reservation_id", resID}, {"redemption_points", resPts}, {"redemption_value", resVal},
			{"line_count", uint32(len(o.Lines))}, {"merchandise_net", o.Totals.MerchandiseNet}, {"grand_total", o.Totals.GrandTotal},
		})
		for _, l := range o.Lines {
			var pts int64
			if l.RedemptionAlloc != nil {
				pts = l.RedemptionAlloc.Points
			}
			values := NetValueByQty(l.LineNet, l.Quantity)
			b.addEvent("order_lines", o.OrderID+"/"+l.OrderLineID, cols{
				{"order_id", o.OrderID}, {"order_line_id", l.OrderLineID}, {"accepted_at", ts(o.AcceptedAt)}, {"line_number", l.LineNumber},
				{"sku", l.SKU}, {"is_gift_card", b2u(l.IsGiftCard)}, {"quantity", l.Quantity}, {"line_net", l.LineNet},
				{"redemption_points", pts}, {"net_value_by_qty", values}, {"tax_by_qty", TaxByQty(values, l.TaxLines)},
			})
		}
		audit(o.OrderID, "ORDER_ACCEPTED", str(o.LoyaltyMemberID), 0, o.Totals.GrandTotal, o.Currency, "", o.OrderID, o.AcceptedAt, "grand total")
	case e.OrderLinesCancelled != nil:
		c := e.OrderLinesCancelled
		lines := c.Lines
		if len(lines) == 0 {
			lines = []schemas.CancelledLine{{QuantityCancelled: decimal.Zero}}
		}
		for _, l := range lines {
			b.addEvent("cancellation_lines", c.CancellationID+"/"+l.OrderLineID, cols{
				{"order_id", c.OrderID}, {"cancellation_id", c.CancellationID}, {"order_line_id", l.OrderLineID},
				{"cancelled_at", ts(c.CancelledAt)}, {"is_full_order", b2u(c.IsFullOrder)}, {"reason_code", c.ReasonCode},
				{"quantity_cancelled", l.QuantityCancelled},
			})
		}
	case e.ShipmentConfirmed != nil:
		s := e.ShipmentConfirmed
		for _, l := range s.Lines {
			b.addEvent("shipment_lines", s.ShipmentID+"/"+l.ShipmentLineID, cols{
				{"order_id", s.OrderID}, {"shipment_id", s.ShipmentID}, {"shipment_line_id", l.ShipmentLineID},
				{"order_line_id", l.OrderLineID}, {"sku", l.SKU}, {"quantity_shipped", l.QuantityShipped},
				{"is_reship", b2u(s.IsReship)}, {"shipped_at", ts(s.ShippedAt)}, {"ship_node_id", s.ShipNodeID},
			})
		}
	case e.ReturnReceived != nil:
		r := e.ReturnReceived
		for _, l := range r.Lines {
			b.addEvent("return_lines", r.ReturnID+"/"+l.ReturnLineID, cols{
				{"order_id", r.OrderID}, {"return_id", r.ReturnID}, {"return_line_id", l.ReturnLineID},
				{"order_line_id", l.OrderLineID}, {"sku", l.SKU}, {"quantity_received", l.QuantityReceived},
				{"quantity_accepted", l.QuantityAccepted}, {"disposition", l.Disposition}, {"received_at", ts(r.ReceivedAt)},
			})
		}
		if f := r.Refund; f != nil {
			total := f.MerchandiseNet.Add(f.Tax).Add(f.ShippingRefund).Sub(f.ReturnFee)
			audit(r.OrderID, "RETURN_REFUND", "", 0, total.Neg(), f.Currency, "", r.ReturnID, r.ReceivedAt, "merchandise+tax+shipping−fee refunded")
		}
	case e.PointsReserved != nil:
		p := e.PointsReserved
		b.addEvent("reservation_events", p.ReservationID+"/RESERVED", cols{
			{"reservation_id", p.ReservationID}, {"kind", "RESERVED"}, {"order_id", str(p.OrderID)}, {"member_id", p.MemberID},
			{"redemption_id", ""}, {"points", p.Points}, {"value", p.Value.Amount}, {"reason", ""}, {"at", ts(p.ReservedAt)}, {"expires_at", ts(p.ExpiresAt)},
			{"conversion_rate", p.ConversionRate},
		})
	case e.RedemptionConfirmed != nil:
		p := e.RedemptionConfirmed
		b.addEvent("reservation_events", p.ReservationID+"/CONFIRMED", cols{
			{"reservation_id", p.ReservationID}, {"kind", "CONFIRMED"}, {"order_id", p.OrderID}, {"member_id", ""},
			{"redemption_id", p.RedemptionID}, {"points", p.Points}, {"value", decimal.Zero}, {"reason", ""}, {"at", ts(p.ConfirmedAt)}, {"expires_at", ts(time.Time{})},
			{"conversion_rate", decimal.Zero},
		})
		audit(p.OrderID, "REDEMPTION_CONFIRMED", "", -p.Points, decimal.Zero, "", "", p.ReservationID, p.ConfirmedAt, "points redeemed on the order")
	case e.RedemptionReleased != nil:
		p := e.RedemptionReleased
		b.addEvent("reservation_events", p.ReservationID+"/RELEASED", cols{
			{"reservation_id", p.ReservationID}, {"kind", "RELEASED"}, {"order_id", str(p.OrderID)}, {"member_id", ""},
			{"redemption_id", ""}, {"points", int64(0)}, {"value", decimal.Zero}, {"reason", p.Reason}, {"at", ts(p.ReleasedAt)}, {"expires_at", ts(time.Time{})},
			{"conversion_rate", decimal.Zero},
		})
	case e.RedemptionRefunded != nil:
		p := e.RedemptionRefunded
		b.addEvent("loyalty_postings", "REDEMPTION_REFUND/"+p.RefundEntryID, postingCols(p.OrderID, "REDEMPTION_REFUND", p.RefundEntryID, str(p.RequestID), "",
			p.Points, 0, 0, 0, "", decimal.Zero, decimal.Zero, decimal.Zero, p.SourceRefID, p.Reason, p.RefundedAt))
		audit(p.OrderID, "REDEMPTION_REFUNDED", "", p.Points, decimal.Zero, "", str(p.RequestID), p.SourceRefID, p.RefundedAt, p.Reason)
	case e.PointsAccrualPosted != nil:
		p := e.PointsAccrualPosted
		b.addEvent("loyalty_postings", "ACCRUAL/"+p.LedgerEntryID, postingCols(p.OrderID, "ACCRUAL", p.LedgerEntryID, p.RequestID, p.MemberID,
			p.Points, 0, 0, 0, p.TierCode, p.TierMultiplier, p.EarnRate, p.BasisAmount, p.SourceRef, p.Status, p.PostedAt))
		audit(p.OrderID, "ACCRUAL_POSTED", p.MemberID, p.Points, decimal.Zero, p.Currency, p.RequestID, p.SourceRef, p.PostedAt,
			accrualDetail(p.BasisAmount, p.EarnRate, p.TierCode, p.TierMultiplier))
	case e.PointsActivated != nil:
		p := e.PointsActivated
		b.addEvent("loyalty_postings", "ACTIVATION/"+p.LedgerEntryID, postingCols(p.OrderID, "ACTIVATION", p.LedgerEntryID, "", "",
			p.Points, 0, 0, 0, "", decimal.Zero, decimal.Zero, decimal.Zero, "", "", p.ActivatedAt))
	case e.PointsReversed != nil:
		p := e.PointsReversed
		b.addEvent("loyalty_postings", "REVERSAL/"+p.LedgerEntryID, postingCols(p.OrderID, "REVERSAL", p.LedgerEntryID, p.RequestID, p.MemberID,
			p.Points, p.ShortfallPoints, p.FromPending, p.FromActive, "", decimal.Zero, decimal.Zero, decimal.Zero, p.SourceRefID, p.Reason, p.ReversedAt))
		audit(p.OrderID, "REVERSAL_POSTED", p.MemberID, -p.Points, decimal.Zero, "", p.RequestID, p.SourceRefID, p.ReversedAt,
			reversalDetail(p.FromPending, p.FromActive, p.ShortfallPoints))
	case e.ErpSalesOrderCreated != nil:
		o := e.ErpSalesOrderCreated
		b.addEvent("erp_sales_orders", o.ErpSalesOrderID, cols{
			{"order_id", o.OrderID}, {"erp_sales_order_id", o.ErpSalesOrderID}, {"item_count", uint32(len(o.Items))},
			{"currency", o.Currency}, {"created_at", ts(o.CreatedAt)},
			{"erp_version", uint64(0)}, {"status", ""}, {"changed_at", ts(o.CreatedAt)},
		})
		for _, it := range o.Items {
			b.addEvent("erp_sales_order_items", o.ErpSalesOrderID+"/"+it.ErpItem, cols{
				{"order_id", o.OrderID}, {"erp_sales_order_id", o.ErpSalesOrderID}, {"erp_item", it.ErpItem},
				{"order_line_id", it.OrderLineID}, {"quantity", it.Quantity}, {"created_at", ts(o.CreatedAt)},
				{"erp_version", uint64(0)}, {"rejected_quantity", decimal.Zero},
			})
		}
	case e.ErpSalesOrderChanged != nil:
		// erp v2's replica: a later state of the same sales order, in the creation's tables
		// (0012_erp_v2.sql); the views keep the highest erp_version. Its row ids name the
		// version, so each version is its own fact; created_at and currency are not in a
		// replica (the epoch and ''), the creation's row keeps them. Like the creation, it moves
		// neither points nor money: no audit movement.
		o := e.ErpSalesOrderChanged
		v := strconv.FormatInt(o.ErpVersion, 10)
		b.addEvent("erp_sales_orders", o.ErpSalesOrderID+"@"+v, cols{
			{"order_id", o.OrderID}, {"erp_sales_order_id", o.ErpSalesOrderID}, {"item_count", uint32(len(o.Items))},
			{"currency", ""}, {"created_at", ts(time.Unix(0, 0))},
			{"erp_version", uint64(o.ErpVersion)}, {"status", o.Status}, {"changed_at", ts(o.ChangedAt)},
		})
		for _, it := range o.Items {
			b.addEvent("erp_sales_order_items", o.ErpSalesOrderID+"@"+v+"/"+it.ErpItem, cols{
				{"order_id", o.OrderID}, {"erp_sales_order_id", o.ErpSalesOrderID}, {"erp_item", it.ErpItem},
				{"order_line_id", it.OrderLineID}, {"quantity", it.Quantity}, {"created_at", ts(time.Unix(0, 0))},
				{"erp_version", uint64(o.ErpVersion)}, {"rejected_quantity", it.RejectedQuantity},
			})
		}

	case e.InvoicePosted != nil || e.CreditMemoPosted != nil:
		d, kind, sign := e.InvoicePosted, "INVOICE", decimal.NewFromInt(1)
		if d == nil {
			d, kind, sign = e.CreditMemoPosted, "CREDIT_MEMO", decimal.NewFromInt(-1)
		}
		b.addEvent("billing_documents", d.BillingDocumentID, cols{
			{"order_id", d.OrderID}, {"billing_document_id", d.BillingDocumentID}, {"doc_kind", kind}, {"billing_type", d.BillingType},
			{"erp_sales_order_id", d.ErpSalesOrderID}, {"accounting_transfer_status", d.AccountingTransferStatus},
			{"billing_date", ts(d.BillingDate)}, {"currency", d.Currency}, {"net", d.Net}, {"tax", d.Tax}, {"gross", d.Gross},
			{"reference_invoice_id", str(d.ReferenceInvoiceID)}, {"return_id", str(d.ReturnID)},
			{"redemption_value", decOr0(d.RedemptionValue)}, {"has_redemption_value", b2u(d.RedemptionValue != nil)},
		})
		for _, l := range d.Lines {
			b.addEvent("billing_lines", d.BillingDocumentID+"/"+l.BillingItem, cols{
				{"order_id", d.OrderID}, {"billing_document_id", d.BillingDocumentID}, {"billing_item", l.BillingItem},
				{"doc_kind", kind}, {"accounting_transfer_status", d.AccountingTransferStatus}, {"billing_date", ts(d.BillingDate)},
				{"order_line_id", l.OrderLineID}, {"erp_item", l.ErpItem}, {"reference_document", l.ReferenceDocument}, {"sku", l.SKU},
				{"quantity", l.Quantity}, {"net", l.Net}, {"tax", l.Tax},
			})
		}
		audit(d.OrderID, kind, "", 0, d.Gross.Mul(sign), d.Currency, "", d.BillingDocumentID, d.BillingDate,
			billingDetail(d.BillingType, d.BillingDocumentID, d.Net, d.Tax, d.AccountingTransferStatus))
	case e.BillingDocCancelled != nil:
		c := e.BillingDocCancelled
		b.addEvent("billing_cancellations", c.BillingDocumentID, cols{
			{"order_id", c.OrderID}, {"billing_document_id", c.BillingDocumentID},
			{"cancels_billing_document_id", c.CancelsBillingDocumentID}, {"cancelled_at", ts(c.CancelledAt)},
		})
		audit(c.OrderID, "BILLING_CANCELLED", "", 0, decimal.Zero, "", "", c.CancelsBillingDocumentID, c.CancelledAt,
			"cancels billing document "+c.CancelsBillingDocumentID)
	default:
		return nil, fmt.Errorf("event %s (%s) at %s[%d]@%d has no body the sink knows", e.EventID, e.EventType, src.Topic, src.Partition, src.Offset)
	}
	return b.rows, nil
}

// The audit details, built by concatenation (fmt.Sprintf was a tenth of the mapping); the text
// is the one of the format in each comment (TestAuditDetailsAsFormatted).

// accrualDetail: "basis %s × rate %s × tier %s %s".
func accrualDetail(basis, rate decimal.Decimal, tier string, mult decimal.Decimal) string {
	return "basis " + basis.String() + " × rate " + rate.String() + " × tier " + tier + " " + mult.String()
}

// reversalDetail: "from pending %d, from active %d, shortfall %d".
func reversalDetail(fromPending, fromActive, shortfall int64) string {
	return "from pending " + strconv.FormatInt(fromPending, 10) + ", from active " + strconv.FormatInt(fromActive, 10) +
		", shortfall " + strconv.FormatInt(shortfall, 10)
}

// billingDetail: "%s %s net %s tax %s (%s)".
func billingDetail(billingType, docID string, net, tax decimal.Decimal, transfer string) string {
	return billingType + " " + docID + " net " + net.String() + " tax " + tax.String() + " (" + transfer + ")"
}

// commandDetail: "%s: P=%d after the event (basis %s × rate %s × tier %s %s, policy %s)".
func commandDetail(reason string, entitled int64, basis, rate decimal.Decimal, tier string, mult decimal.Decimal, policy string) string {
	return reason + ": P=" + strconv.FormatInt(entitled, 10) + " after the event (basis " + basis.String() + " × rate " + rate.String() +
		" × tier " + tier + " " + mult.String() + ", policy " + policy + ")"
}

func postingCols(orderID, kind, entryID, requestID, member string, points, shortfall, fromPending, fromActive int64,
	tier string, mult, rate, basis decimal.Decimal, sourceRef, reason string, at time.Time) cols {
	return cols{
		{"order_id", orderID}, {"kind", kind}, {"entry_id", entryID}, {"request_id", requestID}, {"member_id", member},
		{"points", points}, {"shortfall_points", shortfall}, {"from_pending", fromPending}, {"from_active", fromActive},
		{"tier_code", tier}, {"tier_multiplier", mult}, {"earn_rate", rate}, {"basis_amount", basis},
		{"source_ref", sourceRef}, {"reason", reason}, {"posted_at", ts(at)},
	}
}

// NetValueByQty returns v with v[q] = round_half_even(lineNet × q / quantity, 2) for every
// integer q in 0..quantity, or nil when quantity is not a positive integer ≤ 1000. The value of
// a partial quantity is cumulative — value_cum(q) = round_half_even(N × q / q_ord), an event's
// value the difference of two cumulative values — so the last shipment or return absorbs the
// rounding remainders and the parts always add up to the line net.
func NetValueByQty(lineNet, quantity decimal.Decimal) []decimal.Decimal {
	if !quantity.IsInteger() || quantity.Sign() <= 0 || quantity.GreaterThan(decimal.NewFromInt(maxValueQty)) {
		return nil
	}
	n := quantity.IntPart()
	out := make([]decimal.Decimal, n+1)
	if netValuesInt64(out, lineNet, n) {
		return out
	}
	net := lineNet.Rat()
	for q := int64(0); q <= n; q++ {
		x := new(big.Rat).Mul(net, big.NewRat(q, n))
		out[q] = roundHalfEven(x, 2)
	}
	return out
}

// netValuesInt64 fills out as NetValueByQty does, in uint64 arithmetic, when every intermediate
// fits (coefficients of up to 18 digits, any practical scale); false leaves the exact big.Rat
// path to the caller. value_cum(q) × 100 = |c| × 10^(exp+2) × q / n, rounded half-even on the
// magnitude and signed after, as roundHalfEven does; each value is built with exponent −2, the
// representation roundHalfEven gives (TestNetValueByQtyMatchesRatReference).
func netValuesInt64(out []decimal.Decimal, lineNet decimal.Decimal, n int64) bool {
	if lineNet.NumDigits() > 18 {
		return false
	}
	c := lineNet.CoefficientInt64()
	neg := c < 0
	if neg {
		c = -c
	}
	num, den := uint64(c), uint64(n)
	var hi uint64
	switch k := lineNet.Exponent() + 2; {
	case k > 18 || k < -18:
		return false
	case k > 0:
		hi, num = bits.Mul64(num, pow10u64[k])
	case k < 0:
		hi, den = bits.Mul64(den, pow10u64[-k])
	}
	if hi != 0 || den >= 1<<62 {
		return false
	}
	// num × q ≤ num × n must stay below 2^62 (2 × remainder < 2^63)
	if hi, lo := bits.Mul64(num, uint64(n)); hi != 0 || lo >= 1<<62 {
		return false
	}
	for q := range out {
		x := num * uint64(q)
		v, r := x/den, x%den
		if 2*r > den || (2*r == den && v&1 == 1) {
			v++
		}
		if neg {
			out[q] = decimal.New(-int64(v), -2)
		} else {
			out[q] = decimal.New(int64(v), -2)
		}
	}
	return true
}

var pow10u64 = [19]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// TaxByQty returns the OMS tax of each cumulative net value of a line (NetValueByQty): t[q] =
// round_half_even(values[q] × Σ rates of its tax lines, 2), one rounding per amount, as C6
// TAX_DIFF compares it with the ERP's per-line tax (½ minor unit per rounded amount, DOMAIN B.3).
// nil when values is.
func TaxByQty(values []decimal.Decimal, taxLines []schemas.TaxLine) []decimal.Decimal {
	if values == nil {
		return nil
	}
	rate := decimal.Zero
	for _, tl := range taxLines {
		rate = rate.Add(tl.Rate)
	}
	out := make([]decimal.Decimal, len(values))
	for q, v := range values {
		out[q] = v.Mul(rate).RoundBank(2)
	}
	return out
}

// roundHalfEven rounds x to places decimals, ties to even (banker's rounding).
func roundHalfEven(x *big.Rat, places int32) decimal.Decimal {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	scaled := new(big.Rat).Mul(x, new(big.Rat).SetInt(scale))
	q, r := new(big.Int).QuoRem(scaled.Num(), scaled.Denom(), new(big.Int))
	// r has the sign of the numerator; compare 2|r| with the denominator
	twice := new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2))
	switch c := twice.Cmp(scaled.Denom()); {
	case c > 0 || (c == 0 && q.Bit(0) == 1):
		if r.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(q, -places)
}

// CommandRows maps one loyalty command (retailflow's output) to loyalty_commands and the audit ledger.
func CommandRows(c *schemas.LoyaltyCommand, src Source) []Row {
	return newRowBuilder(src, OutputVersion(src.Offset)).commandRows(c, src)
}

// commandRows is CommandRows into b (reset for the record).
func (b *rowBuilder) commandRows(c *schemas.LoyaltyCommand, src Source) []Row {
	b.reset(src, OutputVersion(src.Offset))
	var activates time.Time
	if c.ActivatesAt != nil {
		activates = *c.ActivatesAt
	}
	b.add("loyalty_commands", c.RequestID, cols{
		{"order_id", c.OrderID}, {"request_id", c.RequestID}, {"command_type", string(c.CommandType)}, {"member_id", c.MemberID},
		{"points", c.Points}, {"causing_event_id", c.CausingEventID}, {"source_ref_id", c.SourceRefID}, {"reason", c.Reason},
		{"basis_amount", c.BasisAmount}, {"currency", c.Currency}, {"earn_rate", c.EarnRate}, {"tier_code", c.TierCode},
		{"tier_multiplier", c.TierMultiplier}, {"entitled_points", c.EntitledPoints}, {"activates_at", ts(activates)},
		{"reservation_id", str(c.ReservationID)}, {"expiry_policy", str(c.ExpiryPolicy)}, {"policy_version", c.PolicyVersion},
		{"requested_at", ts(c.RequestedAt)}, {"correlation_id", ""}, // the envelope's: the sink sets it
	})
	pts := c.Points
	if c.CommandType == schemas.TypeReversalRequested {
		pts = -pts
	}
	b.add("audit_ledger", c.RequestID, cols{
		{"order_id", c.OrderID}, {"movement_id", c.RequestID}, {"movement_kind", string(c.CommandType)}, {"member_id", c.MemberID},
		{"points", pts}, {"amount", decimal.Zero}, {"currency", c.Currency}, {"event_id", ""}, {"causing_event_id", c.CausingEventID},
		{"request_id", c.RequestID}, {"source_ref", c.SourceRefID}, {"business_time", ts(c.RequestedAt)},
		{"detail", commandDetail(c.Reason, c.EntitledPoints, c.BasisAmount, c.EarnRate, c.TierCode, c.TierMultiplier, c.PolicyVersion)},
	})
	return b.rows
}

// DeadLetterRows maps a DLQ record written by the runtime to dead_letters, keyed by the
// coordinates of the original record.
func DeadLetterRows(d *schemas.DeadLetter, src Source, headerKeys, headerValues []string) []Row {
	b := newRowBuilder(src, OutputVersion(src.Offset))
	var schemaID int32 = -1
	if d.SchemaID != nil {
		schemaID = *d.SchemaID
	}
	b.add("dead_letters", fmt.Sprintf("%s/%d/%d", d.SourceTopic, d.SourcePartition, d.SourceOffset), cols{
		{"source_topic", d.SourceTopic}, {"source_partition", d.SourcePartition}, {"source_offset", d.SourceOffset},
		{"origin", "runtime"}, {"error_class", string(d.ErrorClass)}, {"error", d.ErrorMessage}, {"event_id", str(d.EventID)},
		{"schema_id", schemaID}, {"record_key", string(d.Key)}, {"record_value", string(d.Value)},
		{"header_keys", headerKeys}, {"header_values", headerValues}, {"seen_at", ts(d.FirstSeenAt)},
		{"correlation_id", ""}, // the rejected event's, when it decodes: the sink sets it
	})
	return b.rows
}

// FailureRow is a dead_letters row for a record the sink itself could not use (origin
// sink-decode: it did not decode; sink-insert: ClickHouse rejected its rows permanently).
// Its version is below any runtime row's for the same record (which carries the runtime's
// classification), so the runtime's row wins when both exist.
func FailureRow(origin string, class schemas.ErrorClass, cause error, src Source, key, value []byte, at time.Time) Row {
	return Row{Table: "dead_letters", Values: map[string]any{
		"source_topic": src.Topic, "source_partition": src.Partition, "source_offset": src.Offset,
		"row_id": fmt.Sprintf("%s/%d/%d", src.Topic, src.Partition, src.Offset), "version": uint64(0),
		"origin": origin, "error_class": string(class), "error": cause.Error(), "event_id": "", "schema_id": int32(-1),
		"record_key": string(key), "record_value": string(value), "header_keys": []string{}, "header_values": []string{},
		"seen_at": ts(at), "src_topic": src.Topic, "src_partition": src.Partition, "src_offset": src.Offset,
		"correlation_id": "",
	}}
}

// StateRows maps one changelog record (the order ledger's state; nil for a tombstone) to
// order_state and order_line_state.
func StateRows(orderID string, st *ledgerstate.State, src Source) []Row {
	return newRowBuilder(src, OutputVersion(src.Offset)).stateRows(orderID, st, src)
}

// stateRows is StateRows into b (reset for the record).
func (b *rowBuilder) stateRows(orderID string, st *ledgerstate.State, src Source) []Row {
	b.reset(src, OutputVersion(src.Offset))
	if st == nil {
		b.add("order_state", orderID, cols{
			{"order_id", orderID}, {"deleted", uint8(1)}, {"member_id", ""}, {"currency", ""}, {"tier_code", ""},
			{"tier_multiplier", decimal.Zero}, {"earn_rate", decimal.Zero}, {"basis_amount", decimal.Zero}, {"entitled_points", int64(0)},
			{"requested_points", int64(0)}, {"posted_points", int64(0)}, {"open_exceptions", []string{}}, {"updated_at", ts(time.Time{})},
		})
		return b.rows
	}
	var snap ledgerstate.OrderSnapshot
	if st.Order != nil {
		snap = *st.Order
	}
	exc := make([]string, 0, len(st.Exceptions))
	for _, x := range st.Exceptions {
		exc = append(exc, x.Code+":"+x.Ref)
	}
	b.add("order_state", st.OrderID, cols{
		{"order_id", st.OrderID}, {"deleted", uint8(0)}, {"member_id", snap.MemberID}, {"currency", snap.Currency}, {"tier_code", snap.TierCode},
		{"tier_multiplier", snap.TierMultiplier}, {"earn_rate", snap.EarnRate}, {"basis_amount", st.Points.Basis},
		{"entitled_points", st.Points.Entitled}, {"requested_points", st.Points.Requested}, {"posted_points", st.Points.Posted},
		{"open_exceptions", exc}, {"updated_at", ts(st.Clock)},
	})
	for _, l := range st.Lines {
		b.add("order_line_state", st.OrderID+"/"+l.OrderLineID, cols{
			{"order_id", st.OrderID}, {"order_line_id", l.OrderLineID}, {"deleted", uint8(0)},
			{"ordered", l.Ordered}, {"cancelled", l.Cancelled}, {"shipped", l.Shipped}, {"returned", l.Returned},
			{"invoiced", l.Invoiced}, {"credited", l.Credited}, {"line_net", l.LineNet}, {"eligible_value", l.EligibleValue},
			{"net_shipped_value", l.NetShippedValue}, {"updated_at", ts(st.Clock)},
		})
	}
	return b.rows
}
