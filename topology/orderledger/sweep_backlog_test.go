package orderledger_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// sendAt produces events as send does, with the record timestamp at: when they reached the log.
func (rg *sweepRig) sendAt(at time.Time, evs ...*schemas.Event) {
	rg.t.Helper()
	for _, e := range evs {
		rg.produce(e, at)
	}
}

// earningOrders are n orders of generated traffic (none of skip) whose OrderAccepted and first
// shipment, folded in that order, request points: each order's two events.
func earningOrders(t *testing.T, n int, skip map[string]bool) [][2]*schemas.Event {
	t.Helper()
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 40})
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]*[2]*schemas.Event{}
	var keys []string
	for _, r := range tr.Records {
		e := r.Event
		if e == nil || r.Malformed != "" || r.Duplicate || skip[r.Key] || strings.HasPrefix(r.Key, "checkout:") {
			continue
		}
		if first[r.Key] == nil {
			first[r.Key] = &[2]*schemas.Event{}
			keys = append(keys, r.Key)
		}
		switch f := first[r.Key]; {
		case e.OrderAccepted != nil && f[0] == nil:
			f[0] = e
		case e.ShipmentConfirmed != nil && f[1] == nil:
			f[1] = e
		}
	}
	var out [][2]*schemas.Event
	p := ledger.DefaultPolicy()
	for _, k := range keys {
		f := first[k]
		if f[0] == nil || f[1] == nil || len(out) == n {
			continue
		}
		l, _, err := ledger.New(k).Apply(*f[0], p)
		if err != nil {
			continue
		}
		if _, cmds, err := l.Apply(*f[1], p); err == nil && len(cmds) > 0 {
			out = append(out, *f)
		}
	}
	if len(out) < n {
		t.Fatalf("%d earning orders in the traffic, want %d", len(out), n)
	}
	return out
}

// TestSweepKeepsABacklogOrphan: a shipment that reaches the log 120 days after it occurred (a
// backlog an upstream system sends after an outage), ahead of its OrderAccepted, waits for it:
// its expiry counts from its record's timestamp, not from its business time, which the
// partition's stream time passed long ago. The same shipment of another order whose record is
// dated when it occurred (it reached the log then, and nothing accepted it since) is evicted
// by the same sweeps as an orphan: the rule that keeps the first is the arrival, nothing else.
// The backlog order's OrderAccepted then finds its shipment held, and its points are requested
// (the order, all shipped long ago, may then be evicted as closed: that is the closed rule).
// Also with a restart between the shipment and its order.
func TestSweepKeepsABacklogOrphan(t *testing.T) {
	for _, mode := range []string{"memory", "disk", "memory-restart", "disk-restart"} {
		t.Run(mode, func(t *testing.T) {
			c := pickSweepCase(t)
			skip := map[string]bool{c.closedKey: true, c.orphanKey: true, c.open.Key(): true, c.clock.Key(): true, c.near.Key(): true}
			orders := earningOrders(t, 2, skip)
			backlog, stale := orders[0], orders[1]
			rg := newSweepRig(t, strings.HasPrefix(mode, "disk"))
			run := rg.start()
			defer func() { run.stop(t) }()

			now := c.clock.PublishedAt // the partition's present: its stream time is c.clock's
			rg.send(c.clock)
			run.waitCommitted(t, 1)
			if lag := c.clock.OccurredAt.Sub(backlog[1].OccurredAt); lag < 100*24*time.Hour {
				t.Fatalf("the backlog shipment is only %s behind the stream time", lag)
			}
			rg.sendAt(now, backlog[1])
			rg.sendAt(stale[1].PublishedAt, stale[1])
			run.waitCommitted(t, 3)

			staleKey, backlogKey := stale[1].Key(), backlog[1].Key()
			recs := rg.changelog(func(recs []*kgo.Record) bool {
				r := lastOf(recs)[staleKey]
				return r != nil && r.Value == nil
			})
			last := lastOf(recs)
			if r := last[staleKey]; r == nil || r.Value != nil {
				t.Fatalf("the shipment whose record is as old as it (%s) was not evicted as an orphan", staleKey)
			} else if why, _ := hdr(r, headers.Evicted); why != "orphan" {
				t.Fatalf("its tombstone says %s=%q, want orphan", headers.Evicted, why)
			}
			committed := int64(3)
			if strings.HasSuffix(mode, "restart") {
				// the sweep's index rebuilt from the changelog's rf.expires headers (memory) or
				// kept in the store (disk), the stream time from the checkpoint: several sweep
				// intervals with it must not evict the backlog shipment either
				run.stop(t)
				run = rg.start()
				committed = 0
				time.Sleep(300 * time.Millisecond)
			}
			last = lastOf(rg.changelog(func([]*kgo.Record) bool { return true }))
			r := last[backlogKey]
			if r == nil || r.Value == nil {
				t.Fatalf("the backlog shipment of %s was evicted before its OrderAccepted came (%v)", backlogKey, r != nil)
			}
			st, err := ledgerstate.Decode(rg.ctx, rg.serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: 0, Offset: r.Offset}, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if st.Order != nil || len(st.Held) != 1 || !st.OrphanSince.Equal(now.UTC().Truncate(time.Millisecond)) {
				t.Fatalf("the held shipment's state: accepted %v, %d held, orphan_since %s (record time %s)", st.Order != nil, len(st.Held), st.OrphanSince, now)
			}

			rg.sendAt(now, backlog[0])
			run.waitCommitted(t, committed+1)
			recs = rg.changelog(func(recs []*kgo.Record) bool {
				r := lastOf(recs)[backlogKey]
				return r != nil && r.Offset > last[backlogKey].Offset
			})
			// the state its OrderAccepted wrote; the order, all shipped 120 days ago, may be
			// evicted as closed right after (its return window has long passed)
			r = nil
			for _, x := range recs {
				if string(x.Key) != backlogKey || x.Offset <= last[backlogKey].Offset {
					continue
				}
				if x.Value != nil {
					r = x
				} else if why, _ := hdr(x, headers.Evicted); why != "closed" || r == nil {
					t.Fatalf("after its OrderAccepted, %s was tombstoned (%s=%q) before or without a state", backlogKey, headers.Evicted, why)
				}
			}
			if r == nil {
				t.Fatalf("no state of %s after its OrderAccepted", backlogKey)
			}
			if st, err = ledgerstate.Decode(rg.ctx, rg.serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: 0, Offset: r.Offset}, r.Value); err != nil {
				t.Fatal(err)
			}
			if st.Order == nil || len(st.Held) != 0 || len(st.Shipments) != 1 || st.Points.AccrualRequested <= 0 || len(st.Commands) == 0 || !st.OrphanSince.IsZero() {
				t.Fatalf("after its OrderAccepted: accepted %v, held %d, shipments %d, requested %d, commands %d, orphan_since %s",
					st.Order != nil, len(st.Held), len(st.Shipments), st.Points.AccrualRequested, len(st.Commands), st.OrphanSince)
			}
		})
	}
}

