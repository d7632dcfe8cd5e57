package topology

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// diskStore is the persistent store of one Runner: one Pebble database under
// Options.StateDir holding, per (stage, partition), the committed changelog value of every key
// and a checkpoint: the changelog offset the partition's values cover, written in the same
// Pebble batch as the values (atomically). It is generic over the stage's state: it keeps
// changelog bytes, never decoded states.
//
// What it may hold, and why it can be trusted (DESIGN.md "Persistent state"):
//   - only state of committed transactions: the runner writes a transaction's states after End
//     reported the commit (never the overlay of an open transaction), so the store is never
//     ahead of the changelog by an aborted transaction's writes (the failure KIP-892 fixes in
//     Kafka Streams, whose RocksDB received uncommitted writes);
//   - a restore writes changelog records (read_committed) with the checkpoint of the last one in
//     each batch (a tail restore) or each ingested chunk of sstables (a full restore into an
//     empty partition: staterestore_ingest.go), so a process killed mid-restore resumes from its
//     last batch or chunk;
//   - writes use pebble.NoSync: Pebble v2 keeps the batch's WAL record in its log writer's block
//     buffer until a 32 KiB block fills or a later sync (NoSync does not wake its flusher), so a
//     SIGKILL as well as an OS crash can lose a suffix of batches, the last one possibly torn
//     across a written block (recovery drops a torn tail record). Each batch carries its values
//     and checkpoint together, so what survives is an older checkpoint with exactly the values
//     it covers: a store behind the changelog, which the tail restore completes.
//
// On assignment the runner validates each partition against the changelog (validate) and reads
// only the tail after the checkpoint; anything it cannot vouch for is wiped and restored fully.
//
// Safe for concurrent use by the restore's goroutines (one per partition) and the run loop.
type diskStore struct {
	db      *pebble.DB
	dir     string
	stage   string
	hook    func(FlushStep) // DiskOptions.FlushHook
	timeout time.Duration   // DiskOptions.CommitTimeout
	log     *slog.Logger
	h       storeHealth
	// dirID identifies the directory the store was opened in (device, inode): a directory
	// deleted (or replaced) under a running store is found at the next write (checkDir)
	dirID [2]uint64
	// opts are Pebble's options (the full restore writes sstables with them: ingestWriter); fs
	// is the file system the store writes through; chunkBytes bounds one full-restore chunk
	opts       *pebble.Options
	fs         vfs.FS
	chunkBytes int
}

// DiskOptions size a persistent store's memory: Pebble's block cache and memtables are the
// only memory that grows with the data, and both are bounded here.
type DiskOptions struct {
	// CacheBytes is Pebble's block cache (uncompressed blocks of recently read keys); zero means 64 MiB.
	CacheBytes int64
	// MemtableBytes is the size of one memtable (writes before they are flushed to an sstable);
	// at most two are held at once. Zero means 32 MiB.
	MemtableBytes int64
	// FlushHook, if set, is called at each step of writing a committed transaction's states
	// (FlushStep). Fault injection only: the chaoshooks build of `retailflow run` SIGKILLs the
	// process there (RETAILFLOW_CHAOS_KILL_AT=store-flush-before:<n>).
	FlushHook func(FlushStep)
	// CommitTimeout bounds one write to the store (a committed transaction's states, a restore
	// batch, a wipe), its open and its close; zero means DefaultCommitTimeout. Pebble does not
	// fail a write on a full disk: its flushes fail and are retried, its memtables fill, and
	// every commit waits in its write stall. A write that has not finished in time ends Run with
	// a *StoreStalledError (diskStore.commit).
	CommitTimeout time.Duration
	// ValueCacheBytes bounds the committed values of recently written keys that the runner keeps
	// in memory in front of the store (store.hot): an order's next event then reads its state
	// without a Pebble Get. Zero means DefaultValueCacheBytes; negative turns the cache off.
	ValueCacheBytes int64

	fs vfs.FS // tests: a file system whose disk can be made full; nil is the OS's
}

// DefaultCommitTimeout is DiskOptions.CommitTimeout's default: far above a healthy commit
// (milliseconds; a write stall while a flush catches up lasts seconds at most on the benchmark
// host), far below the time a platform team would let a stuck pod hold its partitions.
const DefaultCommitTimeout = 20 * time.Second

