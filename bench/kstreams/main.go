// Command kstreams compares retailflow with Kafka Streams on equal work, on one broker in one
// job (`make bench-kstreams`; DESIGN.md "Accrual core", bench/RESULTS.md):
//
//  1. The project's generator (processors/generate, as bench/runtime) makes two input sets, A
//     (-orders, ≥ 0.5 M events by default) and B (-warm-orders), produced once into their own
//     five input topics.
//  2. Kafka Streams core (bench/kstreams/src, one JVM): drains A from a fresh JVM (cold: CPU
//     of the JVM from its start), then, in the same JVM, drains B (warm: CPU of the B drain
//     only), then takes paced traffic at half its warm drain rate into B (latency).
//  3. The full retailflow ledger (`retailflow run`, fresh process) drains A.
//  4. The franz-go pass-through (consume → produce, no transactions, no decoding; as
//     bench/runtime's baseline, in this process) over A.
//  5. The retailflow core (topology/accrualcore on topology.Runner, a fresh child process of
//     this command) drains A; its commands are compared with the Kafka Streams core's commands
//     on A (key and value bytes: request ids, points and every other field); then paced
//     traffic at half its drain rate into A (latency), and again at the Kafka Streams core's
//     paced rate (the same load on a shared machine). Then, as the Kafka Streams JVM did, the
//     same process stops its runner on A and drains set B with a new one (warm: CPU of that
//     drain only) — a copy of B made by the same generator run, since the Kafka Streams
//     latency run added traffic to B itself.
//
// CPU is user+system time of each process from /proc/<pid>/stat (the pass-through: this
// process's rusage over its loop); latency is input record timestamp → command visible to a
// read_committed consumer, matched by the rf.source.* headers both engines write. The last
// line printed is the summary:
//
//	kstreams: ks_core_per_cpu_s=… ks_core_warm_per_cpu_s=… rf_core_per_cpu_s=… ratio=… rf_core_warm_per_cpu_s=… ratio_warm=… rf_full_per_cpu_s=… passthrough_per_cpu_s=… ks_p99_ms=… rf_p99_ms=… rf_p99_at_ks_rate_ms=… identical=true
//
// ratio is rf_core_per_cpu_s (fresh) / ks_core_warm_per_cpu_s, as in every earlier run;
// ratio_warm is warm against warm, rf_core_warm_per_cpu_s / ks_core_warm_per_cpu_s, on the same
// input set B. The broker is RETAILFLOW_KAFKA_BROKERS
// (default localhost:9092). Every topic it made is deleted at the end.
//
// Usage: make bench-kstreams, or
// go build -o bin/retailflow ./cmd/retailflow && (cd bench/kstreams && mvn -q -B package) &&
// go run ./bench/kstreams -bin bin/retailflow -jar bench/kstreams/target/kstreams-core.jar
//
// Profiling the retailflow core alone (no Kafka Streams, no comparison; prints `rf_core: …`):
// go run ./bench/kstreams -only-rf-core -orders 40000 [-core-cpuprofile f] [-core-memprofile f]
// [-rf-latency-rate events/s]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/bench/internal/rig"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/accrual"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/accrualcore"
)

