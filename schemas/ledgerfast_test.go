package schemas_test

import (
	"context"
	"testing"

	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
)

// The ledger's changelog state (schemas/ledgerstate.State against avro/order_ledger.avsc) takes
// the direct binary path too; it must agree with goavro like the events do.

func ledgerCodec(t testing.TB) *schemas.Codec[ledger.State] {
	t.Helper()
	c, err := schemas.NewCodec[ledger.State]("order_ledger")
	if err != nil {
		t.Fatal(err)
	}
	if !schemas.HasFastPath(c) {
		t.Fatal("order_ledger: no direct binary path")
	}
	return c
}

func TestLedgerStateFastPathAgreesWithGoavro(t *testing.T) {
	schemas.CheckFastAgreement(t, ledgerCodec(t), 3, 600)
}

// FuzzFastLedgerState: arbitrary bytes decode alike on both paths; random states (from the
// fuzzed seed) encode alike.
func FuzzFastLedgerState(f *testing.F) {
	c := ledgerCodec(f)
	s, err := schemas.NewSerde(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	l := ledger.New("O-1001")
	for _, e := range schemas.SampleEvents() {
		next, _, err := l.Apply(*e, ledger.DefaultPolicy())
		if err == nil {
			l = next
		}
		b, err := ledger.EncodeState(s, l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[schemas.HeaderSize:], uint64(len(b)))
	}
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		if err := schemas.FastDecodeAgrees(c, b); err != nil {
			t.Fatal(err)
		}
		var st ledger.State
		schemas.FillRandom(seed, float64(seed%4)/20, &st)
		if _, err := schemas.FastEncodeAgrees(c, &st); err != nil {
			t.Fatal(err)
		}
	})
}
