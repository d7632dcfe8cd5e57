package topology

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/headers"
)

// Options configure a Runner; NewRunner validates them once.
type Options struct {
	Conn kafka.Conn
	// Stage names the stage to run; empty selects the topology's only stage.
	Stage string
	// Group is the consumer group; the transactional id is Group + "-" + InstanceID, stable
	// across restarts so a restarted instance fences and aborts its predecessor's transaction
	// at once. Two live instances must never share an InstanceID.
	Group      string
	InstanceID string

	TransactionTimeout time.Duration // broker aborts a transaction open longer than this
	SessionTimeout     time.Duration
	RebalanceTimeout   time.Duration
	// HeartbeatInterval must be below SessionTimeout (a member that heartbeats no more often
	// than its session expires is evicted again and again: the group never settles); zero
	// means SessionTimeout/3, at most 3s (franz-go's and Kafka's default).
	HeartbeatInterval time.Duration
	// MaxRecordsPerTxn and MaxTxnDuration bound one transaction (whichever comes first), so a
	// transaction stays well inside TransactionTimeout and a rebalance waits little.
	MaxRecordsPerTxn int
	MaxTxnDuration   time.Duration
	// MinTxnDuration is how long a transaction keeps waiting for records once the consumer has
	// caught up (with a backlog it grows to MaxRecordsPerTxn or MaxTxnDuration); zero means
	// MaxTxnDuration / 8. A shorter floor lowers the latency of a record but raises the commit
	// rate (every commit writes markers to each partition it touched). On the benchmark host,
	// MaxTxnDuration/8 against MaxTxnDuration: p50 49 ms against 126 ms, p99 305 against 250 ms
	// (medians of 3, within the noise), same throughput (bench/RESULTS.md).
	MinTxnDuration time.Duration
	// MaxBufferedRecords bounds the producer buffer; Produce blocks when it is full.
	MaxBufferedRecords int
	// MaxDecodedStates bounds the decoded states a stage with ImmutableState keeps between
	// transactions (the others stay bytes and are decoded on their next use): a decoded state
	// takes several times the memory of its changelog bytes (bench/RESULTS.md). Zero means
	// 100,000; negative, no bound.
	MaxDecodedStates int
	// Parallelism is the number of goroutines that decode and validate a polled batch and
	// encode the changelog states of a transaction; zero means 1. The keyed part (state,
	// Process, produce) stays on the run loop goroutine, in record order. More goroutines raise
	// the wall-clock rate on an idle multi-core host but cost CPU per event (hand-offs, idle
	// spinning; bench/RESULTS.md has the measurements). The restore always uses up to
	// GOMAXPROCS clients: it is a burst that readiness waits for.
	Parallelism int
	// OffsetReset is what happens when a committed input offset is no longer in the log
	// (retention or DeleteRecords passed it during an outage): "" or kafka.ResetNone stops Run
	// with a *kafka.OffsetsLostError naming the topic, partition and lost offsets; earliest
	// or latest skip the lost records (an explicit operator decision, logged by franz-go).
	OffsetReset kafka.OffsetReset
	// RestoreTimeout bounds one restore, including the wait for open transactions on the
	// changelog to end; zero means 2 × TransactionTimeout + 1 minute.
	RestoreTimeout time.Duration
	// StateDir, if set, keeps the stage's state in a persistent store (Pebble) under this
	// directory instead of in memory: memory is then bounded by State (block cache, memtables)
	// and Options.MaxDecodedStates, not by the number of keys, and an assigned partition whose
	// store is intact restores only the changelog's tail after its checkpoint (diskStore).
	// The directory belongs to one process (the pod's volume).
	StateDir string
	State    DiskOptions
	// Standby, with a persistent store, keeps warm copies of the partitions this instance does
	// not own (standby.go): every StandbyInterval it reads what the changelog gained for each of
	// them into the store with the same validated restore an assignment runs, so a partition
	// that moves here (a scale-out, a failed member's share) restores only the records written
	// since the last pass instead of its whole changelog. An instance with Standby follows
	// every partition it does not own: its disk holds the whole state and it reads the whole
	// changelog. Zero StandbyInterval means DefaultStandbyInterval.
	Standby         bool
	StandbyInterval time.Duration
	// SweepInterval is how often time-driven eviction looks for due keys between transactions
	// (sweep.go; only for a stage with Processor.Expire), and SweepMaxKeys bounds one sweep
	// transaction's tombstones; zero means DefaultSweepInterval and DefaultSweepMaxKeys.
	SweepInterval time.Duration
	SweepMaxKeys  int
	// AllowedLateness is how far the sweep trails a partition's stream time: a key is evicted
	// once its expiry is at or before stream time − AllowedLateness, so an event that arrives up
	// to that much behind the partition's newest event still finds its order (sweep.go).
	AllowedLateness time.Duration

	Metrics Metrics      // nil: NopMetrics
	Logger  *slog.Logger // nil: slog.Default()
	Now     func() time.Time
	// ClientOpts are appended to the session client's options (tests add hooks here).
	ClientOpts []kgo.Opt
}

