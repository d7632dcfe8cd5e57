package chaostest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/retailflow/retailflow/topology/internal/e2e"
)

// Faults of the persistent state store (issue 15). The suite's processors run with
// state.mode=pebble, each on its own directory that outlives its incarnations (harness.stateRoot),
// so every other fault of the table also restarts processors on the store the chart ships.
func init() {
	faults = append(faults,
		// SIGKILL after Kafka committed a transaction and before its states and checkpoints
		// reach Pebble: the store is one transaction behind, the restart must trust its
		// checkpoint and read that transaction back from the changelog's tail.
		fault{name: "sigkill-store-flush", short: true, inject: storeFlushKill("store-flush-before")},
		// SIGKILL right after Pebble's Commit(NoSync) returned: the batch's WAL record is still
		// in Pebble's buffer (NoSync does not even wake its flusher) or torn across a block the
		// flusher wrote. Pebble's recovery drops a torn tail record: the store is a suffix of
		// batches behind, each batch whole.
		fault{name: "sigkill-store-flush-after", inject: storeFlushKill("store-flush-after")},
		fault{name: "state-dir-deleted", inject: (*harness).stateDirDeleted},
		// the directory removed under a running instance: it must stop at its next write,
		// naming the directory, and its restart restores in full
		fault{name: "state-dir-deleted-running", inject: (*harness).stateDirDeletedRunning},
		// long: mounts a tmpfs (root), which the short version must not need
		fault{name: "state-dir-full", long: true, ordersX: 6, inject: (*harness).stateDirFull},
	)
}

// restoredRe parses the runner's "restored state" line (text log format).
// (slog quotes a list with more than one element: full="[0 1]").
var restoredRe = regexp.MustCompile(`msg="restored state" .*\bkeys=(\d+) records=(\d+) store=(\w+) full="?\[([0-9 ]*)\]"? tail="?\[([0-9 ]*)\]"?`)

// restore is one "restored state" line of a processor's log.
type restore struct {
	line              string
	records           string
	store, full, tail string
}

// restoresOf returns the restores logged since m by processor id's incarnations.
func (h *harness) restoresOf(m logMark, id string) []restore {
	var out []restore
	for _, l := range h.grepSince(m, `msg="restored state"`) {
		if !strings.HasPrefix(l, "run-"+id+"-") {
			continue
		}
		if s := restoredRe.FindStringSubmatch(l); s != nil {
			out = append(out, restore{line: l, records: s[2], store: s[3], full: s[4], tail: s[5]})
		}
	}
	return out
}

// waitRestored waits until processor id has logged a restore since m.
func (h *harness) waitRestored(m logMark, id string, limit time.Duration) ([]restore, error) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if rs := h.restoresOf(m, id); len(rs) > 0 {
			return rs, nil
		}
	}
	return nil, fmt.Errorf("processor %s logged no restore within %s", id, limit)
}

func (h *harness) needPebble() error {
	if h.stateRoot == "" {
		return errors.New("the processors run in memory (CHAOS_STATE_MODE=memory): a store fault tests nothing")
	}
	return nil
}

// storeFlushKill makes one processor SIGKILL itself at a store-flush step (killAtStep), then
// requires its restarted incarnation to restore from its own store: a disk restore that
// trusted the checkpoint of at least one partition (read only the tail).
func storeFlushKill(step string) func(h *harness, seg *segment) (string, error) {
	return func(h *harness, seg *segment) (string, error) {
		if err := h.needPebble(); err != nil {
			return "", err
		}
		note, err := h.killAtStep(step)
		if err != nil {
			return "", err
		}
		// killAtStep returns once the armed incarnation has died: every restore logged from
		// here on is its restarted successor's (the armed one restored too, before the kill,
		// possibly partitions new to it, in full)
		killed := h.mark()
		id := strings.Fields(strings.TrimPrefix(note, "instance "))[0]
		if _, err := h.waitRestored(killed, id, 90*time.Second); err != nil {
			return note, err
		}
		// The partitions whose checkpoints the store holds: those the incarnations before the
		// kill restored (the killed one wrote its transactions' states there).
		held := map[string]bool{}
		for _, r := range h.restoresOf(seg.mark, id) {
			if strings.HasPrefix(r.line, "run-"+id+"-") && !slices.ContainsFunc(h.restoresOf(killed, id), func(k restore) bool { return k.line == r.line }) {
				for _, p := range strings.Fields(r.full + " " + r.tail) {
					held[p] = true
				}
			}
		}
		// The restart may be assigned partitions its store never held (the range balancer
		// orders members by their new member ids): those restore in full, rightly. No
		// partition it held may restore in full — the kill must not cost the trust in the
		// checkpoints it left — and within 20 s a tail restore should show that trust.
		var rs []restore
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			rs = h.restoresOf(killed, id)
			for _, r := range rs {
				if r.store != "disk" {
					return note, fmt.Errorf("processor %s restored into %q, want the persistent store: %s", id, r.store, r.line)
				}
				for _, p := range strings.Fields(r.full) {
					if held[p] {
						return note, fmt.Errorf("processor %s restored partition %s in full after the kill, though its store held it: %s", id, p, r.line)
					}
				}
				if strings.TrimSpace(r.tail) != "" {
					// a checkpoint trusted after the kill (held lists only what this segment's
					// incarnations restored; the store may hold older partitions too)
					return fmt.Sprintf("%s; restart restored tail=[%s] full=[%s] (%s records)", note, r.tail, r.full, r.records), nil
				}
			}
		}
		return fmt.Sprintf("%s; the restart was given no partition its store held (%d restores, the first full=[%s] tail=[%s]): the tail trust was not exercised this time (TestDiskStoreCrashBetweenCommitAndWrite covers it)", note, len(rs), rs[0].full, rs[0].tail), nil
	}
}

