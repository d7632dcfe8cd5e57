package clickhouse

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// TestSinkKeepsAnEvictedOrdersExceptions: a tombstone of the runtime's time-driven eviction
// (topology/sweep.go) carries the order's open exceptions (an orphan's HELD_WITHOUT_ORDER); its
// order_state row is deleted = 1 — it replaces the order's last row — and keeps them in
// open_exceptions, or the eviction would hide them. A plain tombstone keeps none.
func TestSinkKeepsAnEvictedOrdersExceptions(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 1)
	s, err := NewSink(e.sinkOptions())
	if err != nil {
		t.Fatal(err)
	}
	changelog := e.topics[schemas.TopicChangelog]
	for _, tc := range []struct {
		name string
		hs   []kgo.RecordHeader
		want []string
	}{
		{"evicted orphan", []kgo.RecordHeader{{Key: headers.Evicted, Value: []byte("orphan")},
			{Key: headers.OpenExceptions, Value: []byte("HELD_WITHOUT_ORDER:ev-1 HELD_WITHOUT_ORDER:ev-2")}},
			[]string{"HELD_WITHOUT_ORDER:ev-1", "HELD_WITHOUT_ORDER:ev-2"}},
		{"plain tombstone", nil, []string{}},
	} {
		rows, err := s.mapRecord(ctx, &kgo.Record{Topic: changelog, Key: []byte("O-ORPHAN"), Headers: tc.hs, Offset: 7})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 || rows[0].Table != "order_state" {
			t.Fatalf("%s: rows %v, want an order_state row first", tc.name, rows)
		}
		got, _ := rows[0].Get("open_exceptions").([]string)
		if rows[0].Get("deleted") != uint8(1) || !slices.Equal(got, tc.want) {
			t.Errorf("%s: deleted=%v open_exceptions=%q, want deleted=1 and %q", tc.name, rows[0].Get("deleted"), got, tc.want)
		}
	}
}
