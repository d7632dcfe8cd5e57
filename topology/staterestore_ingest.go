package topology

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// restoreSink is what restoreDisk writes one partition's changelog records into: batches
// (restoreWriter: a tail restore, a few records, each key looked up) or sorted sstables
// (ingestWriter: a full restore into an empty partition).
type restoreSink interface {
	// put applies the record at offset: key's value (nil: a tombstone), its expiry to index
	// (index) and the stream time it carries (hasST), as restoreIndex.times read them
	put(offset int64, key, value []byte, t recTimes) error
	flush() error
	close()
	state() (partMeta, int64) // the checkpoint so far, and the data records applied
}

func (w *restoreWriter) state() (partMeta, int64) { return w.meta, w.read }

// ingestWriter restores one empty (wiped) partition in full without the memtable: it keeps the
// last value of each key of a chunk of the changelog (compaction leaves a key's older records
// in the log until it runs; a chunk dedupes them), and when the chunk reaches the store's chunk
// bound (state.memtable_bytes: the restore's memory is bounded by configuration, like the
// memtables it bypasses) it writes the chunk as sorted sstables — the values, the expiry index,
// the checkpoint of the chunk's last record — and ingests them into Pebble in one atomic step
// (DB.Ingest: all or nothing, like a batch). A process killed mid-restore resumes after the
// last ingested chunk, as after the last batch. Compared with batches, no data is written to the
// WAL or the memtable: the sstables are the restore's only data write (the chunks of one
// partition overlap, so Pebble still compacts them later, in the background). It is not
// flush-free: the first chunk overlaps the wipe's deletions in the memtable and is ingested as a
// flushable, and the next forces that memtable's flush (TestIngestAfterWipeFlushes).
// Used by one goroutine.
type ingestWriter struct {
	d     *diskStore
	p     int32
	meta  partMeta
	ctx   context.Context
	chunk map[string][]byte // key → last value in the chunk (in the arena); nil: a tombstone
	exp   map[string]int64  // key → its expiry, for the index
	// bytes is what the chunk holds: every value read into the arena (a replaced value's bytes
	// stay there until the chunk is written, so they are not subtracted) and each key's map
	// entries; the chunk is written when it reaches the store's chunk bound
	bytes int
	arena ingestArena
	first bool // no chunk ingested yet: nothing in the partition to delete
	read  int64
	seq   int
	// the last record applied, hashed into the checkpoint at flush: the key as the chunk's map
	// holds it, the value as the arena does (nothing the writer keeps aliases a fetch buffer,
	// which would keep a whole decompressed batch alive)
	lastKey   string
	lastValue []byte
	hasLast   bool
}

// ingestArena holds a chunk's values: copies of the changelog values (a value kept by reference
// would keep its whole fetch response alive) in slabs that are reused by the next chunk.
type ingestArena struct {
	slabs [][]byte // in use; the last is being filled
	free  [][]byte
}

// ingestSlab is the arena's allocation unit; a larger value gets a slab of its own.
const ingestSlab = 256 << 10

// keep copies v into the arena (never nil: nil is a tombstone).
func (a *ingestArena) keep(v []byte) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	n := len(a.slabs)
	if n == 0 || cap(a.slabs[n-1])-len(a.slabs[n-1]) < len(v) {
		var slab []byte
		if len(v) <= ingestSlab && len(a.free) > 0 {
			slab = a.free[len(a.free)-1][:0]
			a.free = a.free[:len(a.free)-1]
		} else {
			slab = make([]byte, 0, max(ingestSlab, len(v)))
		}
		a.slabs = append(a.slabs, slab)
		n++
	}
	slab := a.slabs[n-1]
	start := len(slab)
	slab = append(slab, v...)
	a.slabs[n-1] = slab
	return slab[start:len(slab):len(slab)]
}

// reset makes the arena's slabs free for the next chunk (an oversized slab is dropped).
func (a *ingestArena) reset() {
	for _, s := range a.slabs {
		if cap(s) == ingestSlab {
			a.free = append(a.free, s[:0])
		}
	}
	clear(a.slabs)
	a.slabs = a.slabs[:0]
}

// ingestKeyOverhead is what a key costs besides its bytes: its entries in the chunk and expiry
// maps and the sort of its flush.
const ingestKeyOverhead = 64

