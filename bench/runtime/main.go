// Command runtime benchmarks `retailflow run` on the real broker (localhost:9092) and prints
// a Markdown section for bench/RESULTS.md:
//
//   - throughput: N generated orders are preloaded into fresh topics, then one `retailflow run`
//     process drains them; input events/s (wall) and per CPU-second of that process;
//   - latency: with the processor caught up, more traffic is produced at -rate events/s and a
//     read_committed consumer of the commands topic measures input timestamp → committed command;
//   - restore: a changelog of -restore-orders keys (real ledger states from the throughput run,
//     replicated under new keys) is restored with connectors/kafka.RestoreChangelog into the
//     runtime's byte store shape;
//   - baseline: a plain franz-go group consume → produce pass-through (no transactions, no
//     decoding) over the same input topics, events/s and per CPU-second.
//
// Usage: go build -o bin/retailflow ./cmd/retailflow && go run ./bench/runtime -bin bin/retailflow
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
)

var (
	bin           = flag.String("bin", "bin/retailflow", "retailflow binary with the run command")
	orders        = flag.Int("orders", 20000, "orders preloaded for the throughput run")
	latencyOrders = flag.Int("latency-orders", 1500, "orders produced paced for the latency run")
	rate          = flag.Float64("rate", 1000, "input events/s of the latency run")
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
}

func main() {
	flag.Parse()
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	e := &env{ctx: ctx, conn: kafka.Conn{Brokers: []string{"localhost:9092"}, Timeout: 10 * time.Second},
		names: map[schemas.Topic]string{}, group: "bench-" + suffix}
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
	proc := e.start()
	began := time.Now()
	e.waitCaughtUp(30 * time.Minute)
	wall := time.Since(began)
	cpu := cpuOf(proc.Process.Pid)
	log.Printf("drained %d records in %s using %s CPU", n, wall, cpu)

	// latency: paced traffic while caught up
	lt, err := generate.Generate(generate.Options{Seed: 43, Orders: *latencyOrders})
	must(err)
	lats := e.latency(lt)
	e.waitCaughtUp(10 * time.Minute)
	must(proc.Process.Signal(syscall.SIGTERM))
	_ = proc.Wait()

	// baseline pass-through over the same preloaded inputs
	bn, bwall, bcpu := e.baseline(n)

	// restore
	rn, rbytes, rwall := e.restore(*restoreOrders)

	p := func(q float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[int(q*float64(len(lats)-1))]
	}
	fmt.Printf(`## Runtime (retailflow run) — %s

Command: `+"`go build -o bin/retailflow ./cmd/retailflow && go run ./bench/runtime -bin bin/retailflow -orders %d -restore-orders %d`"+`
Machine: %d partitions, one local Kafka 4.1 broker (KRaft), 2 cores shared with other work; offline schema ids.

| measure | value |
|---|---|
| throughput: input events (%d orders, preloaded) | %d |
| wall from process start (incl. join + restore) to group caught up | %s |
| input events/s (wall) | %.0f |
| CPU seconds of the run process | %.2f |
| input events per CPU-second | %.0f |
| latency input timestamp → committed command, paced %g ev/s (%d commands) | p50 %s, p99 %s |
| restore: changelog records (real ledger states, %d keys) | %d records, %.1f MB |
| restore rate | %.0f records/s, %.1f MB/s |
| baseline: plain franz-go consume→produce pass-through, same inputs | %d records |
| baseline events/s (wall) | %.0f |
| baseline events per CPU-second | %.0f |
`, time.Now().UTC().Format("2006-01-02"), *orders, *restoreOrders, *partitions,
		*orders, n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), cpu.Seconds(), float64(n)/cpu.Seconds(),
		*rate, len(lats), p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond),
		*restoreOrders, rn, float64(rbytes)/1e6, float64(rn)/rwall.Seconds(), float64(rbytes)/1e6/rwall.Seconds(),
		bn, float64(bn)/bwall.Seconds(), float64(bn)/bcpu.Seconds())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// produce sends the traffic (unpaced when rate is 0); sent, when set, records each input's
// (topic, partition, offset) → timestamp.
func (e *env) produce(tr *generate.Traffic, rate float64, sent *sync.Map) int {
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.MaxBufferedRecords(50000), kgo.ProducerLinger(5*time.Millisecond))...)
	must(err)
	defer cl.Close()
	start := time.Now()
	for i, r := range tr.Records {
		value := r.Raw
		if r.Event != nil {
			value, err = e.serde.EncodeEvent(r.Topic, r.Event)
			must(err)
		}
		if rate > 0 {
			if w := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); w > 0 {
				time.Sleep(w)
			}
		}
		cl.Produce(e.ctx, &kgo.Record{Topic: e.names[r.Topic], Key: []byte(r.Key), Value: value, Timestamp: time.Now()},
			func(r *kgo.Record, err error) {
				must(err)
				if sent != nil {
					sent.Store(r.Topic+"/"+strconv.Itoa(int(r.Partition))+"@"+strconv.FormatInt(r.Offset, 10), r.Timestamp)
				}
			})
	}
	must(cl.Flush(e.ctx))
	return len(tr.Records)
}

