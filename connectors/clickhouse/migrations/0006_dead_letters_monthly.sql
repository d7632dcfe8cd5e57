-- dead_letters by month, for retention: ClickHouse 18.16 has no TTL, so old dead letters are
-- removed a month at a time (`retailflow dlq purge --older-than`, ALTER TABLE … DROP PARTITION).
-- The partition is the month of seen_at, a value carried by the dead letter (the runtime's first
-- rejection, or the record's timestamp for a row the sink wrote itself), so a redelivered row
-- lands in the partition of the row it replaces and ReplacingMergeTree still collapses it.
-- 18.16 cannot change a table's partition key: a partitioned copy takes the table's name and
-- the rows are moved into it. The swap comes before the copy, so rows the sink inserts
-- meanwhile go to the new table. If this migration stops after the RENAME, finish it by hand:
-- INSERT INTO {db}.dead_letters SELECT * FROM {db}.dead_letters_unpartitioned; then DROP TABLE
-- {db}.dead_letters_unpartitioned, and INSERT INTO {db}.schema_migrations as migrate does.
-- Rows written before the sink redacted values (sink.dead_letter_values) keep their value.

DROP TABLE IF EXISTS {db}.dead_letters_monthly;

CREATE TABLE {db}.dead_letters_monthly AS {db}.dead_letters
ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(seen_at) ORDER BY (source_topic, source_partition, source_offset);

RENAME TABLE {db}.dead_letters TO {db}.dead_letters_unpartitioned, {db}.dead_letters_monthly TO {db}.dead_letters;

INSERT INTO {db}.dead_letters SELECT * FROM {db}.dead_letters_unpartitioned;

DROP TABLE {db}.dead_letters_unpartitioned;

-- requires: dedup_token
ALTER TABLE {db}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000;
