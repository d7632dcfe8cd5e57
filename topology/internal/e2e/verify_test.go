package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
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

	lives := func(evictedAt int64) map[string][]life {
		m := map[string][]life{}
		for _, k := range keys {
			if k != victim {
				st := fold(byKey[k]).State()
				m[k] = []life{{state: &st}}
			}
		}
		a, b := first.State(), second.State()
		m[victim] = []life{{state: &a, evictedAt: evictedAt}, {state: &b}}
		return m
	}
	check := func(evictedAt int64) Verdict {
		var v Verdict
		idOf, keyOf := map[string]string{}, map[string]string{}
		for _, k := range keys {
			idOf[k], keyOf[k] = k, k
		}
		ls := lives(evictedAt)
		exLives, split := splitByLife(&v, tr.Records, ex, ls, idOf)
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
	if v := check(evictedAt); !v.OK() {
		t.Errorf("a legitimate second life: %+v", v)
	}
	// the old comparison (the last life against the whole order) is what failed the chaos run
	var v Verdict
	ls := lives(evictedAt)
	checkState(&v, ex, ls, nil, map[string]string{victim: victim})
	if v.StateMismatch != 1 {
		t.Errorf("the second life alone against the whole order: %d mismatches, want 1", v.StateMismatch)
	}
	// the re-creating event within the lateness of the eviction: reported
	within := evs[late].OccurredAt.UnixNano() + lateness/2
	if v := check(within); len(v.Problems) == 0 || !strings.Contains(strings.Join(v.Problems, "\n"), "within the allowed lateness") {
		t.Errorf("a second life from an event within the lateness was not reported: %+v", v)
	}
}
