package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// TestEventTenYearsAheadIsDeadLettered (issue 12.2, real broker): one event of an order dated
// ten years ahead used to move the order's ledger clock ten years, close and evict the order,
// so that its real return afterwards was held forever (0 reversal commands instead of the
// oracle's). Now the event goes to the DLQ as time-out-of-range before the ledger sees it, and
// the return causes exactly the commands the oracle expects.
func TestEventTenYearsAheadIsDeadLettered(t *testing.T) {
	needServices(t)
	cfgFile := testConfig(t, 2)
	c, err := LoadConfig(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if out, stderr, code := runEdge(ctx, "", "topics", "create", "--config", cfgFile); code != 0 {
		t.Fatalf("topics create: %s %s", out, stderr)
	}
	tr, err := generate.Generate(generate.Options{Seed: 12, Orders: 200, Start: time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	x := tr.Expected(time.Now())
	causes := map[string][]schemas.EventType{}
	for _, cmd := range x.Commands {
		causes[cmd.CausingEventID] = append(causes[cmd.CausingEventID], cmd.Type)
	}
	// an order whose return causes two commands (reversal and redemption refund, or two)
	events := tr.Events()
	var ret *schemas.Event
	for i := range events {
		if e := &events[i]; e.ReturnReceived != nil && len(causes[e.EventID]) == 2 {
			ret = e
			break
		}
	}
	if ret == nil {
		hist := map[int]int{}
		for i := range events {
			if events[i].ReturnReceived != nil {
				hist[len(causes[events[i].EventID])]++
			}
		}
		t.Fatalf("generated traffic has no return that causes two commands (returns by commands caused: %v)", hist)
	}
	order := ret.OrderID()
	var before, after []*schemas.Event
	var erp *schemas.Event
	seenReturn := false
	for i := range events {
		e := &events[i]
		if e.OrderID() != order {
			continue
		}
		if e.EventID == ret.EventID {
			seenReturn = true
		}
		if seenReturn {
			after = append(after, e)
		} else {
			before = append(before, e)
		}
		if e.ErpSalesOrderCreated != nil {
			erp = e
		}
	}
	if erp == nil {
		t.Fatalf("order %s has no ERP sales order to clone", order)
	}
	// the poison: the ERP sales order event again under a new id, dated ten years ahead
	poison := *erp
	poison.EventID = "ten-years-ahead-" + order
	poison.OccurredAt = erp.OccurredAt.AddDate(10, 0, 0)
	poison.PublishedAt = erp.PublishedAt.AddDate(10, 0, 0)

	serde, err := c.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := c.TopicNames()
	prod, err := kgo.NewClient(c.KafkaConn().Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(es ...*schemas.Event) {
		t.Helper()
		for _, e := range es {
			topic, _ := schemas.TopicOf(e.EventType)
			v, err := serde.EncodeEvent(topic, e)
			if err != nil {
				t.Fatal(err)
			}
			// no Timestamp: the client stamps the time of producing, as upstream producers do
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: names[topic], Key: []byte(order), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop := background(t, "run", "--config", cfgFile)
	defer stop()

	caused := func(id string) []string {
		var got []string
		for _, r := range readAll(t, c, c.Topics.Commands) {
			e, err := serde.DecodeEvent(ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.Partition, Offset: r.Offset}, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.CausationID != nil && *e.CausationID == id {
				got = append(got, string(e.EventType))
			}
		}
		return got
	}
	send(before...)
	send(&poison)
	waitFor(t, 60*time.Second, "the poison in the DLQ", func() string {
		for _, r := range readAll(t, c, c.Topics.DLQ) {
			for _, h := range r.Headers {
				if h.Key == headers.ErrorClassKey {
					if string(h.Value) != string(schemas.ClassTimeOutOfRange) {
						return fmt.Sprintf("DLQ record of class %s", h.Value)
					}
					return ""
				}
			}
		}
		return "no DLQ record yet"
	})
	send(after...)
	want := causes[ret.EventID]
	waitFor(t, 60*time.Second, "the return's commands", func() string {
		if got := caused(ret.EventID); len(got) != len(want) {
			return fmt.Sprintf("return %s caused %v, the oracle expects %v", ret.EventID, got, want)
		}
		return ""
	})
	t.Logf("return %s of order %s caused %v after the ten-years-ahead event was dead-lettered", ret.EventID, order, caused(ret.EventID))
}
