-- What `retailflow compensate --apply` sent: one row per re-requested loyalty command, written
-- after the Kafka transaction that carried it committed. Append-only: nothing updates a row (the
-- key is the request id and the run, so only a retried INSERT of the same row collapses). A
-- request id found here is never sent again: running the command twice sends nothing the second
-- time. original: the coordinates (topic/partition/offset) of the ledger's command record whose
-- bytes were re-sent; sent_*: where the copy landed.
CREATE TABLE IF NOT EXISTS {db}.compensations (
    request_id String, order_id String, command_type String, points Int64, source_ref_id String,
    view_name String, mismatch_code String, original String,
    sent_topic String, sent_partition Int32, sent_offset Int64, run_id String, actor String, sent_at DateTime
) ENGINE = ReplacingMergeTree ORDER BY (request_id, run_id);
