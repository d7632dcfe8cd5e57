package e2e

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/retailflow/retailflow/topology"
)

// Record is an output record with its coordinates and headers.
type Record struct {
	Key, Value []byte
	Headers    map[string]string
	Partition  int32
	Offset     int64
	ProducerID int64
}

// Source is the input coordinates the record names (topic/partition@offset).
func (r Record) Source() string {
	return r.Headers[headers.SourceTopic] + "/" + r.Headers[headers.SourcePartition] + "@" + r.Headers[headers.SourceOffset]
}

// Read reads a whole topic with kafka.ReadToEnd, up to LSO = HWM (callers read once the
// processes have stopped or WaitNoOpenTransactions has passed), read_committed unless
// uncommitted.
func (p *Pipeline) Read(topic string, uncommitted bool) ([]Record, error) {
	ctx, cancel := context.WithTimeout(p.Ctx, 2*time.Minute)
	defer cancel()
	var out []Record
	err := kafka.ReadToEnd(ctx, p.Conn, topic, kafka.ReadOptions{Until: kafka.EndQuiescent, Uncommitted: uncommitted,
		ClientOpts: []kgo.Opt{kgo.FetchMaxPartitionBytes(4 << 20)}}, func(r *kgo.Record) error {
		hs := make(map[string]string, len(r.Headers))
		for _, x := range r.Headers {
			hs[x.Key] = string(x.Value)
		}
		out = append(out, Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), Headers: hs,
			Partition: r.Partition, Offset: r.Offset, ProducerID: r.ProducerID})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, err)
	}
	return out, nil
}

// Outputs is the committed content of the pipeline's three outputs.
type Outputs struct {
	Commands, DLQ, Changelog []Record
	// with ReadOutputs(true): data records on the three outputs read_uncommitted, and the aborted
	// ones (seen read_uncommitted only) per producer id
	Uncommitted int
	AbortedBy   map[int64]int
}

// ReadOutputs reads the three outputs read_committed and, with aborted, read_uncommitted too.
func (p *Pipeline) ReadOutputs(aborted bool) (Outputs, error) {
	o := Outputs{AbortedBy: map[int64]int{}}
	var err error
	for _, x := range []struct {
		tp  schemas.Topic
		dst *[]Record
	}{{schemas.TopicCommands, &o.Commands}, {schemas.TopicDLQ, &o.DLQ}, {schemas.TopicChangelog, &o.Changelog}} {
		if *x.dst, err = p.Read(p.Names[x.tp], false); err != nil {
			return o, err
		}
		if !aborted {
			continue
		}
		unc, err := p.Read(p.Names[x.tp], true)
		if err != nil {
			return o, err
		}
		o.Uncommitted += len(unc)
		committed := map[[2]int64]bool{}
		for _, r := range *x.dst {
			committed[[2]int64{int64(r.Partition), r.Offset}] = true
		}
		for _, r := range unc {
			if !committed[[2]int64{int64(r.Partition), r.Offset}] {
				o.AbortedBy[r.ProducerID]++
			}
		}
	}
	return o, nil
}

// Verdict is what the oracles found (cumulative over all traffic checked).
type Verdict struct {
	Lost           int // expected effects missing: commands, applied events, dead letters
	Duplicated     int // effects present twice: request ids, source coordinates (and rows, for a suite that checks them)
	DLQUnexplained int // DLQ records whose source was not sent as malformed
	StateMismatch  int // orders whose changelog-restored state differs from the oracle
	Evicted        int // evictions by the sweep (each life compared by the state its tombstone replaced; not a problem)
	Problems       []string
}

// Problem records a finding (the first 12; then one line saying more were left out).
func (v *Verdict) Problem(format string, args ...any) {
	if len(v.Problems) < 12 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	} else if len(v.Problems) == 12 {
		v.Problems = append(v.Problems, "… (more problems left out)")
	}
}

// OK: nothing lost, duplicated, unexplained or mismatched, no problem.
func (v *Verdict) OK() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.DLQUnexplained == 0 && v.StateMismatch == 0 && len(v.Problems) == 0
}