// The stage notes an orphan's arrival (its record's timestamp) in the current layout only:
// layout v2 cannot store it, and the expiry the runtime indexes (rf.expires) must be the one
// the stored state implies — on its clock alone, as before v3.
func TestArrivalOnlyInTheCurrentLayout(t *testing.T) {
	ctx := context.Background()
	topics := benchTopics("")
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(topics.Names))
	if err != nil {
		t.Fatal(err)
	}
	ship := earningOrders(t, 1, nil)[0][1]
	v, err := serde.EncodeEvent(schemas.TopicShipments, ship)
	if err != nil {
		t.Fatal(err)
	}
	arrived := ship.OccurredAt.Add(40 * 24 * time.Hour)
	rec := &kgo.Record{Topic: topics.Names[schemas.TopicShipments], Key: []byte(ship.Key()), Value: v, Timestamp: arrived}
	p := ledger.DefaultPolicy()
	for _, tc := range []struct {
		layout ledgerstate.Layout
		want   time.Time // the orphan's expiry
	}{
		{ledgerstate.LayoutCurrent, arrived.UTC().Truncate(time.Millisecond).Add(p.OrphanGrace + p.RetentionAfterClose)},
		{ledgerstate.LayoutV2, ship.OccurredAt.UTC().Add(p.OrphanGrace + p.RetentionAfterClose)},
	} {
		proc := orderledger.NewProcessor(ctx, topics, orderledger.Options{Serde: serde, Policy: p, MaxEventSkew: time.Hour, StateLayout: tc.layout})
		in, err := proc.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		step, err := proc.Process(ship.Key(), ledger.Ledger{}, false, in)
		if err != nil {
			t.Fatal(err)
		}
		at, ok := proc.Expiry(step.State)
		if !ok || !at.Equal(tc.want) {
			t.Fatalf("layout %d: the orphan expires at %s (%v), want %s", tc.layout, at, ok, tc.want)
		}
		b, err := proc.State.Encode(step.State)
		if err != nil {
			t.Fatal(err)
		}
		back, err := proc.State.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := back.ExpiresAt(p); !got.Equal(tc.want) {
			t.Fatalf("layout %d: stored, the orphan expires at %s, indexed at %s", tc.layout, got, tc.want)
		}
	}
}
