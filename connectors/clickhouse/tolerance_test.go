package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// TestThreeWayToleranceIsPerBillingLine: C6 AMOUNT_DIFF allows policy.amount_tolerance (0.005,
// ½ cent: DOMAIN B.3) per live billing line behind a line's ERP net, as the ledger's
// BILLED_AMOUNT_DIFF does. A line billed by one invoice line is within tolerance 0.005 off and
// an AMOUNT_DIFF 0.006 off (the old flat 0.01 let that pass); a line billed by two invoice lines
// may be 0.010 off.
func TestThreeWayToleranceIsPerBillingLine(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	db := testDB(t, conn)
	fixture(t, conn, db)
	ctx := context.Background()
	tables, _ := Tables()
	cols := tables["billing_lines"].Columns

	// lineBilledBy finds a cleanly billed line (no C6 row, quantities agree) with n live billing lines.
	lineBilledBy := func(n int) (orderID, lineID, doc, item string, net decimal.Decimal) {
		t.Helper()
		var netS string
		if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT order_id, order_line_id, any(billing_document_id), any(billing_item), toString(any(net))
			FROM %[1]s.v_live_billing_lines
			WHERE (order_id, order_line_id) IN (SELECT order_id, order_line_id FROM %[1]s.v_line_facts
				WHERE shipped_qty = invoiced_qty AND shipped_qty > 0 AND returned_qty = 0 AND credited_qty = 0)
			AND (order_id, order_line_id) NOT IN (SELECT order_id, order_line_id FROM %[1]s.recon_three_way_line)
			GROUP BY order_id, order_line_id HAVING count() = %[2]d ORDER BY order_id, order_line_id LIMIT 1`, db, n)).
			Scan(&orderID, &lineID, &doc, &item, &netS); err != nil {
			t.Fatalf("no cleanly billed line with %d billing lines in the fixture: %v", n, err)
		}
		return orderID, lineID, doc, item, decimal.RequireFromString(netS)
	}
	step := 0
	// rebill re-inserts one billing line with net = original + delta (a later version wins) and
	// returns the line's C6 codes.
	rebill := func(orderID, lineID, doc, item string, net, delta decimal.Decimal) []string {
		t.Helper()
		step++
		sel := make([]string, len(cols))
		for i, c := range cols {
			switch c {
			case "version":
				sel[i] = fmt.Sprintf("version + %d", step)
			case "net":
				sel[i] = fmt.Sprintf("toDecimal64('%s', 4)", net.Add(delta).StringFixed(4))
			default:
				sel[i] = c
			}
		}
		if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s.billing_lines (%[2]s) SELECT %[3]s FROM %[1]s.billing_lines FINAL
			WHERE order_id = '%[4]s' AND billing_document_id = '%[5]s' AND billing_item = '%[6]s'`,
			db, strings.Join(cols, ", "), strings.Join(sel, ", "), orderID, doc, item)); err != nil {
			t.Fatal(err)
		}
		rows, err := NativeSession(conn).Query(ctx, fmt.Sprintf(`SELECT mismatch_code FROM %s.recon_three_way_line
			WHERE order_id = '%s' AND order_line_id = '%s' ORDER BY mismatch_code`, db, orderID, lineID))
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, r := range rows {
			codes = append(codes, r[0])
		}
		return codes
	}
	d := decimal.RequireFromString
	o, l, doc, item, net := lineBilledBy(1)
	if codes := rebill(o, l, doc, item, net, d("0.005")); len(codes) != 0 {
		t.Errorf("line %s, one billing line 0.005 off: C6 %v, want nothing (within ½ cent)", l, codes)
	}
	if codes := rebill(o, l, doc, item, net, d("0.006")); len(codes) != 1 || codes[0] != "AMOUNT_DIFF" {
		t.Errorf("line %s, one billing line 0.006 off: C6 %v, want AMOUNT_DIFF", l, codes)
	}
	o, l, doc, item, net = lineBilledBy(2)
	if codes := rebill(o, l, doc, item, net, d("0.010")); len(codes) != 0 {
		t.Errorf("line %s, two billing lines 0.010 off: C6 %v, want nothing (½ cent per line)", l, codes)
	}
	if codes := rebill(o, l, doc, item, net, d("-0.011")); len(codes) != 1 || codes[0] != "AMOUNT_DIFF" {
		t.Errorf("line %s, two billing lines 0.011 short: C6 %v, want AMOUNT_DIFF", l, codes)
	}
}
