package schemas

import (
	"time"

	"github.com/shopspring/decimal"
)

// Topic is the logical name of a topic in the topology. The physical name is configuration.
type Topic string

// The logical topics. Every order-scoped topic is keyed by order_id and co-partitioned.
const (
	TopicOrders    Topic = "orders"
	TopicShipments Topic = "shipments"
	TopicReturns   Topic = "returns"
	TopicLoyalty   Topic = "loyalty"
	TopicERP       Topic = "erp"
	TopicCommands  Topic = "loyalty-commands"
	TopicChangelog Topic = "order-ledger-changelog"
	TopicDLQ       Topic = "dlq"
)

// InputTopics are the five order-scoped topics upstream systems produce to.
var InputTopics = []Topic{TopicOrders, TopicShipments, TopicReturns, TopicLoyalty, TopicERP}

// EventType names an event; the string is what travels in the envelope's event_type.
type EventType string

// Event types, grouped by the topic that carries them.
const (
	TypeOrderAccepted       EventType = "OrderAccepted"
	TypeOrderLinesCancelled EventType = "OrderLinesCancelled"

	TypeShipmentConfirmed EventType = "ShipmentConfirmed"

	TypeReturnReceived EventType = "ReturnReceived"

	TypePointsReserved       EventType = "PointsReserved"
	TypeRedemptionConfirmed  EventType = "RedemptionConfirmed"
	TypeRedemptionReleased   EventType = "RedemptionReleased"
	TypeRedemptionRefunded   EventType = "RedemptionRefunded"
	TypePointsAccrualPosted  EventType = "PointsAccrualPosted"
	TypePointsActivated      EventType = "PointsActivated"
	TypePointsReversed       EventType = "PointsReversed"
	TypeErpSalesOrderCreated EventType = "ErpSalesOrderCreated"
	TypeInvoicePosted        EventType = "InvoicePosted"
	TypeCreditMemoPosted     EventType = "CreditMemoPosted"
	TypeBillingDocCancelled  EventType = "BillingDocumentCancelled"
	TypeErpSalesOrderChanged EventType = "ErpSalesOrderChanged"

	TypeAccrualRequested          EventType = "AccrualRequested"
	TypeReversalRequested         EventType = "ReversalRequested"
	TypeRedemptionRefundRequested EventType = "RedemptionRefundRequested"
)

// Envelope is the common header of every event.
type Envelope struct {
	EventID          string    `json:"event_id"`
	EventType        EventType `json:"event_type"`
	SchemaVersion    int32     `json:"schema_version"`
	SourceSystem     string    `json:"source_system"`
	SourceEventID    *string   `json:"source_event_id,omitempty"`
	OccurredAt       time.Time `json:"occurred_at"`
	PublishedAt      time.Time `json:"published_at"`
	AggregateType    string    `json:"aggregate_type"`
	AggregateID      string    `json:"aggregate_id"`
	AggregateVersion int64     `json:"aggregate_version"`
	CorrelationID    string    `json:"correlation_id"`
	CausationID      *string   `json:"causation_id,omitempty"`
	TenantID         string    `json:"tenant_id"`
}

// Money is an exact amount in one ISO 4217 currency; amount is decimal(18,4).
type Money struct {
	Amount   decimal.Decimal `json:"amount"`
	Currency string          `json:"currency"`
}