// DefaultValueCacheBytes is DiskOptions.ValueCacheBytes's default.
const DefaultValueCacheBytes = 64 << 20

// storeShutdownWait is how long a shutdown (Run's context cancelled) still waits for a store
// write in progress before it gives up on it: the Kafka transaction has committed, so giving up
// loses nothing, but a store whose write never returned cannot be closed.
const storeShutdownWait = 3 * time.Second

// healthSlowAfter: a store write in progress for longer, or a Pebble write stall lasting
// longer, makes the store unhealthy (Status.Store, /readyz) before the commit timeout ends Run.
const healthSlowAfter = time.Second

// StoreStalledError is a write to the persistent store that did not finish within
// DiskOptions.CommitTimeout (or within storeShutdownWait of a shutdown). Cause is the last
// error Pebble reported in the background (a failed flush: ENOSPC on a full disk; errors.Is
// sees through it), or what else the store knows. The store is then abandoned: Run returns
// this error, the process exits non-zero, and its restart validates the store against the
// changelog and restores what it lacks (every committed transaction is in Kafka).
type StoreStalledError struct {
	Dir    string        // state.dir
	Op     string        // what was being written
	Waited time.Duration // how long it was waited for
	Stall  string        // Pebble's write stall at the time ("" if none)
	Cause  error
}

func (e *StoreStalledError) Error() string {
	stall := ""
	if e.Stall != "" {
		stall = " (" + e.Stall + ")"
	}
	return fmt.Sprintf("state store %s (state.dir): %s did not finish within %s%s: %v", e.Dir, e.Op, e.Waited.Round(time.Millisecond), stall, e.Cause)
}

func (e *StoreStalledError) Unwrap() error { return e.Cause }

// storeHealth is what Pebble's event listener and the bounded writes know about the store's
// ability to take writes. Guarded by mu; the listener's callbacks do no I/O while holding it
// (Pebble calls some of them with its own mutex held).
type storeHealth struct {
	mu          sync.Mutex
	stallSince  time.Time // Pebble's write stall in progress (zero: none)
	stallReason string
	bgErr       error // the last background error (a failed flush or compaction)
	bgErrAt     time.Time
	bgErrs      int64     // background errors since the last one logged
	bgLoggedAt  time.Time // rate limit of their log lines
	flushedAt   time.Time // the last flush that succeeded
	noSpaceAt   time.Time // the last ENOSPC any write of Pebble's met (vfs.OnDiskFull)
	slow        string    // the last DiskSlow report
	slowAt      time.Time
	writes      map[uint64]writeInFlight
	nextWrite   uint64
	broken      error // a write was given up on: the store takes no more writes and is not closed
	gone        error // its directory was deleted or replaced: no more writes (checkDir)
}

type writeInFlight struct {
	op    string
	since time.Time
}

// bgErrLogEvery bounds Pebble's background error lines: a flush that fails is retried at once,
// in a loop, for as long as the disk stays full.
const bgErrLogEvery = 10 * time.Second

// listener is d's Pebble event listener.
func (d *diskStore) listener() *pebble.EventListener {
	h := &d.h
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			h.mu.Lock()
			h.bgErr, h.bgErrAt = err, time.Now()
			h.bgErrs++
			n := h.bgErrs
			logIt := time.Since(h.bgLoggedAt) >= bgErrLogEvery
			if logIt {
				h.bgLoggedAt, h.bgErrs = time.Now(), 0
			}
			h.mu.Unlock()
			if logIt {
				// err.Error(): slog would print Pebble's errors with %+v, stack traces included
				d.log.Error("state store: pebble background error (a flush or compaction failed; pebble retries it)", "dir", d.dir, "err", err.Error(), "errors", n)
			}
		},
		WriteStallBegin: func(i pebble.WriteStallBeginInfo) {
			h.mu.Lock()
			h.stallSince, h.stallReason = time.Now(), i.Reason
			h.mu.Unlock()
		},
		WriteStallEnd: func() {
			h.mu.Lock()
			h.stallSince, h.stallReason = time.Time{}, ""
			h.mu.Unlock()
		},
		// called on Pebble's disk-health goroutine, which must not block: recorded only, and
		// reported by health and StoreStalledError
		DiskSlow: func(i pebble.DiskSlowInfo) {
			h.mu.Lock()
			h.slow, h.slowAt = i.String(), time.Now()
			h.mu.Unlock()
		},
		FlushEnd: func(i pebble.FlushInfo) {
			if i.Err == nil {
				h.mu.Lock()
				h.flushedAt = time.Now()
				h.mu.Unlock()
			}
		},
	}
}

