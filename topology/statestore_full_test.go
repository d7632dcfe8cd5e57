package topology

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// fullFS is a file system whose disk can be made full: while full is set, every write to a
// file other than a WAL (*.log) fails with ENOSPC, as on a real full volume where Pebble keeps
// writing into recycled WAL files (overwriting blocks the file already has needs no space) but
// cannot write a new sstable or MANIFEST. That is the combination the chaos fault state-dir-full
// met: flushes fail and are retried, memtables fill, and commits wait in Pebble's write stall
// instead of returning an error.
type fullFS struct {
	vfs.FS
	full    atomic.Bool
	refused atomic.Int64 // writes refused with ENOSPC
}

func (fs *fullFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &fullFile{File: f, fs: fs, name: name}, nil
}

func (fs *fullFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *fullFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *fullFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type fullFile struct {
	vfs.File
	fs   *fullFS
	name string
}

func (f *fullFile) refuse() error {
	f.fs.refused.Add(1)
	return &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
}

func (f *fullFile) Write(p []byte) (int, error) {
	if f.fs.full.Load() {
		return 0, f.refuse()
	}
	return f.File.Write(p)
}

func (f *fullFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.full.Load() {
		return 0, f.refuse()
	}
	return f.File.WriteAt(p, off)
}

// fillUntilStalled writes junk batches to d from a goroutine of its own until one of them has
// not returned for a second (Pebble's write stall: its memtables are full and cannot be
// flushed). The junk goes to a partition no test reads; the blocked commit is left behind (the
// test's cleanup clears the disk, and then it finishes).
func fillUntilStalled(t *testing.T, d *diskStore, fs *fullFS) {
	t.Helper()
	var last atomic.Int64
	var stop atomic.Bool
	done := make(chan struct{})
	last.Store(time.Now().UnixNano())
	t.Cleanup(func() {
		stop.Store(true)
		fs.full.Store(false)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
	go func() {
		defer close(done)
		junk := make([]byte, 64<<10)
		for i := 0; !stop.Load(); i++ {
			b := d.db.NewBatch()
			_ = b.Set(append(d.prefix('d', 999), byte(i), byte(i>>8), byte(i>>16)), junk, nil)
			if err := b.Commit(pebble.NoSync); err != nil {
				return
			}
			_ = b.Close()
			last.Store(time.Now().UnixNano())
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if time.Since(time.Unix(0, last.Load())) > time.Second && fs.refused.Load() > 0 {
			return
		}
	}
	t.Fatalf("the store did not stall on the full disk within 30 s (%d writes refused)", fs.refused.Load())
}

// newFullDiskRun starts a runner on a persistent store whose disk can be filled, with a short
// commit timeout, and waits until it owns every partition.
func newFullDiskRun(t *testing.T, commitTimeout time.Duration) (*fixture, *running, *fullFS, string) {
	f, _ := newDiskFixture(t)
	f.stateDir = abandonedDir(t)
	fs := &fullFS{FS: vfs.Default}
	t.Cleanup(func() { fs.full.Store(false) }) // lets an abandoned commit finish
	f.diskOpts = DiskOptions{MemtableBytes: 1 << 20, CommitTimeout: commitTimeout, fs: fs}
	rn := f.start("0", nil, nil)
	waitReady(t, rn)
	inputs := map[string][]int64{}
	f.feed(3, 2, inputs)
	checkSums(t, f.committed("out", 6), inputs)
	return f, rn, fs, f.instanceStateDir("0")
}

// TestDiskFullStopsTheRunner (issue 15, state-dir-full): with the state directory's disk full,
// Pebble stalls the commit of a committed transaction's states instead of returning an error.
// The runner must not hang: /readyz (Ready, Status.Store) says the store is stalled, and once
// the commit has waited State.CommitTimeout, Run returns one error naming the directory and
// the cause (ENOSPC), so the process exits non-zero and is restarted.
func TestDiskFullStopsTheRunner(t *testing.T) {
	f, rn, fs, dir := newFullDiskRun(t, 2*time.Second)
	fs.full.Store(true)
	fillUntilStalled(t, rn.r.disk, fs)
	f.produce("in-a", "k0", "1")

	notReady := false
	start := time.Now()
	var err error
wait:
	for {
		select {
		case err = <-rn.done:
			break wait
		case <-time.After(100 * time.Millisecond):
			if time.Since(start) > 20*time.Second {
				rn.cancel()
				t.Fatalf("Run still running 20 s after the store stalled (commit timeout 2 s); status %+v", rn.r.Status())
			}
			if s := rn.r.Status(); !rn.r.Ready() && s.Store != nil {
				notReady = true
			}
		}
	}
	took := time.Since(start)
	if err == nil {
		t.Fatal("Run returned nil on a stalled store, want an error")
	}
	var se *StoreStalledError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Run's error is not a StoreStalledError caused by ENOSPC: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "state.dir") || !strings.Contains(msg, "no space left on device") {
		t.Errorf("Run's error does not name state.dir %s and the cause: %v", dir, err)
	}
	if took > 10*time.Second {
		t.Errorf("Run took %s to stop after the stall, want about the commit timeout (2 s)", took)
	}
	if !notReady {
		t.Error("Ready/Status.Store never reported the stalled store while Run waited")
	}
	if s := rn.r.Status(); s.Store == nil || rn.r.Ready() {
		t.Errorf("after Run stopped: Ready %v, Status.Store %v; want not ready with the store's error", rn.r.Ready(), s.Store)
	}
	t.Logf("Run stopped %s after the stall: %v", took.Round(time.Millisecond), err)
}

// TestDiskFullHonoursShutdown: SIGTERM (the context cancelled) while Pebble stalls a commit
// ends Run within the shutdown bound, long before the commit timeout, with the store's error
// (the process cannot close a store whose commit never returned; it exits and the restart
// restores the tail).
func TestDiskFullHonoursShutdown(t *testing.T) {
	f, rn, fs, dir := newFullDiskRun(t, time.Minute)
	fs.full.Store(true)
	fillUntilStalled(t, rn.r.disk, fs)
	f.produce("in-a", "k0", "1")
	// wait until the runner's own commit is the one waiting
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := rn.r.Status().Store; err != nil && strings.Contains(err.Error(), "write of a committed transaction's states waiting") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status.Store never reported the stall: %+v", rn.r.Status())
		}
	}
	start := time.Now()
	rn.cancel()
	select {
	case err := <-rn.done:
		took := time.Since(start)
		if took > storeShutdownWait+2*time.Second {
			t.Errorf("Run took %s after cancel, want at most the shutdown wait %s", took, storeShutdownWait)
		}
		if err == nil || !strings.Contains(err.Error(), dir) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Run returned %v after cancel on a stalled store, want the store's error naming %s and ENOSPC", err, dir)
		}
		t.Logf("Run returned %s after cancel: %v", took.Round(time.Millisecond), err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s of cancel while the store stalled")
	}
}

// TestDiskStoreCommitWatchdog: the store's bounded commit on its own — a commit on a stalled
// store returns a StoreStalledError after CommitTimeout, the health check reports the stall
// meanwhile, and once the disk has room again a new store on the same directory opens and its
// checkpoint is intact (Kafka-side recovery is the restore's job).
func TestDiskStoreCommitWatchdog(t *testing.T) {
	dir := filepath.Join(abandonedDir(t), "state")
	fs := &fullFS{FS: vfs.Default}
	t.Cleanup(func() { fs.full.Store(false) })
	d, err := openDiskStore(context.Background(), dir, "sum", DiskOptions{MemtableBytes: 1 << 20, CommitTimeout: time.Second, fs: fs}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	w := d.newTxnWrite()
	_ = w.set(0, "k", []byte("1"))
	w.checkpoint(0, partMeta{Next: 1, Keys: 1})
	if err := w.commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.health(); err != nil {
		t.Fatalf("healthy store reports %v", err)
	}
	fs.full.Store(true)
	fillUntilStalled(t, d, fs)
	if err := d.health(); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("stalled store's health: %v, want an error with ENOSPC", err)
	}
	w = d.newTxnWrite()
	_ = w.set(0, "k", []byte("2"))
	w.checkpoint(0, partMeta{Next: 2, Keys: 1})
	start := time.Now()
	err = w.commit(context.Background())
	var se *StoreStalledError
	if !errors.As(err, &se) || se.Dir != dir || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("commit on a stalled store: %v, want a StoreStalledError for %s caused by ENOSPC", err, dir)
	}
	if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Errorf("commit gave up after %s, want the commit timeout (1 s)", took)
	}
	if err := d.close(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("close of a stalled store: %v, want an error naming %s (never a hang)", err, dir)
	}
}

