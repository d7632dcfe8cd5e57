package chaostest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
)

// verdict is what the oracles found after one fault segment (cumulative over all traffic sent).
type verdict struct {
	lost           int           // expected effects missing: commands, applied events, dead letters
	duplicated     int           // effects present twice: request ids, source coordinates, ClickHouse rows
	dlqUnexplained int           // DLQ records whose source the generator did not mark malformed
	stateMismatch  int           // orders whose changelog-restored state differs from the oracle
	viewDiffs      int           // ClickHouse view rows missing or unexpected
	aborted        int           // output records only a read_uncommitted consumer sees (aborted writes)
	abortedBy      map[int64]int // the same per producer id, since the start
	problems       []string
}

func (v *verdict) problem(format string, args ...any) {
	if len(v.problems) < 12 {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	} else if len(v.problems) == 12 {
		v.problems = append(v.problems, "… (more problems left out)")
	}
}

func (v *verdict) ok() bool {
	return v.lost == 0 && v.duplicated == 0 && v.dlqUnexplained == 0 && v.stateMismatch == 0 && v.viewDiffs == 0 && len(v.problems) == 0
}

// waitProcessed waits until the processor group's committed offsets reach the end of every input
// partition (O10: lag drains).
func (h *harness) waitProcessed(limit time.Duration) error {
	adm := h.admin()
	defer adm.Close()
	var inputs []string
	for _, tp := range schemas.InputTopics {
		inputs = append(inputs, h.names[tp])
	}
	deadline := time.Now().Add(limit)
	behind := -1
	for time.Now().Before(deadline) {
		ends, err1 := adm.ListEndOffsets(h.ctx, inputs...)
		committed, err2 := adm.FetchOffsets(h.ctx, h.group)
		if err1 == nil && err2 == nil && ends.Error() == nil {
			behind = 0
			ends.Each(func(o kadm.ListedOffset) {
				if c, ok := committed.Lookup(o.Topic, o.Partition); (!ok && o.Offset > 0) || c.At < o.Offset {
					behind++
				}
			})
			if behind == 0 {
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("processor group %s did not catch up within %s (%d input partitions behind)", h.group, limit, behind)
}

// lag is the processor group's total lag on the inputs (−1 if it cannot be read now).
func (h *harness) lag(adm *kadm.Client) int64 {
	lags, err := adm.Lag(h.ctx, h.group)
	if err != nil {
		return -1
	}
	gl, ok := lags[h.group]
	if !ok || gl.Error() != nil {
		return -1
	}
	var n int64
	for _, tp := range schemas.InputTopics {
		for _, l := range gl.Lag[h.names[tp]] {
			n += l.Lag
		}
	}
	return n
}

// waitNoOpenTransactions waits until LSO = HWM on every transactional output partition and none
// of the group's transactional ids is Ongoing (O8).
func (h *harness) waitNoOpenTransactions(limit time.Duration) error {
	adm := h.admin()
	defer adm.Close()
	topics := []string{h.names[schemas.TopicCommands], h.names[schemas.TopicChangelog], h.names[schemas.TopicDLQ]}
	deadline := time.Now().Add(limit)
	var last string
	for {
		last = ""
		hwm, err1 := adm.ListEndOffsets(h.ctx, topics...)
		lso, err2 := adm.ListCommittedOffsets(h.ctx, topics...)
		if err1 != nil || err2 != nil {
			last = fmt.Sprintf("list offsets: %v %v", err1, err2)
		} else {
			hwm.Each(func(o kadm.ListedOffset) {
				if l, _ := lso.Lookup(o.Topic, o.Partition); l.Offset != o.Offset && last == "" {
					last = fmt.Sprintf("%s[%d]: LSO %d < HWM %d", o.Topic, o.Partition, l.Offset, o.Offset)
				}
			})
		}
		if last == "" {
			txns, err := adm.ListTransactions(h.ctx, nil, []string{"Ongoing"})
			if err != nil {
				last = fmt.Sprintf("list transactions: %v", err)
			} else {
				for _, tx := range txns.Sorted() {
					if strings.HasPrefix(tx.TxnID, h.group+"-") && tx.State == "Ongoing" {
						last = "transaction " + tx.TxnID + " is Ongoing"
					}
				}
			}
		}
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("an open transaction after %s: %s", limit, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// outRecord is an output record with its coordinates and headers.
type outRecord struct {
	key, value []byte
	headers    map[string]string
	partition  int32
	offset     int64
	producerID int64
}

func (r outRecord) source() string {
	return r.headers[topology.HeaderSourceTopic] + "/" + r.headers[topology.HeaderSourcePartition] + "@" + r.headers[topology.HeaderSourceOffset]
}

// readTopic reads a topic from the start to its high watermark with the given isolation level.
// With read_committed it must only be called once no transaction is open (the LSO is the HWM).
func (h *harness) readTopic(topic string, committed bool) ([]outRecord, error) {
	adm := h.admin()
	ends, err := adm.ListEndOffsets(h.ctx, topic)
	adm.Close()
	if err != nil {
		return nil, err
	}
	last := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			last[o.Partition] = o.Offset - 1
			start[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(last) == 0 {
		return nil, nil
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(append(h.conn.Options(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(), kgo.FetchMaxPartitionBytes(4<<20))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Minute)
	defer cancel()
	var out []outRecord
	for len(last) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading %s: %w (partitions left %v)", topic, ctx.Err(), last)
		}
		fs.EachRecord(func(r *kgo.Record) {
			l, ok := last[r.Partition]
			if !ok || r.Offset > l {
				return
			}
			if !r.Attrs.IsControl() {
				hs := make(map[string]string, len(r.Headers))
				for _, x := range r.Headers {
					hs[x.Key] = string(x.Value)
				}
				out = append(out, outRecord{key: r.Key, value: r.Value, headers: hs, partition: r.Partition, offset: r.Offset, producerID: r.ProducerID})
			}
			if r.Offset >= l {
				delete(last, r.Partition)
			}
		})
	}
	return out, nil
}

// outputs is the committed content of the pipeline's three outputs.
type outputs struct {
	commands, dlq, changelog []outRecord
	uncommitted              int           // data records on the three outputs read_uncommitted
	abortedBy                map[int64]int // aborted data records (read_uncommitted only) per producer id
}

func (h *harness) readOutputs() (outputs, error) {
	o := outputs{abortedBy: map[int64]int{}}
	var err error
	for _, x := range []struct {
		tp  schemas.Topic
		dst *[]outRecord
	}{{schemas.TopicCommands, &o.commands}, {schemas.TopicDLQ, &o.dlq}, {schemas.TopicChangelog, &o.changelog}} {
		if *x.dst, err = h.readTopic(h.names[x.tp], true); err != nil {
			return o, err
		}
		unc, err := h.readTopic(h.names[x.tp], false)
		if err != nil {
			return o, err
		}
		o.uncommitted += len(unc)
		committed := map[[2]int64]bool{}
		for _, r := range *x.dst {
			committed[[2]int64{int64(r.partition), r.offset}] = true
		}
		for _, r := range unc {
			if !committed[[2]int64{int64(r.partition), r.offset}] {
				o.abortedBy[r.producerID]++
			}
		}
	}
	return o, nil
}

// waitSunk waits until the sink group has committed past every input record and every committed
// data record of the outputs (aborted records and markers never reach it).
func (h *harness) waitSunk(out outputs, limit time.Duration) error {
	want := map[string]map[int32]int64{}
	need := func(topic string, p int32, off int64) {
		if want[topic] == nil {
			want[topic] = map[int32]int64{}
		}
		if off > want[topic][p] {
			want[topic][p] = off
		}
	}
	for tp, recs := range map[schemas.Topic][]outRecord{schemas.TopicCommands: out.commands, schemas.TopicDLQ: out.dlq, schemas.TopicChangelog: out.changelog} {
		for _, r := range recs {
			need(h.names[tp], r.partition, r.offset+1)
		}
	}
	adm := h.admin()
	defer adm.Close()
	var inputs []string
	for _, tp := range schemas.InputTopics {
		inputs = append(inputs, h.names[tp])
	}
	ends, err := adm.ListEndOffsets(h.ctx, inputs...)
	if err != nil {
		return err
	}
	ends.Each(func(o kadm.ListedOffset) { need(o.Topic, o.Partition, o.Offset) })
	deadline := time.Now().Add(limit)
	behind := ""
	for time.Now().Before(deadline) {
		committed, err := adm.FetchOffsets(h.ctx, h.sink)
		behind = ""
		if err != nil {
			behind = err.Error()
		} else {
			for topic, ps := range want {
				for p, off := range ps {
					if c, ok := committed.Lookup(topic, p); (!ok && off > 0) || c.At < off {
						behind = fmt.Sprintf("%s[%d] committed %d, want %d", topic, p, c.At, off)
					}
				}
			}
		}
		if behind == "" {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("sink group %s did not catch up within %s: %s", h.sink, limit, behind)
}

// verify runs every oracle over everything sent so far.
func (h *harness) verify(all []generate.Record, policy oracle.Policy, out outputs) verdict {
	var v verdict
	tr := &generate.Traffic{Records: all}
	tr.Options.Policy = policy
	asOf := time.Now()
	ex := tr.Expected(asOf)
	h.mu.Lock()
	sent := append([]sentRecord(nil), h.sent...)
	bySource := make(map[string]int, len(h.bySource))
	for k, i := range h.bySource {
		bySource[k] = i
	}
	h.mu.Unlock()

	gross, issued := h.checkCommands(&v, ex, out.commands)
	dlqEvents := h.checkDLQ(&v, sent, bySource, out.dlq)
	states := h.checkState(&v, all, ex)
	h.checkEvents(&v, sent, states, dlqEvents)
	v.aborted = out.uncommitted - len(out.commands) - len(out.dlq) - len(out.changelog)
	v.abortedBy = out.abortedBy
	// C4 and C5 (POINTS_ON_INELIGIBLE) join postings to commands by request id: they follow the
	// commands the run emitted (their shares are held exact above), not the canonical ones
	// (DESIGN.md invariant 13).
	issuedViews := oracle.ViewsFor(tr.Events(), policy, asOf, issued)
	ex.Views[oracle.ViewReturnsNotInLoyalty] = issuedViews[oracle.ViewReturnsNotInLoyalty]
	ex.Views[oracle.ViewAccrualVsFulfilment] = issuedViews[oracle.ViewAccrualVsFulfilment]
	h.checkViews(&v, ex, gross)
	return v
}

// checkCommands: every oracle request id, each once, each from its own source coordinates (O2,
// O3); per point-moving event (order, reason, source ref) exactly the oracle's share of points
// and refunds over the commands that carry it (DESIGN.md invariant 13: a late event adds
// corrections, which are the only commands outside the oracle's set, and changes the points of
// individual commands, never a share); and per order the oracle's net points and refunds (O6).
// It returns the gross points of the commands in Kafka by type (accrual, reversal, refund),
// which corrections change, so only the sink is held to them, and the commands themselves.
func (h *harness) checkCommands(v *verdict, ex *oracle.Expected, recs []outRecord) ([3]int64, []oracle.Command) {
	var gross [3]int64
	var issued []oracle.Command
	got := map[string]int{}
	perOrder := map[string][3]int64{}
	sources := map[string]int{}
	type shareKey struct{ order, reason, ref string }
	shares := map[shareKey][2]int64{} // points (accruals − reversals), refunds
	for _, r := range recs {
		e, err := h.serde.DecodeEvent(h.ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.partition, Offset: r.offset}, r.value)
		if err != nil || e.LoyaltyCommand == nil {
			v.problem("command at %d@%d does not decode: %v", r.partition, r.offset, err)
			continue
		}
		c := e.LoyaltyCommand
		got[c.RequestID]++
		sources[r.source()+"#"+r.headers[topology.HeaderOutputSeq]]++
		if got[c.RequestID] > 1 {
			continue
		}
		s := perOrder[c.OrderID]
		k := shareKey{c.OrderID, c.Reason, c.SourceRefID}
		sh := shares[k]
		switch c.CommandType {
		case schemas.TypeAccrualRequested:
			s[0] += c.Points
			sh[0] += c.Points
		case schemas.TypeReversalRequested:
			s[1] += c.Points
			sh[0] -= c.Points
		case schemas.TypeRedemptionRefundRequested:
			s[2] += c.Points
			sh[1] += c.Points
		}
		perOrder[c.OrderID] = s
		shares[k] = sh
		issued = append(issued, oracle.Command{RequestID: c.RequestID, Type: c.CommandType, OrderID: c.OrderID, Points: c.Points,
			CausingEventID: c.CausingEventID, SourceRefID: c.SourceRefID, Reason: c.Reason, BasisAmount: c.BasisAmount})
	}
	want := map[shareKey][2]int64{}
	for _, c := range ex.Commands {
		k := shareKey{c.OrderID, c.Reason, c.SourceRefID}
		sh := want[k]
		switch c.Type {
		case schemas.TypeAccrualRequested:
			sh[0] += c.Points
		case schemas.TypeReversalRequested:
			sh[0] -= c.Points
		case schemas.TypeRedemptionRefundRequested:
			sh[1] += c.Points
		}
		want[k] = sh
	}
	for k, sh := range shares {
		if sh != want[k] {
			v.problem("order %s %s %s: share (points, refund) %v in commands, oracle %v", k.order, k.reason, k.ref, sh, want[k])
		}
	}
	for k, sh := range want {
		if _, ok := shares[k]; !ok && sh != ([2]int64{}) {
			v.problem("order %s %s %s: no command carries the oracle's share %v", k.order, k.reason, k.ref, sh)
		}
	}
	for _, s := range perOrder {
		for i := range gross {
			gross[i] += s[i]
		}
	}
	for id, c := range ex.Commands {
		if got[id] == 0 {
			v.lost++
			v.problem("missing command %s (%s, order %s, cause %s)", id, c.Type, c.OrderID, c.CausingEventID)
		}
	}
	for id, n := range got {
		if n > 1 {
			v.duplicated += n - 1
			v.problem("command %s emitted %d times", id, n)
		}

	}
	for src, n := range sources {
		if n > 1 {
			v.duplicated += n - 1
			v.problem("source %s produced %d commands with one output sequence number", src, n)
		}
	}
	for id, o := range ex.Orders {
		s := perOrder[id]
		if s[0]-s[1] != o.RequestedNet() || s[2] != o.RefundRequested {
			v.problem("order %s: net points %d refunds %d in commands, oracle %d and %d", id, s[0]-s[1], s[2], o.RequestedNet(), o.RefundRequested)
		}
	}
	return gross, issued
}

// checkDLQ maps every dead letter back to the record the harness sent (by its source
// coordinates): each malformed record exactly once with its class, nothing else. It returns the
// event ids of the dead-lettered records.
func (h *harness) checkDLQ(v *verdict, sent []sentRecord, bySource map[string]int, recs []outRecord) map[string]bool {
	events := map[string]bool{}
	seen := map[int]int{}
	for _, r := range recs {
		idx, ok := bySource[r.source()]
		if !ok {
			v.dlqUnexplained++
			v.problem("dead letter from %s: the harness sent no such record", r.source())
			continue
		}
		s := sent[idx]
		seen[idx]++
		if seen[idx] > 1 {
			v.duplicated++
			v.problem("dead letter from %s is in the DLQ %d times", r.source(), seen[idx])
			continue
		}
		if !s.malformed {
			v.dlqUnexplained++
			v.problem("dead letter from %s (event %s, class %s: %s) was a valid record", r.source(), s.eventID,
				r.headers[topology.HeaderErrorClass], r.headers[topology.HeaderErrorMessage])
			continue
		}
		// An oversized record's dead letter cannot carry its value: the broker refuses the first
		// DLQ copy, the transaction aborts, and the retry dead-letters it as output-rejected
		// without the value (topology.Runner's contract).
		want := string(s.class)
		if s.oversized {
			want = topology.ClassOutputRejected
			if r.headers[topology.HeaderValueDropped] != "true" {
				v.problem("dead letter of the oversized record %s has no %s header", r.source(), topology.HeaderValueDropped)
			}
		}
		if got := r.headers[topology.HeaderErrorClass]; got != want {
			v.problem("dead letter from %s has class %q, want %q", r.source(), got, want)
		}
		if s.eventID != "" {
			events[s.eventID] = true
		}
	}
	for idx, s := range sent {
		if s.malformed && seen[idx] == 0 {
			v.lost++
			v.problem("malformed record %s/%d@%d (class %s) is not in the DLQ", s.topic, s.partition, s.offset, s.class)
		}
	}
	return events
}

// checkState restores the ledger from the changelog alone, as a fresh instance would (O9), and
// compares every order with the oracle: points (P, requested, refunds, posted), the basis B
// (money, HALF_EVEN to 4 dp on both sides) and the set of request ids.
func (h *harness) checkState(v *verdict, all []generate.Record, ex *oracle.Expected) map[string]ledger.State {
	raw := map[string][]byte{}
	var ps []int32
	for p := int32(0); p < h.p.partitions; p++ {
		ps = append(ps, p)
	}
	err := kafka.RestoreChangelog(h.ctx, h.conn, h.names[schemas.TopicChangelog], ps, func(_ int32, k, val []byte) {
		if val == nil {
			delete(raw, string(k))
		} else {
			raw[string(k)] = append([]byte(nil), val...)
		}
	}, nil)
	if err != nil {
		v.problem("restore the changelog: %v", err)
		return nil
	}
	states := map[string]ledger.State{}
	for k, b := range raw {
		l, err := ledger.DecodeState(h.ctx, h.serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: -1}, b)
		if err != nil {
			v.stateMismatch++
			v.problem("state of %s does not decode: %v", k, err)
			continue
		}
		states[k] = l.State()
	}
	// the runtime keys state by record key; the oracle groups by order
	recordKey := map[string]string{}
	for _, r := range all {
		if r.Event != nil && r.Malformed == "" {
			recordKey[oracle.OrderKey(r.Event)] = r.Key
		}
	}
	for id, o := range ex.Orders {
		key := id
		if k, ok := recordKey[id]; ok {
			key = k
		}
		st, ok := states[key]
		if !ok {
			v.stateMismatch++
			v.problem("order %s has no state in the changelog", id)
			continue
		}
		// The oracle's request ids, and besides them only corrections for late events and the
		// commands they correct (DESIGN.md invariant 13; checkCommands holds every share exact).
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
			v.stateMismatch++
			v.problem("order %s: restored P=%d net=%d refunds=%d posted=%d/%d/%d B=%s cmds=%d; oracle P=%d net=%d refunds=%d posted=%d/%d/%d B=%s cmds=%d",
				id, pts.Entitled, pts.AccrualRequested-pts.ReversalRequested, pts.RefundRequested, pts.AccrualPosted, pts.Reversed, pts.RefundPosted, pts.Basis, len(reqIDs),
				o.EntitledPoints, o.RequestedNet(), o.RefundRequested, o.AccrualPosted, o.ReversalPosted, o.RefundPosted, o.Basis, len(want))
		}
	}
	return states
}

// checkEvents: the exact set of valid event ids sent is the set applied (seen or held by the
// ledger state restored from the changelog); no valid event is dead-lettered, nothing else is
// applied (O2, conservation).
func (h *harness) checkEvents(v *verdict, sent []sentRecord, states map[string]ledger.State, dlq map[string]bool) {
	if states == nil {
		return
	}
	applied := map[string]bool{}
	for _, st := range states {
		for _, s := range st.Seen {
			applied[s.EventID] = true
		}
		for _, e := range st.Held {
			applied[e.EventID] = true
		}
	}
	valid := map[string]bool{}
	for _, s := range sent {
		if !s.malformed && s.eventID != "" {
			valid[s.eventID] = true
		}
	}
	for id := range valid {
		if !applied[id] {
			v.lost++
			v.problem("event %s was sent but is neither applied nor held in any order's state", id)
		}
		if dlq[id] {
			v.problem("event %s is valid but was dead-lettered", id)
		}
	}
	for id := range applied {
		if !valid[id] {
			v.problem("event %s is applied but the harness never sent it as a valid event", id)
		}
	}
}

// checkViews compares every ClickHouse reconciliation view with the oracle's rows, the point and
// money totals, and count() = uniqExact(row_id) after FINAL in every table (O4).
func (h *harness) checkViews(v *verdict, ex *oracle.Expected, gross [3]int64) {
	got, err := h.viewRows()
	if err != nil {
		v.problem("read views: %v", err)
		return
	}
	text := func(rows map[string][]oracle.ViewRow) map[string]int {
		m := map[string]int{}
		for _, rs := range rows {
			for _, r := range rs {
				m[fmt.Sprintf("%s pts=%d amt=%s", r.Key(), r.Points, r.Amount.StringFixed(4))]++
			}
		}
		return m
	}
	g, w := text(got), text(ex.Views)
	for x, n := range w {
		if g[x] < n {
			v.viewDiffs += n - g[x]
			v.problem("view row missing from ClickHouse: %s", x)
		}
	}
	for x, n := range g {
		if w[x] < n {
			v.viewDiffs += n - w[x]
			v.problem("unexpected view row in ClickHouse: %s", x)
		}
	}
	h.checkTotals(v, ex.Totals, gross)
	tables, err := clickhouse.Tables()
	if err != nil {
		v.problem("tables: %v", err)
		return
	}
	for name := range tables {
		if name == "recon_config" {
			continue
		}
		var n, u uint64
		if err := h.ch.QueryRow(h.ctx, fmt.Sprintf("SELECT count(), uniqExact(row_id) FROM %s.%s FINAL", h.db, name)).Scan(&n, &u); err != nil {
			v.problem("%s: %v", name, err)
			continue
		}
		if n != u {
			v.duplicated += int(n - u)
			v.problem("%s: count() %d != uniqExact(row_id) %d after FINAL", name, n, u)
		}
	}
}

// viewRows reads every reconciliation view as oracle rows (keys, code, points, amount); the
// queries are those of connectors/clickhouse's acceptance test.
func (h *harness) viewRows() (map[string][]oracle.ViewRow, error) {
	out := map[string][]oracle.ViewRow{}
	q := map[string]string{
		oracle.ViewOrdersAwaitingERP:    "SELECT order_id, order_line_id, mismatch_code, toInt64(0), toString(toDecimal64(0, 4)), '' FROM %s.recon_orders_awaiting_erp",
		oracle.ViewShipmentsNotInvoiced: "SELECT shipment_id, order_line_id, mismatch_code, toInt64(0), toString(amount), '' FROM %s.recon_shipments_not_invoiced",
		oracle.ViewRedemptionsPending:   "SELECT reservation_id, order_id, mismatch_code, points, toString(toDecimal64(0, 4)), '' FROM %s.recon_redemptions_pending_confirmation",
		oracle.ViewReturnsNotInLoyalty:  "SELECT return_id, order_line_id, mismatch_code, points, toString(toDecimal64(0, 4)), order_id FROM %s.recon_returns_not_reflected_in_loyalty",
		oracle.ViewAccrualVsFulfilment:  "SELECT order_id, '', mismatch_code, points, toString(toDecimal64(0, 4)), '' FROM %s.recon_accrual_vs_fulfilment",
		oracle.ViewThreeWayLine:         "SELECT order_id, order_line_id, mismatch_code, toInt64(0), toString(amount), '' FROM %s.recon_three_way_line",
		oracle.ViewRefundSettlement:     "SELECT return_id, order_id, mismatch_code, toInt64(0), toString(amount), '' FROM %s.recon_refunds_vs_credit_memos",
	}
	for _, view := range oracle.Views {
		rows, err := h.ch.Query(h.ctx, fmt.Sprintf(q[view], h.db))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", view, err)
		}
		for rows.Next() {
			var k1, k2, code, amt, k3 string
			var pts int64
			if err := rows.Scan(&k1, &k2, &code, &pts, &amt, &k3); err != nil {
				rows.Close()
				return nil, err
			}
			r := oracle.ViewRow{View: view, MismatchCode: code, Points: pts, Amount: decimal.RequireFromString(amt)}
			switch view {
			case oracle.ViewShipmentsNotInvoiced:
				r.ShipmentID, r.OrderLineID = k1, k2
			case oracle.ViewRedemptionsPending:
				r.ReservationID, r.OrderID = k1, k2
			case oracle.ViewReturnsNotInLoyalty:
				r.ReturnID, r.OrderLineID, r.OrderID = k1, k2, k3
			case oracle.ViewRefundSettlement:
				r.ReturnID, r.OrderID = k1, k2
			default:
				r.OrderID, r.OrderLineID = k1, k2
			}
			out[view] = append(out[view], r)
		}
		rows.Close()
	}
	return out, nil
}

// checkTotals compares point totals and ERP money totals per currency: requested points in
// ClickHouse equal the commands in Kafka by type and the oracle's net (accrual − reversal) and
// refunds; posted points equal the oracle's.
func (h *harness) checkTotals(v *verdict, want oracle.Totals, gross [3]int64) {
	var accReq, revReq, refReq, accPost, revPost, refPost int64
	if err := h.ch.QueryRow(h.ctx, fmt.Sprintf(`SELECT
		toInt64(sumIf(points, command_type = 'AccrualRequested')), toInt64(sumIf(points, command_type = 'ReversalRequested')),
		toInt64(sumIf(points, command_type = 'RedemptionRefundRequested')) FROM %s.loyalty_commands FINAL`, h.db)).Scan(&accReq, &revReq, &refReq); err != nil {
		v.problem("loyalty_commands totals: %v", err)
		return
	}
	if err := h.ch.QueryRow(h.ctx, fmt.Sprintf(`SELECT toInt64(sumIf(points, kind = 'ACCRUAL')), toInt64(sumIf(points, kind = 'REVERSAL')),
		toInt64(sumIf(points, kind = 'REDEMPTION_REFUND')) FROM %s.f_loyalty_postings FINAL`, h.db)).Scan(&accPost, &revPost, &refPost); err != nil {
		v.problem("f_loyalty_postings totals: %v", err)
		return
	}
	if got := [3]int64{accReq, revReq, refReq}; got != gross {
		v.problem("requested points (accrual, reversal, refund): ClickHouse %v, commands in Kafka %v", got, gross)
	}
	got := [5]int64{accReq - revReq, refReq, accPost, revPost, refPost}
	exp := [5]int64{want.AccrualRequested - want.ReversalRequested, want.RefundRequested, want.AccrualPosted, want.ReversalPosted, want.RefundPosted}
	if got != exp {
		v.problem("point totals (net requested, refund req, acc posted, rev posted, refund posted): ClickHouse %v, oracle %v", got, exp)
	}
	rows, err := h.ch.Query(h.ctx, fmt.Sprintf(`SELECT currency, doc_kind, toString(sum(net)) FROM (
		SELECT currency, doc_kind, net FROM %[1]s.f_billing_documents FINAL
		WHERE billing_document_id NOT IN (SELECT cancels_billing_document_id FROM %[1]s.f_billing_cancellations FINAL))
		GROUP BY currency, doc_kind`, h.db))
	if err != nil {
		v.problem("billing totals: %v", err)
		return
	}
	defer rows.Close()
	gotNet := map[string]decimal.Decimal{}
	for rows.Next() {
		var cur, kind, net string
		if err := rows.Scan(&cur, &kind, &net); err != nil {
			v.problem("billing totals: %v", err)
			return
		}
		gotNet[kind+" "+cur] = decimal.RequireFromString(net)
	}
	for cur, x := range want.ErpInvoicedNet {
		if !gotNet["INVOICE "+cur].Equal(x) {
			v.problem("invoiced net %s: ClickHouse %s, oracle %s", cur, gotNet["INVOICE "+cur], x)
		}
	}
	for cur, x := range want.ErpCreditedNet {
		if !gotNet["CREDIT_MEMO "+cur].Equal(x) {
			v.problem("credited net %s: ClickHouse %s, oracle %s", cur, gotNet["CREDIT_MEMO "+cur], x)
		}
	}
}