// noSpace is vfs.OnDiskFull's callback: a write of Pebble's met ENOSPC.
func (d *diskStore) noSpace() {
	d.h.mu.Lock()
	d.h.noSpaceAt = time.Now()
	d.h.mu.Unlock()
}

// causeLocked is the best explanation the store has of why its writes do not finish.
func (d *diskStore) causeLocked(now time.Time) error {
	h := &d.h
	switch {
	case h.bgErr != nil && h.bgErrAt.After(h.flushedAt):
		return fmt.Errorf("pebble cannot flush (last background error %s ago): %w", now.Sub(h.bgErrAt).Round(time.Millisecond), h.bgErr)
	case !h.noSpaceAt.IsZero() && now.Sub(h.noSpaceAt) < time.Minute:
		return fmt.Errorf("a write of pebble's found the disk full %s ago: %w", now.Sub(h.noSpaceAt).Round(time.Millisecond), syscall.ENOSPC)
	case h.slow != "" && now.Sub(h.slowAt) < time.Minute:
		return fmt.Errorf("the disk is slow: %s", h.slow)
	}
	return errors.New("pebble reported no error (a hung disk?)")
}

func (d *diskStore) stallLocked(now time.Time) string {
	if d.h.stallSince.IsZero() {
		return ""
	}
	return fmt.Sprintf("pebble's write stall for %s: %s", now.Sub(d.h.stallSince).Round(time.Millisecond), d.h.stallReason)
}

// health is nil while the store takes writes; otherwise why not: a write given up on, a write
// or a Pebble write stall lasting longer than healthSlowAfter, or a flush failing right now.
func (d *diskStore) health() error {
	h := &d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken != nil {
		return h.broken
	}
	if h.gone != nil {
		return h.gone
	}
	now := time.Now()
	for _, w := range h.writes {
		if age := now.Sub(w.since); age > healthSlowAfter {
			stall := ""
			if s := d.stallLocked(now); s != "" {
				stall = " (" + s + ")"
			}
			return fmt.Errorf("state store %s (state.dir): %s waiting for %s%s: %w", d.dir, w.op, age.Round(time.Millisecond), stall, d.causeLocked(now))
		}
	}
	if !h.stallSince.IsZero() && now.Sub(h.stallSince) > healthSlowAfter {
		return fmt.Errorf("state store %s (state.dir): %s: %w", d.dir, d.stallLocked(now), d.causeLocked(now))
	}
	if h.bgErr != nil && h.bgErrAt.After(h.flushedAt) && now.Sub(h.bgErrAt) < bgErrLogEvery {
		return fmt.Errorf("state store %s (state.dir): %w", d.dir, d.causeLocked(now))
	}
	return nil
}

// commit commits b (NoSync) and closes it, waiting at most the commit timeout — or, once ctx
// is cancelled (shutdown), at most storeShutdownWait more. Pebble's Commit cannot be
// interrupted, so it runs on a goroutine of its own; when the wait gives up, that goroutine and
// b are left to Pebble, the store is marked broken (every later write fails at once, and close
// leaves the DB alone: Pebble's Close would wait for the stalled commit) and the error is a
// *StoreStalledError. A panic inside Pebble's commit (it panics on a failed WAL write or
// rotation) is returned as an error naming the directory and breaks the store the same way.
func (d *diskStore) commit(ctx context.Context, b *pebble.Batch, op string) error {
	return d.bounded(ctx, op, func() error {
		err := b.Commit(pebble.NoSync)
		b.Close()
		return err
	}, func() { b.Close() })
}

