package ops

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Namespace prefixes every retailflow metric name.
const Namespace = "retailflow"

// Histogram buckets, each with the range it must resolve.
var (
	// Transactions and INSERTs: 5 ms (a small local commit) to ~20 s (past the 10 s default
	// transaction timeout, so a stuck commit lands in a bucket of its own).
	durationBuckets = prometheus.ExponentialBuckets(0.005, 2, 13)
	// Record latency (record timestamp → committed): 10 ms to ~1.5 h, so a backlog after an
	// outage is still measured, not just "+Inf".
	latencyBuckets = prometheus.ExponentialBuckets(0.01, 3, 13)
	// Restore of one partition: 10 ms to ~20 min.
	restoreBuckets = prometheus.ExponentialBuckets(0.01, 3, 12)
	// Rows per sink batch: 1 to ~1M (sink.batch_rows is at most 1,000,000).
	rowBuckets = prometheus.ExponentialBuckets(1, 4, 11)
)

// RuntimeMetrics are the metrics of the exactly-once processor (`retailflow run`). Its methods
// are the hooks of topology.Metrics, so a *RuntimeMetrics is passed as the runner's Metrics
// option as it is.
//
// Every method is safe for concurrent use and does not block, and a nil *RuntimeMetrics is
// valid: every method is a no-op.
//
// Label values must come from small fixed sets: topics are the configured topic names,
// partitions are bounded by topics.partitions, and classes and reasons are the runtime's short
// names ("decode", "validate"; "rebalance", "produce"), never error texts.
type RuntimeMetrics struct {
	consumed          *prometheus.CounterVec
	produced          *prometheus.CounterVec
	deadLettered      *prometheus.CounterVec
	rerouted          *prometheus.CounterVec
	txnCommitted      prometheus.Counter
	txnAborted        *prometheus.CounterVec
	txnDuration       prometheus.Histogram
	txnRecords        prometheus.Histogram
	latency           prometheus.Histogram
	stateEntries      *prometheus.GaugeVec
	stateBytes        *prometheus.GaugeVec
	restoreRemaining  *prometheus.GaugeVec
	restoredRecords   *prometheus.GaugeVec
	restoreDuration   prometheus.Histogram
	assignedPartition *prometheus.GaugeVec
	standbyParts      prometheus.Gauge
	standbyRecords    prometheus.Counter
	standbyLastPass   prometheus.Gauge

	mu           sync.Mutex
	restoreStart map[int32]time.Time // partitions being restored → when the first progress came
}

