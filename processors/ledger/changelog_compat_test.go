package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
)

// A changelog written before this release (order_ledger v1, under the offline id of that time)
// restores after the upgrade: the offline Serde knows every released version and its legacy id
// and resolves it into the current State, the added fields at their defaults.
func TestStateWrittenByReleasedVersionDecodes(t *testing.T) {
	serde, err := schemas.NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	l, _ := run(t, p, o1001(), shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}))
	cur, err := EncodeState(serde, l)
	if err != nil {
		t.Fatal(err)
	}
	curText, _ := schemas.SchemaText("order_ledger")
	released, err := schemas.ReleasedSchemas("order_ledger")
	if err != nil || len(released) == 0 {
		t.Fatalf("no released order_ledger: %v", err)
	}
	v1 := released[0].Text
	curCodec, err := goavro.NewCodec(curText)
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := curCodec.NativeFromBinary(cur[5:])
	if err != nil {
		t.Fatal(err)
	}
	// What v1 wrote: the same state without the fields added since (goavro ignores extra map keys
	// only at the top level, so the nested ones are removed by hand).
	m := native.(map[string]any)
	delete(m, "moves")
	if order, ok := m["order"].(map[string]any); ok {
		delete(order, "confirm_trigger")
	}
	if cmds, ok := m["commands"].([]any); ok {
		for _, c := range cmds {
			delete(c.(map[string]any), "attributed_to")
		}
	}
	v1Codec, err := goavro.NewCodec(v1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := v1Codec.BinaryFromNative(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, idOf := range []func(string) (int, error){schemas.LegacyOfflineSchemaID, schemas.OfflineSchemaID} {
		id, err := idOf(v1)
		if err != nil {
			t.Fatal(err)
		}
		value := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
		got, err := DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, value)
		if err != nil {
			t.Fatalf("v1 state under id %d: %v", id, err)
		}
		want := l.State()
		want.Moves = nil
		want.OrphanSince = time.Unix(0, 0).UTC() // the schema's default, read as no arrival
		want.Order.ConfirmTrigger = ""
		for i := range want.Commands {
			want.Commands[i].AttributedTo = ""
		}
		gs := got.State()
		if len(gs.Moves) == 0 {
			gs.Moves = nil
		}
		if !equalStates(gs, want) {
			t.Fatalf("v1 state decoded as\n%+v\nwant\n%+v", gs, want)
		}
	}
}

// Layout v2 (state.changelog_layout=v2, the first bounce of a rolling upgrade) is what the
// release before v3 reads: released v2's bytes, complete, under the offline id that release
// computes for its own order_ledger (2080235706, TestOfflineSchemaIDsMatchFastavro at stop 30).
// This release reads them back as the same state with orphan_since at its default.
func TestStateLayoutV2IsWhatTheReleaseBeforeReads(t *testing.T) {
	serde, err := schemas.NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	accepted, _ := run(t, p, o1001(), shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}))
	orphan, _ := run(t, p, shipment("e-s9", "O-1009", "S9", day(1), qty{"L1", "1"}))
	orphan = orphan.Arrived(day(20))
	if orphan.State().OrphanSince.IsZero() {
		t.Fatal("the orphan has no arrival to drop")
	}
	released, err := schemas.ReleasedSchemas("order_ledger")
	if err != nil || len(released) < 2 || released[1].Version != 2 {
		t.Fatalf("order_ledger v2 not released: %v", err)
	}
	v2, err := goavro.NewCodec(released[1].Text)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Ledger{accepted, orphan} {
		b, err := EncodeStateLayout(serde, l, ledgerstate.LayoutV2)
		if err != nil {
			t.Fatal(err)
		}
		if id := binary.BigEndian.Uint32(b[1:5]); b[0] != 0 || id != 2080235706 {
			t.Fatalf("%s: header % x, want magic 0 and v2's offline id 2080235706", l.OrderID(), b[:5])
		}
		if _, rest, err := v2.NativeFromBinary(b[5:]); err != nil || len(rest) != 0 {
			t.Fatalf("%s: v2 reads it with %d bytes left: %v", l.OrderID(), len(rest), err)
		}
		back, err := DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, b)
		if err != nil {
			t.Fatal(err)
		}
		want := l.State()
		want.OrphanSince = time.Unix(0, 0).UTC()
		if !equalStates(back.State(), want) {
			t.Fatalf("%s: layout v2 read back as\n%+v\nwant\n%+v", l.OrderID(), back.State(), want)
		}
		cur, err := EncodeStateLayout(serde, l, ledgerstate.LayoutCurrent)
		if err != nil {
			t.Fatal(err)
		}
		if id := binary.BigEndian.Uint32(cur[1:5]); id == 2080235706 {
			t.Fatalf("%s: the current layout is written under v2's id", l.OrderID())
		}
		// a v2 value is read by the direct path (ledgerstate.asCurrent), not by goavro's
		// resolution (≈ 1,850 allocations per state): about what the current layout costs
		decode := func(b []byte) float64 {
			return testing.AllocsPerRun(50, func() {
				if _, err := DecodeState(context.Background(), serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, b); err != nil {
					t.Fatal(err)
				}
			})
		}
		if a2, a3 := decode(b), decode(cur); a2 > a3+2 {
			t.Fatalf("%s: a v2 value decodes with %.0f allocations, the current layout with %.0f: not the direct path", l.OrderID(), a2, a3)
		}
	}
	// EncodeLayout's v2 is the current encoding without its last byte: orphan_since must be the
	// current schema's last field, and the schema without it must be v2 (same canonical form)
	curText, err := schemas.SchemaText("order_ledger")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(curText), &doc); err != nil {
		t.Fatal(err)
	}
	fields := doc["fields"].([]any)
	if last := fields[len(fields)-1].(map[string]any)["name"]; last != "orphan_since" {
		t.Fatalf("the current schema's last field is %v, not orphan_since: EncodeLayout's v2 would be wrong", last)
	}
	doc["fields"] = fields[:len(fields)-1]
	without, _ := json.Marshal(doc)
	if id, err := schemas.OfflineSchemaID(string(without)); err != nil || id != 2080235706 {
		t.Fatalf("the current schema without orphan_since has id %d (%v), v2's is 2080235706", id, err)
	}
}
