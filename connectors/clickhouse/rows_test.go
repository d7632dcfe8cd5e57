package clickhouse

import (
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/shopspring/decimal"
)

// Every event type the generator produces maps to rows that fill every column of their table.
func TestEventRowsFillEveryColumn(t *testing.T) {
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	f := generate.Faults{}
	for _, name := range generate.AllFaults() {
		f.Set(name, 0.3)
	}
	tr, err := generate.Generate(generate.Options{Seed: 5, Orders: 40, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	seenTypes, seenTables := map[schemas.EventType]bool{}, map[string]bool{}
	for i, r := range tr.Records {
		if r.Event == nil || r.Raw != nil {
			continue
		}
		rows, err := EventRows(r.Event, Source{Topic: string(r.Topic), Partition: 1, Offset: int64(i)})
		if err != nil {
			t.Fatalf("%s: %v", r.Event.EventType, err)
		}
		seenTypes[r.Event.EventType] = true
		for _, row := range rows {
			tb, ok := tables[row.Table]
			if !ok {
				t.Fatalf("%s maps to unknown table %s", r.Event.EventType, row.Table)
			}
			if _, err := row.Ordered(tb); err != nil {
				t.Fatalf("%s: %v", r.Event.EventType, err)
			}
			if row.Get("version") != FactVersion(int64(i)) || row.Get("row_id") == "" {
				t.Fatalf("%s: row %s has version %v, row_id %q", r.Event.EventType, row.Table, row.Get("version"), row.Get("row_id"))
			}
			seenTables[row.Table] = true
		}
	}
	for _, typ := range []schemas.EventType{schemas.TypeOrderAccepted, schemas.TypeShipmentConfirmed, schemas.TypeReturnReceived,
		schemas.TypePointsReserved, schemas.TypeRedemptionConfirmed, schemas.TypePointsAccrualPosted, schemas.TypePointsReversed,
		schemas.TypeErpSalesOrderCreated, schemas.TypeErpSalesOrderChanged, schemas.TypeInvoicePosted, schemas.TypeCreditMemoPosted} {
		if !seenTypes[typ] {
			t.Errorf("the generated traffic has no %s: the test covers less than it claims", typ)
		}
	}
	t.Logf("tables filled: %d, event types: %d", len(seenTables), len(seenTypes))

	// retailflow's own outputs
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cmd := &schemas.LoyaltyCommand{RequestID: "r1", CommandType: schemas.TypeReversalRequested, OrderID: "O-1", Points: 7, RequestedAt: at}
	eid := "e1"
	dl := &schemas.DeadLetter{SourceTopic: "retail.orders.v1", SourcePartition: 2, SourceOffset: 9, EventID: &eid, ErrorClass: schemas.ClassInvalid, FirstSeenAt: at}
	st := ledgerstate.State{OrderID: "O-1", Order: &ledgerstate.OrderSnapshot{MemberID: "M"}, Lines: []ledgerstate.LineState{{OrderLineID: "L1"}}}
	for name, rows := range map[string][]Row{
		"command":    CommandRows(cmd, Source{Offset: 3}),
		"deadletter": DeadLetterRows(dl, Source{Offset: 4}, []string{}, []string{}),
		"state":      StateRows("O-1", &st, Source{Offset: 5}),
		"tombstone":  StateRows("O-1", nil, Source{Offset: 6}),
		"failure":    {FailureRow("sink-decode", schemas.ClassAvro, errString("bad"), Source{Topic: "x", Offset: 7}, nil, []byte{1}, at)},
	} {
		for _, row := range rows {
			if _, err := row.Ordered(tables[row.Table]); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if got := CommandRows(cmd, Source{Offset: 3})[1].Get("points"); got != int64(-7) {
		t.Errorf("a reversal is a negative movement in the audit ledger, got %v", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// Input facts: the first record of a business key wins; outputs: the latest.
func TestVersions(t *testing.T) {
	if !(FactVersion(10) > FactVersion(11)) || !(OutputVersion(11) > OutputVersion(10)) || OutputVersion(0) == 0 {
		t.Fatal("version order is wrong")
	}
}

// NetValueByQty: value_cum = round_half_even(N × q / q_ord, 2), Σ = line net.
func TestNetValueByQty(t *testing.T) {
	d := decimal.RequireFromString
	for _, c := range []struct {
		net, qty string
		want     []string
	}{
		{"137.60", "2", []string{"0", "68.8", "137.6"}},
		{"10.00", "3", []string{"0", "3.33", "6.67", "10"}},
		{"0.05", "2", []string{"0", "0.02", "0.05"}}, // 0.025 → 0.02 (half to even)
		{"0.15", "2", []string{"0", "0.08", "0.15"}}, // 0.075 → 0.08 (half to even)
		{"-0.05", "2", []string{"0", "-0.02", "-0.05"}},
	} {
		got := NetValueByQty(d(c.net), d(c.qty))
		if len(got) != len(c.want) {
			t.Fatalf("%s × q/%s: %v", c.net, c.qty, got)
		}
		for i := range got {
			if !got[i].Equal(d(c.want[i])) {
				t.Errorf("%s × %d/%s = %s, want %s", c.net, i, c.qty, got[i], c.want[i])
			}
		}
	}
	for _, q := range []string{"1.5", "0", "1001"} {
		if NetValueByQty(d("10"), d(q)) != nil {
			t.Errorf("quantity %s: want no precomputed values", q)
		}
	}
}

func TestTablesFromDDL(t *testing.T) {
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	o := tables["order_lines"]
	if len(o.Columns) == 0 || o.Columns[0] != "order_id" || contains(o.Columns, "ingested_at") || !contains(o.Columns, "net_value_by_qty") {
		t.Fatalf("order_lines columns: %v", o.Columns)
	}
	if got := strings.Join(tables["recon_config"].Columns, ","); !strings.HasPrefix(got, "id,version,grace_s") {
		t.Fatalf("recon_config columns: %s", got)
	}
}

// A mapper's row is built in its table's column order; a column it names that the table lacks,
// or a column of the table it leaves out, is a mapping bug that Ordered reports (the sink then
// dead-letters the record instead of inserting a shifted row).
func TestRowBuilderReportsMappingBugs(t *testing.T) {
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	b := newRowBuilder(Source{Topic: "t", Partition: 2, Offset: 9}, 7)
	b.add("billing_cancellations", "B-1", cols{{"order_id", "O-1"}, {"billing_document_id", "B-1"},
		{"cancels_billing_document_id", "B-0"}, {"cancelled_at", ts(time.Time{})}, {"no_such_column", 1}})
	b.add("billing_cancellations", "B-2", cols{{"order_id", "O-1"}})
	b.add("no_such_table", "x", cols{})
	if _, err := b.rows[0].Ordered(tables["billing_cancellations"]); err == nil || !strings.Contains(err.Error(), "unknown columns [no_such_column]") {
		t.Errorf("unknown column: %v", err)
	}
	if _, err := b.rows[1].Ordered(tables["billing_cancellations"]); err == nil || !strings.Contains(err.Error(), "lacks column") {
		t.Errorf("missing column: %v", err)
	}
	if _, err := b.rows[2].Ordered(tables["orders"]); err == nil || !strings.Contains(err.Error(), "no table no_such_table") {
		t.Errorf("unknown table: %v", err)
	}
	// a complete row: values in column order, the shared ones filled in
	b.addEvent("billing_cancellations", "B-3", cols{{"order_id", "O-1"}, {"billing_document_id", "B-3"},
		{"cancels_billing_document_id", "B-0"}, {"cancelled_at", ts(time.Time{})}})
	tb := tables["billing_cancellations"]
	vals, err := b.rows[3].Ordered(tb)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range tb.Columns {
		if vals[i] != b.rows[3].Get(c) || vals[i] == nil {
			t.Errorf("column %s at %d: %v against Get %v", c, i, vals[i], b.rows[3].Get(c))
		}
	}
	if b.rows[3].Get("src_partition") != int32(2) || b.rows[3].Get("version") != uint64(7) || b.rows[3].Get("row_id") != "B-3" {
		t.Errorf("shared values: %v %v %v", b.rows[3].Get("src_partition"), b.rows[3].Get("version"), b.rows[3].Get("row_id"))
	}
}
