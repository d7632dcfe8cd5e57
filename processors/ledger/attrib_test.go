package ledger

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// TestLateEventCorrectsLaterShares is issue 10's report on the worked example (order O-1001, o1001): with S2 (day 4)
// arriving after R1 (day 20), R1 was applied before S2 and its reversal took 38 points, S2 then
// accrued 180: +141, −38, +180 instead of the canonical +141, +181, −39. Now S2 gets its
// canonical +181 and a correction caused by S2 carries the missing point of R1's share (source
// ref R1), so every event's share is the oracle's whatever the arrival.
func TestLateEventCorrectsLaterShares(t *testing.T) {
	s1 := shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}, qty{"L2", "1"}, qty{"L3", "1"})
	s2 := shipment("e-s2", "O-1001", "S2", day(4), qty{"L1", "1"}, qty{"L2", "2"})
	r1 := returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"})
	_, got := run(t, DefaultPolicy(), o1001(), s1, r1, s2)
	want := []string{"AccrualRequested 141 S1", "ReversalRequested 38 R1", "RedemptionRefundRequested 120 R1",
		"AccrualRequested 181 S2", "ReversalRequested 1 R1"}
	if s := cmdSummary(got); !slices.Equal(s, want) {
		t.Fatalf("commands\n got %q\nwant %q", s, want)
	}
	corr := got[4]
	if corr.CausingEventID != "e-s2/e-r1" || corr.RequestID != schemas.CommandRequestID("O-1001", "e-s2/e-r1", schemas.TypeReversalRequested) ||
		corr.Reason != "RETURN" || !corr.RequestedAt.Equal(day(20)) {
		t.Fatalf("correction %+v", corr)
	}
	events := []schemas.Event{o1001(), s1, r1, s2}
	if err := sameCommands(got, oracle.Commands(events, oracle.DefaultPolicy()), false); err != nil {
		t.Fatal(err)
	}
	// In canonical arrival there is nothing to correct: exactly the oracle's commands.
	_, canon := run(t, DefaultPolicy(), o1001(), s1, s2, r1)
	if err := sameCommands(canon, oracle.Commands(events, oracle.DefaultPolicy()), true); err != nil {
		t.Fatal(err)
	}
}

// TestLateEventWithoutCommandGetsItsOwn: a move that had no command yet (its share was 0 when it
// arrived) gets its own command, with its canonical request id, when a late event gives it a
// share; only a move that already has commands is corrected.
func TestLateEventWithoutCommandGetsItsOwn(t *testing.T) {
	// Two units of 0.60 each at BASE: canonically the first shipment earns 0, the second 1.
	oa := accepted("e-oa", "O-3", day(0), "M-3", "BASE", nil, orderLine("L1", "SKU-1", 2, "1.20", "1.20", false, 0, ""))
	a := shipment("e-a", "O-3", "SA", day(1), qty{"L1", "1"})
	b := shipment("e-b", "O-3", "SB", day(2), qty{"L1", "1"})
	_, canon := run(t, DefaultPolicy(), oa, a, b)
	_, late := run(t, DefaultPolicy(), oa, b, a)
	if !slices.Equal(cmdSummary(canon), []string{"AccrualRequested 1 SB"}) || !slices.Equal(cmdSummary(late), cmdSummary(canon)) ||
		late[0].RequestID != canon[0].RequestID {
		t.Fatalf("canonical %q, late %q: want the same single command", cmdSummary(canon), cmdSummary(late))
	}
}

