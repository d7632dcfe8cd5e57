package schemas

import (
	"time"

	"github.com/shopspring/decimal"
)

// Test fixtures: one fully populated, valid event of every type (worked example O-1001 of
// the ledger's worked example, order O-1001, where it applies).

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }
func ptr[T any](v T) *T            { return &v }

var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)

func env(id string, typ EventType, aggType, aggID string) Envelope {
	return Envelope{
		EventID: id, EventType: typ, SchemaVersion: 1, SourceSystem: "OMS", SourceEventID: ptr("src-" + id),
		OccurredAt: t0, PublishedAt: t0.Add(2 * time.Second), AggregateType: aggType, AggregateID: aggID,
		AggregateVersion: 3, CorrelationID: "O-1001", CausationID: nil, TenantID: "acme",
	}
}

func sampleOrderAccepted() *Event {
	return &Event{Envelope: env("e-oa", TypeOrderAccepted, "order", "O-1001"), OrderAccepted: &OrderAccepted{
		OrderID: "O-1001", OrderVersion: 1, CheckoutID: ptr("CK-1"), Channel: "WEB", PlacedAt: t0, AcceptedAt: t0.Add(time.Minute),
		CustomerID: "C-9", LoyaltyMemberID: ptr("M-77"), LoyaltyTierAtOrder: ptr("GOLD"), Currency: "EUR",
		RoundingMode: "HALF_EVEN", TaxCalculationMode: "LINE",
		Totals: OrderTotals{MerchandiseNet: dec("265"), DiscountTotal: dec("25"), LoyaltyRedemptionValue: dec("10"),
			ShippingNet: dec("5.90"), TaxTotal: dec("44.18"), GrandTotal: dec("315.08")},
		DiscountApps:      []DiscountApplication{{DiscountID: "D1", Code: ptr("SPRING25"), Kind: "COUPON", AllocationMethod: "ACROSS", Value: dec("25")}},
		LoyaltyRedemption: &LoyaltyRedemption{ReservationID: "R-1", Points: 1000, Value: dec("10"), Accounting: "DISCOUNT"},
		Tenders:           []Tender{{TenderType: "CARD", Amount: dec("315.08")}},
		ShipTo:            Address{Country: "DE", Region: "BE", Postcode: "10115"},
		Lines: []OrderLine{
			{OrderLineID: "L1", LineNumber: 1, SKU: "SKU-A", ProductID: "P-A", Quantity: dec("2"), UOM: "EA",
				UnitListPrice: dec("80"), UnitSalePrice: dec("80"), LineSubtotal: dec("160"),
				DiscountAllocations: []DiscountAllocation{{DiscountID: "D1", Amount: dec("16")}},
				RedemptionAlloc:     &RedemptionAlloc{Points: 640, Value: dec("6.40")}, LineNet: dec("137.60"),
				TaxLines: []TaxLine{{TaxCode: "VAT", Rate: dec("0.2"), Amount: dec("27.52")}}, FulfillmentMethod: "SHIP"},
			{OrderLineID: "L2", LineNumber: 2, SKU: "SKU-B", GTIN: ptr("4006381333931"), ProductID: "P-B", CategoryPath: ptr("apparel/shirts"),
				Quantity: dec("3"), UOM: "EA", UnitListPrice: dec("30"), UnitSalePrice: dec("30"), LineSubtotal: dec("90"),
				DiscountAllocations: []DiscountAllocation{{DiscountID: "D1", Amount: dec("9")}},
				RedemptionAlloc:     &RedemptionAlloc{Points: 360, Value: dec("3.60")}, LineNet: dec("77.40"),
				TaxLines: []TaxLine{{TaxCode: "VAT", Rate: dec("0.2"), Amount: dec("15.48")}}, FulfillmentMethod: "SHIP"},
			{OrderLineID: "L3", LineNumber: 3, SKU: "SKU-GC", ProductID: "P-GC", IsGiftCard: true, Quantity: dec("1"), UOM: "EA",
				UnitListPrice: dec("50"), UnitSalePrice: dec("50"), LineSubtotal: dec("50"), LineNet: dec("50"), FulfillmentMethod: "DIGITAL"},
		},
		EarnRate: ptr(dec("1")), TierMultiplier: ptr(dec("1.5")), ShippingNet: dec("5.90"), ShippingTax: dec("1.18"),
		ReturnWindowDays: 30, LoyaltyProgramRefID: ptr("PRG-1"),
	}}
}

