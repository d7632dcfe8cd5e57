// Command sink benchmarks the ClickHouse sink (connectors/clickhouse) on the real broker
// (RETAILFLOW_KAFKA_BROKERS, default localhost:9092) and ClickHouse server (RETAILFLOW_CLICKHOUSE_ADDR, default 127.0.0.1:9000) and prints a Markdown section for
// bench/RESULTS.md:
//
//   - throughput: N generated orders (all five input topics, with faults) and the loyalty
//     commands the oracle derives from them are preloaded into fresh topics; one sink, started
//     afterwards with the default batching (50 000 rows / 1 s), drains them into a fresh
//     database. Reported: records/s and rows/s (wall) and per CPU-second of this process, which
//     runs nothing but the sink during that phase;
//   - visibility latency: with the sink caught up, new OrderAccepted events are produced one by
//     one at -rate/s; for each, the time from the broker's acknowledgement (committed in Kafka)
//     to the order being listed in recon_orders_awaiting_erp (C1 NOT_REPLICATED) is measured by
//     polling the view every 20 ms, up to the start of the first poll that lists it (a SELECT
//     reads the data parts that exist when it starts); the p99 up to that poll's end, which
//     counts the view's query time too, is logged beside it;
//   - raw insert: the rows of the same preloaded records (mapped outside the timed part) inserted
//     with plain clickhouse-go batch INSERTs (PrepareBatch, Append, Send; -batch-rows rows per
//     batch) into a second database, per CPU-second of this process: the sink's ceiling here.
//
// It ends with one summary line (the issue-16 figures):
//
//	sink: rows_per_cpu_s=… raw_insert_rows_per_cpu_s=… visibility_p99_ms=…
//
// Usage: go run ./bench/sink [-orders 10000] [-latency-events 300] [-rate 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

var (
	orders        = flag.Int("orders", 10000, "orders preloaded for the throughput run")
	latencyEvents = flag.Int("latency-events", 300, "OrderAccepted events produced paced for the latency run")
	rate          = flag.Float64("rate", 20, "events/s of the latency run")
	partitions    = flag.Int("partitions", 6, "partitions per topic")
	batchRows     = flag.Int("batch-rows", 50000, "sink.batch_rows")
	batchTimeout  = flag.Duration("batch-timeout", time.Second, "sink.batch_timeout")
	keep          = flag.Bool("keep", false, "keep the topics and the database")
	cpuProfile    = flag.String("cpuprofile", "", "write a CPU profile of the throughput phase to this file")
	memProfile    = flag.String("memprofile", "", "write an allocation profile of the throughput phase to this file (sampling every 4 KB allocated)")
)

