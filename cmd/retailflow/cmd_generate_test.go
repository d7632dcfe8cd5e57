package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

func runGenerate(t *testing.T, app *App, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	app.Stdout, app.Stderr = &out, &out
	cmd := newGenerateCmd(app)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("generate %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// TestGenerateOut: --out writes files that `retailflow produce` accepts, and expected.json.
func TestGenerateOut(t *testing.T) {
	dir := t.TempDir()
	out := runGenerate(t, &App{overrides: map[string]any{}}, "--orders", "60", "--seed", "4", "--out", dir,
		"--malformed-rate", "0.3", "--duplicate-rate", "0.1", "--fault", "missing_invoice=0.5", "--faults", "0.05")
	if !strings.Contains(out, "generated 60 orders") {
		t.Fatalf("output: %s", out)
	}
	total := 0
	for _, topic := range schemas.InputTopics {
		f, err := os.Open(filepath.Join(dir, string(topic)+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		events, err := readEvents(f, f.Name(), topic)
		f.Close()
		if err != nil {
			t.Fatalf("produce would reject %s: %v", topic, err)
		}
		total += len(events)
	}
	bad, err := os.ReadFile(filepath.Join(dir, "malformed.jsonl"))
	if err != nil || bytes.Count(bad, []byte("\n")) == 0 {
		t.Fatalf("malformed.jsonl: %v (%d bytes)", err, len(bad))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var x struct {
		Commands []json.RawMessage        `json:"commands"`
		Views    map[string][]expectedRow `json:"views"`
		Faults   map[string][]string      `json:"faults"`
	}
	if err := json.Unmarshal(raw, &x); err != nil {
		t.Fatal(err)
	}
	if len(x.Commands) == 0 || len(x.Views[oracle.ViewShipmentsNotInvoiced]) == 0 || len(x.Faults) == 0 {
		t.Fatalf("expected.json lacks commands, C2 rows or faults: %d, %d, %d", len(x.Commands), len(x.Views[oracle.ViewShipmentsNotInvoiced]), len(x.Faults))
	}
	t.Logf("%d valid records in topic files, %d commands expected", total, len(x.Commands))
}

func TestGenerateFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--orders", "5"}, {"--out", t.TempDir(), "--fault", "nope=0.1"}, {"--out", t.TempDir(), "--duplicate-rate", "2"}} {
		app := &App{overrides: map[string]any{}}
		app.Stdout, app.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		cmd := newGenerateCmd(app)
		cmd.SetArgs(args)
		cmd.SetOut(app.Stdout)
		cmd.SetErr(app.Stderr)
		if err := cmd.ExecuteContext(context.Background()); err == nil {
			t.Errorf("generate %v: no error", args)
		}
	}
}

// TestGenerateProduce sends generated traffic to fresh topics on the real broker and checks
// every record arrived.
func TestGenerateProduce(t *testing.T) {
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka/ClickHouse: run with RETAILFLOW_E2E=1 (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	suffix := fmt.Sprintf("gen-%x", rand.Uint64())
	overrides := map[string]any{"topics.partitions": 3}
	for _, t := range []string{"orders", "shipments", "returns", "loyalty", "erp", "commands", "changelog", "dlq"} {
		overrides["topics."+t] = suffix + "." + t
	}
	app := &App{overrides: overrides}
	c, err := app.Config()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kafka.EnsureTopics(ctx, c.KafkaConn(), c.TopicSpecs()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cl, err := kgo.NewClient(c.KafkaConn().Options()...); err == nil {
			var names []string
			for _, n := range c.TopicNames() {
				names = append(names, n)
			}
			_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), names...)
			cl.Close()
		}
	})
	out := runGenerate(t, app, "--orders", "80", "--seed", "8", "--produce", "--duplicate-rate", "0.1", "--malformed-rate", "0.2")
	if !strings.Contains(out, "produced") {
		t.Fatalf("output: %s", out)
	}
	cl, err := kgo.NewClient(c.KafkaConn().Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var topics []string
	for _, tp := range schemas.InputTopics {
		topics = append(topics, c.TopicNames()[tp])
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if !strings.Contains(out, fmt.Sprintf("produced %d of %d records", n, n)) {
		t.Fatalf("broker holds %d records; generate said: %s", n, out)
	}
	t.Log(strings.TrimSpace(out))
}
