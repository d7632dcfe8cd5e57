package oracle

import (
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// c6Rows returns C6 rows of one code, by order line ("" for order-level rows).
func c6Rows(events []schemas.Event, code string) map[string]ViewRow {
	out := map[string]ViewRow{}
	for _, r := range Compute(events, DefaultPolicy(), day0.AddDate(0, 2, 0)).Views[ViewThreeWayLine] {
		if r.MismatchCode == code {
			out[r.OrderLineID] = r
		}
	}
	return out
}

// TestC6PointsDiff: DOMAIN B.2 scenario B — the stock-out cancels L1×1 and L2×2, so B.1's
// refundable share is floor(640 × 1/2) + floor(360 × 2/3) = 320 + 240 = 560 points. A platform
// that refunds 560 matches; one that refunds nothing, or 500, is 560 or 60 short.
func TestC6PointsDiff(t *testing.T) {
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	cx := cancel("C1", 3, false, map[string]string{"L1": "1", "L2": "2"})
	refund := func(pts int64) schemas.Event {
		at := day0.AddDate(0, 0, 3).Add(10 * time.Minute)
		return schemas.Event{Envelope: env("e-rf", schemas.TypeRedemptionRefunded, at), RedemptionRefunded: &schemas.RedemptionRefunded{
			RefundEntryID: "RFE-1", RedemptionID: "RD-1", OrderID: "O-1001", Points: pts, Reason: "CANCELLATION", SourceRefID: "C1", RefundedAt: at}}
	}
	base := []schemas.Event{o1001(), confirmed(), s1, cx}
	if rows := c6Rows(append(base, refund(560)), "POINTS_DIFF"); len(rows) != 0 {
		t.Fatalf("560 refunded: %+v, want no row", rows)
	}
	for _, c := range []struct {
		name   string
		events []schemas.Event
		points int64
	}{
		{"nothing refunded", base, -560},
		{"500 refunded", append(append([]schemas.Event{}, base...), refund(500)), -60},
	} {
		r, ok := c6Rows(c.events, "POINTS_DIFF")[""]
		if !ok || r.Points != c.points {
			t.Errorf("%s: row %+v (found %v), want an order-level POINTS_DIFF of %d", c.name, r, ok, c.points)
		}
	}
	// Not confirmed by the platform: C3's finding, not C6's.
	if rows := c6Rows([]schemas.Event{o1001(), s1, cx}, "POINTS_DIFF"); len(rows) != 0 {
		t.Fatalf("unconfirmed redemption: %+v, want no row", rows)
	}
}

// TestC6TaxDiff: B.2's first shipment at 20 % VAT, L1 68.80 → 13.76, L2 25.80 → 5.16, the gift
// card exempt. An ERP that taxes L1 14.00 is 0.24 off (allowance ½ cent × (1 billing line + 1));
// L2 and L3 agree.
func TestC6TaxDiff(t *testing.T) {
	d := decimal.RequireFromString
	oa := o1001()
	for i, rate := range []string{"0.20", "0.20", "0"} {
		oa.OrderAccepted.Lines[i].TaxLines = []schemas.TaxLine{{TaxCode: "VAT", Rate: d(rate)}}
	}
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	invoice := func(l1Tax string) schemas.Event {
		at := day0.AddDate(0, 0, 2)
		line := func(item, id, net, tax string) schemas.BillingLine {
			return schemas.BillingLine{BillingItem: item, OrderLineID: id, ReferenceDocument: "S1", Quantity: d("1"), Net: d(net), Tax: d(tax)}
		}
		return schemas.Event{Envelope: env("e-inv", schemas.TypeInvoicePosted, at), InvoicePosted: &schemas.BillingDocument{
			BillingDocumentID: "BD-1", BillingType: "F2", OrderID: "O-1001", Currency: "EUR", AccountingTransferStatus: "TRANSFERRED",
			Lines: []schemas.BillingLine{line("10", "L1", "68.80", l1Tax), line("20", "L2", "25.80", "5.16"), line("30", "L3", "50.00", "0")}}}
	}
	if rows := c6Rows([]schemas.Event{oa, s1, invoice("13.76")}, "TAX_DIFF"); len(rows) != 0 {
		t.Fatalf("correct tax: %+v, want no row", rows)
	}
	// ½ cent per rounded amount on either side: 13.77 is within 0.01
	if rows := c6Rows([]schemas.Event{oa, s1, invoice("13.77")}, "TAX_DIFF"); len(rows) != 0 {
		t.Fatalf("13.77: %+v, want no row within the allowance", rows)
	}
	rows := c6Rows([]schemas.Event{oa, s1, invoice("14.00")}, "TAX_DIFF")
	if r, ok := rows["L1"]; !ok || len(rows) != 1 || !r.Amount.Equal(d("0.24")) {
		t.Fatalf("14.00: %+v, want one TAX_DIFF on L1 of 0.24", rows)
	}
}

// TestC6RedemptionValueDiff: O-1001 redeems 1000 points at 0.01 (10.00: L1 6.40, L2 3.60). Fully
// shipped and invoiced, the ERP's invoice records 10.00 of redemption: no row; 6.40 (L2's share
// not posted): −3.60. Before the order is settled (L3 not invoiced) nothing is compared, nor when
// a live invoice carries no value (a v1 writer) — that is unknown, not 0. After a cancellation of
// L2×2 refunded in whole points (240 of 360 × 2/3 = 240), loyalty keeps 760 points = 7.60 and the
// ERP bills 6.40 + round(3.60 × 1/3) = 7.60.
func TestC6RedemptionValueDiff(t *testing.T) {
	reserved := schemas.Event{Envelope: env("e-res", schemas.TypePointsReserved, day0.Add(-time.Minute)),
		PointsReserved: &schemas.PointsReserved{ReservationID: "R-1", MemberID: "M-77", CheckoutID: "CK-1", Points: 1000,
			Value: schemas.Money{Amount: dec("10.00"), Currency: "EUR"}, ConversionRate: dec("0.01"), ReservedAt: day0.Add(-time.Minute)}}
	invoice := func(id string, rv *decimal.Decimal, lines map[string]string) schemas.Event {
		at := day0.AddDate(0, 0, 2)
		d := &schemas.BillingDocument{BillingDocumentID: id, BillingType: "F2", OrderID: "O-1001", Currency: "EUR", BillingDate: at, RedemptionValue: rv}
		for _, l := range []string{"L1", "L2", "L3"} {
			if q, ok := lines[l]; ok {
				d.Lines = append(d.Lines, schemas.BillingLine{BillingItem: l, OrderLineID: l, ReferenceDocument: "S1", Quantity: dec(q)})
			}
		}
		return schemas.Event{Envelope: env("e-"+id, schemas.TypeInvoicePosted, at), InvoicePosted: d}
	}
	all := map[string]string{"L1": "2", "L2": "3", "L3": "1"}
	s1 := shipment("S1", 1, all)
	base := []schemas.Event{reserved, o1001(), confirmed(), s1}
	with := func(extra ...schemas.Event) []schemas.Event {
		return append(append([]schemas.Event{}, base...), extra...)
	}
	for _, c := range []struct {
		name   string
		events []schemas.Event
		amount string // "" = no row
	}{
		{"settled, equal", with(invoice("90001", ptr(dec("10.00")), all)), ""},
		{"settled, L2's share missing", with(invoice("90001", ptr(dec("6.40")), all)), "-3.6"},
		{"not settled", with(invoice("90001", ptr(dec("6.40")), map[string]string{"L1": "2", "L2": "3"})), ""},
		{"unknown value (v1)", with(invoice("90001", nil, all)), ""},
		{"one of two invoices unknown", with(invoice("90001", ptr(dec("0")), map[string]string{"L1": "2"}),
			invoice("90002", nil, map[string]string{"L2": "3", "L3": "1"})), ""},
	} {
		r, ok := c6Rows(c.events, "REDEMPTION_VALUE_DIFF")[""]
		switch {
		case c.amount == "" && ok:
			t.Errorf("%s: row %+v, want none", c.name, r)
		case c.amount != "" && (!ok || !r.Amount.Equal(dec(c.amount))):
			t.Errorf("%s: row %+v (found %v), want amount %s", c.name, r, ok, c.amount)
		}
	}
	// A cancellation refunded in whole points: settled and equal.
	cx := cancel("C1", 0, false, map[string]string{"L2": "2"})
	s1b := shipment("S1", 1, map[string]string{"L1": "2", "L2": "1", "L3": "1"})
	refund := schemas.Event{Envelope: env("e-rf", schemas.TypeRedemptionRefunded, day0.AddDate(0, 0, 1)), RedemptionRefunded: &schemas.RedemptionRefunded{
		RefundEntryID: "RFE-1", RedemptionID: "RD-1", OrderID: "O-1001", Points: 240, Reason: "CANCELLATION", SourceRefID: "C1", RefundedAt: day0.AddDate(0, 0, 1)}}
	ev := []schemas.Event{reserved, o1001(), confirmed(), cx, s1b, refund,
		invoice("90001", ptr(dec("7.60")), map[string]string{"L1": "2", "L2": "1", "L3": "1"})}
	if rows := c6Rows(ev, "REDEMPTION_VALUE_DIFF"); len(rows) != 0 {
		t.Errorf("cancellation refunded: %+v, want no row", rows)
	}
	if rows := c6Rows(ev[:len(ev)-2], "REDEMPTION_VALUE_DIFF"); len(rows) != 0 {
		t.Errorf("no invoice yet: %+v, want no row (not settled)", rows)
	}
}

func ptr[T any](v T) *T { return &v }