// stateDirDeleted stops a processor (SIGTERM), deletes its state directory and starts it
// again: it must restore every partition it is given in full into a new store.
func (h *harness) stateDirDeleted(seg *segment) (string, error) {
	if err := h.needPebble(); err != nil {
		return "", err
	}
	time.Sleep(seg.produceFor / 4)
	ps := h.processors()
	s := ps[h.rng.IntN(len(ps))]
	id := s.ID
	if err := s.Stop(); err != nil {
		return "", err
	}
	dir := h.stateDir(id)
	// a Pebble store: MANIFEST-* and the marker file naming the current one (Pebble v2 writes
	// no CURRENT file)
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		h.sup.Start("run", id)
		return "", fmt.Errorf("processor %s left no Pebble store (MANIFEST-*) in %s to delete", id, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	m := h.mark()
	h.sup.Start("run", id)
	rs, err := h.waitRestored(m, id, 90*time.Second)
	if err != nil {
		return "", err
	}
	r := rs[0]
	if r.store != "disk" || strings.TrimSpace(r.full) == "" || strings.TrimSpace(r.tail) != "" {
		return "", fmt.Errorf("processor %s restored with its state directory deleted, want every partition in full: %s", id, r.line)
	}
	return fmt.Sprintf("instance %s stopped, %s deleted; restarted with full=[%s] (%s records)", id, filepath.Base(dir), r.full, r.records), nil
}

// stateDirDeletedRunning deletes a running processor's state directory while traffic flows.
// Pebble would write on into files without a name (nothing of it would survive a restart);
// `run` must stop by itself, non-zero, with an error naming state.dir, and its restart must
// restore every partition it is given in full into a new directory.
func (h *harness) stateDirDeletedRunning(seg *segment) (string, error) {
	if err := h.needPebble(); err != nil {
		return "", err
	}
	time.Sleep(seg.produceFor / 4)
	ps := h.processors()
	slot := ps[h.rng.IntN(len(ps))]
	id := slot.ID
	dir := h.stateDir(id)
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		return "", fmt.Errorf("processor %s has no Pebble store (MANIFEST-*) in %s to delete", id, dir)
	}
	slot.DrainExits()
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	deleted := time.Now()
	e, ok := waitExit(slot, 90*time.Second)
	if !ok {
		return "", fmt.Errorf("processor %s ran 90 s after its state directory %s was deleted without stopping", id, dir)
	}
	stopped := time.Since(deleted)
	failed := grepFile(e.Log, "(state.dir)")
	if e.Code == 0 || e.Signal != 0 || !strings.Contains(failed, dir) || !strings.Contains(failed, "deleted") {
		return "", fmt.Errorf("processor %s exited with status %d (signal %v) after its directory was deleted; want non-zero, its log naming %s: %q (log %s)", id, e.Code, e.Signal, dir, trimLog(failed), e.Log)
	}
	// the supervisor restarts it after a pause: every restore from here on is the restart's
	rs, err := h.waitRestored(h.mark(), id, 90*time.Second)
	if err != nil {
		return "", err
	}
	r := rs[0]
	if r.store != "disk" || strings.TrimSpace(r.full) == "" || strings.TrimSpace(r.tail) != "" {
		return "", fmt.Errorf("processor %s restarted after its directory was deleted, want every partition in full: %s", id, r.line)
	}
	return fmt.Sprintf("instance %s: %s deleted while running; stopped by itself after %s (exit %d); restarted with full=[%s] (%s records)",
		id, filepath.Base(dir), stopped.Round(100*time.Millisecond), e.Code, r.full, r.records), nil
}

