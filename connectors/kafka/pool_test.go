package kafka

import (
	"encoding/binary"
	"runtime"
	"testing"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDecompressPoolSizes: a batch gets a buffer of the class of its decompressed size (exact for
// snappy blocks), never a smaller one, and a buffer put back serves only batches it can hold.
func TestDecompressPoolSizes(t *testing.T) {
	snappyOf := func(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }
	var p DecompressPool
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

// TestDecompressPoolSurvivesGC: a buffer put back is handed out again after garbage
// collections. A sync.Pool drops its contents on every second GC; at the runner's allocation
// rate that is every few transactions, so nearly every fetched batch allocated (and zeroed) a
// fresh buffer (bench/RESULTS.md, issue 17, third pass: 40 % of the core's allocated bytes).
func TestDecompressPoolSurvivesGC(t *testing.T) {
	snappyOf := func(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }
	var p DecompressPool
	b := p.GetDecompressBytes(snappyOf(60000), kgo.CodecSnappy)
	p.PutDecompressBytes(b)
	runtime.GC()
	runtime.GC()
	if again := p.GetDecompressBytes(snappyOf(60000), kgo.CodecSnappy); unsafe.SliceData(again) != unsafe.SliceData(b) {
		t.Fatal("the buffer put back before two GCs was not reused")
	}
	rs := p.GetRecords(700)
	if cap(rs) < 700 {
		t.Fatalf("GetRecords(700): cap %d", cap(rs))
	}
	p.PutRecords(rs)
	runtime.GC()
	runtime.GC()
	if again := p.GetRecords(600); unsafe.SliceData(again) != unsafe.SliceData(rs) {
		t.Fatal("the records slice put back before two GCs was not reused")
	}
}

// TestDecompressPoolBounded: what the pool keeps is bounded (DefaultPooledBytes); beyond it a
// buffer put back is dropped to the GC, so a burst does not pin its peak for the process's life.
func TestDecompressPoolBounded(t *testing.T) {
	var p DecompressPool
	n := 2*DefaultPooledBytes/(1<<20) + 4
	for range n {
		p.PutDecompressBytes(make([]byte, 0, 1<<20))
	}
	if p.kept > DefaultPooledBytes {
		t.Fatalf("pool keeps %d bytes, bound %d", p.kept, DefaultPooledBytes)
	}
	got := 0
	for range n {
		if b := p.GetDecompressBytes(binary.AppendUvarint(nil, 1<<20), kgo.CodecSnappy); cap(b) >= 1<<20 {
			got++
		}
	}
	if p.kept != 0 {
		t.Fatalf("pool keeps %d bytes after handing everything out", p.kept)
	}
	if got != n {
		t.Fatalf("%d of %d gets served", got, n)
	}
}