// bounded runs one write to the store (fn: a batch commit, an ingest) as commit describes;
// release frees what fn would have freed when it does not run at all.
func (d *diskStore) bounded(ctx context.Context, op string, fn func() error, release func()) error {
	if err := d.brokenErr(); err != nil {
		release()
		return err
	}
	if err := d.checkDir(); err != nil {
		release()
		return err
	}
	h := &d.h
	start := time.Now()
	h.mu.Lock()
	id := h.nextWrite
	h.nextWrite++
	h.writes[id] = writeInFlight{op: op, since: start}
	h.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				err := fmt.Errorf("state store %s (state.dir): %s: pebble panicked: %v", d.dir, op, p)
				if e, ok := p.(error); ok {
					err = fmt.Errorf("state store %s (state.dir): %s: pebble panicked: %w", d.dir, op, e)
				}
				d.markBroken(err)
				done <- err
			}
		}()
		err := fn()
		if err != nil {
			err = fmt.Errorf("state store %s (state.dir): %s: %w", d.dir, op, err)
		}
		done <- err
	}()
	timer := time.NewTimer(d.timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		err = d.giveUp(op, start)
	case <-ctx.Done():
		shutdown := time.NewTimer(storeShutdownWait)
		defer shutdown.Stop()
		select {
		case err = <-done:
		case <-timer.C:
			err = d.giveUp(op, start)
		case <-shutdown.C:
			err = d.giveUp(op, start)
		}
	}
	h.mu.Lock()
	delete(h.writes, id)
	h.mu.Unlock()
	return err
}

// checkDir fails (and every later write with it) when its directory is no longer the one it was opened
// in: deleted while running (Pebble writes on into files that have no name any more, so nothing
// it writes survives a restart, and its next flush fails) or replaced. One stat per write.
func (d *diskStore) checkDir() error {
	d.h.mu.Lock()
	gone := d.h.gone
	d.h.mu.Unlock()
	if gone != nil {
		return gone
	}
	id, err := dirIdentity(d.dir)
	if err == nil && id == d.dirID {
		return nil
	}
	why := "replaced by another directory"
	if err != nil {
		why = err.Error()
	}
	err = fmt.Errorf("state store %s (state.dir): the directory was deleted or replaced while the store was open (%s); the store's files are gone: stopping, the restart restores every partition into a new store", d.dir, why)
	d.h.mu.Lock()
	if d.h.gone == nil {
		d.h.gone = err
	}
	d.h.mu.Unlock()
	return err
}

// dirIdentity is (device, inode) of dir.
func dirIdentity(dir string) ([2]uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return [2]uint64{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]uint64{}, nil // no inodes here: not checked
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, nil //nolint:unconvert // Dev's type differs by platform
}

// giveUp marks the store broken by a write (op, begun at start) that did not finish.
func (d *diskStore) giveUp(op string, start time.Time) error {
	now := time.Now()
	d.h.mu.Lock()
	err := &StoreStalledError{Dir: d.dir, Op: op, Waited: now.Sub(start), Stall: d.stallLocked(now), Cause: d.causeLocked(now)}
	d.h.mu.Unlock()
	d.markBroken(err)
	return err
}

func (d *diskStore) markBroken(err error) {
	d.h.mu.Lock()
	if d.h.broken == nil {
		d.h.broken = err
	}
	d.h.mu.Unlock()
}

func (d *diskStore) brokenErr() error {
	d.h.mu.Lock()
	defer d.h.mu.Unlock()
	return d.h.broken
}

// FlushStep is a point in the write of a committed transaction's states to the store.
type FlushStep int

const (
	// FlushBeforeCommit: the Kafka transaction has committed and the Pebble batch (states and
	// checkpoints) is built but not yet committed.
	FlushBeforeCommit FlushStep = iota
	// FlushAfterCommit: Pebble's Commit(NoSync) has returned. Its WAL record is queued for
	// Pebble's flush goroutine and may not have reached the OS yet.
	FlushAfterCommit
)

// pebbleLogger sends Pebble's own log lines to slog (errors and fatal only at warn/error).
// Each line names the state directory: Pebble's own messages (a failed WAL or MANIFEST write
// on a full disk) say only the file.
type pebbleLogger struct {
	log *slog.Logger
	dir string
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: "+fmt.Sprintf(format, args...), "dir", l.dir)
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Warn("pebble: "+fmt.Sprintf(format, args...), "dir", l.dir)
}

// Fatalf: Pebble gives up (e.g. a MANIFEST it cannot write). The process exits 1; every
// committed transaction is in the changelog and the restart restores the store's tail.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("state store "+l.dir+" (state.dir) failed: pebble: "+fmt.Sprintf(format, args...), "dir", l.dir)
	os.Exit(1)
}

