package topology

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/retailflow/retailflow/schemas/headers"
)

// Time-driven eviction (DESIGN.md "Eviction").
//
// A stage that declares Processor.EventTime, Expiry and Expire gets keys evicted by time alone:
//
//   - Stream time: per partition, the highest event time (EventTime) of its committed input. It
//     moves only when a transaction commits, so a replay of the same input after a crash reaches
//     the same stream times. Every changelog record carries its partition's stream time
//     (headers.StreamTime) and the persistent store keeps it in the checkpoint, so a restore
//     resumes from it instead of from zero.
//   - Expiry index: each Put's expiry (Expiry on the state written) travels on its changelog
//     record (headers.Expires), so a restore indexes it without decoding the value (a record an
//     earlier version wrote, with no time headers, is decoded: restoreIndex); the runtime
//     indexes it at commit: in memory a min-heap per partition, on disk a key
//     'e' stage 0x00 partition(4) expiry(8) key with no value, written in the transaction's
//     Pebble batch. Entries are never updated in place: a key whose expiry moved (or that was
//     evicted by an event) leaves a stale entry, which the sweep drops when it comes due.
//   - Sweep: between transactions (Runner.sweep), due entries — expiry ≤ the watermark, stream
//     time − Options.AllowedLateness (an event up to that much behind the partition's newest
//     still finds its order), at most Options.SweepMaxKeys — are re-checked against the key's
//     committed, decoded state (Expire, at the watermark); those still due become tombstones in one small exactly-once
//     transaction (no input consumed), carrying the headers Expire returns (why; what a reader
//     must keep, e.g. an orphan's HELD_WITHOUT_ORDER exceptions for the ClickHouse sink). The
//     store applies the evictions and drops the swept index entries only after it commits.

// DefaultSweepInterval and DefaultSweepMaxKeys are Options.SweepInterval and SweepMaxKeys when zero.
const (
	DefaultSweepInterval = time.Second
	DefaultSweepMaxKeys  = 10000
	// DefaultAllowedLateness is `run`'s state.allowed_lateness when the config does not set it.
	DefaultAllowedLateness = 7 * 24 * time.Hour
	// sweepRounds bounds the consecutive full sweep transactions of one call: a backlog (the first
	// sweep after an upgrade, a large stream-time jump) is worked off without starving input.
	sweepRounds = 20
)

// expiryItem is one index entry: key may be evicted from at (unix nanoseconds, business time).
type expiryItem struct {
	at  int64
	key string
}

// expiryHeap is a partition's in-memory index, earliest first (container/heap).
type expiryHeap []expiryItem

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].key < h[j].key
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// index records key's expiry in the memory index (memory mode), unless that entry exists.
func (s *store[S]) index(key string, at int64) {
	if s.disk != nil {
		return
	}
	if old, ok := s.idxAt[key]; ok && old == at {
		return
	}
	if s.idxAt == nil {
		s.idxAt = map[string]int64{}
	}
	s.idxAt[key] = at
	heap.Push(&s.idx, expiryItem{at, key})
}

// advance moves the partition's stream time forward to t (never back).
func (s *store[S]) advance(t int64) {
	if t > s.streamTime {
		s.streamTime = t
	}
}

// restoreTimes applies what a changelog record read by a restore says about time (restoreIndex.times:
// its headers, or for a record of an earlier version its decoded state): its stream time, and
// its expiry (a value) or the key's removal (a tombstone).
func (s *store[S]) restoreTimes(key, value []byte, t recTimes) {
	if t.hasST {
		s.advance(t.st)
	}
	if value == nil {
		delete(s.idxAt, string(key))
		return
	}
	if t.index {
		s.index(string(key), t.at)
	} else {
		delete(s.idxAt, string(key)) // its heap entry, if any, is stale from now on
	}
}

// nanos is t in unix nanoseconds, clamped to what an int64 holds (years 1678–2262).
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, noStreamTime)):
		return noStreamTime
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// noteEventTime records a processed event's time for its partition's stream time, which the
// transaction's commit makes the partition's (commitStreamTimes).
func (r *Runner[E, S, O]) noteEventTime(p int32, ev E) {
	if r.beh.EventTime == nil {
		return
	}
	t := nanos(r.beh.EventTime(ev))
	if r.txn.evTime == nil {
		r.txn.evTime = map[int32]int64{}
	}
	if old, ok := r.txn.evTime[p]; !ok || t > old {
		r.txn.evTime[p] = t
	}
}

