package topology

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
//     it drops them), and runs restoreDisk on them — the assignment's own restore: the store is
//     validated against the changelog (topic id, stable offset, log start, the record at the
//     checkpoint), and then the tail after the checkpoint is read read_committed up to the last
//     stable offset, or, when the store is not trusted or empty, the partition is wiped and
//     read whole. So a standby store only ever holds committed changelog records, with the
//     checkpoint of the last one, exactly what a restore after a clean stop starts from.
//   - restoreMu serialises those passes with the assignments' restores, so one partition is
//     never written by both. No pass starts while an assignment waits for its restore, and an
//     assignment cancels the pass in progress (onAssigned): the
//     assignment's restore waits for it to stop, not to finish; what the pass had flushed is
//     kept (each flush carries its checkpoint), the rest is read again by the assignment.
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

// standbyPass brings the standby copies up to the changelog's last stable offset.
func (r *Runner[E, S, O]) standbyPass(ctx context.Context) error {
	n, err := r.changelogPartitions(ctx)
	if err != nil {
		return err
	}
	r.restoreMu.Lock()
	defer r.restoreMu.Unlock()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	if !r.joined || len(r.restoring) > 0 {
		// the assignment's restore goes first: a pass started now would make it wait (an
		// assignment that arrives during a pass cancels it instead)
		r.mu.Unlock()
		return nil
	}
	var follow []int32
	for p := int32(0); p < n; p++ {
		if !r.ownedParts[p] && !r.restoring[p] && !r.heldParts[p] {
			follow = append(follow, p)
		}
	}
	r.standbyCancel = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.standbyCancel = nil
		r.mu.Unlock()
	}()
	if len(follow) == 0 {
		return nil
	}
	began := time.Now()
	reports, err := r.restoreDisk(pctx, follow, map[int32]*store[S]{}, true)
	if err != nil {
		if pctx.Err() != nil && ctx.Err() == nil {
			r.log.Debug("standby pass interrupted by an assignment", "partitions", follow)
			return nil
		}
		return err
	}
	var records int64
	var full []int32
	for _, p := range follow {
		records += reports[p].records
		if reports[p].full {
			full = append(full, p)
		}
	}
	r.m.StandbyCaughtUp(len(follow), records, time.Since(began))
	lvl := r.log.Debug
	if len(full) > 0 {
		lvl = r.log.Info
	}
	lvl("standby copies caught up", "partitions", follow, "records", records, "full", full, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// changelogPartitions is the number of partitions of the stage's changelog.
func (r *Runner[E, S, O]) changelogPartitions(ctx context.Context) (int32, error) {
	topic := string(r.stage.Store)
	conn := r.o.Conn
	conn.Logger = nil
	cl, err := kgo.NewClient(conn.Options()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("changelog %s: metadata: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return 0, fmt.Errorf("changelog %s: metadata: %v", topic, td.Err)
	}
	return int32(len(td.Partitions)), nil
}
