package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/schemas"
)

// The redacted form keeps the length and a digest, nothing of the content; full keeps the value.
func TestDeadLetterValuesApply(t *testing.T) {
	value := []byte(`{"customer_id":"C-4711","loyalty_member_id":"M-4711","ship_to":{"postcode":"10115"}}`)
	rows := func() []Row {
		return []Row{{Table: "dead_letters", Values: map[string]any{"record_value": string(value)}},
			{Table: "orders", Values: map[string]any{"record_value": "untouched"}}}
	}
	red := DeadLetterRedacted.Apply(rows(), value)
	got := red[0].Values["record_value"].(string)
	if strings.Contains(got, "4711") || strings.Contains(got, "10115") || !strings.HasPrefix(got, fmt.Sprintf("<redacted %d bytes sha256:", len(value))) {
		t.Errorf("redacted value = %q", got)
	}
	if red[1].Values["record_value"] != "untouched" {
		t.Errorf("a row of another table was changed")
	}
	if got := DeadLetterFull.Apply(rows(), value)[0].Values["record_value"]; got != string(value) {
		t.Errorf("full value = %q", got)
	}
	if RedactedValue(nil) != "" {
		t.Errorf("a missing value must stay empty")
	}
	for in, want := range map[string]DeadLetterValues{"": DeadLetterRedacted, "redacted": DeadLetterRedacted, "full": DeadLetterFull} {
		if got, err := ParseDeadLetterValues(in); err != nil || got != want {
			t.Errorf("ParseDeadLetterValues(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseDeadLetterValues("none"); err == nil {
		t.Errorf("ParseDeadLetterValues(none) accepted")
	}
}

// TestDeadLettersRedactedAndPurgedByMonth: the sink stores dead letters (the runtime's, from the
// DLQ topic, and one it could not decode itself) in dead_letters with their values redacted by
// default, partitioned by the month they were first seen; PurgeDeadLetters drops the months
// that ended before the cutoff (and with dryRun only reports them), nothing younger.
func TestDeadLettersRedactedAndPurgedByMonth(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 1)
	personal := []byte(`{"customer_id":"C-918273","loyalty_member_id":"M-918273","ship_to":{"postcode":"80331"}}`)
	seen := []time.Time{
		time.Date(2025, 1, 20, 8, 0, 0, 0, time.UTC),
		time.Date(2025, 6, 30, 23, 59, 59, 0, time.UTC),
		time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC),
	}
	var recs []*kgo.Record
	for i, at := range seen {
		eid := fmt.Sprintf("ev-%d", i)
		d := &schemas.DeadLetter{Key: []byte("O-1"), Value: personal, SourceTopic: e.topics[schemas.TopicOrders], SourcePartition: 0,
			SourceOffset: int64(100 + i), EventID: &eid, ErrorClass: schemas.ClassInvalid, ErrorMessage: "invalid", FirstSeenAt: at, Attempt: 1}
		v, err := schemas.Encode(e.serde, schemas.TopicDLQ, d)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: e.topics[schemas.TopicDLQ], Key: []byte("O-1"), Value: v})
	}
	// an input record the sink cannot decode: a dead_letters row of its own (origin sink-decode)
	recs = append(recs, &kgo.Record{Topic: e.topics[schemas.TopicOrders], Key: []byte("O-2"), Value: personal,
		Timestamp: time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC)})
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.drain(t, e.sinkOptions(), time.Minute)

	q := func(sql string) []string {
		t.Helper()
		return stringRows(t, e.conn, sql)
	}
	values := q(fmt.Sprintf("SELECT concat(origin, ' ', toString(toYYYYMM(seen_at)), ' ', record_value) FROM %s.dead_letters FINAL ORDER BY source_offset", e.db))
	if len(values) != 4 {
		t.Fatalf("dead_letters rows: %q, want 4", values)
	}
	for _, v := range values {
		if strings.Contains(v, "918273") || strings.Contains(v, "80331") || !strings.Contains(v, RedactedValue(personal)) {
			t.Errorf("dead_letters row %q: want the value redacted to %q", v, RedactedValue(personal))
		}
	}
	months := strings.Join(q(fmt.Sprintf("SELECT DISTINCT partition FROM system.parts WHERE database = '%s' AND table = 'dead_letters' AND active ORDER BY partition", e.db)), " ")
	if months != "202501 202506 202507" {
		t.Fatalf("dead_letters partitions %q, want 202501 202506 202507", months)
	}

	cutoff := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC) // January and June have ended, July has not
	dry, err := PurgeDeadLetters(ctx, e.conn, e.db, cutoff, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(dry); got != "[{202501 2 false true} {202506 1 false true} {202507 1 false false}]" {
		t.Errorf("dry run: %s", got)
	}
	if n := len(q(fmt.Sprintf("SELECT source_topic FROM %s.dead_letters", e.db))); n != 4 {
		t.Errorf("the dry run removed rows: %d left", n)
	}
	done2, err := PurgeDeadLetters(ctx, e.conn, e.db, cutoff, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(done2); got != "[{202501 2 true true} {202506 1 true true} {202507 1 false false}]" {
		t.Errorf("purge: %s", got)
	}
	if left := q(fmt.Sprintf("SELECT toString(toYYYYMM(seen_at)) FROM %s.dead_letters FINAL", e.db)); strings.Join(left, " ") != "202507" {
		t.Errorf("after the purge: months %q, want only 202507", left)
	}
}