// openDiskStore opens (creating it if need be) the store under dir for stage. A second process
// on the same dir fails here (Pebble's LOCK file).
func openDiskStore(ctx context.Context, dir, stage string, o DiskOptions, log *slog.Logger) (*diskStore, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = 64 << 20
	}
	if o.MemtableBytes <= 0 {
		o.MemtableBytes = 32 << 20
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = DefaultCommitTimeout
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state store %s (state.dir): %w", dir, err)
	}
	d := &diskStore{dir: dir, stage: stage, hook: o.FlushHook, timeout: o.CommitTimeout, log: log}
	d.h.writes = map[uint64]writeInFlight{}
	cache := pebble.NewCache(o.CacheBytes)
	defer cache.Unref()
	fs := o.fs
	if fs == nil {
		fs = vfs.Default
	}
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                uint64(o.MemtableBytes),
		MemTableStopWritesThreshold: 2,
		MaxOpenFiles:                1000,
		Logger:                      pebbleLogger{log: log, dir: dir},
		EventListener:               d.listener(),
		FS:                          vfs.OnDiskFull(fs, d.noSpace),
	}
	// Pebble's disk-health checks (a write or sync taking longer than 5 s calls DiskSlow)
	opts.WithFSDefaults()
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // a Get of a new order (a miss) reads no block
	}
	// Pebble's "fastest" block compression profile. At the format the store opens at (Pebble's
	// default, sstables of table format v3) that is Snappy: the profile's MinLZ needs table
	// format v6, and a store at v6 spent as much CPU in MinLZ as this one does in Snappy and
	// was no faster per event (bench/RESULTS.md, 2026-12-06, seventh session). With no
	// compression at all the CPU per event was no lower either.
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	opts.EnsureDefaults()
	d.opts, d.fs, d.chunkBytes = opts, opts.FS, int(o.MemtableBytes)
	// Open replays the WAL and may flush it to an sstable: on a full disk that fails (an error)
	// or stalls like a commit, so it is bounded too
	type opened struct {
		db  *pebble.DB
		err error
	}
	done := make(chan opened, 1)
	start := time.Now()
	go func() {
		db, err := pebble.Open(filepath.Clean(dir), opts)
		done <- opened{db, err}
	}()
	var err error
	if d.dirID, err = dirIdentity(dir); err != nil {
		return nil, fmt.Errorf("state store %s (state.dir): %w", dir, err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			hint := "state.dir must be a directory only this process uses"
			if errors.Is(r.err, syscall.ENOSPC) {
				hint = "the disk is full"
			}
			return nil, fmt.Errorf("state store %s (state.dir): open: %w (%s)", dir, r.err, hint)
		}
		d.db = r.db
		d.removeIngestLeftovers()
		return d, nil
	case <-time.After(o.CommitTimeout):
		return nil, d.giveUp("open", start)
	case <-ctx.Done():
		// shutdown: the open is not waited for longer than a write would be
		select {
		case r := <-done:
			if r.err == nil {
				d.db = r.db
				d.removeIngestLeftovers()
				return d, nil
			}
			return nil, fmt.Errorf("state store %s (state.dir): open: %w", dir, r.err)
		case <-time.After(storeShutdownWait):
			return nil, d.giveUp("open", start)
		}
	}
}

// ingestDir is where a full restore writes its sstables before DB.Ingest links them into the
// store (ingestWriter.flush); the writer removes them once ingested.
func (d *diskStore) ingestDir() string { return filepath.Join(d.dir, "restore-ingest") }

// removeIngestLeftovers deletes what a process killed during a full restore left in ingestDir
// (sstables written and not yet ingested, or ingested and not yet removed: Pebble holds its own
// links to those). Called once the store is open: Pebble's lock is held, so no other process is
// ingesting from this directory. A failure only costs disk space: logged, not fatal.
func (d *diskStore) removeIngestLeftovers() {
	dir := d.ingestDir()
	names, err := d.fs.List(dir)
	if err != nil || len(names) == 0 {
		return // none (the usual case: the directory does not exist)
	}
	if err := d.fs.RemoveAll(dir); err != nil {
		d.log.Warn("state store: cannot remove a full restore's leftover sstables", "dir", dir, "files", len(names), "err", err)
		return
	}
	d.log.Info("state store: removed a full restore's leftover sstables (a restore was interrupted)", "dir", dir, "files", len(names))
}

