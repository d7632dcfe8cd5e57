// Command state benchmarks `retailflow run` with a large state on the real broker
// (RETAILFLOW_KAFKA_BROKERS, default localhost:9092) and prints one line:
//
//	state: orders=N peak_rss_mb=M clean_restart_s=A crash_restart_s=B full_restore_rec_s=R events_per_cpu_s=E memory_events_per_cpu_s=E0 after_full_restore_events_per_cpu_s=E1 evicted_keys=K
//
// It writes -orders final ledger states straight into a fresh changelog (computed offline with
// the ledger from generated traffic, replicated under distinct keys: running the pipeline to
// create 2 M states would take an hour here), and input traffic of -traffic-orders orders. Then:
//
//   - R: a `run --state.mode pebble` process starts on an empty state directory and restores the
//     whole changelog (its "restored state" log line: records / took);
//   - the same process drains the input traffic right after its full restore, while Pebble
//     still compacts the restored data (after_full_restore_events_per_cpu_s);
//   - A: SIGTERM, and a new process on the same directory: seconds from its start to its
//     "restored state" line (a tail restore);
//   - E: once that process is idle (Pebble has compacted what the full restore wrote), it drains
//     new traffic of the same size: input events per CPU-second of the process, steady state;
//   - B: more traffic is produced; once the group commits again the process is SIGKILLed
//     mid-transaction; seconds from the next process's start to its "restored state" line;
//   - moves (-moves, default on): a second member ("1", an empty directory, warm standbys)
//     joins and gets half the partitions, restored in full (what a move to a member without
//     them costs); once its standby pass has copied the other half, "0" stops and that half
//     moves to "1": restored from the standby copies (one line `moves: ...`);
//   - eviction: the process is stopped, the store's keys counted; a new process gets traffic
//     dated 120 days later, which moves every partition's stream time past the expiry of the
//     written states (each carries its rf.expires header, as the runtime writes them) and of
//     the earlier traffic's closed orders and orphans: the sweep evicts them (evicted_keys, from
//     its "swept expired keys" lines) and the store's keys are counted again (one line
//     `eviction: ...`);
//   - M: the highest peak RSS (VmHWM) of those processes;
//   - E0: a `--state.mode memory` process on a second topic set with -memory-orders states and
//     the same traffic, events per CPU-second after its restore (a smaller state than the
//     pebble run's, which favours memory: memory mode at 2 M states needs ≈3 GB of RAM).
//
// Usage: go build -o bin/retailflow ./cmd/retailflow && go run ./bench/state -bin bin/retailflow (make bench-state)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/bench/internal/rig"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// swept counts the tombstones the run processes' sweeps logged ("swept expired keys").
var swept atomic.Int64

// standbyPasses counts the standby passes logged at info level (those that restored a
// partition in full: the first pass of a member with an empty directory).
var standbyPasses atomic.Int64

var (
	bin           = flag.String("bin", "bin/retailflow", "retailflow binary with the run command")
	orders        = flag.Int("orders", 2_000_000, "final order states written to the changelog")
	memoryOrders  = flag.Int("memory-orders", 200_000, "states of the memory-mode comparison run")
	trafficOrders = flag.Int("traffic-orders", 20_000, "orders of input traffic drained by each run")
	partitions    = flag.Int("partitions", 6, "partitions per topic")
	dataDir       = flag.String("dir", "", "state directory (default: a temporary directory, removed at the end)")
	cacheBytes    = flag.Int64("cache-bytes", 64<<20, "state.cache_bytes of the pebble runs")
	measureCeil   = flag.Bool("ceilings", true, "first measure the full restore's ceilings on this box (ceilings.go: a plain read of the changelog, Pebble batches, sstables + ingest)")
	moves         = flag.Bool("moves", true, "measure partition moves to a second member with and without warm standbys (one line `moves: …`)")
	cpuProfile    = flag.String("cpuprofile", "", "pass --cpuprofile to the process started after the SIGKILL (a tail restore, then the rest of the traffic: steady state)")
)

type env struct {
	ctx   context.Context
	conn  kafka.Conn
	serde *schemas.Serde
	adm   *kadm.Client
}