// Checked is what Check derived that a suite may check further.
type Checked struct {
	// Gross is the points of the commands in Kafka by type (accrual, reversal, refund), first
	// emission of each request id; corrections change it, so only the sink is held to it.
	Gross [3]int64
	// Issued is the commands in Kafka (first emission of each request id).
	Issued []oracle.Command
	// States is every order's state restored from the changelog, by record key (nil when the
	// restore failed); an order the sweep evicted is there with the state its tombstone
	// replaced, and each earlier evicted incarnation of a key under "<key>\x00evicted-<i>".
	States map[string]*ledgerstate.State
}

// Check runs the oracles every suite shares over everything sent so far: all is the generated
// records sent (in order), ex the oracle's expectation for them, sent and bySource what the
// Producer recorded, out the outputs read.
func (p *Pipeline) Check(v *Verdict, all []generate.Record, ex *oracle.Expected, sent []Sent, bySource map[string]int, out Outputs) Checked {
	var c Checked
	// the runtime keys state by record key; the oracle groups by order (a reservation that never
	// became an order travels under "checkout:<id>")
	keyOf, idOf := map[string]string{}, map[string]string{}
	for _, r := range all {
		if r.Event != nil && r.Malformed == "" {
			id := oracle.OrderKey(r.Event)
			keyOf[id], idOf[r.Key] = r.Key, id
		}
	}
	lives := p.readLives(v)
	exLives, split := splitByLife(v, all, ex, lives, idOf)
	c.Gross, c.Issued = p.checkCommands(v, exLives, out.Commands)
	dlqEvents := checkDLQ(v, sent, bySource, out.DLQ)
	if lives != nil {
		c.States = checkState(v, ex, lives, split, keyOf)
	}
	checkEvents(v, sent, c.States, dlqEvents)
	return c
}

// checkCommands: every oracle request id, each once, each from its own source coordinates and
// output sequence; besides them only corrections for late events (causing id
// "<late>/<corrected>", DESIGN.md invariant 13); per point-moving event (order, reason, source
// ref) exactly the oracle's share of points and refunds over the commands that carry it (a late
// event changes the points of individual commands, never a share); and per order the oracle's
// net points and refunds.
func (p *Pipeline) checkCommands(v *Verdict, ex *oracle.Expected, recs []Record) ([3]int64, []oracle.Command) {
	var gross [3]int64
	var issued []oracle.Command
	got := map[string]int{}
	perOrder := map[string][3]int64{} // accrual, reversal, refund points
	sources := map[string]int{}
	corrections := map[string]bool{}
	type shareKey struct{ order, reason, ref string }
	shares, want := map[shareKey][2]int64{}, map[shareKey][2]int64{} // points (accruals − reversals), refunds
	addShare := func(m map[shareKey][2]int64, order, reason, ref string, typ schemas.EventType, points int64) {
		k := shareKey{order, reason, ref}
		sh := m[k]
		switch typ {
		case schemas.TypeAccrualRequested:
			sh[0] += points
		case schemas.TypeReversalRequested:
			sh[0] -= points
		case schemas.TypeRedemptionRefundRequested:
			sh[1] += points
		}
		m[k] = sh
	}
	for _, r := range recs {
		e, err := p.Serde.DecodeEvent(p.Ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.Partition, Offset: r.Offset}, r.Value)
		if err != nil || e.LoyaltyCommand == nil {
			v.Problem("command at %d@%d does not decode: %v", r.Partition, r.Offset, err)
			continue
		}
		c := e.LoyaltyCommand
		got[c.RequestID]++
		sources[r.Source()+"#"+r.Headers[headers.OutputSeq]]++
		if got[c.RequestID] > 1 {
			continue
		}
		s := perOrder[c.OrderID]
		switch c.CommandType {
		case schemas.TypeAccrualRequested:
			s[0] += c.Points
		case schemas.TypeReversalRequested:
			s[1] += c.Points
		case schemas.TypeRedemptionRefundRequested:
			s[2] += c.Points
		}
		perOrder[c.OrderID] = s
		addShare(shares, c.OrderID, c.Reason, c.SourceRefID, c.CommandType, c.Points)
		if strings.Contains(c.CausingEventID, "/") {
			corrections[c.RequestID] = true
		}
		issued = append(issued, oracle.Command{RequestID: c.RequestID, Type: c.CommandType, OrderID: c.OrderID, Points: c.Points,
			CausingEventID: c.CausingEventID, SourceRefID: c.SourceRefID, Reason: c.Reason, BasisAmount: c.BasisAmount})
	}
	for _, c := range ex.Commands {
		addShare(want, c.OrderID, c.Reason, c.SourceRefID, c.Type, c.Points)
	}
	for k, sh := range shares {
		if sh != want[k] {
			v.Problem("order %s %s %s: share (points, refund) %v in commands, oracle %v", k.order, k.reason, k.ref, sh, want[k])
		}
	}
	for k, sh := range want {
		if _, ok := shares[k]; !ok && sh != ([2]int64{}) {
			v.Problem("order %s %s %s: no command carries the oracle's share %v", k.order, k.reason, k.ref, sh)
		}
	}
	for _, s := range perOrder {
		for i := range gross {
			gross[i] += s[i]
		}
	}
	for id, c := range ex.Commands {
		if got[id] == 0 {
			v.Lost++
			v.Problem("missing command %s (%s, order %s, cause %s)", id, c.Type, c.OrderID, c.CausingEventID)
		}
	}
	for id, n := range got {
		if n > 1 {
			v.Duplicated += n - 1
			v.Problem("command %s emitted %d times", id, n)
		}
		if _, ok := ex.Commands[id]; !ok && !corrections[id] {
			v.Problem("command %s is neither in the oracle's set nor a correction", id)
		}
	}
	for src, n := range sources {
		if n > 1 {
			v.Duplicated += n - 1
			v.Problem("source %s produced %d commands with one output sequence number", src, n)
		}
	}
	for id, o := range ex.Orders {
		s := perOrder[id]
		if s[0]-s[1] != o.RequestedNet() || s[2] != o.RefundRequested {
			v.Problem("order %s: net points %d refunds %d in commands, oracle %d and %d", id, s[0]-s[1], s[2], o.RequestedNet(), o.RefundRequested)
		}
	}
	return gross, issued
}

