-- Every record's rows, kept per record. An input fact table keeps one row per business key
-- (ReplacingMergeTree: the first record's version wins and merges delete the others), so when the
-- first record of a key was rejected (dead-lettered) and a later one accepted — a DLQ replay after
-- a fix, an upstream re-send — the accepted record's rows were merged away and the f_* views,
-- which drop rejected records, lost the key altogether. raw_<table> has the same columns, is fed
-- by a materialized view on every INSERT into <table>, and is ordered by the business key AND the
-- source record, so it collapses only a redelivery of the same record. The f_* views read it and
-- keep, per business key, the first record that was not rejected (views/recon.sql).
-- Existing rows are copied once (rows already merged away cannot be recovered). Input facts are
-- stored twice; analysts never read either table directly, only the f_* views.

CREATE TABLE IF NOT EXISTS {db}.raw_orders AS {db}.orders
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_orders_mv TO {db}.raw_orders AS SELECT * FROM {db}.orders;

INSERT INTO {db}.raw_orders SELECT * FROM {db}.orders;

-- requires: table_comments
ALTER TABLE {db}.raw_orders MODIFY COMMENT 'Every record of orders, including dead-lettered ones: query {db}.f_orders instead';

CREATE TABLE IF NOT EXISTS {db}.raw_order_lines AS {db}.order_lines
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, order_line_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_order_lines_mv TO {db}.raw_order_lines AS SELECT * FROM {db}.order_lines;

INSERT INTO {db}.raw_order_lines SELECT * FROM {db}.order_lines;

-- requires: table_comments
ALTER TABLE {db}.raw_order_lines MODIFY COMMENT 'Every record of order_lines, including dead-lettered ones: query {db}.f_order_lines instead';

CREATE TABLE IF NOT EXISTS {db}.raw_cancellation_lines AS {db}.cancellation_lines
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, cancellation_id, order_line_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_cancellation_lines_mv TO {db}.raw_cancellation_lines AS SELECT * FROM {db}.cancellation_lines;

INSERT INTO {db}.raw_cancellation_lines SELECT * FROM {db}.cancellation_lines;

-- requires: table_comments
ALTER TABLE {db}.raw_cancellation_lines MODIFY COMMENT 'Every record of cancellation_lines, including dead-lettered ones: query {db}.f_cancellation_lines instead';

CREATE TABLE IF NOT EXISTS {db}.raw_shipment_lines AS {db}.shipment_lines
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, shipment_id, shipment_line_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_shipment_lines_mv TO {db}.raw_shipment_lines AS SELECT * FROM {db}.shipment_lines;

INSERT INTO {db}.raw_shipment_lines SELECT * FROM {db}.shipment_lines;

-- requires: table_comments
ALTER TABLE {db}.raw_shipment_lines MODIFY COMMENT 'Every record of shipment_lines, including dead-lettered ones: query {db}.f_shipment_lines instead';

CREATE TABLE IF NOT EXISTS {db}.raw_return_lines AS {db}.return_lines
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, return_id, return_line_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_return_lines_mv TO {db}.raw_return_lines AS SELECT * FROM {db}.return_lines;

INSERT INTO {db}.raw_return_lines SELECT * FROM {db}.return_lines;

-- requires: table_comments
ALTER TABLE {db}.raw_return_lines MODIFY COMMENT 'Every record of return_lines, including dead-lettered ones: query {db}.f_return_lines instead';

CREATE TABLE IF NOT EXISTS {db}.raw_reservation_events AS {db}.reservation_events
ENGINE = ReplacingMergeTree(version) ORDER BY (reservation_id, kind, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_reservation_events_mv TO {db}.raw_reservation_events AS SELECT * FROM {db}.reservation_events;

INSERT INTO {db}.raw_reservation_events SELECT * FROM {db}.reservation_events;

-- requires: table_comments
ALTER TABLE {db}.raw_reservation_events MODIFY COMMENT 'Every record of reservation_events, including dead-lettered ones: query {db}.f_reservation_events instead';

CREATE TABLE IF NOT EXISTS {db}.raw_loyalty_postings AS {db}.loyalty_postings
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, kind, entry_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_loyalty_postings_mv TO {db}.raw_loyalty_postings AS SELECT * FROM {db}.loyalty_postings;

INSERT INTO {db}.raw_loyalty_postings SELECT * FROM {db}.loyalty_postings;

-- requires: table_comments
ALTER TABLE {db}.raw_loyalty_postings MODIFY COMMENT 'Every record of loyalty_postings, including dead-lettered ones: query {db}.f_loyalty_postings instead';

CREATE TABLE IF NOT EXISTS {db}.raw_erp_sales_orders AS {db}.erp_sales_orders
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, erp_sales_order_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_erp_sales_orders_mv TO {db}.raw_erp_sales_orders AS SELECT * FROM {db}.erp_sales_orders;

INSERT INTO {db}.raw_erp_sales_orders SELECT * FROM {db}.erp_sales_orders;

-- requires: table_comments
ALTER TABLE {db}.raw_erp_sales_orders MODIFY COMMENT 'Every record of erp_sales_orders, including dead-lettered ones: query {db}.f_erp_sales_orders instead';

CREATE TABLE IF NOT EXISTS {db}.raw_erp_sales_order_items AS {db}.erp_sales_order_items
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, erp_sales_order_id, erp_item, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_erp_sales_order_items_mv TO {db}.raw_erp_sales_order_items AS SELECT * FROM {db}.erp_sales_order_items;

INSERT INTO {db}.raw_erp_sales_order_items SELECT * FROM {db}.erp_sales_order_items;

-- requires: table_comments
ALTER TABLE {db}.raw_erp_sales_order_items MODIFY COMMENT 'Every record of erp_sales_order_items, including dead-lettered ones: query {db}.f_erp_sales_order_items instead';

CREATE TABLE IF NOT EXISTS {db}.raw_billing_documents AS {db}.billing_documents
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_billing_documents_mv TO {db}.raw_billing_documents AS SELECT * FROM {db}.billing_documents;

INSERT INTO {db}.raw_billing_documents SELECT * FROM {db}.billing_documents;

-- requires: table_comments
ALTER TABLE {db}.raw_billing_documents MODIFY COMMENT 'Every record of billing_documents, including dead-lettered ones: query {db}.f_billing_documents instead';

CREATE TABLE IF NOT EXISTS {db}.raw_billing_lines AS {db}.billing_lines
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id, billing_item, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_billing_lines_mv TO {db}.raw_billing_lines AS SELECT * FROM {db}.billing_lines;

INSERT INTO {db}.raw_billing_lines SELECT * FROM {db}.billing_lines;

-- requires: table_comments
ALTER TABLE {db}.raw_billing_lines MODIFY COMMENT 'Every record of billing_lines, including dead-lettered ones: query {db}.f_billing_lines instead';

CREATE TABLE IF NOT EXISTS {db}.raw_billing_cancellations AS {db}.billing_cancellations
ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id, src_topic, src_partition, src_offset);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.raw_billing_cancellations_mv TO {db}.raw_billing_cancellations AS SELECT * FROM {db}.billing_cancellations;

INSERT INTO {db}.raw_billing_cancellations SELECT * FROM {db}.billing_cancellations;

-- requires: table_comments
ALTER TABLE {db}.raw_billing_cancellations MODIFY COMMENT 'Every record of billing_cancellations, including dead-lettered ones: query {db}.f_billing_cancellations instead';
