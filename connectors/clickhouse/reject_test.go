package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkDeadLettersRowsClickHouseRejects (RELIABILITY F9): a record whose rows ClickHouse
// rejects permanently goes to the DLQ topic with the server's message, the partition moves on,
// every other record is stored, and the views equal the oracle's without that record.
func TestSinkDeadLettersRowsClickHouseRejects(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 2)
	// a schema mismatch: SKUs longer than 32 bytes no longer fit (in the table and in the
	// per-record copy its materialized view feeds, as a migration changes both)
	for _, tb := range []string{"raw_shipment_lines", "shipment_lines"} {
		if err := e.conn.Exec(ctx, "ALTER TABLE "+e.db+"."+tb+" MODIFY COLUMN sku FixedString(32)"); err != nil {
			t.Fatal(err)
		}
	}
	tr := faultyTraffic(t, 3, 20, 0)
	exp := tr.Expected(time.Now())
	e.produceTraffic(t, tr, exp)

	var poison *schemas.Event
	for _, r := range tr.Records {
		if r.Event != nil && r.Event.ShipmentConfirmed != nil && !r.Duplicate {
			p := *r.Event
			s := *p.ShipmentConfirmed
			s.ShipmentID += "-POISON"
			s.Lines = append([]schemas.ShipmentLine{}, s.Lines...)
			for i := range s.Lines {
				s.Lines[i].ShipmentLineID += "-POISON"
				s.Lines[i].SKU = strings.Repeat("X", 40)
			}
			p.ShipmentConfirmed, p.EventID = &s, p.EventID+"-poison"
			poison = &p
			break
		}
	}
	val, err := e.serde.EncodeEvent(schemas.TopicShipments, poison)
	if err != nil {
		t.Fatal(err)
	}
	res := e.cl.ProduceSync(ctx, &kgo.Record{Topic: e.topics[schemas.TopicShipments], Key: []byte(poison.ShipmentConfirmed.OrderID), Value: val})
	if res.FirstErr() != nil {
		t.Fatal(res.FirstErr())
	}
	pr := res[0].Record

	s, err := NewSink(e.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	deadline := time.Now().Add(60 * time.Second)
	var origin, msg string
	for {
		row := e.conn.QueryRow(ctx, fmt.Sprintf(`SELECT origin, error FROM %s.dead_letters FINAL
			WHERE source_topic = ? AND source_partition = ? AND source_offset = ?`, e.db), pr.Topic, pr.Partition, pr.Offset)
		if err := row.Scan(&origin, &msg); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rejected record never reached dead_letters")
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.caughtUp(t, 60*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if origin != "sink-insert" || !strings.Contains(msg, "shipment_lines") {
		t.Errorf("dead letter: origin %q, message %q", origin, msg)
	}
	t.Logf("dead letter message: %s", msg)

	// the DLQ record carries the original bytes and the server's message
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.ConsumeTopics(e.topics[schemas.TopicDLQ]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	fs := cl.PollFetches(pctx)
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("DLQ topic has %d records, want 1 (%v)", len(recs), fs.Errors())
	}
	d, err := schemas.Decode[schemas.DeadLetter](ctx, e.serde, schemas.RecordRef{Topic: schemas.TopicDLQ}, recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != string(val) || d.SourceOffset != pr.Offset || d.SourceTopic != pr.Topic {
		t.Errorf("DLQ record does not point back at the original: %+v", d)
	}

	var poisoned uint64
	if err := e.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.f_shipment_lines WHERE shipment_id = ?", e.db),
		poison.ShipmentConfirmed.ShipmentID).Scan(&poisoned); err != nil || poisoned != 0 {
		t.Errorf("the rejected shipment is in the views (%d rows, %v)", poisoned, err)
	}
	compareViews(t, e.viewRows(t), exp.Views)
	e.checkTotals(t, exp.Totals)
}