// Event is one record of an input or output topic: the envelope and exactly one non-nil body.
// The body pointers form a closed sum type; BodyType reports which one is set. In Avro each body
// is one branch of the record's `payload` union (the `avro:"payload=Branch"` tags name the
// branch record); in the JSON form each body is the object under its json key.
type Event struct {
	Envelope

	OrderAccepted       *OrderAccepted       `json:"order_accepted,omitempty" avro:"payload=OrderAccepted"`
	OrderLinesCancelled *OrderLinesCancelled `json:"order_lines_cancelled,omitempty" avro:"payload=OrderLinesCancelled"`
	ShipmentConfirmed   *ShipmentConfirmed   `json:"shipment_confirmed,omitempty" avro:"payload=ShipmentConfirmed"`
	ReturnReceived      *ReturnReceived      `json:"return_received,omitempty" avro:"payload=ReturnReceived"`

	PointsReserved      *PointsReserved      `json:"points_reserved,omitempty" avro:"payload=PointsReserved"`
	RedemptionConfirmed *RedemptionConfirmed `json:"redemption_confirmed,omitempty" avro:"payload=RedemptionConfirmed"`
	RedemptionReleased  *RedemptionReleased  `json:"redemption_released,omitempty" avro:"payload=RedemptionReleased"`
	RedemptionRefunded  *RedemptionRefunded  `json:"redemption_refunded,omitempty" avro:"payload=RedemptionRefunded"`
	PointsAccrualPosted *PointsAccrualPosted `json:"points_accrual_posted,omitempty" avro:"payload=PointsAccrualPosted"`
	PointsActivated     *PointsActivated     `json:"points_activated,omitempty" avro:"payload=PointsActivated"`
	PointsReversed      *PointsReversed      `json:"points_reversed,omitempty" avro:"payload=PointsReversed"`

	ErpSalesOrderCreated *ErpSalesOrderCreated `json:"erp_sales_order_created,omitempty" avro:"payload=ErpSalesOrderCreated"`
	InvoicePosted        *BillingDocument      `json:"invoice_posted,omitempty" avro:"payload=InvoicePosted"`
	CreditMemoPosted     *BillingDocument      `json:"credit_memo_posted,omitempty" avro:"payload=CreditMemoPosted"`
	BillingDocCancelled  *BillingDocCancelled  `json:"billing_document_cancelled,omitempty" avro:"payload=BillingDocumentCancelled"`
	ErpSalesOrderChanged *ErpSalesOrderChanged `json:"erp_sales_order_changed,omitempty" avro:"payload=ErpSalesOrderChanged"`

	// LoyaltyCommand is the body of the loyalty-commands topic; event_type equals its command_type.
	LoyaltyCommand *LoyaltyCommand `json:"loyalty_command,omitempty" avro:"payload=LoyaltyCommand"`
}

// ---------------------------------------------------------------------------- orders

// OrderAccepted is emitted by the OMS when an order is confirmed.
type OrderAccepted struct {
	OrderID             string                `json:"order_id"`
	OrderVersion        int64                 `json:"order_version"`
	CheckoutID          *string               `json:"checkout_id,omitempty"`
	Channel             string                `json:"channel"`
	SellingStoreID      *string               `json:"selling_store_id,omitempty"`
	PlacedAt            time.Time             `json:"placed_at"`
	AcceptedAt          time.Time             `json:"accepted_at"`
	CustomerID          string                `json:"customer_id"`
	LoyaltyMemberID     *string               `json:"loyalty_member_id,omitempty"`
	LoyaltyTierAtOrder  *string               `json:"loyalty_tier_at_order,omitempty"`
	Currency            string                `json:"currency"`
	PricesIncludeTax    bool                  `json:"prices_include_tax"`
	RoundingMode        string                `json:"rounding_mode"`        // HALF_EVEN | HALF_UP | HALF_DOWN
	TaxCalculationMode  string                `json:"tax_calculation_mode"` // LINE | UNIT | DOCUMENT
	Totals              OrderTotals           `json:"totals"`
	DiscountApps        []DiscountApplication `json:"discount_applications"`
	LoyaltyRedemption   *LoyaltyRedemption    `json:"loyalty_redemption,omitempty"`
	Tenders             []Tender              `json:"tenders"`
	ShipTo              Address               `json:"ship_to"`
	Lines               []OrderLine           `json:"lines"`
	EarnRate            *decimal.Decimal      `json:"earn_rate,omitempty"`       // snapshot from loyalty; policy when absent
	TierMultiplier      *decimal.Decimal      `json:"tier_multiplier,omitempty"` // snapshot from loyalty; policy when absent
	ShippingNet         decimal.Decimal       `json:"shipping_net"`
	ShippingTax         decimal.Decimal       `json:"shipping_tax"`
	ReturnWindowDays    int32                 `json:"return_window_days"`
	LoyaltyProgramRefID *string               `json:"loyalty_program_ref_id,omitempty"`
}

// OrderTotals are the header amounts of an order, all decimal(18,4) in the order currency.
type OrderTotals struct {
	MerchandiseNet         decimal.Decimal `json:"merchandise_net"`
	DiscountTotal          decimal.Decimal `json:"discount_total"`
	LoyaltyRedemptionValue decimal.Decimal `json:"loyalty_redemption_value"`
	ShippingNet            decimal.Decimal `json:"shipping_net"`
	TaxTotal               decimal.Decimal `json:"tax_total"`
	GrandTotal             decimal.Decimal `json:"grand_total"`
}