// close closes the DB within the commit timeout, or within storeShutdownWait when the store
// is unhealthy (Pebble's Close waits for a flush that a full disk makes fail and retry for
// ever). A store with a write that was given up on is not closed at all (Close would wait for
// that write): the error says so, and the process, which is exiting, leaves the directory to
// its next incarnation (Pebble's lock goes with the process; the next Open recovers the WAL).
func (d *diskStore) close() error {
	if err := d.brokenErr(); err != nil {
		return fmt.Errorf("state store %s (state.dir): not closed, a write never finished: %w", d.dir, err)
	}
	wait := d.timeout
	if d.health() != nil {
		wait = min(wait, storeShutdownWait)
	}
	done := make(chan error, 1)
	go func() { done <- d.db.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("state store %s (state.dir): close: %w", d.dir, err)
		}
		return nil
	case <-time.After(wait):
		return d.giveUp("close", time.Now().Add(-wait))
	}
}

// Key layout: 'd' stage 0x00 partition(4, big endian) key → changelog value of key;
// 'm' stage 0x00 partition(4) → the partition's checkpoint (partMeta);
// 'e' stage 0x00 partition(4) expiry(8) key → nothing: the expiry index (sweep.go indexKey).
func (d *diskStore) prefix(kind byte, p int32) []byte {
	b := make([]byte, 0, 1+len(d.stage)+1+4+32)
	b = append(b, kind)
	b = append(b, d.stage...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, uint32(p))
}

func (d *diskStore) dataKey(p int32, key string) []byte { return append(d.prefix('d', p), key...) }
func (d *diskStore) metaKey(p int32) []byte             { return d.prefix('m', p) }

// partMeta is a partition's checkpoint: the store holds the changelog's state as of every
// record before Next (of the changelog topic incarnation TopicID); LastHash identifies the
// record at Next-1, the last one applied, so a changelog whose history differs there
// (truncated and re-written, an unclean leader election) is detected. Keys counts the keys
// (exact after commits and tail restores; after a full restore a key whose uncompacted history
// spans restore batches counts once per batch until it is next written).
//
// StreamTime is the partition's stream time (sweep.go) as of the checkpoint: the highest event
// time of its committed input, unix ns (noStreamTime before any).
type partMeta struct {
	TopicID    [16]byte
	Next       int64
	LastHash   uint64
	Keys       int64
	StreamTime int64
}

// metaVersion 2 added StreamTime and, with it, the expiry index ('e' keys): a version-1
// checkpoint is not trusted (restoreDisk wipes the partition and restores it fully, which
// builds the index from the changelog: its headers, or for the records the earlier version wrote
// without them the decoded state, restoreIndex) — once, at the first start after the upgrade.
const metaVersion = 2

func (m partMeta) encode() []byte {
	b := make([]byte, 0, 1+16+8+8+8+8)
	b = append(b, metaVersion)
	b = append(b, m.TopicID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Next))
	b = binary.BigEndian.AppendUint64(b, m.LastHash)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Keys))
	return binary.BigEndian.AppendUint64(b, uint64(m.StreamTime))
}

func decodeMeta(b []byte) (partMeta, error) {
	var m partMeta
	if len(b) != 1+16+32 || b[0] != metaVersion {
		v := -1
		if len(b) > 0 {
			v = int(b[0])
		}
		return m, fmt.Errorf("checkpoint record of %d bytes, version %d: not written by this version (%d)", len(b), v, metaVersion)
	}
	copy(m.TopicID[:], b[1:17])
	m.Next = int64(binary.BigEndian.Uint64(b[17:]))
	m.LastHash = binary.BigEndian.Uint64(b[25:])
	m.Keys = int64(binary.BigEndian.Uint64(b[33:]))
	m.StreamTime = int64(binary.BigEndian.Uint64(b[41:]))
	return m, nil
}

// recordHash identifies a changelog record by its key and value (nil value: tombstone).
func recordHash(key, value []byte) uint64 {
	h := fnv.New64a()
	h.Write(key)
	if value == nil {
		h.Write([]byte{0xff, 0})
	} else {
		h.Write([]byte{0xff, 1})
		h.Write(value)
	}
	return h.Sum64()
}

