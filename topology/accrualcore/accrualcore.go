// Package accrualcore binds the accrual core (processors/accrual) to the runtime: one keyed
// stage over the five input topics that writes the core's commands (accrual.CommandSchema, in
// the Confluent framing) and keeps each order's accrual.State in its compacted changelog, run
// by topology.Runner with the same exactly-once machinery as the full ledger.
//
// It exists for the engine comparison (bench/kstreams, `make bench-kstreams`), where a Kafka
// Streams application implements the same core; it is not part of `retailflow run`.
//
// Equal work, stated: the orders, shipments and returns values are decoded with the production
// decoder (schemas.Decode: Confluent framing, schema id, Avro) but not validated — the Kafka
// Streams app decodes and does not validate, and retailflow's validation and time bounds
// (schemas.Serde.DecodeEventAt, which the full ledger uses) cost about a fifth of this stage's
// CPU; a record on the loyalty and ERP topics, which the core does not read, is checked for
// the framing only (the Kafka Streams app does the same). A record that fails goes to the DLQ
// in the transaction of its offset.
// No re-route topic: the Kafka Streams app has none either (both trust the murmur2
// partitioner).
package accrualcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// StageName is the stage's name in the topology.
const StageName = "accrual-core"

// Topics names the stage's topics: the five inputs (schemas.InputTopics), the commands
// (schemas.TopicCommands: the core's commands topic), the changelog and the DLQ.
type Topics = orderledger.Topics

// Topology is the five inputs into the accrual-core stage, which writes the commands topic and
// keeps its state in the changelog.
func Topology(t Topics) topology.Topology { return orderledger.StageTopology(StageName, t, "") }

// Processor is the stage's typed behaviour.
type Processor = topology.Processor[accrual.Event, accrual.State, accrual.Command]

type step = topology.Step[accrual.State, accrual.Command]

// ErrNotFramed is the decode error of a loyalty or ERP record without the Confluent framing.
var ErrNotFramed = errors.New("accrualcore: value is not in the Confluent framing (magic 0 + 4-byte schema id)")

// NewProcessor builds the stage: decode (accrual.Decode, a projection of the input),
// accrual.Apply, the command encoding and the state codec.
func NewProcessor(ctx context.Context, t Topics, serde *schemas.Serde, p accrual.Policy) Processor {
	logical := map[string]schemas.Topic{}
	for lt, name := range t.Names {
		logical[name] = lt
	}
	commands := topology.Stream(t.Names[schemas.TopicCommands])
	return Processor{
		Decode: func(r *kgo.Record) (accrual.Event, error) {
			lt := logical[r.Topic]
			if lt == schemas.TopicLoyalty || lt == schemas.TopicERP {
				if len(r.Value) < schemas.HeaderSize || r.Value[0] != 0 {
					return accrual.Event{}, &schemas.DecodeError{RecordRef: schemas.RecordRef{Topic: lt, Partition: r.Partition, Offset: r.Offset},
						Class: schemas.ClassBadHeader, Err: ErrNotFramed}
				}
				return accrual.Event{Kind: accrual.Other}, nil
			}
			e, err := accrual.Decode(ctx, serde, schemas.RecordRef{Topic: lt, Partition: r.Partition, Offset: r.Offset}, r.Value)
			if errors.Is(err, schemas.ErrRegistryAuth) {
				return accrual.Event{}, fmt.Errorf("%w: %w", topology.ErrFatal, err)
			}
			return e, err
		},
		Process: func(key string, s accrual.State, found bool, e accrual.Event) (step, error) {
			n, cmds, changed, err := accrual.Apply(key, s, found, e, p)
			if err != nil || !changed {
				return step{}, err
			}
			st := step{Op: topology.Put, State: n}
			for _, c := range cmds {
				st.Outputs = append(st.Outputs, topology.Emit[accrual.Command]{To: commands, Value: c})
			}
			return st, nil
		},
		// loyalty and ERP records, and events of other types: Apply changes nothing for them
		// (the Kafka Streams core returns before its store lookup for the same records)
		Ignore: func(e accrual.Event) bool { return e.Kind == accrual.Other },
		State:  stateCodec{},
		// Apply never writes into a state it is given (accrual.State.clone).
		ImmutableState: true,
		Encode: func(_ topology.Stream, c accrual.Command) ([]byte, error) {
			return accrual.AppendCommand(make([]byte, 0, 160), &c), nil
		},
		DeadLetter: func(rj topology.Rejected) ([]byte, error) {
			return schemas.Encode(serde, schemas.TopicDLQ, orderledger.DeadLetter(rj))
		},
		Classify: orderledger.Classify,
	}
}

type stateCodec struct{}

func (stateCodec) Encode(s accrual.State) ([]byte, error) { return accrual.EncodeState(s), nil }
func (stateCodec) Decode(b []byte) (accrual.State, error) { return accrual.DecodeState(b) }
