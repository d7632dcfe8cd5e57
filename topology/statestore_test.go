package topology

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// restoreLog collects the runners' "restored state" log lines.
type restoreLog struct {
	mu    sync.Mutex
	lines []map[string]string
}

func (l *restoreLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *restoreLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *restoreLog) WithGroup(string) slog.Handler            { return l }
func (l *restoreLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "restored state" && r.Message != "standby copies caught up" && !strings.HasPrefix(r.Message, "state store not trusted") {
		return nil
	}
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	l.lines = append(l.lines, m)
	l.mu.Unlock()
	return nil
}

func (l *restoreLog) snapshot() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// restored sums the records of the restore lines from index from on, and says which were full.
func (l *restoreLog) restored(from int) (records int, full string, wiped []string) {
	for _, m := range l.snapshot()[from:] {
		if m["msg"] == "standby copies caught up" {
			continue
		}
		if m["msg"] != "restored state" {
			wiped = append(wiped, m["reason"])
			continue
		}
		n, _ := strconv.Atoi(m["records"])
		records += n
		full += m["full"]
	}
	return records, full, wiped
}

func newDiskFixture(t *testing.T) (*fixture, *restoreLog) {
	f := newFixture(t)
	f.stateDir = t.TempDir()
	rl := &restoreLog{}
	f.log = slog.New(rl)
	return f, rl
}

// waitReady waits until the runner owns every partition.
func waitReady(t *testing.T, rn *running) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if s := rn.r.Status(); rn.r.Ready() && len(s.Owned) == testPartitions {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("runner not ready: %+v", rn.r.Status())
}

// sumsOf is each key's expected sum.
func sumsOf(inputs map[string][]int64) map[string]int64 {
	out := map[string]int64{}
	for k, ns := range inputs {
		for _, n := range ns {
			out[k] += n
		}
	}
	return out
}

// checkDisk opens dir's store (the runner stopped) and compares every key of the stage with want.
func checkDisk(t *testing.T, dir string, want map[string]int64) {
	t.Helper()
	d, err := openDiskStore(context.Background(), dir, "sum", DiskOptions{}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	got := map[string]int64{}
	var keys int64
	for p := int32(0); p < testPartitions; p++ {
		m, ok, err := d.meta(p)
		if err != nil || !ok {
			t.Fatalf("partition %d has no checkpoint (%v)", p, err)
		}
		keys += m.Keys
		it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: d.prefix('d', p), UpperBound: d.prefix('d', p+1)})
		if err != nil {
			t.Fatal(err)
		}
		for it.First(); it.Valid(); it.Next() {
			n, _ := strconv.ParseInt(string(it.Value()), 10, 64)
			got[string(it.Key()[len(d.prefix('d', p)):])] = n
		}
		it.Close()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("store: %s = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) || int(keys) != len(want) {
		t.Errorf("store has %d keys (checkpoints count %d), want %d", len(got), keys, len(want))
	}
}

// firstRun makes a disk-store fixture in which instance "0", on an empty state directory,
// processes perKey inputs of each of the 6 keys (their sums checked) and stops.
func firstRun(t *testing.T, perKey int) (*fixture, *restoreLog, map[string][]int64) {
	t.Helper()
	f, rl := newDiskFixture(t)
	inputs := map[string][]int64{}
	f.feed(6, perKey, inputs)
	rn := f.start("0", nil, nil)
	checkSums(t, f.committed("out", 6*perKey), inputs)
	rn.stop(t)
	return f, rl, inputs
}

// restartAndFeed starts instance "0" again on its state directory, waits until its store is
// restored, feeds one more input to each of the 6 keys, checks that the sums continue exactly
// (outputs committed in all), stops it, and returns what that start restored.
func restartAndFeed(t *testing.T, f *fixture, rl *restoreLog, inputs map[string][]int64, outputs int) (records int, full string, wiped []string) {
	t.Helper()
	mark := len(rl.snapshot())
	rn := f.start("0", nil, nil)
	waitReady(t, rn)
	f.feed(6, 1, inputs)
	checkSums(t, f.committed("out", outputs), inputs)
	rn.stop(t)
	return rl.restored(mark)
}

