// Package e2e is the end-to-end harness that topology/eostest (exactly once under SIGKILL and
// scaling) and topology/chaostest (the fault suite) share: one isolated pipeline on the real
// broker (its own topics, consumer group and serde), the `retailflow` binary built and its
// processes kept alive by a supervisor (SIGKILL, SIGTERM with a clean exit required), paced
// production that remembers where every record landed, the waits for the group to drain and
// for transactions to close, the read of the outputs (kafka.ReadToEnd), and the oracle checks
// both suites hold the pipeline to (commands, dead letters, the changelog-restored state, the
// applied events).
//
// Only tests import it: it takes a testing.TB, and it is internal to topology.
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// Pipeline is one isolated pipeline on the shared broker: topics named
// <prefix>-<suffix>.<logical topic>, all co-partitioned (the changelog compacted), the processor
// group <prefix>-<suffix>, and a directory for the processes' logs (removed after a passing
// test, kept and named after a failing one).
type Pipeline struct {
	T          testing.TB
	Ctx        context.Context
	Conn       kafka.Conn
	Serde      *schemas.Serde
	Names      map[schemas.Topic]string // logical → physical
	Suffix     string
	Group      string // the processor's consumer group; transactional ids are <group>-<instance>
	Partitions int32
	LogDir     string
}

// NewPipeline creates the pipeline's topics on the broker of RETAILFLOW_KAFKA_BROKERS (the local
// default otherwise); it fails the test when the broker is not running.
func NewPipeline(t testing.TB, prefix string, partitions int32) *Pipeline {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + strconv.Itoa(rand.IntN(1000))
	p := &Pipeline{
		T: t, Ctx: ctx, Suffix: suffix, Group: prefix + "-" + suffix, Partitions: partitions,
		Conn:  kafka.Conn{Brokers: Brokers(), Timeout: 10 * time.Second},
		Names: map[schemas.Topic]string{},
	}
	for _, tp := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		p.Names[tp] = prefix + "-" + suffix + "." + string(tp)
	}
	var err error
	if p.LogDir, err = os.MkdirTemp("", "retailflow-"+prefix+"-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs kept in %s", p.LogDir)
			return
		}
		os.RemoveAll(p.LogDir)
	})
	if err := kafka.Ping(ctx, p.Conn); err != nil {
		t.Fatalf("Kafka is not running (infra/local.sh up): %v", err)
	}
	if p.Serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(p.Names)); err != nil {
		t.Fatal(err)
	}
	rf, minISR := Replication(t)
	var specs []kafka.TopicSpec
	for tp, name := range p.Names {
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: rf, MinInsyncReplicas: minISR,
			Compacted: tp == schemas.TopicChangelog, CoPartitioned: true})
	}
	if _, err := kafka.EnsureTopics(ctx, p.Conn, specs); err != nil {
		t.Fatal(err)
	}
	return p
}

// Brokers is the broker the tests use: RETAILFLOW_KAFKA_BROKERS, as for the processes they
// start, or the local default.
func Brokers() []string {
	return strings.Split(EnvOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")
}

// Replication is the replication factor and min.insync.replicas of the topics a test creates:
// RETAILFLOW_TOPICS_REPLICATION_FACTOR and RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS, as for the
// processes it starts (the replicated cluster's env file sets 3 and 2: infra/cluster.sh env), or
// 1 and the broker's default for the single broker.
func Replication(t testing.TB) (rf, minISR int16) {
	parse := func(key string, def int16) int16 {
		n, err := strconv.ParseInt(EnvOr(key, strconv.Itoa(int(def))), 10, 16)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q is not a replica count", key, os.Getenv(key))
		}
		return int16(n)
	}
	return parse("RETAILFLOW_TOPICS_REPLICATION_FACTOR", 1), parse("RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS", 0)
}

