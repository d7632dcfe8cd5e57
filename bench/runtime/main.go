// Command runtime benchmarks `retailflow run` on the real broker (RETAILFLOW_KAFKA_BROKERS,
// default localhost:9092) and prints a Markdown section for bench/RESULTS.md, then one summary
// line (the issue-16 figures, one run):
//
//	runtime: events_per_cpu_s=… passthrough_per_cpu_s=… p50_ms=… p99_ms=… allocs_per_event=… peak_rss_mb=… paced_run_cpu_us=… paced_broker_cpu_us=…
//
// allocs_per_event is the run process's go_memstats_mallocs_total (its /metrics, on a free
// loopback port) from its start to the end of the drain, over the drained events.
//
//   - throughput: N generated orders are preloaded into fresh topics, then one `retailflow run`
//     process drains them; input events/s (wall) and per CPU-second of that process;
//   - latency: with the processor caught up, more traffic is produced at -rate events/s (by
//     default half the drained rate, the goal's operating point) for about -latency-seconds, and
//     a read_committed consumer of the commands topic measures input timestamp → committed
//     command; paced_run_cpu_us and paced_broker_cpu_us are the CPU microseconds per paced
//     input event of the run process and of the local broker (its pid from
//     $RF_RUN_DIR/kafka/pid; NaN without one) over that run: what the latency costs;
//   - restore: a changelog of -restore-orders keys (the final ledger states of the throughput
//     run, replicated under new keys) is restored by a second `retailflow run` process on
//     otherwise empty topics; the rate is its own "restored state" log line (keys, took: from
//     the stable-range check to the complete store);
//   - baseline: a plain franz-go group consume → produce pass-through (no transactions, no
//     decoding) over the same input topics, events/s and per CPU-second.
//
// Usage: go build -o bin/retailflow ./cmd/retailflow && go run ./bench/runtime -bin bin/retailflow
// (-restore-orders 0 skips the restore run).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/bench/internal/rig"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

var (
	bin           = flag.String("bin", "bin/retailflow", "retailflow binary with the run command")
	orders        = flag.Int("orders", 20000, "orders preloaded for the throughput run")
	latencySecs   = flag.Float64("latency-seconds", 20, "length of the paced latency run")
	rate          = flag.Float64("rate", 0, "input events/s of the latency run; 0: half the drained events/s")
	cpuProfile    = flag.String("cpuprofile", "", "pass --cpuprofile to the throughput process (the profile covers the drain and the latency run)")
	memProfile    = flag.String("memprofile", "", "pass --memprofile to the throughput process (allocations of the whole run, written when it exits)")
	onlyDrain     = flag.Bool("only-drain", false, "measure the throughput run only (for profiling)")
	restoreProf   = flag.String("restore-cpuprofile", "", "pass --cpuprofile to the restore process")
	restoreOrders = flag.Int("restore-orders", 300000, "changelog keys for the restore run (1M is the goal; the default keeps the shared box's disk and time in check)")
	partitions    = flag.Int("partitions", 6, "partitions per topic")
)

type env struct {
	ctx   context.Context
	conn  kafka.Conn
	names map[schemas.Topic]string
	group string
	serde *schemas.Serde
	adm   *kadm.Client
	// stopping is set before the throughput process is stopped: an exit before that (a fatal
	// runtime error) ends the benchmark at once.
	stopping atomic.Bool
	// metricsAddr is the throughput process's http.addr (its /metrics)
	metricsAddr string
}