// NewRuntimeMetrics creates the processor's metrics and registers them in reg. It fails when
// they are already registered there (one RuntimeMetrics per registry).
func NewRuntimeMetrics(reg prometheus.Registerer) (*RuntimeMetrics, error) {
	m := &RuntimeMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_consumed_total",
			Help: "Input records the processor polled, by topic (a record re-polled after an abort counts again).",
		}, []string{"topic"}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_produced_total",
			Help: "Records the processor produced in committed transactions (commands, changelog, DLQ), by topic.",
		}, []string{"topic"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_dead_lettered_total",
			Help: "Input records sent to the DLQ in committed transactions, by source topic and error class.",
		}, []string{"topic", "class"}),
		rerouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "records_rerouted_total",
			Help: "Input records that arrived on another partition than their key's (a producer with another partitioner) and were re-routed, by topic.",
		}, []string{"topic"}),
		txnCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "transactions_committed_total",
			Help: "Kafka transactions that End reported committed.",
		}),
		txnAborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "transactions_aborted_total",
			Help: "Kafka transactions that ended aborted (state overlay dropped, records re-polled), by reason.",
		}, []string{"reason"}),
		txnDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "transaction_duration_seconds",
			Help:    "Time of a committed transaction, from its first record to End returning.",
			Buckets: durationBuckets,
		}),
		txnRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "transaction_records",
			Help:    "Input records per committed transaction.",
			Buckets: rowBuckets,
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "processing_latency_seconds",
			Help:    "Time from an input record's Kafka timestamp to the commit of the transaction that processed it.",
			Buckets: latencyBuckets,
		}),
		stateEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "state_entries",
			Help: "Keys (orders) held in the ledger state store, by partition.",
		}, []string{"partition"}),
		stateBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "state_bytes",
			Help: "Approximate bytes of the ledger state store (encoded changelog values), by partition.",
		}, []string{"partition"}),
		restoreRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "state_restore_remaining_records",
			Help: "Changelog records still to replay before the partition's state is restored (0 when done).",
		}, []string{"partition"}),
		restoredRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "state_restore_read_records",
			Help: "Changelog records replayed so far by the partition's current (or last) restore.",
		}, []string{"partition"}),
		restoreDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "state_restore_duration_seconds",
			Help:    "Time to restore one partition's state from the changelog.",
			Buckets: restoreBuckets,
		}),
		assignedPartition: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "partition_restored",
			Help: "1 for each partition this instance owns with its state restored, 0 while it restores.",
		}, []string{"partition"}),
		standbyParts: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "standby_partitions",
			Help: "Changelog partitions this instance followed in its last standby pass (state.standby: all).",
		}),
		standbyRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "standby_read_records_total",
			Help: "Changelog records the standby passes copied into the persistent store.",
		}),
		standbyLastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "standby_last_pass_timestamp_seconds",
			Help: "Unix time the last standby pass caught up with the changelog (stale: a move will restore more).",
		}),
		restoreStart: map[int32]time.Time{},
	}
	if err := register(reg, m.consumed, m.produced, m.deadLettered, m.rerouted, m.txnCommitted, m.txnAborted, m.txnDuration,
		m.txnRecords, m.latency, m.stateEntries, m.stateBytes, m.restoreRemaining, m.restoredRecords,
		m.restoreDuration, m.assignedPartition, m.standbyParts, m.standbyRecords, m.standbyLastPass); err != nil {
		return nil, fmt.Errorf("ops: runtime metrics: %w", err)
	}
	// The abort reasons are a fixed set: their series exist at 0 from the start, so rate() and
	// increase() see the first abort instead of a series that appears with it.
	for _, reason := range AbortReasons {
		m.txnAborted.WithLabelValues(reason)
	}
	return m, nil
}

// AbortReasons are the runtime's reasons for an aborted transaction (the reason label of
// retailflow_transactions_aborted_total).
var AbortReasons = []string{"rebalance", "produce", "transient", "encode", "coordinator"}

// Consumed counts n input records polled from topic.
func (m *RuntimeMetrics) Consumed(topic string, n int) {
	if m == nil {
		return
	}
	m.consumed.WithLabelValues(topic).Add(float64(n))
}

// Produced counts n records a committed transaction wrote to topic.
func (m *RuntimeMetrics) Produced(topic string, n int) {
	if m == nil {
		return
	}
	m.produced.WithLabelValues(topic).Add(float64(n))
}

// DeadLettered counts n records of topic that a committed transaction sent to the DLQ, with
// their error class.
func (m *RuntimeMetrics) DeadLettered(topic, class string, n int) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(topic, class).Add(float64(n))
}

// StandbyCaughtUp is one standby pass that caught up: partitions followed, records copied.
func (m *RuntimeMetrics) StandbyCaughtUp(partitions int, records int64, _ time.Duration) {
	if m == nil {
		return
	}
	m.standbyParts.Set(float64(partitions))
	m.standbyRecords.Add(float64(records))
	m.standbyLastPass.SetToCurrentTime()
}

// Rerouted counts n records of topic that arrived on another partition than their key's.
func (m *RuntimeMetrics) Rerouted(topic string, n int) {
	if m == nil {
		return
	}
	m.rerouted.WithLabelValues(topic).Add(float64(n))
}

// Committed records one committed transaction of records input records that took d.
func (m *RuntimeMetrics) Committed(records int, d time.Duration) {
	if m == nil {
		return
	}
	m.txnCommitted.Inc()
	m.txnDuration.Observe(d.Seconds())
	m.txnRecords.Observe(float64(records))
}

// Aborted records one aborted transaction with its reason ("rebalance", "produce",
// "transient", "shutdown").
func (m *RuntimeMetrics) Aborted(reason string) {
	if m == nil {
		return
	}
	m.txnAborted.WithLabelValues(reason).Inc()
}

// Latency records, for one input record, the time from its Kafka timestamp to the commit of the
// transaction that processed it.
func (m *RuntimeMetrics) Latency(d time.Duration) {
	if m == nil {
		return
	}
	m.latency.Observe(d.Seconds())
}

