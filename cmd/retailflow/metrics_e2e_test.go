package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) (int, string) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricSum adds up every sample of a metric whose labels contain all of want.
func metricSum(body, name string, want ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ok := true
		for _, w := range want {
			if !strings.Contains(m[1], w) {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestMetricsAndReadinessOfALiveRun scrapes /metrics and /readyz of `retailflow run` while it
// works through generated traffic: /readyz answers 503 until the group is joined and every
// assigned partition is restored from the changelog, and the counters end where the traffic
// and the oracle say — records consumed per topic, commands produced, dead letters per class.
func TestMetricsAndReadinessOfALiveRun(t *testing.T) {
	needServices(t)
	cfg := testConfig(t, 2)
	if _, stderr, code := runCLI(t, "", "topics", "create", "--config", cfg); code != 0 {
		t.Fatalf("topics create: %s", stderr)
	}
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 150, MalformedRate: 0.1, DuplicateRate: 0.05,
		Faults: generate.Faults{WithheldAccrual: 0.1, ShortReversal: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var stdout syncBuffer
	app := &App{Stdout: &stdout, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	if err := produceTraffic(ctx, app, c, tr, 0); err != nil {
		t.Fatalf("produce traffic: %v", err)
	}
	names := c.TopicNames()
	perTopic := map[schemas.Topic]int{}
	dead := map[schemas.ErrorClass]int{}
	for _, r := range tr.Records {
		perTopic[r.Topic]++
		if r.Malformed != "" {
			dead[r.Class]++
		}
	}
	commands := len(tr.Expected(time.Now()).Commands)

	// A first run fills the changelog, so the second one has something to restore.
	addr := freeAddr(t)
	withHTTP := cfg + ".http.yaml"
	body, _ := os.ReadFile(cfg)
	if err := os.WriteFile(withHTTP, append(body, []byte("http:\n  addr: "+addr+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan int, 1)
	var runErr syncBuffer
	go func() {
		done <- runContext(runCtx, []string{"run", "--config", withHTTP, "--instance-id", "0"}, strings.NewReader(""), &syncBuffer{}, &runErr)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopRun()
			if code := <-done; code != 0 {
				t.Errorf("run exited %d: %s", code, runErr.String())
			}
		}
	}
	defer stop()

	base := "http://" + addr
	sawNotReady := false
	var readyBody string
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, b := httpGet(base + "/readyz")
		if code == http.StatusServiceUnavailable {
			sawNotReady = true
		}
		if code == http.StatusOK {
			_, readyBody = httpGet(base + "/metrics")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became ready: %d %s; run stderr: %s", code, b, runErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, b := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, b)
	}
	// At the moment /readyz first says ready, no partition may still be restoring.
	if n := metricSum(readyBody, "retailflow_state_restore_remaining_records"); n != 0 {
		t.Errorf("ready while %v changelog records remain to restore", n)
	}
	if !sawNotReady {
		t.Log("/readyz was ready at the first poll (the group joined before the first request)")
	}

	// The counters reach what the traffic and the oracle say.
	var m string
	deadline = time.Now().Add(90 * time.Second)
	for {
		_, m = httpGet(base + "/metrics")
		if metricSum(m, "retailflow_records_produced_total", `topic="`+names[schemas.TopicCommands]+`"`) >= float64(commands) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commands produced = %v after 90s, want %d", metricSum(m, "retailflow_records_produced_total", `topic="`+names[schemas.TopicCommands]+`"`), commands)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // the DLQ and last input counters of the final transaction
	_, m = httpGet(base + "/metrics")
	if got := metricSum(m, "retailflow_records_produced_total", `topic="`+names[schemas.TopicCommands]+`"`); got != float64(commands) {
		t.Errorf("commands produced = %v, oracle says %d", got, commands)
	}
	for topic, n := range perTopic {
		if got := metricSum(m, "retailflow_records_consumed_total", `topic="`+names[topic]+`"`); got < float64(n) {
			t.Errorf("records consumed from %s = %v, %d were produced", names[topic], got, n)
		}
	}
	for class, n := range dead {
		if got := metricSum(m, "retailflow_records_dead_lettered_total", fmt.Sprintf(`class="%s"`, class)); got != float64(n) {
			t.Errorf("dead letters of class %s = %v, the generator made %d", class, got, n)
		}
	}
	if metricSum(m, "retailflow_transactions_committed_total") < 1 {
		t.Error("no committed transaction counted")
	}
	if metricSum(m, "retailflow_processing_latency_seconds_count") < 1 {
		t.Error("processing latency histogram is empty")
	}
	stop()

	// A second instance restores the changelog: /readyz is 503 until the restore is done.
	addr2 := freeAddr(t)
	withHTTP2 := cfg + ".http2.yaml"
	if err := os.WriteFile(withHTTP2, append(body, []byte("http:\n  addr: "+addr2+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan int, 1)
	var err2 syncBuffer
	go func() {
		done2 <- runContext(ctx2, []string{"run", "--config", withHTTP2, "--instance-id", "1"}, strings.NewReader(""), &syncBuffer{}, &err2)
	}()
	defer func() {
		stop2()
		if code := <-done2; code != 0 {
			t.Errorf("second run exited %d: %s", code, err2.String())
		}
	}()
	first := 0
	deadline = time.Now().Add(60 * time.Second)
	for {
		code, _ := httpGet("http://" + addr2 + "/readyz")
		if first == 0 && code != 0 {
			first = code
		}
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second instance never ready: %s", err2.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if first != http.StatusServiceUnavailable {
		t.Errorf("first /readyz answer of a restoring instance = %d, want 503", first)
	}
	_, m = httpGet("http://" + addr2 + "/metrics")
	if got := metricSum(m, "retailflow_state_restore_read_records"); got < 1 {
		t.Errorf("ready without having restored anything (restore_read_records = %v)", got)
	}
	if n := metricSum(m, "retailflow_state_restore_remaining_records"); n != 0 {
		t.Errorf("ready while %v records remain to restore", n)
	}
}
