package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
)

// personalFields are the JSON keys of the event schemas that hold personal data: who bought
// (customer, member, the ERP's sold-to party) and where it went. Order ids are not personal.
var personalFields = map[string]bool{
	"customer_id": true, "loyalty_member_id": true, "member_id": true, "sold_to": true,
	"postcode": true, "email": true, "name": true, "first_name": true, "last_name": true,
	"street": true, "address_line1": true, "address_line2": true, "city": true, "phone": true,
}

// personalValues collects every value under a personal key anywhere in v.
func personalValues(v any, into map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && personalFields[k] && s != "" {
				into[s] = k
			}
			personalValues(e, into)
		}
	case []any:
		for _, e := range x {
			personalValues(e, into)
		}
	}
}

// TestLogsCarryNoPersonalData runs a chaos-style workload — malformed records (dead-lettered),
// duplicates, out-of-order and late delivery, reconciliation faults, two processor instances
// with a rebalance and a stop in the middle, the sink with ClickHouse refusing the rows of one
// SKU (bisection, sink-insert dead letters) — with every component logging at DEBUG,
// and greps everything they logged for each customer id, member id, sold-to party and postcode
// the generator put in the traffic. None may appear.
func TestLogsCarryNoPersonalData(t *testing.T) {
	p := newPipeline(t, 3, "--log-level", "debug")
	cfgFile := p.File
	const orders = 120
	tr, err := generate.Generate(generate.Options{Seed: 1818, Orders: orders, MalformedRate: 0.25, DuplicateRate: 0.1,
		OutOfOrderRate: 0.2, LateRate: 0.1,
		Faults: generate.Faults{MissingErpOrder: 0.1, WrongErpQty: 0.1, WithheldAccrual: 0.1, WrongMultiplier: 0.1,
			ShortReversal: 0.1, AbandonedReservation: 0.1, MissingCreditMemo: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	pii := map[string]string{}
	for _, e := range tr.Events() {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var tree any
		if err := json.Unmarshal(b, &tree); err != nil {
			t.Fatal(err)
		}
		personalValues(tree, pii)
	}
	if len(pii) < 50 {
		t.Fatalf("only %d personal values in the traffic: the generator's schema changed? %v", len(pii), pii)
	}

	c, conn := p.C, p.CH
	ctx := context.Background()
	// ClickHouse refuses the rows of a rarely sold SKU: the sink bisects the batches, logs
	// the server's refusals and dead-letters those records itself (origin sink-insert)
	skuOrders := map[string]int{}
	for _, e := range tr.Events() {
		if e.OrderAccepted != nil {
			for _, l := range e.OrderAccepted.Lines {
				skuOrders[l.SKU]++
			}
		}
	}
	poison := ""
	for sku, n := range skuOrders {
		if n <= 3 && (poison == "" || sku < poison) {
			poison = sku
		}
	}
	if poison == "" {
		t.Fatalf("no SKU sold in at most 3 orders: %v", skuOrders)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.order_lines ADD COLUMN guard UInt8 MATERIALIZED throwIf(sku = '%s')", c.ClickHouse.Database, poison)); err != nil {
		t.Fatal(err)
	}
	var logs []*syncBuffer
	start := func(ctx context.Context, args ...string) chan int {
		var stderr syncBuffer
		logs = append(logs, &stderr)
		done := make(chan int, 1)
		go func() {
			done <- runContext(ctx, append(args, "--config", cfgFile, "--log-level", "debug"), strings.NewReader(""), &syncBuffer{}, &stderr)
		}()
		return done
	}
	var produceOut syncBuffer
	app := &App{Stdout: &produceOut, Stderr: &produceOut, Stdin: strings.NewReader("")}
	logs = append(logs, &produceOut)
	if err := produceTraffic(ctx, app, c, tr, 0); err != nil {
		t.Fatalf("produce traffic: %v", err)
	}

	runCtx, stopRuns := context.WithCancel(ctx)
	defer stopRuns()
	run0 := start(runCtx, "run", "--instance-id", "0")
	sinkCtx, stopSink := context.WithCancel(ctx)
	defer stopSink()
	sinkDone := start(sinkCtx, "sink")
	// a second instance joins (rebalance, restore from the changelog), then leaves again
	time.Sleep(3 * time.Second)
	run1Ctx, stopRun1 := context.WithCancel(runCtx)
	run1 := start(run1Ctx, "run", "--instance-id", "1")
	time.Sleep(6 * time.Second)
	stopRun1()
	if code := <-run1; code != 0 {
		t.Errorf("run instance 1 exited %d", code)
	}

	want := 0
	for _, r := range tr.Records {
		if r.Malformed != "" {
			want++
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var dead, refused uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT countIf(origin = 'runtime'), countIf(origin = 'sink-insert') FROM %s.dead_letters FINAL", c.ClickHouse.Database)).Scan(&dead, &refused); err != nil {
			t.Fatal(err)
		}
		if int(dead) >= want && refused > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2m: %d runtime dead letters in ClickHouse (want %d), %d refused by ClickHouse (want > 0)", dead, want, refused)
		}
		time.Sleep(time.Second)
	}
	stopRuns()
	if code := <-run0; code != 0 {
		t.Errorf("run instance 0 exited %d", code)
	}
	stopSink()
	if code := <-sinkDone; code != 0 {
		t.Errorf("sink exited %d", code)
	}

	var all strings.Builder
	for _, l := range logs {
		all.WriteString(l.String())
	}
	text := all.String()
	lines := strings.Count(text, "\n")
	if lines < 10 || !strings.Contains(text, "dead-lettered") || !strings.Contains(text, "isolating the records") {
		t.Fatalf("the run logged %d lines and no dead letter: the test would prove nothing\n%s", lines, text)
	}
	var leaks []string
	for v, field := range pii {
		// whole values only: a 5-digit postcode may be a substring of an offset or a timestamp
		re := regexp.MustCompile(`(^|[^0-9A-Za-z_-])` + regexp.QuoteMeta(v) + `($|[^0-9A-Za-z_-])`)
		if loc := re.FindStringIndex(text); loc != nil {
			from, to := max(loc[0]-120, 0), min(loc[1]+80, len(text))
			leaks = append(leaks, fmt.Sprintf("%s %q in …%s…", field, v, text[from:to]))
		}
	}
	sort.Strings(leaks)
	t.Logf("%d log lines checked for %d personal values", lines, len(pii))
	if testing.Verbose() {
		t.Logf("the logs:\n%s", text)
	}
	if len(leaks) > 0 {
		t.Errorf("%d personal values in the logs, e.g.:\n%s", len(leaks), strings.Join(leaks[:min(len(leaks), 8)], "\n"))
	}
}