// meta reads p's checkpoint; ok is false when the partition has none (never restored here, or
// wiped, or a restore into it never completed its first batch).
func (d *diskStore) meta(p int32) (m partMeta, ok bool, err error) {
	v, closer, err := d.db.Get(d.metaKey(p))
	if errors.Is(err, pebble.ErrNotFound) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("state store %s: partition %d checkpoint: %w", d.dir, p, err)
	}
	defer closer.Close()
	m, err = decodeMeta(v)
	if err != nil {
		// unreadable: the caller wipes and restores, as for any checkpoint it cannot trust
		return m, false, nil
	}
	return m, true, nil
}

// get returns a copy of key's value in partition p.
func (d *diskStore) get(p int32, key string) ([]byte, bool, error) {
	v, closer, err := d.db.Get(d.dataKey(p, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state store %s: partition %d key %q: %w", d.dir, p, key, err)
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, true, nil
}

// exists reports whether key has a value in p.
func (d *diskStore) exists(p int32, key []byte) (bool, error) {
	k := append(d.prefix('d', p), key...)
	_, closer, err := d.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state store %s: partition %d: %w", d.dir, p, err)
	}
	closer.Close()
	return true, nil
}

// wipe deletes p's values, expiry index and checkpoint in one batch: the partition is then
// restored fully.
func (d *diskStore) wipe(ctx context.Context, p int32) error {
	b := d.db.NewBatch()
	if err := b.DeleteRange(d.prefix('d', p), d.prefix('d', p+1), nil); err != nil {
		b.Close()
		return err
	}
	if err := b.DeleteRange(d.prefix('e', p), d.prefix('e', p+1), nil); err != nil {
		b.Close()
		return err
	}
	if err := b.Delete(d.metaKey(p), nil); err != nil {
		b.Close()
		return err
	}
	return d.commit(ctx, b, fmt.Sprintf("wipe of partition %d", p))
}

// diskUsage estimates the bytes p's values take on disk (compressed), for the state-size metric.
func (d *diskStore) diskUsage(p int32) int64 {
	n, err := d.db.EstimateDiskUsage(d.prefix('d', p), d.prefix('d', p+1))
	if err != nil {
		return 0
	}
	return int64(n)
}

// txnWrite is one transaction's writes to a persistent store: values and, per partition, the
// checkpoint after the last changelog record the transaction wrote there. commit applies it
// atomically.
type txnWrite struct {
	d     *diskStore
	b     *pebble.Batch
	metas map[int32]partMeta
}

func (d *diskStore) newTxnWrite() *txnWrite {
	return &txnWrite{d: d, b: d.db.NewBatch(), metas: map[int32]partMeta{}}
}

func (w *txnWrite) set(p int32, key string, value []byte) error {
	return w.b.Set(w.d.dataKey(p, key), value, nil)
}

func (w *txnWrite) delete(p int32, key string) error {
	return w.b.Delete(w.d.dataKey(p, key), nil)
}

func (w *txnWrite) checkpoint(p int32, m partMeta) { w.metas[p] = m }

// commit writes the values and checkpoints in one Pebble batch (bounded: diskStore.commit),
// which it releases.
func (w *txnWrite) commit(ctx context.Context) error {
	for p, m := range w.metas {
		if err := w.b.Set(w.d.metaKey(p), m.encode(), nil); err != nil {
			w.b.Close()
			return err
		}
	}
	if w.d.hook != nil {
		w.d.hook(FlushBeforeCommit)
	}
	if err := w.d.commit(ctx, w.b, "write of a committed transaction's states"); err != nil {
		return err
	}
	if w.d.hook != nil {
		w.d.hook(FlushAfterCommit)
	}
	return nil
}

func (w *txnWrite) discard() { w.b.Close() }

// restoreWriter applies one partition's changelog records during a restore, in batches of
// restoreBatchBytes, each with the checkpoint of its last record. Used by one goroutine.
type restoreWriter struct {
	d       *diskStore
	p       int32
	meta    partMeta
	b       *pebble.Batch
	inBatch map[string]bool // keys written in the open batch → present after it
	// exact: look up whether a key exists before counting it (a tail restore, a few records);
	// a full restore into an empty partition does not (see partMeta.Keys)
	exact bool
	ctx   context.Context // the restore's: bounds a batch's commit at shutdown
	read  int64           // data records applied
	// the last record applied, hashed into the checkpoint at flush (hashing every record cost
	// a tenth of a restore); they alias fetch buffers, which franz-go never reuses
	lastKey, lastValue []byte
}

// restoreBatchBytes bounds one restore batch: large enough that a commit costs nothing per
// record, small next to the memtable so a batch never stalls on a flush alone.
const restoreBatchBytes = 4 << 20

func (d *diskStore) newRestoreWriter(ctx context.Context, p int32, m partMeta, exact bool) *restoreWriter {
	return &restoreWriter{d: d, p: p, meta: m, b: d.db.NewBatch(), inBatch: map[string]bool{}, exact: exact, ctx: ctx}
}

// put applies the record at offset: key's value (nil: a tombstone), the expiry to index (index)
// and the stream time it carries (hasST), as restoreIndex.times read them.
func (w *restoreWriter) put(offset int64, key, value []byte, t recTimes) error {
	present, seen := w.inBatch[string(key)]
	if !seen {
		if w.exact {
			var err error
			if present, err = w.d.exists(w.p, key); err != nil {
				return err
			}
		} else {
			present = false
		}
	}
	k := w.d.dataKey(w.p, string(key))
	if value == nil {
		if present {
			w.meta.Keys--
		}
		if err := w.b.Delete(k, nil); err != nil {
			return err
		}
	} else {
		if !present {
			w.meta.Keys++
		}
		if err := w.b.Set(k, value, nil); err != nil {
			return err
		}
		if t.index {
			if err := w.b.Set(w.d.indexKey(w.p, t.at, string(key)), nil, nil); err != nil {
				return err
			}
		}
	}
	if t.hasST && t.st > w.meta.StreamTime {
		w.meta.StreamTime = t.st
	}
	w.inBatch[string(key)] = value != nil
	w.meta.Next = offset + 1
	w.lastKey, w.lastValue = key, value
	w.read++
	if w.b.Len() >= restoreBatchBytes {
		return w.flush()
	}
	return nil
}

// flush commits the open batch with the checkpoint of its last record.
func (w *restoreWriter) flush() error {
	if w.b == nil {
		return w.d.brokenErr() // an earlier flush of this writer failed
	}
	if w.lastKey != nil {
		w.meta.LastHash = recordHash(w.lastKey, w.lastValue)
		w.lastKey, w.lastValue = nil, nil
	}
	if err := w.b.Set(w.d.metaKey(w.p), w.meta.encode(), nil); err != nil {
		return err
	}
	b := w.b
	w.b = nil // d.commit releases it, also when it gives up
	if err := w.d.commit(w.ctx, b, fmt.Sprintf("restore batch of partition %d", w.p)); err != nil {
		return err
	}
	w.b = w.d.db.NewBatch()
	clear(w.inBatch)
	return nil
}

func (w *restoreWriter) close() {
	if w.b != nil {
		w.b.Close()
	}
}

// ScanStore reads the persistent store under dir (of a stopped runner: the directory is locked
// while one runs) and calls fn with every key of stage and its committed changelog value, per
// partition in key order, and checkpoints with each partition's changelog offset (the next
// offset to read) and key count. For tests, benchmarks and an operator's inspection.
func ScanStore(dir, stage string, fn func(partition int32, key, value []byte) error, checkpoint func(partition int32, next, keys int64)) error {
	d, err := openDiskStore(context.Background(), dir, stage, DiskOptions{CacheBytes: 8 << 20, MemtableBytes: 4 << 20}, slog.Default())
	if err != nil {
		return err
	}
	defer d.close()
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'d'}, UpperBound: []byte{'e'}})
	if err != nil {
		return err
	}
	defer it.Close()
	pre := len(d.prefix('d', 0))
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < pre || !bytes.Equal(k[:pre-4], d.prefix('d', 0)[:pre-4]) {
			continue // another stage's key
		}
		if err := fn(int32(binary.BigEndian.Uint32(k[pre-4:pre])), k[pre:], it.Value()); err != nil {
			return err
		}
	}
	if checkpoint != nil {
		mit, err := d.db.NewIter(&pebble.IterOptions{LowerBound: d.prefix('m', 0), UpperBound: append(d.prefix('m', -1)[:pre-4], 0xff, 0xff, 0xff, 0xff, 0xff)})
		if err != nil {
			return err
		}
		defer mit.Close()
		for mit.First(); mit.Valid(); mit.Next() {
			if m, err := decodeMeta(mit.Value()); err == nil {
				checkpoint(int32(binary.BigEndian.Uint32(mit.Key()[pre-4:])), m.Next, m.Keys)
			}
		}
	}
	return it.Error()
}
