package topology

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDecompressPoolSizes: a batch gets a buffer of the class of its decompressed size (exact for
// snappy blocks), never a smaller one, and a buffer put back serves only batches it can hold.
func TestDecompressPoolSizes(t *testing.T) {
	snappyOf := func(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }
	var p decompressPool
	for _, n := range []int{1, 4096, 4097, 60000, 1 << 20, 8<<20 - 1} {
		b := p.GetDecompressBytes(snappyOf(n), kgo.CodecSnappy)
		if len(b) != 0 || cap(b) < n || cap(b) > max(2*n, 1<<minPooledShift) {
			t.Fatalf("snappy of %d bytes: buffer len %d cap %d", n, len(b), cap(b))
		}
		p.PutDecompressBytes(b)
		if again := p.GetDecompressBytes(snappyOf(n), kgo.CodecSnappy); cap(again) < n {
			t.Fatalf("snappy of %d bytes: pooled buffer of cap %d", n, cap(again))
		}
	}
	// A grown buffer franz-go puts back (any capacity) is filed under what it can hold.
	p.PutDecompressBytes(make([]byte, 5000, 12000))
	for range 3 {
		if b := p.GetDecompressBytes(snappyOf(8192), kgo.CodecSnappy); cap(b) < 8192 {
			t.Fatalf("cap %d for 8192 bytes", cap(b))
		}
	}
	// Beyond the largest class: a buffer of its own, not pooled.
	if b := p.GetDecompressBytes(snappyOf(9<<20), kgo.CodecSnappy); cap(b) < 9<<20 {
		t.Fatalf("cap %d for 9 MiB", cap(b))
	}
	// Other codecs and xerial framing: an estimate.
	if b := p.GetDecompressBytes(make([]byte, 1000), kgo.CodecLz4); cap(b) < 4000 {
		t.Fatalf("lz4 estimate: cap %d", cap(b))
	}
	if b := p.GetDecompressBytes(append(xerialMagic, make([]byte, 992)...), kgo.CodecSnappy); cap(b) < 4000 {
		t.Fatalf("xerial estimate: cap %d", cap(b))
	}
}
