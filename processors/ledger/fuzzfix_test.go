package ledger

import (
	"testing"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// TestLateReturnBeforeForcingShipment is the FuzzApply failure of seed
// testdata/fuzz/FuzzApply/late-return-capped (decoded with fuzzEvent, the invalid and the
// conflicting events left out): returns of L1 and L2 and L1's only shipment arrive before their
// OrderAccepted; at acceptance they are applied in canonical order, so the shipment (Oct 17)
// ends the returns' grace (24h) and applies them capped at nothing (nothing was shipped before
// them), then accrues 103 points. A fourth return of L1 (Oct 11, canonically before the
// shipment) arrives last: canonically it is capped at nothing too, so P stays 103. The ledger
// used to apply it against the arrival-order state (it fit the shipment already there), which
// dropped P to 0 while the canonical shares it requests from asked for no reversal: requested
// 103, entitled 0.
func TestLateReturnBeforeForcingShipment(t *testing.T) {
	r1 := returned("e1", "O-1001", "Re1", day(9), qty{"L1", "1"})
	s8 := shipment("e8", "O-1001", "Se8", day(16), qty{"L1", "1"})
	r3 := returned("e3", "O-1001", "Re3", day(3), qty{"L1", "1"})
	r18 := returned("e18", "O-1001", "Re18", day(10), qty{"L2", "1"})
	oa := o1001()
	oa.EventID, oa.OccurredAt = "e19", day(27)
	r2 := returned("e2", "O-1001", "Re2", day(10), qty{"L1", "1"})
	arrivals := map[string][]schemas.Event{
		"fuzz arrival":  {r1, s8, r3, r18, oa, r2},
		"return first":  {r2, r1, s8, r3, r18, oa},
		"canonical OMS": {oa, r3, r1, r18, r2, s8},
	}
	p := DefaultPolicy()
	for name, events := range arrivals {
		t.Run(name, func(t *testing.T) {
			var l Ledger
			var all []schemas.LoyaltyCommand
			for _, e := range events {
				n, cmds, err := l.Apply(e, p)
				if err != nil {
					t.Fatal(err)
				}
				l = n
				all = append(all, cmds...)
				checkInvariants(t, l)
			}
			if pts := l.State().Points; pts.Entitled != 103 || pts.Requested != 103 {
				t.Errorf("entitled %d requested %d, want 103 and 103", pts.Entitled, pts.Requested)
			}
			if got := l.Lines()[0].Returned; !got.IsZero() {
				t.Errorf("L1 returned %s, want 0 (every return of L1 is capped by the shipment that ends its grace)", got)
			}
			if err := sameCommands(all, oracle.Commands(events, oracle.DefaultPolicy()), false); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestLateReturnTakesTheUnitsOfALaterOne: L1 has one unit shipped (S1); return Rb (day 12)
// takes it, then Ra (day 11) of the same unit arrives. Canonically Ra fits and Rb waits for
// S2, so the ledger gives Ra the reversal and takes Rb's back (a correction caused by Ra);
// when S2 arrives late, Rb fits again. TestOrderIndependence found this once the late path
// adopted the canonical state: Rb, now held, kept its reversal (requested −38, P 0).
func TestLateReturnTakesTheUnitsOfALaterOne(t *testing.T) {
	oa := o1001()
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"})
	s2 := shipment("e-s2", "O-1001", "S2", day(2), qty{"L1", "1"})
	ra := returned("e-ra", "O-1001", "Ra", day(11), qty{"L1", "1"})
	rb := returned("e-rb", "O-1001", "Rb", day(12), qty{"L1", "1"})
	p := DefaultPolicy()
	for name, events := range map[string][]schemas.Event{
		"Rb before Ra, S2 last": {oa, s1, rb, ra, s2},
		"Rb before Ra":          {oa, s1, s2, rb, ra},
		"canonical":             {oa, s1, s2, ra, rb},
	} {
		t.Run(name, func(t *testing.T) {
			l, cmds := run(t, p, events...)
			if l.Held() != 0 || !l.Lines()[0].Returned.Equal(dec("2")) {
				t.Errorf("held %d, L1 returned %s", l.Held(), l.Lines()[0].Returned)
			}
			if err := sameCommands(cmds, oracle.Commands(events, oracle.DefaultPolicy()), name == "canonical"); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("Ra late while S2 is missing", func(t *testing.T) {
		l, cmds := run(t, p, oa, s1, rb, ra)
		if l.Held() != 1 || !l.Lines()[0].Returned.Equal(dec("1")) {
			t.Errorf("held %d, L1 returned %s", l.Held(), l.Lines()[0].Returned)
		}
		sh := ledgerShares(cmds)
		if sh[shareKey{"RETURN", "Rb"}].points != 0 || sh[shareKey{"RETURN", "Ra"}].points >= 0 {
			t.Errorf("shares %v: Ra, canonically first, carries the reversal, Rb (held) none", sh)
		}
	})
}
