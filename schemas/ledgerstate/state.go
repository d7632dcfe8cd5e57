// Package ledgerstate is the changelog contract of the order ledger: the Go type of one order's
// state (State, the record of avro/order_ledger.avsc) and its codec (Encode, Decode) in the
// Confluent wire format. processors/ledger computes it; the changelog restore, the ClickHouse
// sink (order_line_state), `retailflow consume` and the verifiers read it from here, so none of
// them depends on the processor.
package ledgerstate

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/schemas"
)

// Version is the version of the State layout written to the changelog
// (schemas/avro/order_ledger.avsc). Bump it, and keep Decode able to read the previous version,
// whenever the meaning of a field changes.
//
// History: 1 — first layout. 2 — SeenEvent.Fingerprint is the binary-form hash of the event
// instead of FNV-64a of its JSON form; the layout is unchanged, and a version-1 fingerprint is
// still honoured (the ledger falls back to its legacy fingerprint when a seen id's fingerprint
// differs), so a version-1 state needs no migration step.
const Version = 2

// Encode frames a state as a value of the changelog topic: Confluent wire format with the id of
// the current order_ledger schema in s, StateVersion set to Version. The key is the order id;
// eviction is a tombstone (nil value), written by the runtime, not by Encode.
func Encode(s *schemas.Serde, st *State) ([]byte, error) {
	c := *st
	c.StateVersion = Version
	b, err := schemas.Encode(s, schemas.TopicChangelog, &c)
	if err != nil {
		return nil, fmt.Errorf("ledger state: encode state of order %q: %w", st.OrderID, err)
	}
	return b, nil
}

// Decode reads a changelog value written by Encode (by this or another version of the schema:
// the Serde resolves the writer schema into State). Errors are *schemas.DecodeError (which says
// whether a retry may help), or a version error for a state written by a newer ledger than this
// one. A tombstone (nil value) is not a state: the reader drops the order.
func Decode(ctx context.Context, s *schemas.Serde, ref schemas.RecordRef, value []byte) (*State, error) {
	if v3, ok := asCurrent(s, value); ok {
		value = v3
	}
	st, err := schemas.Decode[State](ctx, s, ref, value)
	if err != nil {
		return nil, err
	}
	if st.StateVersion > Version {
		return nil, fmt.Errorf("ledger state: %s: order %q state version %d is newer than this reader's %d", ref, st.OrderID, st.StateVersion, Version)
	}
	return st, nil
}