type topicSet struct {
	names map[schemas.Topic]string
	group string
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	ctx := context.Background()
	brokers := strings.Split(envOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")
	e := &env{ctx: ctx, conn: kafka.Conn{Brokers: brokers, Timeout: 10 * time.Second}}
	must(kafka.Ping(ctx, e.conn))
	cl, err := kgo.NewClient(e.conn.Options()...)
	must(err)
	defer cl.Close()
	e.adm = kadm.NewClient(cl)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	pebbleSet, memSet := e.topics("bstate-"+suffix), e.topics("bstatem-"+suffix)
	e.serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(pebbleSet.names))
	must(err)

	dir := *dataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "retailflow-bench-state-")
		must(err)
		defer os.RemoveAll(dir)
	}
	dir = filepath.Join(dir, "0")

	samples := e.samples()
	log.Printf("%d distinct final states as samples, %.0f bytes on average, %d with an expiry", len(samples), avg(samples), countExpiring(samples))
	e.writeStates(pebbleSet, *orders, samples)
	tr, err := generate.Generate(generate.Options{Seed: 42, Orders: *trafficOrders})
	must(err)
	events := e.produce(pebbleSet, tr)
	log.Printf("wrote %d states and %d input events", *orders, events)
	if *measureCeil {
		e.ceilings(pebbleSet, filepath.Dir(dir))
	}

	var peak float64
	// R and E: a full restore into an empty directory, then the drain.
	p := e.start(pebbleSet, "pebble", dir, "")
	rl := restored(p, 30*time.Minute)
	cpu0 := cpuOf(p)
	fullRate := float64(rl.Records) / rl.Took.Seconds()
	log.Printf("full restore: %d records in %s (%.0f records/s), full partitions %v", rl.Records, rl.Took, fullRate, rl.Full)
	e.waitCaughtUp(pebbleSet, 30*time.Minute)
	ePebble := float64(events) / (cpuOf(p) - cpu0).Seconds()
	peak = max(peak, peakRSS(p))
	log.Printf("drained %d events: %.0f events per CPU-second; peak RSS so far %.0f MB", events, ePebble, peak/1e6)
	stop(p, syscall.SIGTERM)

	// A: clean restart.
	p = e.start(pebbleSet, "pebble", dir, "")
	rl = restored(p, 10*time.Minute)
	clean := time.Since(p.Began)
	log.Printf("clean restart: ready after %s, restored %d records (tail %v, full %v)", clean.Round(time.Millisecond), rl.Records, rl.Tail, rl.Full)
	// E in steady state: new traffic on the restarted process (its store compacted in the
	// background meanwhile, as a pod's does between restarts).
	tr2, err := generate.Generate(generate.Options{Seed: 43, Orders: *trafficOrders})
	must(err)
	idle := waitIdle(p, 10*time.Minute)
	log.Printf("the restarted process went idle (Pebble's compaction of the restored data done) after %s", idle.Round(time.Second))
	cpu0 = cpuOf(p)
	steadyEvents := e.produce(pebbleSet, tr2)
	e.waitCaughtUp(pebbleSet, 30*time.Minute)
	eSteady := float64(steadyEvents) / (cpuOf(p) - cpu0).Seconds()
	log.Printf("steady state: drained %d events: %.0f events per CPU-second", steadyEvents, eSteady)
	// B: SIGKILL mid-transaction while more traffic is processed.
	committed := e.committedSum(pebbleSet)
	tr3, err := generate.Generate(generate.Options{Seed: 44, Orders: *trafficOrders})
	must(err)
	var wg sync.WaitGroup
	wg.Go(func() { e.produce(pebbleSet, tr3) })
	for e.committedSum(pebbleSet) == committed {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // well inside the drain: a transaction is open
	peak = max(peak, peakRSS(p))
	stop(p, syscall.SIGKILL)
	wg.Wait()
	p = e.start(pebbleSet, "pebble", dir, *cpuProfile)
	rl = restored(p, 10*time.Minute)
	crash := time.Since(p.Began)
	log.Printf("crash restart: ready after %s, restored %d records (tail %v, full %v)", crash.Round(time.Millisecond), rl.Records, rl.Tail, rl.Full)
	e.waitCaughtUp(pebbleSet, 30*time.Minute)
	peak = max(peak, peakRSS(p))

	// Moves: a second member with an empty directory and warm standbys joins and gets half the
	// partitions — restored in full, as any move to a member that never had them is; its
	// standby pass then follows the other half; once that has caught up, "0" stops and the other
	// half moves to the second member: restored from its standby copies.
	if *moves {
		dir1 := filepath.Join(filepath.Dir(dir), "1")
		standbyPasses.Store(0)
		q := e.startAs("1", pebbleSet, "pebble", dir1, "", "RETAILFLOW_STATE_STANDBY=all", "RETAILFLOW_STATE_STANDBY_INTERVAL=1s")
		first := restored(q, 30*time.Minute)
		joined := time.Now()
		for standbyPasses.Load() == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		caughtUp := time.Since(joined)
		stop(p, syscall.SIGTERM) // it leaves the group as it exits
		left := time.Now()
		second := restored(q, 30*time.Minute)
		ready := time.Since(left)
		moved := *partitions - len(first.Full)
		peak = max(peak, peakRSS(q))
		log.Printf("moves: joined with %d partitions restored in full (%d records, %s); standby copies of the other %d caught up after %s; after \"0\" stopped, ready in %s (%d records, full %v, tail %v)",
			len(first.Full), first.Records, first.Took.Round(time.Millisecond), *partitions-len(first.Full), caughtUp.Round(time.Second), ready.Round(time.Millisecond), second.Records, second.Full, second.Tail)
		fmt.Printf("moves: moved_partitions=%d restore_without_standby_s=%.2f records_without_standby=%d standby_catch_up_s=%.1f restore_with_standby_s=%.2f records_with_standby=%d ready_after_leave_s=%.2f\n",
			moved, first.Took.Seconds(), first.Records, caughtUp.Seconds(), second.Took.Seconds(), second.Records, ready.Seconds())
		stop(q, syscall.SIGTERM)
	} else {
		stop(p, syscall.SIGTERM)
	}

	// Eviction by time: traffic 120 days later moves the stream time past every expiry.
	keysBefore, mbBefore := storeKeys(dir)
	swept.Store(0)
	// (max_event_skew 0: the bench produces at wall-clock time, and these events are dated months
	// after it; with the default 1h they would be dead-lettered as time-out-of-range)
	p = e.start(pebbleSet, "pebble", dir, "", "RETAILFLOW_RUNTIME_MAX_EVENT_SKEW=0")
	restored(p, 10*time.Minute)
	// (and at least 30 days past today: the earlier traffic was produced today, and an orphan's
	// expiry counts from its record's timestamp, ledger.Ledger.Arrived)
	later := generate.DefaultStart.Add(120 * 24 * time.Hour)
	if min := time.Now().Add(30 * 24 * time.Hour); later.Before(min) {
		later = min.Truncate(24 * time.Hour)
	}
	tr4, err := generate.Generate(generate.Options{Seed: 45, Orders: *trafficOrders, Start: later})
	must(err)
	sweepBegan := time.Now()
	e.produce(pebbleSet, tr4)
	e.waitCaughtUp(pebbleSet, 30*time.Minute)
	for last := int64(-1); swept.Load() != last; {
		last = swept.Load()
		time.Sleep(3 * time.Second)
	}
	sweepTook := time.Since(sweepBegan) - 3*time.Second
	peak = max(peak, peakRSS(p))
	stop(p, syscall.SIGTERM)
	keysAfter, mbAfter := storeKeys(dir)
	evicted := swept.Load()
	fmt.Printf("eviction: evicted_keys=%d store_keys_before=%d store_keys_after=%d store_mb_before=%.0f store_mb_after=%.0f took_s=%.1f (traffic of %d orders 120 days later included)\n",
		evicted, keysBefore, keysAfter, mbBefore, mbAfter, sweepTook.Seconds(), *trafficOrders)

	// E0: the memory store on the same traffic.
	e.writeStates(memSet, *memoryOrders, samples)
	e.produce(memSet, tr)
	p = e.start(memSet, "memory", "", "")
	rl = restored(p, 30*time.Minute)
	log.Printf("memory mode: full restore of %d records in %s (%.0f records/s)", rl.Records, rl.Took, float64(rl.Records)/rl.Took.Seconds())
	cpu0 = cpuOf(p)
	e.waitCaughtUp(memSet, 30*time.Minute)
	eMemory := float64(len(tr.Records)) / (cpuOf(p) - cpu0).Seconds()
	log.Printf("memory mode (%d states): %.0f events per CPU-second, peak RSS %.0f MB", *memoryOrders, eMemory, peakRSS(p)/1e6)
	stop(p, syscall.SIGTERM)

	e.deleteTopics(pebbleSet, memSet)
	fmt.Printf("state: orders=%d peak_rss_mb=%.0f clean_restart_s=%.2f crash_restart_s=%.2f full_restore_rec_s=%.0f events_per_cpu_s=%.0f memory_events_per_cpu_s=%.0f after_full_restore_events_per_cpu_s=%.0f evicted_keys=%d\n",
		*orders, peak/1e6, clean.Seconds(), crash.Seconds(), fullRate, eSteady, eMemory, ePebble, evicted)
}

