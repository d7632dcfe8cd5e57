// Package dlq replays dead-lettered records to the topic they came from, once the reason they
// were rejected has been fixed upstream (a schema registered, a corrected policy deployed).
//
// # What a replay sends
//
// For every selected record of the DLQ topic (read read_committed, up to its last stable offset
// when the replay starts) Replay produces the ORIGINAL key and value, unchanged, to the original
// topic and partition, with the original record's own headers and two more:
// rf.replay.of (headers.ReplayOf: the DLQ record's headers.Coordinates, "<dlq
// topic>/<partition>/<offset>") and rf.replay.attempt (headers.ReplayAttempt: the attempt this
// delivery is, 2 for the first replay, then 3, …).
// The processor treats the replay like any new record: it applies it, ignores it as a duplicate
// event id, or rejects it again — then the new DLQ record carries the replay headers (the
// runtime copies the input's headers), so its lineage can be followed.
//
// # Idempotence
//
// Every replayed DLQ record is written, in the same Kafka transaction as its replay, to the
// replay log: a compacted topic (ReplayLogTopic, one partition) keyed by the DLQ record's
// coordinates. Replay reads the whole log first and skips what it lists, so running the same
// replay twice sends nothing the second time, whatever filters either run used, and a replay
// that crashes mid-way leaves neither the replays nor the log entries of its open transaction.
// A consumer-group offset was the other candidate; it cannot express "replayed record 7 but
// not record 5, which the filter did not select", so a filtered replay would either lose the
// unselected records for later runs or re-send the selected ones.
//
// Records Replay never re-sends (they are reported as unreplayable): records the ClickHouse
// sink dead-lettered (the processor already applied them; re-run the sink), records whose
// value the DLQ did not keep, records without a key, and records from topics that are not
// inputs of the pipeline.
//
// Run one replay at a time: two replays share one transactional id and fence each other.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// ReplayLogTopic is the name of the replay log of a DLQ topic.
func ReplayLogTopic(dlqTopic string) string { return dlqTopic + ".replayed" }

// ReplayInfo reads the replay headers of a record: the DLQ record it replays and its attempt.
// ok is false for a record that is not a replay. The runtime can use it to fill
// DeadLetter.ReplayOf and DeadLetter.Attempt when a replay is rejected again.
func ReplayInfo(h []kgo.RecordHeader) (of string, attempt int32, ok bool) {
	of, ok = header(h, headers.ReplayOf)
	if a, found := header(h, headers.ReplayAttempt); found {
		if n, err := strconv.ParseInt(a, 10, 32); err == nil {
			attempt = int32(n)
		}
	}
	return of, attempt, ok
}

// Letter is one record of the DLQ topic.
type Letter struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Headers   []kgo.RecordHeader
	// Dead is the decoded value (for a record whose DeadLetter encoding failed in the runtime,
	// it is rebuilt from the error headers and the record's value, which is then the original).
	Dead *schemas.DeadLetter
	// Origin is "runtime" or, for records the ClickHouse sink wrote, the sink's origin header.
	Origin string
}

// Ref is the DLQ record's coordinates (headers.Coordinates, "<topic>/<partition>/<offset>"):
// the value of headers.ReplayOf and the key of the replay log.
func (l *Letter) Ref() string {
	return headers.Coordinates{Topic: l.Topic, Partition: l.Partition, Offset: l.Offset}.String()
}

// RejectedAt is when the record was dead-lettered.
func (l *Letter) RejectedAt() time.Time {
	if !l.Dead.FirstSeenAt.IsZero() {
		return l.Dead.FirstSeenAt
	}
	return l.Timestamp
}

// Attempt is the attempt number a replay of l is: one more than the delivery that failed.
func (l *Letter) Attempt() int32 {
	prev := l.Dead.Attempt
	if _, a, ok := ReplayInfo(l.Headers); ok && a > prev {
		prev = a
	}
	if prev < 1 {
		prev = 1
	}
	return prev + 1
}

// unreplayable says why l cannot be replayed, or "".
func (l *Letter) unreplayable(sources map[string]bool) string {
	switch {
	case l.Origin != "runtime":
		return fmt.Sprintf("dead-lettered by the ClickHouse sink (%s): the processor applied the record; fix ClickHouse and re-run the sink", l.Origin)
	case l.Dead.Value == nil || headerValue(l.Headers, headers.ValueDropped) == "true":
		return "the DLQ kept no value to replay (a tombstone, or the broker refused even the DLQ copy)"
	case len(l.Dead.Key) == 0:
		return "the record has no key; the upstream must re-produce it keyed by order_id"
	case !sources[l.Dead.SourceTopic]:
		return fmt.Sprintf("source topic %q is not an input topic of this pipeline", l.Dead.SourceTopic)
	}
	return ""
}

