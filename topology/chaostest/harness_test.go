package chaostest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// hookBanner is what cmd/retailflow/chaos_hooks.go writes just before it SIGKILLs itself, and
// hookArmed what it writes when chaosClientOpts is called with RETAILFLOW_CHAOS_KILL_AT set.
const (
	hookBanner = "chaoshooks: SIGKILL self"
	hookArmed  = "chaoshooks: armed"
	killAtEnv  = "RETAILFLOW_CHAOS_KILL_AT"
)

// maxRecordBytes is the max.message.bytes of the orders topic, so the oversized poison record
// (oversizeBytes) is accepted by the broker and reaches the processor; every other topic keeps
// the broker default (1 MiB), so the DLQ copy of that record must drop its value.
//
// dlqMaxValue: a value longer than this cannot travel in a dead letter (the runtime's producer
// keeps franz-go's default batch limit of 1 000 012 bytes, below the broker's 1 MiB), so its dead
// letter drops it. nearMaxKept and nearMaxDropped sit on either side, clear of the envelope's
// few hundred bytes.
const (
	maxRecordBytes = 2 << 20
	oversizeBytes  = 1536 << 10
	dlqMaxValue    = 1_000_000
	nearMaxKept    = 990_000
	nearMaxDropped = 1_000_100
)

// harness is one isolated pipeline on the shared services: its own topics, consumer groups and
// ClickHouse database, `retailflow run` instances and one `retailflow sink` kept alive by a
// supervisor, and a producer that remembers where every record it sent landed.
type harness struct {
	t      *testing.T
	p      params
	ctx    context.Context
	bin    string
	logDir string
	suffix string
	names  map[schemas.Topic]string
	group  string // the processor's consumer group; transactional ids are group-<instance>
	sink   string // the sink's consumer group
	db     string
	conn   kafka.Conn
	chAddr string
	serde  *schemas.Serde
	ch     driver.Conn
	prod   *kgo.Client
	rng    *rand.Rand

	mu       sync.Mutex
	slots    map[string]*slot
	sent     []sentRecord          // every record produced, in send order
	bySource map[string]int        // "topic/partition@offset" → index into sent
	produced map[schemas.Topic]int // records per logical topic
	prodErr  error
	restarts int // incarnations that ended without being stopped on purpose

	abortedSoFar  int           // aborted output records counted by earlier segments
	lastAbortedBy map[int64]int // the same per producer id

	// the sink's own ClickHouse user (infra/local.sh ch-user), so faults can rotate its password
	// or revoke its database without touching the user other tests share
	chUser, chPassword string
	sinkExtra          []string // extra environment of the sink's next incarnations (under mu)
}

// sentRecord is a produced record and where the broker put it.
type sentRecord struct {
	topic     schemas.Topic
	eventID   string // "" for bytes that carry none
	malformed bool   // the generator (or the harness) expects it in the DLQ
	oversized bool   // larger than the DLQ topic accepts: its dead letter must drop the value
	class     schemas.ErrorClass
	partition int32
	offset    int64
}

