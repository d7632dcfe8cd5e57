package schemas_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/schemas"
)

// ExampleSerde encodes a shipment in the Confluent wire format (offline: no registry, ids
// derived from the embedded schemas) and decodes and validates it back.
func ExampleSerde() {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		panic(err)
	}
	at := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	e := &schemas.Event{
		Envelope: schemas.Envelope{EventID: "e-1", EventType: schemas.TypeShipmentConfirmed, SchemaVersion: 1,
			SourceSystem: "WMS", OccurredAt: at, PublishedAt: at, AggregateType: "shipment", AggregateID: "S-1",
			CorrelationID: "O-1001", TenantID: "acme"},
		ShipmentConfirmed: &schemas.ShipmentConfirmed{ShipmentID: "S-1", OrderID: "O-1001", ShipNodeID: "DC-North",
			FulfillmentType: "WAREHOUSE", ShippedAt: at, Lines: []schemas.ShipmentLine{
				{ShipmentLineID: "SL1", OrderLineID: "L1", SKU: "SKU-A", QuantityShipped: decimal.RequireFromString("2")}}},
	}
	value, err := serde.EncodeEvent(schemas.TopicShipments, e)
	if err != nil {
		panic(err)
	}
	fmt.Printf("magic %d, %d bytes\n", value[0], len(value))

	got, err := serde.DecodeEvent(ctx, schemas.RecordRef{Topic: schemas.TopicShipments, Partition: 0, Offset: 7}, value)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.BodyType(), got.OrderID(), got.ShipmentConfirmed.Lines[0].QuantityShipped)

	// Bytes that are not in the wire format are a *DecodeError the runtime dead-letters.
	_, err = serde.DecodeEvent(ctx, schemas.RecordRef{Topic: schemas.TopicShipments, Partition: 0, Offset: 8}, []byte("{}"))
	fmt.Println(err)
	// Output:
	// magic 0, 140 bytes
	// ShipmentConfirmed O-1001 2
	// schemas: decode shipments[0]@8: bad-header: value of 2 bytes is shorter than the 5-byte Confluent header
}