// checkDLQ maps every dead letter back to the record sent (by its source coordinates): each
// malformed record exactly once with its class, nothing else. It returns the event ids of the
// dead-lettered records.
func checkDLQ(v *Verdict, sent []Sent, bySource map[string]int, recs []Record) map[string]bool {
	events := map[string]bool{}
	seen := map[int]int{}
	for _, r := range recs {
		idx, ok := bySource[r.Source()]
		if !ok {
			v.DLQUnexplained++
			v.Problem("dead letter from %s: no such record was sent", r.Source())
			continue
		}
		s := sent[idx]
		seen[idx]++
		if seen[idx] > 1 {
			v.Duplicated++
			v.Problem("dead letter from %s is in the DLQ %d times", r.Source(), seen[idx])
			continue
		}
		if !s.Malformed {
			v.DLQUnexplained++
			v.Problem("dead letter from %s (event %s, class %s: %s) was a valid record", r.Source(), s.EventID,
				r.Headers[headers.ErrorClassKey], r.Headers[headers.ErrorMessage])
			continue
		}
		// An oversized record's dead letter cannot carry its value: the broker refuses the first
		// DLQ copy, the transaction aborts, and the retry dead-letters it as output-rejected
		// without the value (topology.Runner's contract).
		want := string(s.Class)
		if s.Oversized {
			want = string(headers.ClassOutputRejected)
			if r.Headers[headers.ValueDropped] != "true" {
				v.Problem("dead letter of the oversized record %s has no %s header", r.Source(), headers.ValueDropped)
			}
		}
		if got := r.Headers[headers.ErrorClassKey]; got != want {
			v.Problem("dead letter from %s has class %q, want %q", r.Source(), got, want)
		}
		if s.EventID != "" {
			events[s.EventID] = true
		}
	}
	for idx, s := range sent {
		if s.Malformed && seen[idx] == 0 {
			v.Lost++
			v.Problem("malformed record %s/%d@%d (class %s) is not in the DLQ", s.Topic, s.Partition, s.Offset, s.Class)
		}
	}
	return events
}

// life is one incarnation of a key in the changelog: the state a tombstone replaced, or the
// key's live state.
type life struct {
	state *ledgerstate.State
	// swept: a tombstone of the sweep's replaced state (headers.Evicted; a tombstone without it
	// is the ledger's own clock evicting the order, orderledger.Evictable); evictedAt: the
	// stream time the sweep's tombstone carries (unix nanoseconds)
	swept     bool
	evictedAt int64
	// the life's first state and the stream time its changelog record carries (a life after
	// the first: the state the re-creating events made, as the stream time stood when they
	// were committed)
	first           *ledgerstate.State
	firstStreamTime int64
}

