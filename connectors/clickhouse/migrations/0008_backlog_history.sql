-- Daily counts of the reconciliation backlog, written by the sink each time it counts the views
-- (config metrics.backlog_interval): per day and view the day's last count wins. The views have
-- no history of their own; the operations page charts this one (the trend over days).
CREATE TABLE IF NOT EXISTS {db}.recon_backlog_history (
    day Date, view String, counted_at DateTime, open_rows UInt64, sla_breached UInt64
) ENGINE = ReplacingMergeTree(counted_at) ORDER BY (day, view);