// record is the replay of l.
func (l *Letter) record() *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(l.Headers)+2)
	for _, x := range l.Headers {
		// the runtime's own headers and an earlier replay's belong to the DLQ record, not the input
		if headers.IsRetailflow(x.Key) {
			continue
		}
		h = append(h, x)
	}
	h = append(h,
		kgo.RecordHeader{Key: headers.ReplayOf, Value: []byte(l.Ref())},
		kgo.RecordHeader{Key: headers.ReplayAttempt, Value: strconv.AppendInt(nil, int64(l.Attempt()), 10)},
	)
	return &kgo.Record{Topic: l.Dead.SourceTopic, Partition: l.Dead.SourcePartition, Key: l.Dead.Key, Value: l.Dead.Value, Headers: h}
}

// header is the value of the header name, found under its current or its legacy key
// (headers.Names).
func header(h []kgo.RecordHeader, name string) (string, bool) {
	for _, key := range headers.Names(name) {
		for _, x := range h {
			if x.Key == key {
				return string(x.Value), true
			}
		}
	}
	return "", false
}

func headerValue(h []kgo.RecordHeader, name string) string {
	v, _ := header(h, name)
	return v
}

// ParseLetter reads a DLQ record. An error means the record is not a DeadLetter this version
// can read (its class says whether that is transient: a registry that does not answer).
func ParseLetter(ctx context.Context, serde *schemas.Serde, r *kgo.Record) (*Letter, error) {
	l := &Letter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Headers: r.Headers, Origin: "runtime"}
	if o := headerValue(r.Headers, headers.Origin); o != "" {
		l.Origin = o
	}
	if headerValue(r.Headers, headers.DLQEncodeError) != "" {
		// the runtime could not encode a DeadLetter and kept the original value with its headers
		d, err := fromHeaders(r)
		if err != nil {
			return nil, err
		}
		l.Dead = d
		return l, nil
	}
	d, err := schemas.Decode[schemas.DeadLetter](ctx, serde, schemas.RecordRef{Topic: schemas.TopicDLQ, Partition: r.Partition, Offset: r.Offset}, r.Value)
	if err != nil {
		return nil, err
	}
	l.Dead = d
	return l, nil
}

func fromHeaders(r *kgo.Record) (*schemas.DeadLetter, error) {
	d := &schemas.DeadLetter{Key: r.Key, Value: r.Value, SourceTopic: headerValue(r.Headers, headers.SourceTopic),
		ErrorClass: schemas.ErrorClass(headerValue(r.Headers, headers.ErrorClassKey)), ErrorMessage: headerValue(r.Headers, headers.ErrorMessage), Attempt: 1}
	p, err1 := strconv.ParseInt(headerValue(r.Headers, headers.SourcePartition), 10, 32)
	o, err2 := strconv.ParseInt(headerValue(r.Headers, headers.SourceOffset), 10, 64)
	if d.SourceTopic == "" || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("dlq %s[%d]@%d: value is not a DeadLetter and the source headers are incomplete", r.Topic, r.Partition, r.Offset)
	}
	d.SourcePartition, d.SourceOffset = int32(p), o
	if t, err := time.Parse(time.RFC3339Nano, headerValue(r.Headers, headers.FirstSeen)); err == nil {
		d.FirstSeenAt = t
	}
	return d, nil
}

// Options configure Replay; Conn, DLQ, Sources, TransactionalID and Serde are required.
type Options struct {
	Conn kafka.Conn
	// DLQ is the physical DLQ topic; its replay log is ReplayLogTopic(DLQ).
	DLQ string
	// Sources are the physical topics a replay may be sent to: the pipeline's inputs.
	Sources []string
	// TransactionalID of the replay producer, stable across runs (e.g. <runtime.group>-replay).
	TransactionalID string
	Serde           *schemas.Serde
	Filter          Filter
	// DryRun prints what would be replayed and sends nothing (it creates no topic either).
	DryRun bool
	// MaxPerTxn bounds the replays of one transaction (default 500): a transaction must
	// finish well within the transaction timeout, and a failure re-sends at most this many.
	MaxPerTxn int
	// ReplicationFactor of the replay log when Replay creates it (0: the broker's default).
	ReplicationFactor int16
	// Out receives one JSON line (Line) per selected DLQ record; nil discards them.
	Out io.Writer
	// Now is the wall clock (replay log timestamps); default time.Now.
	Now func() time.Time
}