// RestoreProgress reports partition's restore: read records so far of the total in its
// changelog range; done once the store is complete. The restore's duration is measured from
// the first report of the partition to the one with done.
func (m *RuntimeMetrics) RestoreProgress(partition int32, read, total int64, done bool) {
	if m == nil {
		return
	}
	p := partLabel(partition)
	m.restoredRecords.WithLabelValues(p).Set(float64(read))
	m.restoreRemaining.WithLabelValues(p).Set(float64(max(total-read, 0)))
	now := time.Now()
	m.mu.Lock()
	start, restoring := m.restoreStart[partition]
	switch {
	case done && restoring:
		delete(m.restoreStart, partition)
	case done:
		start = now // a single report: an empty changelog, restored at once
	case !restoring:
		m.restoreStart[partition] = now
	}
	m.mu.Unlock()
	if done {
		m.restoreRemaining.WithLabelValues(p).Set(0)
		m.assignedPartition.WithLabelValues(p).Set(1)
		m.restoreDuration.Observe(now.Sub(start).Seconds())
		return
	}
	m.assignedPartition.WithLabelValues(p).Set(0)
}

// StateSize sets partition's store size after a commit or restore: keys (orders) and
// approximate bytes. keys < 0 means the partition was dropped (revoked): its per-partition
// series are removed, so a dashboard summing over instances does not count it twice.
func (m *RuntimeMetrics) StateSize(partition int32, keys int, bytes int64) {
	if m == nil {
		return
	}
	p := partLabel(partition)
	if keys < 0 {
		for _, g := range []*prometheus.GaugeVec{m.stateEntries, m.stateBytes, m.restoreRemaining, m.restoredRecords, m.assignedPartition} {
			g.DeleteLabelValues(p)
		}
		m.mu.Lock()
		delete(m.restoreStart, partition)
		m.mu.Unlock()
		return
	}
	m.stateEntries.WithLabelValues(p).Set(float64(keys))
	m.stateBytes.WithLabelValues(p).Set(float64(bytes))
}

// SinkMetrics are the metrics of the ClickHouse sink (`retailflow sink`).
//
// Every method is safe for concurrent use, and a nil *SinkMetrics is valid (every method is a
// no-op). Tables are the sink's table names and ops are short fixed names ("insert", "ping",
// "migrate"), never error texts.
type SinkMetrics struct {
	consumed      *prometheus.CounterVec
	batchRows     *prometheus.HistogramVec
	insertLatency *prometheus.HistogramVec
	rowsInserted  *prometheus.CounterVec
	chErrors      *prometheus.CounterVec
	paused        prometheus.Gauge
	blocked       *prometheus.CounterVec
	isolation     *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	bufferedBytes prometheus.Gauge
}

// NewSinkMetrics creates the sink's metrics and registers them in reg. It fails when they are
// already registered there (one SinkMetrics per registry).
func NewSinkMetrics(reg prometheus.Registerer) (*SinkMetrics, error) {
	m := &SinkMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "sink", Name: "records_consumed_total",
			Help: "Records the sink read (read_committed), by topic.",
		}, []string{"topic"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "sink", Name: "batch_rows",
			Help:    "Rows per INSERT batch, by table.",
			Buckets: rowBuckets,
		}, []string{"table"}),
		insertLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "sink", Name: "insert_duration_seconds",
			Help:    "Time of one successful batch INSERT into ClickHouse (prepare to send), by table.",
			Buckets: durationBuckets,
		}, []string{"table"}),
		rowsInserted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "sink", Name: "rows_inserted_total",
			Help: "Rows written to ClickHouse, by table.",
		}, []string{"table"}),
		chErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "clickhouse_errors_total",
			Help: "Failed ClickHouse operations (each retry counts), by table and operation.",
		}, []string{"table", "op"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "sink", Name: "paused",
			Help: "1 while the sink has paused fetching because ClickHouse is failing, else 0.",
		}),
	}
	m.blocked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "sink", Name: "blocked_total",
		Help: "Failed attempts the sink waits out instead of dead-lettering (ClickHouse auth, access, readonly, disk, schema, overload, network; dlq-produce), by table and reason.",
	}, []string{"table", "reason"})
	m.isolation = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "sink", Name: "isolation_inserts_total",
		Help: "INSERTs made while bisecting a batch ClickHouse refused for its values, by table.",
	}, []string{"table"})
	m.deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "sink", Name: "dead_lettered_total",
		Help: "Records the sink dead-lettered because ClickHouse refused their rows alone, by table.",
	}, []string{"table"})
	m.bufferedBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "sink", Name: "buffered_bytes",
		Help: "Estimated bytes of rows and records the sink holds for its next INSERTs (bounded by sink.max_buffer_bytes).",
	})
	if err := register(reg, m.consumed, m.batchRows, m.insertLatency, m.rowsInserted, m.chErrors, m.paused,
		m.blocked, m.isolation, m.deadLettered, m.bufferedBytes); err != nil {
		return nil, fmt.Errorf("ops: sink metrics: %w", err)
	}
	return m, nil
}

