package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/retailflow/retailflow/topology"
)

// Config is the whole configuration of retailflow: a YAML file (--config), then environment
// variables (RETAILFLOW_ + the upper-cased key path with _ for ., e.g. RETAILFLOW_KAFKA_BROKERS),
// then flags. Defaults point at the local services that `make up` starts.
//
// Only this package reads configuration; each section maps onto the options of the package
// that uses it, and Validate names the offending key.
type Config struct {
	Kafka      KafkaConfig      `mapstructure:"kafka"`
	Topics     TopicsConfig     `mapstructure:"topics"`
	Registry   RegistryConfig   `mapstructure:"registry"`
	ClickHouse ClickHouseConfig `mapstructure:"clickhouse"`
	Runtime    RuntimeConfig    `mapstructure:"runtime"`
	State      StateConfig      `mapstructure:"state"`
	Sink       SinkConfig       `mapstructure:"sink"`
	Policy     PolicyConfig     `mapstructure:"policy"`
	Recon      ReconConfig      `mapstructure:"recon"`
	HTTP       HTTPConfig       `mapstructure:"http"`
	Metrics    MetricsConfig    `mapstructure:"metrics"`
	UI         UIConfig         `mapstructure:"ui"`
	Log        LogConfig        `mapstructure:"log"`

	// built by Validate from the tls_* files, read once
	kafkaTLS, clickhouseTLS *tls.Config
}

// KafkaConfig says how to reach the brokers.
type KafkaConfig struct {
	Brokers  []string `mapstructure:"brokers"`
	ClientID string   `mapstructure:"client_id"`
	// TLS on every broker connection, verified against TLSCAFile (PEM bundle; empty: the
	// system's roots). TLSCertFile and TLSKeyFile are the client certificate for listeners that
	// require one (mTLS). TLSServerName overrides the name the brokers' certificates must carry.
	TLS           bool          `mapstructure:"tls"`
	TLSCAFile     string        `mapstructure:"tls_ca_file"`
	TLSCertFile   string        `mapstructure:"tls_cert_file"`
	TLSKeyFile    string        `mapstructure:"tls_key_file"`
	TLSServerName string        `mapstructure:"tls_server_name"`
	SASL          SASLConfig    `mapstructure:"sasl"`
	Timeout       time.Duration `mapstructure:"timeout"` // per admin request and for start-up probes
}

// SASLConfig holds the SASL credentials; the password comes from the environment
// (RETAILFLOW_KAFKA_SASL_PASSWORD) or a file (password_file, a mounted Kubernetes secret),
// never from a committed file. PLAIN is refused without TLS: it sends the password as is.
type SASLConfig struct {
	Mechanism    string `mapstructure:"mechanism"` // "", SCRAM-SHA-256, SCRAM-SHA-512, PLAIN
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
}

// TopicsConfig holds the physical names and sizes of the topics.
type TopicsConfig struct {
	Orders    string `mapstructure:"orders"`
	Shipments string `mapstructure:"shipments"`
	Returns   string `mapstructure:"returns"`
	Loyalty   string `mapstructure:"loyalty"`
	ERP       string `mapstructure:"erp"`
	Commands  string `mapstructure:"commands"`
	Changelog string `mapstructure:"changelog"`
	DLQ       string `mapstructure:"dlq"`
	// Reroute is the internal topic where the processor sends input records a producer put on
	// another partition than murmur2 of their key gives; empty means <runtime.group>-reroute
	// (as Kafka Streams names its internal topics after the application).
	Reroute    string `mapstructure:"reroute"`
	Partitions int32  `mapstructure:"partitions"` // of every order-scoped topic (co-partitioned)
	// ReplicationFactor of every topic retailflow creates (1 for the local single broker; 3 in production).
	ReplicationFactor int16 `mapstructure:"replication_factor"`
	// MinInsyncReplicas of every topic retailflow creates (min.insync.replicas; 0 keeps the
	// broker's default). With acks=all a write needs this many replicas: 2 with RF 3 survives
	// one broker down without losing an acknowledged record.
	MinInsyncReplicas int16 `mapstructure:"min_insync_replicas"`
	// RetentionHours of the input and output topics; the changelog is compacted instead.
	RetentionHours int `mapstructure:"retention_hours"`
}