func (o *Options) validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("topology options: "+f, a...)) }
	if len(o.Conn.Brokers) == 0 {
		bad("Conn.Brokers is empty")
	}
	if o.Group == "" {
		bad("Group is empty")
	}
	if o.InstanceID == "" {
		bad("InstanceID is empty: the transactional id must be stable per instance")
	}
	if o.TransactionTimeout <= 0 {
		bad("TransactionTimeout must be positive")
	}
	if o.MaxTxnDuration <= 0 || o.MaxTxnDuration >= o.TransactionTimeout {
		bad("MaxTxnDuration must be positive and below TransactionTimeout")
	}
	if o.MaxRecordsPerTxn < 1 {
		bad("MaxRecordsPerTxn must be at least 1")
	}
	if o.MaxBufferedRecords < o.MaxRecordsPerTxn {
		bad("MaxBufferedRecords must be at least MaxRecordsPerTxn")
	}
	if o.SessionTimeout <= 0 || o.RebalanceTimeout < o.SessionTimeout {
		bad("SessionTimeout must be positive and RebalanceTimeout at least SessionTimeout")
	}
	if reset, err := kafka.ParseOffsetReset(string(o.OffsetReset)); err != nil {
		bad("OffsetReset: %v", err)
	} else {
		o.OffsetReset = reset
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = min(o.SessionTimeout/3, 3*time.Second)
	}
	if o.HeartbeatInterval <= 0 || o.HeartbeatInterval >= o.SessionTimeout {
		bad("HeartbeatInterval (%s) must be positive and below SessionTimeout (%s): the group would never settle", o.HeartbeatInterval, o.SessionTimeout)
	}
	if o.Parallelism < 0 {
		bad("Parallelism must not be negative")
	}
	if o.Parallelism == 0 {
		o.Parallelism = 1
	}
	if o.MinTxnDuration <= 0 || o.MinTxnDuration > o.MaxTxnDuration {
		o.MinTxnDuration = o.MaxTxnDuration / 8
	}
	if o.MaxDecodedStates == 0 {
		o.MaxDecodedStates = 100_000
	}
	if o.Metrics == nil {
		o.Metrics = NopMetrics{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RestoreTimeout <= 0 {
		o.RestoreTimeout = 2*o.TransactionTimeout + time.Minute
	}
	if o.SweepInterval < 0 || o.SweepMaxKeys < 0 || o.AllowedLateness < 0 {
		bad("SweepInterval, SweepMaxKeys and AllowedLateness must not be negative")
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	switch {
	case o.State.ValueCacheBytes == 0:
		o.State.ValueCacheBytes = DefaultValueCacheBytes
	case o.State.ValueCacheBytes < 0:
		o.State.ValueCacheBytes = 0 // off
	}
	if o.Standby && o.StateDir == "" {
		bad("Standby needs a persistent store (StateDir): an in-memory standby would hold every partition's state in RAM")
	}
	if o.StandbyInterval < 0 {
		bad("StandbyInterval must not be negative")
	}
	if o.StandbyInterval == 0 {
		o.StandbyInterval = DefaultStandbyInterval
	}
	if o.SweepMaxKeys == 0 {
		o.SweepMaxKeys = DefaultSweepMaxKeys
	}
	return errors.Join(errs...)
}

// Runner drives one keyed stage exactly once: for each polled record it decodes, validates,
// reads the key's state, runs the processor, and produces the outputs, the changelog (the new
// state of each touched key, once per key per transaction) and dead letters; the consumed
// offsets commit in the same transaction (franz-go GroupTransactSession, read_committed).
//
// Lifecycle: NewRunner validates everything that needs no broker; Run verifies the topics,
// joins the group and blocks until ctx is cancelled (returns nil after finishing the open
// transaction and leaving the group) or a fatal error (returned: fenced, an End error, a failed
// restore — the process should exit non-zero and be restarted with the same instance id).
// Ready and Status are safe to call concurrently with Run. A Runner runs once.
type Runner[E, S, O any] struct {
	top    Topology
	stage  StageSpec
	beh    Processor[E, S, O]
	o      Options
	cur    *decoded[E] // the record process is working on (logAttrs)
	writes map[Stream]bool
	inputs []string // the stage's inputs and its re-route topic
	// partitions is the inputs' partition count (co-partitioned, checked at start): a key's
	// partition is KeyPartition(key, partitions). Set by Run before the first poll.
	partitions int
	log        *slog.Logger
	m          Metrics

	// groupEvents counts the group's callbacks (assigned, revoked, lost): a transaction that
	// End aborted while it did not change was aborted by the broker, not by a rebalance
	groupEvents atomic.Int64

	mu         sync.Mutex
	events     []assignEvent
	pollCancel context.CancelFunc
	joined     bool
	restoring  map[int32]bool // assigned, store not yet restored (fetch paused)
	ownedParts map[int32]bool // assigned and restored
	// heldParts: partitions whose store the run loop holds (installed, not yet dropped); it may
	// write them until it drops them, so a standby pass leaves them alone
	heldParts map[int32]bool
	// standbyCancel interrupts the standby pass in progress (an assignment must not wait for it)
	standbyCancel context.CancelFunc
	fatal         error
	// restoreMu serialises the persistent store's restores: an assignment's and a standby pass
	restoreMu sync.Mutex

	stores map[int32]*store[S] // only the run loop touches stores
	disk   *diskStore          // nil: states in memory (Options.StateDir empty)
	// diskHealth is disk for Status, which runs on other goroutines (set once Run opened it)
	diskHealth atomic.Pointer[diskStore]

	rejMu       sync.Mutex
	rejected    map[source]string // input → topic of the output the broker refused
	hasRejected atomic.Bool       // rejected is not empty: process looks it up only then

	ov  overlay[S]
	txn txnState
	// eagerEncode makes the next transaction encode each Put state as its input is processed
	// (as opposed to once per key when the changelog is prepared), so the input whose state
	// cannot be encoded is found and dead-lettered. It is set when a transaction aborted for
	// that reason and cleared by the next commit.
	eagerEncode bool
	lastEnd     time.Time     // when the last transaction's End returned (offsetsOnlyGap)
	batch       []*kgo.Record // the polled batch being processed, reused
	decoded     []decoded[E]  // decode results of batch, by index
	encodeQueue []*pending[S] // Put states to encode when the changelog is prepared, reused
	outs        [][]byte      // encoded outputs of the input being processed, reused

	// time-driven eviction (sweep.go)
	lastSweep                time.Time
	sweepFull                bool        // the last sweep round took all it may: sweep again at once
	sweepWanted              bool        // a sweep may find something: the stream time moved, or one was skipped
	sweepDrops, sweepReindex []sweepItem // the committing sweep's index changes (writeCommitted)
	evicted                  int64       // keys the sweep evicted (tests)
}

// fetchMaxBytes is the runner's kgo.FetchMaxBytes (Options.ClientOpts may override it).
const fetchMaxBytes = 4 << 20

// decoded is the result of decoding and validating one record of a batch.
type decoded[E any] struct {
	ev   E
	err  error
	step headers.ErrorClass // headers.ClassDecode or headers.ClassInvalid when err is set
	// origin is, for a record of the re-route topic, the input it re-routes as its producer
	// wrote it (topic, partition and offset of the original, the same key, value and
	// headers); nil otherwise, or when the headers do not say (then misrouted is set).
	origin    *kgo.Record
	misrouted error
}

type assignEvent struct {
	assigned   bool
	partitions []int32
}

// maxDeadLogPerTxn bounds the dead letters a committed transaction logs one by one: a flood of
// poison is one line per record up to here, then one line with the count (the metric has all).
const maxDeadLogPerTxn = 20

type deadLogEntry struct {
	src   source
	class headers.ErrorClass
	msg   string
	attrs []any // Processor.LogAttrs of its event
}

// txnState is the bookkeeping of the open transaction; reused between transactions.
type txnState struct {
	records    int
	began      time.Time
	timestamps []time.Time
	produced   map[string]int
	consumed   map[string]int
	dead       map[[2]string]int
	deadLog    []deadLogEntry // the first dead letters of the transaction, logged if it commits
	rerouted   map[string]int
	marks      []source // the rejected marks this transaction dead-letters; dropped when it commits
	// polled are the records the transaction polled; recycled (DecompressPool) when it ends.
	// Nothing may keep a record, or a slice of its key, value or headers, past End: decoded
	// values copy what they keep (schemas.Codec.DecodeInto), keys are copied into strings.
	polled  []*kgo.Record
	results *produceResults // every produce of the transaction reports here
	reject  func(src source, topic string)
	evTime  map[int32]int64 // per partition, the highest event time processed (sweep.go)
	// The outputs and changelog records of the transaction, with their headers, are carved
	// out of these chunks instead of allocated one by one. They are reused when the next
	// transaction begins: every produce of this one has completed by then (transact waits for
	// them before End), so franz-go holds none of them. Within a transaction a full chunk is
	// left to the records in it (full) and another one started, so nothing handed to franz-go
	// is written again before the transaction ends; then the full chunks become free ones.
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	hbuf []byte
	full chunks // this transaction's full chunks
	free chunks // chunks of earlier transactions, for this one's next
}

// chunks are chunks of outputs, headers and header bytes.
type chunks struct {
	recs [][]kgo.Record
	hdrs [][]kgo.RecordHeader
	hbuf [][]byte
}

// resetOutputs makes the chunks of the previous transaction reusable (its records are done).
func (t *txnState) resetOutputs() {
	clear(t.recs) // no values or keys pinned until the chunk is used again
	for _, c := range t.full.recs {
		clear(c)
	}
	t.recs, t.hdrs, t.hbuf = t.recs[:0], t.hdrs[:0], t.hbuf[:0]
	freeChunks(&t.full.recs, &t.free.recs)
	freeChunks(&t.full.hdrs, &t.free.hdrs)
	freeChunks(&t.full.hbuf, &t.free.hbuf)
}

// freeChunks moves the chunks of full to free.
func freeChunks[T any](full, free *[][]T) {
	*free = append(*free, *full...)
	clear(*full)
	*full = (*full)[:0]
}

// nextChunk retires cur (full: it stays with the records that use it until the transaction
// ends) and returns an empty chunk of capacity ≥ n: a free one, or a new one of capacity size.
func nextChunk[T any](cur []T, full, free *[][]T, n, size int) []T {
	if cap(cur) > 0 {
		*full = append(*full, cur)
	}
	for k := len(*free) - 1; k >= 0; k-- {
		if c := (*free)[k]; cap(c) >= n {
			(*free)[k] = (*free)[len(*free)-1]
			(*free)[len(*free)-1] = nil
			*free = (*free)[:len(*free)-1]
			return c[:0]
		}
	}
	return make([]T, 0, max(size, n))
}

// record returns a zero record for one produce of the transaction.
func (t *txnState) record() *kgo.Record {
	if len(t.recs) == cap(t.recs) {
		t.recs = nextChunk(t.recs, &t.full.recs, &t.free.recs, 1, min(max(256, 2*cap(t.recs)), 8192))
	}
	t.recs = t.recs[:len(t.recs)+1]
	return &t.recs[len(t.recs)-1]
}

// headerBytes makes room for need more bytes in the transaction's header bytes.
func (t *txnState) headerBytes(need int) {
	if len(t.hbuf)+need > cap(t.hbuf) {
		t.hbuf = nextChunk(t.hbuf, &t.full.hbuf, &t.free.hbuf, need, 16<<10)
	}
}

// sourceHeaders is sourceHeaders carved out of the transaction's chunks: the same four
// headers, room for n, no allocation.
func (t *txnState) sourceHeaders(s source, seq, n int) []kgo.RecordHeader {
	n = max(n, 4)
	if len(t.hdrs)+n > cap(t.hdrs) {
		t.hdrs = nextChunk(t.hdrs, &t.full.hdrs, &t.free.hdrs, n, 1024)
	}
	t.headerBytes(len(s.topic) + 3*20)
	start := len(t.hbuf)
	buf := append(t.hbuf, s.topic...)
	tp := len(buf)
	buf = strconv.AppendInt(buf, int64(s.partition), 10)
	pp := len(buf)
	buf = strconv.AppendInt(buf, s.offset, 10)
	op := len(buf)
	buf = strconv.AppendInt(buf, int64(seq), 10)
	t.hbuf = buf
	h := t.hdrs[len(t.hdrs) : len(t.hdrs)+4 : len(t.hdrs)+n]
	t.hdrs = t.hdrs[:len(t.hdrs)+n]
	h[0] = kgo.RecordHeader{Key: headers.SourceTopic, Value: buf[start:tp:tp]}
	h[1] = kgo.RecordHeader{Key: headers.SourcePartition, Value: buf[tp:pp:pp]}
	h[2] = kgo.RecordHeader{Key: headers.SourceOffset, Value: buf[pp:op:op]}
	h[3] = kgo.RecordHeader{Key: headers.OutputSeq, Value: buf[op:len(buf):len(buf)]}
	return h
}

// NewRunner checks the topology, the stage's functions and the options; nothing connects.
func NewRunner[E, S, O any](t Topology, st Processor[E, S, O], o Options) (*Runner[E, S, O], error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	var ks StageSpec
	switch {
	case o.Stage != "":
		var ok bool
		if ks, ok = t.Stage(o.Stage); !ok {
			return nil, fmt.Errorf("topology: no stage named %q", o.Stage)
		}
	case len(t.Stages) == 1:
		ks = t.Stages[0]
	default:
		return nil, errors.New("topology: several stages; Options.Stage must name the one this runner drives")
	}
	if st.Classify == nil {
		st.Classify = DefaultClassify
	}
	r := &Runner[E, S, O]{
		top: t, stage: ks, beh: st, o: o, log: o.Logger.With("stage", ks.Name, "instance", o.InstanceID), m: o.Metrics,
		writes: map[Stream]bool{}, restoring: map[int32]bool{}, ownedParts: map[int32]bool{}, heldParts: map[int32]bool{},
		stores: map[int32]*store[S]{}, rejected: map[source]string{},
		ov:  overlay[S]{parts: map[int32]map[string]*pending[S]{}},
		txn: txnState{produced: map[string]int{}, consumed: map[string]int{}, dead: map[[2]string]int{}, rerouted: map[string]int{}},
	}
	r.txn.reject = r.noteRejected
	for _, w := range ks.Writes {
		r.writes[w] = true
	}
	for _, in := range ks.Inputs {
		r.inputs = append(r.inputs, string(in))
	}
	if ks.Reroute != "" {
		r.inputs = append(r.inputs, string(ks.Reroute))
	}
	return r, nil
}

// TransactionalID is the stable transactional id of this instance.
func (r *Runner[E, S, O]) TransactionalID() string { return r.o.Group + "-" + r.o.InstanceID }

// Status is a point-in-time view of the runner for /readyz and logs.
type Status struct {
	Joined    bool    // the group assigned partitions at least once (possibly none)
	Owned     []int32 // partitions being processed
	Restoring []int32 // assigned partitions whose store is still restoring
	Err       error   // the fatal error Run returned, if any
	Store     error   // the persistent store cannot take writes (stalled, disk full); nil in memory mode
}

// Ready reports whether the runner has joined the group, every assigned partition's store
// is restored and the persistent store takes writes.
func (r *Runner[E, S, O]) Ready() bool {
	s := r.Status()
	return s.Joined && len(s.Restoring) == 0 && s.Err == nil && s.Store == nil
}

// Status returns the current status.
func (r *Runner[E, S, O]) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{Joined: r.joined, Err: r.fatal}
	if d := r.diskHealth.Load(); d != nil {
		s.Store = d.health()
	}
	for p := range r.ownedParts {
		s.Owned = append(s.Owned, p)
	}
	for p := range r.restoring {
		s.Restoring = append(s.Restoring, p)
	}
	slices.Sort(s.Owned)
	slices.Sort(s.Restoring)
	return s
}

// Run verifies the topics, joins the group and processes until ctx is cancelled or a fatal
// error occurs; see Runner.
func (r *Runner[E, S, O]) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			r.mu.Lock()
			r.fatal = err
			r.mu.Unlock()
		}
	}()
	if err := r.verifyTopics(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped while starting (a SIGTERM as the pod is rescheduled): nothing was joined or
			// produced, so this is a clean stop, not a failed start.
			r.log.Info("runtime stopped before it started")
			return nil
		}
		return err
	}
	opts := append(r.o.Conn.Options(),
		kgo.ConsumerGroup(r.o.Group),
		kgo.ConsumeTopics(r.inputs...),
		kgo.TransactionalID(r.TransactionalID()),
		kgo.TransactionTimeout(r.o.TransactionTimeout),
		kgo.SessionTimeout(r.o.SessionTimeout),
		kgo.HeartbeatInterval(r.o.HeartbeatInterval),
		kgo.RebalanceTimeout(r.o.RebalanceTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Eager range assignment gives one member partition p of every input (co-partitioning);
		// cooperative-sticky does not.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.MaxBufferedRecords(r.o.MaxBufferedRecords),
		// outputs go to the input's partition number; see the package invariants
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onRevoked),
		// Fetched batches are decompressed into pooled buffers, and decoded into pooled record
		// slices, given back when the transaction that consumed their records has ended
		// (transact): a fresh buffer per batch, zeroed and then collected, was ≈ 8 % of the
		// accrual core's CPU.
		kgo.WithPools(&kafka.DecompressPool{}),
		// A fetch response is decompressed whole when it arrives and its buffers come back only
		// once its last record's transaction has ended; with franz-go's default 50 MB bound a
		// response held more than the pool keeps (kafka.DefaultPooledBytes), and most batches allocated
		// afresh. 4 MiB is ≈ 10,000 of these records, several transactions' worth; the next
		// fetch is sent as soon as the buffered one is drained.
		kgo.FetchMaxBytes(fetchMaxBytes),
	)
	opts = append(opts, r.o.OffsetReset.ConsumeOptions()...)
	opts = append(opts, r.o.ClientOpts...)
	if r.o.StateDir != "" {
		if r.disk, err = openDiskStore(ctx, r.o.StateDir, r.stage.Name, r.o.State, r.log); err != nil {
			return fmt.Errorf("stage %s: %w", r.stage.Name, err)
		}
		r.diskHealth.Store(r.disk)
		defer func() {
			if cerr := r.disk.close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("stage %s: new transact session: %w", r.stage.Name, err)
	}
	r.log.Info("runtime starting", "transactional_id", r.TransactionalID(), "inputs", r.inputs)
	// Initialise the transactional id now, not at the first produce: InitProducerID fences a
	// killed predecessor and aborts its open transaction, which would otherwise hold the
	// changelog's last stable offset — and so the restore, which waits for LSO = HWM — until
	// the broker's transaction timeout.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("could not initialise the transactional id before the restore; the first transaction will", "err", err)
	}
	if r.o.Standby {
		sctx, stop := context.WithCancel(ctx)
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			r.followStandbys(sctx)
		}()
		defer func() { stop(); <-followed }() // before the store closes (deferred above)
	}
	err = r.loop(ctx, sess)
	// Close leaves the group, so the partitions move to the other instances at once; no
	// transaction is open here (loop ends only between transactions or after a fatal End).
	sess.Close()
	if err != nil {
		r.log.Error("runtime stopped", "err", err)
		return err
	}
	r.log.Info("runtime stopped")
	return nil
}

