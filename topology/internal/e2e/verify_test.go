package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/retailflow/retailflow/topology"
)

// The chaos run with seed 1796544827665893570 failed on an order the sweep had evicted (due by
// the rule) and an ERP event two weeks behind its partition re-created: the verifier compared the
// new life with the oracle's fold of the whole order. Here the same shape is built from
// generated traffic: each life must be held to the oracle's fold of its own events, and a life
// re-created by an event within the allowed lateness must be reported.
func TestOrderWithTwoLivesIsComparedLifeByLife(t *testing.T) {
	tr, err := generate.Generate(generate.Options{Seed: 7, Orders: 40})
	if err != nil {
		t.Fatal(err)
	}
	ex := tr.Expected(time.Now())
	byKey := map[string][]schemas.Event{}
	var keys []string
	for _, r := range tr.Records {
		if r.Event == nil || r.Malformed != "" {
			continue
		}
		if _, ok := byKey[r.Key]; !ok {
			keys = append(keys, r.Key)
		}
		byKey[r.Key] = append(byKey[r.Key], *r.Event)
	}
	fold := func(events []schemas.Event) ledger.Ledger {
		var l ledger.Ledger
		for _, e := range events {
			n, _, err := l.Apply(e, ledger.DefaultPolicy())
			if err != nil {
				t.Fatalf("apply %s: %v", e.EventID, err)
			}
			l = n
		}
		return l
	}
	// the victim: an order due for eviction without its last ERP document, which moves no points
	victim, late := "", -1
	for _, k := range keys {
		evs := byKey[k]
		for i := len(evs) - 1; i >= 0; i-- {
			if strings.HasPrefix(string(evs[i].EventType), "Erp") && evs[i].EventType != schemas.TypeErpSalesOrderCreated {
				if _, ok := fold(append(append([]schemas.Event(nil), evs[:i]...), evs[i+1:]...)).ExpiresAt(ledger.DefaultPolicy()); ok {
					victim, late = k, i
				}
				break
			}
		}
		if victim != "" {
			break
		}
	}
	if victim == "" {
		t.Fatal("no order with an ERP document that is due without it")
	}
	evs := byKey[victim]
	first := fold(append(append([]schemas.Event(nil), evs[:late]...), evs[late+1:]...))
	second := fold([]schemas.Event{evs[late]})
	expiry, _ := first.ExpiresAt(ledger.DefaultPolicy())
	lateness := int64(topology.DefaultAllowedLateness)

	// lives: the victim evicted by the sweep at stream time evictedAt, re-created by second
	// committed at stream time recreatedAt
	lives := func(evictedAt, recreatedAt int64, second ledger.Ledger) map[string][]life {
		m := map[string][]life{}
		for _, k := range keys {
			if k != victim {
				st := fold(byKey[k]).State()
				m[k] = []life{{state: &st, first: &st}}
			}
		}
		a, b := first.State(), second.State()
		m[victim] = []life{{state: &a, first: &a, swept: true, evictedAt: evictedAt}, {state: &b, first: &b, firstStreamTime: recreatedAt}}
		return m
	}
	records := tr.Records
	check := func(ls map[string][]life) Verdict {
		var v Verdict
		idOf, keyOf := map[string]string{}, map[string]string{}
		for _, k := range keys {
			idOf[k], keyOf[k] = k, k
		}
		exLives, split := splitByLife(&v, records, ex, ls, idOf)
		for id := range ex.Commands {
			if _, ok := exLives.Commands[id]; !ok {
				t.Errorf("command %s of the whole order's fold is not expected of its lives (the late document moves no points)", id)
			}
		}
		checkState(&v, ex, ls, split, keyOf)
		return v
	}

	// evicted at a stream time past both the order's expiry and the late event by the lateness
	evictedAt := max(expiry.UnixNano(), evs[late].OccurredAt.UnixNano()) + lateness + int64(time.Hour)
	if v := check(lives(evictedAt, evictedAt, second)); !v.OK() {
		t.Errorf("a legitimate second life: %+v", v)
	}
	// the old comparison (the last life against the whole order) is what failed the chaos run
	var v Verdict
	checkState(&v, ex, lives(evictedAt, evictedAt, second), nil, map[string]string{victim: victim})
	if v.StateMismatch != 1 {
		t.Errorf("the second life alone against the whole order: %d mismatches, want 1", v.StateMismatch)
	}
	// the re-creating event within the lateness of the stream time it was committed at: reported
	within := evs[late].OccurredAt.UnixNano() + lateness/2
	if v := check(lives(within, within, second)); !strings.Contains(strings.Join(v.Problems, "\n"), "within the allowed lateness") {
		t.Errorf("a second life from an event within the lateness was not reported: %+v", v)
	}
	// evicted when the event was still within the lateness, but the stream time moved on before
	// it arrived: it was late then, and the new life is legitimate (whether the eviction was due
	// is readLives' check, on the changelog's headers, not splitByLife's)
	if v := check(lives(within, evictedAt, second)); !v.OK() {
		t.Errorf("a second life from an event late at its arrival: %+v", v)
	}
	// the late document delivered twice (a producer's duplicate): the first copy reached the order
	// before its eviction, the second re-created it — allowed, as many lives as copies sent
	withLate := fold(evs)
	sentOnce := lives(evictedAt, evictedAt, second)
	sentOnce[victim][0].state, sentOnce[victim][0].first = func() (*ledgerstate.State, *ledgerstate.State) { s := withLate.State(); return &s, &s }()
	if v := check(sentOnce); v.Duplicated == 0 {
		t.Errorf("an event sent once and applied in two lives was not reported: %+v", v)
	}
	for _, r := range tr.Records {
		if r.Event != nil && r.Event.EventID == evs[late].EventID {
			records = append(append([]generate.Record(nil), tr.Records...), r)
			break
		}
	}
	if v := check(sentOnce); v.Duplicated != 0 {
		t.Errorf("an event sent twice and applied in two lives was reported: %+v", v)
	}
	records = tr.Records
	// a stale resurrection: the new life carries the evicted one's events (a cache or store that
	// kept the evicted state) — a duplicate effect
	stale := fold(evs)
	if v := check(lives(evictedAt, evictedAt, stale)); v.Duplicated == 0 {
		t.Errorf("a second life holding the first one's events was not reported: %+v", v)
	}
}