func newHarness(t *testing.T, p params) *harness {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + strconv.Itoa(rand.IntN(1000))
	h := &harness{
		t: t, p: p, ctx: ctx, suffix: suffix, names: map[schemas.Topic]string{},
		group: "chaos-" + suffix, sink: "chaos-" + suffix + "-sink", db: "chaos_" + suffix,
		conn:   kafka.Conn{Brokers: brokers(), Timeout: 10 * time.Second},
		chAddr: envOr("RETAILFLOW_CLICKHOUSE_ADDR", "127.0.0.1:9000"),
		rng:    rand.New(rand.NewPCG(p.seed, 0xc4a05)),
		slots:  map[string]*slot{}, bySource: map[string]int{}, produced: map[schemas.Topic]int{},
	}
	for _, tp := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		h.names[tp] = "chaos-" + suffix + "." + string(tp)
	}
	var err error
	if h.logDir, err = os.MkdirTemp("", "retailflow-chaos-"); err != nil {
		t.Fatal(err)
	}
	if err := kafka.Ping(ctx, h.conn); err != nil {
		t.Fatalf("Kafka is not running (infra/local.sh up): %v", err)
	}
	if h.serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(h.names)); err != nil {
		t.Fatal(err)
	}
	h.bin = h.buildBinary()

	var specs []kafka.TopicSpec
	for tp, name := range h.names {
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: p.partitions, ReplicationFactor: 1,
			Compacted: tp == schemas.TopicChangelog, CoPartitioned: true})
	}
	if _, err := kafka.EnsureTopics(ctx, h.conn, specs); err != nil {
		t.Fatal(err)
	}
	adm := h.admin()
	max := strconv.Itoa(maxRecordBytes)
	if rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &max}}, h.names[schemas.TopicOrders]); err != nil || rs[0].Err != nil {
		t.Fatalf("raise max.message.bytes of %s: %v %v", h.names[schemas.TopicOrders], err, rs)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return // keep topics, groups and database for the post-mortem
		}
		var topics []string
		for _, n := range h.names {
			topics = append(topics, n)
		}
		_, _ = adm.DeleteTopics(context.Background(), topics...)
		_, _ = adm.DeleteGroups(context.Background(), h.group, h.sink)
		if h.ch != nil {
			_ = h.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+h.db)
			h.ch.Close()
		}
		adm.Close()
	})

	// the CLI creates and migrates the database the sink writes
	cmd := exec.Command(h.bin, "migrate")
	cmd.Env = h.env("0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("retailflow migrate: %v\n%s", err, out)
	}
	if h.ch, err = clickhouse.Connect(clickhouse.Conn{Addr: h.chAddr, Database: h.db, Username: "default", DialTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h.chUser, h.chPassword = "chaos_"+suffix, "pw-"+suffix
	if err := h.grantSink(); err != nil {
		t.Fatalf("the sink's ClickHouse user (needs the server of infra/local.sh, RF_RUN_DIR): %v", err)
	}
	t.Cleanup(func() { _ = h.infra("ch-user-rm", h.chUser) })
	// Idempotent producer: a record the broker acknowledged once is there once, across broker
	// restarts, so every duplicate the oracles find is the pipeline's.
	if h.prod, err = kgo.NewClient(append(h.conn.Options(), kgo.MaxBufferedRecords(20000),
		kgo.ProducerBatchMaxBytes(maxRecordBytes), kgo.ProducerLinger(5*time.Millisecond))...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.prod.Close)
	return h
}

func brokers() []string {
	return strings.Split(envOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// buildBinary builds ./cmd/retailflow with -tags chaoshooks (or takes $RETAILFLOW_CHAOS_BIN, which
// must be such a build) and checks it has the commands the harness drives.
func (h *harness) buildBinary() string {
	bin := os.Getenv("RETAILFLOW_CHAOS_BIN")
	if bin == "" {
		bin = filepath.Join(h.logDir, "retailflow")
		_, file, _, _ := runtime.Caller(0)
		build := exec.Command("go", "build", "-tags", "chaoshooks", "-o", bin, "./cmd/retailflow")
		build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			h.t.Fatalf("go build -tags chaoshooks ./cmd/retailflow: %v\n%s", err, out)
		}
	}
	for _, sub := range []string{"run", "sink", "migrate"} {
		if out, err := exec.Command(bin, sub, "--help").CombinedOutput(); err != nil {
			h.t.Fatalf("%s has no %s command: %v\n%s", bin, sub, err, out)
		}
	}
	return bin
}

func (h *harness) admin() *kadm.Client {
	cl, err := kgo.NewClient(h.conn.Options()...)
	if err != nil {
		h.t.Fatal(err)
	}
	return kadm.NewClient(cl)
}

// env configures a child process (processor or sink) through RETAILFLOW_* variables.
func (h *harness) env(instance string) []string {
	env := os.Environ()
	keys := map[schemas.Topic]string{
		schemas.TopicOrders: "ORDERS", schemas.TopicShipments: "SHIPMENTS", schemas.TopicReturns: "RETURNS",
		schemas.TopicLoyalty: "LOYALTY", schemas.TopicERP: "ERP", schemas.TopicCommands: "COMMANDS",
		schemas.TopicChangelog: "CHANGELOG", schemas.TopicDLQ: "DLQ",
	}
	for tp, k := range keys {
		env = append(env, "RETAILFLOW_TOPICS_"+k+"="+h.names[tp])
	}
	return append(env,
		"RETAILFLOW_KAFKA_BROKERS="+strings.Join(h.conn.Brokers, ","),
		"RETAILFLOW_TOPICS_PARTITIONS="+strconv.Itoa(int(h.p.partitions)),
		"RETAILFLOW_RUNTIME_GROUP="+h.group,
		"RETAILFLOW_RUNTIME_INSTANCE_ID="+instance,
		// the broker's minimum is 2 s; 6 s moves a dead or paused member's partitions quickly
		// without expiring a live one on this busy machine
		"RETAILFLOW_RUNTIME_SESSION_TIMEOUT=6s",
		"RETAILFLOW_RUNTIME_REBALANCE_TIMEOUT=20s",
		"RETAILFLOW_RUNTIME_TRANSACTION_TIMEOUT=10s",
		"RETAILFLOW_SINK_GROUP="+h.sink,
		"RETAILFLOW_SINK_BATCH_TIMEOUT=200ms",
		"RETAILFLOW_SINK_MAX_RETRY_WAIT=2s",
		"RETAILFLOW_CLICKHOUSE_ADDR="+h.chAddr,
		"RETAILFLOW_CLICKHOUSE_DATABASE="+h.db,
		"RETAILFLOW_LOG_FORMAT=text",
		"RETAILFLOW_LOG_LEVEL=info",
		"RETAILFLOW_HTTP_ADDR=",
	)
}

// slot is one instance (a processor id, or the sink), restarted by the supervisor loop whenever
// it dies until it is stopped on purpose — what Kubernetes does for the StatefulSet.
type slot struct {
	id, cmdName string
	mu          sync.Mutex
	cmd         *exec.Cmd
	logPath     string
	stopped     bool
	armed       string        // RETAILFLOW_CHAOS_KILL_AT for the next start only
	exits       chan exitInfo // every exit, for the fault that waits on one
	starts      int
	done        chan struct{}
	exitErr     error // of the purposeful stop
}

// exitInfo is how one incarnation ended.
type exitInfo struct {
	log    string
	armed  string
	signal syscall.Signal // 0 when it exited by itself
	code   int
}

func (h *harness) startSlot(id, cmdName string) *slot {
	s := &slot{id: id, cmdName: cmdName, done: make(chan struct{}), exits: make(chan exitInfo, 64)}
	h.mu.Lock()
	h.slots[cmdName+"/"+id] = s
	h.mu.Unlock()
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			s.starts++
			s.logPath = filepath.Join(h.logDir, fmt.Sprintf("%s-%s-%03d.log", cmdName, id, s.starts))
			logf, err := os.Create(s.logPath)
			if err != nil {
				s.mu.Unlock()
				h.t.Error(err)
				return
			}
			cmd := exec.Command(h.bin, cmdName)
			cmd.Env = h.env(id)
			if cmdName == "sink" {
				h.mu.Lock()
				cmd.Env = append(append(cmd.Env, "RETAILFLOW_CLICKHOUSE_USERNAME="+h.chUser,
					"RETAILFLOW_CLICKHOUSE_PASSWORD="+h.chPassword), h.sinkExtra...)
				h.mu.Unlock()
			}
			armed := s.armed
			if armed != "" {
				cmd.Env = append(cmd.Env, killAtEnv+"="+armed)
				s.armed = ""
			}
			cmd.Stdout, cmd.Stderr = logf, logf
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				s.mu.Unlock()
				logf.Close()
				h.t.Error(err)
				return
			}
			s.cmd = cmd
			s.mu.Unlock()
			err = cmd.Wait()
			logf.Close()
			info := exitInfo{log: logf.Name(), armed: armed}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				ws := ee.Sys().(syscall.WaitStatus)
				if ws.Signaled() {
					info.signal = ws.Signal()
				} else {
					info.code = ws.ExitStatus()
				}
			}
			s.mu.Lock()
			s.cmd = nil
			stopped := s.stopped
			if stopped {
				s.exitErr = err
			}
			s.mu.Unlock()
			select {
			case s.exits <- info:
			default:
			}
			if stopped {
				return
			}
			h.mu.Lock()
			h.restarts++
			h.mu.Unlock()
			time.Sleep(time.Duration(300+h.rng.IntN(700)) * time.Millisecond)
		}
	}()
	return s
}

