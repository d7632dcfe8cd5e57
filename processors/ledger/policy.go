package ledger

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"
)

// Policy is the accrual policy: how many points a unit of eligible value earns,
// what is excluded, how long points stay locked, and the operational windows of the ledger.
//
// A Policy is a value: build it once, call Validate, and never mutate its maps afterwards (Apply
// reads them from many goroutines). The parts that define what an order earns (earn rate, tier
// multiplier, exclusions, lock days, return window, confirmation trigger, Version) are
// snapshotted into the ledger at OrderAccepted, so a policy change never alters an order already
// accepted and the Version stamped on a command is the one the order was accepted under. The
// operational parts (OrphanGrace,
// AmountTolerance, RetentionAfterClose, MaxEventsPerOrder) are read from the Policy passed to each
// Apply.
type Policy struct {
	// Version is stamped on every command (through the order's snapshot).
	Version string
	// EarnRates maps an ISO 4217 currency to points per currency unit of eligible net value.
	// An order in a currency without a rate (and without its own snapshot) earns nothing and
	// carries the NO_EARN_RATE exception.
	EarnRates map[string]decimal.Decimal
	// TierMultipliers maps a loyalty tier code to its multiplier. A member order without a tier
	// earns at multiplier 1; an unknown tier earns at multiplier 1 and carries UNKNOWN_TIER.
	TierMultipliers map[string]decimal.Decimal
	// ExcludedSKUs earn nothing (gift cards never earn, whether listed or not).
	ExcludedSKUs []string
	// LockDays is how long accrued points stay PENDING: activates_at = shipment time + LockDays.
	LockDays int
	// ReturnWindowDays closes an order that far after its last shipment, unless the order
	// carries its own return_window_days.
	ReturnWindowDays int
	// OrphanGrace is how long an event may wait for its OrderAccepted (measured on the ledger
	// clock) before it becomes the HELD_WITHOUT_ORDER exception, and how long a return may wait
	// for the shipment it refers to: past it (ledger clock) the held return is the
	// RETURN_EXCEEDS_SHIPPED exception, and the first shipment of the order with business time
	// ≥ return time + OrphanGrace applies it, before itself, capped at what was shipped. Only a
	// shipment ends that wait: returns and cancellations arrive on other topics, which may run
	// ahead of the shipments by more than the grace.
	OrphanGrace time.Duration
	// RetentionAfterClose is how long a closed ledger is kept (for late ERP and loyalty
	// documents) before the runtime may evict it.
	RetentionAfterClose time.Duration
	// AmountTolerance is the allowed difference per rounded document line when ERP amounts are
	// compared with OMS amounts (half a minor unit: 0.005 for 2-decimal currencies).
	AmountTolerance decimal.Decimal
	// MaxEventsPerOrder bounds the seen-event set that makes duplicates idempotent. An order
	// with more distinct events is rejected event by event (ErrTooManyEvents) rather than
	// forgetting ids, which would make an old duplicate count twice.
	MaxEventsPerOrder int
	// ConfirmTrigger is when the redemption reservation an order references counts as
	// CONFIRMED, and so when its points become
	// refundable. It is the one rule of every refund path (partial and full cancellations,
	// returns). It is snapshotted at OrderAccepted like the earn rules, so change Version with it.
	ConfirmTrigger ConfirmTrigger
}

// ConfirmTrigger names the event that confirms an order's redemption reservation.
//
// A trigger on the loyalty platform's own RedemptionConfirmed is deliberately not offered: that
// event arrives on another topic at its own pace, so refunds would depend on how the topics
// interleave (and a refund would have to wait in the state for an event that may never come).
// The platform's confirmation is reconciled instead: view C3 flags an accepted order whose
// reservation the platform has not confirmed (ORDER_ACCEPTED_NOT_CONFIRMED).
type ConfirmTrigger string