// RegistryConfig selects a Confluent-compatible schema registry, or none.
type RegistryConfig struct {
	// URL of the registry; empty means offline mode (schema ids derived from the embedded schemas).
	URL          string `mapstructure:"url"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
}

// ClickHouseConfig says how to reach ClickHouse (native protocol). With TLS, addr is the
// server's tcp_port_secure (9440) and TLSCAFile the PEM bundle that verifies it (empty: the
// system's roots). The password comes from the environment or password_file.
type ClickHouseConfig struct {
	Addr          string        `mapstructure:"addr"`
	Database      string        `mapstructure:"database"`
	Username      string        `mapstructure:"username"`
	Password      string        `mapstructure:"password"`
	PasswordFile  string        `mapstructure:"password_file"`
	TLS           bool          `mapstructure:"tls"`
	TLSCAFile     string        `mapstructure:"tls_ca_file"`
	TLSServerName string        `mapstructure:"tls_server_name"`
	DialTimeout   time.Duration `mapstructure:"dial_timeout"`
	// Cluster, when set, is the remote_servers cluster (one shard, replicated through ZooKeeper)
	// that migrate creates the schema on: ReplicatedReplacingMergeTree tables behind Distributed
	// ones, DDL ON CLUSTER (connectors/clickhouse/cluster.go). Empty: one server (the default).
	Cluster string `mapstructure:"cluster"`
}

// RuntimeConfig drives `retailflow run`, the exactly-once processor.
type RuntimeConfig struct {
	Group string `mapstructure:"group"`
	// InstanceID makes the transactional id stable across restarts (the pod ordinal in
	// Kubernetes); two live instances must never share one.
	InstanceID         string        `mapstructure:"instance_id"`
	TransactionTimeout time.Duration `mapstructure:"transaction_timeout"`
	SessionTimeout     time.Duration `mapstructure:"session_timeout"`
	// HeartbeatInterval of the group members (run and sink); session_timeout must exceed it.
	HeartbeatInterval  time.Duration `mapstructure:"heartbeat_interval"`
	RebalanceTimeout   time.Duration `mapstructure:"rebalance_timeout"`
	MaxRecordsPerTxn   int           `mapstructure:"max_records_per_txn"`
	MaxTxnDuration     time.Duration `mapstructure:"max_txn_duration"`
	MaxBufferedRecords int           `mapstructure:"max_buffered_records"`
	// MinTxnDuration: how long a caught-up transaction waits for more records before it ends
	// (default 5ms; 0: max_txn_duration/8). It binds only once the processor has caught up (with
	// a backlog a transaction fills to max_records_per_txn or max_txn_duration) and caps the
	// commits at one per MinTxnDuration. Shorter lowers latency but raises the commit rate: at
	// half the drained rate on the benchmark box, 5ms against 25ms gave p50 16 against 32 ms and
	// p99 49 against 68 ms, for 11 % more CPU per event in the run process and 32 % more in the
	// broker (bench/RESULTS.md, 2026-12-06).
	MinTxnDuration time.Duration `mapstructure:"min_txn_duration"`
	// Parallelism: goroutines that decode/validate a polled batch and encode the changelog.
	Parallelism int `mapstructure:"parallelism"`
	// OffsetReset: what `run` does when a committed input offset is no longer in the log
	// (retention passed it during an outage). none (default) stops with the lost range;
	// earliest or latest skip the lost records — set it for one start, then back to none.
	OffsetReset string `mapstructure:"offset_reset"`
	// MaxEventSkew: how far an event's occurred_at, published_at and body business times may
	// lie after its Kafka record's timestamp (and occurred_at after published_at); further is
	// dead-lettered as time-out-of-range, so no event can move an order's clock past it. 0
	// checks only the absolute range (1970–2106, ClickHouse DateTime).
	MaxEventSkew time.Duration `mapstructure:"max_event_skew"`
}

// StateConfig is where `run` keeps the order ledger's state (topology.Options.StateDir).
type StateConfig struct {
	// Mode: memory (every state in RAM, restored from the whole changelog at every start and
	// assignment; tests and small installs) or pebble (a persistent store under dir: memory
	// bounded by cache_bytes + 2 × memtable_bytes, restarts restore only the changelog's tail).
	Mode string `mapstructure:"mode"`
	// Dir holds the store (pebble mode): one directory per instance, on a volume that survives
	// restarts (the chart's volumeClaimTemplate). Sized ≈ the instance's share of the
	// changelog's compacted size (helm/README.md "State").
	Dir string `mapstructure:"dir"`
	// CacheBytes is Pebble's block cache; MemtableBytes one memtable (two at most).
	CacheBytes    int64 `mapstructure:"cache_bytes"`
	MemtableBytes int64 `mapstructure:"memtable_bytes"`
	// ValueCacheBytes (pebble mode) keeps the committed values of recently written orders in
	// memory in front of Pebble, so an order's next event reads its state without a Pebble Get;
	// 0 turns it off (topology.DiskOptions).
	ValueCacheBytes int64 `mapstructure:"value_cache_bytes"`
	// CommitTimeout bounds one write to the store (and its open and close): Pebble stalls
	// rather than fails on a full disk, and a write that has not finished in time stops `run`
	// with an error naming state.dir and the cause, for a restart (topology.DiskOptions).
	CommitTimeout time.Duration `mapstructure:"commit_timeout"`
	// SweepInterval is how often `run` looks for keys due for time-driven eviction (closed
	// orders past policy.retention_after_close, orphans past policy.orphan_grace +
	// retention_after_close, on the partition's stream time) and SweepMaxKeys bounds one sweep
	// transaction's tombstones (topology/sweep.go). Both modes.
	SweepInterval time.Duration `mapstructure:"sweep_interval"`
	SweepMaxKeys  int           `mapstructure:"sweep_max_keys"`
	// AllowedLateness is how far eviction trails a partition's newest event time: an event up to
	// that much behind the newest of its partition still finds its order (topology.Options).
	AllowedLateness time.Duration `mapstructure:"allowed_lateness"`
	// Standby (pebble mode): none, or all — keep a warm copy of every partition this instance
	// does not own, refreshed from the changelog every standby_interval, so a partition that
	// moves here (scale-out, a failed member's share) restores only a short tail instead of its
	// whole changelog (topology/standby.go). Costs the whole state on each instance's volume and
	// a read of the whole changelog per instance.
	Standby         string        `mapstructure:"standby"`
	StandbyInterval time.Duration `mapstructure:"standby_interval"`
	// ChangelogLayout is the order_ledger schema version the changelog is written in: v3 (the
	// default), or v2 for the first bounce of a rolling upgrade from a release that reads only
	// v2, with offline schema ids (ledgerstate.Layout; README "Upgrading").
	ChangelogLayout string `mapstructure:"changelog_layout"`
}

// SinkConfig drives `retailflow sink`, the ClickHouse sink.
type SinkConfig struct {
	Group        string        `mapstructure:"group"`
	BatchRows    int           `mapstructure:"batch_rows"`
	BatchTimeout time.Duration `mapstructure:"batch_timeout"`
	MaxRetryWait time.Duration `mapstructure:"max_retry_wait"`
	// MaxBufferBytes bounds the sink's buffered rows in bytes (rows range from 100 B to ≈60 KB,
	// so batch_rows alone bounds nothing); default 64 MiB, see clickhouse.DefaultMaxBufferBytes.
	MaxBufferBytes int64 `mapstructure:"max_buffer_bytes"`
	// DeadLetterValues: what the dead_letters table keeps of a rejected record's value:
	// redacted (default: length and sha256 only) or full. The DLQ topic keeps the full value
	// for replay either way; the table is read by more people and holds personal data.
	DeadLetterValues string `mapstructure:"dead_letter_values"`
}

// PolicyConfig is the accrual policy (processors/ledger.Policy); versioned, stamped on every command.
type PolicyConfig struct {
	Version             string            `mapstructure:"version"`
	EarnRates           map[string]string `mapstructure:"earn_rates"`       // currency → points per unit (decimal)
	TierMultipliers     map[string]string `mapstructure:"tier_multipliers"` // tier → multiplier (decimal)
	ExcludedSKUs        []string          `mapstructure:"excluded_skus"`
	LockDays            int               `mapstructure:"lock_days"`
	ReturnWindowDays    int               `mapstructure:"return_window_days"`
	OrphanGrace         time.Duration     `mapstructure:"orphan_grace"` // shipment/return before its order
	RetentionAfterClose time.Duration     `mapstructure:"retention_after_close"`
	// AmountTolerance per rounded document line when ERP amounts are compared.
	AmountTolerance string `mapstructure:"amount_tolerance"`
	// MaxEventsPerOrder bounds the per-order seen-event set that makes duplicates idempotent.
	MaxEventsPerOrder int `mapstructure:"max_events_per_order"`
	// ConfirmTrigger is when an order's redemption reservation is CONFIRMED, and so refundable,
	// on every refund path (DESIGN.md "One confirmation rule"): ORDER_ACCEPTED (default) or FIRST_SHIPMENT. It is
	// snapshotted per order and stamped through version: change version with it.
	ConfirmTrigger string `mapstructure:"confirm_trigger"`
}

// ReconConfig holds the SLAs and grace windows of the reconciliation views (migrations/views/recon.sql).
type ReconConfig struct {
	ErpSLA        time.Duration `mapstructure:"erp_sla"`
	InvoiceSLA    time.Duration `mapstructure:"invoice_sla"`
	RedemptionSLA time.Duration `mapstructure:"redemption_sla"`
	ReturnSLA     time.Duration `mapstructure:"return_sla"`
	AccrualSLA    time.Duration `mapstructure:"accrual_sla"`
	ThreeWaySLA   time.Duration `mapstructure:"three_way_sla"`
	Grace         time.Duration `mapstructure:"grace"`
	// Owners is the owner team of every backlog row (README "Reconciliation ownership");
	// `retailflow migrate` stores it in recon_owners, which the open_<view> views read.
	Owners ReconOwnersConfig `mapstructure:"owners"`
}

// ReconOwnersConfig maps views and mismatch codes to teams: a row's team is codes[<view>/<CODE>],
// else views[<view>], else default. Views are named recon_…; a file's entries are added to the
// defaults (chsink.DefaultOwners) or replace them key by key.
type ReconOwnersConfig struct {
	Default string            `mapstructure:"default"`
	Views   map[string]string `mapstructure:"views"`
	Codes   map[string]string `mapstructure:"codes"`
}

// owners is the mapping as the ClickHouse connector takes it.
func (o ReconOwnersConfig) owners() chsink.Owners {
	return chsink.Owners{Default: o.Default, Views: o.Views, Codes: o.Codes}
}

// HTTPConfig is the listener for /metrics, /healthz and /readyz: host:port, where the host is
// the address to bind (0.0.0.0 or empty host: every interface, as a pod needs for its probes;
// 127.0.0.1: loopback only). Empty disables the listener.
type HTTPConfig struct {
	Addr string `mapstructure:"addr"`
}

// LogConfig sets the structured logger.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // json | text
}

// DefaultConfig points at the services `make up` starts on loopback.
func DefaultConfig() Config {
	return Config{
		Kafka: KafkaConfig{Brokers: []string{"localhost:9092"}, ClientID: "retailflow", Timeout: 10 * time.Second},
		Topics: TopicsConfig{
			Orders: "retail.orders.v1", Shipments: "retail.shipments.v1", Returns: "retail.returns.v1",
			Loyalty: "retail.loyalty.v1", ERP: "retail.erp.v1",
			Commands: "retailflow.loyalty-commands.v1", Changelog: "retailflow.order-ledger.changelog",
			DLQ: "retailflow.dlq.v1", Partitions: 6, ReplicationFactor: 1, RetentionHours: 7 * 24,
		},
		ClickHouse: ClickHouseConfig{Addr: "127.0.0.1:9000", Database: "retailflow", Username: "default", DialTimeout: 5 * time.Second},
		Runtime: RuntimeConfig{
			Group: "retailflow-ledger", InstanceID: "0",
			TransactionTimeout: 10 * time.Second, SessionTimeout: 10 * time.Second, HeartbeatInterval: 3 * time.Second, RebalanceTimeout: 30 * time.Second,
			MaxRecordsPerTxn: 2000, MaxTxnDuration: 200 * time.Millisecond, MinTxnDuration: 5 * time.Millisecond, MaxBufferedRecords: 10000, Parallelism: 1,
			OffsetReset: "none", MaxEventSkew: time.Hour,
		},
		State: StateConfig{Mode: "memory", CacheBytes: 64 << 20, MemtableBytes: 32 << 20, ValueCacheBytes: topology.DefaultValueCacheBytes, CommitTimeout: topology.DefaultCommitTimeout,
			SweepInterval: topology.DefaultSweepInterval, SweepMaxKeys: topology.DefaultSweepMaxKeys, AllowedLateness: topology.DefaultAllowedLateness,
			Standby: "none", StandbyInterval: topology.DefaultStandbyInterval, ChangelogLayout: "v3"},
		Sink: SinkConfig{Group: "retailflow-sink", BatchRows: 50000, BatchTimeout: time.Second, MaxRetryWait: 30 * time.Second,
			MaxBufferBytes: 64 << 20, DeadLetterValues: "redacted"},
		Policy: PolicyConfig{
			Version:         "2026-12-v2",
			EarnRates:       map[string]string{"EUR": "1", "GBP": "1", "USD": "1"},
			TierMultipliers: map[string]string{"BASE": "1", "SILVER": "1.25", "GOLD": "1.5", "PLATINUM": "2"},
			LockDays:        30, ReturnWindowDays: 30, OrphanGrace: 24 * time.Hour, RetentionAfterClose: 7 * 24 * time.Hour,
			AmountTolerance: "0.005", MaxEventsPerOrder: 4096, ConfirmTrigger: "ORDER_ACCEPTED",
		},
		Recon: ReconConfig{
			ErpSLA: 4 * time.Hour, InvoiceSLA: 48 * time.Hour, RedemptionSLA: time.Hour, ReturnSLA: 24 * time.Hour,
			AccrualSLA: time.Hour, ThreeWaySLA: 48 * time.Hour, Grace: 15 * time.Minute,
			Owners: defaultOwnersConfig(),
		},
		HTTP:    HTTPConfig{Addr: ""},
		Metrics: defaultMetricsConfig(),
		UI:      defaultUIConfig(),
		Log:     LogConfig{Level: "info", Format: "json"},
	}
}

// ConfigError names the key that is wrong and what is wrong with it.
type ConfigError struct {
	Key     string
	Problem string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config %s: %s", e.Key, e.Problem) }

// clusterNameRE is what clickhouse.cluster may be (an element name of remote_servers).
var clusterNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports the first invalid key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "must list at least one host:port")
	}
	for i, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	switch c.Kafka.SASL.Mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		bad("kafka.sasl.mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.Kafka.SASL.Mechanism)
	}
	if c.Kafka.SASL.Mechanism != "" && c.Kafka.SASL.Username == "" {
		bad("kafka.sasl.username", "is required when kafka.sasl.mechanism is set")
	}
	if c.Kafka.SASL.Mechanism != "" && c.Kafka.SASL.Password == "" {
		bad("kafka.sasl.password", "is required when kafka.sasl.mechanism is set: set RETAILFLOW_KAFKA_SASL_PASSWORD or kafka.sasl.password_file")
	}
	if c.Kafka.SASL.Mechanism == "PLAIN" && !c.Kafka.TLS {
		bad("kafka.sasl.mechanism", "PLAIN sends the password in clear text: it needs kafka.tls: true (or use SCRAM-SHA-512)")
	}
	c.kafkaTLS = nil
	if c.Kafka.TLS {
		cfg, err := kafka.TLSConfig(kafka.TLSFiles{CAFile: c.Kafka.TLSCAFile, CertFile: c.Kafka.TLSCertFile,
			KeyFile: c.Kafka.TLSKeyFile, ServerName: c.Kafka.TLSServerName})
		if err != nil {
			bad(tlsKey("kafka", err), "%v", err)
		}
		c.kafkaTLS = cfg
	} else {
		for key, v := range map[string]string{"kafka.tls_ca_file": c.Kafka.TLSCAFile, "kafka.tls_cert_file": c.Kafka.TLSCertFile, "kafka.tls_key_file": c.Kafka.TLSKeyFile} {
			if v != "" {
				bad(key, "is set but kafka.tls is false: set kafka.tls: true to use it")
			}
		}
	}
	if c.Kafka.Timeout <= 0 {
		bad("kafka.timeout", "must be positive")
	}
	names := map[string]string{}
	for key, name := range map[string]string{
		"topics.orders": c.Topics.Orders, "topics.shipments": c.Topics.Shipments, "topics.returns": c.Topics.Returns,
		"topics.loyalty": c.Topics.Loyalty, "topics.erp": c.Topics.ERP, "topics.commands": c.Topics.Commands,
		"topics.changelog": c.Topics.Changelog, "topics.dlq": c.Topics.DLQ, "topics.reroute": c.RerouteTopic(),
	} {
		if name == "" {
			bad(key, "must not be empty")
		} else if other, dup := names[name]; dup {
			bad(key, "topic %q is also configured as %s", name, other)
		}
		names[name] = key
	}
	if c.Topics.Partitions < 1 || c.Topics.Partitions > 10000 {
		bad("topics.partitions", "must be between 1 and 10000, got %d", c.Topics.Partitions)
	}
	if c.Topics.MinInsyncReplicas < 0 || c.Topics.MinInsyncReplicas > c.Topics.ReplicationFactor {
		bad("topics.min_insync_replicas", "must be between 0 (the broker's default) and topics.replication_factor (%d), got %d",
			c.Topics.ReplicationFactor, c.Topics.MinInsyncReplicas)
	}
	if c.Topics.ReplicationFactor < 1 {
		bad("topics.replication_factor", "must be at least 1")
	}
	if c.Topics.RetentionHours < 1 {
		bad("topics.retention_hours", "must be at least 1")
	}
	if c.Registry.URL != "" && !strings.HasPrefix(c.Registry.URL, "http://") && !strings.HasPrefix(c.Registry.URL, "https://") {
		bad("registry.url", "%q must start with http:// or https://", c.Registry.URL)
	}
	if _, _, err := net.SplitHostPort(c.ClickHouse.Addr); err != nil {
		bad("clickhouse.addr", "%q is not host:port", c.ClickHouse.Addr)
	}
	if c.ClickHouse.Database == "" {
		bad("clickhouse.database", "must not be empty")
	}
	if c.ClickHouse.Cluster != "" && !clusterNameRE.MatchString(c.ClickHouse.Cluster) {
		bad("clickhouse.cluster", "%q is not a cluster name of remote_servers (letters, digits, _)", c.ClickHouse.Cluster)
	}
	c.clickhouseTLS = nil
	if c.ClickHouse.TLS {
		cfg, err := kafka.TLSConfig(kafka.TLSFiles{CAFile: c.ClickHouse.TLSCAFile, ServerName: c.ClickHouse.TLSServerName})
		if err != nil {
			bad(tlsKey("clickhouse", err), "%v", err)
		}
		c.clickhouseTLS = cfg
	} else if c.ClickHouse.TLSCAFile != "" {
		bad("clickhouse.tls_ca_file", "is set but clickhouse.tls is false: set clickhouse.tls: true to use it")
	}
	if c.Runtime.Group == "" {
		bad("runtime.group", "must not be empty")
	}
	if c.Runtime.InstanceID == "" {
		bad("runtime.instance_id", "must not be empty: it makes the transactional id stable across restarts")
	}
	if c.Runtime.TransactionTimeout < time.Second || c.Runtime.TransactionTimeout > 15*time.Minute {
		bad("runtime.transaction_timeout", "must be between 1s and 15m (the broker's transaction.max.timeout.ms), got %s", c.Runtime.TransactionTimeout)
	}
	if c.Runtime.MaxTxnDuration <= 0 || c.Runtime.MaxTxnDuration >= c.Runtime.TransactionTimeout {
		bad("runtime.max_txn_duration", "must be positive and below runtime.transaction_timeout")
	}
	if c.Runtime.MinTxnDuration < 0 || c.Runtime.MinTxnDuration > c.Runtime.MaxTxnDuration {
		bad("runtime.min_txn_duration", "must be between 0 and runtime.max_txn_duration")
	}
	if c.Runtime.Parallelism < 1 || c.Runtime.Parallelism > 64 {
		bad("runtime.parallelism", "must be between 1 and 64")
	}
	if c.Runtime.MaxEventSkew < 0 {
		bad("runtime.max_event_skew", "must not be negative (0 turns the check against the record timestamp off)")
	}
	if _, err := kafka.ParseOffsetReset(c.Runtime.OffsetReset); err != nil {
		bad("runtime.offset_reset", "%v", err)
	}
	if c.Runtime.MaxRecordsPerTxn < 1 {
		bad("runtime.max_records_per_txn", "must be at least 1")
	}
	if c.Runtime.MaxBufferedRecords < c.Runtime.MaxRecordsPerTxn {
		bad("runtime.max_buffered_records", "must be at least runtime.max_records_per_txn")
	}
	if c.Runtime.SessionTimeout < 2*time.Second {
		bad("runtime.session_timeout", "must be at least 2s")
	}
	if c.Runtime.HeartbeatInterval <= 0 {
		bad("runtime.heartbeat_interval", "must be positive")
	} else if c.Runtime.SessionTimeout <= c.Runtime.HeartbeatInterval {
		bad("runtime.session_timeout", "%s must exceed runtime.heartbeat_interval (%s), or members expire between heartbeats and the group never settles (3× is usual)",
			c.Runtime.SessionTimeout, c.Runtime.HeartbeatInterval)
	}
	if c.Runtime.RebalanceTimeout < c.Runtime.SessionTimeout {
		bad("runtime.rebalance_timeout", "must be at least runtime.session_timeout")
	}
	switch c.State.Mode {
	case "memory":
	case "pebble":
		if c.State.Dir == "" {
			bad("state.dir", "is required when state.mode is pebble (a directory on a volume only this instance uses)")
		}
		if c.State.CacheBytes < 1<<20 {
			bad("state.cache_bytes", "must be at least 1 MiB, got %d", c.State.CacheBytes)
		}
		if c.State.ValueCacheBytes < 0 || c.State.ValueCacheBytes > 16<<30 {
			bad("state.value_cache_bytes", "must be between 0 (off) and 16 GiB, got %d", c.State.ValueCacheBytes)
		}
		if c.State.MemtableBytes < 1<<20 || c.State.MemtableBytes > 1<<30 {
			bad("state.memtable_bytes", "must be between 1 MiB and 1 GiB, got %d", c.State.MemtableBytes)
		}
		if c.State.CommitTimeout < time.Second || c.State.CommitTimeout > 10*time.Minute {
			bad("state.commit_timeout", "must be between 1s and 10m, got %s (a healthy commit takes milliseconds; a full disk stalls one for ever)", c.State.CommitTimeout)
		}
	default:
		bad("state.mode", "%q is not memory or pebble", c.State.Mode)
	}
	if c.State.SweepInterval < 10*time.Millisecond || c.State.SweepInterval > time.Hour {
		bad("state.sweep_interval", "must be between 10ms and 1h, got %s", c.State.SweepInterval)
	}
	if c.State.AllowedLateness < 0 || c.State.AllowedLateness > 366*24*time.Hour {
		bad("state.allowed_lateness", "must be between 0 and 8784h (366 days), got %s", c.State.AllowedLateness)
	}
	switch c.State.Standby {
	case "none":
	case "all":
		if c.State.Mode != "pebble" {
			bad("state.standby", "all needs state.mode pebble (a standby copy of every partition in RAM would hold the whole state on each instance), got mode %q", c.State.Mode)
		}
	default:
		bad("state.standby", "%q is not none or all", c.State.Standby)
	}
	if l, err := ledgerstate.ParseLayout(c.State.ChangelogLayout); err != nil {
		bad("state.changelog_layout", "%v", err)
	} else if l == ledgerstate.LayoutV2 && c.Registry.URL != "" {
		bad("state.changelog_layout", "v2 is for offline schema ids (registry.url unset): with a registry, instances of the release before fetch v3 and resolve it themselves")
	}
	if c.State.StandbyInterval < 100*time.Millisecond || c.State.StandbyInterval > time.Hour {
		bad("state.standby_interval", "must be between 100ms and 1h, got %s", c.State.StandbyInterval)
	}
	if c.State.SweepMaxKeys < 1 || c.State.SweepMaxKeys > 100_000 {
		bad("state.sweep_max_keys", "must be between 1 and 100000 (the tombstones of one transaction), got %d", c.State.SweepMaxKeys)
	}
	if c.Sink.Group == "" {
		bad("sink.group", "must not be empty")
	} else if c.Sink.Group == c.Runtime.Group {
		bad("sink.group", "must differ from runtime.group")
	}
	if c.Sink.BatchRows < 1 || c.Sink.BatchRows > 1_000_000 {
		bad("sink.batch_rows", "must be between 1 and 1000000")
	}
	if c.Sink.BatchTimeout < 10*time.Millisecond {
		bad("sink.batch_timeout", "must be at least 10ms")
	}
	if c.Sink.MaxRetryWait < 100*time.Millisecond {
		bad("sink.max_retry_wait", "must be at least 100ms")
	}
	if _, err := chsink.ParseDeadLetterValues(c.Sink.DeadLetterValues); err != nil {
		bad("sink.dead_letter_values", "%v", err)
	}
	if c.Sink.MaxBufferBytes < 1<<20 {
		bad("sink.max_buffer_bytes", "must be at least 1 MiB (1048576)")
	}
	if c.Policy.Version == "" {
		bad("policy.version", "must not be empty: it is stamped on every command")
	}
	if _, err := c.LedgerPolicy(); err != nil {
		errs = append(errs, err)
	}
	if c.Policy.LockDays < 0 {
		bad("policy.lock_days", "must not be negative")
	}
	if c.Policy.ReturnWindowDays < 0 {
		bad("policy.return_window_days", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "%q is not one of json, text", c.Log.Format)
	}
	if c.HTTP.Addr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			bad("http.addr", "%q is not host:port", c.HTTP.Addr)
		}
	}
	for _, s := range c.secrets() {
		if *s.value == masked {
			bad(s.key, "is %q, the mask `retailflow config` prints: give the secret through %s or %s",
				masked, s.env(), s.fileKey)
		}
	}
	if u, err := url.Parse(c.Registry.URL); err == nil && u.User != nil {
		if pw, _ := u.User.Password(); pw == masked {
			bad("registry.url", "carries the masked password %q: give the credentials through registry.username and registry.password", masked)
		}
	}
	c.Metrics.validate(bad)
	c.UI.validate(bad)
	if err := c.Recon.Owners.owners().Validate("recon.owners"); err != nil {
		errs = append(errs, fmt.Errorf("config %w", err))
	}
	return joinOneLine(errs)
}

// tlsKey names the config key of a kafka.TLSConfig error.
func tlsKey(section string, err error) string {
	var fe *kafka.TLSFileError
	if errors.As(err, &fe) {
		return section + ".tls_" + fe.Field + "_file"
	}
	return section + ".tls"
}

// joinOneLine joins errors with "; " so a report of several bad keys stays one line.
func joinOneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &joinedError{errs: errs, msg: strings.Join(msgs, "; ")}
}

type joinedError struct {
	errs []error
	msg  string
}

func (e *joinedError) Error() string   { return e.msg }
func (e *joinedError) Unwrap() []error { return e.errs }

// LoadConfig reads the file (if any), then the environment, then the flags that were set.
// Unknown keys in the file are an error that names them.
func LoadConfig(file string, flagOverrides map[string]any) (Config, error) {
	v := viper.New()
	def := DefaultConfig()
	var defMap map[string]any
	if err := mapstructure.Decode(def, &defMap); err != nil {
		return Config{}, fmt.Errorf("config defaults: %w", err)
	}
	keys := leafKeys("", reflect.TypeOf(def))
	for _, k := range keys {
		v.SetDefault(k, lookup(defMap, k))
	}
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", file, errors.Unwrap(err))
		}
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %v", file, err)
		}
		known := map[string]bool{}
		for _, k := range keys {
			known[k] = true
		}
		var unknown []string
		for _, k := range v.AllKeys() {
			if !known[k] && !underMapKey(k, keys) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return Config{}, &ConfigError{Key: unknown[0], Problem: fmt.Sprintf("unknown key in %s (known sections: kafka, topics, registry, clickhouse, runtime, sink, policy, recon, http, metrics, ui, log)", file)}
		}
	}
	v.SetEnvPrefix("RETAILFLOW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range keys {
		if err := v.BindEnv(k); err != nil {
			return Config{}, err
		}
	}
	for k, val := range flagOverrides {
		v.Set(k, val)
	}
	var c Config
	err := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
		dc.ErrorUnused = true
	})
	if err != nil {
		return Config{}, decodeError(err)
	}
	// viper lower-cases map keys from files; currencies and tiers are upper case by convention,
	// so the same policy reads the same whether it came from the defaults or a file
	c.Policy.EarnRates, c.Policy.TierMultipliers = upperKeys(c.Policy.EarnRates), upperKeys(c.Policy.TierMultipliers)
	// and mismatch codes (recon.owners.codes: <view>/<CODE>) are upper case
	c.Recon.Owners.Codes = upperCodes(c.Recon.Owners.Codes)
	if err := c.readSecretFiles(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func defaultOwnersConfig() ReconOwnersConfig {
	o := chsink.DefaultOwners()
	return ReconOwnersConfig{Default: o.Default, Views: o.Views, Codes: o.Codes}
}

// upperCodes upper-cases the code part of <view>/<code> keys.
func upperCodes(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		view, code, _ := strings.Cut(k, "/")
		out[view+"/"+strings.ToUpper(code)] = v
	}
	return out
}

func upperKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToUpper(k)] = v
	}
	return out
}

// decodeError turns mapstructure's multi-line report into one line per problem, each starting
// with the key: "config sink.batch_rows: cannot parse value as 'int' ...".
func decodeError(err error) error {
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "decoding failed") {
			continue
		}
		if strings.HasPrefix(line, "'") {
			if end := strings.Index(line[1:], "'"); end > 0 {
				line = line[1:end+1] + ":" + line[end+2:]
			}
		}
		parts = append(parts, line)
	}
	return fmt.Errorf("config %s", strings.Join(parts, "; "))
}

// leafKeys lists the dotted keys of every leaf field of t (maps are leaves).
func leafKeys(prefix string, t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("mapstructure")
		if name == "" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			out = append(out, leafKeys(key, f.Type)...)
			continue
		}
		out = append(out, key)
	}
	return out
}

func underMapKey(k string, keys []string) bool {
	for _, known := range keys {
		if strings.HasPrefix(k, known+".") {
			return true
		}
	}
	return false
}

func lookup(m map[string]any, dotted string) any {
	parts := strings.Split(dotted, ".")
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

// StateLayout is state.changelog_layout, validated by Load.
func (c *Config) StateLayout() ledgerstate.Layout {
	l, _ := ledgerstate.ParseLayout(c.State.ChangelogLayout)
	return l
}
