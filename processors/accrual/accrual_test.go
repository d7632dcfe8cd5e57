package accrual_test

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
)

func policy(t testing.TB) accrual.Policy {
	p, err := accrual.PolicyFrom(ledger.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rate(r accrual.Rate) *accrual.Rate { return &r }

// o1001 is DOMAIN B.2's worked example: L1 2 × 68.80 eligible, L2 3 × 25.80, L3 a gift card;
// GOLD (1.5), 1 point per EUR.
func o1001() accrual.Event {
	return accrual.Event{EventID: "E-OA", Kind: accrual.Accepted, OccurredAt: 1, Order: &accrual.OrderFacts{
		OrderID: "O-1001", MemberID: "M-77", Currency: "EUR", Tier: "GOLD",
		Lines: []accrual.OrderLine{
			{ID: "L1", Ordered: 2000, Eligible: 1376000},
			{ID: "L2", Ordered: 3000, Eligible: 774000},
			{ID: "L3", Ordered: 1000, Eligible: 0},
		}}}
}

func move(id string, k accrual.Kind, at int64, lines ...accrual.MoveLine) accrual.Event {
	return accrual.Event{EventID: id, Kind: k, OccurredAt: at, Move: &accrual.Move{EventID: id, Kind: k, OccurredAt: at, Lines: lines}}
}

func ml(id string, q accrual.Qty) accrual.MoveLine { return accrual.MoveLine{LineID: id, Qty: q} }

// run applies the events in order and returns the final state and every command.
func run(t testing.TB, p accrual.Policy, evs ...accrual.Event) (accrual.State, []accrual.Command) {
	t.Helper()
	var s accrual.State
	found := false
	var all []accrual.Command
	for _, e := range evs {
		n, cmds, changed, err := accrual.Apply("O-1001", s, found, e, p)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			s, found = n, true
		}
		all = append(all, cmds...)
	}
	return s, all
}

type pts struct {
	typ    schemas.EventType
	cause  string
	points int64
}

func summary(cs []accrual.Command) []pts {
	var out []pts
	for _, c := range cs {
		out = append(out, pts{c.Type, c.CausingEventID, c.Points})
	}
	return out
}

// TestWorkedExample is DOMAIN B.2 scenario A: S1 ships L1×1, L2×1, L3×1 → B 94.60, P 141; the
// rest → the full order's floor(215.00 × 1.5) = 322; returning everything reverses all 322.
func TestWorkedExample(t *testing.T) {
	p := policy(t)
	s, cmds := run(t, p, o1001(),
		move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000), ml("L3", 1000)),
		move("E-S2", accrual.Shipment, 3, ml("L1", 1000), ml("L2", 2000)),
		move("E-R1", accrual.Return, 4, ml("L1", 2000), ml("L2", 3000)))
	want := []pts{{schemas.TypeAccrualRequested, "E-S1", 141}, {schemas.TypeAccrualRequested, "E-S2", 181}, {schemas.TypeReversalRequested, "E-R1", 322}}
	if got := summary(cmds); !reflect.DeepEqual(got, want) {
		t.Fatalf("commands %v, want %v", got, want)
	}
	if s.Requested != 0 {
		t.Fatalf("requested after a full return = %d, want 0", s.Requested)
	}
	if cmds[0].RequestID != schemas.CommandRequestID("O-1001", "E-S1", schemas.TypeAccrualRequested) || cmds[0].EntitledPoints != 141 {
		t.Fatalf("first command %+v", cmds[0])
	}
}

// TestSplitShipmentsEarnWhatOneShipmentEarns: the floor is of the cumulative entitlement.
func TestSplitShipmentsEarnWhatOneShipmentEarns(t *testing.T) {
	p := policy(t)
	var split []accrual.Event
	split = append(split, o1001())
	for i, l := range []string{"L1", "L1", "L2", "L2", "L2", "L3"} {
		split = append(split, move("E-S"+string(rune('a'+i)), accrual.Shipment, int64(2+i), ml(l, 1000)))
	}
	s, _ := run(t, p, split...)
	one, _ := run(t, p, o1001(), move("E-S", accrual.Shipment, 2, ml("L1", 2000), ml("L2", 3000), ml("L3", 1000)))
	if s.Requested != 322 || one.Requested != 322 {
		t.Fatalf("split requested %d, one shipment %d, want 322 both", s.Requested, one.Requested)
	}
}