func (r *Runner[E, S, O]) verifyTopics(ctx context.Context) error {
	// start-up checks return what went wrong as their error: franz-go's own lines about the
	// same failure would only repeat it
	conn := r.o.Conn
	conn.Logger = nil
	cl, err := kgo.NewClient(conn.Options()...)
	if err != nil {
		return fmt.Errorf("stage %s: %w", r.stage.Name, err)
	}
	defer cl.Close()
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(vctx, r.inputs...)
	if err != nil {
		return fmt.Errorf("stage %s: topics: %w", r.stage.Name, err)
	}
	// The inputs are co-partitioned (VerifyTopics checks it): one partition count for every key.
	r.partitions = len(td[r.inputs[0]].Partitions)
	if err := r.ensureReroute(vctx, adm, td); err != nil {
		return err
	}
	if err := kafka.VerifyTopics(vctx, adm, r.stage.TopicSpecs(r.top.DLQ)); err != nil {
		return fmt.Errorf("stage %s: topics: %w", r.stage.Name, err)
	}
	if r.partitions == 0 {
		return fmt.Errorf("stage %s: topic %s has no partitions", r.stage.Name, r.inputs[0])
	}
	if err := kafka.CheckTopicHistory(vctx, cl, r.HistorySpec()); err != nil {
		return fmt.Errorf("stage %s: %w", r.stage.Name, err)
	}
	return nil
}

