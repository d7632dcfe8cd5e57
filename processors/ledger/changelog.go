package ledger

import (
	"context"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
)

// EncodeState frames the ledger's state as a value of the changelog topic (ledgerstate.Encode:
// Confluent wire format, the current order_ledger schema). The key is the order id
// (Ledger.OrderID); eviction is a tombstone (nil value), written by the runtime.
func EncodeState(s *schemas.Serde, l Ledger) ([]byte, error) {
	return ledgerstate.Encode(s, &l.s)
}

// EncodeStateLayout is EncodeState in a given layout (ledgerstate.Layout: the first bounce of a
// rolling upgrade writes the layout the release before reads).
func EncodeStateLayout(s *schemas.Serde, l Ledger, layout ledgerstate.Layout) ([]byte, error) {
	return ledgerstate.EncodeLayout(s, &l.s, layout)
}

// DecodeState reads a changelog value into a Ledger (ledgerstate.Decode: any version of the
// schema; errors are *schemas.DecodeError or a version error for a state written by a newer
// ledger). A reader that only needs the state, not the ledger, calls ledgerstate.Decode.
func DecodeState(ctx context.Context, s *schemas.Serde, ref schemas.RecordRef, value []byte) (Ledger, error) {
	st, err := ledgerstate.Decode(ctx, s, ref, value)
	if err != nil {
		return Ledger{}, err
	}
	return Ledger{s: *st}, nil
}