// abandonedDir is a temporary directory for a store the test abandons (a stalled commit is
// never closed): Pebble may still be writing in it when the test ends, so it is removed on a
// best-effort basis, unlike t.TempDir, which fails the test when it cannot.
func abandonedDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "rf-full-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		time.Sleep(200 * time.Millisecond)
		_ = os.RemoveAll(dir)
	})
	return dir
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDiskFullHonoursShutdownWhenIdle: the same with no write of the runner's in progress —
// Pebble's Close would wait for ever for a flush that keeps failing, so Run's close of the
// store is bounded by the shutdown wait too, and reports the store.
func TestDiskFullHonoursShutdownWhenIdle(t *testing.T) {
	_, rn, fs, dir := newFullDiskRun(t, time.Minute)
	fs.full.Store(true)
	fillUntilStalled(t, rn.r.disk, fs)
	if rn.r.Ready() || rn.r.Status().Store == nil {
		t.Errorf("stalled store: Ready %v, Status.Store %v; want not ready", rn.r.Ready(), rn.r.Status().Store)
	}
	start := time.Now()
	rn.cancel()
	select {
	case err := <-rn.done:
		if took := time.Since(start); took > storeShutdownWait+2*time.Second {
			t.Errorf("Run took %s after cancel, want at most the shutdown wait %s", took, storeShutdownWait)
		}
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Run returned %v after cancel with a stalled store, want the store's error naming %s", err, dir)
		}
		t.Logf("Run returned after cancel: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20 s of cancel while the store stalled")
	}
}
