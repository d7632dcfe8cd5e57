package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestRejectedRecordDoesNotHideALaterAcceptedOne (issue 11 item 3): a record the runtime
// rejected and a later record with the same business key that it accepted (a DLQ replay after
// a fix, an upstream re-send) — the accepted one is in the f_* views, also after the server
// merged the table's parts, and a record whose rows ClickHouse refused (sink-insert) is not.
func TestRejectedRecordDoesNotHideALaterAcceptedOne(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	ctx := context.Background()
	db := testDB(t, conn)
	tr, err := generate.Generate(generate.Options{Seed: 5, Orders: 3, Start: time.Date(2020, 1, 6, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	var accepted []*schemas.Event
	for _, r := range tr.Records {
		if r.Event != nil && r.Event.OrderAccepted != nil && r.Malformed == "" {
			accepted = append(accepted, r.Event)
		}
	}
	if len(accepted) < 2 {
		t.Fatalf("want two orders, the generator made %d", len(accepted))
	}
	const topic = "retail.orders.v1"
	replayed, refused := accepted[0], accepted[1]
	var rows []Row
	add := func(e *schemas.Event, off int64) {
		rs, err := EventRows(e, Source{Topic: topic, Partition: 0, Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, rs...)
	}
	add(replayed, 5) // rejected by the runtime
	add(replayed, 9) // the same order replayed from the DLQ after the fix: accepted
	add(refused, 12) // accepted by the runtime, but ClickHouse refused part of its rows
	key := []byte(replayed.OrderAccepted.OrderID)
	rows = append(rows, DeadLetterRows(&schemas.DeadLetter{SourceTopic: topic, SourcePartition: 0, SourceOffset: 5,
		ErrorClass: schemas.ErrorClass("validation"), ErrorMessage: "line 1: quantity must be positive", Key: key,
		FirstSeenAt: time.Date(2020, 1, 6, 1, 0, 0, 0, time.UTC)}, Source{Topic: "retailflow.dlq.v1", Offset: 1}, []string{}, []string{})...)
	rows = append(rows, FailureRow("sink-insert", schemas.ErrorClass("sink-insert"), errors.New("refused"),
		Source{Topic: topic, Partition: 0, Offset: 12}, []byte(refused.OrderAccepted.OrderID), nil, time.Now()))
	insertRows(t, conn, db, rows)

	check := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			view, order string
			want        string
		}{
			{"f_orders", replayed.OrderAccepted.OrderID, "9"},
			{"f_order_lines", replayed.OrderAccepted.OrderID, "9"},
			{"f_orders", refused.OrderAccepted.OrderID, ""},
			{"f_order_lines", refused.OrderAccepted.OrderID, ""},
		} {
			got, err := NativeSession(conn).Query(ctx, fmt.Sprintf("SELECT DISTINCT toString(src_offset) FROM %s.%s WHERE order_id = %s",
				db, tc.view, quote(tc.order)))
			if err != nil {
				t.Fatal(err)
			}
			have := ""
			if len(got) > 0 {
				have = got[0][0]
			}
			if len(got) > 1 || have != tc.want {
				t.Errorf("%s: %s of order %s comes from offsets %v, want %q", when, tc.view, tc.order, got, tc.want)
			}
		}
	}
	check("before any merge")
	for _, tb := range []string{"orders", "order_lines"} {
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+"."+tb+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	check("after OPTIMIZE FINAL")
}
