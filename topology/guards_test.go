package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/retailflow/retailflow/connectors/kafka"
)

// newBrokerFixture is newFixture on the real broker (RETAILFLOW_KAFKA_BROKERS, default
// localhost:9092), with topic names unique to the test so runs never share state.
func newBrokerFixture(t *testing.T) *fixture {
	t.Helper()
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka: run with RETAILFLOW_E2E=1 (make test)")
	}
	brokers := []string{"localhost:9092"}
	if b := os.Getenv("RETAILFLOW_KAFKA_BROKERS"); b != "" {
		brokers = strings.Split(b, ",")
	}
	conn := kafka.Conn{Brokers: brokers, Timeout: 10 * time.Second}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	prefix := fmt.Sprintf("guards-%s-%d-", name, time.Now().UnixNano())
	var specs []kafka.TopicSpec
	for _, s := range sumTopologyNamed(prefix).Stages[0].TopicSpecs(Stream(prefix + "dlq")) {
		s.Partitions = testPartitions
		specs = append(specs, s)
	}
	if _, err := kafka.EnsureTopics(context.Background(), conn, specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl, err := kgo.NewClient(conn.Options()...)
		if err != nil {
			return
		}
		defer cl.Close()
		var names []string
		for _, s := range specs {
			names = append(names, s.Name)
		}
		_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), names...)
	})
	prod, err := kgo.NewClient(append(conn.Options(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &fixture{t: t, conn: conn, prod: prod, group: prefix + "g", prefix: prefix}
}

// produceTo writes n values "1" for key to partition p of topic and returns the last offset.
func (f *fixture) produceTo(topic, key string, p int32, n int) int64 {
	f.t.Helper()
	var last int64
	for range n {
		r := &kgo.Record{Topic: f.prefix + topic, Key: []byte(key), Value: []byte("1"), Partition: p}
		if err := f.prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			f.t.Fatal(err)
		}
		last = r.Offset
	}
	return last
}

func (f *fixture) admin() *kadm.Client {
	f.t.Helper()
	cl, err := kgo.NewClient(f.conn.Options()...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// waitRun waits for Run to return and returns its error (a fatal error, the point of these tests).
func (rn *running) waitRun(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-rn.done:
		return err
	case <-time.After(within):
		rn.cancel()
		<-rn.done
		t.Fatalf("Run did not stop within %s", within)
		return nil
	}
}

// TestOffsetsLostStopsTheRunner (issue 12.1, real broker): the group committed offset 10 of
// in-a[0]; while the runner was down, records 10–24 were deleted (as retention does during a
// long outage). The runner must not skip them silently: Run stops with an error naming the
// topic, partition and lost range. With OffsetReset earliest (the operator's explicit choice)
// it resumes at the log start instead.
func TestOffsetsLostStopsTheRunner(t *testing.T) {
	f := newBrokerFixture(t)
	f.produceTo("in-a", "k", 0, 10)
	rn := f.start("0", nil, nil)
	if outs := f.committed("out", 10); len(outs) != 10 {
		t.Fatalf("first run: %d outputs, want 10", len(outs))
	}
	// the offsets commit with the outputs; wait for the group's commit to be visible
	adm := f.admin()
	waitCommitted(t, adm, f.group, f.prefix+"in-a", 0, 10)
	rn.stop(t)

	f.produceTo("in-a", "k", 0, 20) // offsets 10..29
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: f.prefix + "in-a", Partition: 0, At: 25})
	res, err := adm.DeleteRecords(context.Background(), del)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}

	rn = f.start("0", nil, nil)
	err = rn.waitRun(t, 30*time.Second)
	var lost *kafka.OffsetsLostError
	if !errors.As(err, &lost) {
		t.Fatalf("Run returned %v, want a *kafka.OffsetsLostError", err)
	}
	if lost.Topic != f.prefix+"in-a" || lost.Partition != 0 || lost.Committed != 10 || lost.LogStart != 25 {
		t.Errorf("lost = %+v, want %sin-a[0] committed 10, log start 25", lost, f.prefix)
	}
	if msg := err.Error(); !strings.Contains(msg, f.prefix+"in-a[0]") || !strings.Contains(msg, "offsets 10–24 (15 records)") {
		t.Errorf("message does not name the topic, partition and lost range: %s", msg)
	}
	t.Logf("runner stopped with: %v", err)

	// The explicit reset: earliest resumes at 25 and processes the 5 records left.
	o := f.options("0", nil)
	o.OffsetReset = kafka.ResetEarliest
	if os.Getenv("GUARDS_DEBUG") != "" {
		o.ClientOpts = append(o.ClientOpts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	}
	r, err := NewRunner(sumTopologyNamed(f.prefix), sumStageTo(Stream(f.prefix+"out"), nil), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	outs := f.committed("out", 15)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run with OffsetReset earliest: %v", err)
	}
	if len(outs) != 15 || string(outs[14].Value) != "k=15" {
		t.Fatalf("with reset earliest: %d outputs, last %q; want 15, k=15 (10 + the 5 records that survived)", len(outs), string(outs[len(outs)-1].Value))
	}
}

