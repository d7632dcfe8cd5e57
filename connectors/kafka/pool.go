package kafka

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DecompressPool is a consumer's kgo.PoolDecompressBytes and kgo.PoolRecords (the runner's
// and the ClickHouse sink's): the buffers fetched batches are decompressed into and the record
// slices they are decoded into, reused once every record of a batch has been recycled
// (Record.Recycle: the runner recycles a transaction's records after End, the sink a flush's
// records after their rows are inserted and their offsets committed). A record must not be
// read after it is recycled: its key, value and headers are slices of the pooled buffer.
// Buffers are kept in power-of-two size classes and a batch gets one of the
// class of its decompressed size, so a small batch does not pin a large buffer while its
// records wait in the client's buffer (MaxBufferedRecords).
//
// It is a free list, not a sync.Pool: a sync.Pool drops what it holds on every second GC, which
// at the runner's allocation rate is every few transactions, so nearly every fetched batch
// allocated and zeroed a fresh buffer (and the allocations paced the GC). What it keeps is
// bounded by MaxBytes; a slice put back beyond that is left to the GC. Safe for
// concurrent use (franz-go decompresses on its fetch goroutines).
type DecompressPool struct {
	// MaxBytes bounds the bytes the pool keeps between uses; zero means DefaultPooledBytes.
	MaxBytes int

	mu   sync.Mutex
	kept int                           // bytes held in bufs and recs
	bufs [numPoolClasses][][]byte      // class c: buffers of capacity ≥ 1<<(minPooledShift+c)
	recs [numRecClasses][][]kgo.Record // class c: record slices of capacity ≥ 1<<(minRecShift+c)
}

const (
	minPooledShift = 12 // 4 KiB: smaller batches get a buffer of this class
	// numPoolClasses: 4 KiB … 8 MiB. A larger batch gets a buffer of its own that the pool
	// drops (franz-go's batches on these topics are far smaller).
	numPoolClasses = 12
	minRecShift    = 4  // 16 records
	numRecClasses  = 11 // 16 … 16,384 records
	// DefaultPooledBytes bounds what the pool keeps between uses: about what one runner has in
	// flight at its defaults (MaxBufferedRecords buffered plus a transaction's records, in
	// buffers rounded up to their class), so a steady stream is served from the pool while a
	// burst's excess goes back to the GC.
	DefaultPooledBytes = 64 << 20
)

var recordSize = int(unsafe.Sizeof(kgo.Record{}))

// poolClass is the smallest class whose buffers hold n bytes; numPoolClasses if none does.
func poolClass(n int) int {
	if n <= 1<<minPooledShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPooledShift
}

// decompressedSize is the size compressed will decompress to: exact for a snappy block (its
// length prefix; Java clients' xerial-framed snappy and the other codecs are estimated).
func decompressedSize(compressed []byte, codec kgo.CompressionCodecType) int {
	if codec == kgo.CodecSnappy && !bytes.HasPrefix(compressed, xerialMagic) {
		if n, k := binary.Uvarint(compressed); k > 0 && n <= 1<<30 {
			return int(n)
		}
	}
	return 4 * len(compressed)
}

var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func (d *DecompressPool) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	n := decompressedSize(compressed, codec)
	c := poolClass(n)
	if c >= numPoolClasses {
		return make([]byte, 0, n)
	}
	d.mu.Lock()
	if k := len(d.bufs[c]); k > 0 {
		b := d.bufs[c][k-1]
		d.bufs[c][k-1] = nil
		d.bufs[c] = d.bufs[c][:k-1]
		d.kept -= cap(b)
		d.mu.Unlock()
		return b[:0]
	}
	d.mu.Unlock()
	return make([]byte, 0, 1<<(minPooledShift+c))
}

// PutDecompressBytes keeps b (zeroed by franz-go) unless the pool is full.
func (d *DecompressPool) PutDecompressBytes(b []byte) {
	// The class whose every buffer this one can stand in for: capacity ≥ the class size.
	c := bits.Len(uint(cap(b))) - 1 - minPooledShift
	if c < 0 || c >= numPoolClasses {
		return
	}
	d.mu.Lock()
	if d.kept+cap(b) <= d.maxBytes() {
		d.bufs[c] = append(d.bufs[c], b[:0])
		d.kept += cap(b)
	}
	d.mu.Unlock()
}

// GetRecords returns a zeroed slice of capacity ≥ n for a batch of n records.
func (d *DecompressPool) GetRecords(n int) []kgo.Record {
	c := 0
	if n > 1<<minRecShift {
		c = bits.Len(uint(n-1)) - minRecShift
	}
	if c >= numRecClasses {
		return make([]kgo.Record, 0, n)
	}
	d.mu.Lock()
	if k := len(d.recs[c]); k > 0 {
		rs := d.recs[c][k-1]
		d.recs[c][k-1] = nil
		d.recs[c] = d.recs[c][:k-1]
		d.kept -= cap(rs) * recordSize
		d.mu.Unlock()
		return rs[:0]
	}
	d.mu.Unlock()
	return make([]kgo.Record, 0, 1<<(minRecShift+c))
}

// PutRecords keeps rs unless the pool is full. Every record is cleared: franz-go zeroes the
// records it hands out when they are recycled, but not those of a batch it did not keep (below
// the fetch offset), which would pin their buffers and hand stale fields to the next batch.
func (d *DecompressPool) PutRecords(rs []kgo.Record) {
	c := bits.Len(uint(cap(rs))) - 1 - minRecShift
	if c < 0 || c >= numRecClasses {
		return
	}
	rs = rs[:cap(rs)]
	clear(rs)
	d.mu.Lock()
	if size := cap(rs) * recordSize; d.kept+size <= d.maxBytes() {
		d.recs[c] = append(d.recs[c], rs[:0])
		d.kept += size
	}
	d.mu.Unlock()
}

func (d *DecompressPool) maxBytes() int {
	if d.MaxBytes > 0 {
		return d.MaxBytes
	}
	return DefaultPooledBytes
}

// Recycle gives every record of rs back to its pool (Record.Recycle) and returns rs emptied,
// its capacity kept; the records must not be read after.
func Recycle(rs []*kgo.Record) []*kgo.Record {
	for i, r := range rs {
		r.Recycle()
		rs[i] = nil
	}
	return rs[:0]
}
