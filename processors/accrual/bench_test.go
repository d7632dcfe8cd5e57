package accrual_test

import (
	"testing"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
)

// BenchmarkApply folds generated traffic (decoded and reduced beforehand) through the core:
// the rules alone, without Kafka, Avro or the runtime.
func BenchmarkApply(b *testing.B) {
	tr, err := generate.Generate(generate.Options{Seed: 3, Orders: 2000})
	if err != nil {
		b.Fatal(err)
	}
	type in struct {
		key string
		e   accrual.Event
	}
	var evs []in
	serde := offlineSerde(b)
	for _, r := range tr.Records {
		if r.Event == nil {
			continue
		}
		e := decoded(b, serde, r)
		evs = append(evs, in{r.Key, e})
	}
	p := policy(b)
	b.ReportAllocs()
	b.ResetTimer()
	states := map[string]accrual.State{}
	for i := 0; i < b.N; i++ {
		x := evs[i%len(evs)]
		if i%len(evs) == 0 {
			clear(states)
		}
		s, found := states[x.key]
		n, _, changed, err := accrual.Apply(x.key, s, found, x.e, p)
		if err != nil {
			b.Fatal(err)
		}
		if changed {
			states[x.key] = n
		}
	}
}