func main() {
	flag.Parse()
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	brokers := strings.Split(envOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")
	e := &env{ctx: ctx, conn: kafka.Conn{Brokers: brokers, Timeout: 10 * time.Second},
		names: map[schemas.Topic]string{}, group: "bench-" + suffix, metricsAddr: freeAddr()}
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		e.names[t] = "bench-" + suffix + "." + string(t)
	}
	var err error
	must(kafka.Ping(ctx, e.conn))
	e.serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(e.names))
	must(err)
	cl, err := kgo.NewClient(e.conn.Options()...)
	must(err)
	defer cl.Close()
	e.adm = kadm.NewClient(cl)
	var specs []kafka.TopicSpec
	for t, n := range e.names {
		specs = append(specs, kafka.TopicSpec{Name: n, Partitions: int32(*partitions), ReplicationFactor: 1,
			Compacted: t == schemas.TopicChangelog, CoPartitioned: true})
	}
	_, err = kafka.EnsureTopics(ctx, e.conn, specs)
	must(err)

	// throughput
	tr, err := generate.Generate(generate.Options{Seed: 42, Orders: *orders})
	must(err)
	n := e.produce(tr, 0, nil)
	log.Printf("preloaded %d records of %d orders", n, *orders)
	proc := e.start(e.names, "", "warn", func(line []byte) { fmt.Fprintf(os.Stderr, "%s\n", line) })
	mallocs0 := e.mallocs(10 * time.Second)
	commits0 := e.commits()
	go func() {
		<-proc.Done()
		if !e.stopping.Load() {
			log.Fatalf("the run process exited during the benchmark: %v", proc.Alive())
		}
	}()
	began := time.Now()
	e.waitCaughtUp(30 * time.Minute)
	wall := time.Since(began)
	cpu, err := proc.CPU()
	must(err)
	peak, err := proc.PeakRSS()
	must(err)
	rss := float64(peak)
	allocs := (e.mallocs(10*time.Second) - mallocs0) / float64(n)
	drainCommits := e.commits() - commits0
	log.Printf("drained %d records in %s using %s CPU, peak RSS %.0f MB, %.1f allocations per event, %.0f transactions (%.0f input records each)",
		n, wall, cpu, rss/1e6, allocs, drainCommits, float64(n)/max(drainCommits, 1))

	if *onlyDrain {
		e.stopping.Store(true)
		must(proc.Stop(syscall.SIGTERM, 2*time.Minute))
		fmt.Printf("drain: %d events, %.0f events/s, %.0f events per CPU-second\n", n, float64(n)/wall.Seconds(), float64(n)/cpu.Seconds())
		fmt.Printf("runtime: events_per_cpu_s=%.0f passthrough_per_cpu_s=- p50_ms=- p99_ms=- allocs_per_event=%.1f peak_rss_mb=%.0f\n",
			float64(n)/cpu.Seconds(), allocs, rss/1e6)
		return
	}
	// latency: paced traffic while caught up
	if *rate == 0 {
		*rate = float64(n) / wall.Seconds() / 2
	}
	latencyOrders := max(100, int(*rate**latencySecs*float64(*orders)/float64(n)))
	lt, err := generate.Generate(generate.Options{Seed: 43, Orders: latencyOrders})
	must(err)
	runCPU0, err := proc.CPU()
	must(err)
	brokerPid := brokerPID()
	brokerCPU0, _ := rig.CPUOf(brokerPid)
	pacedCommits0 := e.commits()
	lats, paced := e.latency(lt)
	e.waitCaughtUp(10 * time.Minute)
	pacedCommits := e.commits() - pacedCommits0
	runCPU1, err := proc.CPU()
	must(err)
	// CPU per paced input event: the run process's, and the broker's when its pid is known (a
	// shorter transaction floor, runtime.min_txn_duration, trades commits for latency: each
	// commit costs both processes, the broker its markers and transaction log writes)
	usPer := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(max(paced, 1)) }
	pacedRunUs, pacedBrokerUs := usPer(runCPU1-runCPU0), math.NaN()
	if brokerCPU1, err := rig.CPUOf(brokerPid); err == nil && brokerPid > 0 {
		pacedBrokerUs = usPer(brokerCPU1 - brokerCPU0)
	}
	log.Printf("paced run: %d input events, %.0f transactions (%.0f input records each), run process %.1f µs CPU per event, broker %.1f µs",
		paced, pacedCommits, float64(paced)/max(pacedCommits, 1), pacedRunUs, pacedBrokerUs)
	samples := e.finalStates()
	e.stopping.Store(true)
	must(proc.Stop(syscall.SIGTERM, 2*time.Minute))

	// baseline pass-through over the same preloaded inputs
	base := e.baseline(n)
	bn, bwall, bcpu := base.Events, base.Wall, base.CPU

	// restore
	var rn int
	var rbytes int64
	rwall := time.Duration(1)
	if *restoreOrders > 0 {
		rn, rbytes, rwall = e.restore(*restoreOrders, samples)
	}

	p := func(q float64) time.Duration { return rig.Quantile(lats, q) }
	fmt.Printf(`## Runtime (retailflow run) — %s

Command: `+"`go build -o bin/retailflow ./cmd/retailflow && go run ./bench/runtime -bin bin/retailflow -orders %d -restore-orders %d`"+` (`+"`make bench-runtime`"+`)
Machine: %d partitions, one local Kafka 4.1 broker (KRaft), 2 cores shared with other work; offline schema ids.

| measure | value |
|---|---|
| throughput: input events (%d orders, preloaded) | %d |
| wall from process start (incl. join + restore) to group caught up | %s |
| input events/s (wall) | %.0f |
| CPU seconds of the run process | %.2f |
| input events per CPU-second | %.0f |
| peak RSS of the run process after the drain (%d orders' states) | %.0f MB |
| latency input timestamp → committed command, paced %.0f ev/s (%d commands) | p50 %s, p99 %s |
| restore by a run process: changelog records (final ledger states, %d keys) | %d records, %.1f MB |
| restore rate (its "restored state" log line) | %.0f records/s, %.1f MB/s |
| baseline: plain franz-go consume→produce pass-through, same inputs | %d records |
| baseline events/s (wall) | %.0f |
| baseline events per CPU-second | %.0f |
`, time.Now().UTC().Format("2006-01-02"), *orders, *restoreOrders, *partitions,
		*orders, n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), cpu.Seconds(), float64(n)/cpu.Seconds(), *orders, rss/1e6,
		*rate, len(lats), p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond),
		*restoreOrders, rn, float64(rbytes)/1e6, float64(rn)/rwall.Seconds(), float64(rbytes)/1e6/rwall.Seconds(),
		bn, float64(bn)/bwall.Seconds(), float64(bn)/bcpu.Seconds())
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Printf("\nruntime: events_per_cpu_s=%.0f passthrough_per_cpu_s=%.0f p50_ms=%.1f p99_ms=%.1f allocs_per_event=%.1f peak_rss_mb=%.0f paced_run_cpu_us=%.1f paced_broker_cpu_us=%.1f\n",
		float64(n)/cpu.Seconds(), float64(bn)/bcpu.Seconds(), ms(p(0.5)), ms(p(0.99)), allocs, rss/1e6, pacedRunUs, pacedBrokerUs)
}

