package ledger

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// The big.Rat formulation the ledger used before arith.go: the reference the integer
// arithmetic must agree with exactly.

func refBasis(lines []LineState) *big.Rat {
	b := new(big.Rat)
	for _, ln := range lines {
		f := ln.Shipped.Sub(ln.Returned)
		if !ln.EligibleValue.IsPositive() || !f.IsPositive() {
			continue
		}
		t := new(big.Rat).Mul(ln.EligibleValue.Rat(), f.Rat())
		b.Add(b, t.Quo(t, ln.Ordered.Rat()))
	}
	return b
}

func refEntitled(o *OrderSnapshot, b *big.Rat) int64 {
	if o == nil || o.MemberID == "" {
		return 0
	}
	x := new(big.Rat).Mul(b, o.EarnRate.Rat())
	x.Mul(x, o.TierMultiplier.Rat())
	return ratFloor(x)
}

func refRefundable(ln LineState) int64 {
	if ln.RedemptionPoints <= 0 {
		return 0
	}
	x := new(big.Rat).Mul(big.NewRat(ln.RedemptionPoints, 1), ln.Cancelled.Add(ln.Returned).Rat())
	return ratFloor(x.Quo(x, ln.Ordered.Rat()))
}

func refNetShipped(ln LineState) decimal.Decimal {
	v := ln.LineNet.Rat()
	v.Mul(v, ln.Shipped.Sub(ln.Returned).Rat())
	return roundHalfEven(v.Quo(v, ln.Ordered.Rat()), moneyPlaces)
}

// randDec is a decimal in [lo, hi) units with a random representation: the same value may
// come with extra trailing zeros (as Avro's fixed scales produce) or a huge coefficient.
func randDec(r *rand.Rand, lo, hi int64, places int32) decimal.Decimal {
	d := decimal.New(lo*pow10i(places)+r.Int64N((hi-lo)*pow10i(places)), -places)
	switch r.IntN(6) {
	case 0: // more trailing zeros
		return decimal.NewFromBigInt(new(big.Int).Mul(d.Coefficient(), big.NewInt(1000)), d.Exponent()-3)
	case 1: // a coefficient beyond int64
		return decimal.NewFromBigInt(new(big.Int).Mul(d.Coefficient(), new(big.Int).Exp(big.NewInt(10), big.NewInt(20), nil)), d.Exponent()-20)
	case 2: // positive exponent when it is a multiple of 10
		if c := d.Coefficient(); c.Sign() != 0 && new(big.Int).Rem(c, big.NewInt(10)).Sign() == 0 {
			return decimal.NewFromBigInt(c.Quo(c, big.NewInt(10)), d.Exponent()+1)
		}
	}
	return d
}

func pow10i(p int32) int64 { return int64(pow10u[p]) }

// TestArithmeticMatchesRat: on random lines (quantities decimal(12,3), amounts decimal(18,4),
// in mixed representations), B rounded, P, RR(l) and the OMS net value agree exactly with
// the big.Rat formulation.
func TestArithmeticMatchesRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	r := getRatio()
	defer putRatio(r)
	for k := range 3000 {
		lines := make([]LineState, 1+rng.IntN(6))
		for i := range lines {
			q := randDec(rng, 1, 50, 3)
			shipped := decimal.Min(randDec(rng, 0, 50, 3), q)
			returned := decimal.Min(randDec(rng, 0, 50, 3), shipped)
			cancelled := decimal.Min(randDec(rng, 0, 50, 3), q.Sub(shipped))
			lines[i] = LineState{Ordered: q, Shipped: shipped, Returned: returned, Cancelled: cancelled,
				EligibleValue: randDec(rng, -5, 5000, 4), LineNet: randDec(rng, -100, 5000, 4), RedemptionPoints: rng.Int64N(5000) - 100}
		}
		o := &OrderSnapshot{MemberID: "M", EarnRate: randDec(rng, 0, 10, 6), TierMultiplier: randDec(rng, 0, 3, 2)}
		basis(lines, r)
		ref := refBasis(lines)
		if got, want := basisRounded(r, decimal.Decimal{}), roundHalfEven(ref, 4); !got.Equal(want) {
			t.Fatalf("case %d: B rounded %s, big.Rat %s", k, got, want)
		}
		if got, want := entitledFrom(o, r), refEntitled(o, ref); got != want {
			t.Fatalf("case %d: P %d, big.Rat %d", k, got, want)
		}
		for i := range lines {
			ln := &lines[i]
			if got, want := refundable(ln, r), refRefundable(*ln); got != want {
				t.Fatalf("case %d line %d: RR %d, big.Rat %d (%+v)", k, i, got, want, *ln)
			}
			if got, want := netShippedValue(ln, decimal.Decimal{}, r), refNetShipped(*ln); !got.Equal(want) {
				t.Fatalf("case %d line %d: net value %s, big.Rat %s", k, i, got, want)
			}
		}
	}
}

// TestRoundHalfEvenTies: ties go to the even neighbour, on both signs.
func TestRoundHalfEvenTies(t *testing.T) {
	r := getRatio()
	defer putRatio(r)
	for _, c := range []struct {
		num, den int64
		want     string
	}{{5, 1000, "0"}, {15, 1000, "0.02"}, {25, 1000, "0.02"}, {-25, 1000, "-0.02"}, {-35, 1000, "-0.04"}, {1, 3, "0.33"}, {2, 3, "0.67"}, {-2, 3, "-0.67"}} {
		r.num.SetInt64(c.num)
		r.den.SetInt64(c.den)
		roundHalfEvenCoef(&r.a, &r.num, &r.den, 2, &r.b, &r.c)
		if got := decimalOf(&r.a, 2, decimal.Decimal{}); !got.Equal(dec(c.want)) {
			t.Fatalf("%d/%d → %s, want %s", c.num, c.den, got, c.want)
		}
	}
}

// TestAppendDetail: the exception details read exactly as fmt.Sprintf writes them.
func TestAppendDetail(t *testing.T) {
	for _, c := range []struct {
		format string
		args   []any
	}{
		{"%s waits for OrderAccepted", []any{"ShipmentConfirmed"}},
		{"policy %s has no multiplier for tier %q", []any{"v1", "GO\"LD\n"}},
		{"shipped %s + cancelled %s > ordered %s", []any{dec("2.000"), dec("0.5"), dec("-1.25")}},
		{"ERP has %d items, order %d lines", []any{3, int32(-4)}},
		{"%s requested %d, posted %d", []any{"AccrualRequested", int64(141), int64(-140)}},
		{"ERP net %s, OMS net %s (tolerance %s)", []any{dec("68.80"), decimal.Decimal{}, dec("0.0050")}},
		{"odd %v verb and %s", []any{1.5, "x"}},
		{"too few %s %s", []any{"x"}},
		{"too many %s", []any{"x", "y"}},
		{"100%", nil},
	} {
		if got, want := string(appendDetail(nil, c.format, c.args...)), fmt.Sprintf(c.format, c.args...); got != want {
			t.Errorf("appendDetail(%q) = %q, fmt %q", c.format, got, want)
		}
	}
}
