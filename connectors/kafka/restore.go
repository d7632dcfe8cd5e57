package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// RestoreProgress is called while a changelog partition is restored: read records of the range
// [start, end) so far, and done once the partition is complete.
type RestoreProgress func(partition int32, read, total int64, done bool)

// RestoreChangelog reads the given partitions of a compacted changelog from their log start to
// their stable end and calls put for every committed data record, in offset order per
// partition (value nil for a tombstone). key and value alias fetch buffers: put must copy what
// it keeps.
//
// Where it stops, and why: first it waits until the partition's last stable offset (LSO,
// kadm.ListCommittedOffsets with read_committed) equals its high watermark (HWM,
// kadm.ListEndOffsets), then it reads read_committed up to that HWM. Reading up to the LSO
// alone is not enough: a previous owner (a zombie, or a process killed mid-commit) may have an
// open transaction whose offset commit is already pending in the group; when that transaction
// later commits, the group's offsets include its work, and a store restored only up to the old
// LSO would lack its state. Waiting for LSO = HWM means every transaction that wrote to the
// partition has ended (committed or aborted: the broker aborts an abandoned one after its
// transaction timeout, or at once when its transactional id is re-initialised), so the
// restored state and the offsets the group will hand out describe the same history. The caller
// must make sure nothing it controls writes to these partitions meanwhile (the runtime keeps
// them paused). The wait is bounded by ctx.
//
// Control records are fetched (KeepControlRecords) so that the last offset before the HWM —
// always a commit or abort marker on a transactional changelog, never compacted away because it
// sits in the active segment — tells the reader that the partition is complete.
//
// The partitions are split over up to workers clients, each fetching, decompressing and calling
// put from its own goroutines: put and progress are called concurrently for different
// partitions, never concurrently for the same partition, and in offset order per partition. One
// client decompresses every batch from a broker on one goroutine, which bounds a restore to
// about one core; several use more. put gets the whole record (its headers too).
func RestoreChangelog(ctx context.Context, c Conn, topic string, partitions []int32, workers int,
	put func(*kgo.Record), progress RestoreProgress,
) error {
	if len(partitions) == 0 {
		return nil
	}
	return ReadToEnd(ctx, c, topic, ReadOptions{
		Partitions: partitions, Until: EndQuiescent, Workers: workers, Progress: progress,
		// large fetches: a restore reads whole partitions; 64 MiB bounds one response
		ClientOpts: []kgo.Opt{kgo.FetchMaxBytes(64 << 20), kgo.FetchMaxPartitionBytes(16 << 20), kgo.FetchMaxWait(200 * time.Millisecond)},
	}, func(r *kgo.Record) error {
		put(r)
		return nil
	})
}

// End says where ReadToEnd stops.
type End uint8

const (
	// EndStable is the last stable offset (LSO) of each partition when the read starts: every
	// record committed by then, nothing of a transaction still open. For readers that run beside
	// the writers (DLQ replay, `consume --from-beginning`, verifiers).
	EndStable End = iota
	// EndQuiescent waits until each partition's LSO equals its high watermark, then reads to it:
	// for a restore, which must include whatever a pending transaction commits (RestoreChangelog
	// says why). The wait is bounded by ctx.
	EndQuiescent
)

// ReadOptions configure ReadToEnd.
type ReadOptions struct {
	// Partitions to read; nil reads every partition of the topic.
	Partitions []int32
	Until      End
	// Workers is the number of clients the partitions are split over (0 or 1: one); fn is then
	// called concurrently for different partitions.
	Workers int
	// PollTimeout fails the read when a poll brings nothing within it (0: wait as long as ctx).
	PollTimeout time.Duration
	// Progress, if set, is called about once a second per unfinished partition and once when a
	// partition is complete.
	Progress RestoreProgress
	// ClientOpts are added to the fetching clients' options (fetch sizes).
	ClientOpts []kgo.Opt
	// Uncommitted reads read_uncommitted: fn sees aborted records too (and, with EndStable,
	// only up to the LSO). For verifiers that count what an aborted transaction wrote; every
	// reader that acts on the records reads committed.
	Uncommitted bool
	// From, if set, starts a partition's read at From[p] instead of its log start when From[p]
	// is later (a persistent store that only needs the tail after its checkpoint). Progress
	// then counts the records of [From[p], end).
	From map[int32]int64
}

// ErrUnknownTopic is wrapped by ReadToEnd's error when the topic does not exist.
var ErrUnknownTopic = errors.New("topic does not exist")

