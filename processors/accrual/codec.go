package accrual

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/retailflow/retailflow/schemas"
)

// The core's two Avro schemas: its output and its state. The Kafka Streams app reads the same
// files (bench/kstreams/pom.xml) and writes the same bytes.
var (
	//go:embed avro/accrual_command.avsc
	CommandSchema string
	//go:embed avro/accrual_state.avsc
	StateSchema string
)

// CommandSchemaID is the offline schema id of CommandSchema (schemas.OfflineSchemaID: SHA-256
// of its Parsing Canonical Form), written in the Confluent framing of every command.
var CommandSchemaID = mustID(CommandSchema)

func mustID(s string) int {
	id, err := schemas.OfflineSchemaID(s)
	if err != nil {
		panic(fmt.Sprintf("accrual: embedded schema: %v", err))
	}
	return id
}

// AppendCommand appends the Confluent-framed Avro binary of c (CommandSchema).
func AppendCommand(b []byte, c *Command) []byte {
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(CommandSchemaID))
	b = appendString(b, c.RequestID)
	b = appendString(b, string(c.Type))
	b = appendString(b, c.OrderID)
	b = appendString(b, c.MemberID)
	b = appendString(b, c.CausingEventID)
	b = appendLong(b, c.Points)
	b = appendLong(b, c.EntitledPoints)
	return appendLong(b, c.RequestedAt)
}

// DecodeCommand reads what AppendCommand wrote.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 5 || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != CommandSchemaID {
		return Command{}, errors.New("accrual: command value is not framed with the command schema id")
	}
	r := reader{b: b[5:]}
	c := Command{RequestID: r.str(), Type: schemas.EventType(r.str()), OrderID: r.str(), MemberID: r.str(), CausingEventID: r.str(),
		Points: r.long(), EntitledPoints: r.long(), RequestedAt: r.long()}
	return c, r.done("command")
}

// EncodeState is the Avro binary of s (StateSchema), unframed: the changelog is the stage's own.
func EncodeState(s State) []byte {
	b := make([]byte, 0, stateSize(s))
	b = appendString(b, s.OrderID)
	if s.Order == nil {
		b = appendLong(b, 0)
	} else {
		o := s.Order
		b = appendLong(b, 1)
		b = appendString(b, o.MemberID)
		b = appendLong(b, int64(o.EarnRate))
		b = appendLong(b, int64(o.Multiplier))
		b = appendBool(b, o.CancelAll)
		b = appendLong(b, int64(len(o.Lines)))
		for _, l := range o.Lines {
			b = appendString(b, l.ID)
			b = appendLong(b, int64(l.Ordered))
			b = appendLong(b, int64(l.Eligible))
			b = appendLong(b, int64(l.Shipped))
			b = appendLong(b, int64(l.Returned))
			b = appendLong(b, int64(l.CancelRequested))
		}
		b = appendArrayEnd(b, len(o.Lines))
	}
	b = appendLong(b, int64(len(s.Seen)))
	for _, id := range s.Seen {
		b = appendString(b, id)
	}
	b = appendArrayEnd(b, len(s.Seen))
	b = appendMoves(b, s.Held)
	b = appendMoves(b, s.Waiting)
	return appendLong(b, s.Requested)
}

// stateSize bounds EncodeState's output from above (a varint is at most 10 bytes), so that it
// allocates once.
func stateSize(s State) int {
	const v = 10
	n := 9*v + len(s.OrderID)
	if o := s.Order; o != nil {
		n += 6*v + len(o.MemberID)
		for _, l := range o.Lines {
			n += 6*v + len(l.ID)
		}
	}
	for _, id := range s.Seen {
		n += v + len(id)
	}
	for _, ms := range [][]Move{s.Held, s.Waiting} {
		for _, m := range ms {
			n += 7*v + len(m.EventID)
			for _, l := range m.Lines {
				n += 2*v + len(l.LineID)
			}
		}
	}
	return n
}

func appendMoves(b []byte, ms []Move) []byte {
	b = appendLong(b, int64(len(ms)))
	for _, m := range ms {
		b = appendString(b, m.EventID)
		b = appendLong(b, int64(m.Kind))
		b = appendLong(b, m.OccurredAt)
		b = appendBool(b, m.Reship)
		b = appendBool(b, m.CancelAll)
		b = appendLong(b, int64(len(m.Lines)))
		for _, l := range m.Lines {
			b = appendString(b, l.LineID)
			b = appendLong(b, int64(l.Qty))
		}
		b = appendArrayEnd(b, len(m.Lines))
	}
	return appendArrayEnd(b, len(ms))
}

// DecodeState reads what EncodeState (or any Avro writer of StateSchema) wrote.
func DecodeState(b []byte) (State, error) {
	r := reader{b: b}
	var s State
	s.OrderID = r.str()
	switch r.long() {
	case 0:
	case 1:
		o := &Order{MemberID: r.str(), EarnRate: Rate(r.long()), Multiplier: Rate(r.long()), CancelAll: r.bool()}
		r.array(func() {
			o.Lines = append(o.Lines, Line{ID: r.str(), Ordered: Qty(r.long()), Eligible: Money(r.long()),
				Shipped: Qty(r.long()), Returned: Qty(r.long()), CancelRequested: Qty(r.long())})
		})
		s.Order = o
	default:
		r.fail("order union branch")
	}
	r.array(func() { s.Seen = append(s.Seen, r.str()) })
	s.Held = r.moves()
	s.Waiting = r.moves()
	s.Requested = r.long()
	return s, r.done("state")
}

func (r *reader) moves() []Move {
	var ms []Move
	r.array(func() {
		m := Move{EventID: r.str(), Kind: Kind(r.long()), OccurredAt: r.long(), Reship: r.bool(), CancelAll: r.bool()}
		r.array(func() { m.Lines = append(m.Lines, MoveLine{LineID: r.str(), Qty: Qty(r.long())}) })
		ms = append(ms, m)
	})
	return ms
}

// Avro binary: zig-zag varint longs, length-prefixed strings, arrays as blocks ending in 0.

func appendLong(b []byte, v int64) []byte { return binary.AppendUvarint(b, uint64(v<<1^v>>63)) }

func appendString(b []byte, s string) []byte { return append(appendLong(b, int64(len(s))), s...) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendArrayEnd closes an array: a non-empty array's one block is followed by the 0 block.
func appendArrayEnd(b []byte, n int) []byte {
	if n == 0 {
		return b // the count 0 already written is the end
	}
	return append(b, 0)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("accrual: bad Avro (%s)", what)
	}
	r.b = nil
}

func (r *reader) long() int64 {
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("long")
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) str() string {
	n := r.long()
	if n < 0 || n > int64(len(r.b)) {
		r.fail("string length")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail("boolean")
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

// array reads blocks until the 0 block, calling item for each item (a negative count is
// followed by the block's byte size, which is skipped).
func (r *reader) array(item func()) {
	for r.err == nil {
		n := r.long()
		if n == 0 {
			return
		}
		if n < 0 {
			if n == math.MinInt64 {
				r.fail("block count")
				return
			}
			n = -n
			r.long()
		}
		if n > int64(len(r.b)) {
			r.fail("block count")
			return
		}
		for i := int64(0); i < n && r.err == nil; i++ {
			item()
		}
	}
}

func (r *reader) done(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("accrual: %d bytes after the %s", len(r.b), what)
	}
	if r.err != nil {
		return fmt.Errorf("%w in the %s", r.err, what)
	}
	return nil
}
