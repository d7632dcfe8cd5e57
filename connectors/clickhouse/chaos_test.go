package clickhouse

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMain doubles as the sink process of the crash tests: with RF_SINK_CHILD set, the test
// binary runs one sink until SIGTERM (or until it is SIGKILLed) instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("RF_SINK_CHILD") != "" {
		os.Exit(runChildSink())
	}
	code := m.Run()
	if cliBin != "" {
		os.RemoveAll(filepath.Dir(cliBin))
	}
	os.Exit(code)
}

type childSpec struct {
	Topics   map[schemas.Topic]string
	Database string
	Group    string
	CHAddr   string
}

func runChildSink() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv("RF_SINK_CHILD")), &spec); err != nil {
		slog.Error("child spec", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(spec.Topics))
	if err != nil {
		slog.Error("serde", "err", err)
		return 1
	}
	conn, err := Connect(Conn{Addr: spec.CHAddr, Database: spec.Database, Username: "default", DialTimeout: time.Second})
	if err != nil {
		slog.Error("clickhouse", "err", err)
		return 1
	}
	defer conn.Close()
	// a short session: a SIGKILLed member leaves the group quickly, so the restarted sink resumes soon
	kopts := []kgo.Opt{kgo.SeedBrokers(brokers()...), kgo.SessionTimeout(3 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.InstanceID(spec.Group + "-0")}
	s, err := NewSink(SinkOptions{Kafka: kopts, Group: spec.Group, Topics: spec.Topics,
		Serde: serde, Conn: conn, Database: spec.Database, Changelog: true, BatchRows: 2000, BatchTimeout: 200 * time.Millisecond,
		MinInsertInterval: 200 * time.Millisecond, MaxRetryWait: time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		slog.Error("sink", "err", err)
		return 1
	}
	if err := s.Run(ctx); err != nil {
		slog.Error("sink run", "err", err)
		return 1
	}
	return 0
}

// tcpProxy stands between the sink and ClickHouse so a test can cut the connection (an outage
// as the sink sees it) without stopping the server other tests share.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

type child struct {
	cmd    *exec.Cmd
	done   chan error
	exited bool
	err    error
}

// check fails the test if the process has exited on its own.
func (c *child) check(t *testing.T) {
	t.Helper()
	if !c.exited {
		select {
		case c.err = <-c.done:
			c.exited = true
		default:
			return
		}
	}
	t.Fatalf("%s exited early: %v", strings.Join(c.cmd.Args, " "), c.err)
}

func startChild(t *testing.T, spec childSpec, logf *os.File) *child {
	t.Helper()
	b, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RF_SINK_CHILD="+string(b))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	if !c.exited {
		<-c.done
	}
}

func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if c.exited {
		t.Errorf("%s had exited before SIGTERM: %v", strings.Join(c.cmd.Args, " "), c.err)
		return
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("sink exited after SIGTERM with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("sink did not stop within 20s of SIGTERM")
		c.kill(t)
	}
}

// TestSinkSurvivesKillsAndOutage: the sink is SIGKILLed twice while records flow, and ClickHouse
// becomes unreachable in the middle (a cut proxy for 5 s by default; with RETAILFLOW_CHAOS=1 the
// shared server itself is stopped for 60 s with infra/local.sh). The views must equal the
// oracle's (the undisturbed result) and no table may hold a duplicate row after FINAL.
func TestSinkSurvivesKillsAndOutage(t *testing.T) {
	needsServices(t)
	chaos := os.Getenv("RETAILFLOW_CHAOS") != ""
	e := newEnv(t, 3)
	tr := faultyTraffic(t, 11, 200, 0)
	exp := tr.Expected(time.Now())
	// produce in two halves: the second one arrives while the sink is being killed
	half := *tr
	half.Records = tr.Records[:len(tr.Records)/2]
	rest := *tr
	rest.Records = tr.Records[len(tr.Records)/2:]
	n := e.produceTraffic(t, &half, exp)

	chAddr := chAddrFromEnv()
	var proxy *tcpProxy
	if !chaos {
		proxy = newProxy(t, chAddr)
		chAddr = proxy.addr()
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "sink.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("sink log:\n%s", b)
		}
	}()
	spec := childSpec{Topics: e.topics, Database: e.db, Group: e.group, CHAddr: chAddr}

	c := startChild(t, spec, logf)
	time.Sleep(1500 * time.Millisecond)
	c.kill(t) // kill 1: mid-stream
	c = startChild(t, spec, logf)
	time.Sleep(800 * time.Millisecond)

	outage := 5 * time.Second
	if chaos {
		outage = 60 * time.Second
		runInfra(t, "ch-stop")
	} else {
		proxy.cut()
	}
	n += e.produceRecords(t, &rest) // arrives while ClickHouse is away
	time.Sleep(outage / 3)
	c.kill(t) // kill 2: while ClickHouse is away, with rows buffered and uncommitted
	c = startChild(t, spec, logf)
	time.Sleep(outage - outage/3)
	if chaos {
		runInfra(t, "ch-start")
	} else {
		proxy.restore()
	}
	start := time.Now()
	e.caughtUp(t, 180*time.Second)
	t.Logf("%d records; caught up %s after ClickHouse came back", n, time.Since(start).Round(time.Millisecond))
	c.stop(t)
	if b, _ := os.ReadFile(logf.Name()); !strings.Contains(string(b), "fetching paused, retrying") {
		t.Error("the sink never saw the outage (no retry in its log): the test did not test it")
	}

	compareViews(t, e.viewRows(t), exp.Views)
	e.checkTotals(t, exp.Totals)
	e.noDuplicates(t)
}

func runInfra(t *testing.T, what string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "infra", "local.sh")
	// output to a file, not a pipe: the server ch-start launches (and its wrapper) would hold a
	// pipe open, and Wait would block until the server exits
	out, err := os.CreateTemp(t.TempDir(), "infra-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, what)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	if err != nil {
		t.Fatalf("infra/local.sh %s: %v\n%s", what, err, b)
	}
	if what == "ch-stop" {
		if c, err := net.DialTimeout("tcp", chAddrFromEnv(), time.Second); err == nil {
			c.Close()
			t.Fatalf("infra/local.sh ch-stop returned but ClickHouse still answers on 9000 (its pid file names "+
				"another process?); this test cannot produce the outage\n%s", b)
		}
	}
}