func (e *env) start() *exec.Cmd {
	cmd := exec.Command(*bin, "run", "--instance-id", "0")
	cmd.Env = append(os.Environ(),
		"RETAILFLOW_TOPICS_ORDERS="+e.names[schemas.TopicOrders], "RETAILFLOW_TOPICS_SHIPMENTS="+e.names[schemas.TopicShipments],
		"RETAILFLOW_TOPICS_RETURNS="+e.names[schemas.TopicReturns], "RETAILFLOW_TOPICS_LOYALTY="+e.names[schemas.TopicLoyalty],
		"RETAILFLOW_TOPICS_ERP="+e.names[schemas.TopicERP], "RETAILFLOW_TOPICS_COMMANDS="+e.names[schemas.TopicCommands],
		"RETAILFLOW_TOPICS_CHANGELOG="+e.names[schemas.TopicChangelog], "RETAILFLOW_TOPICS_DLQ="+e.names[schemas.TopicDLQ],
		"RETAILFLOW_TOPICS_PARTITIONS="+strconv.Itoa(*partitions), "RETAILFLOW_RUNTIME_GROUP="+e.group,
		"RETAILFLOW_LOG_LEVEL=warn", "RETAILFLOW_HTTP_ADDR=")
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	return cmd
}

func (e *env) inputs() []string {
	var in []string
	for _, t := range schemas.InputTopics {
		in = append(in, e.names[t])
	}
	return in
}

func (e *env) waitCaughtUp(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ends, err1 := e.adm.ListEndOffsets(e.ctx, e.inputs()...)
		com, err2 := e.adm.FetchOffsets(e.ctx, e.group)
		if err1 == nil && err2 == nil {
			behind := false
			ends.Each(func(o kadm.ListedOffset) {
				if c, ok := com.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
					behind = true
				}
			})
			if !behind {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("not caught up")
}

// cpuOf is the user+system CPU time a live process has used (Linux /proc).
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ = 100
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latency produces paced traffic and measures, for each committed command, the time from its
// input's timestamp to its arrival at a read_committed consumer.
func (e *env) latency(tr *generate.Traffic) []time.Duration {
	ends, err := e.adm.ListEndOffsets(e.ctx, e.names[schemas.TopicCommands])
	must(err)
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { start[o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.names[schemas.TopicCommands]: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))...)
	must(err)
	defer cl.Close()
	var sent sync.Map
	var lats []time.Duration
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(e.ctx)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var src string
				var t, p, o string
				for _, h := range r.Headers {
					switch h.Key {
					case topology.HeaderSourceTopic:
						t = string(h.Value)
					case topology.HeaderSourcePartition:
						p = string(h.Value)
					case topology.HeaderSourceOffset:
						o = string(h.Value)
					}
				}
				src = t + "/" + p + "@" + o
				for i := 0; i < 50; i++ { // the promise may store the timestamp a moment after the record is visible
					if ts, ok := sent.Load(src); ok {
						lats = append(lats, now.Sub(ts.(time.Time)))
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
	}()
	e.produce(tr, *rate, &sent)
	e.waitCaughtUp(5 * time.Minute)
	time.Sleep(time.Second)
	cancel()
	<-done
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return lats
}

// baseline consumes the inputs in a fresh group and produces each record unchanged to an
// output topic: the floor cost of moving the bytes with franz-go.
func (e *env) baseline(n int) (int, time.Duration, time.Duration) {
	out := e.names[schemas.TopicDLQ] + ".baseline"
	_, err := kafka.EnsureTopics(e.ctx, e.conn, []kafka.TopicSpec{{Name: out, Partitions: int32(*partitions), ReplicationFactor: 1}})
	must(err)
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.ConsumerGroup(e.group+"-baseline"), kgo.ConsumeTopics(e.inputs()...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MaxBufferedRecords(50000), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	must(err)
	defer cl.Close()
	cpu0, began := selfCPU(), time.Now()
	got := 0
	for got < n {
		fs := cl.PollRecords(e.ctx, 5000)
		fs.EachRecord(func(r *kgo.Record) {
			got++
			cl.Produce(e.ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Partition: r.Partition}, func(_ *kgo.Record, err error) { must(err) })
		})
	}
	must(cl.Flush(e.ctx))
	must(cl.CommitUncommittedOffsets(e.ctx))
	return got, time.Since(began), selfCPU() - cpu0
}

// restore writes keys changelog records (the real states of the throughput run, replicated
// under new keys) and times RestoreChangelog into a byte store.
func (e *env) restore(keys int) (int, int64, time.Duration) {
	topic := e.names[schemas.TopicChangelog] + ".restore"
	_, err := kafka.EnsureTopics(e.ctx, e.conn, []kafka.TopicSpec{{Name: topic, Partitions: int32(*partitions), ReplicationFactor: 1, Compacted: true}})
	must(err)
	var samples [][]byte
	cl, err := kgo.NewClient(append(e.conn.Options(), kgo.ConsumeTopics(e.names[schemas.TopicChangelog]),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	must(err)
	for len(samples) < 5000 {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value != nil {
				samples = append(samples, r.Value)
			}
		})
	}
	cl.Close()
	if len(samples) == 0 {
		log.Fatal("no changelog samples")
	}
	p, err := kgo.NewClient(append(e.conn.Options(), kgo.MaxBufferedRecords(100000), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()))...)
	must(err)
	for i := 0; i < keys; i++ {
		p.Produce(e.ctx, &kgo.Record{Topic: topic, Key: []byte("O-RESTORE-" + strconv.Itoa(i)), Value: samples[i%len(samples)]},
			func(_ *kgo.Record, err error) { must(err) })
	}
	must(p.Flush(e.ctx))
	p.Close()
	parts := make([]int32, *partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	stores := map[int32]map[string][]byte{}
	for _, q := range parts {
		stores[q] = map[string][]byte{}
	}
	var n int
	var bytes int64
	began := time.Now()
	must(kafka.RestoreChangelog(e.ctx, e.conn, topic, parts, func(q int32, k, v []byte) {
		n++
		bytes += int64(len(v))
		stores[q][string(k)] = append([]byte(nil), v...) // the runtime copies too (into an arena)
	}, nil))
	return n, bytes, time.Since(began)
}