// ReadToEnd is the one way retailflow reads a topic to its stable end: it calls fn with every
// committed data record of the partitions, from the log start to the end o.Until names, in
// offset order per partition, read_committed (unless o.Uncommitted). Control records
// (transaction markers) are fetched (KeepControlRecords) so that the reader knows exactly when a
// partition is complete — the last offset before a transactional partition's end is always a
// marker — and fn never sees them. A record from a range that ends in a gap (compaction) ends that partition. fn's
// record aliases fetch buffers: copy what is kept. An error from fn stops the read and is
// returned.
func ReadToEnd(ctx context.Context, c Conn, topic string, o ReadOptions, fn func(*kgo.Record) error) error {
	admCl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	adm := kadm.NewClient(admCl)
	partitions := o.Partitions
	if partitions == nil {
		if partitions, err = topicPartitions(ctx, adm, topic); err != nil {
			admCl.Close()
			return err
		}
	}
	var starts, ends map[int32]int64
	if o.Until == EndQuiescent {
		starts, ends, err = stableRange(ctx, adm, topic, partitions)
	} else {
		starts, ends, err = committedRange(ctx, adm, topic, partitions)
	}
	admCl.Close()
	if err != nil {
		return err
	}
	for p, f := range o.From {
		if s, ok := starts[p]; ok && f > s {
			starts[p] = f
		}
	}
	if len(partitions) == 0 {
		return nil
	}
	workers := max(1, min(o.Workers, len(partitions)))
	groups := make([][]int32, workers)
	for i, p := range partitions {
		groups[i%workers] = append(groups[i%workers], p)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, ps := range groups {
		g.Go(func() error { return readRange(gctx, c, topic, ps, starts, ends, o, fn) })
	}
	return g.Wait()
}

// topicPartitions lists the partitions of topic.
func topicPartitions(ctx context.Context, adm *kadm.Client, topic string) ([]int32, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("read %s: metadata: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("read %s: %w", topic, ErrUnknownTopic)
	}
	if td.Err != nil {
		return nil, fmt.Errorf("read %s: metadata: %w", topic, td.Err)
	}
	ps := td.Partitions.Numbers()
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps, nil
}

// committedRange returns the log start and the last stable offset of every partition, now.
func committedRange(ctx context.Context, adm *kadm.Client, topic string, partitions []int32) (starts, ends map[int32]int64, err error) {
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = lso.Error()
	}
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, nil, fmt.Errorf("read %s: %w", topic, ErrUnknownTopic)
		}
		return nil, nil, fmt.Errorf("read %s: list stable offsets: %w", topic, err)
	}
	so, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = so.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: list start offsets: %w", topic, err)
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	for _, p := range partitions {
		l, ok := lso.Lookup(topic, p)
		if !ok {
			return nil, nil, fmt.Errorf("read %s: partition %d does not exist", topic, p)
		}
		s, _ := so.Lookup(topic, p)
		starts[p], ends[p] = s.Offset, l.Offset
	}
	return starts, ends, nil
}

// readRange reads partitions from starts to ends with one client; see ReadToEnd.
func readRange(ctx context.Context, c Conn, topic string, partitions []int32, starts, ends map[int32]int64,
	o ReadOptions, fn func(*kgo.Record) error,
) error {
	progress := o.Progress
	consume := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → last offset to read (end − 1)
	read := map[int32]int64{}
	for _, p := range partitions {
		start, end := starts[p], ends[p]
		if end <= start {
			if progress != nil {
				progress(p, 0, 0, true)
			}
			continue
		}
		consume[p] = kgo.NewOffset().At(start)
		remaining[p] = end - 1
	}
	if len(consume) == 0 {
		return nil
	}
	isolation := kgo.ReadCommitted()
	if o.Uncommitted {
		isolation = kgo.ReadUncommitted()
	}
	cl, err := kgo.NewClient(append(append(c.Options(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(isolation),
		kgo.KeepControlRecords(),
	), o.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()

	lastReport := time.Now()
	for len(remaining) > 0 {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if o.PollTimeout > 0 {
			pctx, cancel = context.WithTimeout(ctx, o.PollTimeout)
		}
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) && o.PollTimeout > 0 {
				err = fmt.Errorf("no record within %s (read %d of %d records): %w", o.PollTimeout, read[p], ends[p]-starts[p], err)
			}
			if fetchErr == nil && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("read %s partition %d: %w", t, p, err)
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		var fnErr error
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			last, ok := remaining[fp.Partition]
			if !ok || fnErr != nil {
				return
			}
			n := read[fp.Partition]
			for _, r := range fp.Records {
				if r.Offset > last { // the range ended in a gap: nothing of it is left
					delete(remaining, fp.Partition)
					break
				}
				n++
				if !r.Attrs.IsControl() {
					if fnErr = fn(r); fnErr != nil {
						return
					}
				}
				if r.Offset == last {
					delete(remaining, fp.Partition)
					break
				}
			}
			read[fp.Partition] = n
			if _, still := remaining[fp.Partition]; !still && progress != nil {
				progress(fp.Partition, n, ends[fp.Partition]-starts[fp.Partition], true)
			}
		})
		if fnErr != nil {
			return fnErr
		}
		if progress != nil && time.Since(lastReport) > time.Second {
			lastReport = time.Now()
			for p := range remaining {
				progress(p, read[p], ends[p]-starts[p], false)
			}
		}
	}
	return nil
}

// stableRange waits until LSO = HWM on every partition and returns the log start and end.
func stableRange(ctx context.Context, adm *kadm.Client, topic string, partitions []int32) (starts, ends map[int32]int64, err error) {
	backoff := 50 * time.Millisecond
	for {
		hwm, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = hwm.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("restore %s: list end offsets: %w", topic, err)
		}
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("restore %s: list stable offsets: %w", topic, err)
		}
		var open []int32
		ends = map[int32]int64{}
		for _, p := range partitions {
			h, ok := hwm.Lookup(topic, p)
			if !ok {
				return nil, nil, fmt.Errorf("restore %s: partition %d does not exist", topic, p)
			}
			l, _ := lso.Lookup(topic, p)
			if l.Offset < h.Offset {
				open = append(open, p)
			}
			ends[p] = h.Offset
		}
		if len(open) == 0 {
			break
		}
		sort.Slice(open, func(i, j int) bool { return open[i] < open[j] })
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("restore %s: partitions %v still have an open transaction: %w", topic, open, ctx.Err())
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
	so, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = so.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("restore %s: list start offsets: %w", topic, err)
	}
	starts = map[int32]int64{}
	for _, p := range partitions {
		s, _ := so.Lookup(topic, p)
		starts[p] = s.Offset
	}
	return starts, ends, nil
}