// envOr is the service address from the environment the tests use (private service pairs), or
// the local default.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// freeAddr is a loopback host:port nothing listens on (for the run process's /metrics).
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().String()
}

// mallocs reads go_memstats_mallocs_total from the throughput process's /metrics, waiting up to
// limit for the listener to come up.
func (e *env) mallocs(limit time.Duration) float64 {
	return e.metric("go_memstats_mallocs_total", limit)
}

// commits is the run process's committed transactions so far.
func (e *env) commits() float64 {
	return e.metric("retailflow_transactions_committed_total", 10*time.Second)
}

// metric reads one unlabelled sample from the run process's /metrics.
func (e *env) metric(name string, limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get("http://" + e.metricsAddr + "/metrics")
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			must(err)
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, name+" "); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					must(err)
					return f
				}
			}
			log.Fatalf("the run process's /metrics has no %s", name)
		}
		if time.Now().After(deadline) {
			log.Fatalf("the run process's /metrics: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// produce sends the traffic (unpaced when rate is 0); sent, when set, records each input's
// coordinates → timestamp.
func (e *env) produce(tr *generate.Traffic, rate float64, sent *rig.Sent) int {
	n, err := rig.Produce(e.ctx, e.conn, e.serde, tr.Records, func(t schemas.Topic) string { return e.names[t] }, rate, sent)
	must(err)
	return n
}

// start runs `retailflow run` on the named topics in group e.group+suffix; its log lines go to
// echo when set.
func (e *env) start(names map[schemas.Topic]string, suffix, level string, echo func([]byte)) *rig.RunProcess {
	args := []string{"run", "--instance-id", "0"}
	if *cpuProfile != "" && suffix == "" {
		args = append(args, "--cpuprofile", *cpuProfile)
	}
	if *memProfile != "" && suffix == "" {
		args = append(args, "--memprofile", *memProfile)
	}
	if *restoreProf != "" && suffix == "-restore" {
		args = append(args, "--cpuprofile", *restoreProf)
	}
	httpAddr := ""
	if suffix == "" {
		httpAddr = e.metricsAddr
	}
	p, err := rig.StartRun(*bin, args, rig.RunEnv(names, *partitions, e.group+suffix, level, "RETAILFLOW_HTTP_ADDR="+httpAddr), echo)
	must(err)
	return p
}

func (e *env) inputs() []string {
	var in []string
	for _, t := range schemas.InputTopics {
		in = append(in, e.names[t])
	}
	return in
}

func (e *env) waitCaughtUp(limit time.Duration) {
	must(rig.WaitCaughtUp(e.ctx, e.adm, e.group, e.inputs(), limit, nil))
}

// latency produces paced traffic and measures, for each committed command, the time from its
// input's timestamp to its arrival at a read_committed consumer.
func (e *env) latency(tr *generate.Traffic) ([]time.Duration, int) {
	var produced int
	lats, err := rig.Latency(e.ctx, e.conn, e.adm, e.names[schemas.TopicCommands], func(sent *rig.Sent) error {
		produced = e.produce(tr, *rate, sent)
		return rig.WaitCaughtUp(e.ctx, e.adm, e.group, e.inputs(), 5*time.Minute, nil)
	})
	must(err)
	if n := len(lats); n > 0 {
		q := func(q float64) time.Duration { return rig.Quantile(lats, q) }
		log.Printf("latency: n=%d p50 %s p90 %s p95 %s p99 %s p99.9 %s max %s", n, q(0.5), q(0.9), q(0.95), q(0.99), q(0.999), lats[n-1])
	}
	return lats, produced
}

// baseline consumes the inputs in a fresh group and produces each record unchanged to an
// output topic: the floor cost of moving the bytes with franz-go.
func (e *env) baseline(n int) rig.Drain {
	out := e.names[schemas.TopicDLQ] + ".baseline"
	_, err := kafka.EnsureTopics(e.ctx, e.conn, []kafka.TopicSpec{{Name: out, Partitions: int32(*partitions), ReplicationFactor: 1}})
	must(err)
	d, err := rig.PassThrough(e.ctx, e.conn, e.inputs(), out, e.group+"-baseline", n)
	must(err)
	return d
}

// finalStates reads the changelog of the throughput run and returns the last value of every
// key, ordered by key: the same samples in every run of the same traffic.
func (e *env) finalStates() [][]byte {
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.ConsumeTopics(e.names[schemas.TopicChangelog]),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	must(err)
	defer cl.Close()
	last := map[string][]byte{} // the changelog is complete: the run process is caught up and idle
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value == nil {
				delete(last, string(r.Key))
			} else {
				last[string(r.Key)] = r.Value
			}
		})
	}
	keys := make([]string, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	samples := make([][]byte, len(keys))
	for i, k := range keys {
		samples[i] = last[k]
	}
	if len(samples) == 0 {
		log.Fatal("no changelog samples")
	}
	return samples
}

