package generate

import (
	"bytes"
	"encoding/json"
	"github.com/shopspring/decimal"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

func gen(t testing.TB, o Options) *Traffic {
	t.Helper()
	tr, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// asOf is well after any generated business time.
// asOf is an hour after the traffic's end, or the first hour of the next month when that is
// later: C7 (loyalty liability) lists closed months only, so the month of the traffic must end.
func asOf(tr *Traffic) time.Time {
	end := tr.End.UTC()
	next := time.Date(end.Year(), end.Month()+1, 1, 1, 0, 0, 0, time.UTC)
	return maxTime(end.Add(time.Hour), next)
}

func viewCounts(x *oracle.Expected) map[string]int {
	out := map[string]int{}
	for view, rows := range x.Views {
		for _, r := range rows {
			out[view+"/"+r.MismatchCode]++
		}
	}
	return out
}

func TestCleanRunHasEmptyViews(t *testing.T) {
	tr := gen(t, Options{Seed: 1, Orders: 2000})
	x := tr.Expected(asOf(tr))
	if c := viewCounts(x); len(c) != 0 {
		for view, rows := range x.Views {
			for i, r := range rows {
				if i < 3 {
					t.Logf("%s %+v", view, r)
				}
			}
		}
		t.Fatalf("clean run expects view rows: %v", c)
	}
	if len(tr.DeadLetters()) != 0 || len(tr.Faults()) != 0 {
		t.Fatalf("clean run has %d dead letters, %d faulty orders", len(tr.DeadLetters()), len(tr.Faults()))
	}
	for _, r := range tr.Records {
		if r.Duplicate || r.Malformed != "" {
			t.Fatalf("clean run has a duplicate or malformed record: %+v", r)
		}
	}
	var accr, rev, ref int
	for _, c := range x.Commands {
		switch c.Type {
		case schemas.TypeAccrualRequested:
			accr++
		case schemas.TypeReversalRequested:
			rev++
		default:
			ref++
		}
	}
	t.Logf("%d records, %d orders, commands: %d accruals, %d reversals, %d refunds; totals %+v",
		len(tr.Records), len(x.Orders), accr, rev, ref, x.Totals)
	if accr == 0 || rev == 0 || ref == 0 {
		t.Fatalf("traffic too poor: %d accruals, %d reversals, %d refunds", accr, rev, ref)
	}
}

func TestSameSeedSameTraffic(t *testing.T) {
	o := Options{Seed: 42, Orders: 300, DuplicateRate: 0.1, OutOfOrderRate: 0.1, LateRate: 0.1, MalformedRate: 0.1,
		Faults: Faults{MissingInvoice: 0.1, WrongMultiplier: 0.1, AbandonedReservation: 0.1}}
	a, b := encode(t, gen(t, o)), encode(t, gen(t, o))
	if !bytes.Equal(a, b) {
		t.Fatal("same options gave different traffic")
	}
	o.Seed = 43
	if c := encode(t, gen(t, o)); bytes.Equal(a, c) {
		t.Fatal("different seeds gave the same traffic")
	}
}

// encode renders the whole stream (JSON of each record) for byte comparison.
func encode(t *testing.T, tr *Traffic) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range tr.Records {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestDeliveryKnobsKeepContent: duplicates, shuffling, lateness and malformed extras change how
// records arrive, never what the pipeline must conclude.
func TestDeliveryKnobsKeepContent(t *testing.T) {
	clean := gen(t, Options{Seed: 7, Orders: 800})
	noisy := gen(t, Options{Seed: 7, Orders: 800, DuplicateRate: 0.2, OutOfOrderRate: 0.3, LateRate: 0.2, MalformedRate: 0.3})
	at := asOf(noisy)
	x, y := clean.Expected(at), noisy.Expected(at)
	if len(x.Commands) != len(y.Commands) {
		t.Fatalf("commands: clean %d, noisy %d", len(x.Commands), len(y.Commands))
	}
	for id, c := range x.Commands {
		if d, ok := y.Commands[id]; !ok || d.Points != c.Points || d.Type != c.Type {
			t.Fatalf("command %s differs: %+v vs %+v", id, c, d)
		}
	}
	if c := viewCounts(y); len(c) != 0 {
		t.Fatalf("delivery noise alone expects view rows: %v", c)
	}

	var dups, late, beforeOrder, malformed int
	firstAt := map[string]int{} // order → index of its OrderAccepted
	for i, r := range noisy.Records {
		if r.Event != nil && r.Event.OrderAccepted != nil && !r.Duplicate {
			firstAt[r.Key] = i
		}
	}
	for i, r := range noisy.Records {
		switch {
		case r.Malformed != "":
			malformed++
		case r.Duplicate:
			dups++
		}
		if r.Event != nil && r.Event.PublishedAt.Sub(r.Event.OccurredAt) >= 24*time.Hour {
			late++
		}
		if oa, ok := firstAt[r.Key]; ok && i < oa && r.Event != nil && r.Malformed == "" {
			beforeOrder++
		}
	}
	t.Logf("%d records: %d duplicates, %d late, %d delivered before their OrderAccepted, %d malformed",
		len(noisy.Records), dups, late, beforeOrder, malformed)
	if dups == 0 || late == 0 || beforeOrder == 0 || malformed == 0 {
		t.Fatal("a delivery knob had no effect")
	}
	// Cancellations, shipments and returns of an order arrive in canonical order (first copies).
	last := map[string]time.Time{}
	for _, r := range noisy.Records {
		if r.Event == nil || r.Duplicate || r.Malformed != "" || !movesPoints(r.Event) {
			continue
		}
		if r.Event.OccurredAt.Before(last[r.Key]) {
			t.Fatalf("%s: %s %s delivered after a later event that moves points", r.Key, r.Event.EventType, r.Event.EventID)
		}
		last[r.Key] = r.Event.OccurredAt
	}
	classes := map[schemas.ErrorClass]int{}
	events := map[string]bool{}
	for _, e := range noisy.Events() {
		events[e.EventID] = true
	}
	for _, d := range noisy.DeadLetters() {
		classes[d.Class]++
		if d.EventID != "" && events[d.EventID] {
			t.Fatalf("dead letter %s is also a valid event", d.EventID)
		}
	}
	if len(classes) != 3 {
		t.Fatalf("malformed classes %v, want all three", classes)
	}
}

// faultViews: for each fault, the view rows it must cause (at least one of each) and those it
// may cause as well (Options.Faults). C6 AMOUNT_DIFF appears only where the
// quantities agree, so no quantity fault adds it.
var faultViews = map[Fault]struct{ must, may []string }{
	FaultMissingErpOrder: {[]string{"recon_orders_awaiting_erp/NOT_REPLICATED"}, nil},
	// the ERP holds a unit more: a cancelled line of it stays over-open after the replica
	FaultWrongErpQty:           {[]string{"recon_orders_awaiting_erp/QTY_DIFF"}, []string{openInERP}},
	FaultMissingInvoice:        {[]string{"recon_shipments_not_invoiced/NOT_BILLED", "recon_three_way_line/SHIPPED_NOT_INVOICED"}, nil},
	FaultInvoiceNotTransferred: {[]string{"recon_shipments_not_invoiced/BILLED_NOT_POSTED"}, nil},
	FaultShortInvoice:          {[]string{"recon_shipments_not_invoiced/PARTIALLY_BILLED", "recon_three_way_line/SHIPPED_NOT_INVOICED"}, nil},
	FaultMissingCreditMemo:     {[]string{"recon_three_way_line/RETURNED_NOT_CREDITED", "recon_refunds_vs_credit_memos/REFUND_NOT_CREDITED"}, nil},
	FaultWithheldConfirmation:  {[]string{"recon_redemptions_pending_confirmation/ORDER_ACCEPTED_NOT_CONFIRMED"}, nil},
	FaultAbandonedReservation:  {[]string{"recon_redemptions_pending_confirmation/OPEN_PAST_TTL"}, nil},
	// a return's reversal finds no pending entry of the withheld accrual and takes ACTIVE points
	// posted ≠ entitled for the member at the month end: C7 LIABILITY_DIFF beside the order's rows
	FaultWithheldAccrual: {[]string{"recon_accrual_vs_fulfilment/MEMBER_ORDER_NO_ACCRUAL", "recon_accrual_vs_fulfilment/UNDER_ACCRUED",
		liabilityDiff}, []string{"recon_returns_not_reflected_in_loyalty/REVERSED_AFTER_ACTIVATION"}},
	FaultWrongMultiplier:  {[]string{"recon_accrual_vs_fulfilment/WRONG_MULTIPLIER", "recon_accrual_vs_fulfilment/OVER_ACCRUED", liabilityDiff}, nil},
	FaultWithheldReversal: {[]string{"recon_returns_not_reflected_in_loyalty/REVERSAL_MISSING", "recon_accrual_vs_fulfilment/OVER_ACCRUED", liabilityDiff}, nil},
	FaultShortReversal:    {[]string{"recon_returns_not_reflected_in_loyalty/REVERSAL_SHORT", "recon_accrual_vs_fulfilment/OVER_ACCRUED", liabilityDiff}, nil},
	// the platform keeps the value of points it should have refunded: the ERP's credit memo
	// gave it back (REDEMPTION_VALUE_DIFF once settled)
	FaultWithheldRefund: {[]string{"recon_returns_not_reflected_in_loyalty/REFUND_MISSING", pointsDiff}, []string{redemptionValueDiff}},
	// activated a day after posting: active at the month end while the lock runs → ACTIVE_BEFORE_DUE
	FaultEarlyActivation: {[]string{"recon_returns_not_reflected_in_loyalty/REVERSED_AFTER_ACTIVATION",
		"recon_loyalty_liability/ACTIVE_BEFORE_DUE"}, nil},
	FaultAccrualBeforeShipment: {[]string{"recon_accrual_vs_fulfilment/ACCRUED_BEFORE_SHIPMENT"}, nil},
	FaultPointsOnIneligible:    {[]string{"recon_accrual_vs_fulfilment/POINTS_ON_INELIGIBLE", "recon_accrual_vs_fulfilment/OVER_ACCRUED", liabilityDiff}, nil},
	// a back-ordered unit leaves room for billed cancelled units: then it is INVOICED_NOT_SHIPPED
	FaultInvoicedCancelledLine: {[]string{"recon_three_way_line/INVOICED_CANCELLED_LINE"}, []string{"recon_three_way_line/INVOICED_NOT_SHIPPED"}},
	FaultDuplicateBilling: {[]string{"recon_three_way_line/DUPLICATE_BILLING", "recon_three_way_line/INVOICED_NOT_SHIPPED",
		"recon_shipments_not_invoiced/OVER_BILLED"}, nil},
	FaultCurrencyDiff: {[]string{"recon_three_way_line/CURRENCY_DIFF"}, nil},
	// the credited tax is short: C6 TAX_DIFF where the line's quantities agree
	FaultCreditMemoWithoutTax: {[]string{"recon_refunds_vs_credit_memos/REFUND_AMOUNT_DIFF"}, []string{"recon_three_way_line/TAX_DIFF"}},
	FaultTaxDiff:              {[]string{"recon_three_way_line/TAX_DIFF"}, nil},
	FaultWithheldCxlRefund:    {[]string{pointsDiff}, []string{redemptionValueDiff}},
	// only the members' balances differ: no order-level row
	FaultAccrualOtherMember:  {[]string{liabilityDiff}, nil},
	FaultErpOpenAfterCancel:  {[]string{openInERP}, nil},
	FaultRedemptionValueDiff: {[]string{redemptionValueDiff}, nil},
}

const redemptionValueDiff = "recon_three_way_line/REDEMPTION_VALUE_DIFF"

const openInERP = "recon_orders_awaiting_erp/CANCELLED_IN_OMS_OPEN_IN_ERP"

const (
	liabilityDiff = "recon_loyalty_liability/LIABILITY_DIFF"
	pointsDiff    = "recon_three_way_line/POINTS_DIFF" // redemption refunded ≠ the cancelled/returned share
)

func TestEachFaultProducesItsRows(t *testing.T) {
	for _, f := range AllFaults() {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			var faults Faults
			faults.Set(f, 0.5)
			tr := gen(t, Options{Seed: 11, Orders: 1500, Faults: faults})
			x := tr.Expected(asOf(tr))
			faulty := tr.Faults()
			if len(faulty) == 0 {
				t.Fatal("fault never applied")
			}
			allowed := map[string]bool{}
			for _, k := range append(faultViews[f].must, faultViews[f].may...) {
				allowed[k] = true
			}
			counts := viewCounts(x)
			for _, k := range faultViews[f].must {
				if counts[k] == 0 {
					t.Errorf("no %s rows (counts %v)", k, counts)
				}
			}
			withRows := map[string]bool{}
			faultyMembers, memberOf := map[string]bool{}, map[string]string{}
			for _, o := range tr.Orders {
				memberOf[o.OrderID] = o.MemberID
				if len(o.Faults) > 0 {
					faultyMembers[o.MemberID] = true
				}
			}
			for view, rows := range x.Views {
				for _, r := range rows {
					if !allowed[view+"/"+r.MismatchCode] {
						t.Errorf("unexpected row %s/%s %+v", view, r.MismatchCode, r)
					}
					if r.OrderID != "" && faulty[r.OrderID] == nil {
						t.Errorf("row for an order without faults: %+v", r)
					}
					// C7 rows are per member: the member of a faulty order, or (accrual posted to
					// another member) any member
					if r.MemberID != "" && !faultyMembers[r.MemberID] && f != FaultAccrualOtherMember {
						t.Errorf("row for a member without faulty orders: %+v", r)
					}
					withRows[r.OrderID] = true
					if r.MemberID != "" {
						withRows["member:"+r.MemberID] = true
					}
				}
			}
			if f == FaultAbandonedReservation { // OPEN_PAST_TTL rows have no order: count them
				if n := counts["recon_redemptions_pending_confirmation/OPEN_PAST_TTL"]; n != len(faulty) {
					t.Errorf("%d OPEN_PAST_TTL rows for %d abandoned reservations", n, len(faulty))
				}
			} else {
				missed := 0
				for id := range faulty {
					if !withRows[id] && (f != FaultAccrualOtherMember || !withRows["member:"+memberOf[id]]) {
						missed++
					}
				}
				// A fault can be masked by what else happens to the order (an accrual withheld, then
				// everything returned: nothing is owed); it must stay the exception.
				if missed*10 > len(faulty) {
					t.Errorf("%d of %d faulty orders have no row", missed, len(faulty))
				}
			}
			t.Logf("%d faulty orders; rows %v", len(faulty), counts)
		})
	}
}

// TestGeneratorGuarantees checks what the contracts rely on: Σ line coupons = header, redemption
// allocations sum to the header with each line ≥ its quantity, every eligible unit worth ≥ 1,
// documents whose totals are the sums of their lines.
func TestGeneratorGuarantees(t *testing.T) {
	tr := gen(t, Options{Seed: 5, Orders: 3000})
	one := decimal.NewFromInt(1)
	for _, e := range tr.Events() {
		switch {
		case e.OrderAccepted != nil:
			a := e.OrderAccepted
			coupon, pts := decimal.Zero, int64(0)
			net := decimal.Zero
			for _, l := range a.Lines {
				for _, d := range l.DiscountAllocations {
					coupon = coupon.Add(d.Amount)
				}
				if l.RedemptionAlloc != nil {
					pts += l.RedemptionAlloc.Points
					if l.RedemptionAlloc.Points < l.Quantity.IntPart() {
						t.Fatalf("%s: line %s redemption %d points < quantity %s", a.OrderID, l.OrderLineID, l.RedemptionAlloc.Points, l.Quantity)
					}
				}
				if !l.IsGiftCard && l.LineNet.Div(l.Quantity).LessThan(one) {
					t.Fatalf("%s: line %s eligible unit worth %s < 1", a.OrderID, l.OrderLineID, l.LineNet.Div(l.Quantity))
				}
				net = net.Add(l.LineNet).Add(l.TaxLines[0].Amount)
			}
			if !coupon.Equal(a.Totals.DiscountTotal) {
				t.Fatalf("%s: Σ coupon allocations %s ≠ header %s", a.OrderID, coupon, a.Totals.DiscountTotal)
			}
			if a.LoyaltyRedemption != nil && pts != a.LoyaltyRedemption.Points {
				t.Fatalf("%s: Σ redemption allocations %d ≠ header %d", a.OrderID, pts, a.LoyaltyRedemption.Points)
			}
			if !net.Add(a.ShippingNet).Add(a.ShippingTax).Equal(a.Totals.GrandTotal) {
				t.Fatalf("%s: grand total %s ≠ Σ lines + shipping", a.OrderID, a.Totals.GrandTotal)
			}
		case e.InvoicePosted != nil || e.CreditMemoPosted != nil:
			d := e.InvoicePosted
			if d == nil {
				d = e.CreditMemoPosted
			}
			n, x := decimal.Zero, decimal.Zero
			for _, l := range d.Lines {
				n, x = n.Add(l.Net), x.Add(l.Tax)
			}
			if !n.Equal(d.Net) || !x.Equal(d.Tax) || !d.Gross.Equal(n.Add(x)) {
				t.Fatalf("%s: document totals ≠ Σ lines", d.BillingDocumentID)
			}
		}
		if e.OccurredAt.Truncate(time.Microsecond) != e.OccurredAt || e.PublishedAt.Before(e.OccurredAt) {
			t.Fatalf("event %s: times not exact micros or published before occurred", e.EventID)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Orders: -1}, {DuplicateRate: 1.5}, {Faults: Faults{WrongErpQty: -0.1}}, {Rate: -1}} {
		if _, err := Generate(o); err == nil {
			t.Errorf("Generate(%+v) accepted invalid options", o)
		}
	}
}

func TestActivationsOverALongSpan(t *testing.T) {
	tr := gen(t, Options{Seed: 3, Orders: 400, Span: 60 * 24 * time.Hour})
	n := 0
	for _, e := range tr.Events() {
		if e.PointsActivated != nil {
			n++
			if e.PointsActivated.Points <= 0 {
				t.Fatalf("activation of %d points", e.PointsActivated.Points)
			}
		}
	}
	if n == 0 {
		t.Fatal("no PointsActivated over 60 days with a 30-day lock")
	}
}

func BenchmarkGenerate10k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(Options{Seed: 1, Orders: 10_000}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckoutKeyedReservations: a redemption reserved before the order number exists travels
// without order_id under checkout:<checkout_id> (DOMAIN A.1); its order references it by
// reservation_id, and C3 ages the unconfirmed redemption from the reservation, not from the
// order's acceptance.
func TestCheckoutKeyedReservations(t *testing.T) {
	tr := gen(t, Options{Seed: 3, Orders: 400, CheckoutReservationRate: 1, Faults: Faults{WithheldConfirmation: 0.5}})
	reservedAt := map[string]time.Time{}
	for _, r := range tr.Records {
		if r.Event == nil || r.Event.PointsReserved == nil {
			continue
		}
		p := r.Event.PointsReserved
		if p.OrderID != nil || r.Key != "checkout:"+p.CheckoutID {
			t.Fatalf("reservation %s: order_id %v, key %q; want none and checkout:%s", p.ReservationID, p.OrderID, r.Key, p.CheckoutID)
		}
		reservedAt[p.ReservationID] = p.ReservedAt
	}
	rows := 0
	for _, r := range tr.Expected(asOf(tr)).Views["recon_redemptions_pending_confirmation"] {
		if r.MismatchCode != "ORDER_ACCEPTED_NOT_CONFIRMED" {
			continue
		}
		rows++
		if at, ok := reservedAt[r.ReservationID]; !ok || !r.BusinessTime.Equal(at) {
			t.Errorf("%s/%s aged from %s, want the reservation's %s", r.ReservationID, r.OrderID, r.BusinessTime, at)
		}
	}
	if rows == 0 || len(reservedAt) == 0 {
		t.Fatalf("%d reservations, %d unconfirmed rows: the test proves nothing", len(reservedAt), rows)
	}
}

// erp v2: clean traffic sends a sales-order replica after every cancellation of a replicated
// order (REJECTED for a whole-order cancellation, the cancelled units rejected), which the
// oracle finds consistent; the ErpOpenAfterCancel fault withholds it, which C1 reports per
// cancelled line and, for orders cancelled whole, at order level.
func TestErpReplicaAfterCancellation(t *testing.T) {
	clean := gen(t, Options{Seed: 11, Orders: 1500})
	cancelled, replicas, rejected := map[string]bool{}, map[string]*schemas.ErpSalesOrderChanged{}, 0
	for _, e := range clean.Events() {
		switch {
		case e.OrderLinesCancelled != nil:
			cancelled[e.OrderLinesCancelled.OrderID] = true
		case e.ErpSalesOrderChanged != nil:
			r := e.ErpSalesOrderChanged
			if replicas[r.OrderID] != nil {
				t.Fatalf("two replicas for %s", r.OrderID)
			}
			replicas[r.OrderID] = r
			if r.Status == "REJECTED" {
				rejected++
			}
		}
	}
	if len(replicas) != len(cancelled) || rejected == 0 || rejected == len(replicas) {
		t.Fatalf("%d replicas (%d REJECTED) for %d cancelled orders", len(replicas), rejected, len(cancelled))
	}
	for id := range cancelled {
		if replicas[id] == nil {
			t.Fatalf("cancelled order %s has no replica", id)
		}
	}
	if n := viewCounts(clean.Expected(asOf(clean)))[openInERP]; n != 0 {
		t.Fatalf("clean traffic: %d %s rows", n, openInERP)
	}

	faulty := gen(t, Options{Seed: 11, Orders: 1500, Faults: Faults{ErpOpenAfterCancel: 1}})
	orderLevel, lineLevel := 0, 0
	for _, r := range faulty.Expected(asOf(faulty)).Views[oracle.ViewOrdersAwaitingERP] {
		if r.MismatchCode != "CANCELLED_IN_OMS_OPEN_IN_ERP" {
			continue
		}
		if r.OrderLineID == "" {
			orderLevel++
		} else {
			lineLevel++
		}
	}
	if orderLevel == 0 || lineLevel == 0 || orderLevel+lineLevel < len(cancelled) {
		t.Fatalf("%d order-level and %d line rows for %d orders with a cancellation", orderLevel, lineLevel, len(cancelled))
	}
	for _, e := range faulty.Events() {
		if e.ErpSalesOrderChanged != nil {
			t.Fatal("the fault sent a replica")
		}
	}
}
