package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// ceilings measures, in one run on the same changelog, what bounds a full restore on this box:
// a plain franz-go read of the changelog (records/s, nothing stored); the same read written
// into a fresh Pebble with 4 MiB batches (the old full restore); and the same read written as
// sorted sstables of 32 MiB chunks per partition, ingested (the new one). The Pebble passes use
// the store's options that matter (64 MiB cache, 32 MiB memtables, fastest compression). One
// line: `ceilings: read_rec_s=… batch_rec_s=… ingest_rec_s=…`.
func (e *env) ceilings(s topicSet, dir string) {
	topic := s.names[schemas.TopicChangelog]
	read := func(fn func(*kgo.Record) error) (int64, time.Duration) {
		var n int64
		var mu sync.Mutex
		began := time.Now()
		must(kafka.ReadToEnd(e.ctx, e.conn, topic, kafka.ReadOptions{
			Until: kafka.EndQuiescent, Workers: runtime.GOMAXPROCS(0),
			ClientOpts: []kgo.Opt{kgo.FetchMaxBytes(16 << 20), kgo.FetchMaxPartitionBytes(4 << 20), kgo.FetchMaxWait(200 * time.Millisecond)},
		}, func(r *kgo.Record) error {
			mu.Lock()
			n++
			mu.Unlock()
			return fn(r)
		}))
		return n, time.Since(began)
	}
	var opts *pebble.Options
	open := func(name string) *pebble.DB {
		cache := pebble.NewCache(64 << 20)
		defer cache.Unref()
		opts = &pebble.Options{Cache: cache, MemTableSize: 32 << 20, MemTableStopWritesThreshold: 2}
		opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
		opts.EnsureDefaults()
		db, err := pebble.Open(filepath.Join(dir, name), opts)
		must(err)
		return db
	}
	key := func(p int32, k []byte) []byte {
		return append([]byte{'d', byte(p >> 24), byte(p >> 16), byte(p >> 8), byte(p)}, k...)
	}

	n, took := read(func(*kgo.Record) error { return nil })
	readRate := float64(n) / took.Seconds()
	log.Printf("ceiling: plain read of %d records in %s: %.0f records/s", n, took.Round(time.Millisecond), readRate)

	db := open("batch")
	var mu sync.Mutex
	batches := map[int32]*pebble.Batch{}
	n, took = read(func(r *kgo.Record) error {
		mu.Lock()
		b := batches[r.Partition]
		if b == nil {
			b = db.NewBatch()
			batches[r.Partition] = b
		}
		mu.Unlock()
		if r.Value == nil {
			must(b.Delete(key(r.Partition, r.Key), nil))
		} else {
			must(b.Set(key(r.Partition, r.Key), r.Value, nil))
		}
		if b.Len() >= 4<<20 {
			must(b.Commit(pebble.NoSync))
			mu.Lock()
			batches[r.Partition] = db.NewBatch()
			mu.Unlock()
		}
		return nil
	})
	for _, b := range batches {
		must(b.Commit(pebble.NoSync))
	}
	batchRate := float64(n) / took.Seconds()
	must(db.Close())
	log.Printf("ceiling: batch writes of %d records in %s: %.0f records/s", n, took.Round(time.Millisecond), batchRate)

	db = open("ingest")
	type chunk struct {
		vals  map[string][]byte
		bytes int
		seq   int
	}
	chunks := map[int32]*chunk{}
	tmp := filepath.Join(dir, "ingest-tmp")
	must(os.MkdirAll(tmp, 0o755))
	flush := func(p int32, c *chunk) {
		keys := make([]string, 0, len(c.vals))
		for k := range c.vals {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		path := filepath.Join(tmp, fmt.Sprintf("p%d-%d.sst", p, c.seq))
		f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
		must(err)
		w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), opts.MakeWriterOptions(0, db.FormatMajorVersion().MaxTableFormat()))
		for _, k := range keys {
			if v := c.vals[k]; v != nil {
				must(w.Set(key(p, []byte(k)), v))
			} else if c.seq > 0 {
				must(w.Delete(key(p, []byte(k))))
			}
		}
		must(w.Close())
		must(db.Ingest(e.ctx, []string{path}))
		_ = os.Remove(path) // Ingest moves the file into the store (link, then remove)
		clear(c.vals)
		c.bytes = 0
		c.seq++
	}
	n, took = read(func(r *kgo.Record) error {
		mu.Lock()
		c := chunks[r.Partition]
		if c == nil {
			c = &chunk{vals: map[string][]byte{}}
			chunks[r.Partition] = c
		}
		mu.Unlock()
		c.vals[string(r.Key)] = r.Value
		c.bytes += len(r.Key) + len(r.Value) + 64
		if c.bytes >= 32<<20 {
			flush(r.Partition, c)
		}
		return nil
	})
	for p, c := range chunks {
		if len(c.vals) > 0 {
			flush(p, c)
		}
	}
	ingestRate := float64(n) / took.Seconds()
	must(db.Close())
	log.Printf("ceiling: sstables + ingest of %d records in %s: %.0f records/s", n, took.Round(time.Millisecond), ingestRate)
	must(os.RemoveAll(filepath.Join(dir, "batch")))
	must(os.RemoveAll(filepath.Join(dir, "ingest")))
	must(os.RemoveAll(tmp))
	fmt.Printf("ceilings: records=%d read_rec_s=%.0f batch_rec_s=%.0f ingest_rec_s=%.0f\n", n, readRate, batchRate, ingestRate)
}