// restore writes keys changelog records (the samples, replicated under new keys) to the
// changelog of a fresh, otherwise empty topic set, starts a `retailflow run` process on it, and
// returns the records, bytes and duration of the restore its log reports.
func (e *env) restore(keys int, samples [][]byte) (int, int64, time.Duration) {
	names := map[schemas.Topic]string{}
	var specs []kafka.TopicSpec
	for t, n := range e.names {
		names[t] = n + ".restore"
		specs = append(specs, kafka.TopicSpec{Name: names[t], Partitions: int32(*partitions), ReplicationFactor: 1,
			Compacted: t == schemas.TopicChangelog, CoPartitioned: true})
	}
	_, err := kafka.EnsureTopics(e.ctx, e.conn, specs)
	must(err)
	// default compression (snappy), as the runtime's own changelog producer
	p, err := kgo.NewClient(append(e.conn.Options(), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(20*time.Millisecond))...)
	must(err)
	var bytes int64
	for i := 0; i < keys; i++ {
		v := samples[i%len(samples)]
		bytes += int64(len(v))
		p.Produce(e.ctx, &kgo.Record{Topic: names[schemas.TopicChangelog], Key: []byte("O-RESTORE-" + strconv.Itoa(i)), Value: v},
			func(_ *kgo.Record, err error) { must(err) })
	}
	must(p.Flush(e.ctx))
	p.Close()

	proc := e.start(names, "-restore", "info", nil)
	got, err := proc.Restored(30 * time.Minute)
	must(err)
	must(proc.Stop(syscall.SIGTERM, 2*time.Minute))
	if got.Keys != int64(keys) {
		log.Fatalf("restore: the process restored %d keys, want %d", got.Keys, keys)
	}
	return int(got.Keys), bytes, got.Took
}

// brokerPID is the pid of the local broker that infra/local.sh started ($RF_RUN_DIR/kafka/pid,
// RF_RUN_DIR defaulting to .run), or 0 when there is none (a remote broker, a cluster).
func brokerPID() int {
	dir := envOr("RF_RUN_DIR", ".run")
	b, err := os.ReadFile(filepath.Join(dir, "kafka", "pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
