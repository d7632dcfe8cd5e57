package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// pythonProducer returns the python of the producer example's virtual environment
// (infra/python.sh installs confluent-kafka and fastavro from PyPI the first time).
func pythonProducer(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../infra/python.sh").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("infra/python.sh: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// TestForeignProducerWithAnotherPartitioner: the OMS produces orders with confluent-kafka
// (librdkafka, CRC32 partitioner by default) and fastavro, the other systems with `retailflow
// produce` (murmur2, as Java does). Orders whose key CRC32 places on another partition than
// murmur2 meet their shipments, returns and documents only because the processor re-routes
// them; the commands are exactly the oracle's, and nothing is dead-lettered.
func TestForeignProducerWithAnotherPartitioner(t *testing.T) {
	needServices(t)
	py := pythonProducer(t)
	const partitions = 4
	cfg := testConfig(t, partitions)
	if _, stderr, code := runCLI(t, "", "topics", "create", "--config", cfg); code != 0 {
		t.Fatalf("topics create: %s", stderr)
	}
	dir := t.TempDir()
	gen := filepath.Join(dir, "traffic")
	if _, stderr, code := runCLI(t, "", "generate", "--orders", "120", "--seed", "13", "--out", gen,
		"--duplicate-rate", "0.05", "--faults", "0.1"); code != 0 {
		t.Fatalf("generate: %s", stderr)
	}
	avsc := filepath.Join(dir, "avsc")
	if _, stderr, code := runCLI(t, "", "schemas", "--out", avsc); code != 0 {
		t.Fatalf("schemas: %s", stderr)
	}
	c, err := LoadConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := c.TopicNames()

	cmd := exec.Command(py, "../../schemas/examples/python/produce.py", "--brokers", strings.Join(c.Kafka.Brokers, ","),
		"--topic", names[schemas.TopicOrders], "--schema", filepath.Join(avsc, "orders.avsc"), "--file", filepath.Join(gen, "orders.jsonl"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python producer: %v\n%s", err, out)
	}
	t.Logf("python producer: %s", strings.TrimSpace(lastLine(string(out))))
	for _, topic := range []string{"shipments", "returns", "loyalty", "erp"} {
		if _, stderr, code := runCLI(t, "", "produce", "--config", cfg, "--topic", topic, "--file", filepath.Join(gen, topic+".jsonl")); code != 0 {
			t.Fatalf("produce %s: %s", topic, stderr)
		}
	}

	// The test proves something only if some orders sit on another partition than murmur2's.
	orders := readAll(t, c, names[schemas.TopicOrders])
	misplaced := 0
	for _, r := range orders {
		if kafka.KeyPartition(r.Key, partitions) != r.Partition {
			misplaced++
		}
	}
	if misplaced == 0 {
		t.Fatalf("none of %d orders was placed off murmur2 by librdkafka's partitioner", len(orders))
	}
	t.Logf("%d of %d order records are on another partition than murmur2's", misplaced, len(orders))

	var expected struct {
		Commands []struct {
			RequestID   string `json:"request_id"`
			CommandType string `json:"command_type"`
			OrderID     string `json:"order_id"`
			Points      int64  `json:"points"`
		} `json:"commands"`
	}
	b, err := os.ReadFile(filepath.Join(gen, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &expected); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, e := range expected.Commands {
		want[e.RequestID] = fmt.Sprintf("%s %s %d", e.OrderID, e.CommandType, e.Points)
	}

	startCLI(t, "run", "--config", cfg, "--instance-id", "0")
	serde, err := schemas.NewSerde(context.Background(), schemas.WithPhysicalTopics(names))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = map[string]string{}
		for _, r := range readAll(t, c, names[schemas.TopicCommands]) {
			e, err := serde.DecodeEvent(context.Background(), schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.Partition, Offset: r.Offset}, r.Value)
			if err != nil {
				t.Fatalf("command at %d/%d: %v", r.Partition, r.Offset, err)
			}
			if e.LoyaltyCommand == nil {
				t.Fatalf("record at %d/%d on the commands topic is a %s", r.Partition, r.Offset, e.EventType)
			}
			if prev, dup := got[e.LoyaltyCommand.RequestID]; dup {
				t.Fatalf("command %s twice (%s)", e.LoyaltyCommand.RequestID, prev)
			}
			got[e.LoyaltyCommand.RequestID] = commandSummary(e)
		}
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	var missing, extra, differ []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing = append(missing, w)
		case g != w:
			differ = append(differ, fmt.Sprintf("%s: got %s, want %s", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, g)
		}
	}
	sort.Strings(missing)
	if len(missing)+len(extra)+len(differ) > 0 {
		t.Fatalf("commands: %d expected, %d got; missing %d %v; unexpected %d %v; different %d %v",
			len(want), len(got), len(missing), head(missing), len(extra), head(extra), len(differ), head(differ))
	}
	if dl := readAll(t, c, names[schemas.TopicDLQ]); len(dl) != 0 {
		var why []string
		for _, r := range head2(dl) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			why = append(why, fmt.Sprintf("%s/%s@%s %s: %s", h[headers.SourceTopic], h[headers.SourcePartition],
				h[headers.SourceOffset], h[headers.ErrorClassKey], h[headers.ErrorMessage]))
		}
		t.Fatalf("%d records dead-lettered, want none: %v", len(dl), why)
	}
}

func commandSummary(e *schemas.Event) string {
	cmd := e.LoyaltyCommand
	return fmt.Sprintf("%s %s %d", cmd.OrderID, cmd.CommandType, cmd.Points)
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

func head2[T any](s []T) []T {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