// TestHeldUntilTheOrder: a shipment before its OrderAccepted is held and applied, as itself,
// when the order arrives.
func TestHeldUntilTheOrder(t *testing.T) {
	p := policy(t)
	s, cmds := run(t, p, move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)))
	if len(cmds) != 0 || len(s.Held) != 1 || s.Order != nil {
		t.Fatalf("before the order: %d commands, %d held", len(cmds), len(s.Held))
	}
	_, cmds = run(t, p, move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)), o1001())
	if got := summary(cmds); !reflect.DeepEqual(got, []pts{{schemas.TypeAccrualRequested, "E-S1", 141}}) {
		t.Fatalf("commands %v", got)
	}
}

// TestDuplicateChangesNothing: an event id seen before is ignored, even with another payload.
func TestDuplicateChangesNothing(t *testing.T) {
	p := policy(t)
	s, _ := run(t, p, o1001(), move("E-S1", accrual.Shipment, 2, ml("L1", 1000)))
	n, cmds, changed, err := accrual.Apply("O-1001", s, true, move("E-S1", accrual.Shipment, 2, ml("L1", 2000)), p)
	if err != nil || changed || len(cmds) != 0 || !reflect.DeepEqual(n, s) {
		t.Fatalf("duplicate: changed=%v cmds=%v err=%v", changed, cmds, err)
	}
	if _, _, _, err := accrual.Apply("O-1001", s, true, accrual.Event{EventID: "E-OA2", Kind: accrual.Accepted, Order: o1001().Order}, p); err == nil {
		t.Fatal("a second OrderAccepted was accepted")
	}
}

// TestReturnWaitsForFulfilment: a return before the order is fulfilled waits, and is applied
// (its own reversal) by the event that fulfils it — a cancellation here.
func TestReturnWaitsForFulfilment(t *testing.T) {
	p := policy(t)
	s, cmds := run(t, p, o1001(),
		move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)),
		move("E-R1", accrual.Return, 3, ml("L1", 1000)))
	if len(s.Waiting) != 1 || len(cmds) != 1 {
		t.Fatalf("waiting %d, commands %v", len(s.Waiting), summary(cmds))
	}
	_, cmds = run(t, p, o1001(),
		move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)),
		move("E-R1", accrual.Return, 3, ml("L1", 1000)),
		move("E-C1", accrual.Cancellation, 4, ml("L1", 1000), ml("L2", 2000), ml("L3", 1000)))
	// after S1: floor(94.60 × 1.5) = 141; after the return of L1×1: floor(25.80 × 1.5) = 38
	want := []pts{{schemas.TypeAccrualRequested, "E-S1", 141}, {schemas.TypeReversalRequested, "E-R1", 103}}
	if got := summary(cmds); !reflect.DeepEqual(got, want) {
		t.Fatalf("commands %v, want %v", got, want)
	}
}

// TestCommandsIndependentOfInterleaving: any merge of the order's per-topic sequences (orders,
// shipments, returns, each in its log order) gives the same commands — what makes the two
// engines' outputs comparable.
func TestCommandsIndependentOfInterleaving(t *testing.T) {
	p := policy(t)
	orders := []accrual.Event{o1001(), move("E-C1", accrual.Cancellation, 5, ml("L3", 1000))}
	ships := []accrual.Event{move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)), move("E-S2", accrual.Shipment, 3, ml("L2", 1000)),
		move("E-S3", accrual.Shipment, 6, ml("L1", 1000), ml("L2", 1000))}
	returns := []accrual.Event{move("E-R1", accrual.Return, 4, ml("L2", 1000)), move("E-R2", accrual.Return, 7, ml("L1", 1000), ml("L2", 1000))}
	_, ref := run(t, p, append(append(append([]accrual.Event{}, orders...), ships...), returns...)...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		seqs := [][]accrual.Event{orders, ships, returns}
		var merged []accrual.Event
		for len(seqs) > 0 {
			i := rng.IntN(len(seqs))
			merged = append(merged, seqs[i][0])
			if seqs[i] = seqs[i][1:]; len(seqs[i]) == 0 {
				seqs = append(seqs[:i], seqs[i+1:]...)
			}
		}
		if _, got := run(t, p, merged...); !reflect.DeepEqual(got, ref) {
			t.Fatalf("interleaving %v:\n got %v\nwant %v", ids(merged), summary(got), summary(ref))
		}
	}
}

