package oracle

import (
	"reflect"
	"testing"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// TestC4AllocatesAReturnsFindingToItsLines: a return of L1×1, L2×2 and a gift card. The
// reversal findings weigh the returned units' value (68.80 and 51.60; the gift card never
// earned, so it has no row); floor shares, the remainder to the heaviest line; Σ = the finding.
// A refund finding weighs redeemed points × units (640×1 < 360×2).
func TestC4AllocatesAReturnsFindingToItsLines(t *testing.T) {
	d := decimal.RequireFromString
	f := &orderFold{accepted: &schemas.OrderAccepted{Lines: []schemas.OrderLine{
		{OrderLineID: "L1", Quantity: d("2"), LineNet: d("137.60"), RedemptionAlloc: &schemas.RedemptionAlloc{Points: 640}},
		{OrderLineID: "L2", Quantity: d("3"), LineNet: d("77.40"), RedemptionAlloc: &schemas.RedemptionAlloc{Points: 360}},
		{OrderLineID: "L3", Quantity: d("1"), LineNet: d("50.00"), IsGiftCard: true},
	}}}
	rl := &returnLines{qty: map[string]decimal.Decimal{"L1": d("1"), "L2": d("2"), "L3": d("1")}}
	for _, c := range []struct {
		code string
		pts  int64
		want []lineShare
	}{
		{"REVERSAL_MISSING", 39, []lineShare{{"L1", 23}, {"L2", 16}}},       // 22.28 + 16.71: the 1 left to L1 (68.80)
		{"REVERSED_AFTER_ACTIVATION", 1, []lineShare{{"L1", 1}, {"L2", 0}}}, // both concerned, one point
		{"REFUND_MISSING", 880, []lineShare{{"L1", 414}, {"L2", 466}}},      // 640000 : 720000 → 414.1, 465.9: the 1 left to L2
	} {
		got := allocateToReturnLines(f, rl, c.code, c.pts)
		var sum int64
		for _, s := range got {
			sum += s.points
		}
		if sum != c.pts {
			t.Errorf("%s: shares %v sum to %d, want %d", c.code, got, sum, c.pts)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: shares %v, want %v", c.code, got, c.want)
		}
	}
	// every weight 0 (a return of gift cards only): each line weighs 1
	gc := &returnLines{qty: map[string]decimal.Decimal{"L3": d("1")}}
	if got := allocateToReturnLines(f, gc, "REVERSAL_MISSING", 5); !reflect.DeepEqual(got, []lineShare{{"L3", 5}}) {
		t.Errorf("gift cards only: %v", got)
	}
}