func (e *env) topics(prefix string) topicSet {
	s := topicSet{names: map[schemas.Topic]string{}, group: prefix}
	var specs []kafka.TopicSpec
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		s.names[t] = prefix + "." + string(t)
		specs = append(specs, kafka.TopicSpec{Name: s.names[t], Partitions: int32(*partitions), ReplicationFactor: 1,
			Compacted: t == schemas.TopicChangelog, CoPartitioned: true})
	}
	_, err := kafka.EnsureTopics(e.ctx, e.conn, specs)
	must(err)
	return s
}

// deleteTopics deletes the sets' topics and those the runtime created beside them (re-route,
// fingerprint).
func (e *env) deleteTopics(sets ...topicSet) {
	td, err := e.adm.ListTopics(e.ctx)
	must(err)
	var names []string
	for _, n := range td.Names() {
		for _, s := range sets {
			if strings.HasPrefix(n, s.group+".") || strings.HasPrefix(n, s.group+"-") {
				names = append(names, n)
			}
		}
	}
	_, _ = e.adm.DeleteTopics(e.ctx, names...)
}

// sample is one order's final state as its changelog record: value and headers (the expiry,
// as the runtime writes it).
type sample struct {
	value   []byte
	headers []kgo.RecordHeader
}

func countExpiring(ss []sample) int {
	n := 0
	for _, s := range ss {
		if len(s.headers) > 0 {
			n++
		}
	}
	return n
}

