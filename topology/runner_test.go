package topology

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/headers"
)

// The test stage keeps a running sum per key. Inputs are "<int>" (add), "evict" (delete the
// key), "bad" (does not decode) or a negative number (fails validation). Every accepted add
// emits "<key>=<sum>", so the committed output of a key must be exactly its prefix sums: a lost
// or doubled effect shows as a wrong or repeated sum. "skip" is an input the stage ignores
// (Processor.Ignore): Process must never see it (skipsProcessed counts those that it does).
type sumEvent struct {
	n     int64
	evict bool
	skip  bool
}

var skipsProcessed atomic.Int64

type intCodec struct{}

func (intCodec) Encode(v int64) ([]byte, error) { return strconv.AppendInt(nil, v, 10), nil }
func (intCodec) Decode(b []byte) (int64, error) { return strconv.ParseInt(string(b), 10, 64) }

func sumStage(process func()) Processor[sumEvent, int64, string] { return sumStageTo("out", process) }

// sumStageTo is sumStage writing its outputs to out.
func sumStageTo(out Stream, process func()) Processor[sumEvent, int64, string] {
	return Processor[sumEvent, int64, string]{
		Decode: func(r *kgo.Record) (sumEvent, error) {
			switch string(r.Value) {
			case "evict":
				return sumEvent{evict: true}, nil
			case "skip":
				return sumEvent{skip: true}, nil
			case "huge":
				return sumEvent{n: -1 << 40}, nil
			}
			n, err := strconv.ParseInt(string(r.Value), 10, 64)
			return sumEvent{n: n}, err
		},
		Validate: func(e sumEvent) error {
			if e.n < 0 && e.n != -1<<40 {
				return errors.New("negative")
			}
			return nil
		},
		Process: func(key string, sum int64, _ bool, e sumEvent) (Step[int64, string], error) {
			if process != nil {
				process()
			}
			if e.skip {
				skipsProcessed.Add(1)
				return Step[int64, string]{}, nil
			}
			if e.evict {
				return Step[int64, string]{Op: Evict}, nil
			}
			if e.n == -1<<40 { // an output larger than the producer's batch limit
				return Step[int64, string]{Outputs: []Emit[string]{{To: out, Value: strings.Repeat("x", 2<<20)}}}, nil
			}
			sum += e.n
			return Step[int64, string]{Op: Put, State: sum,
				Outputs: []Emit[string]{{To: out, Value: key + "=" + strconv.FormatInt(sum, 10)}}}, nil
		},
		Ignore: func(e sumEvent) bool { return e.skip },
		State:  intCodec{},
		Encode: func(_ Stream, s string) ([]byte, error) { return []byte(s), nil },
	}
}

func sumTopology() Topology { return sumTopologyNamed("") }

// sumTopologyNamed is sumTopology with every topic name prefixed (tests on a shared broker).
func sumTopologyNamed(prefix string) Topology {
	n := func(s string) Stream { return Stream(prefix + s) }
	return Topology{
		Sources: []Stream{n("in-a"), n("in-b")},
		Stages:  []StageSpec{{Name: "sum", Inputs: []Stream{n("in-a"), n("in-b")}, Store: Table(n("sum-changelog")), Writes: []Stream{n("out")}}},
		Outputs: []Stream{n("out")},
		DLQ:     n("dlq"),
	}
}

const testPartitions = 3

type fixture struct {
	t     *testing.T
	c     *kfake.Cluster
	conn  kafka.Conn
	prod  *kgo.Client
	group string
	// prefix is prepended to every topic name (real-broker tests; "" on kfake)
	prefix string
	// immutable runs the stage with ImmutableState (decoded states kept between transactions)
	immutable bool
	// stateDir, if set, keeps the states in a persistent store there (Options.StateDir)
	stateDir string
	// diskOpts are the persistent store's options (Options.State)
	diskOpts DiskOptions
	// log, if set, receives the runners' log lines
	log *slog.Logger
	// standby runs the instances with warm standbys (Options.Standby), passes every 50 ms
	standby bool
}

