package topology

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// decompressPool is the runner's kgo.PoolDecompressBytes: the buffers fetched batches are
// decompressed into, reused once every record of a batch has been recycled (Runner.transact
// recycles a transaction's records after End). Buffers are kept in power-of-two size classes
// and a batch gets one of the class of its decompressed size, so a small batch does not pin a
// large buffer while its records wait in the client's buffer (MaxBufferedRecords). Safe for
// concurrent use (franz-go decompresses on its fetch goroutines).
type decompressPool struct {
	classes [numPoolClasses]sync.Pool // class c holds buffers of capacity ≥ minPooled << c
}

const (
	minPooledShift = 12 // 4 KiB: smaller batches get a buffer of this class
	// numPoolClasses: 4 KiB … 8 MiB. A larger batch gets a buffer of its own that the pool
	// drops (franz-go's batches on these topics are far smaller).
	numPoolClasses = 12
)

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

func (d *decompressPool) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	n := decompressedSize(compressed, codec)
	c := poolClass(n)
	if c >= numPoolClasses {
		return make([]byte, 0, n)
	}
	if b, ok := d.classes[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<(minPooledShift+c))
}

func (d *decompressPool) PutDecompressBytes(b []byte) {
	// The class whose every buffer this one can stand in for: capacity ≥ the class size.
	c := bits.Len(uint(cap(b))) - 1 - minPooledShift
	if c < 0 || c >= numPoolClasses {
		return
	}
	b = b[:0]
	d.classes[c].Put(&b)
}
