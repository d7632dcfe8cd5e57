package accrual

import (
	"fmt"
	"math/big"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/processors/ledger"
)

// Units returns d as an integer in units of 10^−scale, or an error when d has more decimals
// than scale or does not fit 64 bits. Nothing is rounded.
func Units(d decimal.Decimal, scale int32) (int64, error) {
	s := d.Shift(scale)
	if !s.IsInteger() {
		return 0, fmt.Errorf("accrual: %s has more than %d decimals", d, scale)
	}
	// s.BigInt, not the coefficient: a shift can leave a positive exponent (1 at scale 0 is
	// 1·10^3 at scale 3), which NumDigits and IntPart's int64 conversion would not count
	c := s.BigInt()
	if c.CmpAbs(maxUnitsBig) > 0 {
		return 0, fmt.Errorf("accrual: %s does not fit 64 bits at scale %d", d, scale)
	}
	return c.Int64(), nil
}

// maxUnitsBig is maxUnits, the largest integer of 18 digits.
var maxUnitsBig = big.NewInt(maxUnits)

// PolicyFrom takes the earn rule of the ledger's policy (earn rates, tier multipliers, the
// dedup bound): the core and the ledger earn alike.
func PolicyFrom(p ledger.Policy) (Policy, error) {
	out := Policy{EarnRates: map[string]Rate{}, TierMultipliers: map[string]Rate{}, MaxEvents: p.MaxEventsPerOrder}
	for k, v := range p.EarnRates {
		r, err := Units(v, RateScale)
		if err != nil {
			return Policy{}, fmt.Errorf("earn rate %s: %w", k, err)
		}
		out.EarnRates[k] = Rate(r)
	}
	for k, v := range p.TierMultipliers {
		r, err := Units(v, RateScale)
		if err != nil {
			return Policy{}, fmt.Errorf("tier multiplier %s: %w", k, err)
		}
		out.TierMultipliers[k] = Rate(r)
	}
	if out.MaxEvents <= 0 {
		return Policy{}, fmt.Errorf("accrual: MaxEvents must be > 0")
	}
	return out, nil
}
