// Package topology declares retailflow's stream graph as data and drives its keyed stage with an
// exactly-once runtime (Runner): consume → decode → validate → keyed state → processor →
// produce outputs, changelog and dead letters, and commit the consumed offsets, all in one Kafka
// transaction.
//
// File map:
//
//	topology.go  Stream, Table, StageSpec, Topology and Validate (no client needed)
//	stage.go     the typed behaviour of a keyed stage: Processor, Step, Emit, Codec, error classes
//	store.go     the per-partition state store and the per-transaction overlay
//	runner.go    Runner: the GroupTransactSession loop, restore on assignment, DLQ, shutdown
//	metrics.go   Metrics, the hooks the runtime calls (Prometheus lives in connectors/ops)
//
// Non-obvious invariants (the reasons are in the doc comments where they are enforced):
//   - state mutations live in a per-transaction overlay and reach the store only after
//     GroupTransactSession.End reports committed=true; on abort the overlay is dropped and the
//     records are re-polled from the committed offsets;
//   - the store keeps a restored key as bytes until its first use; a stage with ImmutableState
//     then keeps the decoded value (shared with the transactions that read it, which is safe
//     only because Process never writes into a state it is given), others decode afresh per
//     transaction;
//   - a key's changelog record is encoded once per transaction, from its last state, when the
//     changelog is prepared; if that fails the transaction aborts and its retry encodes per
//     input (Runner.eagerEncode), so the culprit input is dead-lettered and nothing else is;
//   - decode and validate of a polled batch run in parallel before the batch is processed in
//     record order: they are stateless, so the order of decoding cannot change any outcome;
//   - every output record of an input record goes to the input's partition number (manual
//     partitioning), so the changelog partition p holds exactly the state of input partition p;
//   - a partition is paused from the moment it is assigned until its store is restored, so no
//     record of it is polled (and no offset of it committed) before its state is complete;
//   - the group uses the eager range balancer, which gives one member the same partition number
//     of every co-partitioned input.
package topology

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/retailflow/retailflow/connectors/kafka"
)

// Stream is a topic of events: a source the topology consumes or an output it produces.
type Stream string

// Table is a compacted changelog topic backing the state store of one keyed stage. A Table is
// never a Stream: it is read only to restore the store.
type Table string

// StageSpec declares one stateful step of the graph: it consumes Inputs keyed by the same key,
// keeps one state value per key in Store, and writes Writes. Its behaviour is a Processor,
// which NewRunner binds to it.
//
// Reroute, when set, is an internal topic co-partitioned with the inputs that repairs producers
// using another partitioner: an input record whose key does not hash (murmur2, as Kafka's Java
// client partitions) to the partition it arrived on is not processed there but produced, in the
// same transaction as its offset, to Reroute's right partition, where the stage consumes it
// like an input. Without it such a record would meet none of its key's state.
type StageSpec struct {
	Name    string
	Inputs  []Stream
	Store   Table
	Writes  []Stream
	Reroute Stream
}

// Topology is the whole graph: where records come from, what processes them, and where they go.
// Every topic of a stage (inputs, store, writes and the DLQ) is co-partitioned with its inputs:
// the runtime writes outputs of input partition p to partition p.
type Topology struct {
	// Sources are the topics upstream systems produce to.
	Sources []Stream
	Stages  []StageSpec
	// Outputs are the topics the topology publishes for downstream readers (the sink).
	Outputs []Stream
	// DLQ receives records that cannot be processed, with the original bytes and error headers.
	DLQ Stream
}

