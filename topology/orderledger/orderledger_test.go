package orderledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// TestInvalidEventNeverReachesTheLedger: the ledger takes valid events, so the stage must reject
// an invalid one before Process. A shipment of quantity 0 is one the ledger itself would now
// fold without complaint; the stage's Decode refuses it as class "invalid" (schemas.Event.Validate),
// so the runtime dead-letters it and never calls Process, and the dead letter names the event.
// The same shipment with its real quantity decodes and is processed.
func TestInvalidEventNeverReachesTheLedger(t *testing.T) {
	ctx := context.Background()
	topics := benchTopics("")
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(topics.Names))
	if err != nil {
		t.Fatal(err)
	}
	proc := orderledger.NewProcessor(ctx, topics, orderledger.Options{Serde: serde, Policy: ledger.DefaultPolicy(), MaxEventSkew: time.Hour})
	tr, err := generate.Generate(generate.Options{Seed: 3, Orders: 50})
	if err != nil {
		t.Fatal(err)
	}
	var order, ship *schemas.Event
	for _, r := range tr.Records {
		if e := r.Event; e != nil && !r.Duplicate && e.ShipmentConfirmed != nil && len(e.ShipmentConfirmed.Lines) > 0 && e.Validate() == nil {
			ship = e
			break
		}
	}
	if ship == nil {
		t.Fatal("no shipment in the traffic")
	}
	for _, r := range tr.Records {
		if e := r.Event; e != nil && e.OrderAccepted != nil && e.OrderAccepted.OrderID == ship.ShipmentConfirmed.OrderID {
			order = e
		}
	}
	record := func(t schemas.Topic, e *schemas.Event, offset int64) *kgo.Record {
		v, err := serde.EncodeEvent(t, e)
		if err != nil {
			panic(err)
		}
		return &kgo.Record{Topic: topics.Names[t], Key: []byte(e.Key()), Value: v, Offset: offset, Timestamp: e.PublishedAt}
	}

	bad := *ship
	body := *ship.ShipmentConfirmed
	body.Lines = append([]schemas.ShipmentLine(nil), body.Lines...)
	body.Lines[0].QuantityShipped = decimal.Zero
	bad.ShipmentConfirmed = &body

	// the ledger alone does not check fields any more
	l, _, err := ledger.New(order.OrderAccepted.OrderID).Apply(*order, ledger.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Apply(bad, ledger.DefaultPolicy()); err != nil {
		t.Fatalf("the ledger validates fields again: %v", err)
	}

	// the stage does, before Process
	rec := record(schemas.TopicShipments, &bad, 7)
	_, err = proc.Decode(rec)
	var de *schemas.DecodeError
	if !errors.As(err, &de) || de.Class != schemas.ClassInvalid || de.EventID != bad.EventID {
		t.Fatalf("Decode of a shipment of quantity 0: %v, want a DecodeError of class invalid naming %s", err, bad.EventID)
	}
	class, transient := proc.Classify(err)
	if class != schemas.ClassInvalid || transient {
		t.Fatalf("class %q transient %v, want invalid, permanent", class, transient)
	}
	dl := orderledger.DeadLetter(topology.Rejected{Record: rec, Class: class, Err: err, SchemaID: -1, FirstSeen: time.Unix(0, 0)})
	if dl.EventID == nil || *dl.EventID != bad.EventID || dl.ErrorClass != schemas.ClassInvalid || dl.SourceOffset != 7 {
		t.Fatalf("dead letter %+v", dl)
	}

	// the valid shipment goes through
	e, err := proc.Decode(record(schemas.TopicShipments, ship, 8))
	if err != nil {
		t.Fatal(err)
	}
	step, err := proc.Process(ship.Key(), l, true, e)
	if err != nil || step.Op != topology.Put {
		t.Fatalf("valid shipment: op %v err %v", step.Op, err)
	}
	for _, o := range step.Outputs {
		if o.To != topology.Stream(topics.Names[schemas.TopicCommands]) || o.Value.LoyaltyCommand == nil || *o.Value.CausationID != ship.EventID {
			t.Fatalf("output %+v", o)
		}
	}
}