// streamTimeOf is p's stream time including the open transaction's events.
func (r *Runner[E, S, O]) streamTimeOf(p int32) int64 {
	t := r.stores[p].streamTime
	if v, ok := r.txn.evTime[p]; ok && v > t {
		t = v
	}
	return t
}

// nanosHeader is a header whose value is v in decimal, carved out of the transaction's chunks.
func (t *txnState) nanosHeader(key string, v int64) kgo.RecordHeader {
	t.headerBytes(20)
	start := len(t.hbuf)
	t.hbuf = strconv.AppendInt(t.hbuf, v, 10)
	return kgo.RecordHeader{Key: key, Value: t.hbuf[start:len(t.hbuf):len(t.hbuf)]}
}

// changelogHeaders appends the time headers of pe's changelog record to hs: its partition's
// stream time, and for a Put the state's expiry (which it also keeps in pe for the index), and
// a sweep tombstone's own headers.
func (r *Runner[E, S, O]) changelogHeaders(pe *pending[S], hs []kgo.RecordHeader) []kgo.RecordHeader {
	if r.beh.Expiry == nil {
		return hs
	}
	hs = append(hs, r.txn.nanosHeader(headers.StreamTime, r.streamTimeOf(pe.partition)))
	switch pe.op {
	case Put:
		if at, ok := r.beh.Expiry(pe.state); ok {
			pe.exp, pe.hasExp = nanos(at), true
			hs = append(hs, r.txn.nanosHeader(headers.Expires, pe.exp))
		}
	case Evict:
		hs = append(hs, pe.hdrs...)
	}
	return hs
}

// commitStreamTimes makes the committed transaction's event times its partitions' stream
// times, and indexes its Puts' expiries in memory (the disk index is written with the states).
func (r *Runner[E, S, O]) commitStreamTimes() {
	for p, t := range r.txn.evTime {
		if st := r.stores[p]; st != nil && t > st.streamTime {
			st.advance(t)
			r.sweepWanted = true
		}
	}
	clear(r.txn.evTime)
}

// pollContext is the run loop's poll context: when a sweep is wanted (the stream time moved, or
// the last sweep was full or skipped) the poll waits no longer than until the sweep may run, so
// an idle input does not hold back evictions its last records made due.
func (r *Runner[E, S, O]) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.beh.Expire == nil || !r.sweepWanted {
		return context.WithCancel(ctx)
	}
	wait := max(time.Until(r.lastSweep.Add(r.o.SweepInterval)), time.Millisecond)
	if r.sweepFull {
		wait = time.Millisecond
	}
	return context.WithTimeout(ctx, wait)
}

// watermark is what the sweep compares expiries with: p's stream time minus the allowed
// lateness (noStreamTime before any event).
func (r *Runner[E, S, O]) watermark(st *store[S]) int64 {
	if st.streamTime < noStreamTime+int64(r.o.AllowedLateness)+1 { // none yet, or not that far from it
		return noStreamTime
	}
	return st.streamTime - int64(r.o.AllowedLateness)
}

// sweepItem is a due index entry of partition p.
type sweepItem struct {
	p int32
	expiryItem
}

// sweep runs the due evictions (at most every Options.SweepInterval, or at once while the last
// sweep was full): each round collects up to SweepMaxKeys due entries, re-checks them against the
// committed state and writes the tombstones of those still due in one transaction.
func (r *Runner[E, S, O]) sweep(ctx context.Context, sess *kgo.GroupTransactSession) error {
	if r.beh.Expire == nil || len(r.stores) == 0 {
		return nil
	}
	if !r.sweepFull && time.Since(r.lastSweep) < r.o.SweepInterval {
		r.sweepWanted = true // pollContext wakes the loop for it
		return nil
	}
	r.lastSweep = time.Now()
	r.sweepFull, r.sweepWanted = false, false
	for range sweepRounds {
		if ctx.Err() != nil {
			return nil
		}
		r.mu.Lock()
		pending := len(r.events) > 0
		r.mu.Unlock()
		if pending {
			r.sweepFull, r.sweepWanted = true, true // the group changed: the loop applies that first
			return nil
		}
		full, err := r.sweepOnce(ctx, sess)
		if err != nil || !full {
			return err
		}
		r.sweepFull, r.sweepWanted = true, true
	}
	return nil
}

