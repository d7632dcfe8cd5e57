package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReplayedRecordAppearsInFactViews (issue 11 item 3): the runtime rejects an order (its
// dead letter points at the first copy), the record is replayed after a fix (same event, same
// business key, a new offset) and the runtime accepts it. The accepted copy must be in f_orders
// and f_order_lines: the rejected-source filter may hide only the rejected copy.
//
// It failed while the rejected-source filter ran after FINAL over facts that keep their first
// version (the accepted copy collapsed into the rejected one and the order vanished from every
// view); the raw_* per-record tables behind the f_* views fixed it (migration 0005).
func TestReplayedRecordAppearsInFactViews(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 1)
	tr := faultyTraffic(t, 31, 3, 0)
	var order *schemas.Event
	for _, r := range tr.Records {
		if r.Event != nil && r.Event.OrderAccepted != nil {
			order = r.Event
			break
		}
	}
	if order == nil {
		t.Fatal("no order in the traffic")
	}
	orderID := order.OrderAccepted.OrderID
	val, err := e.serde.EncodeEvent(schemas.TopicOrders, order)
	if err != nil {
		t.Fatal(err)
	}
	produce := func(r *kgo.Record) *kgo.Record {
		res := e.cl.ProduceSync(ctx, r)
		if res.FirstErr() != nil {
			t.Fatal(res.FirstErr())
		}
		return res[0].Record
	}
	first := produce(&kgo.Record{Topic: e.topics[schemas.TopicOrders], Key: []byte(orderID), Value: val})
	// the runtime's dead letter for the first copy (origin runtime: no origin header)
	d := &schemas.DeadLetter{Key: first.Key, Value: first.Value, SourceTopic: first.Topic, SourcePartition: first.Partition,
		SourceOffset: first.Offset, ErrorClass: schemas.ClassInvalid, ErrorMessage: "ledger: rejected before the policy fix",
		FirstSeenAt: time.Now().UTC(), Attempt: 1}
	dv, err := schemas.Encode(e.serde, schemas.TopicDLQ, d)
	if err != nil {
		t.Fatal(err)
	}
	produce(&kgo.Record{Topic: e.topics[schemas.TopicDLQ], Key: first.Key, Value: dv})
	// the replay after the fix: the same bytes at a new offset, accepted by the runtime
	replay := produce(&kgo.Record{Topic: e.topics[schemas.TopicOrders], Key: []byte(orderID), Value: val,
		Headers: []kgo.RecordHeader{{Key: "retailflow.replay-of", Value: []byte(fmt.Sprintf("%s/%d/%d", e.topics[schemas.TopicDLQ], 0, 0))}}})

	e.drain(t, e.sinkOptions(), 60*time.Second)
	for _, view := range []string{"f_orders", "f_order_lines"} {
		var n uint64
		var off int64
		if err := e.conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), max(src_offset) FROM %s.%s WHERE order_id = ?", e.db, view), orderID).Scan(&n, &off); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("%s has no row of order %s: the replay accepted at %s[%d]@%d vanished behind the rejected copy at offset %d",
				view, orderID, replay.Topic, replay.Partition, replay.Offset, first.Offset)
		}
	}
}
