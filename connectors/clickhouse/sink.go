package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
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
	// Memory is bounded by about 2 × BatchRows rows (a few hundred bytes each, as column values)
	// plus franz-go's fetch buffers (4 fetches of at most 16 MiB): at 2 × BatchRows the sink
	// flushes at once, and it polls no more while a flush is retried.
	BatchRows    int
	BatchTimeout time.Duration // flush buffered rows at least this often
	// MinInsertInterval keeps INSERTs to about one per second per table (ClickHouse merges
	// parts in the background; many small INSERTs end in "Too many parts").
	MinInsertInterval time.Duration
	MaxRetryWait      time.Duration // cap of the back-off while ClickHouse fails
	Logger            *slog.Logger
	Metrics           *ops.SinkMetrics // may be nil
}

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
// Errors: a ClickHouse outage or transient error (network, timeouts, too many parts, memory)
// is retried with back-off capped at MaxRetryWait, fetching paused, without committing. A record
// whose rows ClickHouse rejects permanently goes to the DLQ topic with the server's message and
// the partition moves on. A record that does not decode becomes a dead_letters row (origin
// sink-decode): the runtime, reading the same input, also dead-letters it, and both land on the
// same dead_letters key (the original record's coordinates).
type Sink struct {
	o       SinkOptions
	log     *slog.Logger
	logical map[string]schemas.Topic
	tables  map[string]Table
	cl      *kgo.Client

	buf        map[string][]pendingRow
	rows       int
	records    []*kgo.Record
	firstAt    time.Time
	lastInsert time.Time
}

// pendingRow is one row, its values already in its table's column order (a slice of values
// is a fraction of the map the mappers build), and the record it came from.
type pendingRow struct {
	vals  []any
	rowID any
	rec   *kgo.Record
}

// NewSink validates o and creates the Kafka client (no I/O until Run).
func NewSink(o SinkOptions) (*Sink, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.MinInsertInterval <= 0 {
		o.MinInsertInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tables, err := Tables()
	if err != nil {
		return nil, err
	}
	s := &Sink{o: o, log: o.Logger, logical: map[string]schemas.Topic{}, tables: tables, buf: map[string][]pendingRow{}}
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
	s.o.Metrics.Consumed(r.Topic, 1)
	rows, err := s.mapRecord(ctx, r)
	// only a transient failure (the schema registry unreachable) comes back as an error: wait
	// and retry the same record, never dead-letter it; refused credentials stop the sink
	for wait := 100 * time.Millisecond; err != nil; {
		if errors.Is(err, schemas.ErrRegistryAuth) {
			return err
		}
		s.log.Warn("cannot decode yet; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait *= 2; wait > s.o.MaxRetryWait {
			wait = s.o.MaxRetryWait
		}
		rows, err = s.mapRecord(ctx, r)
	}
	ordered := make([]pendingRow, len(rows))
	for i, row := range rows {
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
		ordered[i] = pendingRow{vals: vals, rowID: row.Values["row_id"], rec: r}
	}
	for i, row := range rows {
		s.buf[row.Table] = append(s.buf[row.Table], ordered[i])
	}
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
		return []Row{FailureRow("sink-decode", class, err, src, r.Key, r.Value, r.Timestamp)}, nil
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
			return []Row{FailureRow("sink-decode", schemas.ClassAvro, err, src, r.Key, r.Value, r.Timestamp)}, nil
		}
		var keys, vals []string
		origin := "runtime"
		for _, h := range r.Headers {
			keys, vals = append(keys, h.Key), append(vals, string(h.Value))
			if h.Key == HeaderOrigin {
				origin = string(h.Value)
			}
		}
		rows := DeadLetterRows(d, src, nonNil(keys), nonNil(vals))
		rows[0].Values["origin"] = origin
		return rows, nil
	case schemas.TopicCommands:
		e, err := s.o.Serde.DecodeEvent(ctx, ref, r.Value)
		if err != nil {
			return fail(err)
		}
		if e.LoyaltyCommand == nil {
			return fail(fmt.Errorf("%s: event %s on the commands topic carries no loyalty command", ref, e.EventID))
		}
		return CommandRows(e.LoyaltyCommand, src), nil
	case schemas.TopicChangelog:
		if r.Value == nil {
			return StateRows(string(r.Key), nil, src), nil
		}
		l, err := ledger.DecodeState(ctx, s.o.Serde, ref, r.Value)
		if err != nil {
			return fail(err)
		}
		st := l.State()
		return StateRows(st.OrderID, &st, src), nil
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
		rows, err := EventRows(e, src)
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

// HeaderOrigin marks a DLQ record the sink wrote itself (value "sink-insert").
const HeaderOrigin = "retailflow-origin"

// flush inserts every buffered table (retrying transient failures until ctx ends), then commits
// the offsets of every record taken since the last flush.
func (s *Sink) flush(ctx context.Context) error {
	names := make([]string, 0, len(s.buf))
	for n := range s.buf {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := s.insertRetrying(ctx, n, s.buf[n]); err != nil {
			return err
		}
	}
	if err := s.cl.CommitRecords(ctx, s.records...); err != nil {
		// Rows are stored; a failed commit (a rebalance took the partitions) only means
		// redelivery of idempotent rows.
		s.log.Warn("sink offset commit failed; records will be redelivered", "records", len(s.records), "err", err)
	}
	s.lastInsert = time.Now()
	s.buf = map[string][]pendingRow{}
	s.rows = 0
	s.records = s.records[:0]
	return nil
}

func (s *Sink) insertRetrying(ctx context.Context, table string, rows []pendingRow) error {
	wait := 100 * time.Millisecond
	paused := false
	defer func() {
		if paused {
			s.cl.ResumeFetchTopics(s.cl.PauseFetchTopics()...)
			s.o.Metrics.SetPaused(false)
			s.log.Info("clickhouse reachable again, fetching resumed", "table", table)
		}
	}()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := s.insert(ctx, table, rows)
		if err == nil {
			s.o.Metrics.BatchInserted(table, len(rows), time.Since(start))
			return nil
		}
		s.o.Metrics.ClickHouseError(table, "insert")
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			return s.isolate(ctx, table, rows, err)
		}
		if !paused {
			paused = true
			s.cl.PauseFetchTopics(s.consumedTopics()...)
			s.o.Metrics.SetPaused(true)
		}
		s.log.Warn("clickhouse insert failed; fetching paused, retrying", "table", table, "rows", len(rows),
			"attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait *= 2; wait > s.o.MaxRetryWait {
			wait = s.o.MaxRetryWait
		}
	}
}

