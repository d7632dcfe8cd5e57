package generate

import (
	"math/big"

	"github.com/shopspring/decimal"
)

// roundHalfEven rounds the exact ratio num/den HALF_EVEN to 2 decimal places.
func roundHalfEven(num, den *big.Rat) decimal.Decimal {
	x := new(big.Rat).Quo(num, den)
	x.Mul(x, big.NewRat(100, 1))
	q, r := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	twice := new(big.Int).Mul(new(big.Int).Abs(r), big.NewInt(2))
	if c := twice.Cmp(x.Denom()); c > 0 || (c == 0 && q.Bit(0) == 1) {
		if x.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(q, -2)
}

// valueCum is the cumulative value of k of q units of a line worth net:
// round_half_even(net × k / q, 2). Partial documents bill differences of it, so
// the last one absorbs the remainders and Σ = net.
func valueCum(net decimal.Decimal, k, q int) decimal.Decimal {
	if k == 0 {
		return decimal.Zero
	}
	num := new(big.Rat).Mul(net.Rat(), big.NewRat(int64(k), 1))
	return roundHalfEven(num, big.NewRat(int64(q), 1))
}

// tax is round_half_even(net × rate, 2): tax per line, the order's rounding mode. The product of
// two decimals is exact, so decimal's banker's rounding applies the rule exactly.
func tax(net, rate decimal.Decimal) decimal.Decimal {
	return net.Mul(rate).RoundBank(2)
}

// allocateAcross splits total over weights proportionally, HALF_EVEN per share, and gives the
// residual (total − Σ shares) to the largest weight (the first of equals), so Σ shares = total.
func allocateAcross(total decimal.Decimal, weights []decimal.Decimal) []decimal.Decimal {
	out := make([]decimal.Decimal, len(weights))
	sum := decimal.Zero
	largest := -1
	for i, w := range weights {
		sum = sum.Add(w)
		if w.IsPositive() && (largest < 0 || w.GreaterThan(weights[largest])) {
			largest = i
		}
	}
	if largest < 0 {
		return out
	}
	given := decimal.Zero
	for i, w := range weights {
		out[i] = roundHalfEven(new(big.Rat).Mul(total.Rat(), w.Rat()), sum.Rat())
		given = given.Add(out[i])
	}
	out[largest] = out[largest].Add(total.Sub(given))
	return out
}

// largestRemainder splits points over weights (in cents) after giving each line its floor;
// the leftover goes one by one to the largest fractional remainders (first of equals).
func largestRemainder(points int64, floors []int64, weights []int64) []int64 {
	out := append([]int64{}, floors...)
	rest := points
	var wsum int64
	for i := range floors {
		rest -= floors[i]
		wsum += weights[i]
	}
	if rest <= 0 || wsum == 0 {
		return out
	}
	type rem struct {
		i int
		r int64
	}
	rems := make([]rem, len(weights))
	var given int64
	for i, w := range weights {
		q := rest * w / wsum
		out[i] += q
		given += q
		rems[i] = rem{i, rest * w % wsum}
	}
	for left := rest - given; left > 0; left-- {
		best := -1
		for j, r := range rems {
			if r.r >= 0 && (best < 0 || r.r > rems[best].r) {
				best = j
			}
		}
		out[rems[best].i]++
		rems[best].r = -1
	}
	return out
}