// pid is the current incarnation's process id (0 if none is running).
func (s *slot) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// signal sends sig to the slot's current process group; it reports whether one was running.
func (s *slot) signal(sig syscall.Signal) bool {
	pid := s.pid()
	return pid != 0 && syscall.Kill(-pid, sig) == nil
}

// drainExits forgets the exits seen so far.
func (s *slot) drainExits() {
	for {
		select {
		case <-s.exits:
		default:
			return
		}
	}
}

// stop SIGTERMs the slot's process and expects a clean exit (status 0).
func (h *harness) stop(s *slot) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.waitStarted(10 * time.Second)
	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		s.signal(syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("%s %s did not stop within 40s of SIGTERM (log %s)", s.cmdName, s.id, s.logPath)
	}
	h.mu.Lock()
	delete(h.slots, s.cmdName+"/"+s.id)
	h.mu.Unlock()
	if s.exitErr != nil {
		return fmt.Errorf("%s %s exited with %v after SIGTERM, want status 0 (log %s)", s.cmdName, s.id, s.exitErr, s.logPath)
	}
	return nil
}

// waitStarted waits (up to d) until the current incarnation has written its first log line: a
// process SIGTERMed before the Go runtime reached main has no handler yet and dies by the
// signal, which says nothing about how retailflow stops (on a loaded host a restart can take
// that long to reach main).
func (s *slot) waitStarted(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		path, running := s.logPath, s.cmd != nil
		s.mu.Unlock()
		if !running {
			return
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll SIGKILLs every slot without judging how they exit (test teardown).
func (h *harness) stopAll() {
	h.mu.Lock()
	var all []*slot
	for _, s := range h.slots {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.signal(syscall.SIGKILL)
		<-s.done
	}
}

func (h *harness) slot(cmdName, id string) *slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slots[cmdName+"/"+id]
}

// processors lists the running processor slots, sorted by id.
func (h *harness) processors() []*slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*slot
	for _, id := range []string{"0", "1", "2", "3", "4", "5"} {
		if s := h.slots["run/"+id]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// produce sends records at rate records per second (paced; the broker's acknowledgements are
// awaited at the end) and remembers where each landed. Malformed records keep the generator's
// bytes; valid ones are Avro-encoded with the serde.
func (h *harness) produce(records []generate.Record, rate float64) error {
	per := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var inflight atomic.Int64
	for i, r := range records {
		value := r.Raw
		if value == nil && r.Event != nil {
			var err error
			if value, err = h.serde.EncodeEvent(r.Topic, r.Event); err != nil {
				return fmt.Errorf("encode record %d (%s): %w", i, r.Event.EventID, err)
			}
		}
		if wait := time.Until(start.Add(per * time.Duration(i))); wait > 0 {
			time.Sleep(wait)
		}
		sr := sentRecord{topic: r.Topic, malformed: r.Malformed != "", class: r.Class, partition: -1, oversized: len(value) > dlqMaxValue}
		if r.Event != nil {
			sr.eventID = r.Event.EventID
		}
		h.mu.Lock()
		idx := len(h.sent)
		h.sent = append(h.sent, sr)
		h.produced[r.Topic]++
		h.mu.Unlock()
		inflight.Add(1)
		h.send(idx, &kgo.Record{Topic: h.names[r.Topic], Key: []byte(r.Key), Value: value}, 0, &inflight)
	}
	for inflight.Load() > 0 {
		if err := h.prod.Flush(h.ctx); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prodErr
}

// send produces one record; a failure (the broker restarting under a chaos fault) is retried for
// up to two minutes. The idempotent producer keeps an acknowledged record single; a retry after
// an unacknowledged failure can at worst re-send the same event, which the pipeline must absorb.
func (h *harness) send(idx int, rec *kgo.Record, attempt int, inflight *atomic.Int64) {
	h.prod.Produce(h.ctx, rec, func(got *kgo.Record, err error) {
		if err != nil && attempt < 240 && h.ctx.Err() == nil {
			go func() {
				time.Sleep(500 * time.Millisecond)
				h.send(idx, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value}, attempt+1, inflight)
			}()
			return
		}
		defer inflight.Add(-1)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			if h.prodErr == nil {
				h.prodErr = fmt.Errorf("produce to %s after %d attempts: %w", got.Topic, attempt+1, err)
			}
			return
		}
		h.sent[idx].partition, h.sent[idx].offset = got.Partition, got.Offset
		h.bySource[fmt.Sprintf("%s/%d@%d", got.Topic, got.Partition, got.Offset)] = idx
	})
}

// oversized is a ~1.5 MB value that is not Confluent-framed Avro: the processor must dead-letter
// it (class bad-header), and the DLQ copy — too large for the DLQ topic — must drop its value.
func oversized(key string) generate.Record { return largeRecord(key, oversizeBytes) }

// largeRecord is a value of exactly n bytes that is not Confluent-framed Avro (class bad-header).
func largeRecord(key string, n int) generate.Record {
	pad := []byte("{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}")
	v := bytes.Repeat(pad, n/len(pad)+1)[:n]
	return generate.Record{Topic: schemas.TopicOrders, Key: key, Raw: v, Class: schemas.ClassBadHeader,
		Malformed: fmt.Sprintf("large value of %d bytes, not Avro", len(v))}
}

// logMark remembers how long every log file is, so logSince reads only what came after.
type logMark map[string]int64

func (h *harness) mark() logMark {
	m := logMark{}
	files, _ := filepath.Glob(filepath.Join(h.logDir, "*.log"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			m[f] = st.Size()
		}
	}
	return m
}

// grepSince returns the log lines written after m that contain any of the needles
// (case-insensitive), prefixed by their file name.
func (h *harness) grepSince(m logMark, needles ...string) []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(h.logDir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		if _, err := fh.Seek(m[f], 0); err == nil {
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				line := strings.ToLower(sc.Text())
				for _, n := range needles {
					if strings.Contains(line, strings.ToLower(n)) {
						out = append(out, filepath.Base(f)+": "+sc.Text())
						break
					}
				}
			}
		}
		fh.Close()
	}
	return out
}

// rssKiB reads VmRSS of a process from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// infra runs infra/local.sh <args> (the environment is inherited, so RF_RUN_DIR, KAFKA_PORT …
// select which services). Its output goes to a file, not a pipe: a server it starts may keep the
// pipe open, and the read would never end.
func (h *harness) infra(args ...string) error {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "infra", "local.sh")
	out, err := os.Create(filepath.Join(h.logDir, "infra-"+args[0]+".out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(script, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("infra/local.sh %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// grantSink (re)writes the sink's user with its password and its database: the healthy state.
func (h *harness) grantSink() error {
	return h.infra("ch-user", h.chUser, h.chPassword, "default,"+h.db)
}
