// Package orderledger is the order-ledger pipeline: its graph (the five inputs into one keyed
// stage that writes loyalty commands, keeps its state in the compacted changelog and
// dead-letters what it cannot process) and the stage's behaviour bound to the runtime —
// Avro decode and validation (schemas), Ledger.Apply (processors/ledger), the command envelope,
// the changelog codec, the dead-letter value, the error classes and the eviction rule.
//
// It is the one place the pipeline is assembled: `retailflow run`, `topics accept-changes`, the
// tests and the benchmarks build it from here. It lives under topology, not processors, because
// it binds the pure ledger to the runtime's record type (franz-go's kgo.Record): a processor
// package imports neither Kafka nor ClickHouse.
package orderledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/retailflow/retailflow/topology"
)

// StageName is the stage's name in the topology (and in metrics and the topic fingerprint).
const StageName = "order-ledger"

// Topics names the pipeline's Kafka topics.
type Topics struct {
	// Names maps every logical topic (schemas.InputTopics, commands, changelog, DLQ) to its
	// Kafka name.
	Names map[schemas.Topic]string
	// Reroute is the internal topic that re-partitions inputs a producer put on the wrong
	// partition (topology.StageSpec.Reroute).
	Reroute string
}

// Topology is the processor's graph: the five inputs into the order-ledger stage, which writes
// loyalty commands and keeps its state in the compacted changelog.
func Topology(t Topics) topology.Topology { return StageTopology(StageName, t, t.Reroute) }

// StageTopology is the one keyed stage over the five inputs that writes the commands topic and
// keeps its state in the changelog, named name, re-routing misplaced keys to reroute ("" for
// none). Topology (the ledger) and accrualcore.Topology (the engine comparison's core) are it.
func StageTopology(name string, t Topics, reroute string) topology.Topology {
	var inputs []topology.Stream
	for _, in := range schemas.InputTopics {
		inputs = append(inputs, topology.Stream(t.Names[in]))
	}
	commands := topology.Stream(t.Names[schemas.TopicCommands])
	return topology.Topology{
		Sources: inputs,
		Stages: []topology.StageSpec{{
			Name: name, Inputs: inputs, Store: topology.Table(t.Names[schemas.TopicChangelog]),
			Writes: []topology.Stream{commands}, Reroute: topology.Stream(reroute),
		}},
		Outputs: []topology.Stream{commands},
		DLQ:     topology.Stream(t.Names[schemas.TopicDLQ]),
	}
}

// Options are what the stage needs besides its topics.
type Options struct {
	Serde *schemas.Serde
	// Policy must be valid (Policy.Validate): the ledger does not re-validate it.
	Policy ledger.Policy
	// MaxEventSkew bounds an event's times against its record's timestamp
	// (schemas.Event.CheckTimes); zero checks the absolute range only.
	MaxEventSkew time.Duration
	// StateLayout is the order_ledger layout the changelog is written in (state.changelog_layout;
	// the zero value is the current one).
	StateLayout ledgerstate.Layout
}

// Processor is the stage's typed behaviour.
type Processor = topology.Processor[Input, ledger.Ledger, *schemas.Event]

// Input is one decoded input record: its event, and when the record reached the log. A value
// (the runtime keeps a polled batch's inputs in a slice): no allocation of its own.
type Input struct {
	*schemas.Event
	// Arrived is the Kafka record's timestamp (the producer's create time, or the broker's
	// append time on a LogAppendTime topic): fixed with the record, so a replay sees the same.
	// An orphan's expiry counts from it (ledger.Ledger.Arrived).
	Arrived time.Time
}

type step = topology.Step[ledger.Ledger, *schemas.Event]

