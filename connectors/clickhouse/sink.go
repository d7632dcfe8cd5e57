package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SinkOptions configure a Sink. Validate reports the first missing or invalid one.
type SinkOptions struct {
	Kafka    []kgo.Opt // how to reach the brokers (connectors/kafka.Conn.Options)
	Group    string    // the sink's own consumer group
	Topics   map[schemas.Topic]string
	Serde    *schemas.Serde
	Conn     driver.Conn
	Database string
	// Changelog: read the order ledger's changelog into order_state / order_line_state.
	Changelog bool
	// BatchRows: flush when this many rows are buffered (and at least MinInsertInterval passed).
	BatchRows int
	// MaxBufferBytes bounds the buffered rows and their records in bytes (an estimate of the
	// column values plus the records' keys and values): at this size the sink flushes at once,
	// even within a fetch, and it polls no more while a flush is retried. Rows vary from 100 B
	// to ≈60 KB (an order_lines row of a quantity-1000 line), so a row count bounds nothing.
	// 0: DefaultMaxBufferBytes. Add franz-go's fetch buffers (4 fetches of at most 16 MiB).
	MaxBufferBytes int64
	// MaxDeadLetterBytes: a dead letter whose original key, value and message exceed this is
	// produced without the value (see deadLetter). 0: DefaultMaxDeadLetterBytes.
	MaxDeadLetterBytes int
	BatchTimeout       time.Duration // flush buffered rows at least this often
	// MinInsertInterval keeps INSERTs to about one per second per table (ClickHouse merges
	// parts in the background; many small INSERTs end in "Too many parts").
	MinInsertInterval time.Duration
	MaxRetryWait      time.Duration // cap of the back-off while ClickHouse fails
	Logger            *slog.Logger
	Metrics           *ops.SinkMetrics // may be nil
	// DeadLetterValues: what dead_letters keeps of a rejected record's value; "" is
	// DeadLetterRedacted. The DLQ topic keeps the full value either way.
	DeadLetterValues DeadLetterValues
	// Ready (may be nil) is set not ready, with the reason, while ClickHouse refuses inserts
	// for an environment reason or a dead letter cannot be produced, and ready once it works.
	Ready *ops.Readiness
}

// DefaultMaxBufferBytes: 64 MiB of buffered rows keeps a full batch of typical rows (50 000 ×
// ≈500 B) in one flush while a burst of wide order_lines rows still flushes early. What the
// sink holds at most, at the defaults: the buffered rows and records (this bound counts each
// record's key and value with its rows; the decompressed batch a record points into may take
// up to twice that, its pooled buffer rounded up to a power of two), the fetches in flight
// (4 × 16 MiB) and the pool's idle buffers (sinkPooledBytes); a String column keeps the
// capacity of its largest flush, within the bound. About 64 + 64 + 64 + 32 ≈ 224 MiB.
const DefaultMaxBufferBytes = 64 << 20

// sinkPooledBytes bounds the decompression buffers the sink's pool keeps idle between flushes.
const sinkPooledBytes = 32 << 20

// DefaultMaxDeadLetterBytes is half of the broker's default message.max.bytes (1 MiB), leaving
// room for the DeadLetter envelope, headers and the record batch overhead.
const DefaultMaxDeadLetterBytes = 512 << 10

// Validate checks the options once, at construction.
func (o SinkOptions) Validate() error {
	switch {
	case o.Group == "":
		return errors.New("clickhouse sink: Group is empty")
	case o.Serde == nil:
		return errors.New("clickhouse sink: Serde is nil")
	case o.Conn == nil:
		return errors.New("clickhouse sink: Conn is nil")
	case !dbNameRE.MatchString(o.Database):
		return fmt.Errorf("clickhouse sink: database name %q is invalid", o.Database)
	case o.BatchRows < 1:
		return errors.New("clickhouse sink: BatchRows must be at least 1")
	case o.BatchTimeout <= 0:
		return errors.New("clickhouse sink: BatchTimeout must be positive")
	case o.MaxRetryWait <= 0:
		return errors.New("clickhouse sink: MaxRetryWait must be positive")
	case o.MaxBufferBytes < 0:
		return errors.New("clickhouse sink: MaxBufferBytes must not be negative")
	case o.MaxDeadLetterBytes < 0:
		return errors.New("clickhouse sink: MaxDeadLetterBytes must not be negative")
	}
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicDLQ) {
		if o.Topics[t] == "" {
			return fmt.Errorf("clickhouse sink: no physical name for topic %s", t)
		}
	}
	if o.Changelog && o.Topics[schemas.TopicChangelog] == "" {
		return errors.New("clickhouse sink: no physical name for the changelog topic")
	}
	return nil
}

