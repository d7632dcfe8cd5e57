-- Records whose rows ClickHouse rejected permanently (the sink dead-lettered them, origin
-- sink-insert) leave the views too, like the records the runtime rejected: a record is in the
-- views whole or not at all, even when only one of its tables refused its rows.
-- Views are resolved when queried, so the f_* views pick the new definition up.
DROP TABLE IF EXISTS {db}.v_rejected_sources;

CREATE VIEW IF NOT EXISTS {db}.v_rejected_sources AS
SELECT source_topic, source_partition, source_offset FROM {db}.dead_letters FINAL
WHERE origin IN ('runtime', 'sink-insert');
