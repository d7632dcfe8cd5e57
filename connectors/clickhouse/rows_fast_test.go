package clickhouse

import (
	"fmt"
	"math/big"
	"math/rand"
	"testing"

	"github.com/shopspring/decimal"
)

// netValueByQtyRat is the exact reference of NetValueByQty: every value through big.Rat.
func netValueByQtyRat(lineNet decimal.Decimal, n int64) []decimal.Decimal {
	net := lineNet.Rat()
	out := make([]decimal.Decimal, n+1)
	for q := int64(0); q <= n; q++ {
		out[q] = roundHalfEven(new(big.Rat).Mul(net, big.NewRat(q, n)), 2)
	}
	return out
}

// NetValueByQty's integer path gives the same values as the big.Rat reference, in the same
// representation (coefficient and exponent: what the driver encodes), for nets of any scale and
// sign, ties included, and for coefficients too large for int64 arithmetic.
func TestNetValueByQtyMatchesRatReference(t *testing.T) {
	rnd := rand.New(rand.NewSource(16))
	nets := []string{"0", "0.01", "-0.01", "0.05", "0.005", "0.015", "0.025", "-0.025", "1", "10", "99.99", "1234.5678",
		"-987.654", "100000000", "92233720368547758.07", "9223372036854775807", "123456789012345678901234.5", "1e5", "0.00000001"}
	for i := 0; i < 300; i++ {
		nets = append(nets, decimal.New(rnd.Int63n(2_000_000)-1_000_000, -int32(rnd.Intn(6))).String())
	}
	qtys := []int64{1, 2, 3, 4, 6, 7, 8, 10, 16, 40, 333, 999, 1000}
	for _, ns := range nets {
		net := decimal.RequireFromString(ns)
		for _, n := range qtys {
			got, want := NetValueByQty(net, decimal.NewFromInt(n)), netValueByQtyRat(net, n)
			if len(got) != len(want) {
				t.Fatalf("%s / %d: %d values, want %d", ns, n, len(got), len(want))
			}
			for q := range want {
				if got[q].Exponent() != want[q].Exponent() || got[q].Coefficient().Cmp(want[q].Coefficient()) != 0 {
					t.Fatalf("%s × %d / %d: %s (exp %d), want %s (exp %d)", ns, q, n, got[q], got[q].Exponent(), want[q], want[q].Exponent())
				}
			}
		}
	}
}

func BenchmarkNetValueByQty(b *testing.B) {
	net, qty := decimal.RequireFromString("1234.57"), decimal.NewFromInt(12)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		NetValueByQty(net, qty)
	}
}

// The audit details built by concatenation are the text the fmt formats they replace give.
func TestAuditDetailsAsFormatted(t *testing.T) {
	ds := []decimal.Decimal{decimal.Zero, decimal.RequireFromString("-12.50"), decimal.RequireFromString("0.0100"),
		decimal.RequireFromString("123456789012345678901.123"), decimal.New(5, 3)}
	ints := []int64{0, -7, 1 << 62, 42}
	strs := []string{"", "GOLD", "a %s b", "ü"}
	for i, a := range ds {
		b, c := ds[(i+1)%len(ds)], ds[(i+2)%len(ds)]
		for j, s := range strs {
			n, m, k := ints[j%len(ints)], ints[(j+1)%len(ints)], ints[(j+2)%len(ints)]
			s2 := strs[(j+1)%len(strs)]
			check := func(got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			}
			check(accrualDetail(a, b, s, c), fmt.Sprintf("basis %s × rate %s × tier %s %s", a, b, s, c))
			check(reversalDetail(n, m, k), fmt.Sprintf("from pending %d, from active %d, shortfall %d", n, m, k))
			check(billingDetail(s, s2, a, b, s), fmt.Sprintf("%s %s net %s tax %s (%s)", s, s2, a, b, s))
			check(commandDetail(s, n, a, b, s2, c, s), fmt.Sprintf("%s: P=%d after the event (basis %s × rate %s × tier %s %s, policy %s)", s, n, a, b, s2, c, s))
		}
	}
}
