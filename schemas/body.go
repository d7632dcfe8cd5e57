package schemas

// bodyInfo describes one body of the Event sum type.
type bodyInfo struct {
	types []EventType // the event types this body carries
	topic Topic
	key   string // json key of the body (and the root of validation paths)
	isSet func(e *Event) bool
}

// bodies lists every body in declaration order. Invoice and credit memo share a Go type but
// are distinct bodies (and distinct Avro branch records).
var bodies = []bodyInfo{
	{[]EventType{TypeOrderAccepted}, TopicOrders, "order_accepted", func(e *Event) bool { return e.OrderAccepted != nil }},
	{[]EventType{TypeOrderLinesCancelled}, TopicOrders, "order_lines_cancelled", func(e *Event) bool { return e.OrderLinesCancelled != nil }},
	{[]EventType{TypeShipmentConfirmed}, TopicShipments, "shipment_confirmed", func(e *Event) bool { return e.ShipmentConfirmed != nil }},
	{[]EventType{TypeReturnReceived}, TopicReturns, "return_received", func(e *Event) bool { return e.ReturnReceived != nil }},
	{[]EventType{TypePointsReserved}, TopicLoyalty, "points_reserved", func(e *Event) bool { return e.PointsReserved != nil }},
	{[]EventType{TypeRedemptionConfirmed}, TopicLoyalty, "redemption_confirmed", func(e *Event) bool { return e.RedemptionConfirmed != nil }},
	{[]EventType{TypeRedemptionReleased}, TopicLoyalty, "redemption_released", func(e *Event) bool { return e.RedemptionReleased != nil }},
	{[]EventType{TypeRedemptionRefunded}, TopicLoyalty, "redemption_refunded", func(e *Event) bool { return e.RedemptionRefunded != nil }},
	{[]EventType{TypePointsAccrualPosted}, TopicLoyalty, "points_accrual_posted", func(e *Event) bool { return e.PointsAccrualPosted != nil }},
	{[]EventType{TypePointsActivated}, TopicLoyalty, "points_activated", func(e *Event) bool { return e.PointsActivated != nil }},
	{[]EventType{TypePointsReversed}, TopicLoyalty, "points_reversed", func(e *Event) bool { return e.PointsReversed != nil }},
	{[]EventType{TypeErpSalesOrderCreated}, TopicERP, "erp_sales_order_created", func(e *Event) bool { return e.ErpSalesOrderCreated != nil }},
	{[]EventType{TypeInvoicePosted}, TopicERP, "invoice_posted", func(e *Event) bool { return e.InvoicePosted != nil }},
	{[]EventType{TypeCreditMemoPosted}, TopicERP, "credit_memo_posted", func(e *Event) bool { return e.CreditMemoPosted != nil }},
	{[]EventType{TypeBillingDocCancelled}, TopicERP, "billing_document_cancelled", func(e *Event) bool { return e.BillingDocCancelled != nil }},
	{[]EventType{TypeErpSalesOrderChanged}, TopicERP, "erp_sales_order_changed", func(e *Event) bool { return e.ErpSalesOrderChanged != nil }},
	{[]EventType{TypeAccrualRequested, TypeReversalRequested, TypeRedemptionRefundRequested}, TopicCommands, "loyalty_command", func(e *Event) bool { return e.LoyaltyCommand != nil }},
}

// EventTypes lists every event type, in the order of the topics that carry them.
func EventTypes() []EventType {
	var out []EventType
	for _, b := range bodies {
		out = append(out, b.types...)
	}
	return out
}

// TopicOf returns the logical topic that carries events of type t.
func TopicOf(t EventType) (Topic, bool) {
	for _, b := range bodies {
		for _, bt := range b.types {
			if bt == t {
				return b.topic, true
			}
		}
	}
	return "", false
}

// setBodies returns the bodies that are non-nil.
func (e *Event) setBodies() []*bodyInfo {
	var out []*bodyInfo
	for i := range bodies {
		if bodies[i].isSet(e) {
			out = append(out, &bodies[i])
		}
	}
	return out
}

// setBody returns the first non-nil body and how many bodies are set.
func (e *Event) setBody() (*bodyInfo, int) {
	var first *bodyInfo
	n := 0
	for i := range bodies {
		if bodies[i].isSet(e) {
			if first == nil {
				first = &bodies[i]
			}
			n++
		}
	}
	return first, n
}

// BodyType returns the event type implied by the single non-nil body (for a loyalty command,
// its CommandType), or "" when no body or more than one is set.
func (e *Event) BodyType() EventType {
	b, n := e.setBody()
	if n != 1 {
		return ""
	}
	if e.LoyaltyCommand != nil {
		return e.LoyaltyCommand.CommandType
	}
	return b.types[0]
}

// Key is the Kafka key of the event's record (the contract of every order-scoped topic): its
// order_id, or, for a loyalty event before an order number exists (a reservation at checkout,
// its release), "checkout:" + the checkout id, which the envelope's correlation_id carries until
// the order exists. "" when neither is known.
func (e *Event) Key() string {
	if id := e.OrderID(); id != "" {
		return id
	}
	if e.PointsReserved != nil && e.PointsReserved.CheckoutID != "" {
		return "checkout:" + e.PointsReserved.CheckoutID
	}
	if (e.PointsReserved != nil || e.RedemptionReleased != nil) && e.CorrelationID != "" {
		return "checkout:" + e.CorrelationID
	}
	return ""
}

// OrderID returns the order the event belongs to (the Kafka key of every order-scoped topic):
// the body's order_id, or "" when the body has none (a reservation before its order).
func (e *Event) OrderID() string {
	switch {
	case e.OrderAccepted != nil:
		return e.OrderAccepted.OrderID
	case e.OrderLinesCancelled != nil:
		return e.OrderLinesCancelled.OrderID
	case e.ShipmentConfirmed != nil:
		return e.ShipmentConfirmed.OrderID
	case e.ReturnReceived != nil:
		return e.ReturnReceived.OrderID
	case e.PointsReserved != nil:
		return deref(e.PointsReserved.OrderID)
	case e.RedemptionConfirmed != nil:
		return e.RedemptionConfirmed.OrderID
	case e.RedemptionReleased != nil:
		return deref(e.RedemptionReleased.OrderID)
	case e.RedemptionRefunded != nil:
		return e.RedemptionRefunded.OrderID
	case e.PointsAccrualPosted != nil:
		return e.PointsAccrualPosted.OrderID
	case e.PointsActivated != nil:
		return e.PointsActivated.OrderID
	case e.PointsReversed != nil:
		return e.PointsReversed.OrderID
	case e.ErpSalesOrderCreated != nil:
		return e.ErpSalesOrderCreated.OrderID
	case e.InvoicePosted != nil:
		return e.InvoicePosted.OrderID
	case e.CreditMemoPosted != nil:
		return e.CreditMemoPosted.OrderID
	case e.BillingDocCancelled != nil:
		return e.BillingDocCancelled.OrderID
	case e.ErpSalesOrderChanged != nil:
		return e.ErpSalesOrderChanged.OrderID
	case e.LoyaltyCommand != nil:
		return e.LoyaltyCommand.OrderID
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