const (
	// ConfirmOnOrderAccepted (B.1's default): the reservation is CONFIRMED when OrderAccepted
	// references it; every cancellation or return of the order refunds its share at once.
	ConfirmOnOrderAccepted ConfirmTrigger = "ORDER_ACCEPTED"
	// ConfirmOnFirstShipment (B.1's variant, Salesforce "until orders are fulfilled"): the
	// reservation is CONFIRMED by the order's first shipment of a unit (reships excluded).
	// Before it nothing is refundable (a cancelled order's reservation is released by the
	// platform instead); the confirming shipment requests the refund of what was cancelled before it.
	ConfirmOnFirstShipment ConfirmTrigger = "FIRST_SHIPMENT"
)

// ConfirmTriggers lists the valid triggers.
var ConfirmTriggers = []ConfirmTrigger{ConfirmOnOrderAccepted, ConfirmOnFirstShipment}

// DefaultPolicy is the policy of the worked example, order O-1001 (1 point per currency unit, GOLD = 1.5, 30 lock
// days, reservations confirmed by OrderAccepted) with the operational defaults of the
// configuration. Version history: 2026-11-v1 refunded a full-order cancellation all allocated
// points once RedemptionConfirmed arrived; 2026-12-v2 refunds every path by RR(l), confirmed by
// ConfirmTrigger.
func DefaultPolicy() Policy {
	return Policy{
		Version:   "2026-12-v2",
		EarnRates: map[string]decimal.Decimal{"EUR": decimal.NewFromInt(1), "GBP": decimal.NewFromInt(1), "USD": decimal.NewFromInt(1)},
		TierMultipliers: map[string]decimal.Decimal{
			"BASE": decimal.NewFromInt(1), "SILVER": decimal.RequireFromString("1.25"),
			"GOLD": decimal.RequireFromString("1.5"), "PLATINUM": decimal.NewFromInt(2),
		},
		LockDays:            30,
		ReturnWindowDays:    30,
		OrphanGrace:         24 * time.Hour,
		RetentionAfterClose: 7 * 24 * time.Hour,
		AmountTolerance:     decimal.RequireFromString("0.005"),
		MaxEventsPerOrder:   4096,
		ConfirmTrigger:      ConfirmOnOrderAccepted,
	}
}

// PolicyError names the Policy field that is invalid.
type PolicyError struct {
	Field   string
	Problem string
}

func (e *PolicyError) Error() string { return fmt.Sprintf("ledger policy %s: %s", e.Field, e.Problem) }

// Validate reports every invalid field (errors.Join of *PolicyError), or nil.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &PolicyError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if p.Version == "" {
		bad("Version", "must not be empty: it is stamped on every command")
	}
	for _, cur := range sortedKeys(p.EarnRates) {
		if len(cur) != 3 {
			bad("EarnRates", "currency %q is not an ISO 4217 alpha-3 code", cur)
		}
		if p.EarnRates[cur].IsNegative() {
			bad("EarnRates", "rate for %s is negative (%s)", cur, p.EarnRates[cur])
		}
	}
	for _, tier := range sortedKeys(p.TierMultipliers) {
		if m := p.TierMultipliers[tier]; !m.IsPositive() {
			bad("TierMultipliers", "multiplier for %s must be > 0, got %s", tier, m)
		}
	}
	if p.LockDays < 0 {
		bad("LockDays", "must not be negative")
	}
	if p.ReturnWindowDays < 0 {
		bad("ReturnWindowDays", "must not be negative")
	}
	if p.OrphanGrace < 0 {
		bad("OrphanGrace", "must not be negative")
	}
	if p.RetentionAfterClose < 0 {
		bad("RetentionAfterClose", "must not be negative")
	}
	if p.AmountTolerance.IsNegative() {
		bad("AmountTolerance", "must not be negative")
	}
	if !slices.Contains(ConfirmTriggers, p.ConfirmTrigger) {
		bad("ConfirmTrigger", "%q is not one of %s, %s", p.ConfirmTrigger, ConfirmOnOrderAccepted, ConfirmOnFirstShipment)
	}
	if p.MaxEventsPerOrder <= 0 {
		bad("MaxEventsPerOrder", "must be > 0 (it bounds the duplicate-detection set)")
	}
	return errors.Join(errs...)
}

func (p Policy) excluded(sku string) bool {
	for _, s := range p.ExcludedSKUs {
		if s == sku {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