// Sink copies the committed contents of retailflow's topics into ClickHouse.
//
// Lifecycle: NewSink validates; Run consumes until ctx is cancelled, then returns nil (or the
// first unrecoverable error). Run is not safe to call twice or concurrently.
//
// Guarantees: offsets are committed only after ClickHouse acknowledged every INSERT holding the
// rows of the committed records (manual commits, read_committed). A crash between INSERT and
// commit redelivers records whose rows are already stored; rows are idempotent (deterministic
// row_id and version, ReplacingMergeTree read with FINAL), so views do not change.
//
// Errors: a refusal that is not a property of the rows — ClickHouse down, a wrong or rotated
// password, missing rights, a read-only profile or disk, a full disk, a missing table or
// column, too many parts, timeouts — is waited out: fetching paused, Ready not ready with the
// reason, SinkMetrics.Blocked by reason, one log line a minute, back-off capped at
// MaxRetryWait, nothing committed and nothing dead-lettered. A batch refused for its values
// is bisected; a record whose rows fail alone while other records of the batch go in goes to
// the DLQ topic with the server's message (origin sink-insert) and the partition moves on; if
// no record goes in alone, the refusal is treated as the environment's. A record that does not
// decode becomes a dead_letters row (origin sink-decode): the runtime, reading the same input,
// also dead-letters it, and both land on the same dead_letters key (the original record's
// coordinates). A dead letter the broker refuses is retried, never a reason to end Run.
type Sink struct {
	o       SinkOptions
	log     *slog.Logger
	logical map[string]schemas.Topic
	tables  map[string]Table
	cl      *kgo.Client

	buf        map[string]*tableBuf // kept across flushes: reset, not reallocated
	ordered    [][]any              // take's scratch: the values of one record's rows
	rb         *rowBuilder          // the mappers' builder, reused record after record
	rows       int
	bytes      int64 // estimate of buf and records (rowBytes, record key and value)
	peakBytes  int64 // the most bytes ever buffered (tests)
	records    []*kgo.Record
	firstAt    time.Time
	lastInsert time.Time

	dead     map[*kgo.Record]bool // dead-lettered during this flush: their rows are not retried
	paused   bool                 // fetching paused by block
	loggedAt map[string]time.Time // last error line per reason (one a minute)
}

// rowBytes estimates the memory of a row's values: their bytes plus a word or two each
// (tableBuf.add computes the same while it copies the values).
func rowBytes(vals []any) int64 {
	n := int64(24 * len(vals))
	for _, v := range vals {
		n += valueBytes(v)
	}
	return n
}

// valueBytes is the part of rowBytes of one value beyond its word or two.
func valueBytes(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case []byte:
		return int64(len(x))
	case []string:
		var n int64
		for _, e := range x {
			n += int64(len(e)) + 16
		}
		return n
	case decimal.Decimal:
		return 32
	}
	return 0
}

// NewSink validates o and creates the Kafka client (no I/O until Run).
func NewSink(o SinkOptions) (*Sink, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MinInsertInterval <= 0 {
		o.MinInsertInterval = time.Second
	}
	if o.MaxBufferBytes == 0 {
		o.MaxBufferBytes = DefaultMaxBufferBytes
	}
	if o.MaxDeadLetterBytes == 0 {
		o.MaxDeadLetterBytes = DefaultMaxDeadLetterBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tables, err := Tables()
	if err != nil {
		return nil, err
	}
	s := &Sink{o: o, log: o.Logger, logical: map[string]schemas.Topic{}, tables: tables, buf: map[string]*tableBuf{}, rb: &rowBuilder{reused: true},
		dead: map[*kgo.Record]bool{}, loggedAt: map[string]time.Time{}}
	var consume []string
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicDLQ, schemas.TopicChangelog) {
		if t == schemas.TopicChangelog && !o.Changelog {
			continue
		}
		s.logical[o.Topics[t]] = t
		consume = append(consume, o.Topics[t])
	}
	opts := append(append([]kgo.Opt{}, o.Kafka...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(consume...),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// a new group starts at the beginning; an offset out of range (retention shorter than
		// an outage) is fatal instead of a silent reset that would lose or duplicate rows
		kgo.ConsumeResetOffset(kgo.NoResetOffset().AtStart()),
		// bounded fetch buffering: at most ~16 MiB per fetch, a few fetches in flight
		kgo.FetchMaxBytes(16<<20),
		kgo.MaxConcurrentFetches(4),
		// fetched batches are decompressed into pooled buffers, given back when a flush has
		// stored their records' rows (flush recycles them); records are never read after.
		// The pool keeps at most sinkPooledBytes of idle buffers (DefaultMaxBufferBytes).
		kgo.WithPools(&kafka.DecompressPool{MaxBytes: sinkPooledBytes}),
		kgo.DefaultProduceTopic(o.Topics[schemas.TopicDLQ]),
	)
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("clickhouse sink: kafka client: %w", err)
	}
	return s, nil
}

