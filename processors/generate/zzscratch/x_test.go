package zzscratch

import (
	"fmt"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
)

func TestLedgerVsOracle(t *testing.T) {
	for _, c := range [][2]float64{{0, 0}, {0, 0.1}, {0.3, 0}} {
		t.Run(fmt.Sprint(c), func(t *testing.T) { check(t, c[0], c[1]) })
	}
}

func check(t *testing.T, oo, late float64) {
	f := generate.Faults{}
	for _, n := range generate.AllFaults() {
		f.Set(n, 0.1)
	}
	tr, err := generate.Generate(generate.Options{Seed: 21, Orders: 3000, DuplicateRate: 0.1, OutOfOrderRate: oo, LateRate: late, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	x := tr.Expected(time.Now())
	p := ledger.DefaultPolicy()
	ls := map[string]ledger.Ledger{}
	got := map[string]int64{}
	for _, r := range tr.Records {
		if r.Malformed != "" {
			continue
		}
		l, ok := ls[r.Key]
		if !ok {
			l = ledger.New(r.Key)
		}
		nl, cmds, err := l.Apply(*r.Event, p)
		if err != nil {
			t.Logf("apply %s %s: %v", r.Key, r.Event.EventType, err)
			continue
		}
		ls[r.Key] = nl
		for _, c := range cmds {
			if _, dup := got[c.RequestID]; dup {
				t.Errorf("duplicate command %s", c.RequestID)
			}
			got[c.RequestID] = c.Points
			if w, ok := x.Commands[c.RequestID]; !ok || w.Points != c.Points {
				t.Logf("ledger %s %s %d @%s; oracle %+v", c.OrderID, c.CommandType, c.Points, c.SourceRefID, w.Points)
			}
		}
	}
	for id, c := range x.Commands {
		if _, ok := got[id]; !ok {
			t.Logf("oracle %s %s %d @%s not emitted by ledger", c.OrderID, c.Type, c.Points, c.SourceRefID)
		}
	}
	t.Logf("ledger %d commands, oracle %d", len(got), len(x.Commands))
	if t.Failed() || true { n := 0; for id, c := range x.Commands { if p, ok := got[id]; !ok || p != c.Points { n++ } }; t.Logf("MISMATCHES %d", n) }
	missing, extra := 0, 0
	for id := range x.Commands { if _, ok := got[id]; !ok { missing++ } }
	for id := range got { if _, ok := x.Commands[id]; !ok { extra++ } }
	t.Logf("SET: missing %d extra %d", missing, extra)
}

func TestDump(t *testing.T) {
	f := generate.Faults{}
	for _, n := range generate.AllFaults() {
		f.Set(n, 0.1)
	}
	tr, _ := generate.Generate(generate.Options{Seed: 21, Orders: 3000, DuplicateRate: 0.1, OutOfOrderRate: 0.3, LateRate: 0.1, Faults: f})
	for _, r := range tr.Records {
		if r.Key == "O-8GX2-002905" && r.Event != nil && (r.Event.OrderAccepted != nil || r.Event.ShipmentConfirmed != nil) {
			b, _ := schemas.EncodeJSON(r.Event)
			t.Log(string(b))
		}
	}
}

func TestOne(t *testing.T) {
	f := generate.Faults{}
	for _, n := range generate.AllFaults() {
		f.Set(n, 0.1)
	}
	tr, _ := generate.Generate(generate.Options{Seed: 21, Orders: 3000, DuplicateRate: 0.1, OutOfOrderRate: 0.3, LateRate: 0, Faults: f})
	l := ledger.New("O-8GX2-002089")
	for _, r := range tr.Records {
		if r.Key != "O-8GX2-002089" || r.Malformed != "" {
			continue
		}
		nl, cmds, err := l.Apply(*r.Event, ledger.DefaultPolicy())
		b, _ := schemas.EncodeJSON(r.Event); if r.Event.ShipmentConfirmed == nil && r.Event.ReturnReceived == nil { b = nil }; t.Logf("%s %s dup=%v err=%v %s", r.Event.EventType, r.Event.OccurredAt, r.Duplicate, err, b)
		for _, c := range cmds {
			t.Logf("   -> %s %d basis %s entitled %d", c.CommandType, c.Points, c.BasisAmount, c.EntitledPoints)
		}
		l = nl
	}
}