// State is the whole ledger of one order as plain data: what the changelog carries and what the
// ClickHouse sink reads into order_line_state. Every slice is kept sorted by its key (noted on
// the field) so that two ledgers that saw the same events in a different order are equal
// (OrphanSince aside: an orphan also keeps when its latest record reached the log).
// Quantities are decimal(12,3), amounts decimal(18,4), rates decimal(9,6), points int64.
//
// Treat a State obtained from ledger.Ledger.State as read-only; the ledger never shares its
// slices with it.
type State struct {
	StateVersion int32  `json:"state_version"`
	OrderID      string `json:"order_id"`
	// Clock is the latest business time (occurred_at) of any event applied: the ledger's "now".
	Clock time.Time `json:"clock"`

	Order  *OrderSnapshot `json:"order"`  // nil until OrderAccepted is applied
	Lines  []LineState    `json:"lines"`  // in order line order
	Points PointsState    `json:"points"` // order-level points, requested vs posted

	Shipments     []ShipmentState     `json:"shipments"`     // by shipment_id
	Returns       []ReturnState       `json:"returns"`       // by return_id
	Cancellations []CancellationState `json:"cancellations"` // by cancellation_id
	Reservations  []ReservationState  `json:"reservations"`  // by reservation_id
	Commands      []CommandRecord     `json:"commands"`      // by request_id
	Postings      []PostingRecord     `json:"postings"`      // by (kind, ledger_entry_id)
	ErpOrders     []ErpOrderState     `json:"erp_orders"`    // by erp_sales_order_id
	Documents     []BillingDocState   `json:"documents"`     // by billing_document_id
	DocCancels    []DocCancelState    `json:"doc_cancels"`   // by billing_document_id (the S1/S2 document)

	Held []HeldEvent `json:"held"` // by (occurred_at, event_id): canonical order
	// DeferredRefund is only found in states written by policy 2026-11-v1 ledgers, which held a
	// full-order cancellation's refund until RedemptionConfirmed arrived. The next Apply emits
	// that refund (caused by the cancellation, by the RR rule) and clears it; nothing sets it now.
	DeferredRefund *DeferredRefund `json:"deferred_refund"`
	Exceptions     []Exception     `json:"exceptions"` // by (code, ref)
	Seen           []SeenEvent     `json:"seen"`       // by event_id

	Closed   bool      `json:"closed"`
	ClosedAt time.Time `json:"closed_at"` // zero unless Closed
	EvictAt  time.Time `json:"evict_at"`  // zero unless Closed: ClosedAt + RetentionAfterClose

	// Moves are the applied shipments, returns and cancellations by (occurred_at, event_id):
	// canonical order, from which the canonical attribution of points is replayed (attrib.go).
	// Empty in a state written before the field existed (such an order is never re-attributed).
	Moves []MoveRecord `json:"moves"`

	// OrphanSince, while the order has no OrderAccepted, is the latest Kafka record timestamp of
	// its events (duplicates too), at most ledger.MaxArrivalLag past Clock: when the latest of
	// them reached the log (ledger.Ledger.Arrived). An orphan is kept OrphanGrace +
	// RetentionAfterClose past the later of this and Clock, so an event that arrives long after
	// it occurred (a backlog) still waits that long for its order. Zero (0001-01-01) in an
	// accepted order; 1970-01-01, the schema's default, in a state written before the field
	// existed or in layout v2 (ledgerstate.Layout). Either means no arrival.
	OrphanSince time.Time `json:"orphan_since"`
}

// MoveRecord is one applied point-moving event; its content is in Shipments, Returns or
// Cancellations under Ref.
type MoveRecord struct {
	EventID    string    `json:"event_id"`
	OccurredAt time.Time `json:"occurred_at"`
	Kind       string    `json:"kind"`
	Ref        string    `json:"ref"`
	NoLines    bool      `json:"no_lines"` // a full-order cancellation that named no lines
}

// OrderSnapshot is what the ledger froze at OrderAccepted: identity, currency, and the policy
// snapshot (earn rate, tier multiplier, lock days, return window, policy version).
type OrderSnapshot struct {
	EventID          string          `json:"event_id"`
	AcceptedAt       time.Time       `json:"accepted_at"`
	CustomerID       string          `json:"customer_id"`
	MemberID         string          `json:"member_id"` // "" for a guest order: it earns no points
	TierCode         string          `json:"tier_code"`
	Currency         string          `json:"currency"`
	EarnRate         decimal.Decimal `json:"earn_rate"`
	TierMultiplier   decimal.Decimal `json:"tier_multiplier"`
	PolicyVersion    string          `json:"policy_version"`
	LockDays         int32           `json:"lock_days"`
	ReturnWindowDays int32           `json:"return_window_days"`
	// Redemption of points on the order (zero values when none).
	ReservationID        string          `json:"reservation_id"`
	RedemptionPoints     int64           `json:"redemption_points"`
	RedemptionValue      decimal.Decimal `json:"redemption_value"`
	RedemptionAccounting string          `json:"redemption_accounting"` // DISCOUNT | TENDER | ""
	// EarnRateMissing and TierUnknown record a policy gap at acceptance (the order then earns
	// at rate 0, resp. multiplier 1); they surface as NO_EARN_RATE / UNKNOWN_TIER exceptions.
	EarnRateMissing bool `json:"earn_rate_missing"`
	TierUnknown     bool `json:"tier_unknown"`
	// ConfirmTrigger is Policy.ConfirmTrigger at acceptance; "" (a state written before the
	// field existed) reads as ConfirmOnOrderAccepted.
	ConfirmTrigger string `json:"confirm_trigger"`
}