// dueItems collects up to limit index entries at or before their partition's stream time,
// earliest partition first. In memory they are popped (sweepOnce pushes back what it does not
// finish); on disk they stay until the sweep's batch deletes them.
func (r *Runner[E, S, O]) dueItems(limit int) ([]sweepItem, error) {
	parts := slices.Sorted(func(yield func(int32) bool) {
		for p := range r.stores {
			if !yield(p) {
				return
			}
		}
	})
	var items []sweepItem
	for _, p := range parts {
		st := r.stores[p]
		if r.disk != nil {
			got, err := r.disk.due(p, r.watermark(st), limit-len(items))
			if err != nil {
				return items, err
			}
			for _, it := range got {
				items = append(items, sweepItem{p, it})
			}
		} else {
			wm := r.watermark(st)
			for wm != noStreamTime && len(st.idx) > 0 && st.idx[0].at <= wm && len(items) < limit {
				items = append(items, sweepItem{p, heap.Pop(&st.idx).(expiryItem)})
			}
		}
		if len(items) >= limit {
			break
		}
	}
	return items, nil
}

// sweepOnce is one sweep round; full reports that it found as many due entries as it may take.
func (r *Runner[E, S, O]) sweepOnce(ctx context.Context, sess *kgo.GroupTransactSession) (full bool, err error) {
	items, err := r.dueItems(r.o.SweepMaxKeys)
	if err != nil {
		return false, fmt.Errorf("stage %s: sweep: %w", r.stage.Name, err)
	}
	if len(items) == 0 {
		return false, nil
	}
	full = len(items) >= r.o.SweepMaxKeys
	restore := func() { // memory: the popped entries go back (the transaction did not commit)
		if r.disk != nil {
			return
		}
		for _, it := range items {
			if st := r.stores[it.p]; st != nil {
				heap.Push(&st.idx, it.expiryItem)
			}
		}
	}
	var reindex []sweepItem
	t := &r.txn
	r.ov.reset()
	evict := 0
	for _, it := range items {
		st := r.stores[it.p]
		pe, ls := r.ov.find(st, it.p, it.key)
		if pe != nil {
			continue // two entries of one key: the first decided
		}
		var state S
		found := false
		if ls != nil {
			state, found = ls.state, true
		} else {
			raw, ok, err := st.lookup(it.key)
			if err != nil {
				restore()
				r.ov.reset()
				return false, fmt.Errorf("stage %s: sweep: %w", r.stage.Name, err)
			}
			if ok {
				if state, err = r.beh.State.Decode(raw); err != nil {
					// its next event dead-letters it (class state); the sweep cannot judge it, but
					// keeps it indexed (the swept entry is deleted): it is looked at again once the
					// watermark has moved on by a sweep interval, not dropped from the index for good
					again := r.undecodableAgain(r.watermark(st))
					reindex = append(reindex, sweepItem{it.p, expiryItem{again, it.key}})
					r.log.Warn("sweep: stored state does not decode; not evicted, re-indexed", "partition", it.p, "key", it.key,
						"again_at", time.Unix(0, again).UTC(), "err", err)
					continue
				}
				found = true
			}
		}
		if !found {
			continue // evicted by an event meanwhile: a stale entry
		}
		wm := r.watermark(st)
		ok, hs := r.beh.Expire(it.key, state, time.Unix(0, wm).UTC())
		if !ok {
			// a stale entry: its expiry moved (a later event, whose entry exists) or the policy
			// changed since it was indexed (then it is indexed again at its expiry now)
			if at, has := r.beh.Expiry(state); has && nanos(at) > wm && nanos(at) != it.at {
				reindex = append(reindex, sweepItem{it.p, expiryItem{nanos(at), it.key}})
			}
			continue
		}
		pe = r.ov.add(it.p, it.key, ls)
		pe.op, pe.existed, pe.hdrs = Evict, true, hs
		evict++
	}
	if evict == 0 {
		// only stale entries: nothing for Kafka; on disk they are deleted now
		r.ov.reset()
		if r.disk != nil {
			if err := r.disk.applyIndex(ctx, items, reindex); err != nil {
				return false, fmt.Errorf("stage %s: sweep: %w", r.stage.Name, err)
			}
		} else {
			r.memoryIndex(items, reindex)
		}
		return full, nil
	}
	fence := r.sweepFence(sess.Client(), items)
	if len(fence) == 0 {
		// nothing committed to fence with (cannot happen once a partition has committed input,
		// which is what moves its stream time): leave the entries for a later sweep
		restore()
		r.ov.reset()
		r.log.Warn("sweep: no committed input offset of the swept partitions to fence the transaction with; not sweeping", "tombstones", evict)
		return false, nil
	}
	if err := sess.Begin(); err != nil {
		restore()
		r.ov.reset()
		return false, fmt.Errorf("stage %s: begin sweep transaction: %w", r.stage.Name, err)
	}
	groupEvents := r.groupEvents.Load()
	t.begin(r.o.Now(), sess.Client())
	pctx := context.WithoutCancel(ctx)
	r.produceChangelog(pctx, sess)
	_ = sess.Client().Flush(pctx)
	produceErr := t.results.wait()
	committed, err := sess.End(fencedCommit(fence), kgo.TransactionEndTry(produceErr == nil))
	r.lastEnd = time.Now()
	if err != nil {
		r.ov.reset()
		return false, fmt.Errorf("stage %s: end sweep transaction (%d tombstones): %w", r.stage.Name, evict, err)
	}
	if !committed {
		restore()
		r.ov.reset()
		reason := "coordinator"
		switch {
		case produceErr != nil:
			reason = "produce"
		case r.groupEvents.Load() != groupEvents:
			reason = "rebalance"
		}
		r.m.Aborted(reason)
		r.log.Warn("sweep transaction aborted; the next sweep retries", "reason", reason, "tombstones", evict, "err", produceErr)
		r.sweepWanted = true // retried after the sweep interval, also while the input is idle
		return false, nil
	}
	r.sweepDrops, r.sweepReindex = items, reindex
	err = r.applyOverlay(ctx) // on disk, writeCommitted writes the index changes in its batch
	r.sweepDrops, r.sweepReindex = nil, nil
	if err != nil {
		return false, err
	}
	if r.disk == nil {
		r.memoryIndex(items, reindex)
	}
	r.evicted += int64(evict)
	r.log.Info("swept expired keys", "tombstones", evict, "entries", len(items))
	return full, nil
}