// readLives restores the ledger from the changelog alone, as a fresh instance would, keeping
// every incarnation of a key: an order evicted (a tombstone: the sweep's, headers.Evicted, or
// the ledger's own clock) is kept as the state its tombstone replaced (the test's changelog is
// not compacted that far); a sweep's eviction must have been due at its tombstone's stream
// time. An event that arrives after its order's eviction (later than the allowed lateness, as
// retention allows) starts a new life under the same key.
func (p *Pipeline) readLives(v *Verdict) map[string][]life {
	type rec struct {
		value []byte
		st    int64 // rf.stream-time
	}
	type ended struct {
		l           life // states still to decode from last and first
		last, first rec
	}
	type seq struct {
		ended []ended
		cur   *rec // the live value
		first *rec // the current life's first value
	}
	keys := map[string]*seq{}
	streamTime := func(hs []kgo.RecordHeader) int64 {
		for _, h := range hs {
			if h.Key == headers.StreamTime {
				n, _ := strconv.ParseInt(string(h.Value), 10, 64)
				return n
			}
		}
		return 0
	}
	err := kafka.ReadToEnd(p.Ctx, p.Conn, p.Names[schemas.TopicChangelog], kafka.ReadOptions{Partitions: p.AllPartitions(), Until: kafka.EndQuiescent}, func(r *kgo.Record) error {
		k := string(r.Key)
		sq := keys[k]
		if sq == nil {
			sq = &seq{}
			keys[k] = sq
		}
		if r.Value != nil {
			c := &rec{append([]byte(nil), r.Value...), streamTime(r.Headers)}
			if sq.cur == nil {
				sq.first = c
			}
			sq.cur = c
			return nil
		}
		if sq.cur == nil {
			v.Problem("tombstone of %s at %d/%d without a state before it", k, r.Partition, r.Offset)
			return nil
		}
		var l life
		for _, h := range r.Headers {
			if h.Key == headers.Evicted {
				l.swept = true
			}
		}
		if l.swept {
			if l.evictedAt = streamTime(r.Headers); l.evictedAt <= 0 {
				v.Problem("sweep tombstone of %s at %d/%d has no %s header", k, r.Partition, r.Offset, headers.StreamTime)
			}
		}
		sq.ended = append(sq.ended, ended{l, *sq.cur, *sq.first})
		sq.cur, sq.first = nil, nil
		return nil
	})
	if err != nil {
		v.Problem("restore the changelog: %v", err)
		return nil
	}
	decode := func(k string, b []byte) *ledgerstate.State {
		st, err := ledgerstate.Decode(p.Ctx, p.Serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: -1}, b)
		if err != nil {
			v.StateMismatch++
			v.Problem("state of %s does not decode: %v", k, err)
		}
		return st
	}
	lives := map[string][]life{}
	for k, sq := range keys {
		add := func(l life, last, first rec) {
			if l.state = decode(k, last.value); l.state == nil {
				return
			}
			if l.first = decode(k, first.value); l.first == nil {
				return
			}
			l.firstStreamTime = first.st
			lives[k] = append(lives[k], l)
		}
		for _, e := range sq.ended {
			add(e.l, e.last, e.first)
		}
		if sq.cur != nil {
			add(life{}, *sq.cur, *sq.first)
		}
		for _, l := range lives[k] {
			if !l.swept {
				continue
			}
			at, ok := ledger.FromState(*l.state).ExpiresAt(ledger.DefaultPolicy()) // `run`'s default policy
			if !ok || at.UnixNano() > l.evictedAt-int64(topology.DefaultAllowedLateness) {
				v.Problem("order %s evicted at stream time %s but due at %s (due: %v)", k, time.Unix(0, l.evictedAt).UTC(), at, ok)
			}
			v.Evicted++
		}
	}
	return lives
}

