package ledger

import (
	"context"
	"fmt"

	"github.com/retailflow/retailflow/schemas"
)

// EncodeState frames the ledger's state as a value of the changelog topic: Confluent wire
// format with the id of the current order_ledger schema (schemas/avro/order_ledger.avsc) in s.
// The key is the order id (Ledger.OrderID); eviction is a tombstone (nil value), written by the
// runtime, not by EncodeState.
func EncodeState(s *schemas.Serde, l Ledger) ([]byte, error) {
	st := l.s
	st.StateVersion = StateVersion
	b, err := schemas.Encode(s, schemas.TopicChangelog, &st)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode state of order %q: %w", l.s.OrderID, err)
	}
	return b, nil
}

// DecodeState reads a changelog value written by EncodeState (by this or another version of
// the schema: the Serde resolves the writer schema into State). Errors are *schemas.DecodeError
// (which says whether a retry may help), or a version error for a state written by a newer
// ledger than this one. A tombstone (nil value) is not a state: the runtime drops the order.
func DecodeState(ctx context.Context, s *schemas.Serde, ref schemas.RecordRef, value []byte) (Ledger, error) {
	st, err := schemas.Decode[State](ctx, s, ref, value)
	if err != nil {
		return Ledger{}, err
	}
	if st.StateVersion > StateVersion {
		return Ledger{}, fmt.Errorf("ledger: %s: order %q state version %d is newer than this ledger's %d", ref, st.OrderID, st.StateVersion, StateVersion)
	}
	return Ledger{s: *st}, nil
}