func (s *Sink) consumedTopics() []string {
	out := make([]string, 0, len(s.logical))
	for t := range s.logical {
		out = append(out, t)
	}
	return out
}

// appendError is a row the driver refused to convert: a property of the row, so permanent.
type appendError struct{ err error }

func (e *appendError) Error() string { return e.err.Error() }
func (e *appendError) Unwrap() error { return e.err }

func (s *Sink) insert(ctx context.Context, table string, rows []pendingRow) error {
	t, ok := s.tables[table]
	if !ok {
		return &appendError{fmt.Errorf("no table %s in the migrations", table)}
	}
	b, err := s.o.Conn.PrepareBatch(ctx, "INSERT INTO "+s.o.Database+"."+table+" ("+joinCols(t.Columns)+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	for _, pr := range rows {
		if err := b.Append(pr.vals...); err != nil {
			_ = b.Abort()
			return &appendError{fmt.Errorf("row %v of %s[%d]@%d: %w", pr.rowID, pr.rec.Topic, pr.rec.Partition, pr.rec.Offset, err)}
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", len(rows), table, err)
	}
	return nil
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

// transientCodes are ClickHouse server errors worth retrying: overload, timeouts, network,
// merges falling behind, and a schema not migrated yet (an operator's fix, not the row's fault).
var transientCodes = map[int32]bool{
	3: true, 60: true, 81: true, 159: true, 164: true, 202: true, 203: true, 209: true, 210: true,
	241: true, 242: true, 252: true, 285: true, 319: true, 394: true, 425: true, 999: true,
}

// permanent reports whether err is a property of the rows (retrying cannot help).
func permanent(err error) bool {
	var ae *appendError
	if errors.As(err, &ae) {
		return true
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		return !transientCodes[ex.Code]
	}
	return false // network and protocol errors: ClickHouse may be down
}

// isolate inserts the rows of each record on their own after a permanent rejection of the
// batch; a record whose rows are rejected again goes to the DLQ topic with the server's message.
func (s *Sink) isolate(ctx context.Context, table string, rows []pendingRow, batchErr error) error {
	s.log.Warn("clickhouse rejected a batch permanently; inserting record by record", "table", table, "rows", len(rows), "err", batchErr)
	var order []*kgo.Record
	byRec := map[*kgo.Record][]pendingRow{}
	for _, pr := range rows {
		if _, ok := byRec[pr.rec]; !ok {
			order = append(order, pr.rec)
		}
		byRec[pr.rec] = append(byRec[pr.rec], pr)
	}
	for _, rec := range order {
		err := s.insert(ctx, table, byRec[rec])
		if err == nil {
			continue
		}
		if !permanent(err) {
			return s.insertRetrying(ctx, table, byRec[rec])
		}
		if err := s.deadLetter(ctx, rec, table, err); err != nil {
			return err
		}
	}
	return nil
}

// deadLetter produces rec to the DLQ topic with the server's message. A record of the DLQ topic
// itself is only logged: dead-lettering it again would loop.
func (s *Sink) deadLetter(ctx context.Context, rec *kgo.Record, table string, cause error) error {
	if s.logical[rec.Topic] == schemas.TopicDLQ {
		s.log.Error("dead letter rejected by clickhouse; skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", cause)
		return nil
	}
	msg := fmt.Sprintf("clickhouse rejected rows for %s: %v", table, cause)
	d := &schemas.DeadLetter{Key: rec.Key, Value: rec.Value, SourceTopic: rec.Topic, SourcePartition: rec.Partition,
		SourceOffset: rec.Offset, ErrorClass: schemas.ClassInvalid, ErrorMessage: msg, FirstSeenAt: time.Now().UTC(), Attempt: 1}
	val, err := schemas.Encode(s.o.Serde, schemas.TopicDLQ, d)
	if err != nil {
		return fmt.Errorf("clickhouse sink: encoding dead letter for %s[%d]@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	out := &kgo.Record{Key: rec.Key, Value: val, Headers: []kgo.RecordHeader{{Key: HeaderOrigin, Value: []byte("sink-insert")}}}
	if err := s.cl.ProduceSync(ctx, out).FirstErr(); err != nil {
		return fmt.Errorf("clickhouse sink: producing dead letter for %s[%d]@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	s.log.Warn("record dead-lettered: clickhouse rejected its rows", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", cause)
	return nil
}