var (
	bin         = flag.String("bin", "bin/retailflow", "retailflow binary (the full ledger's `run`)")
	jar         = flag.String("jar", "bench/kstreams/target/kstreams-core.jar", "the Kafka Streams core's shaded jar")
	javaBin     = flag.String("java", "java", "java 17+")
	orders      = flag.Int("orders", 75000, "orders of input set A (≈ 6.8 events each: the cold drains; ≥ 0.5 M events warms the JVM)")
	warmOrders  = flag.Int("warm-orders", 40000, "orders of input set B (the warm JVM's drain)")
	latencySecs = flag.Float64("latency-seconds", 15, "length of each paced latency run")
	partitions  = flag.Int("partitions", 6, "partitions per topic")
	keep        = flag.Bool("keep", false, "keep the topics at the end")
	ksConfig    = flag.String("ks-config", "", "Kafka Streams properties over the app's own settings, k=v,… (experiments)")
	serveCore   = flag.String("serve-core", "", "internal: run the retailflow core on these topics (JSON) until SIGTERM")
	coreGroup   = flag.String("group", "", "internal: the retailflow core's group")
	serveNext   = flag.String("serve-core-next", "", "internal: on SIGUSR1, stop the core and run it on these topics (JSON) with -group-next, in the same process (the warm drain)")
	groupNext   = flag.String("group-next", "", "internal: the group of -serve-core-next")
	coreProfile = flag.String("core-cpuprofile", "", "write the retailflow core process's CPU profile (drain and latency run) here")
	coreMemProf = flag.String("core-memprofile", "", "write the retailflow core process's allocation profile (at its end) here")
	onlyKS      = flag.Bool("only-ks", false, "profiling: produce sets A and B and drain them with the Kafka Streams core only, fresh JVM then warm (no retailflow, no comparison)")
	onlyRFCore  = flag.Bool("only-rf-core", false, "profiling: produce set A and drain it with the retailflow core only (no Kafka Streams, no comparison; latency only with -rf-latency-rate)")
	rfLatRate   = flag.Float64("rf-latency-rate", 0, "with -only-rf-core: after the drain, a paced latency run at this many input events/s")
)

func main() {
	flag.Parse()
	if *serveCore != "" {
		var t accrualcore.Topics
		must(json.Unmarshal([]byte(*serveCore), &t))
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if *coreProfile != "" {
			f, err := os.Create(*coreProfile)
			must(err)
			must(pprof.StartCPUProfile(f))
			defer pprof.StopCPUProfile()
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if *serveNext == "" {
			must(RunCore(ctx, brokers(), t, *coreGroup, logger))
		} else {
			// As the Kafka Streams JVM: the first set's runner stops, the next set's starts in
			// the same (warm) process.
			var next accrualcore.Topics
			must(json.Unmarshal([]byte(*serveNext), &next))
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			first, stopFirst := context.WithCancel(ctx)
			go func() {
				select {
				case <-usr1:
				case <-ctx.Done():
				}
				stopFirst()
			}()
			must(RunCore(first, brokers(), t, *coreGroup, logger))
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "serve-core: next")
				must(RunCore(ctx, brokers(), next, *groupNext, logger))
			}
		}
		if *coreMemProf != "" {
			f, err := os.Create(*coreMemProf)
			must(err)
			must(pprof.Lookup("allocs").WriteTo(f, 0))
			must(f.Close())
		}
		return
	}
	log.SetFlags(log.Ltime)
	b := NewBench(context.Background(), brokers(), *partitions)
	defer func() {
		if !*keep {
			b.Cleanup()
		}
	}()
	if *onlyRFCore {
		b.RunRFCoreOnly()
		return
	}
	if *onlyKS {
		b.RunKSOnly()
		return
	}
	b.Run()
}

