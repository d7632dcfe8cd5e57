package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// insertRows writes rows straight into db (fixtures; the sink does this with retries).
func insertRows(t *testing.T, conn driver.Conn, db string, rows []Row) {
	t.Helper()
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]Row{}
	for _, r := range rows {
		by[r.Table] = append(by[r.Table], r)
	}
	for name, rs := range by {
		tb := tables[name]
		b, err := conn.PrepareBatch(context.Background(), "INSERT INTO "+db+"."+name+" ("+joinCols(tb.Columns)+")")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			vals, err := r.Ordered(tb)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Append(vals...); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
}

// fixture loads a fixed dataset (business times in January 2020, so every age bucket is stable)
// and returns the id of an order with several faults.
func fixture(t *testing.T, conn driver.Conn, db string) string {
	t.Helper()
	f := generate.Faults{}
	for _, name := range generate.AllFaults() {
		f.Set(name, 0.25)
	}
	tr, err := generate.Generate(generate.Options{Seed: 42, Orders: 24, Start: time.Date(2020, 1, 6, 0, 0, 0, 0, time.UTC), Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	for i, r := range tr.Records {
		if r.Event == nil || r.Malformed != "" {
			continue
		}
		rs, err := EventRows(r.Event, Source{Topic: "retail." + string(r.Topic) + ".v1", Offset: int64(i)})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, rs...)
	}
	exp := tr.Expected(time.Now())
	ids := make([]string, 0, len(exp.Commands))
	for id := range exp.Commands {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, id := range ids {
		c := exp.Commands[id]
		rows = append(rows, CommandRows(&schemas.LoyaltyCommand{RequestID: c.RequestID, CommandType: c.Type, OrderID: c.OrderID,
			MemberID: c.MemberID, Points: c.Points, CausingEventID: c.CausingEventID, SourceRefID: c.SourceRefID, Reason: c.Reason,
			BasisAmount: c.BasisAmount, Currency: "EUR", EarnRate: c.EarnRate, TierCode: c.TierCode, TierMultiplier: c.TierMultiplier,
			EntitledPoints: c.EntitledPoints, PolicyVersion: "test", RequestedAt: c.BusinessTime}, Source{Topic: "cmds", Offset: int64(i)})...)
	}
	insertRows(t, conn, db, rows)
	best, most := "", 0
	for _, o := range tr.Orders {
		if len(o.Faults) > most {
			best, most = o.OrderID, len(o.Faults)
		}
	}
	return best
}

func TestReportGolden(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	db := testDB(t, conn)
	orderID := fixture(t, conn, db)
	ctx := context.Background()
	r, err := BuildReport(ctx, conn, db, 5)
	if err != nil {
		t.Fatal(err)
	}
	r.Database = "retailflow" // the golden file does not depend on the random test database
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/report.golden", text.String())
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Views) != len(Views) {
		t.Fatalf("JSON report does not round-trip: %v", err)
	}
	s, err := OrderStory(ctx, conn, db, orderID)
	if err != nil {
		t.Fatal(err)
	}
	var story bytes.Buffer
	if err := s.WriteText(&story); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/order_story.golden", story.String())
}
