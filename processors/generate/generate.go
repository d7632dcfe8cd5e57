// Package generate produces realistic, deterministic retail traffic for retailflow's five input
// topics — orders, shipments, returns, loyalty and ERP — with controllable delivery faults
// (duplicates, out-of-order, late, malformed records) and downstream faults (withheld or wrong
// ERP documents and loyalty postings) so that every reconciliation view has something true to
// find. The same Options (seed included) always give byte-identical traffic.
//
// The loyalty platform's postings answer the commands the pipeline will emit; which commands
// those are is computed by processors/oracle from the generated OMS events.
package generate

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// UnknownSchemaID is the schema id malformed records of class MalformedUnknownSchema carry.
const UnknownSchemaID = 0x7ffffff0

// Record is one record of the generated stream, in delivery order.
//
// A valid record has Event set and Malformed empty. A malformed record has Malformed (the reason)
// and Class set and either Raw (bytes to send as the value, as they are: class
// schemas.ClassBadHeader or schemas.ClassUnknownSchema) or Event (to encode normally: the
// content breaks a stateless rule, class schemas.ClassInvalid).
type Record struct {
	Topic     schemas.Topic
	Key       string // order_id ("checkout:<id>" for a reservation that never became an order)
	Event     *schemas.Event
	Raw       []byte
	Malformed string
	Class     schemas.ErrorClass // the DLQ error class the pipeline must record
	At        time.Time          // simulated delivery time; Records are sorted by (At, creation)
	Duplicate bool               // a re-sent copy of an earlier record (same event id)
}

// OrderFacts is the generator's ground truth about one order.
type OrderFacts struct {
	OrderID  string
	MemberID string // "" for a guest order
	Faults   []Fault
}

// DeadLetter is a record that must end in the DLQ.
type DeadLetter struct {
	Topic   schemas.Topic
	Key     string
	EventID string // "" when the bytes carry none (not Avro, unknown schema)
	Class   schemas.ErrorClass
	Reason  string
}

// Traffic is the output of Generate.
type Traffic struct {
	Options Options // with defaults applied
	Records []Record
	Orders  []OrderFacts
	// End is the latest business or publish time in the traffic; views are complete at any
	// time after End + the reconciliation grace.
	End time.Time
}

// Events returns every valid event once (duplicates and malformed records left out), in
// delivery order: the input of oracle.Compute.
func (t *Traffic) Events() []schemas.Event {
	out := make([]schemas.Event, 0, len(t.Records))
	seen := make(map[string]bool, len(t.Records))
	for _, r := range t.Records {
		if r.Malformed != "" || r.Event == nil || seen[r.Event.EventID] {
			continue
		}
		seen[r.Event.EventID] = true
		out = append(out, *r.Event)
	}
	return out
}

// DeadLetters lists the records that must end in the DLQ, in delivery order.
func (t *Traffic) DeadLetters() []DeadLetter {
	var out []DeadLetter
	for _, r := range t.Records {
		if r.Malformed == "" {
			continue
		}
		d := DeadLetter{Topic: r.Topic, Key: r.Key, Class: r.Class, Reason: r.Malformed}
		if r.Event != nil {
			d.EventID = r.Event.EventID
		}
		out = append(out, d)
	}
	return out
}

// Faults maps each order to the faults applied to it (orders without faults are absent).
func (t *Traffic) Faults() map[string][]Fault {
	out := map[string][]Fault{}
	for _, o := range t.Orders {
		if len(o.Faults) > 0 {
			out[o.OrderID] = o.Faults
		}
	}
	return out
}

// Expected runs the oracle over the valid events, with views evaluated at asOf.
func (t *Traffic) Expected(asOf time.Time) *oracle.Expected {
	return oracle.Compute(t.Events(), t.Options.Policy, asOf)
}

// topicOf is the topic that carries an event type.
func topicOf(t schemas.EventType) schemas.Topic {
	topic, ok := schemas.TopicOf(t)
	if !ok {
		panic(fmt.Sprintf("generate: event type %q has no topic", t)) // a bug in this package
	}
	return topic
}

// Generate produces the traffic opts describe. It is deterministic: the same opts give the same
// Records, byte for byte once encoded.
func Generate(opts Options) (*Traffic, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	g := &generator{opts: opts, tag: seedTag(opts.Seed)}
	g.members = g.memberPool()
	tr := &Traffic{Options: opts}
	gens := make([]*orderGen, opts.Orders)
	for i := range opts.Orders {
		og := g.order(i)
		og.build()
		gens[i] = og
		tr.Orders = append(tr.Orders, OrderFacts{OrderID: og.orderID, MemberID: og.memberID, Faults: og.faults})
	}
	// The loyalty platform activates pending points whose lock ended before the traffic ends.
	for _, og := range gens {
		for _, ev := range append(og.events, og.extra...) {
			tr.End = maxTime(tr.End, ev.ev.OccurredAt)
		}
	}
	for _, og := range gens {
		og.activate(tr.End)
	}
	size := 0
	for _, og := range gens {
		size += len(og.events) + 2
	}
	g.records = make([]seqRecord, 0, size+size/8)
	seq := 0
	for _, og := range gens {
		for _, r := range og.deliver() {
			r.seq = seq
			seq++
			g.records = append(g.records, r)
		}
	}
	sort.SliceStable(g.records, func(i, j int) bool {
		a, b := g.records[i], g.records[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		return a.seq < b.seq
	})
	tr.Records = make([]Record, len(g.records))
	for i, r := range g.records {
		tr.Records[i] = r.Record
		tr.End = maxTime(tr.End, r.At)
	}
	return tr, nil
}

type generator struct {
	opts    Options
	tag     string
	members []member
	records []seqRecord
}

type seqRecord struct {
	Record
	seq int
}

type member struct {
	id   string
	tier tier
}

// memberPool is a fixed set of members so that members place several orders.
func (g *generator) memberPool() []member {
	n := max(20, g.opts.Orders/3)
	r := rand.New(rand.NewPCG(g.opts.Seed, 0x6d656d62657273))
	out := make([]member, n)
	for i := range out {
		out[i] = member{id: fmt.Sprintf("M-%s-%06d", g.tag, i+1), tier: pickTier(r)}
	}
	return out
}

func pickTier(r *rand.Rand) tier {
	n := r.IntN(100)
	for _, t := range tiers {
		if n < t.weight {
			return t
		}
		n -= t.weight
	}
	return tiers[0]
}

// seedTag is a short id prefix from the seed, so traffic of different seeds never collides.
func seedTag(seed uint64) string {
	const alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	x := seed*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	x ^= x >> 31
	b := make([]byte, 4)
	for i := range b {
		b[i] = alphabet[x%uint64(len(alphabet))]
		x /= uint64(len(alphabet))
	}
	return string(b)
}

// uuid4 formats 16 random bytes as a version-4 UUID.
func uuid4(r *rand.Rand) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.Uint64())
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
