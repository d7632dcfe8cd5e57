package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// compLine is one output line of `retailflow compensate`.
type compLine struct {
	Action         string   `json:"action"`
	View           string   `json:"view"`
	Code           string   `json:"mismatch_code"`
	RowKeys        []string `json:"row_keys"`
	RowKey         string   `json:"row_key"`
	OrderID        string   `json:"order_id"`
	RequestID      string   `json:"request_id"`
	CommandType    string   `json:"command_type"`
	Points         int64    `json:"points"`
	CausingEventID string   `json:"causing_event_id"`
	Original       string   `json:"original"`
	SentTo         string   `json:"sent_to"`
	Reason         string   `json:"reason"`
}

func compLines(t *testing.T, out string) map[string][]compLine {
	t.Helper()
	by := map[string][]compLine{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l compLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("compensate output line %q: %v", sc.Text(), err)
		}
		by[l.Action] = append(by[l.Action], l)
	}
	return by
}

// commandRecord is one record of the commands topic, decoded.
type commandRecord struct {
	rec *kgo.Record
	cmd *schemas.LoyaltyCommand
}

// readCommands reads the commands topic to its end, by request id.
func readCommands(t *testing.T, c Config) map[string][]commandRecord {
	t.Helper()
	ctx := context.Background()
	serde, err := c.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]commandRecord{}
	err = kafka.ReadToEnd(ctx, c.KafkaConn(), c.Topics.Commands, kafka.ReadOptions{Until: kafka.EndStable, PollTimeout: 30 * time.Second},
		func(r *kgo.Record) error {
			cp := *r
			cp.Key, cp.Value = append([]byte(nil), r.Key...), append([]byte(nil), r.Value...)
			e, err := serde.DecodeEvent(ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.Partition, Offset: r.Offset}, cp.Value)
			if err != nil {
				return err
			}
			out[e.LoyaltyCommand.RequestID] = append(out[e.LoyaltyCommand.RequestID], commandRecord{&cp, e.LoyaltyCommand})
			return nil
		})
	if err != nil {
		t.Fatalf("read %s: %v", c.Topics.Commands, err)
	}
	return out
}

func recordHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestCompensateReRequestsMissingPostings runs generated traffic whose simulated loyalty platform
// withholds accrual, reversal and refund postings through the real pipeline (broker, run, sink,
// ClickHouse 18.16). C4/C5 show the missing steps; `compensate` (dry run) lists exactly the
// commands no posting answers — every withheld one among them — with the ledger's request ids;
// --apply re-sends each original command record once (same key and value, same partition,
// rf.compensation.of naming the original), logs it in compensations, and the sink's
// loyalty_commands still holds one row per request id; a second --apply sends nothing. Postings
// on the wrong multiplier are listed as not compensable (answered, wrongly). Resolving
// a row takes it out of what compensate acts on.
func TestCompensateReRequestsMissingPostings(t *testing.T) {
	needServices(t)
	cfg := testConfig(t, 2)
	// one code owned by another team than its view's: the mapping is configuration
	appendConfig(t, cfg, `recon:
  owners:
    codes:
      recon_returns_not_reflected_in_loyalty/REFUND_MISSING: loyalty-desk
`)
	for _, args := range [][]string{{"topics", "create"}, {"migrate"}} {
		if out, stderr, code := runCLI(t, "", append(args, "--config", cfg)...); code != 0 {
			t.Fatalf("%v: %s %s", args, out, stderr)
		}
	}
	c, err := LoadConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 40,
		Faults: generate.Faults{WithheldAccrual: 0.2, WithheldReversal: 0.3, WithheldRefund: 0.3, WrongMultiplier: 0.15,
			ErpOpenAfterCancel: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	applied := map[generate.Fault]int{}
	for _, fs := range tr.Faults() {
		for _, f := range fs {
			applied[f]++
		}
	}
	for _, f := range []generate.Fault{generate.FaultWithheldAccrual, generate.FaultWithheldReversal, generate.FaultWithheldRefund, generate.FaultWrongMultiplier} {
		if applied[f] == 0 {
			t.Fatalf("seed applies no %s (applied %v): change the seed", f, applied)
		}
	}
	// The commands the simulated platform never answers: the oracle's commands whose request id
	// no posting carries.
	answered := map[string]bool{}
	for _, e := range tr.Events() {
		switch {
		case e.PointsAccrualPosted != nil:
			answered[e.PointsAccrualPosted.RequestID] = true
		case e.PointsReversed != nil:
			answered[e.PointsReversed.RequestID] = true
		case e.RedemptionRefunded != nil && e.RedemptionRefunded.RequestID != nil:
			answered[*e.RedemptionRefunded.RequestID] = true
		}
	}
	exp := tr.Expected(time.Now())
	withheld := map[string]bool{}
	for _, cmd := range exp.Commands {
		if !answered[cmd.RequestID] && (cmd.Type != schemas.TypeRedemptionRefundRequested || cmd.Reason == "RETURN") {
			withheld[cmd.RequestID] = true
		}
	}
	if len(withheld) < 3 {
		t.Fatalf("only %d withheld commands", len(withheld))
	}

	app := &App{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	if err := produceTraffic(context.Background(), app, c, tr, 0); err != nil {
		t.Fatalf("produce traffic: %v", err)
	}
	stopRun := background(t, "run", "--config", cfg)
	stopSink := background(t, "sink", "--config", cfg)
	defer stopSink()
	conn, err := chsink.Open(context.Background(), c.ClickHouseConn())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := c.ClickHouse.Database
	count := func(q string, args ...any) uint64 {
		var n uint64
		if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	postings := 0
	for _, e := range tr.Events() {
		if e.PointsAccrualPosted != nil || e.PointsReversed != nil {
			postings++
		}
	}
	waitFor(t, 180*time.Second, "the pipeline to write every command and posting", func() string {
		cmds := count(fmt.Sprintf("SELECT count() FROM %s.loyalty_commands FINAL", db))
		posted := count(fmt.Sprintf("SELECT count() FROM %s.f_loyalty_postings WHERE kind IN ('ACCRUAL', 'REVERSAL')", db))
		if cmds < uint64(len(exp.Commands)) || posted < uint64(postings) {
			return fmt.Sprintf("%d/%d commands, %d/%d postings", cmds, len(exp.Commands), posted, postings)
		}
		return ""
	})
	time.Sleep(2 * time.Second) // the processor's and the sink's last batches
	stopRun()
	for _, code := range []string{"REVERSAL_MISSING", "REFUND_MISSING"} {
		if n := count(fmt.Sprintf("SELECT count() FROM %s.recon_returns_not_reflected_in_loyalty WHERE mismatch_code = ?", db), code); n == 0 {
			t.Errorf("C4 shows no %s", code)
		}
	}
	if n := count(fmt.Sprintf("SELECT count() FROM %s.recon_accrual_vs_fulfilment WHERE mismatch_code IN ('MEMBER_ORDER_NO_ACCRUAL', 'UNDER_ACCRUED')", db)); n == 0 {
		t.Errorf("C5 shows no missing accrual")
	}

	// 1. dry run: lists the unanswered commands, sends nothing
	before := readCommands(t, c)
	out, stderr, code := runCLI(t, "", "compensate", "--config", cfg)
	if code != 0 {
		t.Fatalf("compensate (dry run): exit %d: %s", code, stderr)
	}
	dry := compLines(t, out)
	would := map[string]compLine{}
	for _, l := range dry["would-send"] {
		if _, dup := would[l.RequestID]; dup {
			t.Errorf("request %s listed twice", l.RequestID)
		}
		would[l.RequestID] = l
		// the ledger's request id, derived by the one function the ledger uses
		if id := schemas.CommandRequestID(l.OrderID, l.CausingEventID, schemas.EventType(l.CommandType)); id != l.RequestID {
			t.Errorf("would send %s, the ledger's id for (%s, %s, %s) is %s", l.RequestID, l.OrderID, l.CausingEventID, l.CommandType, id)
		}
		if recs := before[l.RequestID]; len(recs) != 1 || (headers.Coordinates{Topic: recs[0].rec.Topic, Partition: recs[0].rec.Partition, Offset: recs[0].rec.Offset}).String() != l.Original {
			t.Errorf("would send %s from %s; the topic has %d records of it", l.RequestID, l.Original, len(recs))
		}
		if answered[l.RequestID] {
			t.Errorf("would send %s (%s of %s), which the platform answered", l.RequestID, l.CommandType, l.OrderID)
		}
	}
	for id := range withheld {
		if _, ok := would[id]; !ok {
			t.Errorf("withheld command %s is not listed: %s", id, out)
		}
	}
	// a posting on the wrong multiplier answers its request with other points: C5 UNDER/OVER_ACCRUED
	// that a re-request (deduplicated) cannot fix
	for _, l := range dry["not-compensable"] {
		if l.View != "C5" || (l.Code != "UNDER_ACCRUED" && l.Code != "OVER_ACCRUED") || !strings.Contains(l.Reason, "has a posting") {
			t.Errorf("not compensable: %+v", l)
		}
	}
	if len(dry["not-compensable"]) == 0 {
		t.Errorf("the wrong-multiplier postings gave no not-compensable row")
	}
	kinds := map[string]int{}
	for _, l := range would {
		kinds[l.View+" "+l.Code+" "+l.CommandType]++
	}
	t.Logf("dry run: %d would-send %v, %d not-compensable; %s", len(would), kinds, len(dry["not-compensable"]), strings.TrimSpace(stderr))
	if !strings.Contains(stderr, fmt.Sprintf("would send %d commands", len(would))) {
		t.Errorf("dry-run summary: %q", stderr)
	}
	if after := readCommands(t, c); len(after) != len(before) || total(after) != total(before) {
		t.Fatalf("the dry run sent something: %d → %d records", total(before), total(after))
	}

	// 2. --apply: each listed command sent once, as it was, and logged
	out, stderr, code = runCLI(t, "", "compensate", "--apply", "--by", "ops-test", "--config", cfg)
	if code != 0 {
		t.Fatalf("compensate --apply: exit %d: %s", code, stderr)
	}
	sent := compLines(t, out)["sent"]
	if len(sent) != len(would) {
		t.Fatalf("sent %d commands, the dry run listed %d: %s", len(sent), len(would), out)
	}
	// EndTransaction returns before the broker has written every commit marker, and a
	// read_committed read ends at the last stable offset: wait for the markers
	var after map[string][]commandRecord
	waitFor(t, 30*time.Second, "the compensations to be readable (commit markers)", func() string {
		after = readCommands(t, c)
		if total(after) < total(before)+len(sent) {
			return fmt.Sprintf("%d of %d new records", total(after)-total(before), len(sent))
		}
		return ""
	})
	for _, l := range sent {
		recs := after[l.RequestID]
		if len(recs) != 2 {
			t.Errorf("request %s: %d records in the commands topic, want the ledger's and one compensation", l.RequestID, len(recs))
			continue
		}
		orig, copy := recs[0].rec, recs[1].rec
		if recordHeader(copy, headers.CompensationOf) != l.Original || recordHeader(orig, headers.CompensationOf) != "" {
			t.Errorf("request %s: rf.compensation.of %q, want %s", l.RequestID, recordHeader(copy, headers.CompensationOf), l.Original)
		}
		if !bytes.Equal(orig.Key, copy.Key) || !bytes.Equal(orig.Value, copy.Value) || orig.Partition != copy.Partition {
			t.Errorf("request %s: the compensation is not the original command (key, value, partition)", l.RequestID)
		}
		if got := fmt.Sprintf("%s/%d/%d", copy.Topic, copy.Partition, copy.Offset); got != l.SentTo {
			t.Errorf("request %s: output says sent to %s, the topic has it at %s", l.RequestID, l.SentTo, got)
		}
	}
	if total(after) != total(before)+len(sent) {
		t.Errorf("the commands topic grew by %d records, %d were sent", total(after)-total(before), len(sent))
	}
	logged := count(fmt.Sprintf("SELECT count() FROM %s.compensations FINAL WHERE actor = 'ops-test'", db))
	if logged != uint64(len(sent)) {
		t.Errorf("compensations has %d rows, %d were sent", logged, len(sent))
	}
	// the sink stores the compensation as the same command: one row per request id
	waitFor(t, 60*time.Second, "the sink to store the compensations", func() string {
		n := count(fmt.Sprintf("SELECT count() FROM %s.loyalty_commands FINAL WHERE src_offset IN (SELECT sent_offset FROM %s.compensations) AND request_id IN (SELECT request_id FROM %s.compensations)", db, db, db))
		if n < uint64(len(sent)) {
			return fmt.Sprintf("%d/%d stored", n, len(sent))
		}
		return ""
	})
	for _, l := range sent {
		if n := count(fmt.Sprintf("SELECT count() FROM %s.loyalty_commands FINAL WHERE request_id = ?", db), l.RequestID); n != 1 {
			t.Errorf("loyalty_commands has %d rows of request %s", n, l.RequestID)
		}
	}

	// 3. a second run sends nothing: every command is recognised by its request id
	out, stderr, code = runCLI(t, "", "compensate", "--apply", "--by", "ops-test", "--config", cfg)
	if code != 0 {
		t.Fatalf("second compensate --apply: exit %d: %s", code, stderr)
	}
	again := compLines(t, out)
	if len(again["sent"]) != 0 || len(again["already-compensated"]) != len(sent) {
		t.Errorf("second run: %d sent, %d already compensated; want 0 and %d", len(again["sent"]), len(again["already-compensated"]), len(sent))
	}
	if n := total(readCommands(t, c)); n != total(after) {
		t.Errorf("the second run wrote %d records to the commands topic", n-total(after))
	}

	t.Run("ownership", func(t *testing.T) { checkOwnership(t, cfg, c, conn) })
	t.Run("erp-v2-owner", func(t *testing.T) { checkErpOpenAfterCancelOwner(t, cfg, c, tr) })

	// 4. a resolved row is not compensated: resolve one C4 row of a REVERSAL_MISSING finding
	// and check it is gone from the plan
	var c4 *compLine
	for _, l := range again["already-compensated"] {
		if l.View == "C4" && len(l.RowKeys) > 0 {
			c4 = &l
			break
		}
	}
	if c4 == nil {
		t.Fatal("no C4 compensation")
	}
	key := strings.TrimPrefix(c4.RowKeys[0], "C4:")
	if out, stderr, code := runCLI(t, "", "recon", "resolve", "--view", "C4", "--key", key, "--note", "compensated, test", "--by", "ops-test", "--config", cfg); code != 0 {
		t.Fatalf("recon resolve: %s %s", out, stderr)
	}
	out, _, _ = runCLI(t, "", "compensate", "--config", cfg)
	for _, l := range compLines(t, out)["already-compensated"] {
		for _, k := range l.RowKeys {
			if k == c4.RowKeys[0] {
				t.Errorf("resolved row %s still planned", k)
			}
		}
	}
}

func total(m map[string][]commandRecord) int {
	n := 0
	for _, rs := range m {
		n += len(rs)
	}
	return n
}
