package schemas

// bodyInfo describes one body of the Event sum type.
type bodyInfo struct {
	types []EventType // the event types this body carries
	topic Topic
	key   string // json key of the body (and the root of validation paths)
}

// bodies lists every body in declaration order (Event.bodySet's order). Invoice and credit memo share a Go type but
// are distinct bodies (and distinct Avro branch records).
var bodies = []bodyInfo{
	{[]EventType{TypeOrderAccepted}, TopicOrders, "order_accepted"},
	{[]EventType{TypeOrderLinesCancelled}, TopicOrders, "order_lines_cancelled"},
	{[]EventType{TypeShipmentConfirmed}, TopicShipments, "shipment_confirmed"},
	{[]EventType{TypeReturnReceived}, TopicReturns, "return_received"},
	{[]EventType{TypePointsReserved}, TopicLoyalty, "points_reserved"},
	{[]EventType{TypeRedemptionConfirmed}, TopicLoyalty, "redemption_confirmed"},
	{[]EventType{TypeRedemptionReleased}, TopicLoyalty, "redemption_released"},
	{[]EventType{TypeRedemptionRefunded}, TopicLoyalty, "redemption_refunded"},
	{[]EventType{TypePointsAccrualPosted}, TopicLoyalty, "points_accrual_posted"},
	{[]EventType{TypePointsActivated}, TopicLoyalty, "points_activated"},
	{[]EventType{TypePointsReversed}, TopicLoyalty, "points_reversed"},
	{[]EventType{TypeErpSalesOrderCreated}, TopicERP, "erp_sales_order_created"},
	{[]EventType{TypeInvoicePosted}, TopicERP, "invoice_posted"},
	{[]EventType{TypeCreditMemoPosted}, TopicERP, "credit_memo_posted"},
	{[]EventType{TypeBillingDocCancelled}, TopicERP, "billing_document_cancelled"},
	{[]EventType{TypeErpSalesOrderChanged}, TopicERP, "erp_sales_order_changed"},
	{[]EventType{TypeAccrualRequested, TypeReversalRequested, TypeRedemptionRefundRequested}, TopicCommands, "loyalty_command"},
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

// bodySet reports whether body i of bodies is set. It is a switch rather than a function per
// body in bodyInfo: a call through a function value makes e escape, and then every Event a
// caller holds by value and asks for its body type (the ledger, per input event) is moved to the
// heap. TestBodiesInOrder holds the cases to bodies' order.
func (e *Event) bodySet(i int) bool {
	switch i {
	case 0:
		return e.OrderAccepted != nil
	case 1:
		return e.OrderLinesCancelled != nil
	case 2:
		return e.ShipmentConfirmed != nil
	case 3:
		return e.ReturnReceived != nil
	case 4:
		return e.PointsReserved != nil
	case 5:
		return e.RedemptionConfirmed != nil
	case 6:
		return e.RedemptionReleased != nil
	case 7:
		return e.RedemptionRefunded != nil
	case 8:
		return e.PointsAccrualPosted != nil
	case 9:
		return e.PointsActivated != nil
	case 10:
		return e.PointsReversed != nil
	case 11:
		return e.ErpSalesOrderCreated != nil
	case 12:
		return e.InvoicePosted != nil
	case 13:
		return e.CreditMemoPosted != nil
	case 14:
		return e.BillingDocCancelled != nil
	case 15:
		return e.ErpSalesOrderChanged != nil
	case 16:
		return e.LoyaltyCommand != nil
	}
	return false
}

// setBodies returns the bodies that are non-nil.
func (e *Event) setBodies() []*bodyInfo {
	var out []*bodyInfo
	for i := range bodies {
		if e.bodySet(i) {
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
		if e.bodySet(i) {
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