func brokers() []string {
	if v := os.Getenv("RETAILFLOW_KAFKA_BROKERS"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"localhost:9092"}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// ---------------------------------------------------------------------------- the retailflow core

// CorePolicy is the earn rule both cores apply: the ledger's default policy.
func CorePolicy() accrual.Policy {
	p, err := accrual.PolicyFrom(ledger.DefaultPolicy())
	must(err)
	return p
}

// RunCore runs the retailflow core stage until ctx ends, with the runner settings of
// `retailflow run`'s defaults (cmd/retailflow config.go) but the Kafka Streams app's output
// compression (none).
func RunCore(ctx context.Context, brokers []string, t accrualcore.Topics, group string, logger *slog.Logger) error {
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(t.Names))
	if err != nil {
		return err
	}
	proc := accrualcore.NewProcessor(ctx, t, serde, CorePolicy())
	r, err := topology.NewRunner(accrualcore.Topology(t), proc, topology.Options{
		Conn: kafka.Conn{Brokers: brokers, Timeout: 10 * time.Second}, Group: group, InstanceID: "0",
		TransactionTimeout: 10 * time.Second, SessionTimeout: 10 * time.Second, HeartbeatInterval: 3 * time.Second,
		RebalanceTimeout: 30 * time.Second, MaxRecordsPerTxn: 2000, MaxTxnDuration: 200 * time.Millisecond,
		MaxBufferedRecords: 10000, Parallelism: 1, Logger: logger,
		// Outputs and changelog uncompressed, as the Kafka Streams app's producer (its default,
		// compression.type=none, stated in CoreApp.config); franz-go's default is snappy, which
		// `retailflow run` keeps.
		ClientOpts: []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())},
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// ---------------------------------------------------------------------------- the bench

// Bench holds the broker connection and every topic made.
type Bench struct {
	ctx        context.Context
	conn       kafka.Conn
	adm        *kadm.Client
	cl         *kgo.Client
	partitions int
	prefix     string
	serde      *schemas.Serde
	made       []string // topics to delete at the end
	groups     []string
}

// NewBench connects and picks a fresh topic prefix.
func NewBench(ctx context.Context, brokers []string, partitions int) *Bench {
	b := &Bench{ctx: ctx, conn: kafka.Conn{Brokers: brokers, Timeout: 10 * time.Second}, partitions: partitions,
		prefix: "ksb-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	must(kafka.Ping(ctx, b.conn))
	var err error
	b.cl, err = kgo.NewClient(b.conn.Options()...)
	must(err)
	b.adm = kadm.NewClient(b.cl)
	b.serde, err = schemas.NewSerde(ctx)
	must(err)
	return b
}

// InputSet is one set of the five input topics, <prefix>.<set>.<topic>.
type InputSet struct {
	Prefix string
	Events int // records produced into it
}

// Topic is the physical name of logical input topic t.
func (s InputSet) Topic(t schemas.Topic) string { return s.Prefix + "." + string(t) }

// Inputs are the five input topics.
func (s InputSet) Inputs() []string {
	var out []string
	for _, t := range schemas.InputTopics {
		out = append(out, s.Topic(t))
	}
	return out
}

func (b *Bench) ensure(name string, compacted bool) {
	_, err := kafka.EnsureTopics(b.ctx, b.conn, []kafka.TopicSpec{{Name: name, Partitions: int32(b.partitions), ReplicationFactor: 1,
		Compacted: compacted, CoPartitioned: true}})
	must(err)
	b.made = append(b.made, name)
}

// NewInputSet creates the five input topics of set name.
func (b *Bench) NewInputSet(name string) InputSet {
	s := InputSet{Prefix: b.prefix + "." + name}
	for _, t := range s.Inputs() {
		b.ensure(t, false)
	}
	return s
}

// Produce generates traffic with opts and produces it into s (unpaced when rate is 0); sent,
// when set, records each input's coordinates → timestamp.
func (b *Bench) Produce(s *InputSet, opts generate.Options, rate float64, sent *rig.Sent) int {
	tr, err := generate.Generate(opts)
	must(err)
	return b.ProduceTraffic(s, tr.Records, rate, sent)
}

// ProduceTraffic produces records into s (see Produce).
func (b *Bench) ProduceTraffic(s *InputSet, records []generate.Record, rate float64, sent *rig.Sent) int {
	n, err := rig.Produce(b.ctx, b.conn, b.serde, records, s.Topic, rate, sent)
	must(err)
	s.Events += n
	return n
}

// WaitCaughtUp waits until group has committed the end offset of every input partition.
func (b *Bench) WaitCaughtUp(group string, inputs []string, limit time.Duration, alive func() error) {
	must(rig.WaitCaughtUp(b.ctx, b.adm, group, inputs, limit, alive))
}

// ReadAll reads a topic read_committed to its end: every record as key + value.
func (b *Bench) ReadAll(topic string) []string {
	var out []string
	must(kafka.ReadToEnd(b.ctx, b.conn, topic, kafka.ReadOptions{}, func(r *kgo.Record) error {
		out = append(out, string(r.Key)+"\x00"+string(r.Value))
		return nil
	}))
	sort.Strings(out)
	return out
}

// Cleanup deletes every topic the bench made, and the Kafka Streams internal topics.
func (b *Bench) Cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := append([]string{}, b.made...)
	if all, err := b.adm.ListTopics(ctx); err == nil {
		for _, t := range all.Names() {
			for _, g := range b.groups {
				if strings.HasPrefix(t, g+"-") {
					topics = append(topics, t)
				}
			}
		}
	}
	if _, err := b.adm.DeleteTopics(ctx, topics...); err != nil {
		log.Printf("cleanup: %v", err)
	}
	b.cl.Close()
}

// ---------------------------------------------------------------------------- processes

// cpuOf is the CPU time the live process p has used.
func cpuOf(p *rig.Process) time.Duration {
	d, err := p.CPU()
	must(err)
	return d
}

// stop ends p: SIGTERM, and SIGKILL after 90 s.
func stop(p *rig.Process) {
	if err := p.Stop(syscall.SIGTERM, 90*time.Second); err != nil {
		log.Print(err)
	}
}

// KSApp is the Kafka Streams core's JVM, driven over stdin.
type KSApp struct {
	*rig.Process
	in    io.WriteCloser
	lines *bufio.Scanner
}

// StartKS starts the JVM (no run yet).
func StartKS(brokers []string, jar, java, stateDir string, p accrual.Policy) *KSApp {
	table := func(m map[string]accrual.Rate) string {
		var kv []string
		for k, v := range m {
			kv = append(kv, k+"="+strconv.FormatInt(int64(v), 10))
		}
		sort.Strings(kv)
		return strings.Join(kv, ",")
	}
	cmd := exec.Command(java, "-jar", jar, "--bootstrap", strings.Join(brokers, ","), "--state-dir", stateDir,
		"--earn-rates", table(p.EarnRates), "--tier-multipliers", table(p.TierMultipliers), "--max-events", strconv.Itoa(p.MaxEvents), "--config", *ksConfig)
	in, err := cmd.StdinPipe()
	must(err)
	out, err := cmd.StdoutPipe()
	must(err)
	cmd.Stderr = os.Stderr
	proc, err := rig.Start(cmd)
	must(err)
	return &KSApp{Process: proc, in: in, lines: bufio.NewScanner(out)}
}

// Do sends one command and waits for its answer line.
func (k *KSApp) Do(line, want string) {
	_, err := io.WriteString(k.in, line+"\n")
	must(err)
	for k.lines.Scan() {
		if strings.HasPrefix(k.lines.Text(), want) {
			return
		}
	}
	log.Fatalf("kstreams-core: no %q after %q (exited: %v)", want, line, k.Alive())
}

// Close ends the JVM (EOF on stdin) and waits.
func (k *KSApp) Close() {
	k.in.Close()
	select {
	case <-k.Done():
	case <-time.After(90 * time.Second):
		stop(k.Process)
	}
}

// ---------------------------------------------------------------------------- latency

// Latency produces paced traffic (seed, orders) into s and measures, for each command that
// appears on output (read_committed), input timestamp → visible.
func (b *Bench) Latency(s *InputSet, output string, seed uint64, rate float64, group string, alive func() error) []time.Duration {
	lats, err := rig.Latency(b.ctx, b.conn, b.adm, output, func(sent *rig.Sent) error {
		n := max(100, int(rate**latencySecs/6.8))
		b.Produce(s, generate.Options{Seed: seed, Orders: n}, rate, sent)
		return rig.WaitCaughtUp(b.ctx, b.adm, group, s.Inputs(), 5*time.Minute, alive)
	})
	must(err)
	return lats
}

var quantile = rig.Quantile

// ---------------------------------------------------------------------------- the run

// Drain is one measured drain.
type Drain = rig.Drain

// coreTopics are the retailflow core's (or ledger's) topics on input set s, outputs under out.
func (b *Bench) coreTopics(s InputSet, out string) accrualcore.Topics {
	names := map[schemas.Topic]string{}
	for _, t := range schemas.InputTopics {
		names[t] = s.Topic(t)
	}
	names[schemas.TopicCommands] = out + ".commands"
	names[schemas.TopicChangelog] = out + ".changelog"
	names[schemas.TopicDLQ] = out + ".dlq"
	b.ensure(names[schemas.TopicCommands], false)
	b.ensure(names[schemas.TopicDLQ], false)
	b.ensure(names[schemas.TopicChangelog], true)
	return accrualcore.Topics{Names: names}
}

// Run is the whole comparison; it prints a table and the summary line.
func (b *Bench) Run() {
	a := b.NewInputSet("A")
	w := b.NewInputSet("B")
	b.Produce(&a, generate.Options{Seed: 42, Orders: *orders}, 0, nil)
	b.Produce(&w, generate.Options{Seed: 44, Orders: *warmOrders}, 0, nil)
	log.Printf("produced %d events into set A, %d into set B", a.Events, w.Events)
	nA := a.Events

	// Kafka Streams: cold drain of A, warm drain of B, latency on B, in one JVM.
	stateDir, err := os.MkdirTemp("", "kstreams-core-")
	must(err)
	defer os.RemoveAll(stateDir)
	ks, ksCold, ksWarm, ksOutA, ksOutB, appB := b.drainKS(&a, &w, stateDir)
	ksRate := ksWarm.Rate() / 2
	ksLat := b.Latency(&w, ksOutB+".commands", 45, ksRate, appB, ks.Alive)
	ks.Do("stop", "stopped")
	ks.Close()
	ksCommands := b.ReadAll(ksOutA + ".commands")

	// The full retailflow ledger on A, fresh process.
	full := b.runLedger(a)

	// The franz-go pass-through over A.
	pass := b.passThrough(a)

	// The retailflow core on A, fresh process; its commands; latency on A.
	ct := b.coreTopics(a, b.prefix+".rf-core")
	group := b.prefix + "-rf-core"
	spec, err := json.Marshal(ct)
	must(err)
	// The warm drain's input: set B as the Kafka Streams JVM drained it warm, i.e. before its
	// latency run added traffic to B — a copy made by the same generator run (same seed).
	w2 := b.NewInputSet("B2")
	b.Produce(&w2, generate.Options{Seed: 44, Orders: *warmOrders}, 0, nil)
	if w2.Events != ksWarm.Events {
		log.Fatalf("the copy of set B has %d events, set B had %d before the latency run", w2.Events, ksWarm.Events)
	}
	ctB := b.coreTopics(w2, b.prefix+".rf-core-B")
	groupB := b.prefix + "-rf-core-b"
	b.groups = append(b.groups, group, groupB)
	specB, err := json.Marshal(ctB)
	must(err)
	self, err := os.Executable()
	must(err)
	cmd := exec.Command(self, "-serve-core", string(spec), "-group", group, "-core-cpuprofile", *coreProfile,
		"-serve-core-next", string(specB), "-group-next", groupB)
	cmd.Stderr = os.Stderr
	began := time.Now()
	rf, err := rig.Start(cmd)
	must(err)
	b.WaitCaughtUp(group, a.Inputs(), 30*time.Minute, rf.Alive)
	rfCore := Drain{Events: nA, Wall: time.Since(began), CPU: cpuOf(rf)}
	log.Printf("retailflow core, fresh process: %d events in %s, %s CPU", nA, rfCore.Wall.Round(time.Millisecond), rfCore.CPU)
	rfCommands := b.ReadAll(ct.Names[schemas.TopicCommands])
	rfRate := rfCore.Rate() / 2
	rfLat := b.Latency(&a, ct.Names[schemas.TopicCommands], 43, rfRate, group, rf.Alive)
	// and at the Kafka Streams core's rate: the same load on the shared machine
	rfLatKS := b.Latency(&a, ct.Names[schemas.TopicCommands], 46, ksRate, group, rf.Alive)
	// The same process, warm, drains B (as the Kafka Streams JVM did after A): its runner on A
	// stops, one on B starts; CPU of the B drain only.
	cpu0, began := cpuOf(rf), time.Now()
	must(rf.Cmd.Process.Signal(syscall.SIGUSR1))
	b.WaitCaughtUp(groupB, w2.Inputs(), 30*time.Minute, rf.Alive)
	rfWarm := Drain{Events: w2.Events, Wall: time.Since(began), CPU: cpuOf(rf) - cpu0}
	log.Printf("retailflow core, warm process: %d events in %s, %s CPU", w2.Events, rfWarm.Wall.Round(time.Millisecond), rfWarm.CPU)
	stop(rf)

	identical, detail := compare(ksCommands, rfCommands)
	log.Printf("commands on A: kafka streams %d, retailflow core %d: %s", len(ksCommands), len(rfCommands), detail)

	fmt.Printf(`## Kafka Streams vs retailflow, the accrual core — %s

Command: `+"`make bench-kstreams`"+` (`+"`go run ./bench/kstreams -orders %d -warm-orders %d -latency-seconds %.0f`"+`)
One local Kafka 4.1.1 broker (KRaft), %d partitions, 2 cores shared with other work; offline schema ids.

| engine | input events | wall | CPU s | events/s (wall) | events per CPU-second |
|---|---|---|---|---|---|
| Kafka Streams core, fresh JVM (set A) | %d | %s | %.2f | %.0f | %.0f |
| Kafka Streams core, warm JVM (set B, after A) | %d | %s | %.2f | %.0f | %.0f |
| retailflow core, fresh process (set A) | %d | %s | %.2f | %.0f | %.0f |
| retailflow core, warm process (a copy of set B, after A) | %d | %s | %.2f | %.0f | %.0f |
| retailflow full ledger, fresh process (set A) | %d | %s | %.2f | %.0f | %.0f |
| franz-go pass-through (set A) | %d | %s | %.2f | %.0f | %.0f |

| latency input → committed command | paced at | commands | p50 | p99 |
|---|---|---|---|---|
| Kafka Streams core (warm) | %.0f ev/s | %d | %s | %s |
| retailflow core | %.0f ev/s | %d | %s | %s |
| retailflow core, at the Kafka Streams core's rate | %.0f ev/s | %d | %s | %s |

Commands on set A: Kafka Streams %d, retailflow core %d — %s.

`, time.Now().UTC().Format("2006-01-02"), *orders, *warmOrders, *latencySecs, b.partitions,
		nA, ksCold.Wall.Round(time.Millisecond), ksCold.CPU.Seconds(), ksCold.Rate(), ksCold.PerCPU(),
		ksWarm.Events, ksWarm.Wall.Round(time.Millisecond), ksWarm.CPU.Seconds(), ksWarm.Rate(), ksWarm.PerCPU(),
		nA, rfCore.Wall.Round(time.Millisecond), rfCore.CPU.Seconds(), rfCore.Rate(), rfCore.PerCPU(),
		rfWarm.Events, rfWarm.Wall.Round(time.Millisecond), rfWarm.CPU.Seconds(), rfWarm.Rate(), rfWarm.PerCPU(),
		full.Events, full.Wall.Round(time.Millisecond), full.CPU.Seconds(), full.Rate(), full.PerCPU(),
		pass.Events, pass.Wall.Round(time.Millisecond), pass.CPU.Seconds(), pass.Rate(), pass.PerCPU(),
		ksRate, len(ksLat), quantile(ksLat, 0.5).Round(time.Millisecond), quantile(ksLat, 0.99).Round(time.Millisecond),
		rfRate, len(rfLat), quantile(rfLat, 0.5).Round(time.Millisecond), quantile(rfLat, 0.99).Round(time.Millisecond),
		ksRate, len(rfLatKS), quantile(rfLatKS, 0.5).Round(time.Millisecond), quantile(rfLatKS, 0.99).Round(time.Millisecond),
		len(ksCommands), len(rfCommands), detail)
	fmt.Printf("kstreams: ks_core_per_cpu_s=%.0f ks_core_warm_per_cpu_s=%.0f rf_core_per_cpu_s=%.0f ratio=%.2f rf_core_warm_per_cpu_s=%.0f ratio_warm=%.2f rf_full_per_cpu_s=%.0f passthrough_per_cpu_s=%.0f ks_p99_ms=%d rf_p99_ms=%d rf_p99_at_ks_rate_ms=%d identical=%t\n",
		ksCold.PerCPU(), ksWarm.PerCPU(), rfCore.PerCPU(), rfCore.PerCPU()/ksWarm.PerCPU(), rfWarm.PerCPU(), rfWarm.PerCPU()/ksWarm.PerCPU(),
		full.PerCPU(), pass.PerCPU(),
		quantile(ksLat, 0.99).Milliseconds(), quantile(rfLat, 0.99).Milliseconds(), quantile(rfLatKS, 0.99).Milliseconds(), identical)
	if !identical {
		os.Exit(1)
	}
}

// RunRFCoreOnly produces set A and drains it with the retailflow core in a fresh process: the
// core's drain alone, for profiling (-core-cpuprofile) and quick comparisons. It checks nothing
// against Kafka Streams; the summary line is `rf_core: events=… per_cpu_s=…`.
func (b *Bench) RunRFCoreOnly() {
	a := b.NewInputSet("A")
	b.Produce(&a, generate.Options{Seed: 42, Orders: *orders}, 0, nil)
	log.Printf("produced %d events into set A", a.Events)
	ct := b.coreTopics(a, b.prefix+".rf-core")
	group := b.prefix + "-rf-core"
	b.groups = append(b.groups, group)
	spec, err := json.Marshal(ct)
	must(err)
	self, err := os.Executable()
	must(err)
	cmd := exec.Command(self, "-serve-core", string(spec), "-group", group, "-core-cpuprofile", *coreProfile, "-core-memprofile", *coreMemProf)
	cmd.Stderr = os.Stderr
	began := time.Now()
	rf, err := rig.Start(cmd)
	must(err)
	b.WaitCaughtUp(group, a.Inputs(), 30*time.Minute, rf.Alive)
	d := Drain{Events: a.Events, Wall: time.Since(began), CPU: cpuOf(rf)}
	var lat []time.Duration
	if *rfLatRate > 0 {
		lat = b.Latency(&a, ct.Names[schemas.TopicCommands], 43, *rfLatRate, group, rf.Alive)
	}
	stop(rf)
	line := fmt.Sprintf("rf_core: events=%d wall_s=%.2f cpu_s=%.2f per_cpu_s=%.0f", d.Events, d.Wall.Seconds(), d.CPU.Seconds(), d.PerCPU())
	if *rfLatRate > 0 {
		line += fmt.Sprintf(" latency_rate=%.0f p50_ms=%d p99_ms=%d", *rfLatRate, quantile(lat, 0.5).Milliseconds(), quantile(lat, 0.99).Milliseconds())
	}
	fmt.Println(line)
}

// drainKS starts a Kafka Streams JVM, drains set a with it fresh and then set w with it warm,
// and leaves it running on w (its application appB, outputs under outB).
func (b *Bench) drainKS(a, w *InputSet, stateDir string) (ks *KSApp, cold, warm Drain, outA, outB, appB string) {
	outA, outB = b.prefix+".ks-A", b.prefix+".ks-B"
	for _, o := range []string{outA, outB} {
		b.ensure(o+".commands", false)
		b.ensure(o+".dlq", false)
	}
	appA := b.prefix + "-ks-a"
	appB = b.prefix + "-ks-b"
	b.groups = append(b.groups, appA, appB)
	began := time.Now()
	ks = StartKS(b.conn.Brokers, *jar, *javaBin, stateDir, CorePolicy())
	ks.Do("start "+appA+" "+a.Prefix+" "+outA, "running")
	b.WaitCaughtUp(appA, a.Inputs(), 30*time.Minute, ks.Alive)
	cold = Drain{Events: a.Events, Wall: time.Since(began), CPU: cpuOf(ks.Process)}
	log.Printf("kafka streams core, fresh JVM: %d events in %s, %s CPU", a.Events, cold.Wall.Round(time.Millisecond), cold.CPU)
	ks.Do("stop", "stopped")
	cpu0, began := cpuOf(ks.Process), time.Now()
	ks.Do("start "+appB+" "+w.Prefix+" "+outB, "running")
	b.WaitCaughtUp(appB, w.Inputs(), 30*time.Minute, ks.Alive)
	warm = Drain{Events: w.Events, Wall: time.Since(began), CPU: cpuOf(ks.Process) - cpu0}
	log.Printf("kafka streams core, warm JVM: %d events in %s, %s CPU", w.Events, warm.Wall.Round(time.Millisecond), warm.CPU)
	return ks, cold, warm, outA, outB, appB
}

// RunKSOnly drains set A with a fresh Kafka Streams JVM and then set B with the same, warm JVM,
// as Run does, and prints one line (for comparing builds of the Kafka Streams app).
func (b *Bench) RunKSOnly() {
	a, w := b.NewInputSet("A"), b.NewInputSet("B")
	b.Produce(&a, generate.Options{Seed: 42, Orders: *orders}, 0, nil)
	b.Produce(&w, generate.Options{Seed: 44, Orders: *warmOrders}, 0, nil)
	log.Printf("produced %d events into set A, %d into set B", a.Events, w.Events)
	stateDir, err := os.MkdirTemp("", "kstreams-core-")
	must(err)
	defer os.RemoveAll(stateDir)
	ks, cold, warm, _, _, _ := b.drainKS(&a, &w, stateDir)
	defer ks.Close()
	ks.Do("stop", "stopped")
	fmt.Printf("ks_core: events=%d cold_per_cpu_s=%.0f warm_events=%d warm_wall_s=%.2f warm_cpu_s=%.2f warm_per_cpu_s=%.0f\n",
		cold.Events, cold.PerCPU(), warm.Events, warm.Wall.Seconds(), warm.CPU.Seconds(), warm.PerCPU())
}

// compare reports whether two sorted command lists (key + value bytes) are equal and non-empty.
func compare(ks, rf []string) (bool, string) {
	if len(ks) == 0 {
		return false, "no commands"
	}
	i, j, onlyKS, onlyRF := 0, 0, 0, 0
	var first string
	for i < len(ks) || j < len(rf) {
		switch {
		case j >= len(rf) || i < len(ks) && ks[i] < rf[j]:
			onlyKS++
			if first == "" {
				first = "first only in Kafka Streams: " + describe(ks[i])
			}
			i++
		case i >= len(ks) || rf[j] < ks[i]:
			onlyRF++
			if first == "" {
				first = "first only in retailflow: " + describe(rf[j])
			}
			j++
		default:
			i++
			j++
		}
	}
	if onlyKS+onlyRF == 0 {
		return true, "identical (key and value bytes of every command)"
	}
	return false, fmt.Sprintf("%d only in Kafka Streams, %d only in retailflow; %s", onlyKS, onlyRF, first)
}

func describe(kv string) string {
	_, v, _ := strings.Cut(kv, "\x00")
	c, err := accrual.DecodeCommand([]byte(v))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s %s %s %d (cause %s)", c.OrderID, c.Type, c.RequestID, c.Points, c.CausingEventID)
}

// runLedger drains s with `retailflow run` (a fresh process; the environment of bench/runtime).
func (b *Bench) runLedger(s InputSet) Drain {
	t := b.coreTopics(s, b.prefix+".rf-full")
	group := b.prefix + "-rf-full"
	// made here: the runner creates it when missing, but its own topic check can run before
	// the new topic's metadata has reached it ("does not exist"), which ends the process
	b.ensure(group+"-reroute", false)
	env := rig.RunEnv(t.Names, b.partitions, group, "warn", "RETAILFLOW_KAFKA_BROKERS="+strings.Join(b.conn.Brokers, ","))
	began := time.Now()
	p, err := rig.StartRun(*bin, []string{"run", "--instance-id", "0"}, env, func(line []byte) { fmt.Fprintf(os.Stderr, "%s\n", line) })
	must(err)
	b.WaitCaughtUp(group, s.Inputs(), 30*time.Minute, p.Alive)
	d := Drain{Events: s.Events, Wall: time.Since(began), CPU: cpuOf(p.Process)}
	log.Printf("retailflow full ledger, fresh process: %d events in %s, %s CPU", d.Events, d.Wall.Round(time.Millisecond), d.CPU)
	stop(p.Process)
	// the ledger's own topics: the re-route topic and the fingerprint
	if all, err := b.adm.ListTopics(b.ctx); err == nil {
		for _, t := range all.Names() {
			if strings.HasPrefix(t, b.prefix+".rf-full") {
				b.made = append(b.made, t)
			}
		}
	}
	return d
}

// passThrough consumes s in a fresh group and produces each record unchanged (bench/runtime's
// baseline): the floor cost of moving the bytes with franz-go.
func (b *Bench) passThrough(s InputSet) Drain {
	out := b.prefix + ".passthrough"
	b.ensure(out, false)
	d, err := rig.PassThrough(b.ctx, b.conn, s.Inputs(), out, b.prefix+"-passthrough", s.Events)
	must(err)
	log.Printf("franz-go pass-through: %d events in %s, %s CPU", d.Events, d.Wall.Round(time.Millisecond), d.CPU)
	return d
}