// splitByLife is the oracle for keys with more than one life. The runtime evicted such an order
// and a later event re-created it, which DESIGN.md allows, after the sweep's eviction, only for
// an event later than the allowed lateness behind its partition: the events of a new life's
// first state must have occurred before the stream time they were committed at − the lateness
// (checkLate). An event may be applied in no more lives than it was sent copies (an evicted order
// has no memory of its events; more lives is a duplicate effect). Each life is
// held to the oracle's fold of its own events (the same rules, ex.Policy and ex.AsOf), and the
// commands expected of the order are those of its lives, not of the whole order folded at once.
// It returns the oracle's truth per life of each such key and ex with those orders' commands and
// nets replaced.
func splitByLife(v *Verdict, all []generate.Record, ex *oracle.Expected, lives map[string][]life, idOf map[string]string) (*oracle.Expected, map[string][]*oracle.OrderTruth) {
	events := map[string]*schemas.Event{}
	copies := map[string]int{} // valid records sent per event id (duplicates are sent again)
	for i := range all {
		if e := all[i].Event; e != nil && all[i].Malformed == "" {
			events[e.EventID] = e
			copies[e.EventID]++
		}
	}
	split := map[string][]*oracle.OrderTruth{}
	adjusted := *ex
	for k, ls := range lives {
		if len(ls) < 2 {
			continue
		}
		if len(split) == 0 {
			adjusted.Orders, adjusted.Commands = maps.Clone(ex.Orders), maps.Clone(ex.Commands)
		}
		id := idOf[k]
		if id == "" {
			id = k
		}
		if o := ex.Orders[id]; o != nil {
			for _, rid := range o.Commands {
				delete(adjusted.Commands, rid)
			}
		}
		net := &oracle.OrderTruth{OrderID: id}
		lives := map[string]int{} // lives each event was applied in
		for i, l := range ls {
			var mine []schemas.Event
			for eid := range eventIDs(l.state) {
				// An evicted order keeps no memory of its events: a copy of one delivered after the
				// eviction (a duplicate the producer sent) is applied again in the new life, which
				// DESIGN.md's retention rule allows. More lives than copies sent is a state that
				// outlived its eviction (a "stale resurrection").
				if lives[eid]++; lives[eid] > copies[eid] {
					v.Duplicated++
					v.Problem("order %s: event %s applied in %d lives, sent %d times", k, eid, lives[eid], copies[eid])
				}
				e, ok := events[eid]
				if !ok {
					v.Problem("order %s: life %d applied event %s, which was not sent valid", k, i+1, eid)
					continue
				}
				mine = append(mine, *e)
			}
			// The events that re-created an order the sweep evicted — its new life's first state —
			// must be later than the allowed lateness behind the stream time they were committed
			// at (which bounds the stream time at their arrival from above; that time is at least
			// the eviction's). Events that joined the new life afterwards met a live order.
			if i > 0 && ls[i-1].swept {
				for eid := range eventIDs(l.first) {
					checkLate(v, k, eid, events, l.firstStreamTime)
				}
			}
			part := oracle.Compute(mine, ex.Policy, ex.AsOf)
			t := part.Orders[id]
			if t == nil {
				t = &oracle.OrderTruth{OrderID: id}
			}
			split[k] = append(split[k], t)
			maps.Copy(adjusted.Commands, part.Commands)
			net.AccrualRequested += t.AccrualRequested
			net.ReversalRequested += t.ReversalRequested
			net.RefundRequested += t.RefundRequested
		}
		adjusted.Orders[id] = net
	}
	return &adjusted, split
}

// eventIDs is the set of events a state has applied (Seen) or holds (Held).
func eventIDs(st *ledgerstate.State) map[string]bool {
	ids := make(map[string]bool, len(st.Seen)+len(st.Held))
	for _, s := range st.Seen {
		ids[s.EventID] = true
	}
	for _, h := range st.Held {
		ids[h.EventID] = true
	}
	return ids
}

// checkLate reports an event that re-created an evicted order although it was not later than
// the allowed lateness behind the stream time st (unix nanoseconds) it was committed at.
func checkLate(v *Verdict, key, eid string, events map[string]*schemas.Event, st int64) {
	e, ok := events[eid]
	if !ok {
		return // reported by the caller
	}
	if st <= 0 || e.OccurredAt.UnixNano() >= st-int64(topology.DefaultAllowedLateness) {
		v.Problem("order %s: event %s (occurred %s) re-created the order evicted by the sweep within the allowed lateness of stream time %s",
			key, eid, e.OccurredAt.UTC(), time.Unix(0, st).UTC())
	}
}

