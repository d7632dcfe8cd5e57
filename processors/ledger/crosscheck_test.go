package ledger

import (
	"fmt"
	"slices"
	"testing"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// sameCommands compares what the ledger emitted for one order with what the oracle computes from
// the same events. Always exact: the set of request ids, and per id the type, causing event and
// source ref; the per-order sums (accrued − reversed, refunded). With exactPoints (the events that
// move points arrived in canonical order) also the sequence and each command's points.
func sameCommands(got []schemas.LoyaltyCommand, want []oracle.Command, exactPoints bool) error {
	key := func(id string, typ schemas.EventType, cause, ref string) string {
		return fmt.Sprintf("%s %s cause=%s ref=%s", id, typ, cause, ref)
	}
	var g, w []string
	var gNet, wNet, gRefund, wRefund int64
	for _, c := range got {
		g = append(g, key(c.RequestID, c.CommandType, c.CausingEventID, c.SourceRefID))
		gNet, gRefund = addPoints(gNet, gRefund, c.CommandType, c.Points)
	}
	for _, c := range want {
		w = append(w, key(c.RequestID, c.Type, c.CausingEventID, c.SourceRefID))
		wNet, wRefund = addPoints(wNet, wRefund, c.Type, c.Points)
	}
	if exactPoints {
		for i := range min(len(got), len(want)) {
			if got[i].RequestID != want[i].RequestID || got[i].Points != want[i].Points {
				return fmt.Errorf("command %d: ledger %s %d %s, oracle %s %d %s", i,
					got[i].CommandType, got[i].Points, got[i].SourceRefID, want[i].Type, want[i].Points, want[i].SourceRefID)
			}
		}
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		return fmt.Errorf("commands differ\nledger %q\noracle %q", g, w)
	}
	if gNet != wNet || gRefund != wRefund {
		return fmt.Errorf("net accrual %d refund %d, oracle %d and %d", gNet, gRefund, wNet, wRefund)
	}
	return nil
}

func addPoints(net, refund int64, typ schemas.EventType, pts int64) (int64, int64) {
	switch typ {
	case schemas.TypeAccrualRequested:
		net += pts
	case schemas.TypeReversalRequested:
		net -= pts
	case schemas.TypeRedemptionRefundRequested:
		refund += pts
	}
	return net, refund
}

// TestReturnsBeforeTheirShipments is the oracle engineer's report (order O-8GX2-002746 of seed
// 21): two returns of one line reach the ledger before the order and before the shipments they
// return. The returns stay held until the shipments make them fit; a later return (on the returns
// topic, which ran ahead) must not end the first one's grace and cap it at nothing.
func TestReturnsBeforeTheirShipments(t *testing.T) {
	const id = "O-8GX2-002746"
	oa := accepted("e-oa", id, t0, "M-1", "GOLD", nil, orderLine("L1", "SKU-1", 3, "39.60", "39.60", false, 0, ""))
	s1 := shipment("e-s1", id, "S1", day(1), qty{"L1", "2"})
	s2 := shipment("e-s2", id, "S2", day(2), qty{"L1", "1"})
	r1 := returned("e-r1", id, "R1", day(5), qty{"L1", "2"})
	r2 := returned("e-r2", id, "R2", day(7), qty{"L1", "1"})
	cases := []struct {
		name    string
		arrival []schemas.Event
	}{
		{"reported: R2 R1 OA S2 S1", []schemas.Event{r2, r1, oa, s2, s1}},
		{"returns topic ahead: OA R1 R2 S1 S2", []schemas.Event{oa, r1, r2, s1, s2}},
		{"orphans released at OA: R1 R2 OA S1 S2", []schemas.Event{r1, r2, oa, s1, s2}},
		{"everything before OA: R2 R1 S2 S1 OA", []schemas.Event{r2, r1, s2, s1, oa}},
		{"canonical", []schemas.Event{oa, s1, s2, r1, r2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, got := run(t, DefaultPolicy(), tc.arrival...)
			if len(got) != 4 {
				t.Errorf("%d commands %q, want 2 accruals and 2 reversals", len(got), cmdSummary(got))
			}
			if err := sameCommands(got, oracle.Commands(tc.arrival, oracle.DefaultPolicy()), tc.name == "canonical"); err != nil {
				t.Error(err)
			}
			if l.Held() != 0 || !l.Lines()[0].Returned.Equal(dec("3")) || len(l.Exceptions()) != 0 {
				t.Errorf("held %d, returned %s, exceptions %+v", l.Held(), l.Lines()[0].Returned, l.Exceptions())
			}
		})
	}
}
