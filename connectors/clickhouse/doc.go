// Package clickhouse is retailflow's edge to ClickHouse: versioned migrations (Migrate, the
// embedded migrations/*.sql), the mapping of every Kafka record retailflow reads into rows of
// fact tables (EventRows, CommandRows, DeadLetterRows, StateRows), the idempotent sink (Sink),
// and the reconciliation report (BuildReport, OrderStory).
//
// # Files
//
//	conn.go        Conn (address, database, credentials), Open (pings), Connect (lazy: the sink)
//	migrate.go     Migrations, Migrate/MigrateSession (schema_migrations bookkeeping, checksums,
//	               retired checksums), Session, DDL (testdata/ddl.golden), ReconSettings → recon_config
//	features.go    Features decided from version() (-- requires: statements), Capabilities,
//	               InsertDedupToken; the views file re-created when it changes (applyViews)
//	migrations/    0001 fact tables; 0002 retired (empty); 0003 records ClickHouse rejected leave
//	               the views; 0004 current-server features; 0005 raw_<table> per record.
//	               views/recon.sql: every view (f_*, v_*, recon_* C1–C7). Never edit an applied
//	               numbered migration; edit the views file freely.
//	tables.go      Table (insert column lists parsed from the DDL), Row
//	rows.go        record → rows; versions; NetValueByQty (HALF_EVEN to 2 dp)
//	sink.go        Sink: consume → map → batch → INSERT → commit; pause/back-off; DLQ
//	views.go       Views (names, keys, measures of C1–C7 and R for the report)
//	report.go      Report (counts by code × bucket, oldest rows), Story (one order, audit trail)
//
// # Invariants
//
// Idempotence by construction: every row carries a deterministic row_id and a version; every
// table is a ReplacingMergeTree(version) ordered by the business key, and every view reads with
// FINAL (through the f_* views). Inserting the same record twice (a crash between the INSERT and
// the offset commit, a rebalance, a replay) therefore leaves every view unchanged; count() equals
// uniqExact(row_id) after FINAL. ClickHouse 18.16 has no insert_deduplication_token, so nothing
// relies on block deduplication.
//
// Versions: rows from the input topics use 2^63 − offset (the first record of a business key
// wins, as in the ledger, where a later record re-using an id is a duplicate or a conflict);
// rows from retailflow's own topics (commands, changelog, DLQ) use offset + 1 (the latest wins).
//
// Offsets are committed only after ClickHouse acknowledged every INSERT holding the rows of the
// committed records. A record is in the views whole or not at all: records the runtime
// dead-lettered (read back from the DLQ topic) and records whose rows ClickHouse rejected
// (dead-lettered by the sink) are excluded by v_rejected_sources. A record the sink cannot
// decode becomes a dead_letters row keyed by its own coordinates; the runtime, reading the same
// input, dead-letters it too and its row (carrying the runtime's classification) replaces the
// sink's, so dead_letters holds one row per rejected input record.
//
// Reconciliation settings (grace, SLAs, the C6 amount tolerance per billing line: the ledger's
// policy.amount_tolerance) are not baked into the views:
// `retailflow migrate` writes them into recon_config (only when they changed) and the views read
// them when queried, so changing them needs no new migration.
//
// Money is Decimal(18,4) and SQL never divides it: the OMS value of a partial quantity is
// precomputed per order line in Go (order_lines.net_value_by_qty, HALF_EVEN to 2 places).
//
// # ClickHouse 18.16 with clickhouse-go v2.51
//
// INSERT only as a prepared batch with an explicit column list, or INSERT … SELECT through Exec
// (Exec("INSERT … VALUES") hangs); one JOIN per SELECT (views nest), and every joined subquery
// aliased (the analyzer of current servers requires it; chdb_test checks both engines); no
// DateTime64, Map, CODEC, TTL or roundBankers, and LowCardinality only where Migrate found a
// server that has it; a Decimal cannot be compared with a Decimal scalar subquery; and UNION ALL
// prunes unused columns by name, so every branch must alias every column alike or values shift
// silently between columns.
package clickhouse
