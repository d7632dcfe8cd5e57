// Package oracle computes, with its own deliberately plain code, what retailflow's outputs must be
// for a given set of input events: per-order quantities and points, the loyalty commands of
// canonical arrival, i.e. each point-moving event's share (DESIGN.md invariant 13;
// Command says what a pipeline run must match), the rows of every reconciliation view (C1–C7)
// and the totals of points and money. It does not share code with processors/ledger: it exists
// so that the ledger, the runtime and the ClickHouse sink can be diffed against an independent
// computation. Its rules are derived from the rules quoted in processors/ledger's package doc alone.
//
// All arithmetic is exact: quantities and amounts are decimals, ratios are big.Rat, points are
// floored only where the rules floor them (P and RR(l)), money is rounded HALF_EVEN to 2 dp only where
// view C6 (migrations/views/recon.sql) rounds it.
package oracle

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Policy is the accrual and reconciliation policy the oracle applies. Its defaults
// (DefaultPolicy) equal the ledger's defaults in cmd/retailflow/config.go (policy and recon
// sections); keep them in step.
type Policy struct {
	Version         string
	EarnRates       map[string]decimal.Decimal // currency → points per currency unit
	TierMultipliers map[string]decimal.Decimal // tier code → multiplier
	ExcludedSKUs    map[string]bool            // never earn points
	LockDays        int                        // accrual activates_at = shipped_at + LockDays
	// OrphanGrace is how long (business time of later shipments of the same order) a return that
	// exceeds what was shipped is held before it is applied capped at what was shipped.
	OrphanGrace time.Duration
	// ReconGrace: a view row appears once now − business_time ≥ ReconGrace.
	ReconGrace time.Duration
	// AmountTolerance is allowed per live ERP billing line behind a line's net (at least one):
	// C6 AMOUNT_DIFF when |ERP net billed − OMS net value| > AmountTolerance × lines. The default
	// is ½ minor unit of a two-decimal currency, DOMAIN B.3's allowance per rounded line.
	AmountTolerance decimal.Decimal
	// ConfirmTrigger is when a reservation referenced by an order is CONFIRMED (
	// "Reservation lifecycle"): ConfirmAtAcceptance (the default) or ConfirmAtFirstShipment
	// (the variant). Redeemed points are refundable only once confirmed.
	ConfirmTrigger string
}

// The confirmation triggers (the config values of policy.confirm_trigger).
const (
	ConfirmAtAcceptance    = "ORDER_ACCEPTED" // OrderAccepted references the reservation
	ConfirmAtFirstShipment = "FIRST_SHIPMENT" // the order's first shipped unit (reships excluded)
)

// DefaultPolicy returns the policy that equals config.go's defaults.
func DefaultPolicy() Policy {
	return Policy{
		Version: "2026-12-v2",
		EarnRates: map[string]decimal.Decimal{
			"EUR": decimal.NewFromInt(1), "GBP": decimal.NewFromInt(1), "USD": decimal.NewFromInt(1),
		},
		TierMultipliers: map[string]decimal.Decimal{
			"BASE": decimal.NewFromInt(1), "SILVER": decimal.RequireFromString("1.25"),
			"GOLD": decimal.RequireFromString("1.5"), "PLATINUM": decimal.NewFromInt(2),
		},
		ExcludedSKUs:    map[string]bool{},
		LockDays:        30,
		OrphanGrace:     24 * time.Hour,
		ReconGrace:      15 * time.Minute,
		AmountTolerance: decimal.RequireFromString("0.005"),
		ConfirmTrigger:  ConfirmAtAcceptance,
	}
}

// Validate reports every inconsistency of p.
func (p Policy) Validate() error {
	var errs []error
	if p.Version == "" {
		errs = append(errs, errors.New("oracle policy: version must not be empty"))
	}
	if len(p.EarnRates) == 0 {
		errs = append(errs, errors.New("oracle policy: no earn rates"))
	}
	for cur, r := range p.EarnRates {
		if r.IsNegative() {
			errs = append(errs, fmt.Errorf("oracle policy: earn rate for %s is negative (%s)", cur, r))
		}
	}
	for tier, m := range p.TierMultipliers {
		if m.IsNegative() {
			errs = append(errs, fmt.Errorf("oracle policy: multiplier for tier %s is negative (%s)", tier, m))
		}
	}
	if p.LockDays < 0 {
		errs = append(errs, errors.New("oracle policy: lock days must not be negative"))
	}
	if p.OrphanGrace < 0 || p.ReconGrace < 0 {
		errs = append(errs, errors.New("oracle policy: grace periods must not be negative"))
	}
	if p.ConfirmTrigger != ConfirmAtAcceptance && p.ConfirmTrigger != ConfirmAtFirstShipment {
		errs = append(errs, fmt.Errorf("oracle policy: confirm trigger %q is not %s or %s", p.ConfirmTrigger, ConfirmAtAcceptance, ConfirmAtFirstShipment))
	}
	if p.AmountTolerance.IsNegative() {
		errs = append(errs, errors.New("oracle policy: amount tolerance must not be negative"))
	}
	return errors.Join(errs...)
}

// earnRate is the snapshot on the order when present, else the policy's rate for the currency.
func (p Policy) earnRate(snapshot *decimal.Decimal, currency string) decimal.Decimal {
	if snapshot != nil {
		return *snapshot
	}
	return p.EarnRates[currency]
}

// multiplier is the snapshot on the order when present, else the policy's multiplier for the tier
// (1 for an unknown tier).
func (p Policy) multiplier(snapshot *decimal.Decimal, tier string) decimal.Decimal {
	if snapshot != nil {
		return *snapshot
	}
	if m, ok := p.TierMultipliers[tier]; ok {
		return m
	}
	return decimal.NewFromInt(1)
}