// LineState is one order line: the quantity state and the values frozen at acceptance.
// Invariant after every Apply: 0 ≤ Returned ≤ Shipped ≤ Ordered − Cancelled.
type LineState struct {
	OrderLineID string `json:"order_line_id"`
	LineNumber  int32  `json:"line_number"`
	SKU         string `json:"sku"`
	IsGiftCard  bool   `json:"is_gift_card"`
	Eligible    bool   `json:"eligible"`

	Ordered decimal.Decimal `json:"qty_ordered"`
	// CancelRequested and ShippedReported are the raw sums of what the OMS reported; Cancelled
	// and Shipped are the effective quantities (a shipment is a physical fact and wins over a
	// cancellation of the same units, so the result does not depend on arrival order).
	CancelRequested decimal.Decimal `json:"qty_cancel_requested"`
	ShippedReported decimal.Decimal `json:"qty_shipped_reported"`
	Cancelled       decimal.Decimal `json:"qty_cancelled"`
	Shipped         decimal.Decimal `json:"qty_shipped"`   // reships excluded
	Reshipped       decimal.Decimal `json:"qty_reshipped"` // replacement units: never earn
	Returned        decimal.Decimal `json:"qty_returned"`  // accepted at inspection, applied

	LineNet          decimal.Decimal `json:"line_net"`          // N(l)
	EligibleValue    decimal.Decimal `json:"eligible_value"`    // E(l)
	RedemptionPoints int64           `json:"redemption_points"` // alloc_pts(l), largest remainder
	RedemptionValue  decimal.Decimal `json:"redemption_value"`  // R(l)
	// NetShippedValue = round_half_even(N × (Shipped − Returned) / Ordered, 2): the OMS value of
	// the net fulfilled quantity that ERP billing is compared with (C6 AMOUNT_DIFF).
	NetShippedValue decimal.Decimal `json:"net_shipped_value"`
	// RefundablePoints is RR(l) = floor(alloc_pts × (Cancelled + Returned) / Ordered).
	RefundablePoints int64 `json:"refundable_points"`

	ErpQuantity  decimal.Decimal `json:"erp_quantity"` // from ErpSalesOrderCreated; see HasErpItem
	HasErpItem   bool            `json:"has_erp_item"`
	Invoiced     decimal.Decimal `json:"qty_invoiced"` // non-cancelled invoices
	Credited     decimal.Decimal `json:"qty_credited"` // non-cancelled credit memos
	InvoicedNet  decimal.Decimal `json:"invoiced_net"`
	CreditedNet  decimal.Decimal `json:"credited_net"`
	BillingLines int32           `json:"billing_lines"` // rounded ERP lines behind the nets (tolerance)
}

// PointsState is the order-level points picture.
type PointsState struct {
	// Basis is B rounded half-even to 4 places for display; Entitled is computed from the exact B.
	Basis               decimal.Decimal `json:"basis"`
	Entitled            int64           `json:"entitled"`              // P
	Requested           int64           `json:"requested"`             // Σ accruals − Σ reversals requested
	AccrualRequested    int64           `json:"accrual_requested"`     // gross
	ReversalRequested   int64           `json:"reversal_requested"`    // gross
	Posted              int64           `json:"posted"`                // Σ PointsAccrualPosted − Σ PointsReversed
	AccrualPosted       int64           `json:"accrual_posted"`        // gross
	Reversed            int64           `json:"reversed"`              // gross
	Pending             int64           `json:"pending"`               // posted, not yet activated
	Active              int64           `json:"active"`                // activated, not reversed
	Shortfall           int64           `json:"shortfall"`             // Σ PointsReversed.shortfall_points
	RefundRequested     int64           `json:"refund_requested"`      // Σ RedemptionRefundRequested
	RefundPosted        int64           `json:"refund_posted"`         // Σ RedemptionRefunded
	RedemptionRefundDue int64           `json:"redemption_refund_due"` // Σ RR(l)
}