func waitCommitted(t *testing.T, adm *kadm.Client, group, topic string, p int32, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		offs, err := adm.FetchOffsetsForTopics(context.Background(), group, topic)
		if err == nil {
			if o, ok := offs.Lookup(topic, p); ok && o.At >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s never committed %s[%d] ≥ %d (%v)", group, topic, p, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOwnershipFollowsTheAssignment (issue 12.4, kfake): franz-go's GroupTransactSession skips
// the user's revoke callback while an earlier revoke has not been ended by End, which an idle
// runner never calls. Without a guard, an idle instance keeps the store and the ownership of
// partitions it lost (two instances holding partition 2 after three rebalances). After each
// rebalance, every instance must own exactly what the group assigned it.
func TestOwnershipFollowsTheAssignment(t *testing.T) {
	f := newFixture(t)
	adm := f.admin()
	var live []*running
	check := func(step string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			problem := ownershipProblem(adm, f.group, live)
			if problem == "" {
				for i, rn := range live {
					t.Logf("after %s: runner %d %+v", step, i, rn.r.Status())
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", step, problem)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Idle instances joining and leaving: each rebalance after an instance's first revoke is
	// one franz-go does not report to it. Range assignment by random member ids makes the
	// moves vary; six rebalances make a loss after the first revoke all but certain.
	live = append(live, f.start("a", nil, nil))
	check("a joined")
	for i, name := range []string{"b", "c", "d"} {
		live = append(live, f.start(name, nil, nil))
		check(fmt.Sprintf("%s joined (rebalance %d)", name, 2*i+1))
		victim := live[1]
		victim.stop(t)
		live = slices.Delete(live, 1, 2)
		check(fmt.Sprintf("an instance left (rebalance %d)", 2*i+2))
	}
	for _, rn := range live {
		rn.stop(t)
	}
}

// ownershipProblem compares what each live runner owns (restored or restoring) with what the
// group assigned to its member; "" when they agree and no partition is owned twice.
func ownershipProblem(adm *kadm.Client, group string, live []*running) string {
	dg, err := adm.DescribeGroups(context.Background(), group)
	if err != nil {
		return err.Error()
	}
	g := dg[group]
	if g.State != "Stable" {
		return "group state " + g.State
	}
	assignedTo := map[string][]int32{} // transactional id's client id is not visible: match by set
	var assignments [][]int32
	for _, m := range g.Members {
		ca, _ := m.Assigned.AsConsumer()
		var ps []int32
		for _, tp := range ca.Topics {
			if tp.Topic == "in-a" {
				ps = append(ps, tp.Partitions...)
			}
		}
		slices.Sort(ps)
		assignments = append(assignments, ps)
		assignedTo[m.MemberID] = ps
	}
	holders := map[int32]int{}
	var held [][]int32
	for _, rn := range live {
		st := rn.r.Status()
		if !st.Joined {
			return "a runner has not joined yet"
		}
		ps := append(append([]int32{}, st.Owned...), st.Restoring...)
		slices.Sort(ps)
		for _, p := range ps {
			holders[p]++
		}
		held = append(held, ps)
	}
	for p, n := range holders {
		if n > 1 {
			return fmt.Sprintf("partition %d held by %d instances (held %v, group assigned %v)", p, n, held, assignments)
		}
	}
	if len(g.Members) != len(live) {
		return fmt.Sprintf("group has %d members, %d runners live", len(g.Members), len(live))
	}
	// every runner's holdings are one member's assignment
	used := make([]bool, len(assignments))
next:
	for _, h := range held {
		for i, a := range assignments {
			if !used[i] && slices.Equal(a, h) {
				used[i] = true
				continue next
			}
		}
		return fmt.Sprintf("runners hold %v, the group assigned %v", held, assignments)
	}
	return ""
}

// runOnce feeds 3 keys × 2 adds, runs an instance until their outputs are committed and
// stops it: the changelog, the group's offsets and the fingerprint exist afterwards.
func (f *fixture) runOnce() {
	f.t.Helper()
	inputs := map[string][]int64{}
	f.feed(3, 2, inputs)
	rn := f.start("0", nil, nil)
	if outs := f.committed("out", 6); len(outs) != 6 {
		f.t.Fatalf("%d outputs, want 6", len(outs))
	}
	rn.stop(f.t)
}

// startRefused starts an instance and returns Run's error, which must be a refusal.
func (f *fixture) startRefused() error {
	f.t.Helper()
	rn := f.start("0", nil, nil)
	err := rn.waitRun(f.t, 30*time.Second)
	if err == nil {
		f.t.Fatal("Run returned nil, want a refusal")
	}
	f.t.Logf("refused: %v", err)
	return err
}

func wantRefusal(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("refusal does not say %q: %v", p, err)
		}
	}
}

// recreate deletes topic and creates it again with the fixture's partition count (the broker
// refuses the create until the deletion has completed).
func (f *fixture) recreate(adm *kadm.Client, topic string, compacted bool) {
	f.t.Helper()
	if _, err := adm.DeleteTopic(context.Background(), topic); err != nil {
		f.t.Fatal(err)
	}
	spec := kafka.TopicSpec{Name: topic, Partitions: testPartitions, Compacted: compacted}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := kafka.EnsureTopics(context.Background(), f.conn, []kafka.TopicSpec{spec})
		if err == nil && len(st) == 1 && st[0].Created {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("recreate %s: %v %+v", topic, err, st)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestTopicsChangedBehindTheRunner (issue 12.3, real broker): each way the topics can change
// under a stopped processor that would silently lose or split state makes the next start
// refuse, with a message saying what happened.
func TestTopicsChangedBehindTheRunner(t *testing.T) {
	t.Run("changelog compact,delete", func(t *testing.T) {
		f := newBrokerFixture(t)
		adm := f.admin()
		_, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr("compact,delete")}}, f.prefix+"sum-changelog")
		if err != nil {
			t.Fatal(err)
		}
		err = f.startRefused()
		wantRefusal(t, err, f.prefix+"sum-changelog must have cleanup.policy=compact exactly", `"compact,delete"`)
	})
	t.Run("changelog recreated", func(t *testing.T) {
		f := newBrokerFixture(t)
		f.runOnce()
		f.recreate(f.admin(), f.prefix+"sum-changelog", true)
		wantRefusal(t, f.startRefused(), "topic "+f.prefix+"sum-changelog was deleted and created again")
	})
	t.Run("changelog truncated", func(t *testing.T) {
		f := newBrokerFixture(t)
		f.runOnce()
		adm := f.admin()
		ends, err := adm.ListEndOffsets(context.Background(), f.prefix+"sum-changelog")
		if err != nil {
			t.Fatal(err)
		}
		del := kadm.Offsets{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				del.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset})
			}
		})
		// The broker refuses DeleteRecords on a compact-only topic: what truncates a changelog
		// is a delete policy, for a while (here for the DeleteRecords that retention would do).
		setPolicy := func(policy string) {
			_, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr(policy)}}, f.prefix+"sum-changelog")
			if err != nil {
				t.Fatal(err)
			}
		}
		setPolicy("compact,delete")
		time.Sleep(time.Second) // the config propagates to the partition leader
		if res, err := adm.DeleteRecords(context.Background(), del); err != nil || res.Error() != nil {
			t.Fatalf("delete records: %v %v", err, res.Error())
		}
		setPolicy("compact")
		wantRefusal(t, f.startRefused(), "changelog "+f.prefix+"sum-changelog[", "was truncated: its log start moved from 0 to")
	})
	t.Run("partitions grown together", func(t *testing.T) {
		f := newBrokerFixture(t)
		f.runOnce()
		adm := f.admin()
		var all []string
		for _, s := range sumTopologyNamed(f.prefix).Stages[0].TopicSpecs(Stream(f.prefix + "dlq")) {
			all = append(all, s.Name)
		}
		if res, err := adm.CreatePartitions(context.Background(), 1, all...); err != nil || res.Error() != nil {
			t.Fatalf("create partitions: %v %v", err, res.Error())
		}
		err := f.startRefused()
		wantRefusal(t, err, "topic "+f.prefix+"in-a has 4 partitions, 3 when recorded", "split across two stores")
		// once the operator has dealt with it (README "Recovery"), accepting records the
		// topics as they are and the next start goes ahead
		o := f.options("0", nil)
		r, err := NewRunner(sumTopologyNamed(f.prefix), sumStageTo(Stream(f.prefix+"out"), nil), o)
		if err != nil {
			t.Fatal(err)
		}
		accepted, err := kafka.AcceptTopicChanges(context.Background(), f.conn, r.HistorySpec())
		if err != nil || len(accepted) != len(all) {
			t.Fatalf("accept: %v, accepted %d problems, want %d: %v", err, len(accepted), len(all), accepted)
		}
		prod, err := kgo.NewClient(append(f.conn.Options(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		f.prod = prod // the fixture's producer knows only the 3 partitions of before
		rn := f.start("0", nil, nil)
		f.produceTo("in-a", "k9", 3, 1)
		if outs := f.committed("out", 7); len(outs) != 7 {
			t.Fatalf("after accepting: %d outputs, want 7", len(outs))
		}
		rn.stop(t)
	})
	t.Run("changelog emptied before the first fingerprint", func(t *testing.T) {
		f := newBrokerFixture(t)
		f.runOnce()
		adm := f.admin()
		if _, err := adm.DeleteTopic(context.Background(), kafka.FingerprintTopic(f.prefix+"sum-changelog")); err != nil {
			t.Fatal(err)
		}
		f.recreate(adm, f.prefix+"sum-changelog", true)
		wantRefusal(t, f.startRefused(), "is empty but group "+f.group+" has consumed", "would restart from nothing")
	})
	t.Run("input committed beyond its end", func(t *testing.T) {
		f := newBrokerFixture(t)
		f.runOnce()
		adm := f.admin()
		commit := kadm.Offsets{}
		commit.Add(kadm.Offset{Topic: f.prefix + "in-b", Partition: 1, At: 100, LeaderEpoch: -1})
		if res, err := adm.CommitOffsets(context.Background(), f.group, commit); err != nil || res.Error() != nil {
			t.Fatalf("commit: %v %v", err, res.Error())
		}
		wantRefusal(t, f.startRefused(), "input "+f.prefix+"in-b[1]: group "+f.group+" committed offset 100 but the partition ends at")
	})
}

// TestCoordinatorErrorsBackOff (issue 12.5, kfake): while the group coordinator fails the
// transactional offset commit (NOT_COORDINATOR: it moved or is loading), franz-go's End aborts
// and reports no commit, as it does on a rebalance. The runner used to retry at once, re-
// producing the whole batch in a tight loop; it must back off as for any other abort, and
// record the abort as "coordinator", not "rebalance". Afterwards the outputs are exact.
func TestCoordinatorErrorsBackOff(t *testing.T) {
	f := newFixture(t)
	var failing atomic.Bool
	var attempts atomic.Int32
	f.c.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		f.c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		attempts.Add(1)
		r := req.(*kmsg.TxnOffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotCoordinator.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	m := NewCounters(0)
	o := f.options("0", m)
	// franz-go retries a commit on coordinator errors itself before End gives up; a small retry
	// budget gets there quickly (in production: after its retries, i.e. a longer outage)
	o.ClientOpts = append(o.ClientOpts, kgo.RequestRetries(1), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
	r, err := NewRunner(sumTopology(), sumStage(nil), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !rn.r.Ready() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	failing.Store(true)
	inputs := map[string][]int64{}
	f.feed(4, 5, inputs)
	time.Sleep(3 * time.Second)
	failing.Store(false)
	failedCommits := attempts.Load()
	checkSums(t, f.committed("out", 20), inputs)
	rn.stop(t)
	s := m.Snapshot()
	t.Logf("%d failed offset commits in 3s; aborts %v", failedCommits, s.Aborts)
	if s.Aborts["coordinator"] == 0 || s.Aborts["rebalance"] != 0 {
		t.Errorf("aborts = %v, want them recorded as coordinator, none as rebalance", s.Aborts)
	}
	// back-off 100, 200, 400, 800, 1600 ms: at most ~6 transactions in 3 s (franz-go retries
	// each commit a few times itself)
	if s.Aborts["coordinator"] > 8 {
		t.Errorf("%d aborted transactions in 3s of coordinator errors: no back-off", s.Aborts["coordinator"])
	}
}

// TestFatalStageErrorStopsRun (issue 12.5): an error marked ErrFatal (the registry refusing
// the credentials) neither goes to the DLQ nor is retried: the transaction aborts and Run
// returns it, naming the record.
func TestFatalStageErrorStopsRun(t *testing.T) {
	f := newFixture(t)
	f.produce("in-a", "k", "5")
	f.produce("in-a", "k", "fatal")
	st := sumStage(nil)
	decode := st.Decode
	st.Decode = func(r *kgo.Record) (sumEvent, error) {
		if string(r.Value) == "fatal" {
			return sumEvent{}, fmt.Errorf("%w: registry said 401", ErrFatal)
		}
		return decode(r)
	}
	r, err := NewRunner(sumTopology(), st, f.options("0", nil))
	if err != nil {
		t.Fatal(err)
	}
	rn := &running{r: r, cancel: func() {}, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(context.Background()) }()
	err = rn.waitRun(t, 20*time.Second)
	if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "in-a/") || !strings.Contains(err.Error(), "registry said 401") {
		t.Fatalf("Run returned %v, want the fatal error naming the record", err)
	}
	if dlq := f.committedWithin("dlq", 1, 2*time.Second); len(dlq) != 0 {
		t.Errorf("%d DLQ records, want none", len(dlq))
	}
	if outs := f.committedWithin("out", 1, 2*time.Second); len(outs) != 0 {
		t.Errorf("%d outputs committed, want none (the transaction aborted)", len(outs))
	}
}

// TestCommittedBeyondEndSettles (kfake): a committed input offset beyond its partition's end
// is looked at again before the runner refuses to start — right after a broker restart the high
// watermark can lag the log for a moment (make chaos, seed 1796550289356959483). Here the
// partition reaches the committed offset a second after the start: the runner starts and
// processes it; one that never does is refused (the E2E guard test).
func TestCommittedBeyondEndSettles(t *testing.T) {
	f := newFixture(t)
	f.runOnce()
	adm := f.admin()
	end := f.produceTo("in-b", "k-settle", 1, 1) + 1
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "in-b", Partition: 1, At: end + 5, LeaderEpoch: -1})
	if res, err := adm.CommitOffsets(context.Background(), f.group, commit); err != nil || res.Error() != nil {
		t.Fatalf("commit: %v %v", err, res.Error())
	}
	rn := f.start("0", nil, nil)
	time.Sleep(time.Second)
	f.produceTo("in-b", "k-settle", 1, 6) // the partition now ends past the committed offset
	waitReady(t, rn)
	rn.stop(t)
}
