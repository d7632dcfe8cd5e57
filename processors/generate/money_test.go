package generate

import (
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestMoneyRounding(t *testing.T) {
	// the worked example: €25 coupon ACROSS 160/90 (gift card excluded) → 16.00 / 9.00.
	got := allocateAcross(d("25"), []decimal.Decimal{d("160"), d("90"), decimal.Zero})
	if fmt.Sprint(got) != "[16 9 0]" {
		t.Errorf("coupon allocation %v", got)
	}
	// 10.00 over three equal lines: 3.33 each HALF_EVEN, the residual cent to the first largest.
	got = allocateAcross(d("10"), []decimal.Decimal{d("5"), d("5"), d("5")})
	if fmt.Sprint(got) != "[3.34 3.33 3.33]" {
		t.Errorf("residual allocation %v", got)
	}
	// 1,000 points over 144/81 with floors 2 and 3 (B.2 without floors gives 640/360).
	if pts := largestRemainder(1000, []int64{0, 0}, []int64{14400, 8100}); fmt.Sprint(pts) != "[640 360]" {
		t.Errorf("largest remainder %v", pts)
	}
	if pts := largestRemainder(10, []int64{1, 4}, []int64{9900, 100}); fmt.Sprint(pts) != "[6 4]" {
		t.Errorf("largest remainder with floors %v", pts)
	}
	// HALF_EVEN on exact halves: 2.125 → 2.12, 2.135 → 2.14 (HALF_UP would give 2.13, 2.14).
	if a, b := tax(d("10.625"), d("0.2")), tax(d("10.675"), d("0.2")); a.String() != "2.12" || b.String() != "2.14" {
		t.Errorf("tax half-even: %s %s", a, b)
	}
	// Cumulative value: 3 units worth 10.00 bill 3.33, 3.34, 3.33 (Σ = 10.00).
	var prev decimal.Decimal
	var parts []string
	for k := 1; k <= 3; k++ {
		v := valueCum(d("10"), k, 3)
		parts = append(parts, v.Sub(prev).String())
		prev = v
	}
	if fmt.Sprint(parts) != "[3.33 3.34 3.33]" {
		t.Errorf("cumulative value parts %v", parts)
	}
}