// EnvOr is the environment variable key, or def when it is unset or empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// RepoRoot is the repository's root directory (where go build and infra/local.sh run).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Binary is the retailflow binary the suite drives: $binEnv when set (it must be built with
// tags), otherwise ./cmd/retailflow built with tags into the log directory. It fails the test
// unless the binary has every subcommand named.
func (p *Pipeline) Binary(binEnv, tags string, subcommands ...string) string {
	bin := os.Getenv(binEnv)
	if bin == "" {
		bin = filepath.Join(p.LogDir, "retailflow")
		args := []string{"build"}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		build := exec.Command("go", append(args, "-o", bin, "./cmd/retailflow")...)
		build.Dir = RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			p.T.Fatalf("go %s ./cmd/retailflow: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, sub := range subcommands {
		if out, err := exec.Command(bin, sub, "--help").CombinedOutput(); err != nil {
			p.T.Fatalf("%s has no %s command (is it wired into main.go's subcommands?): %v\n%s", bin, sub, err, out)
		}
	}
	return bin
}

// Env configures a child process (`retailflow run` or another command) through RETAILFLOW_*
// variables: the pipeline's topics, broker and group, the instance id, group timeouts short
// enough that a SIGKILLed member's partitions move quickly (the broker's minimum session
// timeout is 2 s; 6 s does not expire a live member on a busy machine), text logs, no HTTP.
func (p *Pipeline) Env(instance string) []string {
	env := os.Environ()
	keys := map[schemas.Topic]string{
		schemas.TopicOrders: "ORDERS", schemas.TopicShipments: "SHIPMENTS", schemas.TopicReturns: "RETURNS",
		schemas.TopicLoyalty: "LOYALTY", schemas.TopicERP: "ERP", schemas.TopicCommands: "COMMANDS",
		schemas.TopicChangelog: "CHANGELOG", schemas.TopicDLQ: "DLQ",
	}
	for tp, k := range keys {
		env = append(env, "RETAILFLOW_TOPICS_"+k+"="+p.Names[tp])
	}
	return append(env,
		"RETAILFLOW_KAFKA_BROKERS="+strings.Join(p.Conn.Brokers, ","),
		"RETAILFLOW_TOPICS_PARTITIONS="+strconv.Itoa(int(p.Partitions)),
		"RETAILFLOW_RUNTIME_GROUP="+p.Group,
		"RETAILFLOW_RUNTIME_INSTANCE_ID="+instance,
		"RETAILFLOW_RUNTIME_SESSION_TIMEOUT=6s",
		"RETAILFLOW_RUNTIME_REBALANCE_TIMEOUT=20s",
		"RETAILFLOW_LOG_FORMAT=text",
		"RETAILFLOW_LOG_LEVEL=info",
		"RETAILFLOW_HTTP_ADDR=",
	)
}

// Admin is an admin client on the pipeline's broker; the caller closes it.
func (p *Pipeline) Admin() *kadm.Client {
	cl, err := kgo.NewClient(p.Conn.Options()...)
	if err != nil {
		p.T.Fatal(err)
	}
	return kadm.NewClient(cl)
}

// Inputs are the physical names of the five input topics.
func (p *Pipeline) Inputs() []string {
	var inputs []string
	for _, tp := range schemas.InputTopics {
		inputs = append(inputs, p.Names[tp])
	}
	return inputs
}

// Outputs are the physical names of the transactional outputs: commands, changelog, DLQ.
func (p *Pipeline) Outputs() []string {
	return []string{p.Names[schemas.TopicCommands], p.Names[schemas.TopicChangelog], p.Names[schemas.TopicDLQ]}
}

// AllPartitions is 0 … Partitions−1.
func (p *Pipeline) AllPartitions() []int32 {
	var ps []int32
	for i := int32(0); i < p.Partitions; i++ {
		ps = append(ps, i)
	}
	return ps
}

// WaitProcessed waits until the processor group's committed offsets reach the end of every input
// partition (lag drains).
func (p *Pipeline) WaitProcessed(limit time.Duration) error {
	adm := p.Admin()
	defer adm.Close()
	inputs := p.Inputs()
	deadline := time.Now().Add(limit)
	behind := -1
	for time.Now().Before(deadline) {
		ends, err1 := adm.ListEndOffsets(p.Ctx, inputs...)
		committed, err2 := adm.FetchOffsets(p.Ctx, p.Group)
		if err1 == nil && err2 == nil && ends.Error() == nil {
			behind = 0
			ends.Each(func(o kadm.ListedOffset) {
				if c, ok := committed.Lookup(o.Topic, o.Partition); (!ok && o.Offset > 0) || c.At < o.Offset {
					behind++
				}
			})
			if behind == 0 {
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("processor group %s did not catch up within %s (%d input partitions behind)", p.Group, limit, behind)
}

// Lag is the processor group's total lag on the inputs (−1 if it cannot be read now).
func (p *Pipeline) Lag(adm *kadm.Client) int64 {
	lags, err := adm.Lag(p.Ctx, p.Group)
	if err != nil {
		return -1
	}
	gl, ok := lags[p.Group]
	if !ok || gl.Error() != nil {
		return -1
	}
	var n int64
	for _, tp := range schemas.InputTopics {
		for _, l := range gl.Lag[p.Names[tp]] {
			n += l.Lag
		}
	}
	return n
}

// WaitNoOpenTransactions waits up to limit until LSO = HWM on every transactional output
// partition and none of the group's transactional ids is Ongoing. A limit of 0 checks once:
// after every process has stopped cleanly nothing may be open, and waiting would let the
// transaction timeout hide a transaction left open.
func (p *Pipeline) WaitNoOpenTransactions(limit time.Duration) error {
	adm := p.Admin()
	defer adm.Close()
	topics := p.Outputs()
	deadline := time.Now().Add(limit)
	for {
		var open []string
		hwm, err1 := adm.ListEndOffsets(p.Ctx, topics...)
		lso, err2 := adm.ListCommittedOffsets(p.Ctx, topics...)
		if err1 != nil || err2 != nil {
			open = append(open, fmt.Sprintf("list offsets: %v %v", err1, err2))
		} else {
			hwm.Each(func(o kadm.ListedOffset) {
				if l, _ := lso.Lookup(o.Topic, o.Partition); l.Offset != o.Offset {
					open = append(open, fmt.Sprintf("%s[%d]: LSO %d < HWM %d", o.Topic, o.Partition, l.Offset, o.Offset))
				}
			})
		}
		if len(open) == 0 {
			txns, err := adm.ListTransactions(p.Ctx, nil, []string{"Ongoing"})
			if err != nil {
				open = append(open, fmt.Sprintf("list transactions: %v", err))
			} else {
				for _, tx := range txns.Sorted() {
					if strings.HasPrefix(tx.TxnID, p.Group+"-") && tx.State == "Ongoing" {
						open = append(open, "transaction "+tx.TxnID+" is Ongoing")
					}
				}
			}
		}
		if len(open) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("an open transaction after %s: %s", limit, strings.Join(open, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