// checkState compares every order's state restored from the changelog with the oracle: points
// (P, requested, refunds, posted), the basis B (money, HALF_EVEN to 4 dp on both sides) and the
// set of request ids; an order with more than one life (splitByLife) life by life. It returns
// the states by record key, an earlier life of a key under "<key>\x00evicted-<i>".
func checkState(v *Verdict, ex *oracle.Expected, lives map[string][]life, split map[string][]*oracle.OrderTruth, keyOf map[string]string) map[string]*ledgerstate.State {
	states := map[string]*ledgerstate.State{}
	for k, ls := range lives {
		for i, l := range ls[:len(ls)-1] {
			states[fmt.Sprintf("%s\x00evicted-%d", k, i)] = l.state
		}
		states[k] = ls[len(ls)-1].state
	}
	for id, o := range ex.Orders {
		key := id
		if k, ok := keyOf[id]; ok {
			key = k
		}
		ls, ok := lives[key]
		if !ok {
			v.StateMismatch++
			var some []string
			for k := range lives {
				if _, ok := ex.Orders[k]; !ok && len(some) < 5 {
					some = append(some, k)
				}
			}
			v.Problem("order %s has no state in the changelog (changelog keys the oracle lacks: %v)", id, some)
			continue
		}
		if truths, ok := split[key]; ok {
			for i, t := range truths {
				compareState(v, fmt.Sprintf("%s (life %d of %d)", id, i+1, len(truths)), ls[i].state, t)
			}
			continue
		}
		compareState(v, id, ls[len(ls)-1].state, o)
	}
	return states
}

// compareState holds one state to the oracle's truth: the oracle's request ids, and besides them
// only corrections for late events and the commands they correct (DESIGN.md invariant 13;
// checkCommands holds every share exact).
func compareState(v *Verdict, id string, st *ledgerstate.State, o *oracle.OrderTruth) {
	oracleIDs, corrected := map[string]bool{}, map[string]bool{}
	for _, id := range o.Commands {
		oracleIDs[id] = true
	}
	for _, c := range st.Commands {
		corrected[c.AttributedTo] = c.AttributedTo != ""
	}
	var reqIDs []string
	for _, c := range st.Commands {
		if oracleIDs[c.RequestID] || c.AttributedTo == "" && !corrected[c.CausingEventID] {
			reqIDs = append(reqIDs, c.RequestID)
		}
	}
	want := append([]string(nil), o.Commands...)
	sort.Strings(reqIDs)
	sort.Strings(want)
	pts := st.Points
	if pts.Entitled != o.EntitledPoints || pts.AccrualRequested-pts.ReversalRequested != o.RequestedNet() ||
		pts.RefundRequested != o.RefundRequested || pts.AccrualPosted != o.AccrualPosted || pts.Reversed != o.ReversalPosted ||
		pts.RefundPosted != o.RefundPosted || !pts.Basis.Equal(o.Basis) || strings.Join(reqIDs, ",") != strings.Join(want, ",") {
		v.StateMismatch++
		v.Problem("order %s: restored P=%d net=%d refunds=%d posted=%d/%d/%d B=%s cmds=%d; oracle P=%d net=%d refunds=%d posted=%d/%d/%d B=%s cmds=%d",
			id, pts.Entitled, pts.AccrualRequested-pts.ReversalRequested, pts.RefundRequested, pts.AccrualPosted, pts.Reversed, pts.RefundPosted, pts.Basis, len(reqIDs),
			o.EntitledPoints, o.RequestedNet(), o.RefundRequested, o.AccrualPosted, o.ReversalPosted, o.RefundPosted, o.Basis, len(want))
	}
}

// checkEvents: the exact set of valid event ids sent is the set applied (seen or held by the
// ledger states restored from the changelog); no valid event is dead-lettered, nothing else is
// applied.
func checkEvents(v *Verdict, sent []Sent, states map[string]*ledgerstate.State, dlq map[string]bool) {
	if states == nil {
		return
	}
	applied := map[string]bool{}
	for _, st := range states {
		maps.Copy(applied, eventIDs(st))
	}
	valid := map[string]bool{}
	for _, s := range sent {
		if !s.Malformed && s.EventID != "" {
			valid[s.EventID] = true
		}
	}
	for id := range valid {
		if !applied[id] {
			v.Lost++
			v.Problem("event %s was sent but is neither applied nor held in any order's state", id)
		}
		if dlq[id] {
			v.Problem("event %s is valid but was dead-lettered", id)
		}
	}
	for id := range applied {
		if !valid[id] {
			v.Problem("event %s is applied but was never sent as a valid event", id)
		}
	}
}
