-- What a current ClickHouse offers over the 18.16 the schema was written for, applied only where the
-- server has it: `retailflow migrate` reads version() once, enables each feature whose minimum
-- version the server meets, runs the statements marked `-- requires: <feature>` only for enabled
-- features, and records the decision in schema_features (Capabilities reads it back). A server
-- without a feature skips its statements and keeps the 18.16 schema, which the views read alike:
-- no view's columns or rows depend on these statements.
--
-- low_cardinality (server >= 20.1): dictionary-encoded code columns and src_topic. Key columns
-- keep String (a sorting key column's type cannot be altered). The values are unchanged.

-- requires: low_cardinality
ALTER TABLE {db}.orders
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN tier_code LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.order_lines
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.cancellation_lines
    MODIFY COLUMN reason_code LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.shipment_lines
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.return_lines
    MODIFY COLUMN disposition LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.reservation_events
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.loyalty_postings
    MODIFY COLUMN tier_code LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.erp_sales_orders
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.erp_sales_order_items
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.billing_documents
    MODIFY COLUMN doc_kind LowCardinality(String),
    MODIFY COLUMN billing_type LowCardinality(String),
    MODIFY COLUMN accounting_transfer_status LowCardinality(String),
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.billing_lines
    MODIFY COLUMN doc_kind LowCardinality(String),
    MODIFY COLUMN accounting_transfer_status LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.billing_cancellations
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.loyalty_commands
    MODIFY COLUMN command_type LowCardinality(String),
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN tier_code LowCardinality(String),
    MODIFY COLUMN expiry_policy LowCardinality(String),
    MODIFY COLUMN policy_version LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.order_state
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN tier_code LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.order_line_state
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.audit_ledger
    MODIFY COLUMN movement_kind LowCardinality(String),
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- requires: low_cardinality
ALTER TABLE {db}.dead_letters
    MODIFY COLUMN origin LowCardinality(String),
    MODIFY COLUMN error_class LowCardinality(String),
    MODIFY COLUMN src_topic LowCardinality(String);

-- dedup_token (server >= 22.2): keep the hashes of the last 1000 inserted blocks per table, so
-- that a retried INSERT of the same rows (same content, or the same insert_deduplication_token the
-- sink sets per batch) is acknowledged without writing the rows twice. ReplacingMergeTree + FINAL
-- stays the guarantee (18.16 has neither); this removes the duplicate parts before any merge.

-- requires: dedup_token
ALTER TABLE {db}.orders MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.order_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.cancellation_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.shipment_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.return_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.reservation_events MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.loyalty_postings MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.erp_sales_orders MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.erp_sales_order_items MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.billing_documents MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.billing_lines MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.billing_cancellations MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.loyalty_commands MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.order_state MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.order_line_state MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.audit_ledger MODIFY SETTING non_replicated_deduplication_window = 1000;

-- requires: dedup_token
ALTER TABLE {db}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000;

-- table_comments (server >= 21.10): every raw input fact table says what it holds. Raw input
-- tables also keep the rows of records that were dead-lettered (the runtime rejected them, or
-- ClickHouse refused part of them): analysts query the f_* views, which leave those out.

-- requires: table_comments
ALTER TABLE {db}.orders MODIFY COMMENT 'Raw orders facts, including the rows of dead-lettered records: query {db}.f_orders instead';

-- requires: table_comments
ALTER TABLE {db}.order_lines MODIFY COMMENT 'Raw order_lines facts, including the rows of dead-lettered records: query {db}.f_order_lines instead';

-- requires: table_comments
ALTER TABLE {db}.cancellation_lines MODIFY COMMENT 'Raw cancellation_lines facts, including the rows of dead-lettered records: query {db}.f_cancellation_lines instead';

-- requires: table_comments
ALTER TABLE {db}.shipment_lines MODIFY COMMENT 'Raw shipment_lines facts, including the rows of dead-lettered records: query {db}.f_shipment_lines instead';

-- requires: table_comments
ALTER TABLE {db}.return_lines MODIFY COMMENT 'Raw return_lines facts, including the rows of dead-lettered records: query {db}.f_return_lines instead';

-- requires: table_comments
ALTER TABLE {db}.reservation_events MODIFY COMMENT 'Raw reservation_events facts, including the rows of dead-lettered records: query {db}.f_reservation_events instead';

-- requires: table_comments
ALTER TABLE {db}.loyalty_postings MODIFY COMMENT 'Raw loyalty_postings facts, including the rows of dead-lettered records: query {db}.f_loyalty_postings instead';

-- requires: table_comments
ALTER TABLE {db}.erp_sales_orders MODIFY COMMENT 'Raw erp_sales_orders facts, including the rows of dead-lettered records: query {db}.f_erp_sales_orders instead';

-- requires: table_comments
ALTER TABLE {db}.erp_sales_order_items MODIFY COMMENT 'Raw erp_sales_order_items facts, including the rows of dead-lettered records: query {db}.f_erp_sales_order_items instead';

-- requires: table_comments
ALTER TABLE {db}.billing_documents MODIFY COMMENT 'Raw billing_documents facts, including the rows of dead-lettered records: query {db}.f_billing_documents instead';

-- requires: table_comments
ALTER TABLE {db}.billing_lines MODIFY COMMENT 'Raw billing_lines facts, including the rows of dead-lettered records: query {db}.f_billing_lines instead';

-- requires: table_comments
ALTER TABLE {db}.billing_cancellations MODIFY COMMENT 'Raw billing_cancellations facts, including the rows of dead-lettered records: query {db}.f_billing_cancellations instead';