// NewProcessor builds the order-ledger stage's behaviour: Avro decode + validation + time bounds
// (schemas: the one validator, so the ledger only sees valid events), Ledger.Apply, Avro
// commands, the changelog codec (schemas.LedgerState) and DeadLetter values for the DLQ.
func NewProcessor(ctx context.Context, t Topics, o Options) Processor {
	serde, p := o.Serde, o.Policy
	logical := map[string]schemas.Topic{}
	for lt, name := range t.Names {
		logical[name] = lt
	}
	commands := topology.Stream(t.Names[schemas.TopicCommands])
	return Processor{
		// Event times are bounded against the record's timestamp before the ledger sees them:
		// the ledger's clock is the largest occurred_at it folded, and one event dated years
		// ahead would close and evict its order (a later real return then held forever).
		Decode: func(r *kgo.Record) (Input, error) {
			ref := schemas.RecordRef{Topic: logical[r.Topic], Partition: r.Partition, Offset: r.Offset}
			e, err := serde.DecodeEventAt(ctx, ref, r.Value, r.Timestamp, o.MaxEventSkew)
			var de *schemas.DecodeError
			if errors.As(err, &de) && (de.Class == schemas.ClassInvalid || de.Class == schemas.ClassTimeOutOfRange) {
				// it decodes but breaks a rule: dead-lettered, and its log line names its ids
				// (LogAttrs); decoded again without the checks, only for such records
				if raw, rerr := schemas.Decode[schemas.Event](ctx, serde, ref, r.Value); rerr == nil {
					return Input{Event: raw, Arrived: r.Timestamp}, err
				}
			}
			if errors.Is(err, schemas.ErrRegistryAuth) {
				// not the record's fault, not fixed by waiting: stop rather than dead-letter
				// every record or retry forever
				return Input{}, fmt.Errorf("%w: %w", topology.ErrFatal, err)
			}
			return Input{Event: e, Arrived: r.Timestamp}, err
		},
		Process: func(key string, l ledger.Ledger, found bool, in Input) (step, error) {
			if !found {
				l = ledger.New(key)
			}
			e := in.Event
			n, cmds, err := l.Apply(*e, p)
			if err != nil {
				return step{}, err
			}
			if o.StateLayout == ledgerstate.LayoutCurrent {
				// layout v2 cannot store the arrival: an orphan expires on its clock alone, so
				// that the expiry indexed (rf.expires) is the one its stored state implies
				n = n.Arrived(in.Arrived)
			}
			st := step{Op: topology.Put, State: n}
			if Evictable(n, len(cmds)) {
				st.Op = topology.Evict
			}
			for i := range cmds {
				st.Outputs = append(st.Outputs, topology.Emit[*schemas.Event]{To: commands, Value: CommandEvent(e, &cmds[i])})
			}
			return st, nil
		},
		State: stateCodec{ctx: ctx, serde: serde, layout: o.StateLayout},
		// Ledger.Apply is copy-on-write and never writes into its receiver (processors/ledger
		// cow.go), so the runtime could keep decoded ledgers between transactions; it does
		// not: a decoded ledger is several times its bytes and pointer-rich, and on the
		// benchmark the GC work of keeping them cost as much as the decodes it saved and raised
		// the p99 latency (bench/RESULTS.md). Orders are touched a few times over hours, so
		// decoding once per key per transaction is cheap.
		ImmutableState: false,
		Encode: func(_ topology.Stream, ev *schemas.Event) ([]byte, error) {
			return serde.EncodeEvent(schemas.TopicCommands, ev)
		},
		DeadLetter: func(rj topology.Rejected) ([]byte, error) {
			return schemas.Encode(serde, schemas.TopicDLQ, DeadLetter(rj))
		},
		Classify: Classify,
		LogAttrs: func(in Input) []any { return LogAttrs(in.Event) },
		// Time-driven eviction (topology/sweep.go): stream time is the events' business time,
		// the clock the ledger closes orders on.
		EventTime: func(in Input) time.Time { return in.OccurredAt },
		Expiry:    func(l ledger.Ledger) (time.Time, bool) { return l.ExpiresAt(p) },
		Expire: func(_ string, l ledger.Ledger, now time.Time) (bool, []kgo.RecordHeader) {
			return Expired(l, p, now)
		},
	}
}

// Expired is the sweep's rule: whether an order that received no event since it was indexed is
// due at stream time now (ledger.Ledger.ExpiresAt, on its committed state), and the headers of
// its tombstone: why (headers.Evicted: closed or orphan) and its open exceptions
// (headers.OpenExceptions), which the ClickHouse sink keeps on the order's deleted row. An
// orphan's held events are its HELD_WITHOUT_ORDER exceptions: its own clock never moved past
// their grace (no later event came), so they are listed here as the ledger lists them once
// the grace has passed (code HELD_WITHOUT_ORDER, ref the held event's id).
func Expired(l ledger.Ledger, p ledger.Policy, now time.Time) (bool, []kgo.RecordHeader) {
	at, ok := l.ExpiresAt(p)
	if !ok || now.Before(at) {
		return false, nil
	}
	reason := "closed"
	if !l.Accepted() {
		reason = "orphan"
	}
	var exc []string
	seen := map[string]bool{}
	for _, x := range l.Exceptions() {
		k := x.Code + ":" + x.Ref
		seen[k] = true
		exc = append(exc, k)
	}
	if !l.Accepted() {
		for _, h := range l.State().Held {
			if k := ledger.ExcHeldWithoutOrder + ":" + h.EventID; h.Reason == ledger.HoldNoOrder && !seen[k] {
				seen[k] = true
				exc = append(exc, k)
			}
		}
	}
	hs := []kgo.RecordHeader{{Key: headers.Evicted, Value: []byte(reason)}}
	if len(exc) > 0 {
		hs = append(hs, kgo.RecordHeader{Key: headers.OpenExceptions, Value: []byte(strings.Join(exc, " "))})
	}
	return true, hs
}

