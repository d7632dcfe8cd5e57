package dlq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

type fixture struct {
	conn  kafka.Conn
	serde *schemas.Serde
	cl    *kgo.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "shipments", "commands", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	conn := kafka.Conn{Brokers: c.ListenAddrs(), Timeout: 5 * time.Second}
	serde, err := schemas.NewSerde(context.Background(), schemas.WithPhysicalTopics(map[schemas.Topic]string{
		schemas.TopicOrders: "orders", schemas.TopicShipments: "shipments", schemas.TopicCommands: "commands", schemas.TopicDLQ: "dlq"}))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(conn.Options(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &fixture{conn: conn, serde: serde, cl: cl}
}

// dead produces one DLQ record the way the runtime (or, with origin, the sink) writes it.
func (f *fixture) dead(t *testing.T, d schemas.DeadLetter, origin string, extra ...kgo.RecordHeader) {
	t.Helper()
	v, err := schemas.Encode(f.serde, schemas.TopicDLQ, &d)
	if err != nil {
		t.Fatal(err)
	}
	h := append([]kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-01")}}, extra...)
	h = append(h, kgo.RecordHeader{Key: headers.SourceTopic, Value: []byte(d.SourceTopic)},
		kgo.RecordHeader{Key: headers.ErrorClassKey, Value: []byte(d.ErrorClass)})
	if origin != "" {
		h = []kgo.RecordHeader{{Key: clickhouse.HeaderOrigin, Value: []byte(origin)}}
	}
	r := &kgo.Record{Topic: "dlq", Partition: d.SourcePartition, Key: d.Key, Value: v, Headers: h}
	if err := f.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) replay(t *testing.T, filter Filter, dry bool) (Result, []Line) {
	t.Helper()
	var out bytes.Buffer
	res, err := Replay(context.Background(), Options{Conn: f.conn, DLQ: "dlq", Sources: []string{"orders", "shipments"},
		TransactionalID: "test-replay", Serde: f.serde, Filter: filter, DryRun: dry, MaxPerTxn: 2, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	var lines []Line
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var ln Line
		if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ln)
	}
	return res, lines
}

func (f *fixture) records(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	var got []*kgo.Record
	if err := readTopic(context.Background(), f.conn, topic, func(r *kgo.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestReplayOnceWhateverTheFilter(t *testing.T) {
	f := newFixture(t)
	id := "ev-1"
	seen := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	f.dead(t, schemas.DeadLetter{Key: []byte("O-1"), Value: []byte("\x00\x00\x00\x03\x99body"), SourceTopic: "orders", SourcePartition: 1, SourceOffset: 7,
		ErrorClass: schemas.ClassUnknownSchema, ErrorMessage: "schema id 3 is not registered", FirstSeenAt: seen, Attempt: 1, EventID: &id}, "")
	f.dead(t, schemas.DeadLetter{Key: []byte("O-2"), Value: []byte("ledger-bytes"), SourceTopic: "shipments", SourcePartition: 2, SourceOffset: 3,
		ErrorClass: "ledger", ErrorMessage: "too many events", FirstSeenAt: seen.Add(time.Hour), Attempt: 1}, "")
	f.dead(t, schemas.DeadLetter{Key: []byte("O-3"), Value: []byte("x"), SourceTopic: "orders", SourcePartition: 0, SourceOffset: 1,
		ErrorClass: schemas.ClassInvalid, ErrorMessage: "clickhouse rejected rows", Attempt: 1}, "sink-insert")
	f.dead(t, schemas.DeadLetter{Value: []byte("y"), SourceTopic: "orders", SourcePartition: 0, SourceOffset: 2,
		ErrorClass: headers.ClassNoKey, ErrorMessage: "no key", Attempt: 1}, "")
	f.dead(t, schemas.DeadLetter{Key: []byte("O-4"), Value: []byte("z"), SourceTopic: "commands", SourcePartition: 0, SourceOffset: 9,
		ErrorClass: schemas.ClassAvro, ErrorMessage: "bad", Attempt: 1}, "")

	// A dry run prints and sends nothing.
	res, lines := f.replay(t, Filter{}, true)
	if res.Read != 5 || res.Replayed != 2 || res.Unreplayable != 3 || len(lines) != 5 {
		t.Fatalf("dry run: %+v, %d lines", res, len(lines))
	}
	if n := len(f.records(t, "orders")) + len(f.records(t, "shipments")); n != 0 {
		t.Fatalf("dry run sent %d records", n)
	}
	for _, ln := range lines {
		if ln.Action == "unreplayable" && ln.Reason == "" {
			t.Errorf("unreplayable without a reason: %+v", ln)
		}
	}

	// Only the unknown-schema record.
	res, lines = f.replay(t, Filter{Classes: []string{"unknown-schema"}}, false)
	if res.Replayed != 1 || len(lines) != 1 || lines[0].Action != "replayed" || lines[0].To != "orders/1" {
		t.Fatalf("filtered replay: %+v %+v", res, lines)
	}
	got := f.records(t, "orders")
	if len(got) != 1 {
		t.Fatalf("orders has %d records, want the 1 replay", len(got))
	}
	r := got[0]
	if string(r.Key) != "O-1" || string(r.Value) != "\x00\x00\x00\x03\x99body" || r.Partition != 1 {
		t.Fatalf("replay is not the original: key %q value %q partition %d", r.Key, r.Value, r.Partition)
	}
	of, attempt, ok := ReplayInfo(r.Headers)
	if !ok || of != "dlq/1/0" || attempt != 2 || headerValue(r.Headers, "traceparent") != "00-abc-01" || headerValue(r.Headers, headers.ErrorClassKey) != "" {
		t.Fatalf("replay headers %v", r.Headers)
	}

	// Again, without the filter: the first is already replayed, the ledger one goes now.
	res, _ = f.replay(t, Filter{}, false)
	if res.Replayed != 1 || res.AlreadyReplayed != 1 || res.Unreplayable != 3 {
		t.Fatalf("second replay: %+v", res)
	}
	res, _ = f.replay(t, Filter{}, false)
	if res.Replayed != 0 || res.AlreadyReplayed != 2 {
		t.Fatalf("third replay: %+v", res)
	}
	if n, m := len(f.records(t, "orders")), len(f.records(t, "shipments")); n != 1 || m != 1 {
		t.Fatalf("orders %d shipments %d records, want 1 and 1", n, m)
	}

	// A replay rejected again carries the replay headers into its new DLQ record (the runtime
	// copies the input's headers): the next replay is attempt 3 and points at the new record.
	f.dead(t, schemas.DeadLetter{Key: []byte("O-1"), Value: r.Value, SourceTopic: "orders", SourcePartition: 1, SourceOffset: r.Offset,
		ErrorClass: schemas.ClassUnknownSchema, ErrorMessage: "still unknown", Attempt: 1}, "", r.Headers...)
	if _, lines = f.replay(t, Filter{Since: time.Now().Add(time.Hour)}, true); len(lines) != 0 {
		t.Fatalf("a since filter in the future matched %+v", lines)
	}
	if _, lines = f.replay(t, Filter{Since: seen.Add(time.Minute), Topics: []string{"shipments"}}, true); len(lines) != 1 || lines[0].Action != "already-replayed" {
		t.Fatalf("since+topic filter: %+v", lines)
	}
	_, lines = f.replay(t, Filter{Topics: []string{"orders"}, Classes: []string{"unknown-schema"}}, true)
	var again *Line
	for i := range lines {
		if lines[i].Action == "would-replay" {
			again = &lines[i]
		}
	}
	if again == nil || again.Attempt != 3 || again.Headers[headers.ReplayOf] != again.DLQ || strings.Count(headerKeys(again.Headers), headers.ReplayOf) != 1 {
		t.Fatalf("re-replay: %+v", lines)
	}
}

func headerKeys(h map[string]string) string {
	var b strings.Builder
	for k := range h {
		b.WriteString(k + " ")
	}
	return b.String()
}

func TestParseFilter(t *testing.T) {
	names := func(s string) (string, error) {
		if s == "orders" {
			return "retail.orders.v1", nil
		}
		return "", &kafkaNameError{s}
	}
	f, err := ParseFilter([]string{"error-class=unknown-schema", "topic=orders", "since=2026-11-02T10:00:00Z", "error-class=ledger"}, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Classes) != 2 || f.Topics[0] != "retail.orders.v1" || f.Since.IsZero() {
		t.Fatalf("%+v", f)
	}
	for _, bad := range []string{"class", "colour=red", "since=yesterday", "topic=nosuch", "topic="} {
		if _, err := ParseFilter([]string{bad}, names); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: error %v does not quote the filter", bad, err)
		}
	}
}

type kafkaNameError struct{ name string }

func (e *kafkaNameError) Error() string { return e.name + " is not a topic" }

// The sink's origin header is one Replay recognises sink-written DLQ records by.
func TestOriginHeaderIsTheSinks(t *testing.T) {
	if !slices.Contains(headers.Names(headers.Origin), clickhouse.HeaderOrigin) {
		t.Fatalf("clickhouse.HeaderOrigin %q is not a name of %s (%v)", clickhouse.HeaderOrigin, headers.Origin, headers.Names(headers.Origin))
	}
}

// Records replayed before the rf. header names are still in the DLQ: their lineage reads the
// same, and a new replay of one writes the current names only.
func TestReplayHeadersLegacyAndCurrent(t *testing.T) {
	for _, h := range [][]kgo.RecordHeader{
		{{Key: headers.LegacyReplayOf, Value: []byte("dlq/0/7")}, {Key: headers.LegacyReplayAttempt, Value: []byte("2")}},
		{{Key: headers.ReplayOf, Value: []byte("dlq/0/7")}, {Key: headers.ReplayAttempt, Value: []byte("2")}},
	} {
		of, attempt, ok := ReplayInfo(h)
		if !ok || of != "dlq/0/7" || attempt != 2 {
			t.Fatalf("ReplayInfo(%v) = %q %d %v", h, of, attempt, ok)
		}
		l := &Letter{Topic: "dlq", Partition: 1, Offset: 9, Headers: append(h, kgo.RecordHeader{Key: "traceparent", Value: []byte("x")}),
			Dead: &schemas.DeadLetter{Key: []byte("O-1"), Value: []byte{0}, SourceTopic: "orders", Attempt: 1}}
		rec := l.record()
		var keys []string
		for _, x := range rec.Headers {
			keys = append(keys, x.Key)
		}
		want := []string{"traceparent", headers.ReplayOf, headers.ReplayAttempt}
		if !slices.Equal(keys, want) || string(rec.Headers[1].Value) != "dlq/1/9" || string(rec.Headers[2].Value) != "3" {
			t.Fatalf("replay headers %v (%v), want %v with dlq/1/9 and attempt 3", keys, rec.Headers, want)
		}
	}
}
