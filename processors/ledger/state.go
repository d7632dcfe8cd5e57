package ledger

import "github.com/retailflow/retailflow/schemas/ledgerstate"

// StateVersion is the version of the State layout the ledger writes (ledgerstate.Version).
const StateVersion = ledgerstate.Version

// The state types are the changelog contract, schemas/ledgerstate (beside
// schemas/avro/order_ledger.avsc); the ledger computes them. The constants below are the values
// of their enumerated fields.
type (
	State             = ledgerstate.State
	MoveRecord        = ledgerstate.MoveRecord
	OrderSnapshot     = ledgerstate.OrderSnapshot
	LineState         = ledgerstate.LineState
	PointsState       = ledgerstate.PointsState
	RefLine           = ledgerstate.RefLine
	ShipmentState     = ledgerstate.ShipmentState
	ReturnState       = ledgerstate.ReturnState
	CancellationState = ledgerstate.CancellationState
	ReservationState  = ledgerstate.ReservationState
	CommandRecord     = ledgerstate.CommandRecord
	PostingRecord     = ledgerstate.PostingRecord
	ErpOrderState     = ledgerstate.ErpOrderState
	ErpItemState      = ledgerstate.ErpItemState
	BillingDocState   = ledgerstate.BillingDocState
	BillingLineState  = ledgerstate.BillingLineState
	DocCancelState    = ledgerstate.DocCancelState
	HeldEvent         = ledgerstate.HeldEvent
	DeferredRefund    = ledgerstate.DeferredRefund
	SeenEvent         = ledgerstate.SeenEvent
	Exception         = ledgerstate.Exception
)

// Move kinds: the OMS events that move points or refunds.
const (
	MoveShipment     = "SHIPMENT"
	MoveReturn       = "RETURN"
	MoveCancellation = "CANCELLATION"
)

// Reservation statuses, derived from the loyalty events seen (in any order).
const (
	ReservationReserved  = "RESERVED"
	ReservationConfirmed = "CONFIRMED"
	ReservationReleased  = "RELEASED"
	ReservationUnknown   = "UNKNOWN" // only a confirmation/release was seen, no PointsReserved
)

// Posting kinds.
const (
	PostingAccrual    = "ACCRUAL"
	PostingActivation = "ACTIVATION"
	PostingReversal   = "REVERSAL"
	PostingRefund     = "REFUND"
)

// Billing document kinds.
const (
	DocInvoice    = "INVOICE"
	DocCreditMemo = "CREDIT_MEMO"
)

// Hold reasons.
const (
	HoldNoOrder        = "NO_ORDER"               // waits for OrderAccepted
	HoldExceedsShipped = "RETURN_EXCEEDS_SHIPPED" // a return waits for the shipment it refers to
)

// Exception codes recorded in State.Exceptions.
const (
	ExcHeldWithoutOrder     = "HELD_WITHOUT_ORDER"                // Ref: event id; past OrphanGrace without OrderAccepted
	ExcReturnExceedsShipped = "RETURN_EXCEEDS_SHIPPED"            // Ref: return id; held past grace or applied capped
	ExcShipmentExceedsOpen  = "SHIPMENT_EXCEEDS_OPEN"             // Ref: order line; shipped + cancelled > ordered
	ExcCurrencyMismatch     = "CURRENCY_MISMATCH"                 // Ref: shipment/return/document/ERP order id
	ExcUnknownOrderLine     = "UNKNOWN_ORDER_LINE"                // Ref: "<document or event ref>/<order_line_id>"
	ExcPostedNotRequested   = "POSTED_NE_REQUESTED"               // Ref: request id; posting points ≠ command points
	ExcPostingUnknown       = "POSTING_UNKNOWN_REQUEST"           // Ref: entry id; request id of no command of this order
	ExcWrongMultiplier      = "WRONG_MULTIPLIER"                  // Ref: ledger entry id
	ExcErpQtyDiff           = "ERP_QTY_DIFF"                      // Ref: order line; ERP sales order qty ≠ ordered
	ExcErpLineCountDiff     = "ERP_LINE_COUNT_DIFF"               // Ref: ERP sales order id
	ExcBilledQtyDiff        = "BILLED_QTY_DIFF"                   // Ref: order line on some billing document; invoiced − credited ≠ shipped − returned
	ExcBilledAmountDiff     = "BILLED_AMOUNT_DIFF"                // Ref: order line; beyond AmountTolerance × lines
	ExcNoEarnRate           = "NO_EARN_RATE"                      // Ref: currency
	ExcUnknownTier          = "UNKNOWN_TIER"                      // Ref: tier code
	ExcRedemptionConflict   = "REDEMPTION_CONFIRMED_AND_RELEASED" // Ref: reservation id
)

// shareOf is the event whose share the command carries.
func shareOf(c *CommandRecord) string {
	if c.AttributedTo != "" {
		return c.AttributedTo
	}
	return c.CausingEventID
}