func main() {
	flag.Parse()
	ctx := context.Background()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	names := map[schemas.Topic]string{}
	for _, t := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		names[t] = "bench-sink-" + suffix + "." + string(t)
	}
	db := "bench_sink_" + suffix
	group := "bench-sink-" + suffix
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(envOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")...), kgo.ProducerLinger(5*time.Millisecond))
	must(err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for t, n := range names {
		var cfg map[string]*string
		if t == schemas.TopicChangelog {
			c := "compact"
			cfg = map[string]*string{"cleanup.policy": &c}
		}
		_, err := adm.CreateTopics(ctx, int32(*partitions), 1, cfg, n)
		must(err)
	}
	serde, err := schemas.NewSerde(ctx, schemas.WithPhysicalTopics(names))
	must(err)
	conn, err := chsink.Open(ctx, chsink.Conn{Addr: envOr("RETAILFLOW_CLICKHOUSE_ADDR", "127.0.0.1:9000"), Database: db, Username: "default"})
	must(err)
	defer conn.Close()
	_, err = chsink.Migrate(ctx, conn, db, chsink.ReconSettings{Grace: 15 * time.Minute, ErpSLA: 4 * time.Hour, InvoiceSLA: 48 * time.Hour,
		RedemptionSLA: time.Hour, ReturnSLA: 24 * time.Hour, AccrualSLA: time.Hour, ThreeWaySLA: 48 * time.Hour,
		AmountTolerance: decimal.RequireFromString("0.01")})
	must(err)
	if !*keep {
		defer func() {
			all := make([]string, 0, len(names))
			for _, n := range names {
				all = append(all, n)
			}
			_, _ = adm.DeleteTopics(context.Background(), all...)
			_, _ = adm.DeleteGroups(context.Background(), group)
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		}()
	}

	// ------------------------------------------------------------------ preload
	f := generate.Faults{}
	for _, name := range generate.AllFaults() {
		f.Set(name, 0.05)
	}
	tr, err := generate.Generate(generate.Options{Seed: 1, Orders: *orders, Start: time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Hour), Faults: f})
	must(err)
	exp := tr.Expected(time.Now())
	var recs []*kgo.Record
	for _, r := range tr.Records {
		if r.Event == nil || r.Raw != nil {
			continue
		}
		v, err := serde.EncodeEvent(r.Topic, r.Event)
		must(err)
		recs = append(recs, &kgo.Record{Topic: names[r.Topic], Key: []byte(r.Key), Value: v})
	}
	for _, c := range exp.Commands {
		lc := &schemas.LoyaltyCommand{RequestID: c.RequestID, CommandType: c.Type, OrderID: c.OrderID, MemberID: c.MemberID,
			Points: c.Points, CausingEventID: c.CausingEventID, SourceRefID: c.SourceRefID, Reason: c.Reason, BasisAmount: c.BasisAmount,
			Currency: "EUR", EarnRate: c.EarnRate, TierCode: c.TierCode, TierMultiplier: c.TierMultiplier, EntitledPoints: c.EntitledPoints,
			PolicyVersion: "bench", RequestedAt: c.BusinessTime}
		ev := &schemas.Event{Envelope: schemas.Envelope{EventID: c.RequestID, EventType: c.Type, SchemaVersion: 1, SourceSystem: "retailflow",
			OccurredAt: c.BusinessTime, PublishedAt: c.BusinessTime, AggregateType: "order", AggregateID: c.OrderID,
			CorrelationID: c.OrderID, TenantID: "t"}, LoyaltyCommand: lc}
		v, err := serde.EncodeEvent(schemas.TopicCommands, ev)
		must(err)
		recs = append(recs, &kgo.Record{Topic: names[schemas.TopicCommands], Key: []byte(c.OrderID), Value: v})
	}
	for i := 0; i < len(recs); i += 10000 {
		must(cl.ProduceSync(ctx, recs[i:min(i+10000, len(recs))]...).FirstErr())
	}
	log.Printf("preloaded %d records (%d orders)", len(recs), *orders)

	// ------------------------------------------------------------------ throughput
	reg := prometheus.NewRegistry()
	metrics, err := ops.NewSinkMetrics(reg)
	must(err)
	s, err := chsink.NewSink(chsink.SinkOptions{Kafka: []kgo.Opt{kgo.SeedBrokers(strings.Split(envOr("RETAILFLOW_KAFKA_BROKERS", "localhost:9092"), ",")...)}, Group: group, Topics: names,
		Serde: serde, Conn: conn, Database: db, Changelog: true, BatchRows: *batchRows, BatchTimeout: *batchTimeout,
		MaxRetryWait: 5 * time.Second, Metrics: metrics})
	must(err)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		must(err)
		must(pprof.StartCPUProfile(pf))
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 4096
	}
	cpu0, t0 := cpuTime(), time.Now()
	go func() { done <- s.Run(sctx) }()
	waitCaughtUp(ctx, adm, group)
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		pf, err := os.Create(*memProfile)
		must(err)
		must(pprof.Lookup("allocs").WriteTo(pf, 0))
		must(pf.Close())
		runtime.MemProfileRate = 0
	}
	rows := counter(reg, "retailflow_sink_rows_inserted_total")
	log.Printf("throughput: %d records, %.0f rows in %s (cpu %s)", len(recs), rows, wall, cpu)

	// ------------------------------------------------------------------ latency
	lt, err := generate.Generate(generate.Options{Seed: 2, Orders: *latencyEvents, Start: time.Now().Add(-10 * 24 * time.Hour)})
	must(err)
	var accepted []*schemas.Event
	for _, r := range lt.Records {
		if r.Event != nil && r.Event.OrderAccepted != nil && r.Raw == nil && !r.Duplicate {
			accepted = append(accepted, r.Event)
		}
	}
	lat := measureLatency(ctx, cl, conn, serde, names[schemas.TopicOrders], db, accepted)
	stop()
	must(<-done)

	// ------------------------------------------------------------------ raw insert
	rawRows, rawCPU := rawInsert(ctx, conn, serde, db+"_raw", recs, names)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf(`## ClickHouse sink (connectors/clickhouse)

Command: `+"`go run ./bench/sink -orders %d -latency-events %d -rate %g`"+` (Kafka 4.1 and ClickHouse 18.16 on
loopback, %d partitions, sink batching %d rows / %s, machine shared: 2 cores).

| measure | value |
|---|---|
| records drained (5 input topics + loyalty commands) | %d |
| rows inserted (facts, commands, audit) | %.0f |
| wall time to drain | %s |
| records/s (wall) | %.0f |
| rows/s (wall) | %.0f |
| sink CPU time | %s |
| rows per CPU-second | %.0f |
| visibility latency p50 (produce ack → row in recon_orders_awaiting_erp) | %s |
| visibility latency p99 | %s |
| visibility latency max | %s (n=%d at %g events/s) |

Visibility latency is dominated by the batch timeout (%s): a record waits for the batch to close,
then one INSERT per table and the offset commit; the view is read with FINAL at query time.
A row is timed at the start of the first poll that returns it (a SELECT reads the parts that
exist when it starts; its own duration is the poller's, not the sink's).
`, *orders, *latencyEvents, *rate, *partitions, *batchRows, *batchTimeout,
		len(recs), rows, wall.Round(time.Millisecond), float64(len(recs))/wall.Seconds(), rows/wall.Seconds(), cpu.Round(time.Millisecond),
		rows/cpu.Seconds(), pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
		len(lat), *rate, *batchTimeout)
	fmt.Printf("| raw clickhouse-go batch INSERTs of the same rows (%d rows), CPU | %s |\n| raw insert rows per CPU-second | %.0f |\n",
		rawRows, rawCPU.Round(time.Millisecond), float64(rawRows)/rawCPU.Seconds())
	fmt.Printf("\nsink: rows_per_cpu_s=%.0f raw_insert_rows_per_cpu_s=%.0f visibility_p99_ms=%.0f\n",
		rows/cpu.Seconds(), float64(rawRows)/rawCPU.Seconds(), float64(pct(0.99))/float64(time.Millisecond))
}

