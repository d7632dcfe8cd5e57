package accrualcore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/accrualcore"
)

func topics() accrualcore.Topics {
	names := map[schemas.Topic]string{}
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		names[t] = "t." + string(t)
	}
	return accrualcore.Topics{Names: names}
}

// TestStage: the graph validates; a member order and its first shipment, decoded from their
// Avro records, give the accrual as a framed command; a loyalty record is framing-checked only
// (changes nothing), and one without the framing is a bad-header decode error for the DLQ.
func TestStage(t *testing.T) {
	ctx := context.Background()
	tp := topics()
	if err := accrualcore.Topology(tp).Validate(); err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(tp.Names))
	if err != nil {
		t.Fatal(err)
	}
	p, err := accrual.PolicyFrom(ledger.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	proc := accrualcore.NewProcessor(ctx, tp, serde, p)
	tr, err := generate.Generate(generate.Options{Seed: 5, Orders: 40})
	if err != nil {
		t.Fatal(err)
	}
	var order, ship *schemas.Event
	for _, r := range tr.Records {
		if e := r.Event; e != nil && e.OrderAccepted != nil && e.OrderAccepted.LoyaltyMemberID != nil && order == nil {
			order = e
		}
	}
	for _, r := range tr.Records {
		if e := r.Event; e != nil && e.ShipmentConfirmed != nil && e.ShipmentConfirmed.OrderID == order.OrderAccepted.OrderID && !e.ShipmentConfirmed.IsReship {
			ship = e
			break
		}
	}
	if ship == nil {
		t.Fatal("no member order with a shipment in the traffic")
	}
	rec := func(topic schemas.Topic, e *schemas.Event) *kgo.Record {
		v, err := serde.EncodeEvent(topic, e)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: tp.Names[topic], Key: []byte(e.Key()), Value: v}
	}
	key := order.OrderAccepted.OrderID
	e, err := proc.Decode(rec(schemas.TopicOrders, order))
	if err != nil {
		t.Fatal(err)
	}
	st, err := proc.Process(key, accrual.State{}, false, e)
	if err != nil || st.Op != topology.Put || len(st.Outputs) != 0 {
		t.Fatalf("order: op %v, %d outputs, %v", st.Op, len(st.Outputs), err)
	}
	b, err := proc.State.Encode(st.State)
	if err != nil {
		t.Fatal(err)
	}
	s, err := proc.State.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	e, err = proc.Decode(rec(schemas.TopicShipments, ship))
	if err != nil {
		t.Fatal(err)
	}
	st, err = proc.Process(key, s, true, e)
	if err != nil || st.Op != topology.Put || len(st.Outputs) != 1 {
		t.Fatalf("shipment: op %v, %d outputs, %v", st.Op, len(st.Outputs), err)
	}
	v, err := proc.Encode(st.Outputs[0].To, st.Outputs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	c, err := accrual.DecodeCommand(v)
	if err != nil || c.Type != schemas.TypeAccrualRequested || c.Points <= 0 ||
		c.RequestID != schemas.CommandRequestID(key, ship.EventID, schemas.TypeAccrualRequested) {
		t.Fatalf("command %+v, %v", c, err)
	}

	loyalty := &kgo.Record{Topic: tp.Names[schemas.TopicLoyalty], Key: []byte(key), Value: []byte{0, 0, 0, 0, 1, 2}}
	e, err = proc.Decode(loyalty)
	if err != nil || e.Kind != accrual.Other {
		t.Fatalf("framed loyalty record: %+v, %v", e, err)
	}
	if st, err := proc.Process(key, s, true, e); err != nil || st.Op != topology.Keep {
		t.Fatalf("loyalty record: op %v, %v", st.Op, err)
	}
	loyalty.Value = []byte("{}")
	_, err = proc.Decode(loyalty)
	var de *schemas.DecodeError
	if !errors.As(err, &de) || de.Class != schemas.ClassBadHeader {
		t.Fatalf("unframed loyalty record: %v, want a bad-header DecodeError", err)
	}
}