// storeKeys counts the keys in the (stopped) process's store and its size on disk.
func storeKeys(dir string) (int64, float64) {
	var n int64
	must(topology.ScanStore(dir, orderledger.StageName, func(int32, []byte, []byte) error { n++; return nil }, nil))
	var size int64
	must(filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return err
	}))
	return n, float64(size) / 1e6
}

// samples folds generated traffic through the ledger, as the processor does, and returns each
// order's final state as its changelog record (records dated when their events occurred: no
// Arrived, so an orphan expires on its clock, as one that reached the log on time does).
func (e *env) samples() []sample {
	tr, err := generate.Generate(generate.Options{Seed: 7, Orders: 2000})
	must(err)
	p := ledger.DefaultPolicy()
	states := map[string]ledger.Ledger{}
	var order []string
	for _, r := range tr.Records {
		if r.Event == nil {
			continue
		}
		l, ok := states[r.Key]
		if !ok {
			l = ledger.New(r.Key)
			order = append(order, r.Key)
		}
		if n, _, err := l.Apply(*r.Event, p); err == nil {
			states[r.Key] = n
		}
	}
	var out []sample
	for _, k := range order {
		b, err := ledger.EncodeState(e.serde, states[k])
		must(err)
		s := sample{value: b}
		if at, ok := states[k].ExpiresAt(p); ok {
			s.headers = []kgo.RecordHeader{{Key: headers.Expires, Value: []byte(strconv.FormatInt(at.UnixNano(), 10))}}
		}
		out = append(out, s)
	}
	return out
}

