package topology

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// decompressPool is the runner's kgo.PoolDecompressBytes: the buffers fetched batches are
// decompressed into, reused once every record of a batch has been recycled (Runner.transact
// recycles a transaction's records after End). A buffer that a batch outgrew is replaced by
// the grown one franz-go puts back. Safe for concurrent use (franz-go decompresses on its fetch
// goroutines).
type decompressPool struct{ p sync.Pool }

// maxPooledBuffer: larger buffers (a fetch's one huge batch) are left to the GC rather than
// held by the pool; 8 MiB is several times franz-go's batches on these topics.
const maxPooledBuffer = 8 << 20

func (d *decompressPool) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	if b, ok := d.p.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	// A first guess; franz-go grows it when the batch is larger and puts the grown one back.
	return make([]byte, 0, max(64<<10, 4*len(compressed)))
}

func (d *decompressPool) PutDecompressBytes(b []byte) {
	if cap(b) > maxPooledBuffer {
		return
	}
	b = b[:0]
	d.p.Put(&b)
}