// TestDiskStoreRestoresOnlyTheTail: after a clean stop, a restart reads only the changelog
// records written after the store's checkpoints (here: none), and a partition whose changelog
// got records from another owner meanwhile reads exactly those; the sums continue exactly.
func TestDiskStoreRestoresOnlyTheTail(t *testing.T) {
	f, rl, inputs := firstRun(t, 5)
	if n, full, _ := rl.restored(0); n != 0 || full != "[0 1 2]" {
		t.Fatalf("first start: restored %d records, full %s; want 0 records, all partitions full (empty store)", n, full)
	}
	checkDisk(t, f.instanceStateDir("0"), sumsOf(inputs))

	// Restart: nothing new in the changelog, so nothing is read.
	mark := len(rl.snapshot())
	f.feed(6, 2, inputs)
	rn := f.start("0", nil, nil)
	checkSums(t, f.committed("out", 42), inputs)
	rn.stop(t)
	if n, full, wiped := rl.restored(mark); n != 0 || full != "[]" || len(wiped) > 0 {
		t.Fatalf("clean restart: restored %d records (full %s, wiped %v), want a tail of 0", n, full, wiped)
	}
	checkDisk(t, f.instanceStateDir("0"), sumsOf(inputs))

	// Another instance (its own empty directory) processes while "0" is away: its changelog
	// records are the tail "0" reads when it comes back.
	rn1 := f.start("1", nil, nil)
	f.feed(6, 1, inputs)
	checkSums(t, f.committed("out", 48), inputs)
	rn1.stop(t)
	if n, full, _ := restartAndFeed(t, f, rl, inputs, 54); n != 6 || full != "[]" {
		t.Fatalf("restart after another owner: restored %d records (full %s), want the 6 the other owner wrote", n, full)
	}
	checkDisk(t, f.instanceStateDir("0"), sumsOf(inputs))
}

// tamper rewrites partition p's checkpoint in dir (the runner stopped).
func tamper(t *testing.T, dir string, p int32, change func(*partMeta), bogus bool) {
	t.Helper()
	d, err := openDiskStore(context.Background(), dir, "sum", DiskOptions{}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	m, ok, err := d.meta(p)
	if err != nil || !ok {
		t.Fatalf("partition %d: no checkpoint (%v)", p, err)
	}
	change(&m)
	w := d.newTxnWrite()
	if bogus {
		// the kind of write an aborted transaction would have left in a store that took
		// uncommitted writes
		if err := w.set(p, "bogus", []byte("999")); err != nil {
			t.Fatal(err)
		}
	}
	w.checkpoint(p, m)
	if err := w.commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDiskStoreNotTrustedIsRestoredFully: a store that is ahead of the changelog, belongs to
// another incarnation of the changelog topic, or recorded another record at its checkpoint is
// wiped and restored fully, and its state is exactly the changelog's.
func TestDiskStoreNotTrustedIsRestoredFully(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*partMeta)
		reason string
	}{
		{"ahead", func(m *partMeta) { m.Next += 5 }, "ahead of the changelog"},
		{"topic-recreated", func(m *partMeta) { m.TopicID[0]++ }, "re-created"},
		{"other-record", func(m *partMeta) { m.LastHash++ }, "differs from the one the store recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, rl, inputs := firstRun(t, 4)
			dir := f.instanceStateDir("0")
			var p int32 = 1
			tamper(t, dir, p, tc.change, true)

			n, full, wiped := restartAndFeed(t, f, rl, inputs, 30)
			if full != "[1]" || len(wiped) != 1 || !strings.Contains(wiped[0], tc.reason) {
				t.Fatalf("restore: full %s, wiped %v; want partition 1 wiped because %q", full, wiped, tc.reason)
			}
			if n == 0 {
				t.Errorf("partition 1 was restored from 0 records")
			}
			checkDisk(t, dir, sumsOf(inputs)) // "bogus" is gone
		})
	}
}

