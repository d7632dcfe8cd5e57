package schemas

import (
	"bytes"
	"fmt"
	"iter"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// FieldProblem is one broken rule, at a path in the JSON form of the event
// (`order_accepted.lines[2].quantity`).
type FieldProblem struct {
	Path string
	Msg  string
}

func (p FieldProblem) String() string { return p.Path + ": " + p.Msg }

// ValidationError lists every broken rule of one event. The runtime dead-letters such events
// with class ClassInvalid.
type ValidationError struct {
	EventID   string
	EventType EventType
	Problems  []FieldProblem
}

func (e *ValidationError) Error() string {
	const show = 5
	parts := make([]string, 0, show)
	for i, p := range e.Problems {
		if i == show {
			parts = append(parts, fmt.Sprintf("(+%d more)", len(e.Problems)-show))
			break
		}
		parts = append(parts, p.String())
	}
	return fmt.Sprintf("invalid event %q (%s): %s", e.EventID, e.EventType, strings.Join(parts, "; "))
}

// ValidateFor validates e (Validate) and checks that its type belongs on topic t.
func (e *Event) ValidateFor(t Topic) error {
	err := e.Validate()
	if bt := e.BodyType(); bt != "" {
		if want, _ := TopicOf(bt); want != t {
			ve, _ := err.(*ValidationError)
			if ve == nil {
				ve = &ValidationError{EventID: e.EventID, EventType: e.EventType}
			}
			ve.Problems = append(ve.Problems, FieldProblem{"event_type", fmt.Sprintf("%s belongs on topic %s, not %s", bt, want, t)})
			return ve
		}
	}
	return err
}

// Validate checks the stateless contract rules of an event (DESIGN.md "Stateless"): the
// envelope is present, exactly one body is set and event_type names it, ids are set, quantities
// are > 0, amounts are ≥ 0 with at most the schema's decimal places (4 for money; document
// amounts at most the currency's minor unit), currencies look like ISO 4217 and agree within
// the event, line ids are unique within the event, enumerated strings have documented values,
// and a loyalty command's request_id is CommandRequestID of its order, cause and type.
// It returns nil or a *ValidationError listing every problem.
func (e *Event) Validate() error {
	c := &checker{}
	c.envelope(&e.Envelope)
	b, n := e.setBody()
	switch {
	case n == 0:
		c.add(fpath{}, "no body set; exactly one is required")
	case n > 1:
		set := e.setBodies()
		keys := make([]string, len(set))
		for i, b := range set {
			keys[i] = b.key
		}
		c.add(fpath{}, "bodies %s are all set; exactly one is allowed", strings.Join(keys, ", "))
	default:
		if bt := e.BodyType(); e.EventType != "" && e.EventType != bt {
			c.add(root("event_type"), "%q does not match the body %s (want %q)", e.EventType, b.key, bt)
		}
		c.body(root(b.key), e)
		body := reflect.ValueOf(e).Elem().FieldByIndex(bodyFieldIndex(b.key)).Elem()
		c.scales(root(b.key), body, scalePlans[body.Type()])
	}
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{EventID: e.EventID, EventType: e.EventType, Problems: c.problems}
}

type checker struct {
	problems []FieldProblem
}

func (c *checker) add(path fpath, format string, args ...any) {
	c.problems = append(c.problems, FieldProblem{Path: path.String(), Msg: fmt.Sprintf(format, args...)})
}

// fpath is a field path (`order_accepted.lines[2].quantity`) kept as segments and rendered
// only when a problem is reported, so validating a valid event builds no strings.
type fpath struct {
	n    int
	segs [maxPathDepth]pathSeg
}

// maxPathDepth is the deepest path an event has (payload body, list, item, list, item, field)
// with room to spare; deeper segments are dropped from the rendering, never from the checks.
const maxPathDepth = 8

type pathSeg struct {
	name  string
	index int // ≥ 0: an element of the list named name; -1: none
}

func join(p fpath, field string) fpath {
	if p.n < maxPathDepth {
		p.segs[p.n] = pathSeg{name: field, index: -1}
		p.n++
	}
	return p
}

func idx(p fpath, i int) fpath {
	if p.n > 0 {
		p.segs[p.n-1].index = i
	}
	return p
}

func (p fpath) String() string {
	var b strings.Builder
	for i := 0; i < p.n; i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.segs[i].name)
		if p.segs[i].index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.segs[i].index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// root is the path of a top-level field.
func root(field string) fpath { return join(fpath{}, field) }

func (c *checker) required(path fpath, field, v string) {
	if strings.TrimSpace(v) == "" {
		c.add(join(path, field), "is required")
	}
}

func (c *checker) requiredTime(path fpath, field string, t time.Time) {
	if t.IsZero() {
		c.add(join(path, field), "is required")
	}
}

func (c *checker) positive(path fpath, field string, d decimal.Decimal) {
	if !d.IsPositive() {
		c.add(join(path, field), "must be > 0, is %s", d)
	}
}

func (c *checker) nonNegative(path fpath, field string, d decimal.Decimal) {
	if d.IsNegative() {
		c.add(join(path, field), "must be ≥ 0 (direction comes from the event type), is %s", d)
	}
}

func (c *checker) positivePoints(path fpath, field string, p int64) {
	if p <= 0 {
		c.add(join(path, field), "must be > 0, is %d", p)
	}
}

func (c *checker) nonNegativePoints(path fpath, field string, p int64) {
	if p < 0 {
		c.add(join(path, field), "must be ≥ 0, is %d", p)
	}
}

func (c *checker) oneOf(path fpath, field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(join(path, field), "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// currency checks the ISO 4217 shape (three upper-case letters) and, when want is not "",
// that it equals the event's currency.
func (c *checker) currency(path fpath, field, v, want string) {
	if !isISOCurrency(v) {
		c.add(join(path, field), "%q is not an ISO 4217 currency code (three letters A-Z)", v)
		return
	}
	if want != "" && isISOCurrency(want) && v != want {
		c.add(join(path, field), "%s differs from the event's currency %s", v, want)
	}
}

func isISOCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// minorUnits is the ISO 4217 exponent of currencies that do not use 2; document amounts
// (invoices, credit memos, refunds) must be rounded to it.
var minorUnits = map[string]int32{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

func minorUnit(currency string) int32 {
	if e, ok := minorUnits[currency]; ok {
		return e
	}
	return 2
}

// documentAmount checks a document amount: ≥ 0 and rounded to the currency's minor unit.
func (c *checker) documentAmount(path fpath, field string, d decimal.Decimal, currency string) {
	c.nonNegative(path, field, d)
	if exp := minorUnit(currency); isISOCurrency(currency) && !hasAtMostPlaces(d, exp) {
		c.add(join(path, field), "%s has more decimal places than %s's minor unit (%d)", d, currency, exp)
	}
}

// unique reports duplicate ids within one list.
func (c *checker) unique(path fpath, field string, ids []string) {
	// Quadratic without a map: lists within one event are short.
	for i, id := range ids {
		if id == "" {
			c.add(join(idx(path, i), field), "is required")
			continue
		}
		for j := 0; j < i; j++ {
			if ids[j] == id {
				c.add(join(idx(path, i), field), "%q repeats %s", id, join(idx(path, j), field))
				break
			}
		}
	}
}

func (c *checker) envelope(env *Envelope) {
	c.required(fpath{}, "event_id", env.EventID)
	if env.EventType == "" {
		c.add(root("event_type"), "is required")
	} else if _, ok := TopicOf(env.EventType); !ok {
		c.add(root("event_type"), "%q is not a known event type", env.EventType)
	}
	c.required(fpath{}, "source_system", env.SourceSystem)
	c.requiredTime(fpath{}, "occurred_at", env.OccurredAt)
	c.requiredTime(fpath{}, "published_at", env.PublishedAt)
	c.required(fpath{}, "aggregate_id", env.AggregateID)
}

// bodyFieldIndexes maps a body's json key to its Event field index (computed once; read-only).
var bodyFieldIndexes = func() map[string][]int {
	m := map[string][]int{}
	for _, f := range goFields(reflect.TypeFor[Event]()) {
		if f.union != "" {
			m[f.name] = f.index
		}
	}
	return m
}()

func bodyFieldIndex(key string) []int { return bodyFieldIndexes[key] }

func (c *checker) body(p fpath, e *Event) {
	switch {
	case e.OrderAccepted != nil:
		c.orderAccepted(p, e.OrderAccepted)
	case e.OrderLinesCancelled != nil:
		b := e.OrderLinesCancelled
		c.required(p, "cancellation_id", b.CancellationID)
		c.required(p, "order_id", b.OrderID)
		c.requiredTime(p, "cancelled_at", b.CancelledAt)
		if len(b.Lines) == 0 && !b.IsFullOrder {
			c.add(join(p, "lines"), "is empty (only a full-order cancellation may omit lines)")
		}
		ids := make([]string, len(b.Lines))
		for i, l := range b.Lines {
			ids[i] = l.OrderLineID
			c.positive(idx(join(p, "lines"), i), "quantity_cancelled", l.QuantityCancelled)
		}
		c.unique(join(p, "lines"), "order_line_id", ids)
	case e.ShipmentConfirmed != nil:
		b := e.ShipmentConfirmed
		c.required(p, "shipment_id", b.ShipmentID)
		c.required(p, "order_id", b.OrderID)
		c.requiredTime(p, "shipped_at", b.ShippedAt)
		c.oneOf(p, "fulfillment_type", b.FulfillmentType, "WAREHOUSE", "STORE", "DROPSHIP")
		if b.Currency != nil {
			c.currency(p, "currency", *b.Currency, "")
		}
		if len(b.Lines) == 0 {
			c.add(join(p, "lines"), "is empty")
		}
		ids := make([]string, len(b.Lines))
		for i, l := range b.Lines {
			lp := idx(join(p, "lines"), i)
			ids[i] = l.ShipmentLineID
			c.required(lp, "order_line_id", l.OrderLineID)
			c.positive(lp, "quantity_shipped", l.QuantityShipped)
		}
		c.unique(join(p, "lines"), "shipment_line_id", ids)
	case e.ReturnReceived != nil:
		c.returnReceived(p, e.ReturnReceived)
	case e.PointsReserved != nil:
		b := e.PointsReserved
		c.required(p, "reservation_id", b.ReservationID)
		c.required(p, "member_id", b.MemberID)
		c.positivePoints(p, "points", b.Points)
		c.nonNegative(join(p, "value"), "amount", b.Value.Amount)
		c.currency(join(p, "value"), "currency", b.Value.Currency, "")
		c.positive(p, "conversion_rate", b.ConversionRate)
		c.requiredTime(p, "reserved_at", b.ReservedAt)
		c.requiredTime(p, "expires_at", b.ExpiresAt)
	case e.RedemptionConfirmed != nil:
		b := e.RedemptionConfirmed
		c.required(p, "reservation_id", b.ReservationID)
		c.required(p, "redemption_id", b.RedemptionID)
		c.required(p, "order_id", b.OrderID)
		c.positivePoints(p, "points", b.Points)
		c.requiredTime(p, "confirmed_at", b.ConfirmedAt)
	case e.RedemptionReleased != nil:
		b := e.RedemptionReleased
		c.required(p, "reservation_id", b.ReservationID)
		c.oneOf(p, "reason", b.Reason, "CHECKOUT_ABANDONED", "PAYMENT_FAILED", "ORDER_CANCELLED_BEFORE_CONFIRM", "TTL_EXPIRED")
		c.requiredTime(p, "released_at", b.ReleasedAt)
	case e.RedemptionRefunded != nil:
		b := e.RedemptionRefunded
		c.required(p, "refund_entry_id", b.RefundEntryID)
		c.required(p, "redemption_id", b.RedemptionID)
		c.required(p, "order_id", b.OrderID)
		c.positivePoints(p, "points", b.Points)
		c.oneOf(p, "reason", b.Reason, "CANCELLATION", "RETURN")
		c.required(p, "source_ref_id", b.SourceRefID)
		c.oneOf(p, "expiry_policy", b.ExpiryPolicy, "RESTORE_ORIGINAL", "NEW_EXPIRY")
		c.requiredTime(p, "refunded_at", b.RefundedAt)
	case e.PointsAccrualPosted != nil:
		b := e.PointsAccrualPosted
		c.required(p, "ledger_entry_id", b.LedgerEntryID)
		c.required(p, "request_id", b.RequestID)
		c.required(p, "order_id", b.OrderID)
		c.required(p, "member_id", b.MemberID)
		c.positivePoints(p, "points", b.Points)
		c.currency(p, "currency", b.Currency, "")
		c.nonNegative(p, "basis_amount", b.BasisAmount)
		c.nonNegative(p, "earn_rate", b.EarnRate)
		c.positive(p, "tier_multiplier", b.TierMultiplier)
		c.requiredTime(p, "posted_at", b.PostedAt)
	case e.PointsActivated != nil:
		b := e.PointsActivated
		c.required(p, "ledger_entry_id", b.LedgerEntryID)
		c.required(p, "order_id", b.OrderID)
		c.positivePoints(p, "points", b.Points)
		c.requiredTime(p, "activated_at", b.ActivatedAt)
	case e.PointsReversed != nil:
		b := e.PointsReversed
		c.required(p, "ledger_entry_id", b.LedgerEntryID)
		c.required(p, "request_id", b.RequestID)
		c.required(p, "order_id", b.OrderID)
		c.required(p, "member_id", b.MemberID)
		c.nonNegativePoints(p, "points", b.Points)
		c.nonNegativePoints(p, "from_pending", b.FromPending)
		c.nonNegativePoints(p, "from_active", b.FromActive)
		c.nonNegativePoints(p, "shortfall_points", b.ShortfallPoints)
		c.oneOf(p, "reason", b.Reason, "RETURN", "POST_SHIPMENT_CANCEL", "MANUAL")
		c.requiredTime(p, "reversed_at", b.ReversedAt)
	case e.ErpSalesOrderCreated != nil:
		b := e.ErpSalesOrderCreated
		c.required(p, "erp_sales_order_id", b.ErpSalesOrderID)
		c.required(p, "order_id", b.OrderID)
		c.currency(p, "currency", b.Currency, "")
		ids := make([]string, len(b.Items))
		for i, it := range b.Items {
			ip := idx(join(p, "item_map"), i)
			ids[i] = it.ErpItem
			c.required(ip, "order_line_id", it.OrderLineID)
			c.positive(ip, "quantity", it.Quantity)
		}
		c.unique(join(p, "item_map"), "erp_item", ids)
	case e.ErpSalesOrderChanged != nil:
		b := e.ErpSalesOrderChanged
		c.required(p, "erp_sales_order_id", b.ErpSalesOrderID)
		c.required(p, "order_id", b.OrderID)
		if b.ErpVersion <= 0 {
			c.add(join(p, "erp_version"), "must be > 0 (the creation is version 0), got %d", b.ErpVersion)
		}
		c.oneOf(p, "status", b.Status, ErpSalesOrderStatuses...)
		c.requiredTime(p, "changed_at", b.ChangedAt)
		if len(b.Items) == 0 {
			c.add(join(p, "item_map"), "is empty (a replica carries every item, rejected ones too)")
		}
		ids := make([]string, len(b.Items))
		for i, it := range b.Items {
			ip := idx(join(p, "item_map"), i)
			ids[i] = it.ErpItem
			c.required(ip, "erp_item", it.ErpItem)
			c.required(ip, "order_line_id", it.OrderLineID)
			c.positive(ip, "quantity", it.Quantity)
			c.nonNegative(ip, "rejected_quantity", it.RejectedQuantity)
			if it.RejectedQuantity.GreaterThan(it.Quantity) {
				c.add(join(ip, "rejected_quantity"), "%s exceeds quantity %s", it.RejectedQuantity, it.Quantity)
			}
		}
		c.unique(join(p, "item_map"), "erp_item", ids)
	case e.InvoicePosted != nil:
		c.billingDocument(p, e.InvoicePosted, "F2", "L2")
	case e.CreditMemoPosted != nil:
		c.billingDocument(p, e.CreditMemoPosted, "G2", "RE")
	case e.BillingDocCancelled != nil:
		b := e.BillingDocCancelled
		c.required(p, "billing_document_id", b.BillingDocumentID)
		c.required(p, "cancels_billing_document_id", b.CancelsBillingDocumentID)
		c.required(p, "order_id", b.OrderID)
		c.requiredTime(p, "cancelled_at", b.CancelledAt)
	case e.LoyaltyCommand != nil:
		c.loyaltyCommand(p, e.LoyaltyCommand)
	}
}

func (c *checker) orderAccepted(p fpath, b *OrderAccepted) {
	c.required(p, "order_id", b.OrderID)
	c.required(p, "customer_id", b.CustomerID)
	c.requiredTime(p, "accepted_at", b.AcceptedAt)
	c.currency(p, "currency", b.Currency, "")
	c.oneOf(p, "rounding_mode", b.RoundingMode, "HALF_EVEN", "HALF_UP", "HALF_DOWN")
	c.oneOf(p, "tax_calculation_mode", b.TaxCalculationMode, "LINE", "UNIT", "DOCUMENT")
	tp := join(p, "totals")
	for _, f := range []struct {
		name string
		v    decimal.Decimal
	}{{"merchandise_net", b.Totals.MerchandiseNet}, {"discount_total", b.Totals.DiscountTotal},
		{"loyalty_redemption_value", b.Totals.LoyaltyRedemptionValue}, {"shipping_net", b.Totals.ShippingNet},
		{"tax_total", b.Totals.TaxTotal}, {"grand_total", b.Totals.GrandTotal}} {
		c.nonNegative(tp, f.name, f.v)
	}
	c.nonNegative(p, "shipping_net", b.ShippingNet)
	c.nonNegative(p, "shipping_tax", b.ShippingTax)
	if b.EarnRate != nil {
		c.nonNegative(p, "earn_rate", *b.EarnRate)
	}
	if b.TierMultiplier != nil {
		c.positive(p, "tier_multiplier", *b.TierMultiplier)
	}
	dids := make([]string, len(b.DiscountApps))
	for i, d := range b.DiscountApps {
		dp := idx(join(p, "discount_applications"), i)
		dids[i] = d.DiscountID
		c.oneOf(dp, "kind", d.Kind, "COUPON", "PROMOTION", "APPEASEMENT")
		c.oneOf(dp, "allocation_method", d.AllocationMethod, "ACROSS", "EACH")
		c.nonNegative(dp, "value", d.Value)
	}
	c.unique(join(p, "discount_applications"), "discount_id", dids)
	for i, t := range b.Tenders {
		c.required(idx(join(p, "tenders"), i), "tender_type", t.TenderType)
		c.nonNegative(idx(join(p, "tenders"), i), "amount", t.Amount)
	}
	if r := b.LoyaltyRedemption; r != nil {
		rp := join(p, "loyalty_redemption")
		c.required(rp, "reservation_id", r.ReservationID)
		c.positivePoints(rp, "points", r.Points)
		c.nonNegative(rp, "value", r.Value)
		c.oneOf(rp, "accounting", r.Accounting, "DISCOUNT", "TENDER")
		if b.LoyaltyMemberID == nil || *b.LoyaltyMemberID == "" {
			c.add(join(p, "loyalty_member_id"), "is required when a loyalty redemption is applied")
		}
	}
	if len(b.Lines) == 0 {
		c.add(join(p, "lines"), "is empty")
	}
	ids := make([]string, len(b.Lines))
	var allocated int64
	anyAlloc := false
	for i, l := range b.Lines {
		lp := idx(join(p, "lines"), i)
		ids[i] = l.OrderLineID
		c.required(lp, "sku", l.SKU)
		c.positive(lp, "quantity", l.Quantity)
		for _, f := range []struct {
			name string
			v    decimal.Decimal
		}{{"unit_list_price", l.UnitListPrice}, {"unit_sale_price", l.UnitSalePrice}, {"line_subtotal", l.LineSubtotal}, {"line_net", l.LineNet}} {
			c.nonNegative(lp, f.name, f.v)
		}
		for j, d := range l.DiscountAllocations {
			c.nonNegative(idx(join(lp, "discount_allocations"), j), "amount", d.Amount)
		}
		for j, t := range l.TaxLines {
			c.nonNegative(idx(join(lp, "tax_lines"), j), "rate", t.Rate)
			c.nonNegative(idx(join(lp, "tax_lines"), j), "amount", t.Amount)
		}
		if a := l.RedemptionAlloc; a != nil {
			anyAlloc = true
			allocated += a.Points
			c.nonNegativePoints(join(lp, "loyalty_redemption_allocation"), "points", a.Points)
			c.nonNegative(join(lp, "loyalty_redemption_allocation"), "value", a.Value)
		}
		c.oneOf(lp, "fulfillment_method", l.FulfillmentMethod, "SHIP", "PICKUP", "SHIP_FROM_STORE", "DIGITAL")
	}
	c.unique(join(p, "lines"), "order_line_id", ids)
	if anyAlloc {
		switch r := b.LoyaltyRedemption; {
		case r == nil:
			c.add(join(p, "lines"), "carry redemption allocations but the order has no loyalty_redemption")
		case allocated != r.Points:
			c.add(join(p, "lines"), "redemption allocations sum to %d points, loyalty_redemption.points is %d", allocated, r.Points)
		}
	}
}

func (c *checker) returnReceived(p fpath, b *ReturnReceived) {
	c.required(p, "return_id", b.ReturnID)
	c.required(p, "order_id", b.OrderID)
	c.requiredTime(p, "received_at", b.ReceivedAt)
	c.oneOf(p, "channel", b.Channel, "STORE", "MAIL")
	if len(b.Lines) == 0 {
		c.add(join(p, "lines"), "is empty")
	}
	ids := make([]string, len(b.Lines))
	for i, l := range b.Lines {
		lp := idx(join(p, "lines"), i)
		ids[i] = l.ReturnLineID
		c.required(lp, "order_line_id", l.OrderLineID)
		c.positive(lp, "quantity_received", l.QuantityReceived)
		c.nonNegative(lp, "quantity_accepted", l.QuantityAccepted)
		if l.QuantityAccepted.GreaterThan(l.QuantityReceived) {
			c.add(join(lp, "quantity_accepted"), "%s exceeds quantity_received %s", l.QuantityAccepted, l.QuantityReceived)
		}
		c.oneOf(lp, "disposition", l.Disposition, "RESTOCK", "DAMAGED", "DESTROY")
	}
	c.unique(join(p, "lines"), "return_line_id", ids)
	if r := b.Refund; r != nil {
		rp := join(p, "refund")
		c.required(rp, "refund_id", r.RefundID)
		c.currency(rp, "currency", r.Currency, "")
		c.documentAmount(rp, "merchandise_net", r.MerchandiseNet, r.Currency)
		c.documentAmount(rp, "tax", r.Tax, r.Currency)
		c.documentAmount(rp, "shipping_refund", r.ShippingRefund, r.Currency)
		c.documentAmount(rp, "return_fee", r.ReturnFee, r.Currency)
		for i, t := range r.Tenders {
			c.documentAmount(idx(join(rp, "tenders"), i), "amount", t.Amount, r.Currency)
		}
	}
}

func (c *checker) billingDocument(p fpath, b *BillingDocument, types ...string) {
	c.required(p, "billing_document_id", b.BillingDocumentID)
	c.oneOf(p, "billing_type", b.BillingType, types...)
	c.required(p, "order_id", b.OrderID)
	c.required(p, "erp_sales_order_id", b.ErpSalesOrderID)
	c.oneOf(p, "accounting_transfer_status", b.AccountingTransferStatus, "NOT_TRANSFERRED", "BLOCKED", "TRANSFERRED")
	c.requiredTime(p, "billing_date", b.BillingDate)
	c.currency(p, "currency", b.Currency, "")
	c.positive(p, "fx_rate", b.FxRate)
	c.documentAmount(p, "net", b.Net, b.Currency)
	c.documentAmount(p, "tax", b.Tax, b.Currency)
	c.documentAmount(p, "gross", b.Gross, b.Currency)
	if !sumEquals(b.Net, b.Tax, b.Gross) {
		c.add(join(p, "gross"), "%s is not net %s + tax %s", b.Gross, b.Net, b.Tax)
	}
	if b.RedemptionValue != nil {
		c.documentAmount(p, "redemption_value", *b.RedemptionValue, b.Currency)
	}
	if len(b.Lines) == 0 {
		c.add(join(p, "lines"), "is empty")
	}
	ids := make([]string, len(b.Lines))
	for i, l := range b.Lines {
		lp := idx(join(p, "lines"), i)
		ids[i] = l.BillingItem
		c.required(lp, "order_line_id", l.OrderLineID)
		c.required(lp, "reference_document", l.ReferenceDocument)
		c.positive(lp, "quantity", l.Quantity)
		c.documentAmount(lp, "net", l.Net, b.Currency)
		c.documentAmount(lp, "tax", l.Tax, b.Currency)
	}
	c.unique(join(p, "lines"), "billing_item", ids)
}

func (c *checker) loyaltyCommand(p fpath, b *LoyaltyCommand) {
	c.oneOf(p, "command_type", string(b.CommandType), string(TypeAccrualRequested), string(TypeReversalRequested), string(TypeRedemptionRefundRequested))
	c.required(p, "order_id", b.OrderID)
	c.required(p, "member_id", b.MemberID)
	c.required(p, "causing_event_id", b.CausingEventID)
	c.required(p, "source_ref_id", b.SourceRefID)
	c.required(p, "policy_version", b.PolicyVersion)
	c.positivePoints(p, "points", b.Points)
	c.nonNegativePoints(p, "entitled_points", b.EntitledPoints)
	c.currency(p, "currency", b.Currency, "")
	c.nonNegative(p, "basis_amount", b.BasisAmount)
	c.nonNegative(p, "earn_rate", b.EarnRate)
	c.nonNegative(p, "tier_multiplier", b.TierMultiplier)
	c.requiredTime(p, "requested_at", b.RequestedAt)
	if want := CommandRequestID(b.OrderID, b.CausingEventID, b.CommandType); b.RequestID != want {
		c.add(join(p, "request_id"), "%q is not CommandRequestID(order_id, causing_event_id, command_type) = %q", b.RequestID, want)
	}
}

// decimalScale is the scale the Avro schemas give a decimal field, by its json name
// (the rule the .avsc files follow: quantities (12,3), rates and multipliers (9,6), fx (18,9),
// everything else money (18,4)).
func decimalScale(field string) int32 {
	switch {
	case strings.Contains(field, "quantity"):
		return 3
	case field == "fx_rate":
		return 9
	case field == "rate" || field == "earn_rate" || field == "tier_multiplier" || field == "conversion_rate":
		return 6
	}
	return 4
}

// scalePlan lists the fields of a struct type that are or contain decimals, so that scales
// walks only those. Built once for every type reachable from Event; read-only afterwards.
type scalePlan struct {
	steps []scaleStep
}

type scaleStep struct {
	index int
	name  string
	kind  scaleKind
	scale int32      // decimal kinds: decimalScale(name)
	elem  *scalePlan // struct kinds
}

type scaleKind int

const (
	scaleDecimal scaleKind = iota
	scaleDecimalPtr
	scaleStruct
	scaleStructPtr
	scaleStructSlice
)

var scalePlans = func() map[reflect.Type]*scalePlan {
	plans := map[reflect.Type]*scalePlan{}
	buildScalePlan(reflect.TypeFor[Event](), plans)
	return plans
}()

// buildScalePlan returns the plan of struct type t, or nil when t holds no decimal.
func buildScalePlan(t reflect.Type, plans map[reflect.Type]*scalePlan) *scalePlan {
	if p, ok := plans[t]; ok {
		return p
	}
	p := &scalePlan{}
	plans[t] = p // a recursive reference sees the plan being built
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		st := scaleStep{index: i, name: name}
		ft := f.Type
		switch {
		case ft == decimalType:
			st.kind, st.scale = scaleDecimal, decimalScale(name)
		case ft.Kind() == reflect.Pointer && ft.Elem() == decimalType:
			st.kind, st.scale = scaleDecimalPtr, decimalScale(name)
		case ft.Kind() == reflect.Struct && ft != timeType:
			st.kind, st.elem = scaleStruct, buildScalePlan(ft, plans)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct && ft.Elem() != timeType:
			st.kind, st.elem = scaleStructPtr, buildScalePlan(ft.Elem(), plans)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem() != timeType:
			st.kind, st.elem = scaleStructSlice, buildScalePlan(ft.Elem(), plans)
		default:
			continue
		}
		if st.elem != nil && len(st.elem.steps) == 0 && st.elem != p {
			continue
		}
		p.steps = append(p.steps, st)
	}
	return p
}

// scales reports every decimal of v (an addressable struct laid out by plan) with more decimal
// places than its schema allows (the Avro encoding would refuse it; rounding is never implied).
func (c *checker) scales(path fpath, v reflect.Value, plan *scalePlan) {
	if plan == nil {
		return
	}
	for _, st := range plan.steps {
		fv := v.Field(st.index)
		switch st.kind {
		case scaleDecimalPtr:
			if fv.IsNil() {
				continue
			}
			c.scale(join(path, st.name), fv.Interface().(*decimal.Decimal), st.scale)
		case scaleDecimal:
			c.scale(join(path, st.name), fv.Addr().Interface().(*decimal.Decimal), st.scale)
		case scaleStruct:
			c.scales(join(path, st.name), fv, st.elem)
		case scaleStructPtr:
			if !fv.IsNil() {
				c.scales(join(path, st.name), fv.Elem(), st.elem)
			}
		case scaleStructSlice:
			for i := 0; i < fv.Len(); i++ {
				c.scales(idx(join(path, st.name), i), fv.Index(i), st.elem)
			}
		}
	}
}

func (c *checker) scale(path fpath, d *decimal.Decimal, scale int32) {
	if !hasAtMostPlaces(*d, scale) {
		c.add(path, "%s has more than %d decimal places", *d, scale)
	}
}

// hasAtMostPlaces reports whether d equals d truncated to places decimal places; without
// allocating when the exponent already says so (every decoded decimal).
func hasAtMostPlaces(d decimal.Decimal, places int32) bool {
	exp := d.Exponent()
	if exp >= -places {
		return true
	}
	if k := -exp - places; k <= 18 && d.NumDigits() <= 18 {
		return d.CoefficientInt64()%pow10Int64[k] == 0
	}
	return d.Equal(d.Truncate(places))
}

// sumEquals reports whether a + b = c, without allocating when the three share an exponent
// and fit in int64 (every decoded document amount).
func sumEquals(a, b, c decimal.Decimal) bool {
	if e := a.Exponent(); e == b.Exponent() && e == c.Exponent() && a.NumDigits() <= 18 && b.NumDigits() <= 18 && c.NumDigits() <= 18 {
		return a.CoefficientInt64()+b.CoefficientInt64() == c.CoefficientInt64()
	}
	return a.Add(b).Equal(c)
}

// MinEventTime and MaxEventTime bound every time of an event: the range of ClickHouse DateTime
// (UInt32 seconds since 1970), outside which a time wraps silently in the sink's tables.
var (
	MinEventTime = time.Unix(0, 0).UTC()
	MaxEventTime = time.Unix(1<<32-1, 0).UTC() // 2106-02-07T06:28:15Z
)

// TimeRangeError lists the times of one event that are out of bounds (Event.CheckTimes).
type TimeRangeError struct {
	EventID  string
	Problems []FieldProblem
}

func (e *TimeRangeError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("event %q has times out of range: %s", e.EventID, strings.Join(parts, "; "))
}

// futureByDesign are the time fields that lie ahead of the event by their meaning (when
// pending points activate, when points or a reservation expire): bounded by the absolute range
// only.
var futureByDesign = map[string]bool{"activates_at": true, "expires_at": true}

// CheckTimes bounds the times of e, so that no single event can move an order's clock (the
// largest occurred_at folded, processors/ledger) far past the time it was produced:
//
//   - every time is within [MinEventTime, MaxEventTime];
//   - occurred_at is at most maxSkew after published_at (nothing occurs after it is published,
//     beyond clock skew between systems);
//   - when recordTime is set (the Kafka record's timestamp), occurred_at, published_at and the
//     body's business times (all but activates_at and expires_at) are at most maxSkew after it.
//
// An event published late (long after it occurred) is fine: only the future is bounded. A zero
// maxSkew checks the absolute range only. It returns nil or a *TimeRangeError.
func (e *Event) CheckTimes(recordTime time.Time, maxSkew time.Duration) error {
	var problems []FieldProblem
	add := func(path, format string, args ...any) {
		problems = append(problems, FieldProblem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	relative := maxSkew > 0 && !recordTime.IsZero() && recordTime.After(MinEventTime)
	limit := recordTime.Add(maxSkew)
	visit := func(path, field []byte, t time.Time) {
		if t.IsZero() {
			return // required times are Validate's
		}
		if t.Before(MinEventTime) || t.After(MaxEventTime) {
			add(string(path), "%s is outside %d–%d (ClickHouse DateTime)", t.UTC().Format(time.RFC3339), MinEventTime.Year(), MaxEventTime.Year())
			return
		}
		if relative && !futureByDesign[string(field)] && t.After(limit) {
			add(string(path), "%s is %s after the record's timestamp %s (allowed skew %s)", t.UTC().Format(time.RFC3339),
				t.Sub(recordTime).Round(time.Second), recordTime.UTC().Format(time.RFC3339), maxSkew)
		}
	}
	bp := timePaths.Get().(*[]byte)
	defer timePaths.Put(bp)
	buf := (*bp)[:0]
	p := append(buf[:0], "occurred_at"...)
	visit(p, p, e.OccurredAt)
	p = append(buf[:0], "published_at"...)
	visit(p, p, e.PublishedAt)
	if maxSkew > 0 && !e.PublishedAt.IsZero() && e.OccurredAt.After(e.PublishedAt.Add(maxSkew)) {
		add("occurred_at", "%s is %s after published_at %s (allowed skew %s)", e.OccurredAt.UTC().Format(time.RFC3339),
			e.OccurredAt.Sub(e.PublishedAt).Round(time.Second), e.PublishedAt.UTC().Format(time.RFC3339), maxSkew)
	}
	if b, n := e.setBody(); n == 1 {
		body := reflect.ValueOf(e).Elem().FieldByIndex(bodyFieldIndex(b.key))
		*bp = walkTimes(append(buf[:0], b.key...), body, visit)[:0] // keep what it grew to
	}
	if len(problems) == 0 {
		return nil
	}
	return &TimeRangeError{EventID: e.EventID, Problems: problems}
}

// walkTimes calls visit for every time.Time reachable from v (structs, pointers, slices),
// with its path in the JSON form and its json field name. The path is a buffer reused along the
// walk (valid only during the call: visit copies it when it keeps it), and the fields of a type
// are listed once (timeFieldsOf), so the walk allocates nothing for a well-formed event.
func walkTimes(path []byte, v reflect.Value, visit func(path, field []byte, t time.Time)) []byte {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			path = walkTimes(path, v.Elem(), visit)
		}
	case reflect.Slice:
		n := len(path)
		for i := range v.Len() {
			path = append(path, '[')
			path = strconv.AppendInt(path, int64(i), 10)
			path = append(path, ']')
			path = walkTimes(path, v.Index(i), visit)
			path = path[:n]
		}
	case reflect.Struct:
		if v.Type() == timeType {
			field := path[bytes.LastIndexByte(path, '.')+1:]
			var t time.Time
			if v.CanAddr() {
				t = *v.Addr().Interface().(*time.Time) // no copy of the struct into an interface
			} else {
				t = v.Interface().(time.Time)
			}
			visit(path, field, t)
			return path
		}
		n := len(path)
		for _, f := range timeFieldsOf(v.Type()) {
			path = append(append(path, '.'), f.name...)
			path = walkTimes(path, v.Field(f.index), visit)
			path = path[:n]
		}
	}
	return path
}

// timeField is an exported, JSON-named field of a struct that may hold a time (a struct,
// pointer or slice).
type timeField struct {
	index int
	name  string
}

var timeFieldCache sync.Map // reflect.Type → []timeField

// timePaths are CheckTimes' path buffers (the walk's path outlives a stack frame).
var timePaths = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

func timeFieldsOf(t reflect.Type) []timeField {
	if fs, ok := timeFieldCache.Load(t); ok {
		return fs.([]timeField)
	}
	var fs []timeField
	for i, name := range jsonFields(t) {
		ft := t.Field(i).Type
		if k := ft.Kind(); (k == reflect.Struct || k == reflect.Pointer || k == reflect.Slice) && reachesTime(ft, nil) {
			fs = append(fs, timeField{index: i, name: name})
		}
	}
	timeFieldCache.Store(t, fs)
	return fs
}

// jsonFields yields the index and JSON name of each exported, JSON-named field of struct t:
// the fields walkTimes walks.
func jsonFields(t reflect.Type) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" && !yield(i, name) {
				return
			}
		}
	}
}

// reachesTime reports whether a value of type t can hold a time.Time (itself, or through
// exported JSON-named fields, pointers and slices): walkTimes skips the fields that cannot,
// so a line array or a decimal is not walked value by value on every event. seen breaks
// cycles of recursive types.
func reachesTime(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t == timeType {
		return true
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return false
	}
	if seen == nil {
		seen = map[reflect.Type]bool{}
	}
	seen[t] = true
	for i := range jsonFields(t) {
		if reachesTime(t.Field(i).Type, seen) {
			return true
		}
	}
	return false
}