// DiscountApplication is a header-level discount (coupon, promotion, appeasement).
type DiscountApplication struct {
	DiscountID       string          `json:"discount_id"`
	Code             *string         `json:"code,omitempty"`
	Kind             string          `json:"kind"`              // COUPON | PROMOTION | APPEASEMENT
	AllocationMethod string          `json:"allocation_method"` // ACROSS | EACH
	Value            decimal.Decimal `json:"value"`
}

// LoyaltyRedemption is the points redemption applied to an order.
type LoyaltyRedemption struct {
	ReservationID string          `json:"reservation_id"`
	Points        int64           `json:"points"`
	Value         decimal.Decimal `json:"value"`
	Accounting    string          `json:"accounting"` // DISCOUNT | TENDER
}

// Tender is one means of payment.
type Tender struct {
	TenderType string          `json:"tender_type"`
	Amount     decimal.Decimal `json:"amount"`
}

// Address is the tax jurisdiction of a delivery.
type Address struct {
	Country  string `json:"country"`
	Region   string `json:"region"`
	Postcode string `json:"postcode"`
}

// OrderLine is one line of an order; allocations are frozen at acceptance.
type OrderLine struct {
	OrderLineID         string               `json:"order_line_id"`
	LineNumber          int32                `json:"line_number"`
	SKU                 string               `json:"sku"`
	GTIN                *string              `json:"gtin,omitempty"`
	ProductID           string               `json:"product_id"`
	CategoryPath        *string              `json:"category_path,omitempty"`
	IsGiftCard          bool                 `json:"is_gift_card"`
	Quantity            decimal.Decimal      `json:"quantity"` // decimal(12,3)
	UOM                 string               `json:"uom"`
	UnitListPrice       decimal.Decimal      `json:"unit_list_price"`
	UnitSalePrice       decimal.Decimal      `json:"unit_sale_price"`
	LineSubtotal        decimal.Decimal      `json:"line_subtotal"`
	DiscountAllocations []DiscountAllocation `json:"discount_allocations"`
	RedemptionAlloc     *RedemptionAlloc     `json:"loyalty_redemption_allocation,omitempty"`
	LineNet             decimal.Decimal      `json:"line_net"`
	TaxLines            []TaxLine            `json:"tax_lines"`
	FulfillmentMethod   string               `json:"fulfillment_method"` // SHIP | PICKUP | SHIP_FROM_STORE | DIGITAL
}

// DiscountAllocation is a header discount's share on one line.
type DiscountAllocation struct {
	DiscountID string          `json:"discount_id"`
	Amount     decimal.Decimal `json:"amount"`
}

// RedemptionAlloc is the redemption's share on one line (largest remainder, Σ = header).
type RedemptionAlloc struct {
	Points int64           `json:"points"`
	Value  decimal.Decimal `json:"value"`
}

// TaxLine is one tax on a line.
type TaxLine struct {
	TaxCode string          `json:"tax_code"`
	Rate    decimal.Decimal `json:"rate"` // decimal(9,6)
	Amount  decimal.Decimal `json:"amount"`
}

// OrderLinesCancelled cancels quantities of one or more lines (partial or full).
type OrderLinesCancelled struct {
	CancellationID   string          `json:"cancellation_id"`
	OrderID          string          `json:"order_id"`
	CancelledAt      time.Time       `json:"cancelled_at"`
	ReasonCode       string          `json:"reason_code"`
	IsFullOrder      bool            `json:"is_full_order"`
	IsPreFulfillment bool            `json:"is_pre_fulfillment"`
	Lines            []CancelledLine `json:"lines"`
}

// CancelledLine is the quantity cancelled on one line.
type CancelledLine struct {
	OrderLineID       string          `json:"order_line_id"`
	QuantityCancelled decimal.Decimal `json:"quantity_cancelled"`
}

// ---------------------------------------------------------------------------- shipments

// ShipmentConfirmed is one physical shipment; partial and split shipments are more events.
type ShipmentConfirmed struct {
	ShipmentID         string         `json:"shipment_id"`
	FulfillmentOrderID *string        `json:"fulfillment_order_id,omitempty"`
	OrderID            string         `json:"order_id"`
	ShipNodeID         string         `json:"ship_node_id"`
	FulfillmentType    string         `json:"fulfillment_type"` // WAREHOUSE | STORE | DROPSHIP
	Carrier            string         `json:"carrier"`
	ServiceLevel       string         `json:"service_level"`
	TrackingNumbers    []string       `json:"tracking_numbers"`
	ShippedAt          time.Time      `json:"shipped_at"`
	Lines              []ShipmentLine `json:"lines"`
	IsReship           bool           `json:"is_reship"`
	Currency           *string        `json:"currency,omitempty"` // when the WMS states one, it must equal the order's
	ErpDeliveryID      *string        `json:"erp_delivery_id,omitempty"`
}