// Run consumes and inserts until ctx is done. Buffered rows whose records are not committed are
// dropped on return; they are redelivered to whoever consumes the partitions next.
func (s *Sink) Run(ctx context.Context) error {
	defer s.cl.Close()
	for {
		if ctx.Err() != nil {
			return nil
		}
		wait := s.o.BatchTimeout
		if s.rows > 0 {
			wait = time.Until(s.firstAt.Add(s.o.BatchTimeout))
		}
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := s.cl.PollRecords(pctx, max(1, s.o.BatchRows-len(s.records)))
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			// kgo retries fetch errors itself; what surfaces here is worth a log line, and an
			// offset out of range is fatal: silently resetting would lose or duplicate rows.
			if !errors.Is(err, kerr.OffsetOutOfRange) {
				s.log.Warn("sink fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		if err := kafka.OffsetsLost(ctx, s.cl, s.o.Group, fetches, 10*time.Second); err != nil {
			return fmt.Errorf("clickhouse sink: %w", err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			if err := s.take(ctx, it.Next()); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if s.bytes >= s.o.MaxBufferBytes {
				// the byte bound holds within a fetch too: the rest of it waits in franz-go's buffer
				if err := s.flush(ctx); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		}
		if len(s.records) == 0 {
			continue
		}
		due := time.Since(s.firstAt) >= s.o.BatchTimeout ||
			(s.rows >= s.o.BatchRows && time.Since(s.lastInsert) >= s.o.MinInsertInterval) ||
			len(s.records) >= s.o.BatchRows || s.rows >= 2*s.o.BatchRows
		if due {
			if err := s.flush(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// take maps one record to rows and buffers them.
func (s *Sink) take(ctx context.Context, r *kgo.Record) error {
	if len(s.records) == 0 {
		s.firstAt = time.Now()
	}
	s.records = append(s.records, r)
	s.bytes += int64(len(r.Key) + len(r.Value) + 128)
	s.o.Metrics.Consumed(r.Topic, 1)
	rows, err := s.mapRecord(ctx, r)
	// only a transient failure (the schema registry unreachable) comes back as an error: wait
	// and retry the same record, never dead-letter it; refused credentials stop the sink
	for wait := 100 * time.Millisecond; err != nil; {
		if errors.Is(err, schemas.ErrRegistryAuth) {
			return err
		}
		s.log.Warn("cannot decode yet; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "retry_in", wait, "err", err)
		if err := s.backOff(ctx, &wait); err != nil {
			return err
		}
		rows, err = s.mapRecord(ctx, r)
	}
	ordered := s.ordered[:0]
	defer func() { clear(ordered); s.ordered = ordered[:0] }()
	for _, row := range rows {
		t, ok := s.tables[row.Table]
		var vals []any
		if ok {
			vals, err = row.Ordered(t)
		} else {
			err = fmt.Errorf("no table %s in the migrations", row.Table)
		}
		if err != nil {
			// a mapping bug, caught by the tests for every event type: dead-letter the record
			// rather than block its partition
			return s.deadLetter(ctx, r, row.Table, err)
		}
		ordered = append(ordered, vals)
	}
	// every row maps: copy the values into their tables' columns (the rows are garbage after)
	for i, row := range rows {
		b := s.buf[row.Table]
		if b == nil {
			b = newTableBuf(s.tables[row.Table])
			s.buf[row.Table] = b
		}
		s.bytes += b.add(ordered[i], r)
	}
	s.peakBytes = max(s.peakBytes, s.bytes)
	s.o.Metrics.SetBufferedBytes(s.bytes)
	s.rows += len(rows)
	return nil
}

// mapRecord returns the rows of one record. Only a transient failure (schema registry down) is
// returned as an error; Run then stops without committing, and the record is redelivered.
func (s *Sink) mapRecord(ctx context.Context, r *kgo.Record) ([]Row, error) {
	src := Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	ref := schemas.RecordRef{Topic: s.logical[r.Topic], Partition: r.Partition, Offset: r.Offset}
	fail := func(err error) ([]Row, error) {
		var de *schemas.DecodeError
		class := schemas.ClassInvalid
		if errors.As(err, &de) {
			if de.Transient() || errors.Is(err, schemas.ErrRegistryAuth) { // auth: Run stops (take)
				return nil, fmt.Errorf("clickhouse sink: %s: %w", ref, err)
			}
			class = de.Class
		}
		return s.o.DeadLetterValues.Apply([]Row{FailureRow("sink-decode", class, err, src, r.Key, r.Value, r.Timestamp)}, r.Value), nil
	}
	switch t := s.logical[r.Topic]; t {
	case schemas.TopicDLQ:
		d, err := schemas.Decode[schemas.DeadLetter](ctx, s.o.Serde, ref, r.Value)
		if err != nil {
			var de *schemas.DecodeError
			if errors.As(err, &de) && (de.Transient() || errors.Is(err, schemas.ErrRegistryAuth)) {
				return nil, fmt.Errorf("clickhouse sink: %s: %w", ref, err)
			}
			// a DLQ record we cannot read is kept under its own coordinates
			return s.o.DeadLetterValues.Apply([]Row{FailureRow("sink-decode", schemas.ClassAvro, err, src, r.Key, r.Value, r.Timestamp)}, r.Value), nil
		}
		var keys, vals []string
		origin := "runtime"
		for _, h := range r.Headers {
			keys, vals = append(keys, h.Key), append(vals, string(h.Value))
			if h.Key == headers.Origin || h.Key == headers.LegacyOrigin {
				origin = string(h.Value)
			}
		}
		rows := s.o.DeadLetterValues.Apply(DeadLetterRows(d, src, nonNil(keys), nonNil(vals)), d.Value)
		rows[0].Set("origin", origin)
		rows[0].Set("correlation_id", s.correlationOf(ctx, d))
		return rows, nil
	case schemas.TopicCommands:
		e, err := s.o.Serde.DecodeEvent(ctx, ref, r.Value)
		if err != nil {
			return fail(err)
		}
		if e.LoyaltyCommand == nil {
			return fail(fmt.Errorf("%s: event %s on the commands topic carries no loyalty command", ref, e.EventID))
		}
		rows := s.rb.commandRows(e.LoyaltyCommand, src)
		rows[0].Set("correlation_id", e.CorrelationID)
		return rows, nil
	case schemas.TopicChangelog:
		if r.Value == nil {
			rows := s.rb.stateRows(string(r.Key), nil, src)
			// A tombstone of the runtime's time-driven eviction carries the order's open
			// exceptions (an orphan's HELD_WITHOUT_ORDER): its deleted row keeps them, or
			// the eviction would hide them (topology/sweep.go).
			for _, h := range r.Headers {
				if h.Key == headers.OpenExceptions {
					rows[0].Set("open_exceptions", strings.Fields(string(h.Value)))
				}
			}
			return rows, nil
		}
		st, err := ledgerstate.Decode(ctx, s.o.Serde, ref, r.Value)
		if err != nil {
			return fail(err)
		}
		return s.rb.stateRows(st.OrderID, st, src), nil
	case "":
		return nil, fmt.Errorf("clickhouse sink: record from unexpected topic %s", r.Topic)
	default:
		if r.Value == nil {
			return fail(fmt.Errorf("tombstone on input topic %s (%s)", t, ref))
		}
		e, err := s.o.Serde.DecodeEvent(ctx, ref, r.Value)
		if err != nil {
			return fail(err)
		}
		rows, err := s.rb.eventRows(e, src)
		if err != nil {
			return fail(err)
		}
		return rows, nil
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// HeaderOrigin marks a DLQ record the sink wrote itself (value "sink-insert"); records written
// before the rf. convention carry it as headers.LegacyOrigin, which readers accept too.
const HeaderOrigin = headers.Origin

// HeaderValueRef names the record a dead letter stands for (headers.Coordinates,
// "<topic>/<partition>/<offset>") when the dead letter carries no value.
const HeaderValueRef = headers.ValueRef

// flush inserts every buffered table, then commits the offsets of every record taken since the
// last flush. It returns only when each of those records is stored or dead-lettered (or ctx
// ends, or an unrecoverable error): until then it retries, so no offset is committed for a
// record that is neither in ClickHouse nor in the DLQ.
func (s *Sink) flush(ctx context.Context) error {
	names := make([]string, 0, len(s.buf))
	for n, b := range s.buf {
		if b.len() > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := s.storeTable(ctx, n); err != nil {
			return err
		}
	}
	if err := s.cl.CommitRecords(ctx, s.records...); err != nil {
		// Rows are stored; a failed commit (a rebalance took the partitions) only means
		// redelivery of idempotent rows.
		s.log.Warn("sink offset commit failed; records will be redelivered", "records", len(s.records), "err", err)
	}
	s.lastInsert = time.Now()
	for _, b := range s.buf {
		b.reset()
	}
	s.rows, s.bytes = 0, 0
	s.o.Metrics.SetBufferedBytes(0)
	// The rows are stored and the buffers reset: nothing refers to these records' keys,
	// values or headers any more (decoded strings are copies; dead letters were produced
	// synchronously), so their decompression buffers go back to the pool.
	s.records = kafka.Recycle(s.records)
	s.dead = map[*kgo.Record]bool{}
	return nil
}

// storeTable inserts the buffered rows of one table. A rejection that may be a property of
// some rows is isolated by bisection; anything else (and a rejection that could not be pinned
// on single records) is an environment failure: fetching pauses, readiness goes false, and
// the whole table batch is retried with back-off until it is stored or ctx ends.
func (s *Sink) storeTable(ctx context.Context, table string) error {
	wait := 100 * time.Millisecond
	blocked := false
	stored := func() error {
		if blocked {
			s.unblock(table)
		}
		return nil
	}
	buf := s.buf[table]
	for attempt := 1; ; attempt++ {
		rows, n := s.live(buf)
		if n == 0 {
			return stored()
		}
		err := s.insertTimed(ctx, buf, rows)
		if err == nil {
			return stored()
		}
		s.o.Metrics.ClickHouseError(table, "insert")
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c := classify(err); c.rows {
			if err = s.isolate(ctx, buf, rows, err); err == nil {
				return stored()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if de := (*dlqError)(nil); errors.As(err, &de) {
				return err
			}
		}
		blocked = true
		s.block(table, err, attempt, wait)
		if err := s.backOff(ctx, &wait); err != nil {
			return err
		}
	}
}

// live returns the positions in b of the rows whose records are not dead-lettered in this
// flush (nil: all of them) and their number.
func (s *Sink) live(b *tableBuf) ([]int, int) {
	if len(s.dead) == 0 {
		return nil, b.len()
	}
	out := make([]int, 0, b.len())
	for i, rec := range b.recs {
		if !s.dead[rec] {
			out = append(out, i)
		}
	}
	return out, len(out)
}

// block reports an environment failure: fetching paused (memory stays bounded), readiness
// false, a counter by reason, and one log line per minute per reason (plus the first).
func (s *Sink) block(table string, err error, attempt int, retryIn time.Duration) {
	c := classify(err)
	if !s.paused {
		s.paused = true
		s.cl.PauseFetchTopics(s.consumedTopics()...)
		s.o.Metrics.SetPaused(true)
	}
	s.o.Metrics.Blocked(table, c.reason)
	// the reason /readyz serves: the class, not the server's message (the log line has it)
	reason := fmt.Sprintf("clickhouse refuses inserts into %s (%s)", table, c.reason)
	if s.o.Ready != nil {
		s.o.Ready.SetNotReady(reason)
	}
	if last, ok := s.loggedAt[c.reason]; !ok || time.Since(last) >= time.Minute {
		s.loggedAt[c.reason] = time.Now()
		s.log.Error("clickhouse insert failed, not a property of the rows: fetching paused, retrying, nothing dead-lettered",
			"table", table, "reason", c.reason, "hint", c.hint(), "attempt", attempt, "retry_in", retryIn, "err", err)
	}
}

// unblock resumes fetching after block, once the table's rows are stored.
func (s *Sink) unblock(table string) {
	if s.paused {
		s.paused = false
		s.cl.ResumeFetchTopics(s.cl.PauseFetchTopics()...)
		s.o.Metrics.SetPaused(false)
	}
	if s.o.Ready != nil {
		s.o.Ready.SetReady()
	}
	s.loggedAt = map[string]time.Time{}
	s.log.Info("clickhouse accepts inserts again, fetching resumed", "table", table)
}

func (s *Sink) consumedTopics() []string {
	out := make([]string, 0, len(s.logical))
	for t := range s.logical {
		out = append(out, t)
	}
	return out
}

// appendError is a row the driver refused to convert. It may be a property of the row (a value
// that does not fit) or of the table (a column whose type a migration changed), which only
// isolation can tell apart.
type appendError struct{ err error }

func (e *appendError) Error() string { return e.err.Error() }
func (e *appendError) Unwrap() error { return e.err }

// insertTimed inserts the rows idx of buf (all of them when idx is nil).
func (s *Sink) insertTimed(ctx context.Context, buf *tableBuf, idx []int) error {
	start := time.Now()
	err := s.insert(ctx, buf, idx)
	if err == nil {
		n := len(idx)
		if idx == nil {
			n = buf.len()
		}
		s.o.Metrics.BatchInserted(buf.t.Name, n, time.Since(start))
	}
	return err
}

// insert is one INSERT of the rows idx of buf (all when nil), column by column.
func (s *Sink) insert(ctx context.Context, buf *tableBuf, idx []int) error {
	table := buf.t.Name
	b, err := s.o.Conn.PrepareBatch(ctx, "INSERT INTO "+s.o.Database+"."+table+" ("+joinCols(buf.t.Columns)+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	if err := buf.appendTo(b, idx); err != nil {
		_ = b.Abort()
		return s.appendFailure(ctx, buf, idx, err)
	}
	n := len(idx)
	if idx == nil {
		n = buf.len()
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", n, table, err)
	}
	return nil
}

// appendFailure names the row the driver refused to convert: a column-wise append says only
// which column, so the rows are appended again one by one, without sending, until one fails.
func (s *Sink) appendFailure(ctx context.Context, buf *tableBuf, idx []int, colErr error) error {
	b, err := s.o.Conn.PrepareBatch(ctx, "INSERT INTO "+s.o.Database+"."+buf.t.Name+" ("+joinCols(buf.t.Columns)+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", buf.t.Name, err)
	}
	defer func() { _ = b.Abort() }()
	try := func(i int) error {
		if err := b.Append(buf.row(i)...); err != nil {
			rec := buf.recs[i]
			return &appendError{fmt.Errorf("row %v of %s[%d]@%d: %w", buf.rowIDOf(i), rec.Topic, rec.Partition, rec.Offset, err)}
		}
		return nil
	}
	if idx == nil {
		for i := 0; i < buf.len(); i++ {
			if err := try(i); err != nil {
				return err
			}
		}
	}
	for _, i := range idx {
		if err := try(i); err != nil {
			return err
		}
	}
	return &appendError{fmt.Errorf("%s: %w", buf.t.Name, colErr)}
}

func joinCols(cols []string) string {
	out := ""
	for i, c := range cols {
		if i > 0 {
			out += ", "
		}
		out += c
	}
	return out
}

// errClass is what a failed INSERT says about its cause.
type errClass struct {
	rows   bool   // the server refused values: possibly a property of some rows (isolate)
	reason string // short fixed label for metrics and readiness
}

func (c errClass) hint() string {
	switch c.reason {
	case "auth":
		return "wrong or rotated password, or unknown user: fix clickhouse.username/password or the server's users"
	case "access":
		return "the user lacks rights on the database (allow_databases, grants)"
	case "readonly":
		return "the user's profile or the server is read-only"
	case "disk":
		return "the server cannot write (disk full, read-only or failing data directory)"
	case "schema":
		return "a table or column the sink writes is missing: run `retailflow migrate`"
	case "overload":
		return "too many parts or memory limit: inserts resume when merges catch up"
	case "unproven":
		return "every record of the batch is refused alone: a table that no longer matches the migrations?"
	case "network":
		return "clickhouse unreachable or the connection broke"
	case "replication":
		return "a replicated table cannot write: ZooKeeper unreachable or its session expired (read-only until it reconnects), or no replica reachable from the Distributed table"
	}
	return "unclassified server error: retried, never dead-lettered"
}

// rowCodes are server errors about values: a bad row can cause them, so they start isolation.
// Everything else is the environment (rights, disk, schema, load, network), never a row's fault.
var rowCodes = map[int32]bool{
	6: true, 27: true, 38: true, 41: true, 53: true, 69: true, 70: true, 72: true, 131: true,
	321: true, 349: true, 395: true, 469: true,
}

// envReasons label the environment errors operators meet most; the rest is "server".
var envReasons = map[int32]string{
	192: "auth", 193: "auth", 194: "auth", 516: "auth",
	291: "access", 497: "access",
	164: "readonly",
	243: "disk", 74: "disk", 75: "disk", 76: "disk", 1000: "disk", 236: "disk", 239: "disk",
	60: "schema", 81: "schema", 16: "schema", 47: "schema", 10: "schema", 33: "schema",
	252: "overload", 241: "overload", 202: "overload", 203: "overload",
	159: "network", 209: "network", 210: "network", 3: "network", 394: "network",
	// cluster mode: 242 table is read-only (no ZooKeeper session), 999 keeper error, 225 no
	// ZooKeeper, 319 unknown status of insert (retried: a replicated table drops a block it has),
	// 279 all connection tries failed and 286 unsatisfied quorum (Distributed → replicas)
	242: "replication", 999: "replication", 225: "replication", 319: "replication", 279: "replication", 286: "replication",
}

// classify tells a rejection that may be a row's (values) from one of the environment.
func classify(err error) errClass {
	var ue *unprovenError
	if errors.As(err, &ue) {
		return errClass{reason: "unproven"}
	}
	var ae *appendError
	if errors.As(err, &ae) {
		return errClass{rows: true, reason: "rows"}
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		if rowCodes[ex.Code] {
			return errClass{rows: true, reason: "rows"}
		}
		if r, ok := envReasons[ex.Code]; ok {
			return errClass{reason: r}
		}
		return errClass{reason: "server"}
	}
	return errClass{reason: "network"} // network and protocol errors: ClickHouse may be down
}

// unprovenError: the batch was refused for its values, but no record could be shown to be the
// cause (none went in on its own), so nothing is dead-lettered.
type unprovenError struct{ err error }

func (e *unprovenError) Error() string {
	return "no record of the batch is accepted on its own, so the rejection is not pinned on rows: " + e.err.Error()
}
func (e *unprovenError) Unwrap() error { return e.err }

// Isolation bounds. Bisection finds k bad records among n in about 2·k·log2(n) INSERTs; they are
// paced (isolationBurst INSERTs, then MinInsertInterval) so merges keep up, and a batch whose
// first isolationLevels levels of halves all fail is not bisected further: so many failing
// parts point at the table, not at rows.
const (
	isolationBurst  = 8
	isolationLevels = 3
)

// isolate bisects a batch the server refused for its values. A record is dead-lettered only
// when it is proven row-specific: its rows fail alone while other records of the batch go in
// (or, for a batch of one record, while a probe INSERT into the same table succeeds). It
// returns nil when every record is stored or dead-lettered; an environment error or an
// unprovenError otherwise (the caller backs off and retries the batch; rows already stored
// collapse, being idempotent).
func (s *Sink) isolate(ctx context.Context, buf *tableBuf, rows []int, batchErr error) error {
	table := buf.t.Name
	if rows == nil { // all of them
		rows = make([]int, buf.len())
		for i := range rows {
			rows[i] = i
		}
	}
	var groups [][]int
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && buf.recs[rows[j]] == buf.recs[rows[i]] {
			j++
		}
		groups = append(groups, rows[i:j])
		i = j
	}
	// (take appends a record's rows together, so they are adjacent in each table's buffer)
	if last, ok := s.loggedAt["isolate/"+table]; !ok || time.Since(last) >= time.Minute {
		s.loggedAt["isolate/"+table] = time.Now()
		s.log.Warn("clickhouse refused a batch for its values; isolating the records by bisection",
			"table", table, "records", len(groups), "rows", len(rows), "err", batchErr)
	}

	type span struct{ lo, hi, level int }
	type suspect struct {
		g   []int
		err error
	}
	var suspects []suspect
	stored, inserts := 0, 0
	queue := []span{{0, len(groups), 0}}
	if len(groups) > 1 {
		mid := len(groups) / 2
		queue = []span{{0, mid, 1}, {mid, len(groups), 1}}
	} else {
		suspects = append(suspects, suspect{groups[0], batchErr})
		queue = nil
	}
	failedAtLevel := map[int]int{}
	for len(queue) > 0 { // breadth first: a healthy half is found early
		sp := queue[0]
		queue = queue[1:]
		if inserts > 0 && inserts%isolationBurst == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.o.MinInsertInterval):
			}
		}
		part := []int{}
		for _, g := range groups[sp.lo:sp.hi] {
			part = append(part, g...)
		}
		err := s.insertTimed(ctx, buf, part)
		inserts++
		s.o.Metrics.IsolationInsert(table)
		if err == nil {
			stored += sp.hi - sp.lo
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !classify(err).rows {
			return err
		}
		if sp.hi-sp.lo == 1 {
			suspects = append(suspects, suspect{groups[sp.lo], err})
			continue
		}
		failedAtLevel[sp.level]++
		if stored == 0 && sp.level >= isolationLevels && failedAtLevel[sp.level] == 1<<sp.level {
			return &unprovenError{fmt.Errorf("all %d parts of %d records failed at bisection level %d: %w", 1<<sp.level, len(groups), sp.level, err)}
		}
		mid := (sp.lo + sp.hi) / 2
		queue = append(queue, span{sp.lo, mid, sp.level + 1}, span{mid, sp.hi, sp.level + 1})
	}
	if stored == 0 {
		if len(groups) > 1 {
			return &unprovenError{batchErr}
		}
		if err := s.probe(ctx, table); err != nil {
			if classify(err).rows {
				return &unprovenError{fmt.Errorf("%w (the probe insert failed too: %v)", batchErr, err)}
			}
			return err
		}
	}
	for _, sus := range suspects {
		rec := buf.recs[sus.g[0]]
		if s.dead[rec] {
			continue
		}
		if err := s.deadLetter(ctx, rec, table, sus.err); err != nil {
			return err
		}
		s.dead[rec] = true
	}
	delete(s.loggedAt, "isolate/"+table)
	s.log.Info("isolation done", "table", table, "records", len(groups), "stored", stored,
		"dead_lettered", len(suspects), "inserts", inserts)
	return nil
}

// probe shows that the table accepts an INSERT at all: it re-inserts one stored row (identical
// row_id and version, so it collapses into itself), which needs the rights, a writable disk,
// the table and its columns.
func (s *Sink) probe(ctx context.Context, table string) error {
	t := s.tables[table]
	cols := joinCols(t.Columns)
	q := fmt.Sprintf("INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s LIMIT 1", s.o.Database, table, cols, cols, s.o.Database, table)
	if err := s.o.Conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("probe insert into %s: %w", table, err)
	}
	return nil
}

// backOff sleeps *wait, or returns ctx's error when it ends first, and doubles *wait up to
// MaxRetryWait: the pacing of every retry of the sink (a record the registry cannot decode yet,
// a refused batch, a dead letter the broker refuses).
func (s *Sink) backOff(ctx context.Context, wait *time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*wait):
	}
	*wait = min(*wait*2, s.o.MaxRetryWait)
	return nil
}

// dlqMessage is the DLQ record of one dead letter, encoded once for all its produce attempts;
// it is encoded again only when the value is dropped.
type dlqMessage struct {
	serde   *schemas.Serde
	d       *schemas.DeadLetter
	value   []byte
	headers []kgo.RecordHeader
	dropped bool
}

// newDLQMessage encodes d, without its value when dropValue is set (see dropValue).
func newDLQMessage(serde *schemas.Serde, d *schemas.DeadLetter, dropValue bool) (*dlqMessage, error) {
	m := &dlqMessage{serde: serde, d: d, headers: []kgo.RecordHeader{{Key: HeaderOrigin, Value: []byte("sink-insert")}}}
	if dropValue {
		return m, m.dropValue()
	}
	return m, m.encode()
}

// dropValue re-encodes the dead letter without the original value, with the header
// rf.value.dropped and HeaderValueRef naming the original record. A second call does nothing.
func (m *dlqMessage) dropValue() error {
	if m.dropped {
		return nil
	}
	m.d.Value, m.dropped = nil, true
	m.headers = append(m.headers,
		kgo.RecordHeader{Key: headers.ValueDropped, Value: []byte("true")},
		kgo.RecordHeader{Key: HeaderValueRef, Value: []byte(headers.Coordinates{Topic: m.d.SourceTopic, Partition: m.d.SourcePartition, Offset: m.d.SourceOffset}.String())})
	return m.encode()
}

func (m *dlqMessage) encode() error {
	val, err := schemas.Encode(m.serde, schemas.TopicDLQ, m.d)
	if err != nil {
		// the DeadLetter schema holds any bytes: an encode failure is a bug, not the record's
		return &dlqError{fmt.Errorf("clickhouse sink: encoding dead letter for %s[%d]@%d: %w", m.d.SourceTopic, m.d.SourcePartition, m.d.SourceOffset, err)}
	}
	m.value = val
	return nil
}

// record is a new record for one produce attempt (franz-go sets a record's partition, offset
// and timestamp when it is produced), sharing the encoded value and headers.
func (m *dlqMessage) record() *kgo.Record {
	return &kgo.Record{Key: m.d.Key, Value: m.value, Headers: m.headers}
}

// dlqError ends a flush from deadLetter: ctx ended while a dead letter waited for the broker, or
// a dead letter could not be encoded (a bug). Neither is retried as an insert failure.
type dlqError struct{ err error }

func (e *dlqError) Error() string { return e.err.Error() }
func (e *dlqError) Unwrap() error { return e.err }

// deadLetter produces rec to the DLQ topic with the server's message, retrying with back-off
// until the broker takes it or ctx ends (a failed produce never ends Run: a restart would only
// meet the same record again). A record of the DLQ topic itself is only logged: dead-lettering
// it again would loop.
//
// A dead letter whose value would not fit the broker's message size (MaxDeadLetterBytes, or a
// MESSAGE_TOO_LARGE answer) is produced without the value, with the header rf.value.dropped and
// HeaderValueRef naming the original record: its bytes stay in the source topic at those
// coordinates (the reference to replay from), and dead_letters keeps the server's message.
func (s *Sink) deadLetter(ctx context.Context, rec *kgo.Record, table string, cause error) error {
	if s.logical[rec.Topic] == schemas.TopicDLQ {
		s.log.Error("dead letter rejected by clickhouse; skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", cause)
		return nil
	}
	msg := fmt.Sprintf("clickhouse rejected rows for %s: %v", table, cause)
	d := &schemas.DeadLetter{Key: rec.Key, Value: rec.Value, SourceTopic: rec.Topic, SourcePartition: rec.Partition,
		SourceOffset: rec.Offset, ErrorClass: schemas.ClassInvalid, ErrorMessage: msg, FirstSeenAt: time.Now().UTC(), Attempt: 1}
	m, err := newDLQMessage(s.o.Serde, d, len(rec.Value)+len(rec.Key)+len(msg) > s.o.MaxDeadLetterBytes)
	if err != nil {
		return err
	}
	wait, blocked := 100*time.Millisecond, false
	for attempt := 1; ; attempt++ {
		err := s.cl.ProduceSync(ctx, m.record()).FirstErr()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return &dlqError{ctx.Err()}
		}
		if d.Value != nil && (errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)) {
			if err := m.dropValue(); err != nil {
				return err
			}
			continue
		}
		s.o.Metrics.Blocked("", "dlq-produce")
		blocked = true
		if s.o.Ready != nil {
			s.o.Ready.SetNotReady("cannot produce a dead letter: " + err.Error())
		}
		if last, ok := s.loggedAt["dlq-produce"]; !ok || time.Since(last) >= time.Minute {
			s.loggedAt["dlq-produce"] = time.Now()
			s.log.Error("cannot produce a dead letter; retrying (offsets stay uncommitted)", "topic", rec.Topic,
				"partition", rec.Partition, "offset", rec.Offset, "attempt", attempt, "retry_in", wait, "err", err)
		}
		if err := s.backOff(ctx, &wait); err != nil {
			return &dlqError{err}
		}
	}
	if blocked && s.o.Ready != nil && !s.paused {
		s.o.Ready.SetReady()
	}
	s.o.Metrics.DeadLettered(table)
	s.log.Warn("record dead-lettered: clickhouse rejected its rows", "topic", rec.Topic, "partition", rec.Partition,
		"offset", rec.Offset, "value_dropped", d.Value == nil && rec.Value != nil, "err", cause)
	return nil
}
