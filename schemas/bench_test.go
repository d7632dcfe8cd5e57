package schemas

import (
	"context"
	"testing"
)

// benchEvents are the events whose codec cost the pipeline pays most: the order (large, rare)
// and the typical per-order traffic (shipment, loyalty posting, invoice).
func benchEvents() []*Event {
	all := sampleEvents()
	return []*Event{all[0], all[2], all[8], all[12]}
}

func BenchmarkSerde(b *testing.B) {
	s := offlineSerde(b)
	ctx := context.Background()
	for _, e := range benchEvents() {
		ref := refFor(e)
		value, err := s.EncodeEvent(ref.Topic, e)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+string(e.EventType), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			for b.Loop() {
				if _, err := s.EncodeEvent(ref.Topic, e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/"+string(e.EventType), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(value)))
			for b.Loop() {
				if _, err := s.DecodeEvent(ctx, ref, value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