// ShipmentLine carries no price: value comes from the order.
type ShipmentLine struct {
	ShipmentLineID  string          `json:"shipment_line_id"`
	OrderLineID     string          `json:"order_line_id"`
	SKU             string          `json:"sku"`
	QuantityShipped decimal.Decimal `json:"quantity_shipped"`
}

// ---------------------------------------------------------------------------- returns

// ReturnReceived is a return receipt with its inspection outcome.
type ReturnReceived struct {
	ReturnID            string       `json:"return_id"`
	OrderID             string       `json:"order_id"`
	ReceivedAt          time.Time    `json:"received_at"`
	ReceivingLocationID string       `json:"receiving_location_id"`
	Channel             string       `json:"channel"` // STORE | MAIL
	Lines               []ReturnLine `json:"lines"`
	Refund              *Refund      `json:"refund,omitempty"`
}

// ReturnLine is one returned line; reversal uses QuantityAccepted.
type ReturnLine struct {
	ReturnLineID     string          `json:"return_line_id"`
	OrderLineID      string          `json:"order_line_id"`
	SKU              string          `json:"sku"`
	QuantityReceived decimal.Decimal `json:"quantity_received"`
	QuantityAccepted decimal.Decimal `json:"quantity_accepted"`
	Disposition      string          `json:"disposition"` // RESTOCK | DAMAGED | DESTROY
	ReasonCode       string          `json:"reason_code"`
}

// Refund is the money refunded for a return.
type Refund struct {
	RefundID       string          `json:"refund_id"`
	Currency       string          `json:"currency"`
	MerchandiseNet decimal.Decimal `json:"merchandise_net"`
	Tax            decimal.Decimal `json:"tax"`
	ShippingRefund decimal.Decimal `json:"shipping_refund"`
	ReturnFee      decimal.Decimal `json:"return_fee"`
	Tenders        []Tender        `json:"tenders"`
}

// ---------------------------------------------------------------------------- loyalty

// PointsReserved is a redemption hold made at checkout.
type PointsReserved struct {
	ReservationID  string          `json:"reservation_id"`
	MemberID       string          `json:"member_id"`
	CheckoutID     string          `json:"checkout_id"`
	OrderID        *string         `json:"order_id,omitempty"`
	Points         int64           `json:"points"`
	Value          Money           `json:"value"`
	ConversionRate decimal.Decimal `json:"conversion_rate"`
	ReservedAt     time.Time       `json:"reserved_at"`
	ExpiresAt      time.Time       `json:"expires_at"`
}

// RedemptionConfirmed finalises a reservation against an order.
type RedemptionConfirmed struct {
	ReservationID string    `json:"reservation_id"`
	RedemptionID  string    `json:"redemption_id"`
	OrderID       string    `json:"order_id"`
	Points        int64     `json:"points"`
	ConfirmedAt   time.Time `json:"confirmed_at"`
}

// RedemptionReleased gives back a reservation that never became a redemption.
type RedemptionReleased struct {
	ReservationID string    `json:"reservation_id"`
	OrderID       *string   `json:"order_id,omitempty"`
	Reason        string    `json:"reason"` // CHECKOUT_ABANDONED | PAYMENT_FAILED | ORDER_CANCELLED_BEFORE_CONFIRM | TTL_EXPIRED
	ReleasedAt    time.Time `json:"released_at"`
}

// RedemptionRefunded returns redeemed points after a cancellation or return.
type RedemptionRefunded struct {
	RefundEntryID string    `json:"refund_entry_id"`
	RequestID     *string   `json:"request_id,omitempty"` // the RedemptionRefundRequested it answers
	RedemptionID  string    `json:"redemption_id"`
	OrderID       string    `json:"order_id"`
	Points        int64     `json:"points"`
	Reason        string    `json:"reason"` // CANCELLATION | RETURN
	SourceRefID   string    `json:"source_ref_id"`
	ExpiryPolicy  string    `json:"expiry_policy"` // RESTORE_ORIGINAL | NEW_EXPIRY
	RefundedAt    time.Time `json:"refunded_at"`
}

