package schemas

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// Test fixtures and direct-path checks for the external test package (the ledger state).
var (
	SampleEvents        = sampleEvents
	SampleOrderAccepted = sampleOrderAccepted
)

// HasFastPath reports whether c takes the direct binary path.
func HasFastPath[T any](c *Codec[T]) bool { return c.fast != nil }

// FastDecodeAgrees decodes b on the direct and the goavro path and reports a disagreement.
func FastDecodeAgrees[T any](c *Codec[T], b []byte) error { return fastDecodeAgrees(c, b) }

// FastEncodeAgrees encodes v on both paths and reports a disagreement.
func FastEncodeAgrees[T any](c *Codec[T], v *T) ([]byte, error) { return fastEncodeAgrees(c, v) }

// CheckFastAgreement runs n random values through both paths (see checkFastAgreement).
func CheckFastAgreement[T any](t *testing.T, c *Codec[T], seed uint64, n int) {
	t.Helper()
	checkFastAgreement(t, c, seed, n, nil)
}

// FillRandom fills *v with random contents (see valueGen).
func FillRandom[T any](seed uint64, wild float64, v *T) {
	g := &valueGen{r: rand.New(rand.NewPCG(seed, 13)), wild: wild}
	g.fill(reflect.ValueOf(v).Elem(), 0)
}