func (o *Options) validate() error {
	var missing []string
	if len(o.Conn.Brokers) == 0 {
		missing = append(missing, "Conn.Brokers")
	}
	if o.DLQ == "" {
		missing = append(missing, "DLQ")
	}
	if len(o.Sources) == 0 {
		missing = append(missing, "Sources")
	}
	if o.TransactionalID == "" && !o.DryRun {
		missing = append(missing, "TransactionalID")
	}
	if o.Serde == nil {
		missing = append(missing, "Serde")
	}
	if len(missing) > 0 {
		return fmt.Errorf("dlq: replay options lack %s", strings.Join(missing, ", "))
	}
	if slices.Contains(o.Sources, o.DLQ) {
		return fmt.Errorf("dlq: the DLQ %s cannot be a replay target", o.DLQ)
	}
	if o.MaxPerTxn <= 0 {
		o.MaxPerTxn = 500
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Conn.Timeout <= 0 {
		o.Conn.Timeout = 10 * time.Second
	}
	return nil
}

// Line is the JSON line Replay writes for each DLQ record the filter selects.
type Line struct {
	// Action: "would-replay" (dry run), "replayed" (committed), "already-replayed" (listed in
	// the replay log) or "unreplayable" (Reason says why).
	Action       string             `json:"action"`
	Reason       string             `json:"reason,omitempty"`
	DLQ          string             `json:"dlq"`
	To           string             `json:"to,omitempty"` // "<topic>/<partition>"
	Source       string             `json:"source"`       // the original record, "<topic>/<partition>/<offset>"
	ErrorClass   schemas.ErrorClass `json:"error_class"`
	ErrorMessage string             `json:"error_message"`
	EventID      string             `json:"event_id,omitempty"`
	Attempt      int32              `json:"attempt,omitempty"`
	Key          string             `json:"key"`
	Value        []byte             `json:"value"` // base64 of the original value
	Headers      map[string]string  `json:"headers,omitempty"`
}

// Result counts what a replay saw.
type Result struct {
	Read            int // DLQ records read
	Selected        int // of them, matching the filter
	Replayed        int // sent (or, in a dry run, that would be sent)
	AlreadyReplayed int // listed in the replay log
	Unreplayable    int
}

// Replay re-sends the selected DLQ records to their source topics; see the package
// documentation. It returns after the DLQ has been read up to its last stable offset at the
// start. On error, the transactions committed before it stay committed (and logged); the open
// one is aborted, so a re-run continues where this one stopped.
func Replay(ctx context.Context, o Options) (Result, error) {
	var res Result
	if err := o.validate(); err != nil {
		return res, err
	}
	sources := map[string]bool{}
	for _, s := range o.Sources {
		sources[s] = true
	}
	logTopic := ReplayLogTopic(o.DLQ)

	var cl *kgo.Client
	if !o.DryRun {
		if _, err := kafka.EnsureTopics(ctx, o.Conn, []kafka.TopicSpec{{Name: logTopic, Partitions: 1, ReplicationFactor: o.ReplicationFactor, Compacted: true}}); err != nil {
			return res, fmt.Errorf("replay log %s: %w", logTopic, err)
		}
		var err error
		cl, err = kgo.NewClient(append(o.Conn.Options(),
			kgo.TransactionalID(o.TransactionalID), kgo.TransactionTimeout(max(o.Conn.Timeout*3, 10*time.Second)),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(o.Conn.Timeout*3))...)
		if err != nil {
			return res, fmt.Errorf("replay producer: %w", err)
		}
		defer cl.Close()
		// InitProducerID fences an earlier replay that may still be running (its open
		// transaction is aborted) before this one reads what the earlier ones logged.
		pctx, cancel := context.WithTimeout(ctx, 3*o.Conn.Timeout)
		_, _, err = cl.ProducerID(pctx)
		cancel()
		if err != nil {
			return res, fmt.Errorf("replay producer %s: %w", o.TransactionalID, err)
		}
	}

	done := map[string]bool{}
	err := readTopic(ctx, o.Conn, logTopic, func(r *kgo.Record) error {
		done[string(r.Key)] = r.Value != nil
		return nil
	})
	if err != nil && !(o.DryRun && errors.Is(err, errNoTopic)) {
		return res, fmt.Errorf("replay log %s: %w", logTopic, err)
	}

	var todo []*Letter
	err = readTopic(ctx, o.Conn, o.DLQ, func(r *kgo.Record) error {
		res.Read++
		l, err := ParseLetter(ctx, o.Serde, r)
		if err != nil {
			var de *schemas.DecodeError
			if errors.As(err, &de) && de.Transient() {
				return err
			}
			res.Selected++
			res.Unreplayable++
			return writeLine(o.Out, Line{Action: "unreplayable", Reason: "the DLQ value does not decode: " + err.Error(),
				DLQ: headers.Coordinates{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}.String(), Key: string(r.Key), Value: r.Value})
		}
		if !o.Filter.Match(l) {
			return nil
		}
		res.Selected++
		switch reason := l.unreplayable(sources); {
		case reason != "":
			res.Unreplayable++
			return writeLine(o.Out, l.line("unreplayable", reason))
		case done[l.Ref()]:
			res.AlreadyReplayed++
			return writeLine(o.Out, l.line("already-replayed", ""))
		}
		todo = append(todo, l)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("dlq %s: %w", o.DLQ, err)
	}
	if o.DryRun {
		for _, l := range todo {
			if err := writeLine(o.Out, l.line("would-replay", "")); err != nil {
				return res, err
			}
		}
		res.Replayed = len(todo)
		return res, nil
	}
	for len(todo) > 0 {
		batch := todo[:min(len(todo), o.MaxPerTxn)]
		todo = todo[len(batch):]
		if err := o.send(ctx, cl, logTopic, batch); err != nil {
			return res, err
		}
		for _, l := range batch {
			if err := writeLine(o.Out, l.line("replayed", "")); err != nil {
				return res, err
			}
		}
		res.Replayed += len(batch)
	}
	return res, nil
}

// send replays batch and logs it in one transaction.
func (o *Options) send(ctx context.Context, cl *kgo.Client, logTopic string, batch []*Letter) error {
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("replay: begin transaction: %w", err)
	}
	p := kgo.AbortingFirstErrPromise(cl)
	now := o.Now().UTC()
	for _, l := range batch {
		rec := l.record()
		cl.Produce(ctx, rec, p.Promise())
		entry, _ := json.Marshal(logEntry{To: fmt.Sprintf("%s/%d", rec.Topic, rec.Partition), Attempt: l.Attempt(), EventID: l.eventID(), ReplayedAt: now})
		cl.Produce(ctx, &kgo.Record{Topic: logTopic, Partition: 0, Key: []byte(l.Ref()), Value: entry}, p.Promise())
	}
	perr := p.Err()
	// Not inheriting cancellation: cancelling an EndTransaction can leave its outcome unknown
	// (franz-go's docs), so a SIGTERM lets it finish, bounded by the timeout.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*o.Conn.Timeout)
	defer cancel()
	if err := cl.EndTransaction(ectx, kgo.TransactionEndTry(perr == nil)); err != nil {
		return fmt.Errorf("replay: end transaction of %d records from %s: %w (none of them is replayed)", len(batch), batch[0].Ref(), err)
	}
	if perr != nil {
		return fmt.Errorf("replay of %d records from %s aborted, none of them was sent: %w", len(batch), batch[0].Ref(), perr)
	}
	return nil
}

// logEntry is the value of a replay-log record.
type logEntry struct {
	To         string    `json:"to"`
	Attempt    int32     `json:"attempt"`
	EventID    string    `json:"event_id,omitempty"`
	ReplayedAt time.Time `json:"replayed_at"`
}

func (l *Letter) eventID() string {
	if l.Dead.EventID != nil {
		return *l.Dead.EventID
	}
	return ""
}

func (l *Letter) line(action, reason string) Line {
	d := l.Dead
	ln := Line{Action: action, Reason: reason, DLQ: l.Ref(),
		Source:     headers.Coordinates{Topic: d.SourceTopic, Partition: d.SourcePartition, Offset: d.SourceOffset}.String(),
		ErrorClass: d.ErrorClass, ErrorMessage: d.ErrorMessage, EventID: l.eventID(), Key: string(d.Key), Value: d.Value}
	if reason == "" {
		ln.To = fmt.Sprintf("%s/%d", d.SourceTopic, d.SourcePartition)
		ln.Attempt = l.Attempt()
		ln.Headers = map[string]string{}
		for _, h := range l.record().Headers {
			ln.Headers[h.Key] = string(h.Value)
		}
	}
	return ln
}

func writeLine(w io.Writer, ln Line) error {
	b, err := json.Marshal(ln)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// errNoTopic is wrapped when the DLQ or its replay log does not exist.
var errNoTopic = kafka.ErrUnknownTopic

// readTopic calls fn with every committed record of topic, from the start up to the last
// stable offset of each partition when it is called (kafka.ReadToEnd). Each poll must make
// progress within the connection timeout.
func readTopic(ctx context.Context, conn kafka.Conn, topic string, fn func(*kgo.Record) error) error {
	return kafka.ReadToEnd(ctx, conn, topic, kafka.ReadOptions{Until: kafka.EndStable, PollTimeout: conn.Timeout}, fn)
}
