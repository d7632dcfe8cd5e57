package clickhouse

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDLQMessageEncodedOnce: the sink's dead letter is encoded once for all its produce
// attempts (a broker that refuses it for minutes used to cost an Avro encode per retry); only
// dropping the value encodes it again, once, and the record then names the original.
func TestDLQMessageEncodedOnce(t *testing.T) {
	ctx := context.Background()
	serde, err := schemas.NewSerde(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &schemas.DeadLetter{Key: []byte("O-1"), Value: bytes.Repeat([]byte("v"), 4096), SourceTopic: "retail.shipments.v1",
		SourcePartition: 2, SourceOffset: 41, ErrorClass: schemas.ClassInvalid, ErrorMessage: "clickhouse rejected rows for shipment_lines: x",
		FirstSeenAt: time.Unix(1_700_000_000, 0).UTC(), Attempt: 1}
	m, err := newDLQMessage(serde, d, false)
	if err != nil {
		t.Fatal(err)
	}
	first := m.record()
	// an attempt allocates its record and nothing else: no encode
	if n := testing.AllocsPerRun(100, func() { _ = m.record() }); n > 1 {
		t.Errorf("a produce attempt allocates %.0f times; want 1 (the record), the value encoded once", n)
	}
	again := m.record()
	if again == first || &again.Value[0] != &first.Value[0] || string(again.Key) != "O-1" {
		t.Error("attempts must be new records sharing one encoded value")
	}
	got, err := schemas.Decode[schemas.DeadLetter](ctx, serde, schemas.RecordRef{Topic: schemas.TopicDLQ}, first.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Value, d.Value) || got.SourceOffset != 41 || got.ErrorMessage != d.ErrorMessage {
		t.Errorf("decoded dead letter: %+v", got)
	}
	if hdrs(first)[HeaderOrigin] != "sink-insert" || len(first.Headers) != 1 {
		t.Errorf("headers %v, want the origin only", first.Headers)
	}

	// MESSAGE_TOO_LARGE: the value goes, once, however often it is asked
	for range 2 {
		if err := m.dropValue(); err != nil {
			t.Fatal(err)
		}
	}
	dropped := m.record()
	if &dropped.Value[0] == &first.Value[0] || len(dropped.Value) >= len(first.Value) {
		t.Error("dropping the value did not encode the dead letter again")
	}
	got, err = schemas.Decode[schemas.DeadLetter](ctx, serde, schemas.RecordRef{Topic: schemas.TopicDLQ}, dropped.Value)
	if err != nil {
		t.Fatal(err)
	}
	h := hdrs(dropped)
	if got.Value != nil || len(dropped.Headers) != 3 || h[headers.ValueDropped] != "true" || h[HeaderValueRef] != "retail.shipments.v1/2/41" {
		t.Errorf("dropped: value %d bytes, headers %v; want no value, rf.value.dropped and the reference once", len(got.Value), dropped.Headers)
	}
	if n := testing.AllocsPerRun(100, func() { _ = m.record() }); n > 1 {
		t.Errorf("after the drop an attempt allocates %.0f times; want 1", n)
	}
}

func hdrs(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}
