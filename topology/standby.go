package topology

import (
	"context"
	"errors"
	"time"
)

// Warm standbys (Options.Standby). With a persistent store, a partition that moves to an
// instance which never owned it restores its whole changelog before the first event is
// processed: at 2 M orders that is minutes (bench/RESULTS.md). Kafka Streams answers with
// standby replicas placed by its assignor; here the group's balancer stays the range balancer
// (co-partitioning), and an instance with Standby follows every changelog partition it does
// not own:
//
//   - Every StandbyInterval a goroutine takes the partitions that are neither owned, nor being
//     restored, nor still held by the run loop (heldParts: installed stores it may write until
//     it drops them), standbyGroup at a time, and runs restoreDisk on them — the assignment's
//     own restore: the store is
//     validated against the changelog (topic id, stable offset, log start, the record at the
//     checkpoint), and then the tail after the checkpoint is read read_committed up to the last
//     stable offset, or, when the store is not trusted or empty, the partition is wiped and
//     read whole. So a standby store only ever holds committed changelog records, with the
//     checkpoint of the last one, exactly what a restore after a clean stop starts from.
//   - restoreMu serialises those rounds with the assignments' restores, so one partition is
//     never written by both. No round starts while an assignment waits for its restore, and an
//     assignment cancels the read of the round in progress (onAssigned, and the run loop again
//     before it takes restoreMu): the assignment's restore waits for the round to stop, not to
//     finish; what the round had flushed is kept (each flush carries its checkpoint), the rest
//     is read again by the assignment. Only the read is cancelled: a store write keeps Run's
//     context, so a write in a stall is not given up on (which breaks the store) because of a
//     rebalance.
//   - Nothing else changes: an assigned partition is restored exactly as without standbys, the
//     tail it reads is only shorter. The sweep runs on owned stores only; the owners' sweep
//     tombstones reach the standby copies through the changelog.

// DefaultStandbyInterval is Options.StandbyInterval when zero.
const DefaultStandbyInterval = 5 * time.Second

// followStandbys runs standby passes every StandbyInterval until ctx is done.
func (r *Runner[E, S, O]) followStandbys(ctx context.Context) {
	t := time.NewTicker(r.o.StandbyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.standbyPass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("standby pass failed; the next one retries", "err", err)
		}
	}
}

// standbyGroup is the number of partitions one round of a pass restores under restoreMu: it
// bounds a first pass's memory (a full restore holds a chunk of up to state.memtable_bytes per
// partition) and lets an assignment's restore in between rounds.
const standbyGroup = 2

// errStandbyInterrupted: an assignment cancelled the round's read.
var errStandbyInterrupted = errors.New("standby pass interrupted by an assignment")

// StandbyMetrics is implemented by a Metrics that also counts standby passes
// (Options.Standby); the runtime checks for it, so Metrics implementations need not.
type StandbyMetrics interface {
	// StandbyCaughtUp is one standby pass that caught up with the changelog: the partitions it
	// followed and the records it copied into the store.
	StandbyCaughtUp(partitions int, records int64, took time.Duration)
}

// standbyPass brings the standby copies up to the changelog, a group of partitions at a time.
func (r *Runner[E, S, O]) standbyPass(ctx context.Context) error {
	began := time.Now()
	var followed, full []int32
	var records int64
	done := map[int32]bool{}
	for {
		reports, group, err := r.standbyRound(ctx, done)
		if errors.Is(err, errStandbyInterrupted) {
			r.log.Debug("standby pass interrupted by an assignment", "partitions", group)
			return nil
		}
		if err != nil {
			return err
		}
		if len(group) == 0 {
			break
		}
		for _, p := range group {
			done[p] = true
			followed = append(followed, p)
			records += reports[p].records
			if reports[p].full {
				full = append(full, p)
			}
		}
	}
	if len(followed) == 0 {
		return nil
	}
	if m, ok := r.m.(StandbyMetrics); ok {
		m.StandbyCaughtUp(len(followed), records, time.Since(began))
	}
	lvl := r.log.Debug
	if len(full) > 0 {
		lvl = r.log.Info
	}
	lvl("standby copies caught up", "partitions", followed, "records", records, "full", full, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// stopStandbyReadLocked cancels the changelog read of the standby round in progress, if any,
// so that an assignment's restore waits for the round to stop, not to finish. r.mu is held.
func (r *Runner[E, S, O]) stopStandbyReadLocked() {
	if r.standbyCancel != nil {
		r.standbyCancel()
	}
}

// standbyRound restores the next standbyGroup partitions to follow that are not in done, under
// restoreMu; it returns no group when none is left or an assignment waits. An assignment
// cancels only the round's read: the store's writes keep ctx (Run's), so one that is in a
// write stall is not given up on (diskStore.bounded marks the store broken when it gives up).
func (r *Runner[E, S, O]) standbyRound(ctx context.Context, done map[int32]bool) (map[int32]restoreReport, []int32, error) {
	r.restoreMu.Lock()
	defer r.restoreMu.Unlock()
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	if !r.joined || len(r.restoring) > 0 {
		// the assignment's restore goes first: a round started now would make it wait (an
		// assignment that arrives during a round cancels its read instead)
		r.mu.Unlock()
		return nil, nil, nil
	}
	var group []int32
	for p := int32(0); p < int32(r.partitions) && len(group) < standbyGroup; p++ {
		if !done[p] && !r.ownedParts[p] && !r.restoring[p] && !r.heldParts[p] {
			group = append(group, p)
		}
	}
	r.standbyCancel = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.standbyCancel = nil
		r.mu.Unlock()
	}()
	if len(group) == 0 {
		return nil, nil, nil
	}
	reports, err := r.restoreDisk(ctx, readCtx, group, map[int32]*store[S]{}, true)
	if err != nil && readCtx.Err() != nil && ctx.Err() == nil {
		return nil, group, errStandbyInterrupted
	}
	return reports, group, err
}
