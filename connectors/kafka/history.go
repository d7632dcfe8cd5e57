package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HistorySpec names what CheckTopicHistory compares with the fingerprint recorded at the
// first start: the group's inputs, its compacted changelog and the other topics it writes.
type HistorySpec struct {
	Group     string
	Key       string // the fingerprint record's key (the stage name)
	Inputs    []string
	Changelog string
	Outputs   []string // outputs and the DLQ: their identity and partition count are recorded too
	// SkipCommittedCheck leaves out the committed-offset-beyond-the-end check (the operator
	// chose an explicit offset reset, which handles it).
	SkipCommittedCheck bool
}

// FingerprintTopic is the compacted one-partition topic that holds the fingerprint of the
// topics a stage uses, beside its changelog.
func FingerprintTopic(changelog string) string { return changelog + ".fingerprint" }

// FingerprintSpec is the TopicSpec of FingerprintTopic(changelog).
func FingerprintSpec(changelog string, rf int16) TopicSpec {
	return TopicSpec{Name: FingerprintTopic(changelog), Partitions: 1, ReplicationFactor: rf, Compacted: true}
}

// fingerprint is what a stage recorded about its topics: a topic's id changes when it is
// deleted and created again, its partition count only grows, and a compacted changelog's log
// start offset moves only when records are deleted (DeleteRecords, a delete cleanup policy).
type fingerprint struct {
	Group      string                `json:"group"`
	RecordedAt time.Time             `json:"recorded_at"`
	Topics     map[string]topicPrint `json:"topics"`
}

type topicPrint struct {
	ID         string  `json:"id"`
	Partitions int     `json:"partitions"`
	LogStart   []int64 `json:"log_start,omitempty"` // changelog only, by partition
}

// TopicsChangedError is CheckTopicHistory's refusal: every problem found, each saying what
// happened; README "Recovery" says what to do about each.
type TopicsChangedError struct {
	Problems []string
}

func (e *TopicsChangedError) Error() string {
	return "topics changed behind the processor's back, refusing to start: " + strings.Join(e.Problems, "; ") +
		" (README \"Recovery\": rebuild the state or restore the topics; `retailflow topics accept-changes` records the topics as they are now once that is done)"
}

// CheckTopicHistory refuses to start on topics that changed in a way that silently loses or
// splits state, comparing them with the fingerprint recorded in FingerprintTopic at the first
// start (which it creates and writes then):
//   - a topic deleted and created again (its topic id changed);
//   - a partition count that differs from the recorded one (growing every co-partitioned topic
//     together keeps them equal, but keys then hash to other partitions and an order's state
//     splits across two stores);
//   - a changelog whose log start offset moved past the recorded one (records deleted: the
//     state of quiet orders is gone), or, without a fingerprint, an empty changelog partition
//     whose input partitions the group has already committed offsets for;
//   - a committed input offset beyond its partition's end (the input was truncated or
//     recreated), unless SkipCommittedCheck.
//
// It returns a *TopicsChangedError listing every problem, or another error when the broker
// could not be asked.
// cl is the caller's client (the runner's start-up checks share one).
//
// A committed offset beyond the end is looked at again for up to hwmSettle before it counts:
// right after a broker restarts (a SIGKILL), a partition's high watermark starts from its last
// checkpoint and can lag the log it still has for a moment (seen in `make chaos`, seed
// 1796550289356959483: committed 1888, end 1887, and a start a second later found it whole).
func CheckTopicHistory(ctx context.Context, cl *kgo.Client, h HistorySpec) error {
	adm := kadm.NewClient(cl)
	settle := time.Now().Add(hwmSettle)
	var cur, rec *fingerprint
	var problems []string
	for {
		var behind int
		var err error
		cur, rec, problems, behind, err = inspect(ctx, cl, adm, h)
		if err != nil {
			return err
		}
		if behind == 0 || behind < len(problems) || !time.Now().Before(settle) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(hwmSettle / 20):
		}
	}
	if len(problems) > 0 {
		return &TopicsChangedError{Problems: problems}
	}
	if rec == nil || !covers(rec, cur) {
		return writeFingerprint(ctx, cl, h, cur)
	}
	return nil
}

// AcceptTopicChanges records the topics as they are now, after the operator has dealt with
// what CheckTopicHistory reported (README "Recovery"); it returns the problems it accepted.
func AcceptTopicChanges(ctx context.Context, c Conn, h HistorySpec) ([]string, error) {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cur, _, problems, _, err := inspect(ctx, cl, adm, h)
	if err != nil {
		return nil, err
	}
	return problems, writeFingerprint(ctx, cl, h, cur)
}

