package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/headers"
)

// restoreReport is what a restore did to one partition, for the log line and the tests.
type restoreReport struct {
	records int64  // changelog data records applied
	full    bool   // the whole changelog was read (memory mode, or a store that was wiped or empty)
	reason  string // why a persistent store was restored fully ("" for a tail restore)
}

// errStoreMismatch is a restore's way of saying that the changelog record at a partition's
// checkpoint is not the one the store recorded: the history the store covers is not the
// changelog's any more.
type errStoreMismatch struct {
	partition int32
	offset    int64
}

func (e *errStoreMismatch) Error() string {
	return fmt.Sprintf("changelog record at offset %d of partition %d differs from the one the store recorded", e.offset, e.partition)
}

// changelogFacts are what the validation of a persistent store compares with.
type changelogFacts struct {
	topicID [16]byte
	start   map[int32]int64 // log start offsets
	stable  map[int32]int64 // last stable offsets
}

func (r *Runner[E, S, O]) changelogFacts(ctx context.Context, parts []int32) (changelogFacts, error) {
	topic := string(r.stage.Store)
	f := changelogFacts{start: map[int32]int64{}, stable: map[int32]int64{}}
	conn := r.o.Conn
	conn.Logger = nil
	cl, err := kgo.NewClient(conn.Options()...)
	if err != nil {
		return f, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return f, fmt.Errorf("changelog %s: metadata: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return f, fmt.Errorf("changelog %s: metadata: %v", topic, td.Err)
	}
	f.topicID = td.ID
	so, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = so.Error()
	}
	if err != nil {
		return f, fmt.Errorf("changelog %s: start offsets: %w", topic, err)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		return f, fmt.Errorf("changelog %s: stable offsets: %w", topic, err)
	}
	for _, p := range parts {
		s, ok1 := so.Lookup(topic, p)
		l, ok2 := lso.Lookup(topic, p)
		if !ok1 || !ok2 {
			return f, fmt.Errorf("changelog %s: partition %d does not exist", topic, p)
		}
		f.start[p], f.stable[p] = s.Offset, l.Offset
	}
	return f, nil
}

// distrust says why p's persistent store cannot be completed by a tail restore, or "" when
// it can: it must have a checkpoint, of this incarnation of the changelog topic, not ahead of
// the changelog's last stable offset (only committed state is ever written, so a checkpoint
// beyond it means the log lost records the store has: truncation, an unclean leader
// election), and not behind its log start (the records in between are gone).
func distrust(m partMeta, ok bool, f changelogFacts, p int32) string {
	switch {
	case !ok:
		return "no checkpoint"
	case m.TopicID != f.topicID:
		return "the changelog topic was re-created (its topic id differs from the store's)"
	case m.Next > f.stable[p]:
		return fmt.Sprintf("the store's checkpoint (offset %d) is ahead of the changelog's last stable offset %d", m.Next, f.stable[p])
	case m.Next < f.start[p]:
		return fmt.Sprintf("the changelog's log start %d is past the store's checkpoint %d", f.start[p], m.Next)
	}
	return ""
}

// restoreDisk validates each partition's persistent store against the changelog and restores
// what it lacks: the tail after a trusted checkpoint, or, after a wipe, everything. The first
// record a tail read returns is the one at checkpoint−1 (when the log still has it: compaction
// may have removed it, and then a later record of its key is in the tail): it must be the
// record the store recorded, or the partition is wiped and read again from the start.
//
// standby: a standby pass (standby.go) follows partitions this instance does not own: its
// progress is not the assignment's (no restore metrics).
//
// readCtx bounds the changelog reads (a standby round's is cancelled by an assignment); the
// store's writes use ctx.
func (r *Runner[E, S, O]) restoreDisk(ctx, readCtx context.Context, parts []int32, fresh map[int32]*store[S], standby bool) (map[int32]restoreReport, error) {
	facts, err := r.changelogFacts(readCtx, parts)
	if err != nil {
		return nil, err
	}
	reasons := map[int32]string{}
	ix := newRestoreIndex(r)
	defer ix.report(parts)
	progress := r.m.RestoreProgress
	if standby {
		progress = nil
	}
	for attempt := 0; ; attempt++ {
		writers := map[int32]restoreSink{}
		verify := map[int32]*int64{} // offset of the record to compare, −1 once compared
		from := map[int32]int64{}
		for _, p := range parts {
			m, ok, err := r.disk.meta(p)
			if err != nil {
				return nil, err
			}
			why := reasons[p]
			if why == "" {
				why = distrust(m, ok, facts, p)
			}
			if why != "" {
				if ok {
					r.log.Warn("state store not trusted: wiping the partition and restoring it fully", "partition", p, "reason", why, "dir", r.disk.dir)
				}
				if err := r.disk.wipe(ctx, p); err != nil {
					return nil, err
				}
				reasons[p] = why
				// a full restore into the empty partition: sorted sstables, ingested (ingestWriter)
				writers[p] = r.disk.newIngestWriter(ctx, p, partMeta{TopicID: facts.topicID, Next: facts.start[p], StreamTime: noStreamTime})
				continue
			}
			writers[p] = r.disk.newRestoreWriter(ctx, p, m, true)
			at := int64(-1)
			from[p] = m.Next
			if m.Next > 0 && m.Next-1 >= facts.start[p] {
				at = m.Next - 1
				from[p] = at
			}
			verify[p] = &at
		}
		rctx, cancel := context.WithTimeout(readCtx, r.o.RestoreTimeout)
		err := kafka.ReadToEnd(rctx, r.o.Conn, string(r.stage.Store), kafka.ReadOptions{
			Partitions: parts, Until: kafka.EndQuiescent, Workers: runtime.GOMAXPROCS(0), Progress: progress, From: from,
			// smaller fetches than the memory restore's: a response and its decompressed batches
			// are the restore's largest allocation (64 MiB responses made a 2 M-record restore
			// peak at 1.6 GB), and Pebble, not the fetch size, bounds the rate here
			ClientOpts: []kgo.Opt{kgo.FetchMaxBytes(16 << 20), kgo.FetchMaxPartitionBytes(4 << 20), kgo.FetchMaxWait(200 * time.Millisecond)},
		}, func(rec *kgo.Record) error {
			w := writers[rec.Partition]
			if at := verify[rec.Partition]; at != nil && *at >= 0 {
				want := *at
				*at = -1
				if rec.Offset == want {
					if m, _ := w.state(); recordHash(rec.Key, rec.Value) != m.LastHash {
						return &errStoreMismatch{rec.Partition, rec.Offset}
					}
					return nil // applied already
				}
			}
			return w.put(rec.Offset, rec.Key, rec.Value, ix.times(rec.Partition, rec.Key, rec.Value, rec.Headers))
		})
		cancel()
		if err == nil {
			for _, p := range parts {
				w := writers[p]
				if _, read := w.state(); read > 0 || reasons[p] != "" {
					err = errors.Join(err, w.flush()) // a wiped partition gets its checkpoint even when empty
				}
			}
		}
		for _, w := range writers {
			w.close()
		}
		var mm *errStoreMismatch
		if errors.As(err, &mm) && attempt < 2 {
			reasons[mm.partition] = mm.Error() // the next round logs, wipes and reads it from the start
			continue
		}
		if err != nil {
			return nil, err
		}
		out := map[int32]restoreReport{}
		for _, p := range parts {
			m, read := writers[p].state()
			fresh[p] = newDiskStore[S](r.disk, p, m)
			out[p] = restoreReport{records: read, full: reasons[p] != "", reason: reasons[p]}
		}
		return out, nil
	}
}