func (d *diskStore) newIngestWriter(ctx context.Context, p int32, m partMeta) *ingestWriter {
	return &ingestWriter{d: d, p: p, meta: m, ctx: ctx, chunk: map[string][]byte{}, exp: map[string]int64{}, first: true}
}

func (w *ingestWriter) state() (partMeta, int64) { return w.meta, w.read }

func (w *ingestWriter) put(offset int64, key, value []byte, t recTimes) error {
	k := string(key) // a copy, kept by the map
	if _, ok := w.chunk[k]; !ok {
		w.bytes += len(k) + ingestKeyOverhead
	}
	if value == nil {
		w.chunk[k] = nil
		delete(w.exp, k)
	} else {
		value = w.arena.keep(value)
		w.chunk[k] = value
		w.bytes += len(value) // read into the arena: counted even when a later value replaces it
		if t.index {
			w.exp[k] = t.at
		} else {
			delete(w.exp, k)
		}
	}
	if t.hasST && t.st > w.meta.StreamTime {
		w.meta.StreamTime = t.st
	}
	w.meta.Next = offset + 1
	w.lastKey, w.lastValue, w.hasLast = k, value, true
	w.read++
	if w.bytes >= w.d.chunkBytes {
		return w.flush()
	}
	return nil
}

// flush writes the chunk as sstables (values; index entries; checkpoint — three key ranges that
// do not overlap) and ingests them together.
func (w *ingestWriter) flush() error {
	if len(w.chunk) == 0 && !w.hasLast && !w.first {
		return nil
	}
	if w.hasLast {
		w.meta.LastHash = recordHash([]byte(w.lastKey), w.lastValue)
		w.lastKey, w.lastValue, w.hasLast = "", nil, false
	}
	dir := w.d.ingestDir() // a crash's leftovers are removed at the next open
	if err := w.d.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state store %s: %w", w.d.dir, err)
	}
	var paths []string
	defer func() {
		for _, p := range paths {
			_ = w.d.fs.Remove(p) // Pebble hard-linked what it ingested
		}
	}()
	write := func(name string, add func(*sstable.Writer) error) error {
		path := filepath.Join(dir, fmt.Sprintf("p%d-%d-%s.sst", w.p, w.seq, name))
		f, err := w.d.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		paths = append(paths, path)
		sw := sstable.NewWriter(objstorageprovider.NewFileWritable(f), w.d.opts.MakeWriterOptions(0, w.d.db.FormatMajorVersion().MaxTableFormat()))
		if err := add(sw); err != nil {
			_ = sw.Close()
			return err
		}
		return sw.Close()
	}
	keys := make([]string, 0, len(w.chunk))
	for k := range w.chunk {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sets := 0
	if len(keys) > 0 {
		if err := write("d", func(sw *sstable.Writer) error {
			buf := w.d.prefix('d', w.p)
			pre := len(buf)
			for _, k := range keys {
				buf = append(buf[:pre], k...)
				v := w.chunk[k]
				switch {
				case v != nil:
					sets++
					if err := sw.Set(buf, v); err != nil {
						return err
					}
				case !w.first: // a tombstone for a key an earlier chunk may hold
					if err := sw.Delete(buf); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if len(w.exp) > 0 {
		idx := make([]string, 0, len(w.exp))
		for k, at := range w.exp {
			idx = append(idx, string(w.d.indexKey(w.p, at, k)))
		}
		slices.Sort(idx)
		if err := write("e", func(sw *sstable.Writer) error {
			for _, k := range idx {
				if err := sw.Set([]byte(k), nil); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	w.meta.Keys += int64(sets) // an upper bound across chunks (partMeta.Keys)
	if err := write("m", func(sw *sstable.Writer) error { return sw.Set(w.d.metaKey(w.p), w.meta.encode()) }); err != nil {
		return err
	}
	w.seq++
	op := "restore ingest of partition " + strconv.Itoa(int(w.p))
	if err := w.d.bounded(w.ctx, op, func() error { return w.d.db.Ingest(w.ctx, paths) }, func() {}); err != nil {
		return err
	}
	clear(w.chunk)
	clear(w.exp)
	w.arena.reset()
	w.bytes, w.first = 0, false
	return nil
}

func (w *ingestWriter) close() {}
