package chaostest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology/internal/e2e"
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
// A value longer than e2e.DLQMaxValue cannot travel in a dead letter, so its dead letter drops
// it. nearMaxKept and nearMaxDropped sit on either side, clear of the envelope's few hundred
// bytes.
const (
	maxRecordBytes = 2 << 20
	oversizeBytes  = 1536 << 10
	nearMaxKept    = 990_000
	nearMaxDropped = 1_000_100
)

// harness is one isolated pipeline on the shared services (e2e.Pipeline: its own topics and
// processor group) with this suite's additions: a sink consumer group and ClickHouse database,
// `retailflow run` instances and one `retailflow sink` kept alive by the supervisor, and a
// producer that remembers where every record it sent landed.
type harness struct {
	*e2e.Pipeline
	t      *testing.T
	p      params
	bin    string
	sink   string // the sink's consumer group
	db     string
	chAddr string
	ch     driver.Conn
	prod   *e2e.Producer
	sup    *e2e.Supervisor
	rng    *rand.Rand

	mu       sync.Mutex
	restarts int // incarnations that ended without being stopped on purpose

	abortedSoFar  int           // aborted output records counted by earlier segments
	lastAbortedBy map[int64]int // the same per producer id

	// the sink's own ClickHouse user (infra/local.sh ch-user), so faults can rotate its password
	// or revoke its database without touching the user other tests share
	chUser, chPassword string
	sinkExtra          []string // extra environment of the sink's next incarnations (under mu)

	// stateRoot holds each processor's persistent store (state-<id>), which outlives the
	// instance's incarnations as a pod's volume does; "" when CHAOS_STATE_MODE=memory
	stateRoot string
	// runExtra is extra environment of a processor's incarnations, by instance id (under mu)
	runExtra map[string][]string
}

func newHarness(t *testing.T, p params) *harness {
	pl := e2e.NewPipeline(t, "chaos", p.partitions)
	h := &harness{
		Pipeline: pl, t: t, p: p, sink: pl.Group + "-sink", db: "chaos_" + pl.Suffix,
		chAddr: e2e.EnvOr("RETAILFLOW_CLICKHOUSE_ADDR", "127.0.0.1:9000"),
		rng:    rand.New(rand.NewPCG(p.seed, 0xc4a05)),
	}
	if os.Getenv("CHAOS_STATE_MODE") != "memory" {
		h.stateRoot = t.TempDir()
	}
	h.bin = pl.Binary("RETAILFLOW_CHAOS_BIN", "chaoshooks", "run", "sink", "migrate")
	adm := h.Admin()
	max := strconv.Itoa(maxRecordBytes)
	if rs, err := adm.AlterTopicConfigs(h.Ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &max}}, h.Names[schemas.TopicOrders]); err != nil || rs[0].Err != nil {
		t.Fatalf("raise max.message.bytes of %s: %v %v", h.Names[schemas.TopicOrders], err, rs)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return // keep topics, groups and database for the post-mortem
		}
		var topics []string
		for _, n := range h.Names {
			topics = append(topics, n)
		}
		_, _ = adm.DeleteTopics(context.Background(), topics...)
		_, _ = adm.DeleteGroups(context.Background(), h.Group, h.sink)
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
	var err error
	if h.ch, err = clickhouse.Connect(clickhouse.Conn{Addr: h.chAddr, Database: h.db, Username: "default", DialTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h.chUser, h.chPassword = "chaos_"+pl.Suffix, "pw-"+pl.Suffix
	if err := h.grantSink(); err != nil {
		t.Fatalf("the sink's ClickHouse user (needs the server of infra/local.sh, RF_RUN_DIR): %v", err)
	}
	t.Cleanup(func() { _ = h.infra("ch-user-rm", h.chUser) })
	h.prod = pl.NewProducer(kgo.ProducerBatchMaxBytes(maxRecordBytes))
	h.sup = &e2e.Supervisor{
		Bin: h.bin, LogDir: h.LogDir, Env: h.slotEnv, Errorf: t.Errorf,
		RestartDelay: func() time.Duration { return time.Duration(300+h.rng.IntN(700)) * time.Millisecond },
		OnExit: func(*e2e.Slot, e2e.Exit) {
			h.mu.Lock()
			h.restarts++
			h.mu.Unlock()
		},
	}
	return h
}

// env configures a child process (processor, sink or migrate): the pipeline's environment and
// this suite's transaction timeout, sink and ClickHouse settings. The sinks keep full dead-letter
// values (redacted by default): the near-max-values fault checks a dead letter's bytes whole.
func (h *harness) env(instance string) []string {
	return append(h.Env(instance),
		"RETAILFLOW_RUNTIME_TRANSACTION_TIMEOUT=10s",
		"RETAILFLOW_SINK_DEAD_LETTER_VALUES=full",
		"RETAILFLOW_SINK_GROUP="+h.sink,
		"RETAILFLOW_SINK_BATCH_TIMEOUT=200ms",
		"RETAILFLOW_SINK_MAX_RETRY_WAIT=2s",
		"RETAILFLOW_CLICKHOUSE_ADDR="+h.chAddr,
		"RETAILFLOW_CLICKHOUSE_DATABASE="+h.db,
	)
}

// slotEnv is a supervised incarnation's environment: the sink logs in as its own user, with the
// extra settings a fault gave it.
func (h *harness) slotEnv(s *e2e.Slot) []string {
	env := h.env(s.ID)
	if s.Command == "run" && h.stateRoot != "" {
		env = append(env, "RETAILFLOW_STATE_MODE=pebble", "RETAILFLOW_STATE_DIR="+h.stateDir(s.ID))
		h.mu.Lock()
		env = append(env, h.runExtra[s.ID]...)
		h.mu.Unlock()
	}
	if s.Command == "sink" {
		h.mu.Lock()
		env = append(append(env, "RETAILFLOW_CLICKHOUSE_USERNAME="+h.chUser,
			"RETAILFLOW_CLICKHOUSE_PASSWORD="+h.chPassword), h.sinkExtra...)
		h.mu.Unlock()
	}
	return env
}

// stateDir is processor id's persistent state directory.
func (h *harness) stateDir(id string) string { return filepath.Join(h.stateRoot, "state-"+id) }

// processors lists the running processor slots, sorted by id.
func (h *harness) processors() []*e2e.Slot {
	return h.sup.Running("run", "0", "1", "2", "3", "4", "5")
}

// produce sends records at rate records per second (paced; the broker's acknowledgements are
// awaited at the end) and remembers where each landed.
func (h *harness) produce(records []generate.Record, rate float64) error {
	return h.prod.Produce(records, time.Duration(float64(time.Second)/rate))
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
	files, _ := filepath.Glob(filepath.Join(h.LogDir, "*.log"))
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
	files, _ := filepath.Glob(filepath.Join(h.LogDir, "*.log"))
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
	script := filepath.Join(e2e.RepoRoot(), "infra", "local.sh")
	if clusterMode() && strings.HasPrefix(args[0], "ch-user") { // the sink's user on every replica
		args = append([]string{"cluster-" + args[0]}, args[1:]...)
	}
	out, err := os.Create(filepath.Join(h.LogDir, "infra-"+args[0]+".out"))
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
