-- erp v2 (schemas/avro/released/erp/v2.avsc). The sales-order replica, ErpSalesOrderChanged, is
-- stored in the tables of the creation it updates: erp_version (0 for a creation and for rows
-- written before this migration), status ('' = as created: open) and changed_at per sales
-- order, rejected_quantity per item. Each replica is a record of raw_erp_sales_orders and
-- raw_erp_sales_order_items (ordered by source record), and f_erp_sales_orders keeps, per sales
-- order, the record with the highest erp_version (of equal versions the first: a later one is
-- stale), f_erp_sales_order_items the items of that record (migrations/views/recon.sql). The
-- fact tables themselves keep one row per sales order (their sorting key has no version: the
-- first record, the creation, survives merges), which is why only the raw_* copies are read.
-- billing_documents gains the redemption value an invoice or credit memo records;
-- has_redemption_value = 0 where the writer did not send one (v1): C6 REDEMPTION_VALUE_DIFF does
-- not compare an order with such a document (nor one stored before this migration).
-- The raw_* table first: its materialized view forwards the new column as soon as the fact
-- table has it.

ALTER TABLE {db}.raw_erp_sales_orders ADD COLUMN erp_version UInt64;

ALTER TABLE {db}.erp_sales_orders ADD COLUMN erp_version UInt64;

ALTER TABLE {db}.raw_erp_sales_orders ADD COLUMN status String;

ALTER TABLE {db}.erp_sales_orders ADD COLUMN status String;

ALTER TABLE {db}.raw_erp_sales_orders ADD COLUMN changed_at DateTime;

ALTER TABLE {db}.erp_sales_orders ADD COLUMN changed_at DateTime;

ALTER TABLE {db}.raw_erp_sales_order_items ADD COLUMN erp_version UInt64;

ALTER TABLE {db}.erp_sales_order_items ADD COLUMN erp_version UInt64;

ALTER TABLE {db}.raw_erp_sales_order_items ADD COLUMN rejected_quantity Decimal(12, 3);

ALTER TABLE {db}.erp_sales_order_items ADD COLUMN rejected_quantity Decimal(12, 3);

ALTER TABLE {db}.raw_billing_documents ADD COLUMN redemption_value Decimal(18, 4);

ALTER TABLE {db}.billing_documents ADD COLUMN redemption_value Decimal(18, 4);

ALTER TABLE {db}.raw_billing_documents ADD COLUMN has_redemption_value UInt8;

ALTER TABLE {db}.billing_documents ADD COLUMN has_redemption_value UInt8;

-- C6 REDEMPTION_VALUE_DIFF values the loyalty side in money: the points the platform kept times
-- the reservation's conversion rate (PointsReserved.conversion_rate, value per point). Rows of
-- reservations stored before this migration keep 0: their redemption value is not compared.

ALTER TABLE {db}.raw_reservation_events ADD COLUMN conversion_rate Decimal(9, 6);

ALTER TABLE {db}.reservation_events ADD COLUMN conversion_rate Decimal(9, 6);