// RefLine is a quantity of one order line referenced by a shipment, return or cancellation.
type RefLine struct {
	OrderLineID string          `json:"order_line_id"`
	Quantity    decimal.Decimal `json:"quantity"`
	// Applied is what the ledger counted: less than Quantity when capped (over-return) and zero
	// for a line the order does not have.
	Applied decimal.Decimal `json:"applied"`
	// Billed is, for shipment lines, Σ quantity of non-cancelled invoice lines referencing this
	// (shipment, line); for return lines, of non-cancelled credit memo lines.
	Billed decimal.Decimal `json:"billed"`
	// BilledNotTransferred is set when a non-cancelled document covering this line has
	// accounting_transfer_status ≠ TRANSFERRED.
	BilledNotTransferred bool `json:"billed_not_transferred"`
	Known                bool `json:"known"` // the order has this line
}

// ShipmentState is one applied shipment.
type ShipmentState struct {
	ShipmentID string    `json:"shipment_id"`
	EventID    string    `json:"event_id"`
	ShippedAt  time.Time `json:"shipped_at"`
	IsReship   bool      `json:"is_reship"`
	Currency   string    `json:"currency"` // as stated by the WMS, "" when not stated
	Lines      []RefLine `json:"lines"`
}

// ReturnState is one applied return.
type ReturnState struct {
	ReturnID       string    `json:"return_id"`
	EventID        string    `json:"event_id"`
	ReceivedAt     time.Time `json:"received_at"`
	RefundCurrency string    `json:"refund_currency"` // "" without a refund
	// Capped is set when the return was applied past the grace period with more accepted than
	// shipped; the excess was not counted (exception RETURN_EXCEEDS_SHIPPED).
	Capped bool      `json:"capped"`
	Lines  []RefLine `json:"lines"`
}

// CancellationState is one applied OrderLinesCancelled.
type CancellationState struct {
	CancellationID string    `json:"cancellation_id"`
	EventID        string    `json:"event_id"`
	CancelledAt    time.Time `json:"cancelled_at"`
	IsFullOrder    bool      `json:"is_full_order"`
	Lines          []RefLine `json:"lines"`
}

