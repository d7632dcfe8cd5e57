package topology

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
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
func (r *Runner[E, S, O]) restoreDisk(ctx context.Context, parts []int32, fresh map[int32]*store[S]) (map[int32]restoreReport, error) {
	facts, err := r.changelogFacts(ctx, parts)
	if err != nil {
		return nil, err
	}
	reasons := map[int32]string{}
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
		rctx, cancel := context.WithTimeout(ctx, r.o.RestoreTimeout)
		err := kafka.ReadToEnd(rctx, r.o.Conn, string(r.stage.Store), kafka.ReadOptions{
			Partitions: parts, Until: kafka.EndQuiescent, Workers: runtime.GOMAXPROCS(0), Progress: r.m.RestoreProgress, From: from,
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
			return w.put(rec.Offset, rec.Key, rec.Value, rec.Headers, r.beh.Expire != nil)
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