// rawInsert maps recs to rows the way the sink does (untimed), then inserts them table by table
// with plain batch INSERTs into a fresh database db and returns the rows and the CPU time of
// the inserts alone.
func rawInsert(ctx context.Context, conn driver.Conn, serde *schemas.Serde, db string, recs []*kgo.Record, names map[schemas.Topic]string) (int, time.Duration) {
	_, err := chsink.Migrate(ctx, conn, db, chsink.ReconSettings{Grace: 15 * time.Minute, ErpSLA: 4 * time.Hour, InvoiceSLA: 48 * time.Hour,
		RedemptionSLA: time.Hour, ReturnSLA: 24 * time.Hour, AccrualSLA: time.Hour, ThreeWaySLA: 48 * time.Hour,
		AmountTolerance: decimal.RequireFromString("0.01")})
	must(err)
	if !*keep {
		defer func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) }()
	}
	tables, err := chsink.Tables()
	must(err)
	logical := map[string]schemas.Topic{}
	for t, n := range names {
		logical[n] = t
	}
	byTable := map[string][][]any{}
	for _, r := range recs {
		ref := schemas.RecordRef{Topic: logical[r.Topic], Partition: r.Partition, Offset: r.Offset}
		src := chsink.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
		e, err := serde.DecodeEvent(ctx, ref, r.Value)
		must(err)
		var rows []chsink.Row
		if ref.Topic == schemas.TopicCommands {
			rows = chsink.CommandRows(e.LoyaltyCommand, src)
		} else if rows, err = chsink.EventRows(e, src); err != nil {
			continue // the sink dead-letters these (failure rows); not part of the ceiling
		}
		for _, row := range rows {
			vals, err := row.Ordered(tables[row.Table])
			must(err)
			byTable[row.Table] = append(byTable[row.Table], vals)
		}
	}
	n := 0
	cpu0 := cpuTime()
	for table, rows := range byTable {
		cols := strings.Join(tables[table].Columns, ", ")
		for i := 0; i < len(rows); i += *batchRows {
			b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+table+" ("+cols+")")
			must(err)
			for _, vals := range rows[i:min(i+*batchRows, len(rows))] {
				must(b.Append(vals...))
				n++
			}
			must(b.Send())
		}
	}
	return n, cpuTime() - cpu0
}