// PointsAccrualPosted is the loyalty platform booking an accrual (PENDING until activation).
type PointsAccrualPosted struct {
	LedgerEntryID  string          `json:"ledger_entry_id"`
	RequestID      string          `json:"request_id"`
	OrderID        string          `json:"order_id"`
	MemberID       string          `json:"member_id"`
	Points         int64           `json:"points"`
	Status         string          `json:"status"` // PENDING
	ActivatesAt    time.Time       `json:"activates_at"`
	ExpiresAt      *time.Time      `json:"expires_at,omitempty"`
	SourceRef      string          `json:"source_ref"`
	BasisAmount    decimal.Decimal `json:"basis_amount"`
	Currency       string          `json:"currency"`
	EarnRate       decimal.Decimal `json:"earn_rate"`
	TierCode       string          `json:"tier_code"`
	TierMultiplier decimal.Decimal `json:"tier_multiplier"`
	RuleVersion    string          `json:"rule_version"`
	PostedAt       time.Time       `json:"posted_at"`
}

// PointsActivated moves pending points to the active balance.
type PointsActivated struct {
	LedgerEntryID string    `json:"ledger_entry_id"`
	OrderID       string    `json:"order_id"`
	Points        int64     `json:"points"`
	ActivatedAt   time.Time `json:"activated_at"`
}

// PointsReversed is the loyalty platform booking a reversal.
type PointsReversed struct {
	LedgerEntryID    string    `json:"ledger_entry_id"`
	RequestID        string    `json:"request_id"`
	OrderID          string    `json:"order_id"`
	MemberID         string    `json:"member_id"`
	Points           int64     `json:"points"`
	FromPending      int64     `json:"from_pending"`
	FromActive       int64     `json:"from_active"`
	ShortfallPoints  int64     `json:"shortfall_points"`
	Reason           string    `json:"reason"` // RETURN | POST_SHIPMENT_CANCEL | MANUAL
	SourceRefID      string    `json:"source_ref_id"`
	ReversesEntryIDs []string  `json:"reverses_entry_ids"`
	ReversedAt       time.Time `json:"reversed_at"`
}

// ---------------------------------------------------------------------------- erp

// ErpSalesOrderCreated is the ERP's replica of an order.
type ErpSalesOrderCreated struct {
	ErpSalesOrderID string        `json:"erp_sales_order_id"`
	OrderID         string        `json:"order_id"`
	SalesOrg        string        `json:"sales_org"`
	SoldTo          string        `json:"sold_to"`
	Currency        string        `json:"currency"`
	CreatedAt       time.Time     `json:"created_at"`
	Items           []ErpItemLink `json:"item_map"`
}

// ErpItemLink maps an ERP item to an order line, with the quantity the ERP holds.
type ErpItemLink struct {
	ErpItem     string          `json:"erp_item"`
	OrderLineID string          `json:"order_line_id"`
	Quantity    decimal.Decimal `json:"quantity"`
}

// BillingDocument is an invoice (F2, L2) or a credit memo (G2, RE).
type BillingDocument struct {
	BillingDocumentID        string          `json:"billing_document_id"`
	BillingType              string          `json:"billing_type"` // F2 | G2 | RE | L2
	OrderID                  string          `json:"order_id"`
	ErpSalesOrderID          string          `json:"erp_sales_order_id"`
	CompanyCode              string          `json:"company_code"`
	FiscalYear               int32           `json:"fiscal_year"`
	AccountingDocumentID     *string         `json:"accounting_document_id,omitempty"`
	AccountingTransferStatus string          `json:"accounting_transfer_status"` // NOT_TRANSFERRED | BLOCKED | TRANSFERRED
	BillingDate              time.Time       `json:"billing_date"`
	Currency                 string          `json:"currency"`
	FxRate                   decimal.Decimal `json:"fx_rate"` // decimal(18,9)
	Net                      decimal.Decimal `json:"net"`
	Tax                      decimal.Decimal `json:"tax"`
	Gross                    decimal.Decimal `json:"gross"`
	Lines                    []BillingLine   `json:"lines"`
	ReferenceInvoiceID       *string         `json:"reference_invoice_id,omitempty"`
	ReturnID                 *string         `json:"return_id,omitempty"`
	// RedemptionValue (erp v2) is the loyalty redemption — the discount or tender the order's
	// redeemed points paid for — that this document records (an invoice bills it, a credit memo
	// gives it back), positive, in Currency. nil means unknown: a v1 writer, or an ERP that does
	// not carry it; it is never read as 0.
	RedemptionValue *decimal.Decimal `json:"redemption_value,omitempty"`
}

