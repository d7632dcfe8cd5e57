-- Correlation ids: the envelope's correlation_id on every row that comes from an event, so one id
-- finds an order's (checkout's) events, the commands they caused, their dead letters and the
-- processor's log lines (which carry correlation_id too). Input fact tables and their raw_*
-- copies (the raw_* table first: its materialized view forwards the new column as soon as the
-- fact table has it), loyalty_commands (the command's envelope carries its cause's id) and
-- dead_letters (the rejected record's id when it decodes; empty for undecodable bytes).
-- Rows written before this migration keep ''.

ALTER TABLE {db}.raw_orders ADD COLUMN correlation_id String;

ALTER TABLE {db}.orders ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_order_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.order_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_cancellation_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.cancellation_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_shipment_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.shipment_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_return_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.return_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_reservation_events ADD COLUMN correlation_id String;

ALTER TABLE {db}.reservation_events ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_loyalty_postings ADD COLUMN correlation_id String;

ALTER TABLE {db}.loyalty_postings ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_erp_sales_orders ADD COLUMN correlation_id String;

ALTER TABLE {db}.erp_sales_orders ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_erp_sales_order_items ADD COLUMN correlation_id String;

ALTER TABLE {db}.erp_sales_order_items ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_billing_documents ADD COLUMN correlation_id String;

ALTER TABLE {db}.billing_documents ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_billing_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.billing_lines ADD COLUMN correlation_id String;

ALTER TABLE {db}.raw_billing_cancellations ADD COLUMN correlation_id String;

ALTER TABLE {db}.billing_cancellations ADD COLUMN correlation_id String;

ALTER TABLE {db}.loyalty_commands ADD COLUMN correlation_id String;

ALTER TABLE {db}.dead_letters ADD COLUMN correlation_id String;
