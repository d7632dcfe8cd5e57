package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// TestCorrelationIDFindsEverything follows one correlation id through the pipeline: the events
// that carry it (in the raw_* fact tables), the commands they caused (loyalty_commands), the
// record of theirs that was dead-lettered (dead_letters) and the processor's log line about it
// all carry it, and nothing else does.
func TestCorrelationIDFindsEverything(t *testing.T) {
	p := newPipeline(t, 2)
	tr := p.generate(generate.Options{Seed: 41, Orders: 12, MalformedRate: 0.5})
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

	p.produce(nil, tr)
	// the processor logs JSON at info (testConfig sets warn)
	runCfg := p.configWith("info", "level: warn", "level: info")
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
	background(t, "sink", "--config", p.File)

	db := p.DB
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
		gotEvents = p.strs(eventsQ, args...)
		gotCommands = p.strs("SELECT DISTINCT request_id FROM {db}.loyalty_commands WHERE correlation_id = ?", corr)
		gotDead = p.strs("SELECT DISTINCT event_id FROM {db}.dead_letters WHERE correlation_id = ?", corr)
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
