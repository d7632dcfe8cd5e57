// Package clickhouse is retailflow's edge to ClickHouse: versioned migrations (Migrate, the
// embedded migrations/*.sql), the mapping of every Kafka record retailflow reads into rows of
// fact tables (Rows), the idempotent sink (Sink) and the reconciliation report (Report).
//
// Idempotence by construction: every row carries a deterministic row_id and a version (the Kafka
// offset of its record + 1); every table is a ReplacingMergeTree(version) ordered by the business
// key, and every view reads with FINAL. Inserting the same record twice (a crash between the
// INSERT and the offset commit, a rebalance, a replay) therefore leaves every view unchanged.
// ClickHouse 18.16 has no insert_deduplication_token, so the sink does not rely on block
// deduplication.
//
// Constraints of ClickHouse 18.16 with clickhouse-go v2.51 that shape this package: INSERT only as
// a prepared batch with an explicit column list (Exec("INSERT … VALUES") hangs); one JOIN per
// SELECT (views nest); no DateTime64, Map, CODEC, TTL, LowCardinality or roundBankers; a Decimal
// cannot be compared with a Decimal scalar subquery. Money is Decimal(18,4) and SQL never divides
// it: amounts that need a division (the OMS value of a partial quantity) are computed in Go with
// the rounding named where it is applied.
package clickhouse