// restoreIndex is what a restore of a stage that evicts by time (Processor.Expire) reads from
// each changelog record: the partition's stream time and, for a value, the key's expiry. This
// version writes both as headers (rf.stream-time on every record, rf.expires on a Put whose
// state has an expiry), so a record with rf.stream-time and no rf.expires is a state not
// evicted by time. A record with neither was written by an earlier version, which wrote no time
// headers: its state is decoded with the stage's codec and its expiry computed with the
// stage's Expiry, so the population that existed before the upgrade is indexed too (the full
// restore after the upgrade would otherwise index nothing of it, and those keys would never
// expire). A state that does not decode is not indexed (its next event dead-letters it, class
// state) and is logged, with its key and partition. Shared by a restore's workers.
type restoreIndex struct {
	expiry func(value []byte) (at int64, ok bool, err error)
	log    *slog.Logger
	// decoded counts the values indexed by decoding (no headers), undecodable those that failed
	decoded, undecodable atomic.Int64
}

// maxUndecodableLogged bounds the per-key log lines of undecodable states in one restore.
const maxUndecodableLogged = 20

func newRestoreIndex[E, S, O any](r *Runner[E, S, O]) *restoreIndex {
	if r.beh.Expire == nil {
		return nil
	}
	return &restoreIndex{log: r.log, expiry: func(value []byte) (int64, bool, error) {
		s, err := r.beh.State.Decode(value)
		if err != nil {
			return 0, false, err
		}
		at, ok := r.beh.Expiry(s)
		return nanos(at), ok, nil
	}}
}

// recordTimes reads a changelog record's time headers: its expiry (rf.expires) and stream time
// (rf.stream-time), each with whether it is present and a decimal int64.
func recordTimes(hs []kgo.RecordHeader) (exp int64, hasExp bool, st int64, hasST bool) {
	for _, h := range hs {
		switch h.Key {
		case headers.Expires:
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			exp, hasExp = v, err == nil
		case headers.StreamTime:
			v, err := strconv.ParseInt(string(h.Value), 10, 64)
			st, hasST = v, err == nil
		}
	}
	return exp, hasExp, st, hasST
}

// recTimes is what a changelog record read by a restore says about time: the key's expiry, to
// index (index), and the partition's stream time (hasST).
type recTimes struct {
	at    int64
	index bool
	st    int64
	hasST bool
}

// times is what the record of key in partition p says about time. A nil restoreIndex says
// nothing (the stage does not evict by time).
func (ix *restoreIndex) times(p int32, key, value []byte, hs []kgo.RecordHeader) recTimes {
	if ix == nil {
		return recTimes{}
	}
	var t recTimes
	t.at, t.index, t.st, t.hasST = recordTimes(hs)
	if value == nil || t.index || t.hasST {
		t.index = t.index && value != nil
		return t
	}
	// written by a version before the time headers: the state itself says when it expires
	at, ok, err := ix.expiry(value)
	if err != nil {
		if n := ix.undecodable.Add(1); n <= maxUndecodableLogged {
			ix.log.Warn("restore: changelog value without rf.expires does not decode; not indexed for eviction by time",
				"partition", p, "key", string(key), "err", err)
		}
		return recTimes{}
	}
	ix.decoded.Add(1)
	return recTimes{at: at, index: ok}
}

// report logs what the restore indexed by decoding, if anything.
func (ix *restoreIndex) report(parts []int32) {
	if ix == nil {
		return
	}
	if d, u := ix.decoded.Load(), ix.undecodable.Load(); d > 0 || u > 0 {
		ix.log.Info("restore: indexed states written without time headers (an earlier version) by decoding them",
			"partitions", parts, "decoded", d, "undecodable", u)
	}
}
