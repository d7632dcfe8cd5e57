package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkDeadLetterSurvivesProduceFailures (issue 11 item 5): a record whose rows ClickHouse
// refuses, whose value is near the broker's maximum message size (its dead letter, value
// included, is larger than the maximum), while the DLQ topic does not exist. The sink must not
// end Run (a restart would meet the same record again): it reports not ready and retries until
// the topic exists, then produces the dead letter without the value but with a reference to
// the original's coordinates, and moves on.
func TestSinkDeadLetterSurvivesProduceFailures(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	e := newEnv(t, 1)
	if err := e.conn.Exec(ctx, "ALTER TABLE "+e.db+".shipment_lines ADD COLUMN guard UInt8 MATERIALIZED throwIf(startsWith(sku, 'POISON'))"); err != nil {
		t.Fatal(err)
	}
	tr := faultyTraffic(t, 21, 10, 0)
	exp := tr.Expected(time.Now())
	e.produceTraffic(t, tr, exp)
	var evs []*schemas.Event
	for _, r := range tr.Records {
		if !r.Duplicate {
			evs = append(evs, r.Event)
		}
	}
	// one shipment line whose SKU makes the record ≈ 999 900 bytes: it fits franz-go's and the
	// broker's limits (1 000 012 / 1 048 588), its dead letter with the server's message does not
	poison := e.poisonShipment(t, evs, 1, "POISON-"+strings.Repeat("x", 999_500))[0]
	t.Logf("poison record: %d bytes at %s[%d]@%d", len(poison.Value), poison.Topic, poison.Partition, poison.Offset)
	if _, err := e.adm.DeleteTopics(ctx, e.topics[schemas.TopicDLQ]); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	m, err := ops.NewSinkMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ready := &ops.Readiness{}
	ready.SetReady()
	o := e.sinkOptions()
	o.Metrics, o.Ready, o.MaxRetryWait = m, ready, 500*time.Millisecond
	o.MaxDeadLetterBytes = 8 << 20 // let the broker's limit decide
	o.Kafka = append(o.Kafka, kgo.RecordDeliveryTimeout(2*time.Second))
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := NewSink(o)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for counterSum(t, reg, "retailflow_sink_blocked_total", "reason", "dlq-produce") < 2 {
		select {
		case err := <-done:
			t.Fatalf("Run ended while the dead letter could not be produced: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink never failed to produce the dead letter (blocked: %s)", blockedReasons(t, reg))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := ready.Check(ctx); err == nil {
		t.Error("ready while dead letters cannot be produced")
	}
	if _, err := e.adm.CreateTopics(ctx, 1, 1, nil, e.topics[schemas.TopicDLQ]); err != nil {
		t.Fatal(err)
	}
	e.caughtUp(t, 60*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ready.Check(ctx); err != nil {
		t.Errorf("not ready after the dead letter went out: %v", err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.ConsumeTopics(e.topics[schemas.TopicDLQ]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	recs := cl.PollFetches(pctx).Records()
	if len(recs) != 1 {
		t.Fatalf("DLQ topic has %d records, want 1", len(recs))
	}
	d, err := schemas.Decode[schemas.DeadLetter](ctx, e.serde, schemas.RecordRef{Topic: schemas.TopicDLQ}, recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{}
	for _, h := range recs[0].Headers {
		hdr[h.Key] = string(h.Value)
	}
	ref := fmt.Sprintf("%s/%d/%d", poison.Topic, poison.Partition, poison.Offset)
	if d.Value != nil || hdr[headers.ValueDropped] != "true" || hdr[HeaderValueRef] != ref ||
		d.SourceTopic != poison.Topic || d.SourceOffset != poison.Offset || !strings.Contains(d.ErrorMessage, "throwIf") {
		t.Errorf("dead letter: value %d bytes, headers %v, source %s@%d, message %q; want no value, a reference %s and the server's message",
			len(d.Value), hdr, d.SourceTopic, d.SourceOffset, d.ErrorMessage, ref)
	}
	// the reference resolves to the original bytes
	rc, err := kgo.NewClient(kgo.SeedBrokers(brokers()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		poison.Topic: {poison.Partition: kgo.NewOffset().At(poison.Offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	orig := rc.PollRecords(pctx, 1).Records()
	if len(orig) != 1 || len(orig[0].Value) != len(poison.Value) {
		t.Errorf("the reference %s does not lead back to the original record", ref)
	}
	compareViews(t, e.viewRows(t), exp.Views)
}
