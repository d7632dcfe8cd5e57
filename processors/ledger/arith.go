package ledger

import (
	"math/big"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/schemas"
)

// The ledger's exact arithmetic. A decimal is coefficient × 10^exponent, so every quantity the
// rules need (B = Σ E·F/q_ord, P = floor(B × rate × multiplier), RR(l), the OMS net value) is a
// fraction of integers. It is computed here with math/big integers kept in a reused scratch
// (ratio), without normalising fractions by their GCD (which is what made big.Rat slow): only
// the one division at the end needs the exact value, and its result does not depend on the
// fraction's terms. arith_test.go holds every function to the big.Rat formulation.

// ratio is scratch space: num/den is a fraction being built, a, b, c are temporaries. Get one
// with getRatio and give it back with putRatio; its words are reused, so steady-state
// computations allocate nothing.
type ratio struct {
	num, den, a, b, c  big.Int
	s1, s2, s3, s4, s5 decSum
}

var ratioPool = sync.Pool{New: func() any { return new(ratio) }}

func getRatio() *ratio  { return ratioPool.Get().(*ratio) }
func putRatio(r *ratio) { ratioPool.Put(r) }

// setDec sets z to d's coefficient and returns d's exponent: d = z × 10^exp.
func setDec(z *big.Int, d decimal.Decimal) int32 {
	if d.NumDigits() <= 18 {
		z.SetInt64(d.CoefficientInt64())
	} else {
		z.Set(d.Coefficient())
	}
	return d.Exponent()
}

// mulPow10 sets z = z × 10^k for k ≥ 0; tmp is clobbered.
func mulPow10(z *big.Int, k int32, tmp *big.Int) {
	switch {
	case k == 0:
		return
	case int(k) < len(pow10u):
		tmp.SetUint64(pow10u[k])
	default:
		tmp.Exp(big.NewInt(10), big.NewInt(int64(k)), nil)
	}
	z.Mul(z, tmp)
}

// setSum sets z to the coefficient of x + y (x − y with sub) at the smaller of the two
// exponents, which it returns; t1 and t2 are clobbered.
func setSum(z *big.Int, x, y decimal.Decimal, sub bool, t1, t2 *big.Int) int32 {
	ex := setDec(z, x)
	ey := setDec(t1, y)
	m := min(ex, ey)
	mulPow10(z, ex-m, t2)
	mulPow10(t1, ey-m, t2)
	if sub {
		z.Sub(z, t1)
	} else {
		z.Add(z, t1)
	}
	return m
}

// scaleFrac folds 10^k into the fraction num/den: into num for k ≥ 0, into den otherwise.
func scaleFrac(num, den *big.Int, k int32, tmp *big.Int) {
	if k >= 0 {
		mulPow10(num, k, tmp)
	} else {
		mulPow10(den, -k, tmp)
	}
}

// basis sets r.num/r.den to B = Σ E(l) × F(l) / q_ord(l) over the lines with E > 0 and net
// fulfilled quantity F = shipped − returned > 0. r.a, r.b, r.c are clobbered.
func basis(lines []LineState, r *ratio) {
	r.num.SetInt64(0)
	r.den.SetInt64(1)
	for i := range lines {
		ln := &lines[i]
		if !ln.EligibleValue.IsPositive() {
			continue
		}
		ef := setSum(&r.a, ln.Shipped, ln.Returned, true, &r.b, &r.c)
		if r.a.Sign() <= 0 {
			continue
		}
		ee := setDec(&r.b, ln.EligibleValue)
		r.a.Mul(&r.a, &r.b)
		eq := setDec(&r.b, ln.Ordered)
		scaleFrac(&r.a, &r.b, ee+ef-eq, &r.c)
		// num/den + a/b = (num·b + a·den) / (den·b)
		r.num.Mul(&r.num, &r.b)
		r.a.Mul(&r.a, &r.den)
		r.num.Add(&r.num, &r.a)
		r.den.Mul(&r.den, &r.b)
	}
}

// entitledFrom returns P = floor(B × earn_rate × tier_multiplier) for B = r.num/r.den (which it
// leaves intact; r.a, r.b, r.c are clobbered), truncated toward zero like the big.Rat version;
// 0 for a guest order or before acceptance.
func entitledFrom(o *OrderSnapshot, r *ratio) int64 {
	if o == nil || o.MemberID == "" {
		return 0
	}
	er := setDec(&r.a, o.EarnRate)
	em := setDec(&r.b, o.TierMultiplier)
	r.a.Mul(&r.a, &r.b)
	r.a.Mul(&r.a, &r.num)
	r.b.Set(&r.den)
	scaleFrac(&r.a, &r.b, er+em, &r.c)
	return r.a.Quo(&r.a, &r.b).Int64()
}

// refundable is RR(l) = floor(alloc_pts × (Cancelled + Returned) / Ordered); on a fully
// cancelled or returned line it is exactly alloc_pts(l). r's temporaries are clobbered.
func refundable(ln *LineState, r *ratio) int64 {
	if ln.RedemptionPoints <= 0 {
		return 0
	}
	e := setSum(&r.a, ln.Cancelled, ln.Returned, false, &r.b, &r.c)
	r.b.SetInt64(ln.RedemptionPoints)
	r.a.Mul(&r.a, &r.b)
	eq := setDec(&r.b, ln.Ordered)
	scaleFrac(&r.a, &r.b, e-eq, &r.c)
	return r.a.Quo(&r.a, &r.b).Int64()
}