func covers(rec, cur *fingerprint) bool {
	for name := range cur.Topics {
		if _, ok := rec.Topics[name]; !ok {
			return false
		}
	}
	return true
}

// hwmSettle is how long CheckTopicHistory looks again at committed input offsets beyond their
// partition's end before it refuses to start.
var hwmSettle = 10 * time.Second

// inspect reads the topics' state now and the recorded fingerprint, and compares them; behind
// is the number of problems that are committed input offsets beyond their partition's end.
func inspect(ctx context.Context, cl *kgo.Client, adm *kadm.Client, h HistorySpec) (cur, rec *fingerprint, problems []string, behind int, err error) {
	names := slices.Concat(h.Inputs, []string{h.Changelog}, h.Outputs)
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("topic history: list topics: %w", err)
	}
	cur = &fingerprint{Group: h.Group, Topics: map[string]topicPrint{}}
	for _, n := range names {
		d, ok := details[n]
		if !ok || d.Err != nil {
			return nil, nil, nil, 0, fmt.Errorf("topic history: topic %s: %v", n, d.Err)
		}
		cur.Topics[n] = topicPrint{ID: d.ID.String(), Partitions: len(d.Partitions)}
	}
	starts, err := adm.ListStartOffsets(ctx, h.Changelog)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("topic history: list start offsets of %s: %w", h.Changelog, err)
	}
	ends, err := adm.ListEndOffsets(ctx, slices.Concat(h.Inputs, []string{h.Changelog})...) // only these are compared
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("topic history: list end offsets: %w", err)
	}
	clp := cur.Topics[h.Changelog]
	clp.LogStart = make([]int64, clp.Partitions)
	for p := range clp.LogStart {
		o, _ := starts.Lookup(h.Changelog, int32(p))
		clp.LogStart[p] = o.Offset
	}
	cur.Topics[h.Changelog] = clp
	committed, err := fetchCommitted(ctx, adm, h.Group, h.Inputs...)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil, nil, 0, fmt.Errorf("topic history: committed offsets of group %s: %w", h.Group, err)
	}

	if rec, err = readFingerprint(ctx, cl, adm, h); err != nil {
		return nil, nil, nil, 0, err
	}
	// inputs: a committed offset past the end means the log behind it is not the one the
	// group read
	if !h.SkipCommittedCheck {
		for _, in := range h.Inputs {
			for p := range cur.Topics[in].Partitions {
				o, ok := committed.Lookup(in, int32(p))
				end, _ := ends.Lookup(in, int32(p))
				if ok && o.Err == nil && o.At > end.Offset {
					behind++
					problems = append(problems, fmt.Sprintf("input %s[%d]: group %s committed offset %d but the partition ends at %d (truncated or recreated: offsets %d–%d are gone)",
						in, p, h.Group, o.At, end.Offset, end.Offset, o.At-1))
				}
			}
		}
	}
	if rec != nil {
		for _, n := range names {
			was, ok := rec.Topics[n]
			if !ok {
				continue // a topic configured since: recorded now
			}
			now := cur.Topics[n]
			if was.ID != now.ID {
				problems = append(problems, fmt.Sprintf("topic %s was deleted and created again since %s (topic id %s, recorded %s)",
					n, rec.RecordedAt.Format(time.RFC3339), now.ID, was.ID))
				continue
			}
			if was.Partitions != now.Partitions {
				problems = append(problems, fmt.Sprintf("topic %s has %d partitions, %d when recorded at %s: order keys now hash to other partitions and each order's state would split across two stores",
					n, now.Partitions, was.Partitions, rec.RecordedAt.Format(time.RFC3339)))
			}
		}
	}
	// the changelog: records deleted before the stores read them
	if was, ok := recordedChangelog(rec, h.Changelog, cur); ok {
		for p, start := range cur.Topics[h.Changelog].LogStart {
			if p < len(was.LogStart) && start > was.LogStart[p] {
				problems = append(problems, fmt.Sprintf("changelog %s[%d] was truncated: its log start moved from %d to %d (DeleteRecords or a delete cleanup.policy); the state of every order last written before offset %d is gone",
					h.Changelog, p, was.LogStart[p], start, start))
			}
		}
	} else if rec == nil {
		for p, start := range cur.Topics[h.Changelog].LogStart {
			end, _ := ends.Lookup(h.Changelog, int32(p))
			if start > 0 {
				problems = append(problems, fmt.Sprintf("changelog %s[%d] was truncated: its log starts at %d, not 0 (DeleteRecords or a delete cleanup.policy); the state of every order last written before offset %d is gone",
					h.Changelog, p, start, start))
				continue
			}
			if end.Offset > 0 {
				continue
			}
			var progressed []string
			for _, in := range h.Inputs {
				if o, ok := committed.Lookup(in, int32(p)); ok && o.Err == nil && o.At > 0 {
					progressed = append(progressed, fmt.Sprintf("%s[%d]@%d", in, p, o.At))
				}
			}
			if len(progressed) > 0 {
				problems = append(problems, fmt.Sprintf("changelog %s[%d] is empty but group %s has consumed %s: the changelog was recreated or emptied, and the orders of partition %d would restart from nothing",
					h.Changelog, p, h.Group, strings.Join(progressed, ", "), p))
			}
		}
	}
	cur.RecordedAt = time.Now().UTC().Truncate(time.Second)
	return cur, rec, problems, behind, nil
}

