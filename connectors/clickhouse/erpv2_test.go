package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// TestErpReplicaVersionRule: the views keep, per sales order, the replica with the highest
// erp_version whatever the arrival order (offset), and of equal versions the first record — a
// later one is stale. An order with a partial cancellation goes through: the generator's replica
// v1 (cancelled units rejected: clean), then v3 (the ERP re-opened them) arriving before a v2
// that rejects them again (stale: lower), then a second v3 with the units rejected (stale:
// equal), then v4 rejecting them. At each step C1's CANCELLED_IN_OMS_OPEN_IN_ERP is what the
// oracle says.
func TestErpReplicaVersionRule(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	db := testDB(t, conn)
	ctx := context.Background()
	var tr *generate.Traffic
	var replica *schemas.Event
	for seed := uint64(1); replica == nil && seed < 50; seed++ {
		g, err := generate.Generate(generate.Options{Seed: seed, Orders: 40, Start: time.Date(2020, 1, 6, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range g.Records {
			if e := r.Event; e != nil && e.ErpSalesOrderChanged != nil && e.ErpSalesOrderChanged.Status == "OPEN" {
				tr, replica = g, e
				break
			}
		}
	}
	if replica == nil {
		t.Fatal("no partial cancellation with a replica in the generated traffic")
	}
	order := replica.ErpSalesOrderChanged.OrderID
	var events []schemas.Event
	var rows []Row
	offset := int64(0)
	add := func(e *schemas.Event) {
		rs, err := EventRows(e, Source{Topic: "retail." + string(topicOfEvent(t, e)) + ".v1", Offset: offset})
		if err != nil {
			t.Fatal(err)
		}
		offset++
		rows = append(rows, rs...)
		events = append(events, *e)
	}
	for _, r := range tr.Records {
		if r.Event != nil && r.Malformed == "" && r.Event.OrderID() == order && !r.Duplicate {
			add(r.Event)
		}
	}
	insertRows(t, conn, db, rows)
	rows = nil
	// version v of the replica, the cancelled units rejected or open again, sent at + d
	version := func(v int64, rejected bool, d time.Duration) *schemas.Event {
		e := *replica
		c := *replica.ErpSalesOrderChanged
		e.EventID = fmt.Sprintf("%s-v%d-%v", replica.EventID, v, rejected)
		e.OccurredAt = replica.OccurredAt.Add(d)
		c.ErpVersion, c.ChangedAt = v, e.OccurredAt
		c.Items = append([]schemas.ErpReplicaItem(nil), c.Items...)
		for i := range c.Items {
			if !rejected {
				c.Items[i].RejectedQuantity = decimal.Zero
			}
		}
		e.ErpSalesOrderChanged = &c
		return &e
	}
	check := func(step string, wantRows int) {
		t.Helper()
		var got uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.recon_orders_awaiting_erp WHERE order_id = ? AND mismatch_code = 'CANCELLED_IN_OMS_OPEN_IN_ERP'", db), order).Scan(&got); err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, r := range oracle.Compute(events, tr.Options.Policy, time.Now()).Views[oracle.ViewOrdersAwaitingERP] {
			if r.OrderID == order && r.MismatchCode == "CANCELLED_IN_OMS_OPEN_IN_ERP" {
				want++
			}
		}
		if int(got) != want || want != wantRows {
			t.Fatalf("%s: the view has %d CANCELLED_IN_OMS_OPEN_IN_ERP rows, the oracle %d, want %d", step, got, want, wantRows)
		}
		var v uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT max(erp_version) FROM %s.f_erp_sales_orders WHERE order_id = ?", db), order).Scan(&v); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: current erp_version %d, %d rows", step, v, got)
	}
	check("v1 rejects the cancelled units", 0)
	for _, s := range []struct {
		step     string
		e        *schemas.Event
		wantRows int
	}{
		{"v3 re-opens them", version(3, false, 2*time.Hour), 1},
		{"v2 rejects them, after v3 (stale)", version(2, true, 3*time.Hour), 1},
		{"a second v3 rejects them (stale)", version(3, true, 4*time.Hour), 1},
		{"v4 rejects them", version(4, true, 5*time.Hour), 0},
	} {
		add(s.e)
		insertRows(t, conn, db, rows)
		rows = nil
		check(s.step, s.wantRows)
	}
}

func topicOfEvent(t *testing.T, e *schemas.Event) schemas.Topic {
	topic, ok := schemas.TopicOf(e.EventType)
	if !ok {
		t.Fatalf("no topic for %s", e.EventType)
	}
	return topic
}

// The sink maps erp v2's redemption value with its presence: nil (a v1 writer) is stored as 0
// with has_redemption_value = 0, never as a known 0.
func TestBillingRowsRedemptionValue(t *testing.T) {
	v := decimal.RequireFromString("7.60")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		rv       *decimal.Decimal
		want     string
		wantHave uint8
	}{{&v, "7.6", 1}, {nil, "0", 0}} {
		e := &schemas.Event{Envelope: schemas.Envelope{EventID: "e1", EventType: schemas.TypeInvoicePosted, OccurredAt: at},
			InvoicePosted: &schemas.BillingDocument{BillingDocumentID: "B1", BillingType: "F2", OrderID: "O-1", BillingDate: at,
				Currency: "EUR", RedemptionValue: c.rv, Lines: []schemas.BillingLine{{BillingItem: "10", OrderLineID: "L1", Quantity: decimal.NewFromInt(1)}}}}
		rows, err := EventRows(e, Source{Offset: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Table != "billing_documents" {
				continue
			}
			if got := r.Get("redemption_value").(decimal.Decimal); got.String() != c.want || r.Get("has_redemption_value") != c.wantHave {
				t.Errorf("redemption %v: stored %s has %v, want %s has %d", c.rv, got, r.Get("has_redemption_value"), c.want, c.wantHave)
			}
		}
	}
}