func sampleEvents() []*Event {
	billing := func(id, typ string) *BillingDocument {
		return &BillingDocument{BillingDocumentID: id, BillingType: typ, OrderID: "O-1001", ErpSalesOrderID: "SO-1", CompanyCode: "1000",
			FiscalYear: 2025, AccountingDocumentID: ptr("AD-" + id), AccountingTransferStatus: "TRANSFERRED", BillingDate: t0,
			Currency: "EUR", FxRate: dec("1.000000001"), Net: dec("150.50"), Tax: dec("20.10"), Gross: dec("170.60"),
			Lines: []BillingLine{{BillingItem: "10", OrderLineID: "L1", ErpItem: "10", ReferenceDocument: "S-1", SKU: "SKU-A", Quantity: dec("1"), Net: dec("68.80"), Tax: dec("13.76")}},
		}
	}
	invoice := billing("90000001", "F2")
	invoice.RedemptionValue = ptr(dec("10.00"))
	memo := billing("90000002", "RE")
	memo.ReferenceInvoiceID, memo.ReturnID = ptr("90000001"), ptr("RT-1")
	cmd := &LoyaltyCommand{CommandType: TypeAccrualRequested, OrderID: "O-1001", MemberID: "M-77", Points: 141, CausingEventID: "e-sc",
		SourceRefID: "S-1", Reason: "SHIPMENT", BasisAmount: dec("94.60"), Currency: "EUR", EarnRate: dec("1"), TierCode: "GOLD",
		TierMultiplier: dec("1.5"), EntitledPoints: 141, ActivatesAt: ptr(t0.AddDate(0, 0, 30)), PolicyVersion: "2025-01", RequestedAt: t0}
	cmd.RequestID = CommandRequestID(cmd.OrderID, cmd.CausingEventID, cmd.CommandType)
	return []*Event{
		sampleOrderAccepted(),
		{Envelope: env("e-olc", TypeOrderLinesCancelled, "order", "O-1001"), OrderLinesCancelled: &OrderLinesCancelled{
			CancellationID: "CX-1", OrderID: "O-1001", CancelledAt: t0, ReasonCode: "inventory", IsPreFulfillment: true,
			Lines: []CancelledLine{{OrderLineID: "L1", QuantityCancelled: dec("1")}, {OrderLineID: "L2", QuantityCancelled: dec("2")}}}},
		{Envelope: env("e-sc", TypeShipmentConfirmed, "shipment", "S-1"), ShipmentConfirmed: &ShipmentConfirmed{
			ShipmentID: "S-1", FulfillmentOrderID: ptr("FO-1"), OrderID: "O-1001", ShipNodeID: "DC-North", FulfillmentType: "WAREHOUSE",
			Carrier: "DHL", ServiceLevel: "STD", TrackingNumbers: []string{"TN1", "TN2"}, ShippedAt: t0,
			Lines: []ShipmentLine{{ShipmentLineID: "SL1", OrderLineID: "L1", SKU: "SKU-A", QuantityShipped: dec("1")},
				{ShipmentLineID: "SL2", OrderLineID: "L2", SKU: "SKU-B", QuantityShipped: dec("1.5")}},
			Currency: ptr("EUR"), ErpDeliveryID: ptr("80000001")}},
		{Envelope: env("e-rr", TypeReturnReceived, "return", "RT-1"), ReturnReceived: &ReturnReceived{
			ReturnID: "RT-1", OrderID: "O-1001", ReceivedAt: t0, ReceivingLocationID: "ST-1", Channel: "MAIL",
			Lines: []ReturnLine{{ReturnLineID: "RL1", OrderLineID: "L2", SKU: "SKU-B", QuantityReceived: dec("1"), QuantityAccepted: dec("1"), Disposition: "RESTOCK", ReasonCode: "SIZE"}},
			Refund: &Refund{RefundID: "RF-1", Currency: "EUR", MerchandiseNet: dec("25.80"), Tax: dec("5.16"), ShippingRefund: dec("0"), ReturnFee: dec("0"),
				Tenders: []Tender{{TenderType: "CARD", Amount: dec("30.96")}}}}},
		{Envelope: env("e-pr", TypePointsReserved, "reservation", "R-1"), PointsReserved: &PointsReserved{
			ReservationID: "R-1", MemberID: "M-77", CheckoutID: "CK-1", Points: 1000, Value: Money{Amount: dec("10"), Currency: "EUR"},
			ConversionRate: dec("0.01"), ReservedAt: t0, ExpiresAt: t0.Add(time.Hour)}},
		{Envelope: env("e-rc", TypeRedemptionConfirmed, "reservation", "R-1"), RedemptionConfirmed: &RedemptionConfirmed{
			ReservationID: "R-1", RedemptionID: "RD-1", OrderID: "O-1001", Points: 1000, ConfirmedAt: t0}},
		{Envelope: env("e-rl", TypeRedemptionReleased, "reservation", "R-2"), RedemptionReleased: &RedemptionReleased{
			ReservationID: "R-2", Reason: "TTL_EXPIRED", ReleasedAt: t0}},
		{Envelope: env("e-rf", TypeRedemptionRefunded, "reservation", "R-1"), RedemptionRefunded: &RedemptionRefunded{
			RefundEntryID: "RE-1", RequestID: ptr("req-1"), RedemptionID: "RD-1", OrderID: "O-1001", Points: 120, Reason: "RETURN",
			SourceRefID: "RT-1", ExpiryPolicy: "RESTORE_ORIGINAL", RefundedAt: t0}},
		{Envelope: env("e-pap", TypePointsAccrualPosted, "ledger_entry", "LE-1"), PointsAccrualPosted: &PointsAccrualPosted{
			LedgerEntryID: "LE-1", RequestID: cmd.RequestID, OrderID: "O-1001", MemberID: "M-77", Points: 141, Status: "PENDING",
			ActivatesAt: t0.AddDate(0, 0, 30), ExpiresAt: ptr(t0.AddDate(2, 0, 0)), SourceRef: "S-1", BasisAmount: dec("94.60"),
			Currency: "EUR", EarnRate: dec("1"), TierCode: "GOLD", TierMultiplier: dec("1.5"), RuleVersion: "2025-01", PostedAt: t0}},
		{Envelope: env("e-pa", TypePointsActivated, "ledger_entry", "LE-1"), PointsActivated: &PointsActivated{
			LedgerEntryID: "LE-1", OrderID: "O-1001", Points: 141, ActivatedAt: t0}},
		{Envelope: env("e-prv", TypePointsReversed, "ledger_entry", "LE-2"), PointsReversed: &PointsReversed{
			LedgerEntryID: "LE-2", RequestID: "req-2", OrderID: "O-1001", MemberID: "M-77", Points: 39, FromPending: 39,
			Reason: "RETURN", SourceRefID: "RT-1", ReversesEntryIDs: []string{"LE-1"}, ReversedAt: t0}},
		{Envelope: env("e-so", TypeErpSalesOrderCreated, "sales_order", "SO-1"), ErpSalesOrderCreated: &ErpSalesOrderCreated{
			ErpSalesOrderID: "SO-1", OrderID: "O-1001", SalesOrg: "1000", SoldTo: "C-9", Currency: "EUR", CreatedAt: t0,
			Items: []ErpItemLink{{ErpItem: "10", OrderLineID: "L1", Quantity: dec("2")}, {ErpItem: "20", OrderLineID: "L2", Quantity: dec("3")}}}},
		{Envelope: env("e-inv", TypeInvoicePosted, "billing_document", "90000001"), InvoicePosted: invoice},
		{Envelope: env("e-cm", TypeCreditMemoPosted, "billing_document", "90000002"), CreditMemoPosted: memo},
		{Envelope: env("e-bdc", TypeBillingDocCancelled, "billing_document", "90000003"), BillingDocCancelled: &BillingDocCancelled{
			BillingDocumentID: "90000003", CancelsBillingDocumentID: "90000001", OrderID: "O-1001", CancelledAt: t0}},
		{Envelope: env("e-soc", TypeErpSalesOrderChanged, "sales_order", "SO-1"), ErpSalesOrderChanged: &ErpSalesOrderChanged{
			ErpSalesOrderID: "SO-1", OrderID: "O-1001", ErpVersion: 2, Status: "PARTIALLY_PROCESSED", ChangedAt: t0,
			Items: []ErpReplicaItem{{ErpItem: "10", OrderLineID: "L1", Quantity: dec("2"), RejectedQuantity: dec("1")},
				{ErpItem: "20", OrderLineID: "L2", Quantity: dec("3"), RejectedQuantity: dec("0")}}}},
		{Envelope: env("e-cmd", TypeAccrualRequested, "order", "O-1001"), LoyaltyCommand: cmd},
	}
}

func sampleDeadLetter() *DeadLetter {
	return &DeadLetter{Key: []byte("O-1001"), Value: []byte{1, 2, 3}, SourceTopic: "retail.orders.v1", SourcePartition: 3,
		SourceOffset: 1234, SchemaID: ptr(int32(17)), EventID: nil, ErrorClass: ClassAvro, ErrorMessage: "truncated",
		FirstSeenAt: t0, Attempt: 1, ReplayOf: ptr("retailflow.dlq.v1/0/5")}
}
