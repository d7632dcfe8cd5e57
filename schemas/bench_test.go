package schemas

import (
	"context"
	"testing"
)

func BenchmarkSerde(b *testing.B) {
	s := offlineSerde(b)
	ctx := context.Background()
	for _, e := range []*Event{sampleOrderAccepted(), sampleEvents()[2]} {
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