// stateModes runs a test with the stage's states decoded afresh per transaction and with
// decoded states kept (ImmutableState): the guarantees must not depend on it.
// The third mode keeps the states in a persistent store (newFixture reads the variable).
func stateModes(t *testing.T, test func(t *testing.T, immutable bool)) {
	for _, immutable := range []bool{false, true} {
		t.Run(fmt.Sprintf("immutable=%v", immutable), func(t *testing.T) { test(t, immutable) })
	}
	t.Run("disk", func(t *testing.T) {
		t.Setenv("RETAILFLOW_TEST_STORE", "disk")
		test(t, false)
	})
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	conn := kafka.Conn{Brokers: c.ListenAddrs(), Timeout: 5 * time.Second}
	var specs []kafka.TopicSpec
	for _, s := range sumTopology().Stages[0].TopicSpecs("dlq") {
		s.Partitions = testPartitions
		specs = append(specs, s)
	}
	if _, err := kafka.EnsureTopics(context.Background(), conn, specs); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(append(conn.Options(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	f := &fixture{t: t, c: c, conn: conn, prod: prod, group: "g"}
	if os.Getenv("RETAILFLOW_TEST_STORE") == "disk" {
		f.stateDir = t.TempDir()
	}
	return f
}

// produce writes value to topic for key, on the key's partition (a stable function of the key).
func (f *fixture) produce(topic, key, value string) {
	p := int32(0)
	for _, ch := range key {
		p = (p*31 + ch) % testPartitions
	}
	if err := f.prod.ProduceSync(context.Background(), &kgo.Record{Topic: f.prefix + topic, Key: []byte(key), Value: []byte(value), Partition: p}).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) options(instance string, m Metrics) Options {
	var log *slog.Logger
	conn := f.conn
	switch {
	case f.log != nil:
		log = f.log
	case os.Getenv("RUNTIME_TEST_LOG") == "":
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	default:
		conn.Logger = slog.Default()
	}
	return Options{
		Conn: conn, Group: f.group, InstanceID: instance,
		TransactionTimeout: 10 * time.Second, SessionTimeout: 3 * time.Second, RebalanceTimeout: 5 * time.Second,
		MaxRecordsPerTxn: 50, MaxTxnDuration: 100 * time.Millisecond, MaxBufferedRecords: 1000,
		Parallelism: 2, // the concurrent decode and encode paths (go test -race)
		Metrics:     m, Logger: log, StateDir: f.instanceStateDir(instance), State: f.diskOpts,
		Standby: f.standby, StandbyInterval: 50 * time.Millisecond,
	}
}

// instanceStateDir is instance's persistent store directory ("" in memory mode): one per
// instance, as one per pod.
func (f *fixture) instanceStateDir(instance string) string {
	if f.stateDir == "" {
		return ""
	}
	return filepath.Join(f.stateDir, instance)
}

type running struct {
	r      *Runner[sumEvent, int64, string]
	cancel context.CancelFunc
	done   chan error
}

func (f *fixture) start(instance string, m Metrics, process func()) *running {
	f.t.Helper()
	st := sumStageTo(Stream(f.prefix+"out"), process)
	st.ImmutableState = f.immutable
	o := f.options(instance, m)
	if f.immutable {
		o.MaxDecodedStates = 2 // keys keep going back to bytes and are decoded again
	}
	r, err := NewRunner(sumTopologyNamed(f.prefix), st, o)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return &running{r: r, cancel: cancel, done: done}
}

func (rn *running) stop(t *testing.T) {
	t.Helper()
	rn.cancel()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// committed reads a topic read_committed from the start until it has want records or times out.
func (f *fixture) committed(topic string, want int) []*kgo.Record {
	f.t.Helper()
	return f.committedWithin(topic, want, 20*time.Second)
}

// committedWithin is committed with its own timeout.
func (f *fixture) committedWithin(topic string, want int, timeout time.Duration) []*kgo.Record {
	f.t.Helper()
	cl, err := kgo.NewClient(append(f.conn.Options(), kgo.ConsumeTopics(f.prefix+topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(timeout)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		out = append(out, fs.Records()...)
	}
	// a short extra read catches records beyond want (duplicates)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	out = append(out, cl.PollFetches(ctx).Records()...)
	cancel()
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkSums asserts that each key's committed outputs are a running sum over exactly its inputs:
// as many outputs as inputs, and the increments between consecutive sums are the inputs as a
// multiset (the two input topics interleave in any order). No source coordinate repeats.
func checkSums(t *testing.T, outs []*kgo.Record, inputs map[string][]int64) {
	t.Helper()
	got := map[string][]int64{}
	seen := map[string]bool{}
	for _, r := range outs {
		src := header(r, headers.SourceTopic) + "/" + header(r, headers.SourcePartition) + "@" + header(r, headers.SourceOffset) + "#" + header(r, headers.OutputSeq)
		if seen[src] {
			t.Errorf("source %s produced output twice", src)
		}
		seen[src] = true
		_, v, _ := strings.Cut(string(r.Value), "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		got[string(r.Key)] = append(got[string(r.Key)], n)
	}
	for key, ns := range inputs {
		want := map[int64]int{}
		for _, n := range ns {
			want[n]++
		}
		var prev int64
		for _, sum := range got[key] {
			want[sum-prev]--
			prev = sum
		}
		for n, c := range want {
			if c != 0 {
				t.Errorf("key %s: outputs %v do not add up inputs %v (increment %d off by %d)", key, got[key], ns, n, c)
				break
			}
		}
	}
}

// feed produces n adds per key across the two inputs; it returns what each key received.
func (f *fixture) feed(keys, n int, inputs map[string][]int64) {
	for i := 0; i < n; i++ {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("k%d", k)
			v := int64(i + 1)
			topic := "in-a"
			if (i+k)%2 == 1 {
				topic = "in-b"
			}
			f.produce(topic, key, strconv.FormatInt(v, 10))
			inputs[key] = append(inputs[key], v)
		}
	}
}

// TestRunnerExactlyOnceAndRestore: outputs are exact, poison goes to the DLQ with headers, and a
// second incarnation restores the sums from the changelog and continues them.
func TestRunnerExactlyOnceAndRestore(t *testing.T) { stateModes(t, testRunnerExactlyOnceAndRestore) }

func testRunnerExactlyOnceAndRestore(t *testing.T, immutable bool) {
	f := newFixture(t)
	f.immutable = immutable
	inputs := map[string][]int64{}
	f.feed(6, 5, inputs)
	f.produce("in-a", "k0", "bad")
	f.produce("in-b", "k1", "-3")
	f.prod.ProduceSync(context.Background(), &kgo.Record{Topic: "in-a", Value: []byte("1"), Partition: 0})

	m := NewCounters(1000)
	rn := f.start("0", m, nil)
	outs := f.committed("out", 30)
	checkSums(t, outs, inputs)
	dlq := f.committed("dlq", 3)
	classes := map[string]bool{}
	for _, r := range dlq {
		classes[header(r, headers.ErrorClassKey)] = true
		if header(r, headers.SourceOffset) == "" || header(r, headers.FirstSeen) == "" || header(r, headers.ErrorMessage) == "" {
			t.Errorf("DLQ record lacks headers: %v", r.Headers)
		}
	}
	if len(dlq) != 3 || !classes[string(headers.ClassDecode)] || !classes[string(headers.ClassInvalid)] || !classes[string(headers.ClassNoKey)] {
		t.Errorf("DLQ has %d records with classes %v, want decode, invalid, no-key", len(dlq), classes)
	}
	if !rn.r.Ready() {
		t.Errorf("not ready after processing: %+v", rn.r.Status())
	}
	rn.stop(t)

	// A new incarnation (same instance id) continues every sum from the restored changelog.
	f.feed(6, 2, inputs)
	rn2 := f.start("0", m, nil)
	outs = f.committed("out", 42)
	checkSums(t, outs, inputs)
	f.produce("in-a", "k5", "evict")
	// The changelog's last value per key is its final sum; k5 ends in a tombstone.
	last := map[string][]byte{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		clear(last)
		for _, r := range f.committed("sum-changelog", 1) {
			last[string(r.Key)] = r.Value
			if header(r, headers.SourceOffset) == "" {
				t.Errorf("changelog record without source headers")
			}
		}
		if v, ok := last["k5"]; ok && v == nil {
			break
		}
	}
	rn2.stop(t)
	for key, ns := range inputs {
		var sum int64
		for _, n := range ns {
			sum += n
		}
		want := strconv.FormatInt(sum, 10)
		if key == "k5" {
			want = ""
		}
		if string(last[key]) != want {
			t.Errorf("changelog %s = %q, want %q", key, last[key], want)
		}
	}
	s := m.Snapshot()
	if s.Commits == 0 || s.DeadLettered["in-a/decode"] != 1 || s.DeadLettered["in-b/invalid"] != 1 {
		t.Errorf("metrics: %+v", s)
	}
}

// TestRunnerEndTxnErrorIsNotACommit: the broker answers EndTxn(commit) with UNKNOWN_SERVER_ERROR
// (the outcome is unknown); the runtime must not apply the overlay, and every effect still
// appears exactly once.
func TestRunnerEndTxnErrorIsNotACommit(t *testing.T) {
	stateModes(t, testRunnerEndTxnErrorIsNotACommit)
}

func testRunnerEndTxnErrorIsNotACommit(t *testing.T, immutable bool) {
	f := newFixture(t)
	f.immutable = immutable
	var injected atomic.Int32
	f.c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		f.c.KeepControl()
		r := req.(*kmsg.EndTxnRequest)
		if !r.Commit || injected.Add(1) > 2 {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	inputs := map[string][]int64{}
	f.feed(4, 5, inputs)
	m := NewCounters(0)
	rn := f.start("0", m, nil)
	checkSums(t, f.committed("out", 20), inputs)
	rn.stop(t)
	if injected.Load() < 2 {
		t.Fatalf("only %d EndTxn commits were intercepted", injected.Load())
	}
	if s := m.Snapshot(); s.Aborts["rebalance"]+s.Aborts["produce"]+s.Aborts["transient"]+s.Aborts["coordinator"] == 0 {
		t.Errorf("no abort recorded: %+v", s.Aborts)
	}
}

// TestRunnerProduceFailureAborts: an output the producer refuses (too large) fails its produce;
// the transaction aborts (nothing of it commits), and on the retry the input that caused it
// goes to the DLQ as output-rejected while every other effect appears exactly once.
func TestRunnerProduceFailureAborts(t *testing.T) {
	f := newFixture(t)
	inputs := map[string][]int64{}
	f.feed(4, 3, inputs)
	f.produce("in-a", "k0", "huge")
	f.feed(4, 2, inputs)
	m := NewCounters(0)
	rn := f.start("0", m, nil)
	outs := f.committed("out", 20)
	dlq := f.committed("dlq", 1)
	rn.stop(t)
	checkSums(t, outs, inputs)
	if s := m.Snapshot(); s.Aborts["produce"] == 0 {
		t.Errorf("aborts = %v, want a produce abort", s.Aborts)
	}
	if len(dlq) != 1 || header(dlq[0], headers.ErrorClassKey) != string(headers.ClassOutputRejected) || string(dlq[0].Value) != "huge" {
		t.Fatalf("DLQ = %d records, want the huge input as %s", len(dlq), headers.ClassOutputRejected)
	}
}

// TestRunnerRejectedOutputsShareATransaction: an input whose output the producer refuses
// is marked and, on the retry, dead-lettered — but that retry also holds a second refused
// record (one that arrived after the first attempt), so it aborts too. The first mark must
// survive that abort: marks are dropped only when the transaction that dead-letters their
// input commits. Consumed on lookup, the two marks took turns forever (a CI run looped on two
// 1.5 MB poison records of one partition). Two whose DLQ copies are refused follow.
func TestRunnerRejectedOutputsShareATransaction(t *testing.T) {
	f := newFixture(t)
	inputs := map[string][]int64{}
	big, err := kgo.NewClient(append(f.conn.Options(), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(4<<20))...)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	p := int32(0)
	for _, ch := range "k0" {
		p = (p*31 + ch) % testPartitions
	}
	produce := func(v string) {
		if err := big.ProduceSync(context.Background(), &kgo.Record{Topic: "in-a", Key: []byte("k0"), Value: []byte(v), Partition: p}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	bad := strings.Repeat("y", 3<<19) // not a number: dead-lettered with its value, which is too large
	m := NewCounters(0)
	rn := f.start("0", m, nil)
	f.feed(4, 1, inputs)
	checkSums(t, f.committed("out", 4), inputs)
	aborts := func() int { return m.Snapshot().Aborts["produce"] }
	for _, v := range []string{"huge", "huge", bad, bad} {
		before := aborts()
		produce(v)
		// the next one arrives after this one's first attempt aborted, within its backoff
		for deadline := time.Now().Add(10 * time.Second); aborts() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no produce abort after the refused record %d bytes", len(v))
			}
		}
	}
	f.feed(4, 2, inputs)
	outs := f.committed("out", 12)
	dlq := f.committedWithin("dlq", 4, 30*time.Second)
	rn.stop(t)
	checkSums(t, outs, inputs)
	var rejected, dropped int
	for _, r := range dlq {
		switch {
		case header(r, headers.ErrorClassKey) == string(headers.ClassOutputRejected) && string(r.Value) == "huge":
			rejected++
		case header(r, headers.ValueDropped) == "true" && len(r.Value) == 0:
			dropped++
		}
	}
	if len(dlq) != 4 || rejected != 2 || dropped != 2 {
		t.Fatalf("DLQ = %d records (%d huge outputs rejected, %d values dropped), want 4 (2, 2); aborts %v",
			len(dlq), rejected, dropped, m.Snapshot().Aborts)
	}
}

// TestRunnerRevokeMidTransaction: a second instance joins while the first is inside a
// transaction; the first's transaction aborts (its overlay dropped), the partitions are split,
// each restored from the changelog, and every effect appears exactly once.
func TestRunnerRevokeMidTransaction(t *testing.T) { stateModes(t, testRunnerRevokeMidTransaction) }

func testRunnerRevokeMidTransaction(t *testing.T, immutable bool) {
	f := newFixture(t)
	f.immutable = immutable
	inputs := map[string][]int64{}
	f.feed(6, 4, inputs)

	var once sync.Once
	inTxn := make(chan struct{})
	release := make(chan struct{})
	m1 := NewCounters(0)
	first := f.start("0", m1, nil)
	checkSums(t, f.committed("out", 24), inputs)

	// The next transaction of the first instance blocks inside the processor until the second
	// instance has joined and the rebalance has revoked its partitions.
	var block atomic.Bool
	block.Store(true)
	first.stop(t)
	first = f.start("0", m1, func() {
		if block.Load() {
			once.Do(func() { close(inTxn) })
			<-release
		}
	})
	f.feed(6, 3, inputs)
	select {
	case <-inTxn:
	case <-time.After(20 * time.Second):
		t.Fatal("first instance never processed")
	}
	m2 := NewCounters(0)
	second := f.start("1", m2, nil)
	// wait until the group has rebalanced: the second instance owns partitions
	deadline := time.Now().Add(20 * time.Second)
	for len(second.r.Status().Owned) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	block.Store(false)
	close(release)
	if len(second.r.Status().Owned) == 0 {
		t.Fatalf("second instance never got partitions: %+v", second.r.Status())
	}
	checkSums(t, f.committed("out", 42), inputs)
	first.stop(t)
	second.stop(t)
	if s := m1.Snapshot(); s.Aborts["rebalance"] == 0 {
		t.Errorf("first instance aborts = %v, want a rebalance abort", s.Aborts)
	}
}

// failingCodec cannot encode the state 13.
type failingCodec struct{ intCodec }

func (c failingCodec) Encode(v int64) ([]byte, error) {
	if v == 13 {
		return nil, errors.New("13 does not encode")
	}
	return c.intCodec.Encode(v)
}

// TestRunnerStateEncodeFailure: states are encoded once per key when the changelog is
// prepared; a state that does not encode aborts the transaction, and the retry encodes per
// input, so exactly the input that produced it is dead-lettered (class encode) and the key
// goes on from the state before it.
func TestRunnerStateEncodeFailure(t *testing.T) {
	f := newFixture(t)
	inputs := map[string][]int64{}
	f.feed(3, 2, inputs)
	f.produce("in-a", "k", "5")
	f.produce("in-a", "k", "8") // 5 + 8 = 13 (same topic: the order is fixed)
	inputs["k"] = []int64{5}
	m := NewCounters(0)
	st := sumStage(nil)
	st.State = failingCodec{}
	r, err := NewRunner(sumTopology(), st, f.options("0", m))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	rn := &running{r: r, cancel: cancel, done: done}
	dlq := f.committed("dlq", 1)
	f.produce("in-a", "k", "1")
	inputs["k"] = append(inputs["k"], 1)
	outs := f.committed("out", 8)
	rn.stop(t)
	checkSums(t, outs, inputs)
	if len(dlq) != 1 || header(dlq[0], headers.ErrorClassKey) != string(headers.ClassEncode) || string(dlq[0].Value) != "8" {
		t.Fatalf("DLQ = %d records (%v), want the input 8 as %s", len(dlq), dlq, headers.ClassEncode)
	}
	if s := m.Snapshot(); s.Aborts["encode"] == 0 {
		t.Errorf("aborts = %v, want an encode abort", s.Aborts)
	}
}

func TestNewRunnerRejectsBadOptions(t *testing.T) {
	_, err := NewRunner(sumTopology(), sumStage(nil), Options{Conn: kafka.Conn{Brokers: []string{"x:1"}}})
	if err == nil || !strings.Contains(err.Error(), "InstanceID") || !strings.Contains(err.Error(), "Group") {
		t.Fatalf("err = %v", err)
	}
	st := sumStage(nil)
	st.Decode = nil
	f := &fixture{conn: kafka.Conn{Brokers: []string{"x:1"}}, group: "g"}
	if _, err := NewRunner(sumTopology(), st, f.options("0", nil)); err == nil || !strings.Contains(err.Error(), "Decode") {
		t.Fatalf("err = %v", err)
	}
	o := f.options("0", nil)
	o.HeartbeatInterval = o.SessionTimeout
	if _, err := NewRunner(sumTopology(), sumStage(nil), o); err == nil || !strings.Contains(err.Error(), "HeartbeatInterval") {
		t.Fatalf("heartbeat = session timeout: err = %v, want it refused", err)
	}
	o = f.options("0", nil)
	o.OffsetReset = "smallest"
	if _, err := NewRunner(sumTopology(), sumStage(nil), o); err == nil || !strings.Contains(err.Error(), "OffsetReset") {
		t.Fatalf("offset reset smallest: err = %v, want it refused", err)
	}
}

// TestStoreBound: bounding the decoded states moves keys back to bytes without losing any.
func TestStoreBound(t *testing.T) {
	s := newStore[int64]()
	for i := range 100 {
		k := "k" + strconv.Itoa(i)
		b, _ := intCodec{}.Encode(int64(i))
		if i%2 == 0 {
			s.restorePut([]byte(k), b)
			s.promote(k, int64(i))
		} else {
			s.putLive(k, int64(i), b)
		}
	}
	bytes := s.bytes
	s.bound(50)
	if len(s.live) > 50 || s.keys() != 100 || s.bytes != bytes {
		t.Fatalf("after bound(50): %d live, %d keys, %d bytes (want ≤ 50, 100, %d)", len(s.live), s.keys(), s.bytes, bytes)
	}
	for i := range 100 {
		k := "k" + strconv.Itoa(i)
		var got int64
		if ls, ok := s.live[k]; ok {
			got = ls.state
		} else if raw, ok := s.raw[k]; ok {
			got, _ = intCodec{}.Decode(raw)
		} else {
			t.Fatalf("key %s lost", k)
		}
		if got != int64(i) {
			t.Fatalf("key %s = %d, want %d", k, got, i)
		}
	}
}

// TestRunnerIgnore: ignored inputs, of keys with and without state, reach neither Process nor
// the store (no state, no changelog record for a key that had only those), change no sum, and
// commit with their transactions (the group's offsets reach the end of the inputs).
func TestRunnerIgnore(t *testing.T) { stateModes(t, testRunnerIgnore) }

func testRunnerIgnore(t *testing.T, immutable bool) {
	f := newFixture(t)
	f.immutable = immutable
	skipsProcessed.Store(0)
	inputs := map[string][]int64{}
	f.feed(4, 2, inputs)
	for _, key := range []string{"k0", "k1", "k2", "k3", "only-skips"} {
		f.produce("in-a", key, "skip")
		f.produce("in-b", key, "skip")
	}
	// a key whose stored state does not decode: processed, its skip would be dead-lettered
	// (class state); ignored, it only commits
	f.produce("sum-changelog", "bad-state", "not a number")
	f.produce("in-a", "bad-state", "skip")
	f.produce("in-b", "k0", "bad") // the one dead letter
	f.feed(4, 2, inputs)
	rn := f.start("0", nil, nil)
	checkSums(t, f.committed("out", 16), inputs)
	adm := f.admin()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(ctx, f.prefix+"in-a", f.prefix+"in-b")
		if err != nil {
			t.Fatal(err)
		}
		got, err := adm.FetchOffsets(ctx, f.group)
		if err != nil {
			t.Fatal(err)
		}
		behind := 0
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := got.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
				behind++
			}
		})
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d input partitions' committed offsets are short of their ends", behind)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rn.stop(t)
	if n := skipsProcessed.Load(); n != 0 {
		t.Errorf("Process saw %d ignored inputs", n)
	}
	for _, r := range f.committed("sum-changelog", 5) {
		if k := string(r.Key); k == "only-skips" || k == "bad-state" && string(r.Value) != "not a number" {
			t.Errorf("an ignored input wrote the changelog: %s = %q", r.Key, r.Value)
		}
	}
	dlq := f.committedWithin("dlq", 2, 3*time.Second)
	if len(dlq) != 1 || header(dlq[0], headers.ErrorClassKey) != string(headers.ClassDecode) {
		for _, r := range dlq {
			t.Errorf("dead letter %s: %s", r.Key, header(r, headers.ErrorClassKey))
		}
		t.Fatalf("%d dead letters, want the one bad input", len(dlq))
	}
}
