package topology

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/schemas/headers"
)

// Codec turns a state value into the bytes of its changelog record and back. Decode must return
// a value that shares nothing with earlier decodes: unless the stage declares ImmutableState,
// the runtime decodes a fresh copy for every transaction, so a processor that mutates in place
// cannot corrupt committed state. Encode is called once per key per transaction, on the key's
// last state in it, possibly from several goroutines at once (for different keys): it must be
// safe for concurrent use.
type Codec[S any] interface {
	Encode(S) ([]byte, error)
	Decode([]byte) (S, error)
}

// StateOp says what a Step does to the key's stored state.
type StateOp uint8

const (
	// Keep leaves the stored state as it was (a duplicate event, an output-only step): no
	// changelog record.
	Keep StateOp = iota
	// Put stores Step.State; the key's changelog record is written once per transaction.
	Put
	// Evict deletes the key; the changelog gets a tombstone.
	Evict
)

// Step is what a processor returns for one event: what happens to the key's state and the
// records to emit. Outputs are produced in order, keyed by the input record's key, to the
// input record's partition number.
type Step[S, O any] struct {
	Op      StateOp
	State   S
	Outputs []Emit[O]
}

// Emit is one output value and the stream it goes to; the stream must be one of the stage's
// Writes.
type Emit[O any] struct {
	To    Stream
	Value O
}

// Processor is the typed behaviour of a keyed stage (the StageSpec in the Topology declares its
// name and streams): a pure process function and the edges around it. E is the decoded event,
// S the state per key, O an output value.
type Processor[E, S, O any] struct {
	// Decode turns an input record into an event. A poison error (anything not transient, see
	// Classify) sends the record to the DLQ with class "decode" unless Classify names another.
	// Decode and Validate run for a whole polled batch before it is processed, from several
	// goroutines at once (Options.Parallelism): they must be safe for concurrent use and must
	// not depend on the order in which records are decoded.
	// With an error it may still return the event as far as it decoded (a value that decodes
	// but breaks a rule); the runtime uses it only for LogAttrs.
	Decode func(r *kgo.Record) (E, error)
	// Validate checks a decoded event (the stateless processor); nil accepts everything.
	// Failures go to the DLQ with class "invalid".
	Validate func(E) error
	// Process is the pure function (state, event) → (new state, outputs). found is false for a
	// key without state (state is then the zero S). It must not mutate state it did not create
	// and must not do I/O. An error sends the record to the DLQ with class "process".
	Process func(key string, state S, found bool, event E) (Step[S, O], error)
	// Ignore reports that Process would leave the state unchanged and emit nothing for an
	// event, whatever the key's state (an input the stage reads but does not use). The runtime
	// then neither looks the key's state up nor calls Process: the record only commits with
	// the transaction, and its event time counts (EventTime) as any processed event's does.
	// It runs after the checks every input gets (key, partition, decode). Nil ignores nothing.
	Ignore func(E) bool
	// State encodes the state for the changelog.
	State Codec[S]
	// ImmutableState declares that Process never writes into a state it is given, nor into
	// anything reachable from it (S is a plain value, or copy-on-write like ledger.Ledger), and
	// that a state it returns is not written by anyone afterwards. The runtime then decodes a
	// key's committed state once, on its first use after restore, and hands that same value,
	// and later the value the last committed transaction produced, to every later transaction.
	// Without it every transaction decodes a fresh copy from the changelog bytes.
	ImmutableState bool
	// Encode turns an output value into record bytes. An error sends the causing input to the DLQ
	// with class "encode" (none of its outputs are produced).
	Encode func(to Stream, o O) ([]byte, error)
	// DeadLetter encodes the value of a DLQ record; nil writes the original value unchanged.
	// The error headers are written either way. If it fails, the original value is written
	// with the encoding error in an extra header.
	DeadLetter func(Rejected) ([]byte, error)
	// Classify names the DLQ class of a decode/validate/process error and says whether it is
	// transient (retried with back-off, never dead-lettered). Nil uses DefaultClassify.
	Classify func(err error) (class headers.ErrorClass, transient bool)
	// Time-driven eviction (sweep.go), all three or none. EventTime is an event's business
	// time: the highest of a partition's committed events is its stream time, which only moves
	// forward with committed input, so a replay or a restore reaches the same stream times (but
	// when a sweep runs between transactions is wall-clock: DESIGN.md "Eviction"). Expiry says
	// when a state may be evicted if no later event changes it (false: not by time); it is
	// called once per key per transaction, on the state written to the changelog. Expire
	// re-checks a due key's committed state at the stream time: evict or not, and the headers
	// its tombstone carries (why, and what a reader must not lose with it).
	EventTime func(E) time.Time
	Expiry    func(S) (time.Time, bool)
	Expire    func(key string, state S, streamTime time.Time) (evict bool, tombstone []kgo.RecordHeader)
	// LogAttrs returns the attributes that identify a decoded event in the runtime's
	// record-level log lines (dead letters, re-routes), e.g. its correlation and causation ids,
	// as slog key-value pairs. It is called only for those records, with what Decode returned
	// (possibly with an error; the zero E when nothing decoded). Nil adds none.
	LogAttrs func(E) []any
}

func (s Processor[E, S, O]) validate() error {
	var missing []string
	if s.Decode == nil {
		missing = append(missing, "Decode")
	}
	if s.Process == nil {
		missing = append(missing, "Process")
	}
	if s.State == nil {
		missing = append(missing, "State")
	}
	if s.Encode == nil {
		missing = append(missing, "Encode")
	}
	if n := btoi(s.EventTime != nil) + btoi(s.Expiry != nil) + btoi(s.Expire != nil); n != 0 && n != 3 {
		missing = append(missing, "EventTime, Expiry and Expire (time-driven eviction needs all three)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("topology: stage is missing %v", missing)
	}
	return nil
}

// Rejected is an input record on its way to the DLQ.
type Rejected struct {
	Record    *kgo.Record
	Class     headers.ErrorClass
	Err       error
	SchemaID  int32 // −1 when the value has no Confluent header
	FirstSeen time.Time
	// ValueDropped: the broker refused even the DLQ copy of the value; write none.
	ValueDropped bool
}

// ErrTransient marks an error as transient: the condition is outside the record (a registry
// that does not answer, a broker that is down), so the record is retried, never dead-lettered.
var ErrTransient = errors.New("transient")

// ErrFatal marks an error that neither a retry nor the DLQ fixes (the schema registry refusing
// the credentials, a misconfiguration): the transaction aborts and Run returns the error, so
// the process stops with one clear line instead of retrying forever or dead-lettering every
// record.
var ErrFatal = errors.New("fatal")

// DefaultClassify treats an error as transient if it wraps ErrTransient or has a
// Temporary() bool / Transient() bool method returning true; the class comes from an
// ErrorClass() string method when the error has one, otherwise it is empty (the runtime then
// uses the name of the step that failed).
func DefaultClassify(err error) (class headers.ErrorClass, transient bool) {
	if errors.Is(err, ErrTransient) {
		return "", true
	}
	var tmp interface{ Temporary() bool }
	if errors.As(err, &tmp) && tmp.Temporary() {
		return "", true
	}
	var tr interface{ Transient() bool }
	if errors.As(err, &tr) && tr.Transient() {
		return "", true
	}
	var cl interface{ ErrorClass() string }
	if errors.As(err, &cl) {
		return headers.ErrorClass(cl.ErrorClass()), false
	}
	return "", false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
