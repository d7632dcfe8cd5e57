package kafka

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConnLoggerWarnAndAbove: franz-go's own lines reach the application's slog handler at WARN
// and above only, even when the handler would take DEBUG (franz-go logs every request there).
func TestConnLoggerWarnAndAbove(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := Conn{Brokers: []string{"127.0.0.1:1"}, Logger: log}
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = cl.Ping(ctx)
	cancel()
	cl.Close()
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "component=franz-go") || !strings.Contains(out, "127.0.0.1:1") {
		t.Fatalf("no franz-go WARN line about the unreachable broker:\n%s", out)
	}
	if strings.Contains(out, "level=DEBUG") || strings.Contains(out, "level=INFO") {
		t.Errorf("franz-go lines below WARN passed:\n%s", out)
	}
}

func TestParseOffsetReset(t *testing.T) {
	for in, want := range map[string]OffsetReset{"": ResetNone, "none": ResetNone, "earliest": ResetEarliest, "latest": ResetLatest} {
		if got, err := ParseOffsetReset(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	if _, err := ParseOffsetReset("smallest"); err == nil || !strings.Contains(err.Error(), "none, earliest, latest") {
		t.Errorf("smallest: %v", err)
	}
}

func TestOffsetsLostErrorMessage(t *testing.T) {
	e := &OffsetsLostError{Group: "g", Topic: "retail.orders.v1", Partition: 3, Committed: 10, LogStart: 25, LogEnd: 30}
	if msg := e.Error(); !strings.Contains(msg, "retail.orders.v1[3]: offsets 10–24 (15 records) were deleted before group g consumed them") {
		t.Errorf("message: %s", msg)
	}
	e = &OffsetsLostError{Group: "g", Topic: "t", Partition: 0, Committed: 50, LogStart: 0, LogEnd: 20}
	if msg := e.Error(); !strings.Contains(msg, "committed offset 50 but the log now ends at 20: offsets 20–49 are gone") {
		t.Errorf("message: %s", msg)
	}
}