// undecodableAgain is when a due key whose state does not decode is due again: the watermark
// wm plus a sweep interval (of event time: the key is re-checked once input has moved the stream
// time on, not on every sweep of an idle partition), clamped to what an int64 holds.
func (r *Runner[E, S, O]) undecodableAgain(wm int64) int64 {
	step := max(int64(r.o.SweepInterval), 1)
	if wm > 1<<63-1-step {
		return 1<<63 - 1
	}
	return wm + step
}

// indexKey is the disk index entry of key in p expiring at: 'e' stage 0x00 partition(4)
// at(8, big endian, sign bit flipped: byte order is time order) key.
func (d *diskStore) indexKey(p int32, at int64, key string) []byte {
	b := binary.BigEndian.AppendUint64(d.prefix('e', p), uint64(at)^(1<<63))
	return append(b, key...)
}

// due lists up to limit of p's index entries at or before streamTime, earliest first.
func (d *diskStore) due(p int32, streamTime int64, limit int) ([]expiryItem, error) {
	if limit <= 0 || streamTime == noStreamTime {
		return nil, nil
	}
	lo := d.prefix('e', p)
	var hi []byte
	if streamTime == 1<<63-1 {
		hi = d.prefix('e', p+1) // everything of p: the bound below would wrap round to 0
	} else {
		hi = binary.BigEndian.AppendUint64(d.prefix('e', p), (uint64(streamTime)^(1<<63))+1)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("state store %s: partition %d expiry index: %w", d.dir, p, err)
	}
	defer it.Close()
	var out []expiryItem
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		k := it.Key()
		if len(k) < len(lo)+8 {
			continue
		}
		at := int64(binary.BigEndian.Uint64(k[len(lo):]) ^ (1 << 63))
		out = append(out, expiryItem{at, string(k[len(lo)+8:])})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("state store %s: partition %d expiry index: %w", d.dir, p, err)
	}
	return out, nil
}