// recordedChangelog is the changelog's recorded print when the changelog is still the same
// topic (same id; a recreated one is reported by its id).
func recordedChangelog(rec *fingerprint, changelog string, cur *fingerprint) (topicPrint, bool) {
	if rec == nil {
		return topicPrint{}, false
	}
	was, ok := rec.Topics[changelog]
	return was, ok && was.ID == cur.Topics[changelog].ID
}

// readFingerprint returns the last fingerprint recorded under h.Key, or nil when there is none
// (the fingerprint topic is created if it does not exist).
func readFingerprint(ctx context.Context, cl *kgo.Client, adm *kadm.Client, h HistorySpec) (*fingerprint, error) {
	topic := FingerprintTopic(h.Changelog)
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("topic history: describe %s: %w", topic, err)
	}
	if d, ok := details[topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		// Created only when missing: `retailflow topics create` creates it, and a processor
		// allowed to describe topics but not to create them must still start.
		resp, err := adm.CreateTopic(ctx, 1, -1, FingerprintSpec(h.Changelog, 0).configs(), topic)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			return nil, nil // new and empty
		case !errors.Is(err, kerr.TopicAlreadyExists):
			return nil, fmt.Errorf("topic history: create %s (run `retailflow topics create`): %w", topic, err)
		}
	}
	// A topic another instance has just created (TopicAlreadyExists above) is reported unknown
	// until its partition is hosted: wait for it a little rather than fail the start (seen in
	// the chaos suite when instances start together).
	var ends kadm.ListedOffsets
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		ends, err = adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.NotLeaderForPartition) || wait > 3*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic history: end offset of %s: %w", topic, err)
		case <-time.After(wait):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("topic history: end offset of %s: %w", topic, err)
	}
	o, _ := ends.Lookup(topic, 0)
	end := o.Offset
	if end == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(cl.Opts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var last []byte
	for read := false; !read; {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("topic history: read %s: %w", topic, err)
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("topic history: read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == h.Key {
				last = r.Value
			}
			if r.Offset >= end-1 {
				read = true
			}
		})
	}
	if last == nil {
		return nil, nil
	}
	var fp fingerprint
	if err := json.Unmarshal(last, &fp); err != nil {
		return nil, fmt.Errorf("topic history: fingerprint %q in %s does not decode: %w", h.Key, topic, err)
	}
	return &fp, nil
}

func writeFingerprint(ctx context.Context, cl *kgo.Client, h HistorySpec, fp *fingerprint) error {
	b, err := json.Marshal(fp)
	if err != nil {
		return err
	}
	r := &kgo.Record{Topic: FingerprintTopic(h.Changelog), Key: []byte(h.Key), Value: b}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("topic history: record the fingerprint in %s: %w", r.Topic, err)
	}
	return nil
}

// fetchCommitted reads a group's committed offsets, retrying while the group coordinator is
// not available yet or still loading (the usual answer for seconds after a broker starts): a
// check at start must not turn a broker that is still starting into a refusal to start.
func fetchCommitted(ctx context.Context, adm *kadm.Client, group string, topics ...string) (kadm.OffsetResponses, error) {
	wait := 100 * time.Millisecond
	for {
		committed, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
		if err == nil {
			err = committed.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || ctx.Err() != nil {
			return committed, err
		}
		select {
		case <-ctx.Done():
			return committed, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