// LogAttrs identifies an event in the runtime's record-level log lines (dead letters,
// re-routes) by its envelope: event_id, correlation_id and causation_id, so one correlation id
// finds the log lines beside the rows and commands that carry it. A record that did not decode
// has none.
func LogAttrs(e *schemas.Event) []any {
	if e == nil {
		return nil
	}
	causation := ""
	if e.CausationID != nil {
		causation = *e.CausationID
	}
	return []any{"event_id", e.EventID, "correlation_id", e.CorrelationID, "causation_id", causation}
}

// Evictable is the eviction rule: a closed order whose retention has passed on its own clock,
// and whose last event caused no commands, is deleted (tombstone in the changelog).
func Evictable(n ledger.Ledger, commands int) bool {
	at, closed := n.EvictAfter()
	return closed && commands == 0 && !n.Clock().Before(at)
}

// stateCodec stores a Ledger in the changelog as a schemas.LedgerState.
type stateCodec struct {
	ctx    context.Context
	serde  *schemas.Serde
	layout ledgerstate.Layout
}

func (c stateCodec) Encode(l ledger.Ledger) ([]byte, error) {
	return ledger.EncodeStateLayout(c.serde, l, c.layout)
}
func (c stateCodec) Decode(b []byte) (ledger.Ledger, error) {
	return ledger.DecodeState(c.ctx, c.serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: -1}, b)
}

// DeadLetter is the DLQ value of a rejected input: its key, value and coordinates, the error
// class and message, and the event id when decoding got that far.
func DeadLetter(rj topology.Rejected) *schemas.DeadLetter {
	d := &schemas.DeadLetter{
		Key: rj.Record.Key, Value: rj.Record.Value, SourceTopic: rj.Record.Topic,
		SourcePartition: rj.Record.Partition, SourceOffset: rj.Record.Offset,
		ErrorClass: rj.Class, ErrorMessage: rj.Err.Error(),
		FirstSeenAt: rj.FirstSeen, Attempt: 1,
	}
	if rj.ValueDropped {
		d.Value = nil
	}
	if rj.SchemaID >= 0 {
		id := rj.SchemaID
		d.SchemaID = &id
	}
	var de *schemas.DecodeError
	var ee *ledger.EventError
	switch {
	case errors.As(rj.Err, &de) && de.EventID != "":
		d.EventID = &de.EventID
	case errors.As(rj.Err, &ee) && ee.EventID != "":
		d.EventID = &ee.EventID
	}
	return d
}

// CommandEvent wraps a command in the envelope of the commands topic. Every field is derived
// from the command and its causing event, so a replay re-emits the identical event: event_id is
// the request id, occurred_at and published_at the command's business time.
func CommandEvent(cause *schemas.Event, cmd *schemas.LoyaltyCommand) *schemas.Event {
	causation := cause.EventID
	corr := cause.CorrelationID
	if corr == "" {
		corr = cmd.OrderID
	}
	return &schemas.Event{
		Envelope: schemas.Envelope{
			EventID: cmd.RequestID, EventType: cmd.CommandType, SchemaVersion: 1, SourceSystem: "retailflow",
			OccurredAt: cmd.RequestedAt, PublishedAt: cmd.RequestedAt,
			AggregateType: "order", AggregateID: cmd.OrderID, CorrelationID: corr, CausationID: &causation,
			TenantID: cause.TenantID,
		},
		LoyaltyCommand: cmd,
	}
}

// Classify names the DLQ class of an error: schemas' decode classes go as they are
// (registry-unavailable is transient); a ledger rejection is class "ledger"; anything else falls
// back to topology.DefaultClassify.
func Classify(err error) (schemas.ErrorClass, bool) {
	var de *schemas.DecodeError
	if errors.As(err, &de) {
		return de.Class, de.Transient()
	}
	var ee *ledger.EventError
	if errors.As(err, &ee) {
		return schemas.ClassLedger, false
	}
	return topology.DefaultClassify(err)
}