// BillingLine is one item of a billing document.
type BillingLine struct {
	BillingItem       string          `json:"billing_item"`
	OrderLineID       string          `json:"order_line_id"`
	ErpItem           string          `json:"erp_item"`
	ReferenceDocument string          `json:"reference_document"` // shipment_id or return_id
	SKU               string          `json:"sku"`
	Quantity          decimal.Decimal `json:"quantity"`
	Net               decimal.Decimal `json:"net"`
	Tax               decimal.Decimal `json:"tax"`
}

// BillingDocCancelled cancels an earlier billing document (SAP S1/S2).
type BillingDocCancelled struct {
	BillingDocumentID        string    `json:"billing_document_id"`
	CancelsBillingDocumentID string    `json:"cancels_billing_document_id"`
	OrderID                  string    `json:"order_id"`
	CancelledAt              time.Time `json:"cancelled_at"`
}

// ErpSalesOrderChanged (erp v2) is a versioned replica of an ERP sales order: its whole state
// after a change (SAP's SalesOrder.Changed notification, enriched by the connector). Readers keep
// the replica with the highest ErpVersion per sales order, whatever the arrival order; a replica
// of a lower or equal version than one already seen is stale. A sales order the ERP created and
// never changed is in the state ErpSalesOrderCreated describes (OPEN, nothing rejected).
type ErpSalesOrderChanged struct {
	ErpSalesOrderID string           `json:"erp_sales_order_id"`
	OrderID         string           `json:"order_id"`
	ErpVersion      int64            `json:"erp_version"` // > 0, strictly increasing per sales order
	Status          string           `json:"status"`      // OPEN | PARTIALLY_PROCESSED | COMPLETED | REJECTED
	ChangedAt       time.Time        `json:"changed_at"`
	Items           []ErpReplicaItem `json:"item_map"`
}

// ErpReplicaItem is one item of a sales order replica: the quantity the ERP holds and how much
// of it is rejected (SAP's reason for rejection); the open quantity is the difference.
type ErpReplicaItem struct {
	ErpItem          string          `json:"erp_item"`
	OrderLineID      string          `json:"order_line_id"`
	Quantity         decimal.Decimal `json:"quantity"`
	RejectedQuantity decimal.Decimal `json:"rejected_quantity"`
}

// ErpSalesOrderStatuses are the values of ErpSalesOrderChanged.Status.
var ErpSalesOrderStatuses = []string{"OPEN", "PARTIALLY_PROCESSED", "COMPLETED", "REJECTED"}

// ---------------------------------------------------------------------------- commands

// LoyaltyCommand is what retailflow asks the loyalty platform to do. RequestID is deterministic
// (derived from the order and the causing event), so a replay re-emits nothing new.
type LoyaltyCommand struct {
	RequestID      string          `json:"request_id"`
	CommandType    EventType       `json:"command_type"` // AccrualRequested | ReversalRequested | RedemptionRefundRequested
	OrderID        string          `json:"order_id"`
	MemberID       string          `json:"member_id"`
	Points         int64           `json:"points"` // always > 0; direction from CommandType
	CausingEventID string          `json:"causing_event_id"`
	SourceRefID    string          `json:"source_ref_id"` // shipment_id / cancellation_id / return_id
	Reason         string          `json:"reason"`
	BasisAmount    decimal.Decimal `json:"basis_amount"` // cumulative eligible basis B after the event
	Currency       string          `json:"currency"`
	EarnRate       decimal.Decimal `json:"earn_rate"`
	TierCode       string          `json:"tier_code"`
	TierMultiplier decimal.Decimal `json:"tier_multiplier"`
	EntitledPoints int64           `json:"entitled_points"` // P after the event
	ActivatesAt    *time.Time      `json:"activates_at,omitempty"`
	ReservationID  *string         `json:"reservation_id,omitempty"`
	ExpiryPolicy   *string         `json:"expiry_policy,omitempty"`
	PolicyVersion  string          `json:"policy_version"`
	RequestedAt    time.Time       `json:"requested_at"` // business time of the causing event
}
