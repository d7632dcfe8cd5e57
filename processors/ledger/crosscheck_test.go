package ledger

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// sameCommands compares what the ledger emitted for one order with what the oracle computes from
// the same events (DESIGN.md invariant 13). Always exact: the share of every point-moving event
// (by reason and source ref: accruals minus reversals, and refunds, over the commands that carry
// it, corrections included) equals the oracle's, every command's request id is the oracle's or a
// correction's (cause "late/attributed"), and the per-order sums. With exactPoints (the events
// that move points arrived in canonical order) the commands are exactly the oracle's, in order,
// points included.
func sameCommands(got []schemas.LoyaltyCommand, want []oracle.Command, exactPoints bool) error {
	key := func(id string, typ schemas.EventType, cause, ref string) string {
		return fmt.Sprintf("%s %s cause=%s ref=%s", id, typ, cause, ref)
	}
	var g, w []string
	var gNet, wNet, gRefund, wRefund int64
	oracleIDs := map[string]bool{}
	for _, c := range want {
		w = append(w, key(c.RequestID, c.Type, c.CausingEventID, c.SourceRefID))
		wNet, wRefund = addPoints(wNet, wRefund, c.Type, c.Points)
		oracleIDs[c.RequestID] = true
	}
	for _, c := range got {
		gNet, gRefund = addPoints(gNet, gRefund, c.CommandType, c.Points)
		if !oracleIDs[c.RequestID] {
			if !strings.Contains(c.CausingEventID, "/") {
				return fmt.Errorf("command %s %s %d %s is neither the oracle's nor a correction", c.RequestID, c.CommandType, c.Points, c.SourceRefID)
			}
			continue
		}
		g = append(g, key(c.RequestID, c.CommandType, c.CausingEventID, c.SourceRefID))
	}
	if exactPoints {
		if len(got) != len(want) {
			return fmt.Errorf("%d commands, oracle %d: %q", len(got), len(want), cmdSummary(got))
		}
		for i := range got {
			if got[i].RequestID != want[i].RequestID || got[i].Points != want[i].Points {
				return fmt.Errorf("command %d: ledger %s %d %s, oracle %s %d %s", i,
					got[i].CommandType, got[i].Points, got[i].SourceRefID, want[i].Type, want[i].Points, want[i].SourceRefID)
			}
		}
	}
	if gs, ws := ledgerShares(got), oracleShares(want); !maps.Equal(gs, ws) {
		return fmt.Errorf("shares per event differ\nledger %v\noracle %v", gs, ws)
	}
	if gNet != wNet || gRefund != wRefund {
		return fmt.Errorf("net accrual %d refund %d, oracle %d and %d", gNet, gRefund, wNet, wRefund)
	}
	return nil
}

// shareKey names the event whose share a command carries: its reason and source ref (a
// correction carries the reason and source ref of the event it corrects).
type shareKey struct{ reason, ref string }

// eventShare is what the commands carrying one event's share add up to.
type eventShare struct{ points, refund int64 }

func ledgerShares(cmds []schemas.LoyaltyCommand) map[shareKey]eventShare {
	out := map[shareKey]eventShare{}
	for _, c := range cmds {
		k := shareKey{c.Reason, c.SourceRefID}
		s := out[k]
		s.points, s.refund = addPoints(s.points, s.refund, c.CommandType, c.Points)
		out[k] = s
	}
	for k, s := range out {
		if s == (eventShare{}) {
			delete(out, k) // corrections that cancel out: no share
		}
	}
	return out
}

func oracleShares(cmds []oracle.Command) map[shareKey]eventShare {
	out := map[shareKey]eventShare{}
	for _, c := range cmds {
		k := shareKey{c.Reason, c.SourceRefID}
		s := out[k]
		s.points, s.refund = addPoints(s.points, s.refund, c.Type, c.Points)
		out[k] = s
	}
	return out
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
			if err := sameCommands(got, oracle.Commands(tc.arrival, oracle.DefaultPolicy()), tc.name == "canonical"); err != nil {
				t.Error(err)
			}
			if l.Held() != 0 || !l.Lines()[0].Returned.Equal(dec("3")) || len(l.Exceptions()) != 0 {
				t.Errorf("held %d, returned %s, exceptions %+v", l.Held(), l.Lines()[0].Returned, l.Exceptions())
			}
		})
	}
}