// TestDiskStoreCrashBetweenCommitAndWrite: the process dies after a transaction committed in
// Kafka and before (or while) its states reach the store — what a SIGKILL at that moment leaves
// is a store at the previous checkpoint (a Pebble checkpoint taken mid-transaction stands for
// it). Restarted on that directory, the runner restores only the tail (the transaction that
// committed after the snapshot) and every sum continues exactly.
func TestDiskStoreCrashBetweenCommitAndWrite(t *testing.T) {
	f, rl, inputs := firstRun(t, 3)

	// Hold the next transaction inside Process, snapshot the store there, let it commit.
	var once sync.Once
	entered, release := make(chan struct{}), make(chan struct{})
	rn := f.start("0", nil, func() {
		once.Do(func() { close(entered); <-release })
	})
	waitReady(t, rn)
	f.feed(6, 2, inputs)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no transaction started")
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := rn.r.disk.db.Checkpoint(crashed); err != nil {
		t.Fatal(err)
	}
	close(release)
	checkSums(t, f.committed("out", 30), inputs)
	rn.stop(t)

	// The restarted process finds the snapshot's directory.
	if err := os.RemoveAll(f.instanceStateDir("0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(crashed, f.instanceStateDir("0")); err != nil {
		t.Fatal(err)
	}
	n, full, wiped := restartAndFeed(t, f, rl, inputs, 36)
	if full != "[]" || len(wiped) > 0 {
		t.Fatalf("restart on the crashed store: full %s, wiped %v; want a tail restore", full, wiped)
	}
	// the held transaction's and any later ones' changelog records: one per key per transaction
	if n < 6 || n > 12 {
		t.Errorf("restart on the crashed store restored %d records, want the 6 to 12 written after the snapshot", n)
	}
	checkDisk(t, f.instanceStateDir("0"), sumsOf(inputs))
}

// TestDiskStoreDeletedWhileStopped: the state directory is gone when the runner starts again (a
// new volume, an operator's rm): it restores every partition fully and continues exactly.
func TestDiskStoreDeletedWhileStopped(t *testing.T) {
	f, rl, inputs := firstRun(t, 3)
	if err := os.RemoveAll(f.instanceStateDir("0")); err != nil {
		t.Fatal(err)
	}
	if n, full, _ := restartAndFeed(t, f, rl, inputs, 24); full != "[0 1 2]" || n < 6 {
		t.Fatalf("restart without a directory: restored %d records, full %s; want every partition in full", n, full)
	}
	checkDisk(t, f.instanceStateDir("0"), sumsOf(inputs))
}

// TestDiskStoreDeletedWhileRunning: the state directory deleted under a running instance (an
// operator's rm -rf, a volume re-provisioned). Pebble keeps writing into files that no longer
// have a name, so nothing it writes would survive a restart and its next flush fails. The
// runner must notice at its next write and stop with an error naming state.dir; the restart
// restores every partition in full into a new directory, and the sums continue exactly.
func TestDiskStoreDeletedWhileRunning(t *testing.T) {
	f, rl := newDiskFixture(t)
	inputs := map[string][]int64{}
	f.feed(6, 3, inputs)
	rn := f.start("0", nil, nil)
	checkSums(t, f.committed("out", 18), inputs)
	dir := f.instanceStateDir("0")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	f.feed(6, 1, inputs)
	err := rn.waitRun(t, 15*time.Second)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "state.dir") || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("Run returned %v after its state directory was deleted, want an error naming state.dir %s", err, dir)
	}
	mark := len(rl.snapshot())
	rn = f.start("0", nil, nil)
	waitReady(t, rn)
	f.feed(6, 1, inputs)
	checkSums(t, f.committed("out", 30), inputs)
	rn.stop(t)
	if n, full, _ := rl.restored(mark); full != "[0 1 2]" || n < 6 {
		t.Fatalf("restart after the deletion: restored %d records, full %s; want every partition in full", n, full)
	}
	checkDisk(t, dir, sumsOf(inputs))
}
