package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// runCLI runs one command line in-process and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func needServices(t *testing.T) {
	t.Helper()
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka/ClickHouse: run with RETAILFLOW_E2E=1 (make test)")
	}
}

// testConfig writes a config file whose topics are unique to this test.
func testConfig(t *testing.T, partitions int) string {
	t.Helper()
	p := fmt.Sprintf("t%d", rand.Uint32())
	body := fmt.Sprintf(`topics:
  orders: %[1]s.orders
  shipments: %[1]s.shipments
  returns: %[1]s.returns
  loyalty: %[1]s.loyalty
  erp: %[1]s.erp
  commands: %[1]s.commands
  changelog: %[1]s.changelog
  dlq: %[1]s.dlq
  partitions: %[2]d
runtime:
  group: %[1]s-ledger
sink:
  group: %[1]s-sink
clickhouse:
  database: %[1]s
log:
  level: warn
`, p, partitions)
	f := filepath.Join(t.TempDir(), "retailflow.yaml")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kafka:\n  brokers: [\"nohostport\"]\n"), 0o644)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("sink:\n  batch_rowz: 10\n"), 0o644)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"invalid value", nil, []string{"config", "--config", bad}, "kafka.brokers[0]"},
		{"unknown key", nil, []string{"config", "--config", unknown}, "sink.batch_rowz: unknown key"},
		{"missing file", nil, []string{"config", "--config", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"bad env type", map[string]string{"RETAILFLOW_SINK_BATCH_ROWS": "many"}, []string{"config"}, "sink.batch_rows"},
		{"bad env value", map[string]string{"RETAILFLOW_LOG_LEVEL": "loud"}, []string{"config"}, "log.level"},
		{"bad duration", map[string]string{"RETAILFLOW_RUNTIME_TRANSACTION_TIMEOUT": "1h"}, []string{"config"}, "runtime.transaction_timeout"},
		{"bad confirm trigger", map[string]string{"RETAILFLOW_POLICY_CONFIRM_TRIGGER": "REDEMPTION_CONFIRMED"}, []string{"config"},
			`policy.confirm_trigger: "REDEMPTION_CONFIRMED" is not one of ORDER_ACCEPTED, FIRST_SHIPMENT`},
		{"session at the heartbeat", map[string]string{"RETAILFLOW_RUNTIME_SESSION_TIMEOUT": "3s", "RETAILFLOW_RUNTIME_HEARTBEAT_INTERVAL": "3s"},
			[]string{"config"}, "runtime.session_timeout: 3s must exceed runtime.heartbeat_interval"},
		{"bad offset reset", map[string]string{"RETAILFLOW_RUNTIME_OFFSET_RESET": "smallest"}, []string{"config"}, "runtime.offset_reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The environment of an end-to-end run names a private broker, which would override
			// the bad file's brokers: unset it here (t.Setenv restores it afterwards).
			t.Setenv("RETAILFLOW_KAFKA_BROKERS", "")
			os.Unsetenv("RETAILFLOW_KAFKA_BROKERS")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, stderr, code := runCLI(t, "", tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 naming %q", code, stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}

func TestProduceRejectsBadLinesAndSendsNothing(t *testing.T) {
	good := `{"event_id":"e1","event_type":"OrderLinesCancelled","schema_version":1,"source_system":"OMS","occurred_at":"2026-11-01T10:00:00Z","published_at":"2026-11-01T10:00:01Z","aggregate_type":"order","aggregate_id":"O-1","aggregate_version":2,"correlation_id":"O-1","tenant_id":"t1","order_lines_cancelled":{"cancellation_id":"C-1","order_id":"O-1","cancelled_at":"2026-11-01T10:00:00Z","reason_code":"customer","is_full_order":false,"is_pre_fulfillment":true,"lines":[{"order_line_id":"L1","quantity_cancelled":"1"}]}}`
	badQty := strings.Replace(good, `"quantity_cancelled":"1"`, `"quantity_cancelled":"abc"`, 1)
	// Brokers that do not exist: the command must fail on the input before it tries to connect.
	_, stderr, code := runCLI(t, good+"\n\n"+badQty+"\n{not json\n", "produce", "--topic", "orders", "--brokers", "127.0.0.1:1")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr)
	}
	for _, want := range []string{"2 bad line(s), nothing was sent", "line 3:", "quantity_cancelled", "line 4:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	_, stderr, code = runCLI(t, "", "produce", "--topic", "nosuch")
	if code != 2 || !strings.Contains(stderr, `"nosuch" is not a retailflow topic`) {
		t.Errorf("unknown topic: exit %d stderr %q", code, stderr)
	}
}

// TestProduceConsumeRoundTrip sends generated events of every type with `produce` and reads
// them back with `consume --from-beginning`: the JSON lines must be the same.
func TestProduceConsumeRoundTrip(t *testing.T) {
	needServices(t)
	cfg := testConfig(t, 3)
	if out, stderr, code := runCLI(t, "", "topics", "create", "--config", cfg); code != 0 {
		t.Fatalf("topics create: %s %s", out, stderr)
	}
	tr, err := generate.Generate(generate.Options{Seed: 7, Orders: 40, Faults: generate.Faults{
		MissingInvoice: 0.2, ShortInvoice: 0.2, WrongMultiplier: 0.2, ShortReversal: 0.3, AbandonedReservation: 0.2,
	}})
	if err != nil {
		t.Fatal(err)
	}
	byTopic := map[schemas.Topic][]string{}
	types := map[schemas.EventType]bool{}
	events := tr.Events()
	// The generator emits neither of these for short traffic; derive one of each.
	for _, e := range events {
		if e.PointsAccrualPosted != nil && !types[schemas.TypePointsActivated] {
			a := e
			a.EventID, a.EventType, a.PointsAccrualPosted = e.EventID+"-act", schemas.TypePointsActivated, nil
			a.PointsActivated = &schemas.PointsActivated{LedgerEntryID: e.PointsAccrualPosted.LedgerEntryID,
				OrderID: e.PointsAccrualPosted.OrderID, Points: e.PointsAccrualPosted.Points, ActivatedAt: e.PointsAccrualPosted.ActivatesAt}
			events = append(events, a)
			types[schemas.TypePointsActivated] = true
		}
		if e.PointsReserved != nil && !types[schemas.TypeRedemptionReleased] {
			r := e
			r.EventID, r.EventType, r.PointsReserved = e.EventID+"-rel", schemas.TypeRedemptionReleased, nil
			r.RedemptionReleased = &schemas.RedemptionReleased{ReservationID: e.PointsReserved.ReservationID,
				OrderID: e.PointsReserved.OrderID, Reason: "TTL_EXPIRED", ReleasedAt: e.PointsReserved.ExpiresAt}
			events = append(events, r)
			types[schemas.TypeRedemptionReleased] = true
		}
	}
	for _, e := range events {
		topic, _ := schemas.TopicOf(e.EventType)
		line, err := schemas.EncodeJSON(&e)
		if err != nil {
			t.Fatal(err)
		}
		byTopic[topic] = append(byTopic[topic], string(line))
		types[e.EventType] = true
	}
	for _, et := range schemas.EventTypes() {
		if _, isInput := schemas.TopicOf(et); isInput && !types[et] && !isCommandType(et) {
			t.Errorf("generated traffic lacks %s: the round trip would not cover it", et)
		}
	}
	for _, topic := range schemas.InputTopics {
		want := byTopic[topic]
		if _, stderr, code := runCLI(t, strings.Join(want, "\n")+"\n", "produce", "--config", cfg, "--topic", string(topic)); code != 0 {
			t.Fatalf("produce %s: %s", topic, stderr)
		}
		out, stderr, code := runCLI(t, "", "consume", "--config", cfg, "--topic", string(topic), "--from-beginning")
		if code != 0 {
			t.Fatalf("consume %s: %s", topic, stderr)
		}
		got := strings.Split(strings.TrimSpace(out), "\n")
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: consumed %d lines, produced %d; first produced %q", topic, len(got), len(want), want[0])
		}
	}
}

func isCommandType(et schemas.EventType) bool {
	switch et {
	case schemas.TypeAccrualRequested, schemas.TypeReversalRequested, schemas.TypeRedemptionRefundRequested:
		return true
	}
	return false
}
