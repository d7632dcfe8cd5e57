-- Ownership of the reconciliation backlog.
-- recon_owners: the owner team of each view and mismatch code, written by `retailflow migrate`
-- from the configuration (recon.owners) as a new version whenever it changed; the latest version
-- is the mapping (view_name '*': the default team; mismatch_code '': the whole view).
-- recon_actions: the audit trail of what people did with a backlog row (ACKNOWLEDGED, RESOLVED,
-- REOPENED): who, when, the note. Append-only (unique keys: only a retried INSERT collapses); a
-- row's state is its latest action (seq: nanoseconds, orders two actions of one second).
-- row_key: the view's business keys and the mismatch code joined by '|', as `retailflow
-- reconcile` prints it.
CREATE TABLE IF NOT EXISTS {db}.recon_owners (
    version UInt64, view_name String, mismatch_code String, team String
) ENGINE = ReplacingMergeTree ORDER BY (version, view_name, mismatch_code);

CREATE TABLE IF NOT EXISTS {db}.recon_actions (
    view_name String, row_key String, action String, note String, actor String, acted_at DateTime, seq UInt64, action_id String
) ENGINE = ReplacingMergeTree ORDER BY (view_name, row_key, seq, action_id);