// ReservationState is a redemption hold and what became of it.
type ReservationState struct {
	ReservationID   string    `json:"reservation_id"`
	Status          string    `json:"status"`
	Reserved        bool      `json:"reserved"`
	ReservedPoints  int64     `json:"reserved_points"`
	ReservedAt      time.Time `json:"reserved_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	Confirmed       bool      `json:"confirmed"`
	ConfirmedPoints int64     `json:"confirmed_points"`
	ConfirmedAt     time.Time `json:"confirmed_at"`
	RedemptionID    string    `json:"redemption_id"`
	Released        bool      `json:"released"`
	ReleasedAt      time.Time `json:"released_at"`
	ReleaseReason   string    `json:"release_reason"`
}

// CommandRecord is a loyalty command this ledger emitted. The points of the commands that carry
// one event's share (AttributedTo) sum to that event's canonical share (attrib.go).
type CommandRecord struct {
	RequestID      string    `json:"request_id"`
	CommandType    string    `json:"command_type"`
	Points         int64     `json:"points"`
	CausingEventID string    `json:"causing_event_id"`
	SourceRefID    string    `json:"source_ref_id"`
	RequestedAt    time.Time `json:"requested_at"`
	// AttributedTo is the event id whose share a correction carries; "" for every other
	// command, whose share is its causing event's.
	AttributedTo string `json:"attributed_to"`
}

// PostingRecord is something the loyalty platform booked for this order.
type PostingRecord struct {
	Kind           string          `json:"kind"`
	EntryID        string          `json:"entry_id"`   // ledger_entry_id / refund_entry_id
	RequestID      string          `json:"request_id"` // "" when the platform gave none
	Points         int64           `json:"points"`
	FromPending    int64           `json:"from_pending"`
	FromActive     int64           `json:"from_active"`
	Shortfall      int64           `json:"shortfall"`
	TierMultiplier decimal.Decimal `json:"tier_multiplier"` // accruals only
	SourceRef      string          `json:"source_ref"`
	PostedAt       time.Time       `json:"posted_at"`
}

// ErpOrderState is an ERP sales order replicating this order.
type ErpOrderState struct {
	ErpSalesOrderID string         `json:"erp_sales_order_id"`
	Currency        string         `json:"currency"`
	CreatedAt       time.Time      `json:"created_at"`
	Items           []ErpItemState `json:"items"`
}

// ErpItemState maps an ERP item to an order line.
type ErpItemState struct {
	ErpItem     string          `json:"erp_item"`
	OrderLineID string          `json:"order_line_id"`
	Quantity    decimal.Decimal `json:"quantity"`
}

// BillingDocState is an invoice or credit memo from the ERP.
type BillingDocState struct {
	BillingDocumentID string             `json:"billing_document_id"`
	Kind              string             `json:"kind"`
	BillingType       string             `json:"billing_type"`
	TransferStatus    string             `json:"transfer_status"`
	Currency          string             `json:"currency"`
	BillingDate       time.Time          `json:"billing_date"`
	Net               decimal.Decimal    `json:"net"`
	Tax               decimal.Decimal    `json:"tax"`
	Gross             decimal.Decimal    `json:"gross"`
	ReturnID          string             `json:"return_id"`
	Cancelled         bool               `json:"cancelled"` // a DocCancel names it
	Lines             []BillingLineState `json:"lines"`
}

// BillingLineState is one item of a billing document.
type BillingLineState struct {
	BillingItem       string          `json:"billing_item"`
	OrderLineID       string          `json:"order_line_id"`
	ReferenceDocument string          `json:"reference_document"` // shipment_id or return_id
	Quantity          decimal.Decimal `json:"quantity"`
	Net               decimal.Decimal `json:"net"`
	Tax               decimal.Decimal `json:"tax"`
}

// DocCancelState is a BillingDocumentCancelled (kept even when it arrives before the document).
type DocCancelState struct {
	BillingDocumentID string    `json:"billing_document_id"`
	CancelsDocumentID string    `json:"cancels_document_id"`
	CancelledAt       time.Time `json:"cancelled_at"`
}

// HeldEvent is an event received but not yet applied. The event is kept as its JSON encoding
// (exact decimals and times), so that it survives a restore from the changelog without the
// changelog schema having to embed every input schema.
type HeldEvent struct {
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	OccurredAt time.Time `json:"occurred_at"`
	Reason     string    `json:"reason"`
	Event      []byte    `json:"event"`
}

// DeferredRefund identifies the full-order cancellation that will cause the refund.
type DeferredRefund struct {
	EventID        string    `json:"event_id"`
	CancellationID string    `json:"cancellation_id"`
	OccurredAt     time.Time `json:"occurred_at"`
}

// SeenEvent is one event id already applied (or held), with a fingerprint of its payload so a
// different payload under the same id is detected (see fingerprint; states of version 1 hold
// the ledger's legacyFingerprint values).
type SeenEvent struct {
	EventID     string `json:"event_id"`
	Fingerprint int64  `json:"fingerprint"`
}

// Exception is an open inconsistency, with the business time it was first seen. Exceptions are
// re-evaluated after every Apply: one that no longer holds is removed, one that still holds
// keeps its FirstSeen. FirstSeen is the business time of the event it is about when there is
// one (a held event, a return), otherwise the ledger Clock when it was first observed.
type Exception struct {
	Code      string    `json:"code"`
	Ref       string    `json:"ref"`
	Detail    string    `json:"detail"`
	FirstSeen time.Time `json:"first_seen"`
}