// InitTables creates the per-table series of the sink's counters at 0 (rows inserted, INSERT
// errors, dead letters), so rate() and increase() count their first increment and dashboards
// show 0 instead of "no data" before the first error.
func (m *SinkMetrics) InitTables(tables ...string) {
	if m == nil {
		return
	}
	for _, t := range tables {
		m.rowsInserted.WithLabelValues(t)
		m.chErrors.WithLabelValues(t, "insert")
		m.deadLettered.WithLabelValues(t)
	}
}

// Consumed counts n records of topic read by the sink.
func (m *SinkMetrics) Consumed(topic string, n int) {
	if m == nil {
		return
	}
	m.consumed.WithLabelValues(topic).Add(float64(n))
}

// BatchInserted records a successful INSERT of rows into table that took d.
func (m *SinkMetrics) BatchInserted(table string, rows int, d time.Duration) {
	if m == nil {
		return
	}
	m.batchRows.WithLabelValues(table).Observe(float64(rows))
	m.insertLatency.WithLabelValues(table).Observe(d.Seconds())
	m.rowsInserted.WithLabelValues(table).Add(float64(rows))
}

// ClickHouseError counts one failed ClickHouse operation op ("insert", "ping", …) on table
// (empty when the operation is not about one table).
func (m *SinkMetrics) ClickHouseError(table, op string) {
	if m == nil {
		return
	}
	m.chErrors.WithLabelValues(table, op).Inc()
}

// SetPaused reports whether the sink is paused (fetching stopped while ClickHouse fails).
func (m *SinkMetrics) SetPaused(paused bool) {
	if m == nil {
		return
	}
	v := 0.0
	if paused {
		v = 1
	}
	m.paused.Set(v)
}

// Blocked counts one failed attempt the sink waits out (reason is a fixed label such as "auth",
// "disk", "dlq-produce"; table is empty when the attempt is not about one table).
func (m *SinkMetrics) Blocked(table, reason string) {
	if m == nil {
		return
	}
	m.blocked.WithLabelValues(table, reason).Inc()
}

// SetBufferedBytes reports the bytes the sink holds for its next INSERTs.
func (m *SinkMetrics) SetBufferedBytes(n int64) {
	if m == nil {
		return
	}
	m.bufferedBytes.Set(float64(n))
}

// IsolationInsert counts one INSERT made while bisecting a refused batch of table.
func (m *SinkMetrics) IsolationInsert(table string) {
	if m == nil {
		return
	}
	m.isolation.WithLabelValues(table).Inc()
}

// DeadLettered counts one record dead-lettered because table refused its rows.
func (m *SinkMetrics) DeadLettered(table string) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(table).Inc()
}

// KafkaClientMetrics returns franz-go's client metrics (connections, request bytes, produce and
// fetch batches, records and uncompressed bytes per topic, buffered records) as a kgo hook; pass
// it to the client with kgo.WithHooks. The series are named retailflow_kafka_* and labelled
// client=<client>.
//
// kprom registers its collectors in reg when the kgo.Client is created and panics if they are
// already there, so give every client that lives in the same process at the same time its own
// client name (e.g. "ledger", "restore", "sink"), and create a new one per kgo.Client.
func KafkaClientMetrics(reg prometheus.Registerer, client string) *kprom.Metrics {
	return kprom.NewMetrics(Namespace+"_kafka",
		kprom.Registerer(reg),
		kprom.WithStaticLabel(prometheus.Labels{"client": client}),
		// Records and batches per topic, not per broker: topic is what an operator acts on, and
		// a node label multiplies the series by the cluster size.
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes),
	)
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func partLabel(p int32) string { return strconv.FormatInt(int64(p), 10) }