// queries and queryTook: the latency poller's queries and their total duration (logged).
var queries, queryTook atomic.Int64

func measureLatency(ctx context.Context, cl *kgo.Client, conn driver.Conn, serde *schemas.Serde, topic, db string, events []*schemas.Event) []time.Duration {
	var mu sync.Mutex
	acked := map[string]time.Time{}
	var out, atEnd []time.Duration // at the poll's start (reported), at its end (logged)
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopPoll:
				return
			case <-tick.C:
			}
			mu.Lock()
			ids := make([]string, 0, len(acked))
			for id := range acked {
				ids = append(ids, "'"+id+"'")
			}
			mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			// A SELECT reads the data parts that exist when it starts: a row it returns was
			// visible at its start, which is the time taken (its own duration — a view with FINAL
			// and joins over the throughput phase's rows — is the poller's delay, not the sink's).
			now := time.Now()
			rows, err := conn.Query(ctx, fmt.Sprintf("SELECT order_id FROM %s.recon_orders_awaiting_erp WHERE order_id IN (%s)", db, strings.Join(ids, ",")))
			must(err)
			queryTook.Add(int64(time.Since(now)))
			queries.Add(1)
			end := time.Now()
			for rows.Next() {
				var id string
				must(rows.Scan(&id))
				mu.Lock()
				if t, ok := acked[id]; ok {
					out = append(out, now.Sub(t))
					atEnd = append(atEnd, end.Sub(t))
					delete(acked, id)
				}
				mu.Unlock()
			}
			rows.Close()
		}
	}()
	gap := time.Duration(float64(time.Second) / *rate)
	next := time.Now()
	for _, e := range events {
		time.Sleep(time.Until(next))
		next = next.Add(gap)
		v, err := serde.EncodeEvent(schemas.TopicOrders, e)
		must(err)
		must(cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(e.OrderAccepted.OrderID), Value: v}).FirstErr())
		mu.Lock()
		acked[e.OrderAccepted.OrderID] = time.Now()
		mu.Unlock()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		left := len(acked)
		mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			if left > 0 {
				log.Printf("latency: %d events not visible after 30 s", left)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopPoll)
	<-polled
	if n := queries.Load(); n > 0 && len(atEnd) > 0 {
		sort.Slice(atEnd, func(i, j int) bool { return atEnd[i] < atEnd[j] })
		log.Printf("latency: %d polls of the view, %s each on average (not counted: a row a poll returns was visible when the poll started); p99 counted to the poll's end instead: %s",
			n, (time.Duration(queryTook.Load()) / time.Duration(n)).Round(time.Millisecond), atEnd[min(len(atEnd)-1, int(0.99*float64(len(atEnd))))].Round(time.Millisecond))
	}
	return out
}

func waitCaughtUp(ctx context.Context, adm *kadm.Client, group string) {
	for {
		lags, err := adm.Lag(ctx, group)
		if err == nil {
			if gl, ok := lags[group]; ok && gl.Error() == nil && len(gl.Lag) > 0 && gl.Lag.Total() == 0 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func counter(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	must(err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func must(err error) {
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// envOr is the service address from the environment the tests use (private service pairs), or
// the local default.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
