package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestCorrelationIDFindsEverything follows one correlation id through the pipeline: the events
// that carry it (in the raw_* fact tables), the commands they caused (loyalty_commands), the
// record of theirs that was dead-lettered (dead_letters) and the processor's log line about it
// all carry it, and nothing else does.
func TestCorrelationIDFindsEverything(t *testing.T) {
	needServices(t)
	cfg := testConfig(t, 2)
	for _, args := range [][]string{{"topics", "create"}, {"migrate"}} {
		if out, stderr, code := runCLI(t, "", append(args, "--config", cfg)...); code != 0 {
			t.Fatalf("%v: %s %s", args, out, stderr)
		}
	}
	c, err := LoadConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := generate.Generate(generate.Options{Seed: 41, Orders: 12, MalformedRate: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// The order: one with a malformed record that decodes (class invalid: it has an event) and
	// commands. Its events get a correlation id of their own (the generator uses the order id),
	// so a match cannot come from the order_id column.
	exp := tr.Expected(time.Now())
	var order string
	for _, r := range tr.Records {
		if r.Malformed == "" || r.Event == nil {
			continue
		}
		for _, cmd := range exp.Commands {
			if cmd.OrderID == r.Key {
				order = r.Key
			}
		}
		if order != "" {
			break
		}
	}
	if order == "" {
		t.Fatal("the traffic has no order with a decodable dead letter and commands; change the seed")
	}
	corr := fmt.Sprintf("corr-%d", time.Now().UnixNano())
	events := map[string]bool{} // event ids carrying corr
	var deadEvent string
	for _, r := range tr.Records {
		if r.Event != nil && r.Event.OrderID() == order {
			r.Event.CorrelationID = corr
			events[r.Event.EventID] = true
			if r.Malformed != "" {
				deadEvent = r.Event.EventID
			}
		}
	}
	var wantCommands []string
	for id, cmd := range exp.Commands {
		if events[cmd.CausingEventID] {
			wantCommands = append(wantCommands, id)
		}
	}
	sort.Strings(wantCommands)
	if len(wantCommands) == 0 {
		t.Fatalf("order %s: no expected command is caused by its events", order)
	}

	app := &App{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	if err := produceTraffic(context.Background(), app, c, tr, 0); err != nil {
		t.Fatalf("produce traffic: %v", err)
	}
	// the processor logs JSON at info (testConfig sets warn)
	body, _ := os.ReadFile(cfg)
	runCfg := cfg + ".info.yaml"
	if err := os.WriteFile(runCfg, []byte(strings.Replace(string(body), "level: warn", "level: info", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var runLog syncBuffer
	ctx, stopRun := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"run", "--config", runCfg}, strings.NewReader(""), &syncBuffer{}, &runLog)
	}()
	defer func() {
		stopRun()
		if code := <-done; code != 0 {
			t.Errorf("run exited %d: %s", code, runLog.String())
		}
	}()
	background(t, "sink", "--config", cfg)

	conn, err := chsink.Open(context.Background(), c.ClickHouseConn())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := c.ClickHouse.Database
	strs := func(q string, args ...any) []string {
		rows, err := conn.Query(context.Background(), q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		sort.Strings(out)
		return out
	}
	var raw []string
	for _, tbl := range []string{"orders", "order_lines", "cancellation_lines", "shipment_lines", "return_lines",
		"reservation_events", "loyalty_postings", "erp_sales_orders", "erp_sales_order_items", "billing_documents",
		"billing_lines", "billing_cancellations"} {
		raw = append(raw, fmt.Sprintf("SELECT event_id FROM %s.raw_%s WHERE correlation_id = ?", db, tbl))
	}
	eventsQ := "SELECT DISTINCT event_id FROM (" + strings.Join(raw, " UNION ALL ") + ")"
	var gotEvents, gotCommands, gotDead []string
	waitFor(t, 90*time.Second, "the correlation id's rows in ClickHouse", func() string {
		args := make([]any, len(raw))
		for i := range args {
			args[i] = corr
		}
		gotEvents = strs(eventsQ, args...)
		gotCommands = strs(fmt.Sprintf("SELECT DISTINCT request_id FROM %s.loyalty_commands WHERE correlation_id = ?", db), corr)
		gotDead = strs(fmt.Sprintf("SELECT DISTINCT event_id FROM %s.dead_letters WHERE correlation_id = ?", db), corr)
		if len(gotEvents) < len(events)-1 || len(gotCommands) < len(wantCommands) || len(gotDead) == 0 {
			return fmt.Sprintf("%d/%d events, %d/%d commands, %d dead letters", len(gotEvents), len(events), len(gotCommands), len(wantCommands), len(gotDead))
		}
		return ""
	})
	// the invalid event has no fact rows (the sink rejects it too): dead_letters holds it
	var wantEvents []string
	for id := range events {
		if id != deadEvent {
			wantEvents = append(wantEvents, id)
		}
	}
	sort.Strings(wantEvents)
	if !slices.Equal(gotEvents, wantEvents) {
		t.Errorf("events with correlation id %s in raw_*: %v, want %v", corr, gotEvents, wantEvents)
	}
	if !slices.Equal(gotCommands, wantCommands) {
		t.Errorf("commands with correlation id %s: %v, want %v", corr, gotCommands, wantCommands)
	}
	if !slices.Equal(gotDead, []string{deadEvent}) {
		t.Errorf("dead letters with correlation id %s: %v, want the event %s", corr, gotDead, deadEvent)
	}
	// The processor's log line about the dead letter carries the ids.
	var logged []map[string]any
	sc := bufio.NewScanner(strings.NewReader(runLog.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["correlation_id"] == corr {
			logged = append(logged, line)
		}
	}
	if len(logged) != 1 || logged[0]["msg"] != "dead-lettered" || logged[0]["event_id"] != deadEvent ||
		logged[0]["class"] != string(schemas.ClassInvalid) {
		t.Errorf("log lines with correlation id %s: %v, want one dead-lettered line of event %s (class invalid)", corr, logged, deadEvent)
	}
	t.Logf("correlation id %s: %d events with rows, %d commands, dead letter %s, log line %v", corr, len(gotEvents), len(gotCommands), deadEvent, logged)
}