// netShippedValue returns round_half_even(LineNet × (Shipped − Returned) / Ordered, 2), reusing
// old when it already has that value. r's temporaries (num, den included) are clobbered.
func netShippedValue(ln *LineState, old decimal.Decimal, r *ratio) decimal.Decimal {
	e := setSum(&r.num, ln.Shipped, ln.Returned, true, &r.b, &r.c)
	en := setDec(&r.a, ln.LineNet)
	r.num.Mul(&r.num, &r.a)
	eq := setDec(&r.den, ln.Ordered)
	scaleFrac(&r.num, &r.den, e+en-eq, &r.c)
	roundHalfEvenCoef(&r.a, &r.num, &r.den, moneyPlaces, &r.b, &r.c)
	return decimalOf(&r.a, moneyPlaces, old)
}

// roundHalfEvenCoef sets q to the coefficient of num/den (den > 0) rounded to places decimals,
// ties to even (banker's rounding: the money rule of DESIGN.md invariant 7): the result is q × 10^−places. rem and tmp
// are clobbered; q must not alias num or den.
func roundHalfEvenCoef(q, num, den *big.Int, places int32, rem, tmp *big.Int) {
	rem.Set(num)
	mulPow10(rem, places, tmp)
	q.QuoRem(rem, den, rem)
	// |2·rem| vs den decides; QuoRem truncates toward zero, so step away from zero.
	rem.Abs(rem)
	rem.Lsh(rem, 1)
	if c := rem.Cmp(den); c > 0 || c == 0 && q.Bit(0) == 1 {
		if num.Sign() < 0 {
			q.Sub(q, tmp.SetInt64(1))
		} else {
			q.Add(q, tmp.SetInt64(1))
		}
	}
}

// decimalOf returns q × 10^−places as a decimal, or old when old already equals it (so an
// unchanged derived value costs no allocation).
func decimalOf(q *big.Int, places int32, old decimal.Decimal) decimal.Decimal {
	if q.IsInt64() {
		v := q.Int64()
		if old.Exponent() == -places && old.NumDigits() <= 18 && old.CoefficientInt64() == v || v == 0 && old.IsZero() {
			return old
		}
		return schemas.NewDecimal(v, -places)
	}
	return decimal.NewFromBigInt(q, -places)
}

// basisRounded returns B = r.num/r.den rounded half-even to 4 places (the display basis);
// r.a, r.b, r.c are clobbered.
func basisRounded(r *ratio, old decimal.Decimal) decimal.Decimal {
	roundHalfEvenCoef(&r.a, &r.num, &r.den, 4, &r.b, &r.c)
	return decimalOf(&r.a, 4, old)
}

// decSum is an exact running sum of decimals: z × 10^exp. The zero decSum is 0.
type decSum struct {
	z, t, u, v big.Int
	exp        int32
}

func (s *decSum) reset() {
	s.z.SetInt64(0)
	s.exp = 0
}

// add adds d (subtracts it with neg).
func (s *decSum) add(d decimal.Decimal, neg bool) *decSum {
	e := setDec(&s.t, d)
	if e < s.exp {
		mulPow10(&s.z, s.exp-e, &s.u)
		s.exp = e
	} else {
		mulPow10(&s.t, e-s.exp, &s.u)
	}
	if neg {
		s.z.Sub(&s.z, &s.t)
	} else {
		s.z.Add(&s.z, &s.t)
	}
	return s
}

func (s *decSum) sign() int { return s.z.Sign() }

// equal reports whether the sum equals d, by value.
func (s *decSum) equal(d decimal.Decimal) bool {
	e := setDec(&s.t, d)
	if e == s.exp {
		return s.z.Cmp(&s.t) == 0
	}
	if s.z.Sign() != s.t.Sign() {
		return false
	}
	s.v.Set(&s.z)
	m := min(e, s.exp)
	mulPow10(&s.v, s.exp-m, &s.u)
	mulPow10(&s.t, e-m, &s.u)
	return s.v.Cmp(&s.t) == 0
}

// value returns the sum as a decimal, or old when old already has that value.
func (s *decSum) value(old decimal.Decimal) decimal.Decimal {
	if s.equal(old) {
		return old
	}
	if s.z.IsInt64() {
		return schemas.NewDecimal(s.z.Int64(), s.exp)
	}
	return decimal.NewFromBigInt(&s.z, s.exp)
}

// reset2 sets the sum to x + y.
func (s *decSum) reset2(x, y decimal.Decimal) *decSum {
	s.reset()
	return s.add(x, false).add(y, false)
}

// sameDecimal reports whether a and b are the same decimal: same coefficient and exponent
// (a derived value recomputed to a different representation of the same number is rewritten;
// comparing representations is cheaper than comparing values).
func sameDecimal(a, b decimal.Decimal) bool {
	if a.Exponent() != b.Exponent() {
		return false
	}
	if a.NumDigits() <= 18 && b.NumDigits() <= 18 {
		return a.CoefficientInt64() == b.CoefficientInt64()
	}
	return a.Equal(b)
}

// addSum adds o to the sum (subtracts it with neg).
func (s *decSum) addSum(o *decSum, neg bool) *decSum {
	s.t.Set(&o.z)
	e := o.exp
	if e < s.exp {
		mulPow10(&s.z, s.exp-e, &s.u)
		s.exp = e
	} else {
		mulPow10(&s.t, e-s.exp, &s.u)
	}
	if neg {
		s.z.Sub(&s.z, &s.t)
	} else {
		s.z.Add(&s.z, &s.t)
	}
	return s
}