// writeStates writes n changelog records: the samples under distinct order ids, each on its
// key's partition (murmur2, as the runtime), transactionally as the runtime writes them.
func (e *env) writeStates(s topicSet, n int, samples []sample) {
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(20*time.Millisecond),
		kgo.TransactionalID(s.group+"-loader"), kgo.TransactionTimeout(60*time.Second))...)
	must(err)
	defer cl.Close()
	const perTxn = 50000
	began := time.Now()
	for i := 0; i < n; i += perTxn {
		must(cl.BeginTransaction())
		for j := i; j < min(n, i+perTxn); j++ {
			sm := samples[j%len(samples)]
			cl.Produce(e.ctx, &kgo.Record{Topic: s.names[schemas.TopicChangelog], Key: []byte("O-STATE-" + strconv.Itoa(j)), Value: sm.value, Headers: sm.headers},
				func(_ *kgo.Record, err error) { must(err) })
		}
		must(cl.Flush(e.ctx))
		must(cl.EndTransaction(e.ctx, kgo.TryCommit))
	}
	log.Printf("wrote %d states to %s in %s", n, s.names[schemas.TopicChangelog], time.Since(began).Round(time.Millisecond))
}

func (e *env) produce(s topicSet, tr *generate.Traffic) int {
	n, err := rig.Produce(e.ctx, e.conn, e.serde, tr.Records, func(t schemas.Topic) string { return s.names[t] }, 0, nil)
	must(err)
	return n
}

// start runs `retailflow run` on s with the state mode and directory; its WARN and ERROR log
// lines are printed.
func (e *env) start(s topicSet, mode, dir, profile string, more ...string) *rig.RunProcess {
	return e.startAs("0", s, mode, dir, profile, more...)
}

// startAs is start with another instance id (a second member of the group).
func (e *env) startAs(instance string, s topicSet, mode, dir, profile string, more ...string) *rig.RunProcess {
	args := []string{"run", "--instance-id", instance}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	env := rig.RunEnv(s.names, *partitions, s.group, "info",
		append([]string{"RETAILFLOW_STATE_MODE=" + mode, "RETAILFLOW_STATE_DIR=" + dir, "RETAILFLOW_STATE_CACHE_BYTES=" + strconv.FormatInt(*cacheBytes, 10)}, more...)...)
	p, err := rig.StartRun(*bin, args, env, func(line []byte) {
		if bytes.Contains(line, []byte(`"level":"ERROR"`)) || bytes.Contains(line, []byte(`"level":"WARN"`)) {
			log.Printf("run: %s", line)
		}
		if bytes.Contains(line, []byte(`"standby copies caught up"`)) {
			standbyPasses.Add(1)
		}
		if bytes.Contains(line, []byte(`"swept expired keys"`)) {
			var l struct {
				Tombstones int64 `json:"tombstones"`
			}
			if json.Unmarshal(line, &l) == nil {
				swept.Add(l.Tombstones)
			}
		}
	})
	must(err)
	return p
}

// restored waits for the process's "restored state" line.
func restored(p *rig.RunProcess, limit time.Duration) rig.Restored {
	rl, err := p.Restored(limit)
	must(err)
	return rl
}

func stop(p *rig.RunProcess, sig syscall.Signal) { must(p.Stop(sig, 2*time.Minute)) }

func cpuOf(p *rig.RunProcess) time.Duration {
	d, err := p.CPU()
	must(err)
	return d
}

func peakRSS(p *rig.RunProcess) float64 {
	n, err := p.PeakRSS()
	must(err)
	return float64(n)
}

// committedSum is the sum of the group's committed input offsets.
func (e *env) committedSum(s topicSet) int64 {
	com, err := e.adm.FetchOffsets(e.ctx, s.group)
	if err != nil {
		return 0
	}
	var n int64
	com.Each(func(o kadm.OffsetResponse) { n += o.At })
	return n
}

func (e *env) waitCaughtUp(s topicSet, limit time.Duration) {
	var in []string
	for _, t := range schemas.InputTopics {
		in = append(in, s.names[t])
	}
	must(rig.WaitCaughtUp(e.ctx, e.adm, s.group, in, limit, nil))
}

// waitIdle waits until the process uses less than 5 % of a core over 2 s (no background
// compaction left) and returns how long that took.
func waitIdle(p *rig.RunProcess, limit time.Duration) time.Duration {
	began := time.Now()
	for time.Since(began) < limit {
		c := cpuOf(p)
		time.Sleep(2 * time.Second)
		if cpuOf(p)-c < 100*time.Millisecond {
			break
		}
	}
	return time.Since(began)
}

func avg(ss []sample) float64 {
	var n int
	for _, s := range ss {
		n += len(s.value)
	}
	return float64(n) / float64(len(ss))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
