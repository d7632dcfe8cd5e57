package accrual

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/schemas"
)

// unitsOf converts an unscaled decimal exactly as Units converts the same decimal: the same
// value, or an error for the same inputs (more decimals than the scale, more than 18 digits).
func TestUnitsOfAgreesWithUnits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	vals := []int64{0, 1, -1, 9, 10, 999, 1000, 123456, -123450, 999_999_999_999_999_999, -999_999_999_999_999_999, 100_000_000_000_000_000}
	for range 4000 {
		v := r.Int64N(2_000_000_000_000_000_000) - 1_000_000_000_000_000_000
		vals = append(vals, v, v/1000*1000, r.Int64N(100_000)-50_000, r.Int64N(1000)*1_000_000)
	}
	for _, v := range vals {
		for from := int32(0); from <= 9; from++ {
			for _, to := range []int32{QtyScale, MoneyScale, RateScale} {
				want, werr := Units(decimal.New(v, -from), to)
				got, gerr := unitsOf(schemas.Unscaled{V: v, Scale: from}, to)
				if (werr == nil) != (gerr == nil) || got != want && werr == nil {
					t.Fatalf("%d at scale %d to scale %d: Units %d, %v; unitsOf %d, %v", v, from, to, want, werr, got, gerr)
				}
			}
		}
	}
}

// stateSize bounds EncodeState's output, with the widest varints too.
func TestStateSizeBoundsEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	str := func() string { return string(make([]byte, r.IntN(60))) }
	long := func() int64 { return []int64{0, -1, 1 << 62, -1 << 63, r.Int64()}[r.IntN(5)] }
	moves := func() []Move {
		var ms []Move
		for range r.IntN(4) {
			m := Move{EventID: str(), Kind: Kind(r.IntN(5)), OccurredAt: long(), Reship: r.IntN(2) == 0}
			for range r.IntN(4) {
				m.Lines = append(m.Lines, MoveLine{LineID: str(), Qty: Qty(long())})
			}
			ms = append(ms, m)
		}
		return ms
	}
	for range 2000 {
		s := State{OrderID: str(), Held: moves(), Waiting: moves(), Requested: long()}
		if r.IntN(2) == 0 {
			s.Order = &Order{MemberID: str(), EarnRate: Rate(long()), Multiplier: Rate(long())}
			for range r.IntN(6) {
				s.Order.Lines = append(s.Order.Lines, Line{ID: str(), Ordered: Qty(long()), Eligible: Money(long()), Shipped: Qty(long()), Returned: Qty(long()), CancelRequested: Qty(long())})
			}
		}
		for range r.IntN(12) {
			s.Seen = append(s.Seen, str())
		}
		if n, bound := len(EncodeState(s)), stateSize(s); n > bound {
			t.Fatalf("encoded %d bytes, stateSize %d: %+v", n, bound, s)
		}
	}
}

// The 128-bit Entitled gives what the math/big one gives, or declines (and Entitled falls back):
// on typical orders, on orders with many lines of co-prime quantities and on values near the
// int64 range; and it declines only where it must, not on the typical ones.
func TestEntitledFastIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 6))
	typical, fast := 0, 0
	for i := range 20000 {
		big := i%4 == 3
		val := func(typ int64) int64 {
			if big {
				return []int64{r.Int64(), r.Int64N(1 << 40), 1<<62 + r.Int64N(1<<62), typ}[r.IntN(4)]
			}
			return r.Int64N(typ) + 1
		}
		o := &Order{EarnRate: Rate(val(2_000_000)), Multiplier: Rate(val(3_000_000))}
		for range 1 + r.IntN(8) {
			q := Qty(val(20) * []int64{1000, 1, 7, 997}[r.IntN(4)])
			if q <= 0 || q == math.MaxInt64 { // a wrapped product
				q = 1000
			}
			sh := Qty(r.Int64N(int64(q) + 1))
			o.Lines = append(o.Lines, Line{Ordered: q, Eligible: Money(val(100_000_000)), Shipped: sh, Returned: Qty(r.Int64N(int64(sh) + 1))})
		}
		want := entitledBig(o)
		got, ok := entitled128(o)
		if ok && got != want {
			t.Fatalf("%+v: 128-bit %d, math/big %d", *o, got, want)
		}
		if !big {
			typical++
			if ok {
				fast++
			}
		}
		if Entitled(o) != want {
			t.Fatalf("%+v: Entitled %d, math/big %d", *o, Entitled(o), want)
		}
	}
	if fast < typical*99/100 {
		t.Errorf("the 128-bit path took only %d of %d typical orders", fast, typical)
	}
	// each where a 128-bit step overflows (the sum, the lcm, the rate product) or a rate is
	// negative: the fast path must decline or agree, and Entitled must agree
	lines := func(ls ...Line) []Line { return ls }
	full := func(q Qty, e Money) Line { return Line{Ordered: q, Shipped: q, Eligible: e} }
	for i, o := range []*Order{
		{EarnRate: 1, Multiplier: 1, Lines: lines(full(1, math.MaxInt64), full(1, math.MaxInt64), full(1, math.MaxInt64),
			full(1, math.MaxInt64), full(1, math.MaxInt64), Line{Ordered: math.MaxInt64, Shipped: 1, Eligible: 1})},
		{EarnRate: One, Multiplier: One, Lines: lines(full(4294967291, 1000), full(4294967279, 1000), full(4294967231, 1000))},
		{EarnRate: One, Multiplier: One, Lines: lines(Line{Ordered: 4294967291, Shipped: 4294967000, Eligible: 1e12},
			Line{Ordered: 4294967279, Shipped: 3, Eligible: 1e12}, Line{Ordered: 4294967231, Shipped: 77777, Eligible: 1e12})},
		// lcm(2^40+1, 2^30+1) = 2^70 + …: it wraps to ≈ 1.1·10^12, which would pass for an lcm
		{EarnRate: One, Multiplier: One, Lines: lines(full(1<<40+1, 1_000_000), Line{Ordered: 1<<30 + 1, Shipped: 1, Eligible: 1_000_000})},
		{EarnRate: math.MaxInt64, Multiplier: math.MaxInt64, Lines: lines(full(1000, 1<<40))},
		{EarnRate: -One, Multiplier: One, Lines: lines(full(1000, 1_000_000))},
		{EarnRate: One, Multiplier: -2 * One, Lines: lines(full(3000, 1_000_000), Line{Ordered: 7, Shipped: 3, Eligible: 999})},
	} {
		want := entitledBig(o)
		if got, ok := entitled128(o); ok && got != want {
			t.Errorf("order %d: 128-bit %d, math/big %d", i, got, want)
		}
		if got := Entitled(o); got != want {
			t.Errorf("order %d: Entitled %d, math/big %d", i, got, want)
		}
	}
}
