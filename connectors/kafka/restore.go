package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// RestoreProgress is called while a changelog partition is restored: read records of the range
// [start, end) so far, and done once the partition is complete.
type RestoreProgress func(partition int32, read, total int64, done bool)

// RestoreChangelog reads the given partitions of a compacted changelog from their log start to
// their stable end and calls put for every committed data record, in offset order per
// partition (value nil for a tombstone). key and value alias fetch buffers: put must copy what
// it keeps. put is called from one goroutine.
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
func RestoreChangelog(ctx context.Context, c Conn, topic string, partitions []int32,
	put func(partition int32, key, value []byte), progress RestoreProgress,
) error {
	return RestoreChangelogConcurrently(ctx, c, topic, partitions, 1, put, progress)
}

// RestoreChangelogConcurrently is RestoreChangelog with the partitions split over up to
// workers clients, each fetching, decompressing and calling put from its own goroutines: put
// and progress are called concurrently for different partitions, never concurrently for the
// same partition, and in offset order per partition. One client decompresses every batch from
// a broker on one goroutine, which bounds a restore to about one core; several use more.
func RestoreChangelogConcurrently(ctx context.Context, c Conn, topic string, partitions []int32, workers int,
	put func(partition int32, key, value []byte), progress RestoreProgress,
) error {
	if len(partitions) == 0 {
		return nil
	}
	admCl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return fmt.Errorf("restore %s: %w", topic, err)
	}
	adm := kadm.NewClient(admCl)
	starts, ends, err := stableRange(ctx, adm, topic, partitions)
	admCl.Close()
	if err != nil {
		return err
	}
	workers = max(1, min(workers, len(partitions)))
	groups := make([][]int32, workers)
	for i, p := range partitions {
		groups[i%workers] = append(groups[i%workers], p)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, ps := range groups {
		g.Go(func() error { return restoreRange(gctx, c, topic, ps, starts, ends, put, progress) })
	}
	return g.Wait()
}

// restoreRange reads partitions from starts to ends with one client; see RestoreChangelog.
func restoreRange(ctx context.Context, c Conn, topic string, partitions []int32, starts, ends map[int32]int64,
	put func(partition int32, key, value []byte), progress RestoreProgress,
) error {
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
	cl, err := kgo.NewClient(append(c.Options(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// large fetches: a restore reads whole partitions; 64 MiB bounds one response
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
		kgo.FetchMaxWait(200*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("restore %s: %w", topic, err)
	}
	defer cl.Close()

	lastReport := time.Now()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restore %s: %w", topic, err)
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("restore %s partition %d: %w", t, p, err)
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			last, ok := remaining[fp.Partition]
			if !ok {
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
					put(fp.Partition, r.Key, r.Value)
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