// ensureReroute creates the stage's re-route topic when it is missing, with the inputs'
// partition count and the broker's default replication, as Kafka Streams creates its internal
// topics: it belongs to the runtime, not to the operator (`retailflow topics create` creates it
// too, with the configured replication). An existing one is checked by VerifyTopics.
// td is the metadata of the stage's inputs and re-route topic.
func (r *Runner[E, S, O]) ensureReroute(ctx context.Context, adm *kadm.Client, td kadm.TopicDetails) error {
	if r.stage.Reroute == "" || td.Has(string(r.stage.Reroute)) {
		return nil
	}
	in, ok := td[r.inputs[0]]
	if !ok || in.Err != nil || len(in.Partitions) == 0 {
		return nil // VerifyTopics reports the missing input
	}
	resp, err := adm.CreateTopic(ctx, int32(len(in.Partitions)), -1, nil, string(r.stage.Reroute))
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("stage %s: create re-route topic %s: %w", r.stage.Name, r.stage.Reroute, err)
	}
	r.log.Info("created the re-route topic", "topic", r.stage.Reroute, "partitions", len(in.Partitions))
	// A created topic reaches the brokers' metadata a moment later: until every partition has a
	// leader, VerifyTopics would report it missing (seen on a busy single broker).
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		td, err := adm.ListTopics(ctx, string(r.stage.Reroute))
		if err == nil {
			if t, ok := td[string(r.stage.Reroute)]; ok && t.Err == nil && len(t.Partitions) == len(in.Partitions) && leadersKnown(t) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stage %s: re-route topic %s created but not in the metadata: %w", r.stage.Name, r.stage.Reroute, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// leadersKnown reports whether every partition of t has a leader.
func leadersKnown(t kadm.TopicDetail) bool {
	for _, p := range t.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// HistorySpec is what kafka.CheckTopicHistory compares with the fingerprint this stage
// recorded at its first start.
func (r *Runner[E, S, O]) HistorySpec() kafka.HistorySpec {
	h := r.stage.HistorySpec(r.o.Group, r.top.DLQ)
	h.SkipCommittedCheck = r.o.OffsetReset != kafka.ResetNone
	return h
}

// onAssigned runs in the group's goroutine. It pauses the new partitions before their offsets
// load, so nothing of them is polled until the run loop has restored their store.
func (r *Runner[E, S, O]) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	r.groupEvents.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joined = true
	var parts []int32
	for i, t := range r.inputs {
		ps := slices.Sorted(slices.Values(assigned[t]))
		if i == 0 {
			parts = ps
		} else if !slices.Equal(ps, parts) && r.fatal == nil {
			r.fatal = fmt.Errorf("stage %s: assignment is not co-partitioned: %s got %v, %s got %v (every member must run the range balancer on the same topics)",
				r.stage.Name, r.inputs[0], parts, t, ps)
		}
	}
	// With the eager range balancer, assigned is the member's whole assignment, and franz-go
	// calls this after every rebalance, even with nothing assigned. The revoke callback is not
	// as reliable: GroupTransactSession skips it while an earlier revoke has not been ended by
	// End, which an idle or restoring runner never calls. So whatever this runner still holds
	// and the new assignment lacks is dropped here.
	var gone []int32
	for p := range r.ownedParts {
		if !slices.Contains(parts, p) {
			gone = append(gone, p)
		}
	}
	for p := range r.restoring {
		if !slices.Contains(parts, p) {
			gone = append(gone, p)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		r.log.Warn("dropping partitions the group no longer assigns (their revoke was not reported)", "partitions", gone)
		r.revokeLocked(gone)
	}
	if len(assigned) == 0 {
		return
	}
	cl.PauseFetchPartitions(assigned)
	for _, p := range parts {
		r.restoring[p] = true
	}
	r.stopStandbyReadLocked()
	r.events = append(r.events, assignEvent{assigned: true, partitions: parts})
	r.wakeLocked()
}

// onRevoked (also for lost partitions) runs in the group's goroutine; the session aborts the
// open transaction, and the run loop drops the stores before its next transaction.
func (r *Runner[E, S, O]) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	r.groupEvents.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int32]bool{}
	var parts []int32
	for _, ps := range revoked {
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				parts = append(parts, p)
			}
		}
	}
	if len(parts) == 0 {
		return
	}
	r.revokeLocked(parts)
}

// revokeLocked forgets parts and queues the drop of their stores for the run loop.
func (r *Runner[E, S, O]) revokeLocked(parts []int32) {
	for _, p := range parts {
		delete(r.restoring, p)
		delete(r.ownedParts, p)
	}
	r.events = append(r.events, assignEvent{assigned: false, partitions: parts})
	r.wakeLocked()
}

func (r *Runner[E, S, O]) wakeLocked() {
	if r.pollCancel != nil {
		r.pollCancel()
	}
}