func ids(evs []accrual.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// TestCoreEarnsWhatTheLedgerEarns: on generated traffic, every fulfilled member order ends with
// the ledger's entitlement P requested (the core and the ledger share the earn rule, units and
// rounding; the core leaves out refunds, reservations, ERP and corrections).
func TestCoreEarnsWhatTheLedgerEarns(t *testing.T) {
	tr, err := generate.Generate(generate.Options{Seed: 7, Orders: 400})
	if err != nil {
		t.Fatal(err)
	}
	p, lp, serde := policy(t), ledger.DefaultPolicy(), offlineSerde(t)
	core := map[string]accrual.State{}
	led := map[string]ledger.Ledger{}
	compared := 0
	for _, r := range tr.Records {
		if r.Event == nil {
			continue
		}
		e := decoded(t, serde, r)
		s, found := core[r.Key]
		n, _, changed, err := accrual.Apply(r.Key, s, found, e, p)
		if err != nil {
			t.Fatalf("%s: %v", r.Event.EventID, err)
		}
		if changed {
			core[r.Key] = n
		}
		l, ok := led[r.Key]
		if !ok {
			l = ledger.New(r.Key)
		}
		if l, _, err = l.Apply(*r.Event, lp); err == nil {
			led[r.Key] = l
		}
	}
	for k, s := range core {
		if s.Order == nil || s.Order.MemberID == "" || len(s.Waiting) > 0 {
			continue
		}
		compared++
		if want := led[k].Points().Entitled; s.Requested != want {
			t.Errorf("order %s: core requested %d, ledger entitled %d", k, s.Requested, want)
		}
	}
	if compared < 100 {
		t.Fatalf("only %d orders compared", compared)
	}
	t.Logf("%d orders: the core requested the ledger's entitlement", compared)
}

// TestStateCodecIsAvro: EncodeState is the Avro binary of StateSchema (goavro reads it back
// field for field) and DecodeState inverts it; the command encoding likewise.
func TestStateCodecIsAvro(t *testing.T) {
	p := policy(t)
	s, cmds := run(t, p, move("E-X", accrual.Return, 1, ml("L1", 1000)), o1001(),
		move("E-S1", accrual.Shipment, 2, ml("L1", 1000), ml("L2", 1000)), move("E-R1", accrual.Return, 3, ml("L1", 1000)))
	b := accrual.EncodeState(s)
	got, err := accrual.DecodeState(b)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, s)
	}
	codec, err := goavro.NewCodec(accrual.StateSchema)
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := codec.NativeFromBinary(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("goavro: %v (%d bytes left)", err, len(rest))
	}
	again, err := codec.BinaryFromNative(nil, native)
	if err != nil || string(again) != string(b) {
		t.Fatalf("goavro re-encodes differently: %v", err)
	}
	cc, err := goavro.NewCodec(accrual.CommandSchema)
	if err != nil {
		t.Fatal(err)
	}
	cb := accrual.AppendCommand(nil, &cmds[0])
	if _, rest, err := cc.NativeFromBinary(cb[5:]); err != nil || len(rest) != 0 {
		t.Fatalf("goavro command: %v", err)
	}
	if c, err := accrual.DecodeCommand(cb); err != nil || c != cmds[0] {
		t.Fatalf("command round trip: %v %+v", err, c)
	}
}
