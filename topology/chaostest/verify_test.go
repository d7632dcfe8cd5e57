package chaostest

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology/internal/e2e"
)

// verdict is what the oracles found after one fault segment (cumulative over all traffic sent):
// the checks every suite shares (e2e.Verdict) and the sink's.
type verdict struct {
	e2e.Verdict
	viewDiffs int           // ClickHouse view rows missing or unexpected
	aborted   int           // output records only a read_uncommitted consumer sees (aborted writes)
	abortedBy map[int64]int // the same per producer id, since the start
}

func (v *verdict) ok() bool { return v.Verdict.OK() && v.viewDiffs == 0 }

// waitSunk waits until the sink group has committed past every input record and every committed
// data record of the outputs (aborted records and markers never reach it).
func (h *harness) waitSunk(out e2e.Outputs, limit time.Duration) error {
	want := map[string]map[int32]int64{}
	need := func(topic string, p int32, off int64) {
		if want[topic] == nil {
			want[topic] = map[int32]int64{}
		}
		if off > want[topic][p] {
			want[topic][p] = off
		}
	}
	for tp, recs := range map[schemas.Topic][]e2e.Record{schemas.TopicCommands: out.Commands, schemas.TopicDLQ: out.DLQ, schemas.TopicChangelog: out.Changelog} {
		for _, r := range recs {
			need(h.Names[tp], r.Partition, r.Offset+1)
		}
	}
	adm := h.Admin()
	defer adm.Close()
	ends, err := adm.ListEndOffsets(h.Ctx, h.Inputs()...)
	if err != nil {
		return err
	}
	ends.Each(func(o kadm.ListedOffset) { need(o.Topic, o.Partition, o.Offset) })
	deadline := time.Now().Add(limit)
	behind := ""
	for time.Now().Before(deadline) {
		committed, err := adm.FetchOffsets(h.Ctx, h.sink)
		behind = ""
		if err != nil {
			behind = err.Error()
		} else {
			for topic, ps := range want {
				for p, off := range ps {
					if c, ok := committed.Lookup(topic, p); (!ok && off > 0) || c.At < off {
						behind = fmt.Sprintf("%s[%d] committed %d, want %d", topic, p, c.At, off)
					}
				}
			}
		}
		if behind == "" {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("sink group %s did not catch up within %s: %s", h.sink, limit, behind)
}

// verify runs every oracle over everything sent so far.
func (h *harness) verify(all []generate.Record, policy oracle.Policy, out e2e.Outputs) verdict {
	var v verdict
	tr := &generate.Traffic{Records: all}
	tr.Options.Policy = policy
	asOf := time.Now()
	ex := tr.Expected(asOf)
	sent, bySource := h.prod.SentSoFar()
	c := h.Check(&v.Verdict, all, ex, sent, bySource, out)
	v.aborted = out.Uncommitted - len(out.Commands) - len(out.DLQ) - len(out.Changelog)
	v.abortedBy = out.AbortedBy
	// C4 and C5 (POINTS_ON_INELIGIBLE) join postings to commands by request id: they follow the
	// commands the run emitted (their shares are held exact above), not the canonical ones
	// (DESIGN.md invariant 13).
	issuedViews := oracle.ViewsFor(tr.Events(), policy, asOf, c.Issued)
	ex.Views[oracle.ViewReturnsNotInLoyalty] = issuedViews[oracle.ViewReturnsNotInLoyalty]
	ex.Views[oracle.ViewAccrualVsFulfilment] = issuedViews[oracle.ViewAccrualVsFulfilment]
	h.checkViews(&v, ex, c.Gross)
	return v
}

// checkViews compares every ClickHouse reconciliation view with the oracle's rows, the point and
// money totals, and count() = uniqExact(row_id) after FINAL in every table (O4).
func (h *harness) checkViews(v *verdict, ex *oracle.Expected, gross [3]int64) {
	got, err := h.viewRows()
	if err != nil {
		v.Problem("read views: %v", err)
		return
	}
	text := func(rows map[string][]oracle.ViewRow) map[string]int {
		m := map[string]int{}
		for _, rs := range rows {
			for _, r := range rs {
				m[fmt.Sprintf("%s pts=%d amt=%s", r.Key(), r.Points, r.Amount.StringFixed(4))]++
			}
		}
		return m
	}
	g, w := text(got), text(ex.Views)
	for x, n := range w {
		if g[x] < n {
			v.viewDiffs += n - g[x]
			v.Problem("view row missing from ClickHouse: %s", x)
		}
	}
	for x, n := range g {
		if w[x] < n {
			v.viewDiffs += n - w[x]
			v.Problem("unexpected view row in ClickHouse: %s", x)
		}
	}
	h.checkTotals(v, ex.Totals, gross)
	tables, err := clickhouse.Tables()
	if err != nil {
		v.Problem("tables: %v", err)
		return
	}
	for name := range tables {
		if name == "recon_config" {
			continue
		}
		var n, u uint64
		if err := h.ch.QueryRow(h.Ctx, fmt.Sprintf("SELECT count(), uniqExact(row_id) FROM %s.%s FINAL", h.db, name)).Scan(&n, &u); err != nil {
			v.Problem("%s: %v", name, err)
			continue
		}
		if n != u {
			v.Duplicated += int(n - u)
			v.Problem("%s: count() %d != uniqExact(row_id) %d after FINAL", name, n, u)
		}
	}
}

// viewRows reads every reconciliation view as oracle rows (keys, code, points, amount); the
// queries are those of connectors/clickhouse's acceptance test.
func (h *harness) viewRows() (map[string][]oracle.ViewRow, error) {
	out := map[string][]oracle.ViewRow{}
	q := map[string]string{
		oracle.ViewOrdersAwaitingERP:    "SELECT order_id, order_line_id, mismatch_code, toInt64(0), toString(toDecimal64(0, 4)), '' FROM %s.recon_orders_awaiting_erp",
		oracle.ViewShipmentsNotInvoiced: "SELECT shipment_id, order_line_id, mismatch_code, toInt64(0), toString(amount), '' FROM %s.recon_shipments_not_invoiced",
		oracle.ViewRedemptionsPending:   "SELECT reservation_id, order_id, mismatch_code, points, toString(toDecimal64(0, 4)), '' FROM %s.recon_redemptions_pending_confirmation",
		oracle.ViewReturnsNotInLoyalty:  "SELECT return_id, order_line_id, mismatch_code, points, toString(toDecimal64(0, 4)), order_id FROM %s.recon_returns_not_reflected_in_loyalty",
		oracle.ViewAccrualVsFulfilment:  "SELECT order_id, '', mismatch_code, points, toString(toDecimal64(0, 4)), '' FROM %s.recon_accrual_vs_fulfilment",
		oracle.ViewThreeWayLine:         "SELECT order_id, order_line_id, mismatch_code, points, toString(amount), '' FROM %s.recon_three_way_line",
		oracle.ViewRefundSettlement:     "SELECT return_id, order_id, mismatch_code, toInt64(0), toString(amount), '' FROM %s.recon_refunds_vs_credit_memos",
		oracle.ViewLoyaltyLiability:     "SELECT member_id, toString(period), mismatch_code, points, toString(toDecimal64(0, 4)), '' FROM %s.recon_loyalty_liability",
	}
	for _, view := range oracle.Views {
		rows, err := h.ch.Query(h.Ctx, fmt.Sprintf(q[view], h.db))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", view, err)
		}
		for rows.Next() {
			var k1, k2, code, amt, k3 string
			var pts int64
			if err := rows.Scan(&k1, &k2, &code, &pts, &amt, &k3); err != nil {
				rows.Close()
				return nil, err
			}
			r := oracle.ViewRow{View: view, MismatchCode: code, Points: pts, Amount: decimal.RequireFromString(amt)}
			switch view {
			case oracle.ViewShipmentsNotInvoiced:
				r.ShipmentID, r.OrderLineID = k1, k2
			case oracle.ViewRedemptionsPending:
				r.ReservationID, r.OrderID = k1, k2
			case oracle.ViewReturnsNotInLoyalty:
				r.ReturnID, r.OrderLineID, r.OrderID = k1, k2, k3
			case oracle.ViewRefundSettlement:
				r.ReturnID, r.OrderID = k1, k2
			case oracle.ViewLoyaltyLiability:
				r.MemberID, r.Period = k1, k2
			default:
				r.OrderID, r.OrderLineID = k1, k2
			}
			out[view] = append(out[view], r)
		}
		rows.Close()
	}
	return out, nil
}

// checkTotals compares point totals and ERP money totals per currency: requested points in
// ClickHouse equal the commands in Kafka by type and the oracle's net (accrual − reversal) and
// refunds; posted points equal the oracle's.
func (h *harness) checkTotals(v *verdict, want oracle.Totals, gross [3]int64) {
	var accReq, revReq, refReq, accPost, revPost, refPost int64
	if err := h.ch.QueryRow(h.Ctx, fmt.Sprintf(`SELECT
		toInt64(sumIf(points, command_type = 'AccrualRequested')), toInt64(sumIf(points, command_type = 'ReversalRequested')),
		toInt64(sumIf(points, command_type = 'RedemptionRefundRequested')) FROM %s.loyalty_commands FINAL`, h.db)).Scan(&accReq, &revReq, &refReq); err != nil {
		v.Problem("loyalty_commands totals: %v", err)
		return
	}
	if err := h.ch.QueryRow(h.Ctx, fmt.Sprintf(`SELECT toInt64(sumIf(points, kind = 'ACCRUAL')), toInt64(sumIf(points, kind = 'REVERSAL')),
		toInt64(sumIf(points, kind = 'REDEMPTION_REFUND')) FROM %s.f_loyalty_postings FINAL`, h.db)).Scan(&accPost, &revPost, &refPost); err != nil {
		v.Problem("f_loyalty_postings totals: %v", err)
		return
	}
	if got := [3]int64{accReq, revReq, refReq}; got != gross {
		v.Problem("requested points (accrual, reversal, refund): ClickHouse %v, commands in Kafka %v", got, gross)
	}
	got := [5]int64{accReq - revReq, refReq, accPost, revPost, refPost}
	exp := [5]int64{want.AccrualRequested - want.ReversalRequested, want.RefundRequested, want.AccrualPosted, want.ReversalPosted, want.RefundPosted}
	if got != exp {
		v.Problem("point totals (net requested, refund req, acc posted, rev posted, refund posted): ClickHouse %v, oracle %v", got, exp)
	}
	rows, err := h.ch.Query(h.Ctx, fmt.Sprintf(`SELECT currency, doc_kind, toString(sum(net)) FROM (
		SELECT currency, doc_kind, net FROM %[1]s.f_billing_documents FINAL
		WHERE billing_document_id NOT IN (SELECT cancels_billing_document_id FROM %[1]s.f_billing_cancellations FINAL))
		GROUP BY currency, doc_kind`, h.db))
	if err != nil {
		v.Problem("billing totals: %v", err)
		return
	}
	defer rows.Close()
	gotNet := map[string]decimal.Decimal{}
	for rows.Next() {
		var cur, kind, net string
		if err := rows.Scan(&cur, &kind, &net); err != nil {
			v.Problem("billing totals: %v", err)
			return
		}
		gotNet[kind+" "+cur] = decimal.RequireFromString(net)
	}
	for cur, x := range want.ErpInvoicedNet {
		if !gotNet["INVOICE "+cur].Equal(x) {
			v.Problem("invoiced net %s: ClickHouse %s, oracle %s", cur, gotNet["INVOICE "+cur], x)
		}
	}
	for cur, x := range want.ErpCreditedNet {
		if !gotNet["CREDIT_MEMO "+cur].Equal(x) {
			v.Problem("credited net %s: ClickHouse %s, oracle %s", cur, gotNet["CREDIT_MEMO "+cur], x)
		}
	}
}
