package ledgerstate

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// Layout is the order_ledger schema version a changelog value is written in. Readers of any
// version read every released one (schemas.Serde); a release reads only the versions it knows.
// So a release that adds a field first ships able to write the layout before it, for the first
// bounce of a rolling upgrade — the pattern of Kafka Streams' upgrade.from:
//
//  1. roll every instance to the new release with state.changelog_layout=v2: each reads v2 and
//     v3 and writes v2, which the instances of the release before, still running beside it,
//     read;
//  2. once none of those runs, roll again with the default (v3).
//
// With offline schema ids (no registry) an instance of the release before cannot read a v3
// value at all: its id is unknown to it, and the record that met it would be dead-lettered.
// With a registry it fetches v3 and resolves it, dropping orphan_since, so one bounce is
// enough there (the config accepts v2 only without a registry).
type Layout int

const (
	// LayoutCurrent is the embedded order_ledger (v3: orphan_since).
	LayoutCurrent Layout = 0
	// LayoutV2 is released order_ledger v2: the current fields but orphan_since, which is its
	// last field, so a v2 value is the v3 value without its last byte (orphan_since written as
	// 0 µs, the one byte 0x00) under v2's offline id. An orphan written in it expires on its
	// clock alone, as before v3.
	LayoutV2 Layout = 2
)

// ParseLayout reads state.changelog_layout: "" or "v3" (the current), or "v2".
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "", "v3":
		return LayoutCurrent, nil
	case "v2":
		return LayoutV2, nil
	}
	return 0, fmt.Errorf("%q is not v3 (the default) or v2 (the first bounce of an upgrade from a release that reads only order_ledger v2)", s)
}

var v2ID = sync.OnceValues(func() (int, error) {
	rs, err := schemas.ReleasedSchemas("order_ledger")
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		if r.Version == 2 {
			return schemas.OfflineSchemaID(r.Text)
		}
	}
	return 0, fmt.Errorf("order_ledger v2 is not released")
})

// asCurrent turns a value written in layout v2 (under v2's offline id, by this release's
// LayoutV2 or by the release before) into the same state in the current layout: v2's bytes,
// then orphan_since's default (0x00), under the current id. Decoded so, it takes the direct
// path (schemas' fast planner) instead of goavro's resolution of v2 into the current schema,
// which was 17× slower per state — every state of a changelog written before the upgrade, and
// every one during its first bounce. ok is false for any other value.
func asCurrent(s *schemas.Serde, value []byte) ([]byte, bool) {
	if len(value) <= schemas.HeaderSize || value[0] != 0 {
		return nil, false
	}
	id, err := v2ID()
	if err != nil || binary.BigEndian.Uint32(value[1:schemas.HeaderSize]) != uint32(id) {
		return nil, false
	}
	cur, err := s.SchemaID(schemas.TopicChangelog)
	if err != nil {
		return nil, false
	}
	out := make([]byte, len(value)+1)
	copy(out, value)
	binary.BigEndian.PutUint32(out[1:schemas.HeaderSize], uint32(cur))
	out[len(value)] = 0
	return out, true
}

// EncodeLayout is Encode in layout l. LayoutV2 is for offline schema ids only: the value
// carries v2's offline id.
func EncodeLayout(s *schemas.Serde, st *State, l Layout) ([]byte, error) {
	if l == LayoutCurrent {
		return Encode(s, st)
	}
	c := *st
	c.OrphanSince = time.Unix(0, 0).UTC()
	b, err := Encode(s, &c)
	if err != nil {
		return nil, err
	}
	id, err := v2ID()
	if err != nil {
		return nil, fmt.Errorf("ledger state: layout v2: %w", err)
	}
	if len(b) <= schemas.HeaderSize || b[len(b)-1] != 0 {
		return nil, fmt.Errorf("ledger state: layout v2: order %q: the encoding does not end with orphan_since's 0x00", st.OrderID)
	}
	b = b[:len(b)-1]
	binary.BigEndian.PutUint32(b[1:schemas.HeaderSize], uint32(id))
	return b, nil
}
