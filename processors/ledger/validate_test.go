package ledger

import (
	"context"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestSchemasHoldTheFieldRules proves that the ledger may take valid events: every field rule
// the ledger used to check itself (its own list, removed) is a rule of schemas.Event.Validate,
// which the run stage applies before the ledger (topology/orderledger
// TestInvalidEventNeverReachesTheLedger). Each case breaks one rule in an otherwise valid event
// of the generator's traffic.
func TestSchemasHoldTheFieldRules(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := generate.Generate(generate.Options{Seed: 7, Orders: 300})
	if err != nil {
		t.Fatal(err)
	}
	raw := map[schemas.EventType][]byte{}
	topic := map[schemas.EventType]schemas.Topic{}
	for _, r := range tr.Records {
		if r.Event == nil || raw[r.Event.EventType] != nil || r.Event.Validate() != nil {
			continue
		}
		if raw[r.Event.EventType], err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
			t.Fatal(err)
		}
		topic[r.Event.EventType] = r.Topic
	}
	if raw[schemas.TypePointsActivated] == nil { // activations come after the lock period
		a := schemas.Event{Envelope: envelope("e-act", schemas.TypePointsActivated, day(40), "O-1001"),
			PointsActivated: &schemas.PointsActivated{LedgerEntryID: "LE-1", OrderID: "O-1001", Points: 10, ActivatedAt: day(40)}}
		if raw[a.EventType], err = serde.EncodeEvent(schemas.TopicLoyalty, &a); err != nil {
			t.Fatal(err)
		}
		topic[a.EventType] = schemas.TopicLoyalty
	}
	// base returns a fresh valid event of type typ (a deep copy, decoded from its bytes).
	base := func(t *testing.T, typ schemas.EventType) *schemas.Event {
		t.Helper()
		if raw[typ] == nil {
			t.Fatalf("the generated traffic has no valid %s", typ)
		}
		e, err := serde.DecodeEvent(ctx, schemas.RecordRef{Topic: topic[typ]}, raw[typ])
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	neg := decimal.NewFromInt(-1)
	cases := []struct {
		name    string
		typ     schemas.EventType
		breakIt func(e *schemas.Event)
	}{
		{"empty event_id", schemas.TypeShipmentConfirmed, func(e *schemas.Event) { e.EventID = "" }},
		{"body does not match event_type", schemas.TypeShipmentConfirmed, func(e *schemas.Event) { e.EventType = schemas.TypeReturnReceived }},
		{"two bodies", schemas.TypeShipmentConfirmed, func(e *schemas.Event) { e.ReturnReceived = &schemas.ReturnReceived{} }},
		{"order_id empty", schemas.TypeOrderAccepted, func(e *schemas.Event) { e.OrderAccepted.OrderID = "" }},
		{"order without lines", schemas.TypeOrderAccepted, func(e *schemas.Event) { e.OrderAccepted.Lines = nil }},
		{"duplicate order line id", schemas.TypeOrderAccepted, func(e *schemas.Event) {
			e.OrderAccepted.Lines = append(e.OrderAccepted.Lines, e.OrderAccepted.Lines[0])
		}},
		{"empty order line id", schemas.TypeOrderAccepted, func(e *schemas.Event) { e.OrderAccepted.Lines[0].OrderLineID = "" }},
		{"ordered quantity 0", schemas.TypeOrderAccepted, func(e *schemas.Event) { e.OrderAccepted.Lines[0].Quantity = decimal.Zero }},
		{"line redemption points negative", schemas.TypeOrderAccepted, func(e *schemas.Event) {
			e.OrderAccepted.Lines[0].RedemptionAlloc = &schemas.RedemptionAlloc{Points: -1}
		}},
		{"loyalty_redemption points negative", schemas.TypeOrderAccepted, func(e *schemas.Event) {
			e.OrderAccepted.LoyaltyRedemption = &schemas.LoyaltyRedemption{ReservationID: "R", Points: -1, Accounting: "DISCOUNT"}
		}},
		{"shipment_id empty", schemas.TypeShipmentConfirmed, func(e *schemas.Event) { e.ShipmentConfirmed.ShipmentID = "" }},
		{"shipped quantity 0", schemas.TypeShipmentConfirmed, func(e *schemas.Event) { e.ShipmentConfirmed.Lines[0].QuantityShipped = decimal.Zero }},
		{"return_id empty", schemas.TypeReturnReceived, func(e *schemas.Event) { e.ReturnReceived.ReturnID = "" }},
		{"accepted quantity negative", schemas.TypeReturnReceived, func(e *schemas.Event) { e.ReturnReceived.Lines[0].QuantityAccepted = neg }},
		{"cancellation_id empty", schemas.TypeOrderLinesCancelled, func(e *schemas.Event) { e.OrderLinesCancelled.CancellationID = "" }},
		{"cancellation without lines, not full order", schemas.TypeOrderLinesCancelled, func(e *schemas.Event) {
			e.OrderLinesCancelled.Lines, e.OrderLinesCancelled.IsFullOrder = nil, false
		}},
		{"cancelled quantity 0", schemas.TypeOrderLinesCancelled, func(e *schemas.Event) {
			e.OrderLinesCancelled.IsFullOrder = false
			e.OrderLinesCancelled.Lines = []schemas.CancelledLine{{OrderLineID: "L1", QuantityCancelled: decimal.Zero}}
		}},
		{"reservation_id empty", schemas.TypePointsReserved, func(e *schemas.Event) { e.PointsReserved.ReservationID = "" }},
		{"reserved points negative", schemas.TypePointsReserved, func(e *schemas.Event) { e.PointsReserved.Points = -1 }},
		{"confirmed reservation_id empty", schemas.TypeRedemptionConfirmed, func(e *schemas.Event) { e.RedemptionConfirmed.ReservationID = "" }},
		{"confirmed points negative", schemas.TypeRedemptionConfirmed, func(e *schemas.Event) { e.RedemptionConfirmed.Points = -1 }},
		{"released reservation_id empty", schemas.TypeRedemptionReleased, func(e *schemas.Event) { e.RedemptionReleased.ReservationID = "" }},
		{"refund_entry_id empty", schemas.TypeRedemptionRefunded, func(e *schemas.Event) { e.RedemptionRefunded.RefundEntryID = "" }},
		{"refunded points negative", schemas.TypeRedemptionRefunded, func(e *schemas.Event) { e.RedemptionRefunded.Points = -1 }},
		{"accrual ledger_entry_id empty", schemas.TypePointsAccrualPosted, func(e *schemas.Event) { e.PointsAccrualPosted.LedgerEntryID = "" }},
		{"accrued points negative", schemas.TypePointsAccrualPosted, func(e *schemas.Event) { e.PointsAccrualPosted.Points = -1 }},
		{"activation ledger_entry_id empty", schemas.TypePointsActivated, func(e *schemas.Event) { e.PointsActivated.LedgerEntryID = "" }},
		{"activated points negative", schemas.TypePointsActivated, func(e *schemas.Event) { e.PointsActivated.Points = -1 }},
		{"reversal ledger_entry_id empty", schemas.TypePointsReversed, func(e *schemas.Event) { e.PointsReversed.LedgerEntryID = "" }},
		{"reversed points negative", schemas.TypePointsReversed, func(e *schemas.Event) { e.PointsReversed.Points = -1 }},
		{"reversed from_pending negative", schemas.TypePointsReversed, func(e *schemas.Event) { e.PointsReversed.FromPending = -1 }},
		{"reversed from_active negative", schemas.TypePointsReversed, func(e *schemas.Event) { e.PointsReversed.FromActive = -1 }},
		{"reversed shortfall negative", schemas.TypePointsReversed, func(e *schemas.Event) { e.PointsReversed.ShortfallPoints = -1 }},
		{"erp_sales_order_id empty", schemas.TypeErpSalesOrderCreated, func(e *schemas.Event) { e.ErpSalesOrderCreated.ErpSalesOrderID = "" }},
		{"invoice billing_document_id empty", schemas.TypeInvoicePosted, func(e *schemas.Event) { e.InvoicePosted.BillingDocumentID = "" }},
		{"invoice quantity negative", schemas.TypeInvoicePosted, func(e *schemas.Event) { e.InvoicePosted.Lines[0].Quantity = neg }},
		{"credit memo billing_document_id empty", schemas.TypeCreditMemoPosted, func(e *schemas.Event) { e.CreditMemoPosted.BillingDocumentID = "" }},
		{"credit memo quantity negative", schemas.TypeCreditMemoPosted, func(e *schemas.Event) { e.CreditMemoPosted.Lines[0].Quantity = neg }},
		{"cancelled billing_document_id empty", schemas.TypeBillingDocCancelled, func(e *schemas.Event) { e.BillingDocCancelled.BillingDocumentID = "" }},
		{"cancels_billing_document_id empty", schemas.TypeBillingDocCancelled, func(e *schemas.Event) { e.BillingDocCancelled.CancelsBillingDocumentID = "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := base(t, tc.typ)
			if err := e.Validate(); err != nil {
				t.Fatalf("base event invalid: %v", err)
			}
			tc.breakIt(e)
			if e.Validate() == nil {
				t.Fatalf("schemas.Event.Validate accepts a %s with %s", tc.typ, tc.name)
			}
		})
	}
}
