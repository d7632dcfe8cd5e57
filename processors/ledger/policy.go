package ledger

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"
)

// Policy is the accrual policy (DOMAIN.md B): how many points a unit of eligible value earns,
// what is excluded, how long points stay locked, and the operational windows of the ledger.
//
// A Policy is a value: build it once, call Validate, and never mutate its maps afterwards (Apply
// reads them from many goroutines). The parts that define what an order earns (earn rate, tier
// multiplier, exclusions, lock days, return window, Version) are snapshotted into the ledger at
// OrderAccepted, so a policy change never alters an order already accepted and the Version stamped
// on a command is the one the order was accepted under. The operational parts (OrphanGrace,
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
	// compared with OMS amounts (DOMAIN.md B.3: half a minor unit, 0.005 for 2-decimal currencies).
	AmountTolerance decimal.Decimal
	// MaxEventsPerOrder bounds the seen-event set that makes duplicates idempotent. An order
	// with more distinct events is rejected event by event (ErrTooManyEvents) rather than
	// forgetting ids, which would make an old duplicate count twice.
	MaxEventsPerOrder int
}

// DefaultPolicy is the policy of DOMAIN.md B.2 (1 point per currency unit, GOLD = 1.5, 30 lock
// days) with the operational defaults of the configuration.
func DefaultPolicy() Policy {
	return Policy{
		Version:   "2026-11-v1",
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
