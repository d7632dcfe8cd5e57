package ops_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/retailflow/retailflow/connectors/ops"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	var ready ops.Readiness
	srv := httptest.NewServer(ops.NewServer("unused:0", reg, ready.Check).Handler())
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before any state = %d %q, want 503 naming 'starting'", code, body)
	}
	ready.SetNotReady("restoring partitions [0 3]")
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "restoring partitions [0 3]") {
		t.Errorf("/readyz while restoring = %d %q, want 503 with the reason", code, body)
	}
	ready.SetReady()
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz after SetReady = %d %q, want 200 ready", code, body)
	}
	ready.SetNotReady("partitions revoked, rejoining")
	if code, _ := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after SetNotReady = %d, want 503", code)
	}
	if code, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
	if code, body := get(t, srv.URL+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics = %d %q, want 200", code, body)
	}
}

// A check that blocks is cut off by the probe timeout and answers 503, so the kubelet sees a
// failed probe rather than a hung connection.
func TestReadyzTimesOut(t *testing.T) {
	blocking := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	srv := httptest.NewServer(ops.NewServer("unused:0", prometheus.NewRegistry(), blocking).Handler())
	defer srv.Close()
	start := time.Now()
	code, body := get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "timed out") {
		t.Errorf("/readyz with a blocking check = %d %q, want 503 deadline exceeded", code, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("/readyz took %s, want it bounded by the probe timeout", d)
	}
}

func TestProcessorCheck(t *testing.T) {
	var (
		joined    bool
		restoring []int32
		fatal     error
	)
	check := ops.ProcessorCheck(func() (bool, []int32, error) { return joined, restoring, fatal })
	srv := httptest.NewServer(ops.NewServer("unused:0", prometheus.NewRegistry(), check).Handler())
	defer srv.Close()
	for _, step := range []struct {
		joined    bool
		restoring []int32
		fatal     error
		code      int
		body      string
	}{
		{false, nil, nil, 503, "not joined"},
		{true, []int32{0, 3}, nil, 503, "restoring state of partitions [0 3]"},
		{true, nil, nil, 200, "ready"},
		{true, nil, errors.New("producer fenced"), 503, "stopped after a fatal error (the process log has it)"},
	} {
		joined, restoring, fatal = step.joined, step.restoring, step.fatal
		code, body := get(t, srv.URL+"/readyz")
		if code != step.code || !strings.Contains(body, step.body) {
			t.Errorf("joined=%v restoring=%v fatal=%v: /readyz = %d %q, want %d containing %q",
				step.joined, step.restoring, step.fatal, code, body, step.code, step.body)
		}
	}
}

func TestCachedAndAll(t *testing.T) {
	var calls atomic.Int32
	down := errors.New("clickhouse 127.0.0.1:9000: connection refused")
	ping := func(context.Context) error {
		calls.Add(1)
		return down
	}
	c := ops.Cached(ping, time.Hour)
	for range 5 {
		if err := c(context.Background()); !errors.Is(err, down) {
			t.Fatalf("cached check = %v, want %v", err, down)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("underlying check ran %d times within the ttl, want 1", n)
	}
	var r ops.Readiness
	r.SetReady()
	if err := ops.All(r.Check, c)(context.Background()); !errors.Is(err, down) {
		t.Errorf("All(ready, down) = %v, want the failing check's error", err)
	}
	if err := ops.All(r.Check)(context.Background()); err != nil {
		t.Errorf("All(ready) = %v, want nil", err)
	}
}

// Run serves on a real listener and returns nil once its context is cancelled.
func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ops.NewServer(ln.Addr().String(), prometheus.NewRegistry(), nil).Serve(ctx, ln) }()
	if code, _ := get(t, "http://"+ln.Addr().String()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a nil check = %d, want 200", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func TestRunReportsListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = ops.NewServer(ln.Addr().String(), prometheus.NewRegistry(), nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Errorf("Run on a busy port = %v, want an error naming http.addr", err)
	}
}