// loop is the transaction loop; it returns nil when ctx is cancelled between transactions.
func (r *Runner[E, S, O]) loop(ctx context.Context, sess *kgo.GroupTransactSession) error {
	aborts := 0
	for {
		if err := r.applyAssignments(ctx, sess.Client()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := r.sweep(ctx, sess); err != nil {
			return err
		}
		r.mu.Lock()
		if r.fatal != nil {
			err := r.fatal
			r.mu.Unlock()
			return err
		}
		pctx, cancel := r.pollContext(ctx) // bounded when a sweep is wanted (sweep.go)
		r.pollCancel = cancel
		wake := len(r.events) > 0
		r.mu.Unlock()
		if wake {
			cancel()
		}
		fs := sess.PollRecords(pctx, r.o.MaxRecordsPerTxn)
		r.mu.Lock()
		r.pollCancel = nil
		r.mu.Unlock()
		cancel()
		if fs.IsClientClosed() {
			return nil
		}
		if err := r.checkFetches(ctx, sess.Client(), fs); err != nil {
			return err
		}
		if fs.NumRecords() == 0 {
			continue
		}
		committed, reason, err := r.transact(ctx, sess, fs)
		if err != nil {
			return err
		}
		if committed {
			aborts = 0
			continue
		}
		r.m.Aborted(reason)
		if reason == "rebalance" {
			continue
		}
		aborts++
		wait := min(50*time.Millisecond<<min(aborts, 7), 5*time.Second)
		r.log.Warn("transaction aborted; backing off", "reason", reason, "consecutive", aborts, "wait", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// checkFetches logs the fetch errors of fs that kgo retries, and returns a fatal
// *kafka.OffsetsLostError when a committed offset is no longer in the log (OffsetReset none).
func (r *Runner[E, S, O]) checkFetches(ctx context.Context, cl *kgo.Client, fs kgo.Fetches) error {
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kerr.OffsetOutOfRange) {
			return
		}
		r.log.Warn("fetch error (the client retries)", "topic", t, "partition", p, "err", err)
	})
	if err := kafka.OffsetsLost(ctx, cl, r.o.Group, fs, max(r.o.Conn.Timeout, 10*time.Second)); err != nil {
		return fmt.Errorf("stage %s: %w", r.stage.Name, err)
	}
	return nil
}

// begin resets t for a transaction that began at now on cl: every per-transaction field is
// cleared here, for the input transactions and the sweep's alike.
func (t *txnState) begin(now time.Time, cl *kgo.Client) *txnState {
	t.records = 0
	t.began = now
	t.timestamps = t.timestamps[:0]
	clear(t.produced)
	clear(t.consumed)
	clear(t.dead)
	t.deadLog = t.deadLog[:0]
	clear(t.rerouted)
	t.marks = t.marks[:0]
	clear(t.evTime)
	t.resetOutputs()
	t.results = newProduceResults(cl, t.reject)
	return t
}

// transact runs one transaction over fs and any further records already buffered, within the
// bounds. It reports whether End committed and, if not, why.
func (r *Runner[E, S, O]) transact(ctx context.Context, sess *kgo.GroupTransactSession, fs kgo.Fetches) (bool, string, error) {
	if err := sess.Begin(); err != nil {
		return false, "", fmt.Errorf("stage %s: begin transaction: %w", r.stage.Name, err)
	}
	groupEvents := r.groupEvents.Load()
	t := r.txn.begin(r.o.Now(), sess.Client())
	r.ov.reset()
	// Produces must not be cut short by shutdown: the transaction is finished, not abandoned.
	pctx := context.WithoutCancel(ctx)

	var failure error // a transient error or a record of an unrestored partition: abort
	var fatal error   // input offsets lost: abort and stop
	encodeFailed := false
	began := time.Now()
	deadline := began.Add(r.o.MaxTxnDuration)
	for {
		behind := backlog(fs)
		r.decodeBatch(fs)
		t.polled = append(t.polled, r.batch...)
		for i, rec := range r.batch {
			if failure = r.process(pctx, sess, rec, &r.decoded[i]); failure != nil {
				break
			}
		}
		if failure != nil || t.records >= r.o.MaxRecordsPerTxn || ctx.Err() != nil {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		// With a backlog the transaction grows to its bounds, waiting for the next fetch if
		// need be: fewer, larger transactions cost less per record. Once caught up it waits for
		// more only until MinTxnDuration, then goes on only with records already buffered (a
		// nil context makes kgo return them without waiting) and otherwise ends, instead of
		// waiting out MaxTxnDuration for a trickle, which was most of a record's latency at
		// low rates.
		if !behind {
			left = time.Until(began.Add(r.o.MinTxnDuration))
		}
		if left > 0 {
			qctx, cancel := context.WithTimeout(ctx, left)
			fs = sess.PollRecords(qctx, r.o.MaxRecordsPerTxn-t.records)
			cancel()
		} else {
			fs = sess.PollRecords(nil, r.o.MaxRecordsPerTxn-t.records) //nolint:staticcheck // nil: do not wait (kgo.Client.PollRecords)
		}
		if fs.IsClientClosed() {
			break
		}
		if fatal = r.checkFetches(ctx, sess.Client(), fs); fatal != nil {
			failure = fatal
		}
		if failure != nil || fs.NumRecords() == 0 {
			break
		}
	}
	clear(r.batch) // the records are not needed past processing; do not pin their fetch buffers
	clear(r.decoded)
	if failure == nil {
		if failure = r.prepareChangelog(); failure != nil {
			encodeFailed = true
		} else {
			r.produceChangelog(pctx, sess)
		}
	}
	// Send what lingers now: wait waits for every produce, and End would flush anyway.
	_ = sess.Client().Flush(pctx)  // errors only on a cancelled context; pctx is never cancelled
	produceErr := t.results.wait() // waits for every produce of the transaction
	try := failure == nil && produceErr == nil
	if try && len(t.produced) == 0 { // every produce counts its topic in t.produced
		// Only offsets to commit (every input was a no-op: the accrual core's loyalty and ERP
		// records): give the previous transaction's markers time (offsetsOnlyGap). Nothing
		// waits for this transaction's outputs, since it has none.
		if d := offsetsOnlyGap - time.Since(r.lastEnd); d > 0 {
			time.Sleep(d)
		}
	}
	// End's context must not be cancelled: a cancelled End can leave the outcome unknown.
	committed, err := sess.End(context.Background(), kgo.TransactionEndTry(try))
	r.lastEnd = time.Now()
	// Every produce of the transaction has completed (wait above), so no output refers to a
	// polled record's key, value or headers any more: their decompression buffers go back to
	// the pool. A record polled again after an abort is a new record in a new buffer.
	t.polled = kafka.Recycle(t.polled)
	for topic, n := range t.consumed {
		r.m.Consumed(topic, n)
	}
	if err != nil {
		return false, "", fmt.Errorf("stage %s: end transaction (%d records): %w", r.stage.Name, t.records, err)
	}
	var fe *fatalError
	if fatal == nil && errors.As(failure, &fe) {
		fatal = fmt.Errorf("stage %s: %w", r.stage.Name, fe.err)
	}
	if fatal != nil {
		r.ov.reset()
		return false, "", fatal
	}
	if committed {
		r.eagerEncode = false
		if len(t.marks) > 0 {
			r.rejMu.Lock()
			for _, m := range t.marks {
				delete(r.rejected, m)
			}
			r.hasRejected.Store(len(r.rejected) > 0)
			r.rejMu.Unlock()
		}
		if err := r.applyOverlay(ctx); err != nil {
			return true, "", err
		}
		return true, "", nil
	}
	r.ov.reset()
	switch {
	case encodeFailed:
		r.eagerEncode = true
		r.log.Warn("transaction aborted: a state does not encode; the retry encodes per input and dead-letters the one that caused it", "err", failure)
		return false, "encode", nil
	case failure != nil:
		r.log.Warn("transaction aborted", "err", failure)
		return false, "transient", nil
	case produceErr != nil:
		r.log.Warn("transaction aborted: a produce failed", "err", produceErr)
		return false, "produce", nil
	case r.groupEvents.Load() != groupEvents:
		return false, "rebalance", nil
	default:
		// End aborts without an error on what it treats as abortable: besides a rebalance,
		// the coordinator moving or loading, or concurrent transactions, after franz-go's own
		// retries. Retrying at once would re-produce the whole batch in a tight loop.
		r.log.Warn("transaction aborted by the broker without a rebalance (coordinator moved or loading, concurrent transactions, a server error); backing off")
		return false, "coordinator", nil
	}
}

// offsetsOnlyGap is the least time between the end of a transaction and the End of a next one
// that produced nothing. With Kafka's transactions v2 (KIP-890, Kafka 4) an offsets-only
// transaction adds itself to the coordinator with its TxnOffsetCommit; right after the previous
// EndTxn the coordinator is still writing that transaction's markers, and the TxnOffsetCommit
// fails with an error franz-go's End treats as abortable (CONCURRENT_TRANSACTIONS by all the
// evidence; franz-go does not log the code): the transaction is aborted and polled again after
// the runner's back-off. A transaction that produced records added itself
// with its first produce, which franz-go retries on that error, so it needs no gap. Measured on
// the accrual core's drain (loyalty-only transactions of 2,000 records): 14–37 such aborts per
// run without the gap, 0–1 with a gap of 5 ms, none with 10 ms (three runs, drain and paced) or
// 20 ms (bench/RESULTS.md, ninth session).
const offsetsOnlyGap = 10 * time.Millisecond

// backlog reports whether a partition in fs has more committed records than fs carries: its
// last stable offset is beyond the last polled record by more than one (one offset is left
// for the commit marker of a transactional producer). It only steers the transaction's size.
func backlog(fs kgo.Fetches) bool {
	behind := false
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 && fp.LastStableOffset-(fp.Records[n-1].Offset+1) > 1 {
			behind = true
		}
	})
	return behind
}

// decodeBatch collects fs's records into r.batch and decodes and validates them into
// r.decoded, in parallel.
func (r *Runner[E, S, O]) decodeBatch(fs kgo.Fetches) {
	r.batch = r.batch[:0]
	fs.EachRecord(func(rec *kgo.Record) { r.batch = append(r.batch, rec) })
	n := len(r.batch)
	if cap(r.decoded) < n {
		r.decoded = make([]decoded[E], n)
	}
	r.decoded = r.decoded[:n]
	r.fanOut(n, func(i int) {
		rec := r.batch[i]
		d := &r.decoded[i]
		*d = decoded[E]{}
		if len(rec.Key) == 0 {
			return // dead-lettered as no-key by process
		}
		if r.stage.Reroute != "" && rec.Topic == string(r.stage.Reroute) {
			if d.origin, d.misrouted = r.originOf(rec); d.misrouted != nil {
				return
			}
			rec = d.origin // the stage decodes the record as its producer wrote it
		}
		ev, err := r.beh.Decode(rec)
		d.ev = ev // with an error: for LogAttrs only (Processor.Decode)
		if err != nil {
			d.err, d.step = err, headers.ClassDecode
			return
		}
		if r.beh.Validate != nil {
			if err := r.beh.Validate(ev); err != nil {
				d.err, d.step = err, headers.ClassInvalid
			}
		}
	})
}

// fanOutBlock is how many consecutive indexes a fanOut goroutine takes at a time: large enough
// that claiming a block costs nothing next to decoding it, small enough to balance the load.
const fanOutBlock = 16