// Validate reports every wiring mistake, not just the first: unknown topics, a topic consumed
// twice, a source nobody reads, an output nobody writes, a write nobody declared, a store shared
// by two stages or used as a stream, and a DLQ that is also something else.
func (t Topology) Validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	sources := map[Stream]bool{}
	for _, s := range t.Sources {
		if s == "" {
			bad("a source has an empty topic name")
			continue
		}
		if sources[s] {
			bad("source %s is declared twice", s)
		}
		sources[s] = true
	}
	outputs := map[Stream]bool{}
	for _, s := range t.Outputs {
		if s == "" {
			bad("an output has an empty topic name")
			continue
		}
		if outputs[s] {
			bad("output %s is declared twice", s)
		}
		if sources[s] {
			bad("topic %s is both a source and an output", s)
		}
		outputs[s] = true
	}
	if len(t.Stages) == 0 {
		bad("the topology has no stage")
	}

	written := map[Stream]string{}  // stream → stage writing it
	consumed := map[Stream]string{} // stream → stage reading it
	stores := map[Table]string{}
	names := map[string]bool{}
	for _, st := range t.Stages {
		if st.Name == "" {
			bad("a stage has no name")
		} else if names[st.Name] {
			bad("stage name %s is used twice", st.Name)
		}
		names[st.Name] = true
		if len(st.Inputs) == 0 {
			bad("stage %s consumes nothing", st.Name)
		}
		for _, w := range st.Writes {
			if prev, ok := written[w]; ok && prev != st.Name {
				bad("topic %s is written by stages %s and %s", w, prev, st.Name)
			}
			written[w] = st.Name
		}
		if st.Store == "" {
			bad("stage %s has no store changelog", st.Name)
		} else {
			if prev, ok := stores[st.Store]; ok {
				bad("store %s is shared by stages %s and %s", st.Store, prev, st.Name)
			}
			stores[st.Store] = st.Name
		}
	}
	for _, st := range t.Stages {
		for _, in := range st.Inputs {
			if prev, ok := consumed[in]; ok {
				if prev == st.Name {
					bad("stage %s consumes %s twice", st.Name, in)
				} else {
					bad("topic %s is consumed twice (stages %s and %s)", in, prev, st.Name)
				}
				continue
			}
			consumed[in] = st.Name
			if !sources[in] && written[in] == "" {
				bad("stage %s consumes unknown topic %s (not a source, not written by a stage)", st.Name, in)
			}
		}
	}
	for _, st := range t.Stages {
		for _, w := range st.Writes {
			if !outputs[w] && consumed[w] == "" {
				bad("stage %s writes %s, which is neither a declared output nor consumed by a stage", st.Name, w)
			}
			if sources[w] {
				bad("stage %s writes source topic %s", st.Name, w)
			}
		}
	}
	for _, s := range t.Sources {
		if consumed[s] == "" {
			bad("source %s is consumed by no stage", s)
		}
	}
	for _, o := range t.Outputs {
		if written[o] == "" {
			bad("output %s is written by no stage", o)
		}
	}
	for _, st := range t.Stages {
		if st.Reroute == "" {
			continue
		}
		if sources[st.Reroute] || outputs[st.Reroute] || written[st.Reroute] != "" || consumed[st.Reroute] != "" ||
			stores[Table(st.Reroute)] != "" || st.Reroute == t.DLQ {
			bad("re-route topic %s of stage %s is also used as a source, output, input, store or DLQ", st.Reroute, st.Name)
		}
	}
	for tb := range stores {
		s := Stream(tb)
		if sources[s] || outputs[s] || written[s] != "" || consumed[s] != "" {
			bad("store changelog %s is also used as a stream", tb)
		}
	}
	if t.DLQ == "" {
		bad("no DLQ topic: poison records would have nowhere to go")
	} else if sources[t.DLQ] || outputs[t.DLQ] || written[t.DLQ] != "" || consumed[t.DLQ] != "" || stores[Table(t.DLQ)] != "" {
		bad("DLQ %s is also used as a source, output or store", t.DLQ)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New("topology: " + strings.Join(problems, "; "))
	}
	return nil
}

// Stage returns the stage with the given name.
func (t Topology) Stage(name string) (StageSpec, bool) {
	for _, st := range t.Stages {
		if st.Name == name {
			return st, true
		}
	}
	return StageSpec{}, false
}

// TopicSpecs lists what the broker must have for stage st: its inputs, writes and the DLQ
// co-partitioned with the store (all written by input partition number), the store compacted.
// kafka.VerifyTopics checks them before the runtime joins the group.
func (st StageSpec) TopicSpecs(dlq Stream) []kafka.TopicSpec {
	var specs []kafka.TopicSpec
	add := func(name string, compacted bool) {
		specs = append(specs, kafka.TopicSpec{Name: name, Compacted: compacted, CoPartitioned: true})
	}
	for _, in := range st.Inputs {
		add(string(in), false)
	}
	add(string(st.Store), true)
	for _, w := range st.Writes {
		add(string(w), false)
	}
	add(string(dlq), false)
	if st.Reroute != "" {
		add(string(st.Reroute), false)
	}
	return specs
}

// HistorySpec names what kafka.CheckTopicHistory checks for stage st run by group: its inputs,
// its store's changelog, and its writes and the DLQ. `retailflow topics accept-changes`
// records the same topics.
func (st StageSpec) HistorySpec(group string, dlq Stream) kafka.HistorySpec {
	h := kafka.HistorySpec{Group: group, Key: st.Name, Changelog: string(st.Store)}
	for _, in := range st.Inputs {
		h.Inputs = append(h.Inputs, string(in))
	}
	for _, w := range st.Writes {
		h.Outputs = append(h.Outputs, string(w))
	}
	h.Outputs = append(h.Outputs, string(dlq))
	return h
}