// TestMatchesOracleOnGeneratedTraffic: for generated traffic under several seeds and delivery
// settings, each order's records fed to the ledger in delivery order (duplicates included, as the
// runtime sees them) give exactly the oracle's commands: request ids, types, causing events,
// source refs, and — the generator keeps the events that move points in canonical order — each
// command's points in emission order.
//
// The generator never lets a return overtake its shipment, so delivery order alone cannot reach
// the reported bug. Each order is therefore also fed with its topics interleaved at random (every
// topic keeps its own order, as a partition does; one topic may run days ahead of another, as in
// a replay): that must give every event the oracle's share of points (sameCommands; the
// corrections a late event causes included) and the same per-order sums.
func TestMatchesOracleOnGeneratedTraffic(t *testing.T) {
	faults := everyFault(0.1)
	firstShipment := oracle.DefaultPolicy()
	firstShipment.ConfirmTrigger = oracle.ConfirmAtFirstShipment
	orders := 2000
	if testing.Short() {
		orders = 300
	}
	settings := []struct {
		name string
		opts generate.Options
	}{
		{"clean", generate.Options{Seed: 21}},
		{"10% late", generate.Options{Seed: 22, LateRate: 0.1}},
		{"30% out of order", generate.Options{Seed: 23, OutOfOrderRate: 0.3}},
		{"50% duplicates", generate.Options{Seed: 24, DuplicateRate: 0.5}},
		{"reported knobs: 30% out of order, 10% late, every fault 10%", generate.Options{Seed: 21, OutOfOrderRate: 0.3, LateRate: 0.1, Faults: faults}},
		{"confirm at first shipment, every fault 10%", generate.Options{Seed: 25, OutOfOrderRate: 0.3, LateRate: 0.1, Faults: faults, Policy: firstShipment}},
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
			r := rand.New(rand.NewPCG(st.opts.Seed, 99))
			p := DefaultPolicy()
			if st.opts.Policy.ConfirmTrigger == oracle.ConfirmAtFirstShipment {
				p.ConfirmTrigger = ConfirmOnFirstShipment
			}
			var commands, interleaved int
			for _, key := range keys {
				recs := byOrder[key]
				want := oracle.Commands(eventsOf(recs), tr.Options.Policy)
				got := feed(t, p, key, eventsOf(recs))
				if err := sameCommands(got, want, true); err != nil {
					t.Fatalf("order %s, delivery order: %v", key, err)
				}
				commands += len(got)
				mixed := interleaveTopics(r, recs)
				if err := sameCommands(feed(t, p, key, mixed), want, false); err != nil {
					t.Fatalf("order %s, topics interleaved %s: %v", key, arrival(mixed), err)
				}
				if !slices.EqualFunc(mixed, eventsOf(recs), func(a, b schemas.Event) bool { return a.EventID == b.EventID }) {
					interleaved++
				}
			}
			t.Logf("%d orders (%d keys), %d commands; %d orders re-fed in another arrival order", orders, len(keys), commands, interleaved)
			if commands == 0 || interleaved < len(keys)/2 {
				t.Fatalf("too little coverage: %d commands, %d of %d orders interleaved differently", commands, interleaved, len(keys))
			}
		})
	}
}

// recordsByOrder groups the valid records (duplicates included) by record key, in delivery order.
func recordsByOrder(tr *generate.Traffic) (map[string][]generate.Record, []string) {
	byOrder := map[string][]generate.Record{}
	var keys []string
	for _, r := range tr.Records {
		if r.Event == nil || r.Malformed != "" {
			continue
		}
		if _, ok := byOrder[r.Key]; !ok {
			keys = append(keys, r.Key)
		}
		byOrder[r.Key] = append(byOrder[r.Key], r)
	}
	return byOrder, keys
}

func eventsOf(recs []generate.Record) []schemas.Event {
	out := make([]schemas.Event, len(recs))
	for i, r := range recs {
		out[i] = *r.Event
	}
	return out
}

// interleaveTopics merges the order's per-topic streams in a random order: each topic keeps its
// records' relative order, and which topic delivers next is drawn in proportion to what it has
// left, so whole topics often run ahead of others.
func interleaveTopics(r *rand.Rand, recs []generate.Record) []schemas.Event {
	var topics []schemas.Topic
	streams := map[schemas.Topic][]schemas.Event{}
	for _, rec := range recs {
		if _, ok := streams[rec.Topic]; !ok {
			topics = append(topics, rec.Topic)
		}
		streams[rec.Topic] = append(streams[rec.Topic], *rec.Event)
	}
	out := make([]schemas.Event, 0, len(recs))
	for left := len(recs); left > 0; left-- {
		k := r.IntN(left)
		for _, tp := range topics {
			if k < len(streams[tp]) {
				out = append(out, streams[tp][0])
				streams[tp] = streams[tp][1:]
				break
			}
			k -= len(streams[tp])
		}
	}
	return out
}

// feed applies events to a new ledger and returns every command, failing on any error.
func feed(t *testing.T, p Policy, key string, events []schemas.Event) []schemas.LoyaltyCommand {
	t.Helper()
	var l Ledger
	var all []schemas.LoyaltyCommand
	for _, e := range events {
		var cmds []schemas.LoyaltyCommand
		var err error
		if l, cmds, err = l.Apply(e, p); err != nil {
			t.Fatalf("order %s: %v", key, err)
		}
		all = append(all, cmds...)
	}
	return all
}

// arrival is "type@day" per event, for failure messages.
func arrival(events []schemas.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprintf("%s@%s", e.EventType, e.OccurredAt.Format("01-02T15"))
	}
	return out
}