// stateDirFull puts a processor's state directory on a 64 MiB tmpfs and fills it while traffic
// flows, with 1 MiB memtables so that Pebble needs the disk within seconds. Pebble does not
// fail a write on a full disk, it stalls it (its flushes fail and are retried); `run` must:
//   - stop by itself, non-zero, with an error naming the directory and ENOSPC, within
//     state.commit_timeout of the stall (the supervisor restarts it, as Kubernetes would);
//   - while the disk stays full, honour SIGTERM within the shutdown bound even when its store
//     is stalled (an incarnation whose Pebble reports the failing flush gets a SIGTERM);
//   - once space returns, restore (validate its store or wipe it) and continue.
//
// The other processors take its partitions meanwhile; the oracles then show that nothing was
// lost or doubled.
func (h *harness) stateDirFull(seg *segment) (string, error) {
	if err := h.needPebble(); err != nil {
		return "", err
	}
	ps := h.processors()
	s := ps[h.rng.IntN(len(ps))]
	id := s.ID
	dir := h.stateDir(id)
	if err := s.Stop(); err != nil {
		return "", err
	}
	h.mu.Lock()
	h.runExtra = map[string][]string{id: {"RETAILFLOW_STATE_MEMTABLE_BYTES=1048576"}}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.runExtra = nil
		h.mu.Unlock()
	}()
	// the mount hides the instance's store: it restores in full into the tmpfs
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		h.sup.Start("run", id)
		return "", fmt.Errorf("mount a 64 MiB tmpfs on %s (needs root): %v %s", dir, err, out)
	}
	h.t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() }) // after the processes are killed
	m := h.mark()
	slot := h.sup.Start("run", id)
	if _, err := h.waitRestored(m, id, 90*time.Second); err != nil {
		return "", err
	}
	time.Sleep(2 * time.Second)
	slot.DrainExits()
	filler := filepath.Join(dir, "filler")
	written, err := fill(filler)
	if err != nil {
		return "", err
	}
	full := time.Now()
	freeSpace := func() error {
		if err := os.Remove(filler); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	defer freeSpace()

	// 1. it stops by itself, with the error
	e, ok := waitExit(slot, 3*time.Minute)
	if !ok {
		return "", fmt.Errorf("processor %s ran 3 min on a full state directory (%d MiB filler) without stopping", id, written>>20)
	}
	stopped := time.Since(full)
	failed := grepFile(e.Log, "(state.dir)")
	if e.Code == 0 || e.Signal != 0 || !strings.Contains(failed, dir) || !strings.Contains(failed, "no space left on device") {
		return "", fmt.Errorf("processor %s on a full disk exited with status %d (signal %v); want a non-zero exit whose log names %s and ENOSPC: %q (log %s)", id, e.Code, e.Signal, dir, trimLog(failed), e.Log)
	}

	// 2. SIGTERM while the disk is still full: an incarnation whose store reports the failing
	// flush (or whose writes wait on it) must stop within the shutdown bound
	term := "no incarnation reached a stalled store within 90 s"
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
		log := slot.LogPath()
		if grepFile(log, "pebble background error") == "" || grepFile(log, "runtime stopped") != "" {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		slot.DrainExits()
		at := time.Now()
		if !slot.Signal(syscall.SIGTERM) {
			continue
		}
		var e e2e.Exit
		for e.Log != log {
			var ok bool
			if e, ok = waitExit(slot, 30*time.Second); !ok {
				return "", fmt.Errorf("processor %s did not stop within 30 s of SIGTERM with its store stalled on a full disk (log %s)", id, log)
			}
		}
		took := time.Since(at)
		if took > 15*time.Second {
			return "", fmt.Errorf("processor %s took %s to stop after SIGTERM with its store stalled, want ≤ 15 s (log %s)", id, took.Round(time.Millisecond), e.Log)
		}
		term = fmt.Sprintf("SIGTERM while stalled: exit %d after %s", e.Code, took.Round(100*time.Millisecond))
		break
	}

	// 3. space returns: it restores and continues
	freed := h.mark()
	if err := freeSpace(); err != nil {
		return "", err
	}
	rs, err := h.waitRestored(freed, id, 2*time.Minute)
	if err != nil {
		return "", fmt.Errorf("after space returned: %w", err)
	}
	r := rs[len(rs)-1]
	seg.after = func(verdict) error {
		if s := h.sup.Slot("run", id); s == nil || s.Pid() == 0 {
			return fmt.Errorf("processor %s is not running after space returned", id)
		}
		return nil
	}
	return fmt.Sprintf("instance %s, 64 MiB tmpfs filled: stopped by itself after %s: %q; %s; recovered with tail=[%s] full=[%s]",
		id, stopped.Round(time.Second), trimLog(failed), term, r.tail, r.full), nil
}

// waitExit waits up to limit for the next exit of a slot's incarnation.
func waitExit(s *e2e.Slot, limit time.Duration) (e2e.Exit, bool) {
	select {
	case e := <-s.Exits():
		return e, true
	case <-time.After(limit):
		return e2e.Exit{}, false
	}
}

// grepFile returns the first line of path containing needle (case-insensitive), or "".
func grepFile(path, needle string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(strings.ToLower(l), strings.ToLower(needle)) {
			return l
		}
	}
	return ""
}

// fill writes zeros to path until the file system is full (ENOSPC) and returns how many bytes.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("fill %s: %w", path, err)
		}
	}
}

// trimLog shortens a log line for the table's note.
func trimLog(l string) string {
	if i := strings.Index(l, "msg="); i >= 0 {
		l = l[i:]
	}
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return l
}