// fanOut calls f(i) for every i in [0, n) from up to Options.Parallelism goroutines (the caller's
// included) and returns when every call has returned. f must be safe for concurrent use with
// distinct i.
func (r *Runner[E, S, O]) fanOut(n int, f func(int)) {
	workers := min(r.o.Parallelism, (n+fanOutBlock-1)/fanOutBlock)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			lo := int(next.Add(fanOutBlock)) - fanOutBlock
			if lo >= n {
				return
			}
			for i := lo; i < min(lo+fanOutBlock, n); i++ {
				f(i)
			}
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// process handles one record inside the open transaction; d is its decode result. It returns
// an error only when the transaction must abort (a transient failure, a record of a partition
// without a store); everything that is the record's own fault goes to the DLQ.
func (r *Runner[E, S, O]) process(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, d *decoded[E]) error {
	p := rec.Partition
	st := r.stores[p]
	if st == nil {
		return fmt.Errorf("record %s/%d@%d polled for a partition whose store is not restored", rec.Topic, p, rec.Offset)
	}
	r.cur = d // for the record-level log lines of dead letters and re-routes (logAttrs)
	t := &r.txn
	t.records++
	t.consumed[rec.Topic]++
	t.timestamps = append(t.timestamps, rec.Timestamp)
	src := source{rec.Topic, p, rec.Offset}

	if r.hasRejected.Load() {
		r.rejMu.Lock()
		// The mark stays until this transaction commits (applyOverlay): if the retry aborts
		// too — another refused record of it, a rebalance — the next retry needs it again.
		// Consumed here, two refused records of one retry took turns forever.
		mark := src
		rejTopic, rejected := r.rejected[mark]
		if !rejected && d.origin != nil {
			// a re-routed record's outputs and dead letters name its original input
			mark = source{d.origin.Topic, d.origin.Partition, d.origin.Offset}
			rejTopic, rejected = r.rejected[mark]
		}
		r.rejMu.Unlock()
		if rejected {
			t.marks = append(t.marks, mark)
			r.deadLetter(ctx, sess, rec, headers.ClassOutputRejected,
				fmt.Errorf("the broker refused an output of this record for %s (too large or invalid)", rejTopic), rejTopic == string(r.top.DLQ))
			return nil
		}
	}
	if len(rec.Key) == 0 {
		r.deadLetter(ctx, sess, rec, headers.ClassNoKey, errors.New("record has no key; the stage is keyed by order id"), false)
		return nil
	}
	if r.stage.Reroute != "" {
		if d.misrouted != nil {
			r.deadLetter(ctx, sess, rec, headers.ClassMisrouted, d.misrouted, false)
			return nil
		}
		if want := kafka.RecordPartition(rec, r.partitions); want != p {
			if d.origin != nil { // re-routed already, and still not where its key belongs
				r.deadLetter(ctx, sess, rec, headers.ClassMisrouted, fmt.Errorf("re-routed record is on partition %d of %s, its key hashes to %d (partition counts changed?)", p, rec.Topic, want), false)
				return nil
			}
			r.reroute(ctx, sess, rec, want)
			return nil
		}
		if d.origin != nil {
			// From here on the re-routed record is its original input: outputs and dead letters
			// name it, and outputs go to this partition (the key's).
			rec, src = d.origin, source{d.origin.Topic, d.origin.Partition, d.origin.Offset}
		}
	}
	if d.err != nil {
		return r.fail(ctx, sess, rec, d.step, d.err, p)
	}
	if r.beh.Ignore != nil && r.beh.Ignore(d.ev) {
		r.noteEventTime(p, d.ev) // as after a Process that kept the state and emitted nothing
		return nil
	}
	pe, ls := r.ov.find(st, p, string(rec.Key))
	inOverlay := pe != nil
	var key string
	var state S
	var found bool
	if inOverlay {
		key, state, found = pe.key, pe.state, pe.found
	} else if ls != nil {
		key, state, found = ls.key, ls.state, true
	} else {
		key = string(rec.Key)
		if raw, ok, err := st.lookup(key); ok || err != nil {
			if err != nil {
				return &fatalError{fmt.Errorf("%s/%d@%d: %w", rec.Topic, p, rec.Offset, err)}
			}
			if state, err = r.beh.State.Decode(raw); err != nil {
				return r.fail(ctx, sess, rec, "state", fmt.Errorf("stored state of key %q does not decode: %w", key, err), p)
			}
			found = true
			if r.beh.ImmutableState {
				ls = st.promote(key, state) // the same committed value, decoded once
			}
		}
	}
	step, err := r.beh.Process(key, state, found, d.ev)
	if err != nil {
		return r.fail(ctx, sess, rec, headers.ClassProcess, err, p)
	}
	// Encode everything before producing anything: an input either has all its effects in the
	// transaction or none (then it is dead-lettered).
	outs := r.outs[:0]
	for i, e := range step.Outputs {
		if !r.writes[e.To] {
			return r.fail(ctx, sess, rec, headers.ClassProcess, fmt.Errorf("processor emitted to %s, which stage %s does not write", e.To, r.stage.Name), p)
		}
		b, err := r.beh.Encode(e.To, e.Value)
		if err != nil {
			return r.fail(ctx, sess, rec, headers.ClassEncode, fmt.Errorf("output %d to %s: %w", i, e.To, err), p)
		}
		outs = append(outs, b)
	}
	r.outs = outs
	var enc []byte
	if step.Op == Put && r.eagerEncode {
		if enc, err = r.beh.State.Encode(step.State); err != nil {
			return r.fail(ctx, sess, rec, headers.ClassEncode, fmt.Errorf("state of key %q: %w", key, err), p)
		}
	}
	// only an event whose effects are all in the transaction moves the stream time: one that
	// was dead-lettered above (an output or its state did not encode) does not
	r.noteEventTime(p, d.ev)
	for i, e := range step.Outputs {
		out := t.record()
		out.Topic, out.Key, out.Value, out.Partition, out.Headers = string(e.To), rec.Key, outs[i], p, t.sourceHeaders(src, i, 5)
		sess.Produce(ctx, out, r.txn.results.add())
		t.produced[out.Topic]++
	}
	clear(outs)
	if !inOverlay {
		pe = r.ov.add(p, key, ls)
		pe.state, pe.found, pe.existed = state, found, found
	}
	switch step.Op {
	case Put:
		pe.state, pe.found, pe.op, pe.enc, pe.src = step.State, true, Put, enc, src
	case Evict:
		var zero S
		pe.state, pe.found, pe.op, pe.enc, pe.src = zero, false, Evict, nil, src
	}
	return nil
}

// fail routes a stage error: transient → abort the transaction (returned), fatal (ErrFatal) →
// abort and end Run, poison → DLQ (on partition p, the partition being processed).
func (r *Runner[E, S, O]) fail(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, step headers.ErrorClass, err error, p int32) error {
	if errors.Is(err, ErrFatal) {
		return &fatalError{fmt.Errorf("%s/%d@%d: %s: %w", rec.Topic, rec.Partition, rec.Offset, step, err)}
	}
	class, transient := r.beh.Classify(err)
	if transient {
		return fmt.Errorf("%s/%d@%d: transient %s error: %w", rec.Topic, rec.Partition, rec.Offset, step, err)
	}
	if class == "" {
		class = step
	}
	r.deadLetterTo(ctx, sess, rec, class, err, false, p)
	return nil
}

// reroute sends an input that arrived on another partition than its key's to the re-route
// topic's partition want, with its key, value, timestamp and producer headers, and its own
// coordinates in the Source* headers. Its offset commits with this transaction; the record is
// processed when the re-route topic's partition want is polled.
func (r *Runner[E, S, O]) reroute(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, want int32) {
	h := append(withoutHopHeaders(rec.Headers, 3), sourceHeaders(source{rec.Topic, rec.Partition, rec.Offset}, 0, 0)[:3]...)
	out := &kgo.Record{Topic: string(r.stage.Reroute), Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
		Partition: want, Headers: h}
	sess.Produce(ctx, out, r.txn.results.add())
	r.txn.produced[out.Topic]++
	r.txn.rerouted[rec.Topic]++
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("re-routing to the key's partition", append([]any{"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "to", want}, r.logAttrs()...)...)
	}
}

// logAttrs is Processor.LogAttrs of the event process is working on: what Decode returned,
// with or without an error.
func (r *Runner[E, S, O]) logAttrs() []any {
	if r.beh.LogAttrs == nil || r.cur == nil {
		return nil
	}
	return r.beh.LogAttrs(r.cur.ev)
}

// originOf reads the input a re-route record stands for from its Source* headers.
func (r *Runner[E, S, O]) originOf(rec *kgo.Record) (*kgo.Record, error) {
	src, ok := headerSource(rec.Headers)
	if !ok {
		return nil, fmt.Errorf("record %s/%d@%d has no %s/%s/%s headers: only the runtime writes the re-route topic",
			rec.Topic, rec.Partition, rec.Offset, headers.SourceTopic, headers.SourcePartition, headers.SourceOffset)
	}
	if !slices.Contains(r.stage.Inputs, Stream(src.topic)) {
		return nil, fmt.Errorf("record %s/%d@%d re-routes %s, which is not an input of stage %s", rec.Topic, rec.Partition, rec.Offset, src.topic, r.stage.Name)
	}
	o := *rec
	o.Topic, o.Partition, o.Offset = src.topic, src.partition, src.offset
	o.Headers = withoutHopHeaders(rec.Headers, 0)
	return &o, nil
}

// withoutHopHeaders copies hs without the runtime's per-hop headers (they describe one hop; the
// next writes its own), with room for extra more.
func withoutHopHeaders(hs []kgo.RecordHeader, extra int) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(hs)+extra)
	for _, h := range hs {
		if !headers.IsHop(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// fatalError is a failure that ends Run after the transaction aborted (ErrFatal).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// deadLetter produces rec's original key and value to the DLQ with the error headers, on rec's
// partition. dropValue replaces the value with nothing (the broker refused even the DLQ copy).
func (r *Runner[E, S, O]) deadLetter(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, class headers.ErrorClass, err error, dropValue bool) {
	r.deadLetterTo(ctx, sess, rec, class, err, dropValue, rec.Partition)
}

// deadLetterTo is deadLetter onto DLQ partition p.
func (r *Runner[E, S, O]) deadLetterTo(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, class headers.ErrorClass, err error, dropValue bool, p int32) {
	h := make([]kgo.RecordHeader, 0, len(rec.Headers)+9)
	h = append(h, rec.Headers...)
	h = append(h, sourceHeaders(source{rec.Topic, rec.Partition, rec.Offset}, 0, 0)[:3]...)
	msg := err.Error()
	if len(msg) > 4096 { // an error message must not make the DLQ record too large
		msg = msg[:4096]
	}
	now := r.o.Now().UTC()
	h = append(h,
		kgo.RecordHeader{Key: headers.ErrorClassKey, Value: []byte(class)},
		kgo.RecordHeader{Key: headers.ErrorMessage, Value: []byte(msg)},
		kgo.RecordHeader{Key: headers.FirstSeen, Value: []byte(now.Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: headers.SourceTimestamp, Value: []byte(rec.Timestamp.UTC().Format(time.RFC3339Nano))},
	)
	schemaID := int32(-1)
	if len(rec.Value) >= 5 && rec.Value[0] == 0 {
		schemaID = int32(binary.BigEndian.Uint32(rec.Value[1:5]))
		h = append(h, kgo.RecordHeader{Key: headers.SchemaID, Value: strconv.AppendInt(nil, int64(schemaID), 10)})
	}
	value := rec.Value
	if dropValue {
		value = nil
		h = append(h, kgo.RecordHeader{Key: headers.ValueDropped, Value: []byte("true")})
	}
	if r.beh.DeadLetter != nil {
		v, encErr := r.beh.DeadLetter(Rejected{Record: rec, Class: class, Err: err, SchemaID: schemaID, FirstSeen: now, ValueDropped: dropValue})
		if encErr != nil {
			h = append(h, kgo.RecordHeader{Key: headers.DLQEncodeError, Value: []byte(encErr.Error())})
		} else {
			value = v
		}
	}
	out := &kgo.Record{Topic: string(r.top.DLQ), Key: rec.Key, Value: value, Partition: p, Headers: h}
	sess.Produce(ctx, out, r.txn.results.add())
	r.txn.produced[out.Topic]++
	r.txn.dead[[2]string{rec.Topic, string(class)}]++
	if len(r.txn.deadLog) < maxDeadLogPerTxn {
		r.txn.deadLog = append(r.txn.deadLog, deadLogEntry{src: source{rec.Topic, rec.Partition, rec.Offset}, class: class, msg: msg, attrs: r.logAttrs()})
	}
}

// noteRejected marks the input src, whose output to topic the broker refused for what it is
// (produceResults.report): it is dead-lettered when it is re-polled after the abort.
func (r *Runner[E, S, O]) noteRejected(src source, topic string) {
	r.rejMu.Lock()
	if len(r.rejected) < 10000 { // bounded: each entry is cleared when its input is dead-lettered
		r.rejected[src] = topic
		r.hasRejected.Store(true)
	}
	r.rejMu.Unlock()
}

// prepareChangelog encodes the last state of every key the transaction Put, once per key, in
// parallel (Codec.Encode is safe for concurrent use). States already encoded per input
// (eagerEncode) are not encoded again. An error means the transaction must abort.
func (r *Runner[E, S, O]) prepareChangelog() error {
	q := r.encodeQueue[:0]
	for _, pe := range r.ov.order {
		if pe.op == Put && pe.enc == nil {
			q = append(q, pe)
		}
	}
	r.encodeQueue = q
	defer clear(q)
	var mu sync.Mutex
	var first error
	firstAt := len(q)
	r.fanOut(len(q), func(i int) {
		pe := q[i]
		enc, err := r.beh.State.Encode(pe.state)
		if err != nil {
			mu.Lock()
			if i < firstAt {
				firstAt, first = i, fmt.Errorf("state of key %q (partition %d, last changed by %s/%d@%d): %w",
					pe.key, pe.src.partition, pe.src.topic, pe.src.partition, pe.src.offset, err)
			}
			mu.Unlock()
			return
		}
		pe.enc = enc
	})
	return first
}

// produceChangelog writes the new state of each key the transaction changed, once.
func (r *Runner[E, S, O]) produceChangelog(ctx context.Context, sess *kgo.GroupTransactSession) {
	topic := string(r.stage.Store)
	for _, pe := range r.ov.order {
		if pe.op == Keep {
			continue
		}
		out := r.txn.record()
		// the key's bytes are the overlay key's (a string: never written; franz-go only reads a Key)
		out.Topic, out.Key, out.Value, out.Partition = topic, unsafe.Slice(unsafe.StringData(pe.key), len(pe.key)), pe.enc, pe.partition
		if pe.src.topic != "" { // a sweep's tombstone has no input
			out.Headers = r.txn.sourceHeaders(pe.src, 0, 6)
		}
		out.Headers = r.changelogHeaders(pe, out.Headers)
		pe.out = out // its offset, once produced, is the persistent store's checkpoint (read by applyOverlay after End, before the next transaction resets the chunk)
		sess.Produce(ctx, out, r.txn.results.add())
		r.txn.produced[topic]++
	}
}

// applyOverlay makes the committed transaction's state the store's and reports metrics. With
// a persistent store the states and each partition's checkpoint go to disk in one batch; an
// error there stops Run (the transaction is committed in Kafka: the restarted process finds the
// store's older checkpoint and restores the tail, this transaction's records included).
func (r *Runner[E, S, O]) applyOverlay(ctx context.Context) error {
	t := &r.txn
	touched := map[int32]bool{}
	if r.disk != nil {
		if err := r.writeCommitted(ctx); err != nil {
			r.ov.reset()
			return fmt.Errorf("stage %s: %w", r.stage.Name, err)
		}
	}
	for _, pe := range r.ov.order {
		st := r.stores[pe.partition]
		switch pe.op {
		case Put:
			if r.beh.ImmutableState {
				st.putLiveAt(pe.live, pe.key, pe.state, pe.enc) // read from live by this transaction: no lookup
			} else if r.disk == nil {
				st.putRaw(pe.key, pe.enc)
			} else {
				if ls, ok := st.live[pe.key]; ok {
					st.unlink(pe.key, ls) // a decoded copy of the old value
				}
				if r.o.State.ValueCacheBytes > 0 {
					st.putHot(pe.key, pe.enc)
				}
			}
			if pe.hasExp {
				st.index(pe.key, pe.exp)
			}
		case Evict:
			st.drop(pe.key)
		}
		touched[pe.partition] = true // a read may have decoded the key: bound below
	}
	r.commitStreamTimes()
	r.ov.reset()
	now := r.o.Now()
	r.m.Committed(t.records, now.Sub(t.began))
	for _, ts := range t.timestamps {
		r.m.Latency(now.Sub(ts))
	}
	for topic, n := range t.produced {
		r.m.Produced(topic, n)
	}
	dead := 0
	for k, n := range t.dead {
		r.m.DeadLettered(k[0], k[1], n)
		dead += n
	}
	for _, d := range t.deadLog {
		r.log.Info("dead-lettered", append([]any{"topic", d.src.topic, "partition", d.src.partition, "offset", d.src.offset, "class", d.class, "reason", d.msg}, d.attrs...)...)
	}
	if dead > len(t.deadLog) {
		r.log.Info("dead-lettered more records in the same transaction", "logged", len(t.deadLog), "total", dead)
	}
	for topic, n := range t.rerouted {
		r.m.Rerouted(topic, n)
	}
	if r.disk != nil && len(touched) > 0 {
		r.boundValueCache(touched)
	}
	for p := range touched {
		st := r.stores[p]
		if r.o.MaxDecodedStates > 0 {
			st.bound(r.o.MaxDecodedStates / len(r.stores))
		}
		r.m.StateSize(p, st.keys(), st.size())
	}
	return nil
}

// boundValueCache keeps the value caches of the runner's stores within
// DiskOptions.ValueCacheBytes together: when they exceed it, the stores just written give up
// values in proportion to their share.
func (r *Runner[E, S, O]) boundValueCache(touched map[int32]bool) {
	var total int64
	for _, st := range r.stores {
		total += st.hotBytes
	}
	limit := r.o.State.ValueCacheBytes
	if total <= limit {
		return
	}
	for p := range touched {
		st := r.stores[p]
		st.shrinkHot(int64(float64(st.hotBytes) * float64(limit) / float64(total)))
	}
}

// writeCommitted writes the committed transaction's states to the persistent store, with the
// checkpoint of each partition it wrote changelog records to: one past the highest offset, and
// the hash of that record. The records' offsets are set: End committed, so every produce
// finished (produceResults.wait waited for them).
func (r *Runner[E, S, O]) writeCommitted(ctx context.Context) error {
	w := r.disk.newTxnWrite()
	lasts := map[int32]*kgo.Record{} // per partition, the changelog record with the highest offset
	keys := map[int32]int64{}
	for _, pe := range r.ov.order {
		var err error
		switch pe.op {
		case Keep:
			continue
		case Put:
			err = w.set(pe.partition, pe.key, pe.enc)
			if err == nil && pe.hasExp {
				err = w.b.Set(r.disk.indexKey(pe.partition, pe.exp, pe.key), nil, nil)
			}
			if !pe.existed {
				keys[pe.partition]++
			}
		case Evict:
			err = w.delete(pe.partition, pe.key)
			if pe.existed {
				keys[pe.partition]--
			}
		}
		if err != nil {
			w.discard()
			return err
		}
		if pe.out == nil || pe.out.Offset < 0 {
			continue
		}
		if l, ok := lasts[pe.partition]; !ok || pe.out.Offset > l.Offset {
			lasts[pe.partition] = pe.out
		}
	}
	for p, l := range lasts {
		m := r.stores[p].meta
		m.Next, m.LastHash = l.Offset+1, recordHash(l.Key, l.Value)
		m.Keys += keys[p]
		w.checkpoint(p, m)
	}
	// the stream time the transaction reached, also where it wrote no changelog record
	for p, t := range r.txn.evTime {
		m, ok := w.metas[p]
		if !ok {
			m = r.stores[p].meta
		}
		if t > m.StreamTime {
			m.StreamTime = t
			w.checkpoint(p, m)
		}
	}
	if err := r.disk.indexBatch(w.b, r.sweepDrops, r.sweepReindex); err != nil {
		w.discard()
		return err
	}
	if err := w.commit(ctx); err != nil {
		return err
	}
	for p, m := range w.metas {
		r.stores[p].meta = m
	}
	return nil
}

// applyAssignments drains the group's events in order (drop revoked stores, restore assigned
// ones) and resumes fetching of the partitions whose store is complete. It runs between
// transactions.
func (r *Runner[E, S, O]) applyAssignments(ctx context.Context, cl *kgo.Client) error {
	for {
		r.mu.Lock()
		evs := r.events
		r.events = nil
		r.mu.Unlock()
		if len(evs) == 0 {
			return nil
		}
		need := map[int32]bool{}
		revoked := false
		for _, ev := range evs {
			for _, p := range ev.partitions {
				if ev.assigned {
					need[p] = true
				} else {
					revoked = true
					delete(need, p)
					if _, ok := r.stores[p]; ok {
						delete(r.stores, p)
						r.m.StateSize(p, -1, 0)
					}
					r.mu.Lock()
					delete(r.heldParts, p)
					r.mu.Unlock()
				}
			}
		}
		if revoked {
			// Marks of refused outputs are this owner's: a partition that comes back is
			// processed anew, and a refused output is refused and marked again (one more
			// abort) — better than marks of records another owner has long committed.
			r.rejMu.Lock()
			clear(r.rejected)
			r.hasRejected.Store(false)
			r.rejMu.Unlock()
		}
		if len(need) == 0 {
			continue
		}
		parts := slices.Sorted(func(yield func(int32) bool) {
			for p := range need {
				if !yield(p) {
					return
				}
			}
		})
		fresh := map[int32]*store[S]{}
		r.mu.Lock()
		for _, p := range parts {
			delete(r.stores, p) // a re-assigned partition is restored anew: another owner may have written
			delete(r.heldParts, p)
		}
		r.stopStandbyReadLocked() // this restore goes first
		r.mu.Unlock()
		began := time.Now()
		var reports map[int32]restoreReport
		var err error
		if r.disk != nil {
			r.restoreMu.Lock()
			reports, err = r.restoreDisk(ctx, ctx, parts, fresh, false)
			r.restoreMu.Unlock()
		} else {
			reports, err = r.restoreMemory(ctx, parts, fresh)
		}
		if err != nil {
			return fmt.Errorf("stage %s: restore partitions %v: %w", r.stage.Name, parts, err)
		}
		// Install and resume only the partitions no newer group event mentions: if one does, the
		// next round drops or restores it again, and it must stay paused until then.
		r.mu.Lock()
		newer := map[int32]bool{}
		for _, ev := range r.events {
			for _, p := range ev.partitions {
				newer[p] = true
			}
		}
		resume := map[string][]int32{}
		var keys int
		for _, p := range parts {
			if newer[p] {
				continue
			}
			r.stores[p] = fresh[p]
			r.heldParts[p] = true
			keys += fresh[p].keys()
			delete(r.restoring, p)
			r.ownedParts[p] = true
			for _, t := range r.inputs {
				resume[t] = append(resume[t], p)
			}
			r.m.StateSize(p, fresh[p].keys(), fresh[p].size())
		}
		cl.ResumeFetchPartitions(resume)
		r.mu.Unlock()
		var records int64
		var full, tail []int32
		for _, p := range parts {
			records += reports[p].records
			if reports[p].full {
				full = append(full, p)
			} else {
				tail = append(tail, p)
			}
		}
		mode := "memory"
		if r.disk != nil {
			mode = "disk"
		}
		r.log.Info("restored state", "partitions", parts, "keys", keys, "records", records, "store", mode,
			"full", full, "tail", tail, "took", time.Since(began).Round(time.Millisecond))
	}
}

// restoreMemory reads the partitions' whole changelog into fresh in-memory stores.
func (r *Runner[E, S, O]) restoreMemory(ctx context.Context, parts []int32, fresh map[int32]*store[S]) (map[int32]restoreReport, error) {
	counts := map[int32]*int64{}
	if len(parts) == 0 {
		return map[int32]restoreReport{}, nil
	}
	for _, p := range parts {
		fresh[p] = newStore[S]()
		counts[p] = new(int64)
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.RestoreTimeout)
	defer cancel()
	ix := newRestoreIndex(r)
	defer ix.report(parts)
	// each store is written by one goroutine: put is never concurrent for the same partition;
	// the records' headers rebuild the expiry index and the stream time (sweep.go)
	err := kafka.RestoreChangelog(rctx, r.o.Conn, string(r.stage.Store), parts, runtime.GOMAXPROCS(0), func(rec *kgo.Record) {
		st := fresh[rec.Partition]
		st.restorePut(rec.Key, rec.Value)
		if ix != nil {
			st.restoreTimes(rec.Key, rec.Value, ix.times(rec.Partition, rec.Key, rec.Value, rec.Headers))
		}
		*counts[rec.Partition]++
	}, r.m.RestoreProgress)
	if err != nil {
		return nil, err
	}
	out := map[int32]restoreReport{}
	for _, p := range parts {
		out[p] = restoreReport{records: *counts[p], full: true}
	}
	return out, nil
}

// sourceHeaders are the coordinates of an input, and the output's index among its outputs
// (n is the capacity to reserve). The four values share one buffer: two allocations per record
// (the outputs and changelog records of a transaction use txnState.sourceHeaders: none).
func sourceHeaders(s source, seq, n int) []kgo.RecordHeader {
	buf := make([]byte, 0, len(s.topic)+3*20)
	buf = append(buf, s.topic...)
	t := len(buf)
	buf = strconv.AppendInt(buf, int64(s.partition), 10)
	p := len(buf)
	buf = strconv.AppendInt(buf, s.offset, 10)
	o := len(buf)
	buf = strconv.AppendInt(buf, int64(seq), 10)
	h := make([]kgo.RecordHeader, 4, max(n, 4))
	h[0] = kgo.RecordHeader{Key: headers.SourceTopic, Value: buf[:t:t]}
	h[1] = kgo.RecordHeader{Key: headers.SourcePartition, Value: buf[t:p:p]}
	h[2] = kgo.RecordHeader{Key: headers.SourceOffset, Value: buf[p:o:o]}
	h[3] = kgo.RecordHeader{Key: headers.OutputSeq, Value: buf[o:len(buf):len(buf)]}
	return h
}

// headerSource reads the source coordinates back from an output's headers.
func headerSource(hs []kgo.RecordHeader) (source, bool) {
	var s source
	var have int
	for _, h := range hs {
		switch h.Key {
		case headers.SourceTopic:
			s.topic = string(h.Value)
			have++
		case headers.SourcePartition:
			p, err := strconv.ParseInt(string(h.Value), 10, 32)
			if err != nil {
				return s, false
			}
			s.partition = int32(p)
			have++
		case headers.SourceOffset:
			o, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				return s, false
			}
			s.offset = o
			have++
		}
	}
	return s, have == 3
}