// TestPointsPathIndependent is the property of DESIGN.md invariant 13 over generated traffic
// (processors/generate: faults, late and out-of-order delivery, duplicates): for every order and
// many random arrival orders of its records (any permutation, duplicates added),
//
//   - the share of every point-moving event (accruals − reversals, refunds, over the commands
//     that carry it) is the oracle's: identical for every interleaving;
//   - Σ requested = P after every event (checkInvariants);
//   - an arrival that keeps the point-moving events in canonical order emits exactly the
//     oracle's commands, request ids and points, in order;
//   - the same arrival fed twice emits the same commands (corrections have deterministic ids).
func TestPointsPathIndependent(t *testing.T) {
	faults := everyFault(0.1)
	orders, perms := 400, 10
	if testing.Short() {
		orders, perms = 100, 4
	}
	settings := []struct {
		name string
		opts generate.Options
	}{
		{"clean", generate.Options{Seed: 31}},
		{"late, out of order, duplicates", generate.Options{Seed: 32, LateRate: 0.2, OutOfOrderRate: 0.5, DuplicateRate: 0.3}},
		{"every fault 10%", generate.Options{Seed: 33, LateRate: 0.1, OutOfOrderRate: 0.3, DuplicateRate: 0.1, Faults: faults}},
	}
	for _, st := range settings {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			st.opts.Orders = orders
			tr, err := generate.Generate(st.opts)
			if err != nil {
				t.Fatal(err)
			}
			byOrder, keys := recordsByOrder(tr)
			r := rand.New(rand.NewPCG(st.opts.Seed, 7))
			p := DefaultPolicy()
			var arrivals, late, corrections int
			for _, key := range keys {
				events := eventsOf(byOrder[key])
				want := oracle.Commands(events, tr.Options.Policy)
				if err := sameCommands(feedChecked(t, p, key, movesInOrder(r, events)), want, true); err != nil {
					t.Fatalf("order %s, point-moving events in canonical order: %v", key, err)
				}
				for range perms {
					arrival := shuffled(r, events)
					got := feedChecked(t, p, key, arrival)
					if err := sameCommands(got, want, false); err != nil {
						t.Fatalf("order %s, arrival %s: %v", key, arrivalOf(arrival), err)
					}
					if again := feedChecked(t, p, key, arrival); !slices.EqualFunc(got, again, sameCommand) {
						t.Fatalf("order %s: the same arrival fed twice gives %q then %q", key, cmdSummary(got), cmdSummary(again))
					}
					arrivals++
					n := 0
					for _, c := range got {
						if strings.Contains(c.CausingEventID, "/") {
							n++
						}
					}
					if n > 0 {
						late++
						corrections += n
					}
				}
			}
			t.Logf("%d orders × %d arrivals: %d arrivals needed %d corrections", len(keys), perms, late, corrections)
			if late == 0 {
				t.Fatal("no arrival needed a correction: the property was not exercised")
			}
		})
	}
}

func sameCommand(a, b schemas.LoyaltyCommand) bool {
	return a.RequestID == b.RequestID && a.Points == b.Points && a.CommandType == b.CommandType
}

// feedChecked is feed with the invariants checked after every event.
func feedChecked(t *testing.T, p Policy, key string, events []schemas.Event) []schemas.LoyaltyCommand {
	t.Helper()
	var l Ledger
	var all []schemas.LoyaltyCommand
	for _, e := range events {
		var cmds []schemas.LoyaltyCommand
		var err error
		if l, cmds, err = l.Apply(e, p); err != nil {
			t.Fatalf("order %s: %v", key, err)
		}
		checkInvariants(t, l)
		all = append(all, cmds...)
	}
	return all
}

// shuffled is a random permutation of events with about a fifth of them delivered twice.
func shuffled(r *rand.Rand, events []schemas.Event) []schemas.Event {
	out := slices.Clone(events)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i := range len(out) {
		if r.IntN(5) == 0 {
			out = slices.Insert(out, r.IntN(len(out)+1), out[i])
		}
	}
	return out
}

// movesInOrder shuffles events, then puts the point-moving ones (shipments, returns,
// cancellations) back in canonical order in the slots they landed in.
func movesInOrder(r *rand.Rand, events []schemas.Event) []schemas.Event {
	out := shuffled(r, events)
	var slots []int
	var moves []schemas.Event
	seen := map[string]bool{}
	for i, e := range out {
		if e.ShipmentConfirmed != nil || e.ReturnReceived != nil || e.OrderLinesCancelled != nil {
			slots = append(slots, i)
			if !seen[e.EventID] {
				seen[e.EventID] = true
				moves = append(moves, e)
			}
		}
	}
	sort.SliceStable(moves, func(i, j int) bool {
		if !moves[i].OccurredAt.Equal(moves[j].OccurredAt) {
			return moves[i].OccurredAt.Before(moves[j].OccurredAt)
		}
		return moves[i].EventID < moves[j].EventID
	})
	// Duplicates of a move land after its first copy: slot k gets the k-th move, the remaining
	// slots repeat the last.
	for k, i := range slots {
		out[i] = moves[min(k, len(moves)-1)]
	}
	return out
}

func arrivalOf(events []schemas.Event) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%s@%s ", e.EventType, e.OccurredAt.Format(time.DateOnly))
	}
	return b.String()
}

