package topology

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func newTestDisk(t *testing.T, memtable int64) *diskStore {
	t.Helper()
	d, err := openDiskStore(context.Background(), t.TempDir(), "sum", DiskOptions{MemtableBytes: memtable, CacheBytes: 1 << 20}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.close() })
	return d
}

// TestIngestWriterBoundsItsMemory: the full restore's chunk keeps copies of the values (never
// the fetch buffers they came in: mutating the buffer after put changes nothing), and it counts
// every value it reads — a key rewritten many times (an uncompacted changelog) fills the chunk
// and gets it written at state.memtable_bytes, instead of counting only its last value while the
// replaced ones (and the batches they alias) stay alive.
func TestIngestWriterBoundsItsMemory(t *testing.T) {
	const memtable = 1 << 20
	d := newTestDisk(t, memtable)
	w := d.newIngestWriter(context.Background(), 0, partMeta{StreamTime: noStreamTime})
	buf := bytes.Repeat([]byte{'a'}, 64<<10)
	for i := range 15 { // 15 × 64 KiB < 1 MiB: one chunk, not yet written
		if err := w.put(int64(i), []byte("k"), buf, recTimes{}); err != nil {
			t.Fatal(err)
		}
	}
	if w.seq != 0 {
		t.Fatalf("chunk written after %d bytes read, before its bound %d", 15*len(buf), memtable)
	}
	if want := 15 * len(buf); w.bytes < want {
		t.Fatalf("chunk counts %d bytes after reading %d: replaced values are not counted", w.bytes, want)
	}
	buf[0] = 'b' // the fetch buffer is the client's: the chunk must not see this
	if v := w.chunk["k"]; v[0] != 'a' || len(v) != len(buf) {
		t.Fatalf("chunk value aliases the record's buffer")
	}
	for i := 15; i < 20; i++ {
		if err := w.put(int64(i), []byte("k"), buf, recTimes{}); err != nil {
			t.Fatal(err)
		}
	}
	if w.seq != 1 || w.bytes >= memtable {
		t.Fatalf("after %d bytes read the chunk was written %d times and holds %d bytes (bound %d)", 20*len(buf), w.seq, w.bytes, memtable)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	got, ok, err := d.get(0, "k")
	if err != nil || !ok || !bytes.Equal(got, buf) {
		t.Fatalf("restored value: ok %v err %v equal %v", ok, err, bytes.Equal(got, buf))
	}
	m, ok, err := d.meta(0)
	if err != nil || !ok || m.Next != 20 || m.LastHash != recordHash([]byte("k"), buf) {
		t.Fatalf("checkpoint %+v ok %v err %v: want next 20 and the last record's hash", m, ok, err)
	}
}

func TestIngestArenaKeepsEmptyValuesNonNil(t *testing.T) {
	var a ingestArena
	if v := a.keep([]byte{}); v == nil {
		t.Fatal("an empty value became nil (a tombstone)")
	}
	big := bytes.Repeat([]byte{'x'}, ingestSlab+1)
	if v := a.keep(big); !bytes.Equal(v, big) {
		t.Fatal("a value larger than a slab is not kept whole")
	}
	small := a.keep([]byte("abc"))
	a.reset()
	if len(a.slabs) != 0 || len(a.free) != 1 {
		t.Fatalf("after reset: %d slabs in use, %d free; want 0 and 1 (the oversized one dropped)", len(a.slabs), len(a.free))
	}
	_ = small
}

// TestDiskStoreRemovesIngestLeftovers: sstables a process killed mid-restore left in
// restore-ingest/ are removed when the store next opens.
func TestDiskStoreRemovesIngestLeftovers(t *testing.T) {
	dir := t.TempDir()
	d, err := openDiskStore(context.Background(), dir, "sum", DiskOptions{CacheBytes: 1 << 20}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(d.ingestDir(), "p3-7-d.sst")
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(leftover), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leftover, bytes.Repeat([]byte{1}, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err = openDiskStore(context.Background(), dir, "sum", DiskOptions{CacheBytes: 1 << 20}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover %s still there after the store opened (stat: %v)", leftover, err)
	}
}

// TestIngestAfterWipeFlushes records what Pebble does with a full restore's chunks after the
// wipe (DESIGN.md, "A full restore … ingests sorted sstables"): the wipe's range deletions are in
// the memtable, so the first chunk overlaps it and is ingested as a flushable (queued on top of
// the memtable, flushed with it); the next overlapping chunk finds the flushable queue at the
// stop-writes threshold and waits for a flush. After that, chunks go straight into the LSM.
func TestIngestAfterWipeFlushes(t *testing.T) {
	d := newTestDisk(t, 256<<10)
	ctx := context.Background()
	if err := d.wipe(ctx, 0); err != nil {
		t.Fatal(err)
	}
	before := d.db.Metrics()
	w := d.newIngestWriter(ctx, 0, partMeta{StreamTime: noStreamTime})
	v := bytes.Repeat([]byte{'v'}, 1000)
	const n = 2000 // ≈ 2 MB: 8 chunks of 256 KiB
	for i := range n {
		if err := w.put(int64(i), []byte(fmt.Sprintf("k%06d", i)), v, recTimes{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	after := d.db.Metrics()
	flushes := after.Flush.Count - before.Flush.Count
	asIngest := after.Flush.AsIngestCount - before.Flush.AsIngestCount
	t.Logf("%d chunks ingested: %d flushes, %d of them of flushable ingests", w.seq, flushes, asIngest)
	if w.seq < 4 {
		t.Fatalf("only %d chunks: the test needs several", w.seq)
	}
	if flushes == 0 || flushes > 2 {
		t.Fatalf("%d flushes for a full restore of %d chunks after a wipe: want the one or two the first chunks' overlap with the wipe's memtable costs", flushes, w.seq)
	}
	for i := range n {
		if _, ok, err := d.get(0, fmt.Sprintf("k%06d", i)); !ok || err != nil {
			t.Fatalf("key %d not restored (%v)", i, err)
		}
	}
}

// TestDiskDueAtTheEndOfTime: with the watermark at the largest int64 (event times past 2262 are
// clamped there) every entry of the partition is due, those clamped there too — the iterator's
// upper bound must not wrap round to the partition's first key — and no other partition's.
func TestDiskDueAtTheEndOfTime(t *testing.T) {
	d := newTestDisk(t, 1<<20)
	const end = 1<<63 - 1
	idx := []sweepItem{{0, expiryItem{-5, "a"}}, {0, expiryItem{100, "b"}}, {0, expiryItem{end, "c"}}, {1, expiryItem{7, "other"}}}
	if err := d.applyIndex(context.Background(), nil, idx); err != nil {
		t.Fatal(err)
	}
	got, err := d.due(0, end, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []expiryItem{{-5, "a"}, {100, "b"}, {end, "c"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("due at the end of time: %v, want %v", got, want)
	}
	if got, _ := d.due(0, 100, 10); fmt.Sprint(got) != fmt.Sprint(want[:2]) {
		t.Fatalf("due at 100: %v, want %v", got, want[:2])
	}
}