// memoryIndex applies a finished sweep to the memory index: the swept entries are gone from
// the heap already; a key whose indexed expiry was one of them is no longer indexed (evicted, or
// stale), and re-indexed keys are pushed at their expiry now.
func (r *Runner[E, S, O]) memoryIndex(drops, reindex []sweepItem) {
	for _, it := range drops {
		if st := r.stores[it.p]; st != nil {
			if at, ok := st.idxAt[it.key]; ok && at == it.at {
				delete(st.idxAt, it.key)
			}
		}
	}
	for _, it := range reindex {
		if st := r.stores[it.p]; st != nil {
			st.index(it.key, it.at)
		}
	}
}

// indexBatch adds a sweep's index changes to b: the swept entries deleted, re-indexed keys set.
// A round's entries of a partition are a prefix of its index (due returns them in key order,
// from the start, and nothing else writes meanwhile), so they go as one range deletion from the
// partition's first index key to just after the last one swept: a point deletion per entry
// left a tombstone per evicted key at the head of the index, which every later round's
// iterator had to step over again (quadratic: a backlog of 2 M evictions ran at ≈1,600 keys/s).
func (d *diskStore) indexBatch(b *pebble.Batch, drops, reindex []sweepItem) error {
	last := map[int32][]byte{}
	for _, it := range drops {
		if k := d.indexKey(it.p, it.at, it.key); bytes.Compare(k, last[it.p]) > 0 {
			last[it.p] = k
		}
	}
	for p, k := range last {
		if err := b.DeleteRange(d.prefix('e', p), append(k, 0), nil); err != nil {
			return err
		}
	}
	for _, it := range reindex {
		if err := b.Set(d.indexKey(it.p, it.at, it.key), nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// applyIndex writes a sweep's index changes that evicted nothing (only stale entries) in one batch.
func (d *diskStore) applyIndex(ctx context.Context, drops, reindex []sweepItem) error {
	b := d.db.NewBatch()
	if err := d.indexBatch(b, drops, reindex); err != nil {
		b.Close()
		return err
	}
	return d.commit(ctx, b, "write of the expiry index")
}

// sweepFence is what fences a sweep transaction: the committed input offsets of the partitions it
// sweeps, committed again, unchanged, inside it. A transaction that consumed nothing sends no
// TxnOffsetCommit, and that request's check of the member's generation is the only thing that
// fences a zombie under KIP-447 (the transactional id is the instance's, not the partition's):
// without it, an instance that stalled past its session while its partitions moved on could
// commit tombstones over the new owner's states. With it, a stale member's sweep gets
// ILLEGAL_GENERATION (or UNKNOWN_MEMBER_ID) and its transaction aborts.
func (r *Runner[E, S, O]) sweepFence(cl *kgo.Client, items []sweepItem) map[string]map[int32]kgo.EpochOffset {
	parts := map[int32]bool{}
	for _, it := range items {
		parts[it.p] = true
	}
	fence := map[string]map[int32]kgo.EpochOffset{}
	for topic, ps := range cl.CommittedOffsets() {
		if !slices.Contains(r.stage.Inputs, Stream(topic)) {
			continue
		}
		for p, eo := range ps {
			if parts[p] && eo.Offset >= 0 {
				if fence[topic] == nil {
					fence[topic] = map[int32]kgo.EpochOffset{}
				}
				fence[topic][p] = eo
			}
		}
	}
	return fence
}

// fencedCommit is the context of a sweep transaction's End: its TxnOffsetCommit carries fence
// (franz-go builds the request from the uncommitted offsets, none in a sweep, and then lets the
// PreTxnCommitFnContext function add topics; it sends the request whenever it has any).
func fencedCommit(fence map[string]map[int32]kgo.EpochOffset) context.Context {
	return kgo.PreTxnCommitFnContext(context.Background(), func(req *kmsg.TxnOffsetCommitRequest) error {
		have := map[string]bool{}
		for _, t := range req.Topics {
			have[t.Topic] = true
		}
		for _, topic := range slices.Sorted(maps.Keys(fence)) {
			if have[topic] {
				continue
			}
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic = topic
			for _, p := range slices.Sorted(maps.Keys(fence[topic])) {
				eo := fence[topic][p]
				tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				tp.Partition, tp.Offset, tp.LeaderEpoch, tp.Metadata = p, eo.Offset, eo.Epoch, &req.MemberID
				t.Partitions = append(t.Partitions, tp)
			}
			req.Topics = append(req.Topics, t)
		}
		return nil
	})
}