// TestLateEventSameShipmentIDTwice: two shipment events under one shipment id (the WMS re-sent
// it with a new event id) are two moves; re-attribution rebuilds each from its own event.
func TestLateEventSameShipmentIDTwice(t *testing.T) {
	s1 := shipment("e-s1", "O-1001", "S", day(1), qty{"L2", "1"})
	s2 := shipment("e-s2", "O-1001", "S", day(4), qty{"L1", "2"}, qty{"L2", "2"})
	r1 := returned("e-r1", "O-1001", "R1", day(20), qty{"L2", "1"})
	events := []schemas.Event{o1001(), s1, r1, s2}
	_, got := run(t, DefaultPolicy(), events...)
	// Canonically S1 +38, S2 +284, R1 −39; R1 arrived before S2 and reversed 38.
	if err := sameCommands(got, oracle.Commands(events, oracle.DefaultPolicy()), false); err != nil {
		t.Fatal(err)
	}
	// Shares by source ref cannot tell the two S events apart: the commands must.
	want := []string{"AccrualRequested 38 S", "ReversalRequested 38 R1", "RedemptionRefundRequested 120 R1",
		"AccrualRequested 284 S", "ReversalRequested 1 R1"}
	if s := cmdSummary(got); !slices.Equal(s, want) {
		t.Fatalf("commands\n got %q\nwant %q", s, want)
	}
}

// TestRefundShareNeverTakenBack documents the one exception of invariant 13. RR's unit
// increments are uneven: 7 points over 5 units refund 1, 1, 2, 1, 2 as units are cancelled.
// Canonically A (2 units) refunds 2, B (1 unit) 2, X (1 unit) 1. X arriving before B takes the
// third unit's 2; a refund cannot be taken back, so B, arriving late, gets 1: X's and B's
// refund shares are swapped by one point, the order's total is Σ RR = 5 either way.
func TestRefundShareNeverTakenBack(t *testing.T) {
	oa := accepted("e-oa", "O-7", day(0), "M-7", "BASE",
		&schemas.LoyaltyRedemption{ReservationID: "RSV-7", Points: 7, Value: dec("0.07"), Accounting: "DISCOUNT"},
		orderLine("L1", "SKU-1", 5, "50.00", "50.00", false, 7, "0.07"))
	a := cancelled("e-a", "O-7", "A", day(1), false, qty{"L1", "2"})
	b := cancelled("e-b", "O-7", "B", day(2), false, qty{"L1", "1"})
	x := cancelled("e-x", "O-7", "X", day(3), false, qty{"L1", "1"})
	_, canon := run(t, DefaultPolicy(), oa, a, b, x)
	if s := cmdSummary(canon); !slices.Equal(s, []string{"RedemptionRefundRequested 2 A", "RedemptionRefundRequested 2 B", "RedemptionRefundRequested 1 X"}) {
		t.Fatalf("canonical %q", s)
	}
	l, late := run(t, DefaultPolicy(), oa, a, x, b)
	if s := cmdSummary(late); !slices.Equal(s, []string{"RedemptionRefundRequested 2 A", "RedemptionRefundRequested 2 X", "RedemptionRefundRequested 1 B"}) {
		t.Fatalf("late %q", s)
	}
	if pt := l.Points(); pt.RefundRequested != 5 || pt.RedemptionRefundDue != 5 {
		t.Fatalf("refund requested %d, due %d, want 5", pt.RefundRequested, pt.RedemptionRefundDue)
	}
}

// TestReattributionBound: past maxReattributedMoves a late event is applied in arrival order (no
// replay, no corrections), and requested still equals P. Each unit earns about half a point, so
// a late first shipment would shift every later share.
func TestReattributionBound(t *testing.T) {
	n := maxReattributedMoves + 2
	events := []schemas.Event{accepted("e-oa", "O-9", day(0), "M-9", "BASE", nil, orderLine("L1", "SKU-1", int64(n), fmt.Sprint(n), fmt.Sprintf("%d.50", n/2), false, 0, ""))}
	for i := range n {
		events = append(events, shipment(fmt.Sprintf("e-s%04d", i), "O-9", fmt.Sprintf("S%04d", i), day(1).Add(time.Duration(i)*time.Minute), qty{"L1", "1"}))
	}
	// The first shipment arrives last.
	events = append(append(events[:1:1], events[2:]...), events[1])
	_, cmds := run(t, DefaultPolicy(), events...)
	for _, c := range cmds {
		if strings.Contains(c.CausingEventID, "/") {
			t.Fatalf("correction %s past the bound", c.CausingEventID)
		}
	}
}
