-- Fact tables: one per input event family, plus the loyalty-command ledger, the ledger's
-- state (from the changelog), the audit trail of every point and money movement, and the
-- dead letters. Every row carries a deterministic row_id and a version derived from the Kafka
-- offset of the record it came from; every table is a ReplacingMergeTree(version) ordered by the
-- business key, so a redelivered record replaces itself and readers use FINAL.
-- Input facts (the upstream topics): version = 2^63 - offset, so the FIRST record of a business
-- key wins, as in the ledger (a later record re-using an id with another payload is a conflict
-- the runtime dead-letters). retailflow's own outputs (commands, changelog, audit, dead
-- letters): version = offset + 1, the latest wins.
-- src_* locate the Kafka record the row came from; ingested_at is informational only.

CREATE TABLE IF NOT EXISTS {db}.orders (
    order_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    accepted_at DateTime, customer_id String, loyalty_member_id String, tier_code String,
    currency String, earn_rate Decimal(9, 6), tier_multiplier Decimal(9, 6), has_tier_multiplier UInt8,
    reservation_id String, redemption_points Int64, redemption_value Decimal(18, 4),
    line_count UInt32, merchandise_net Decimal(18, 4), grand_total Decimal(18, 4),
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id);

-- net_value_by_qty[q+1] = round_half_even(line_net × q / quantity, 2) for q = 0..quantity
-- (integer quantities up to 1000), computed by the sink so that SQL never divides money.
CREATE TABLE IF NOT EXISTS {db}.order_lines (
    order_id String, order_line_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    accepted_at DateTime, line_number Int32, sku String, is_gift_card UInt8,
    quantity Decimal(12, 3), line_net Decimal(18, 4), redemption_points Int64,
    net_value_by_qty Array(Decimal(18, 4)),
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, order_line_id);

-- A cancellation without lines (a full-order cancellation stated only in the header) is one
-- row with order_line_id = ''.
CREATE TABLE IF NOT EXISTS {db}.cancellation_lines (
    order_id String, cancellation_id String, order_line_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    cancelled_at DateTime, is_full_order UInt8, reason_code String, quantity_cancelled Decimal(12, 3),
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, cancellation_id, order_line_id);

CREATE TABLE IF NOT EXISTS {db}.shipment_lines (
    order_id String, shipment_id String, shipment_line_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    order_line_id String, sku String, quantity_shipped Decimal(12, 3), is_reship UInt8, shipped_at DateTime,
    ship_node_id String,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, shipment_id, shipment_line_id);

CREATE TABLE IF NOT EXISTS {db}.return_lines (
    order_id String, return_id String, return_line_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    order_line_id String, sku String, quantity_received Decimal(12, 3), quantity_accepted Decimal(12, 3),
    disposition String, received_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, return_id, return_line_id);

-- kind: RESERVED (PointsReserved), CONFIRMED (RedemptionConfirmed), RELEASED (RedemptionReleased).
CREATE TABLE IF NOT EXISTS {db}.reservation_events (
    reservation_id String, kind String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    order_id String, member_id String, redemption_id String, points Int64, value Decimal(18, 4),
    reason String, at DateTime, expires_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (reservation_id, kind);

-- kind: ACCRUAL (PointsAccrualPosted), REVERSAL (PointsReversed), REDEMPTION_REFUND
-- (RedemptionRefunded), ACTIVATION (PointsActivated). request_id answers a loyalty command.
CREATE TABLE IF NOT EXISTS {db}.loyalty_postings (
    order_id String, kind String, entry_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    request_id String, member_id String, points Int64, shortfall_points Int64, from_pending Int64, from_active Int64,
    tier_code String, tier_multiplier Decimal(9, 6), earn_rate Decimal(9, 6), basis_amount Decimal(18, 4),
    source_ref String, reason String, posted_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, kind, entry_id);

CREATE TABLE IF NOT EXISTS {db}.erp_sales_orders (
    order_id String, erp_sales_order_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    item_count UInt32, currency String, created_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, erp_sales_order_id);

CREATE TABLE IF NOT EXISTS {db}.erp_sales_order_items (
    order_id String, erp_sales_order_id String, erp_item String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    order_line_id String, quantity Decimal(12, 3), created_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, erp_sales_order_id, erp_item);

-- doc_kind: INVOICE (InvoicePosted) or CREDIT_MEMO (CreditMemoPosted).
CREATE TABLE IF NOT EXISTS {db}.billing_documents (
    order_id String, billing_document_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    doc_kind String, billing_type String, erp_sales_order_id String, accounting_transfer_status String,
    billing_date DateTime, currency String, net Decimal(18, 4), tax Decimal(18, 4), gross Decimal(18, 4),
    reference_invoice_id String, return_id String,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id);

CREATE TABLE IF NOT EXISTS {db}.billing_lines (
    order_id String, billing_document_id String, billing_item String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    doc_kind String, accounting_transfer_status String, billing_date DateTime,
    order_line_id String, erp_item String, reference_document String, sku String,
    quantity Decimal(12, 3), net Decimal(18, 4), tax Decimal(18, 4),
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id, billing_item);

CREATE TABLE IF NOT EXISTS {db}.billing_cancellations (
    order_id String, billing_document_id String, row_id String, version UInt64, event_id String, occurred_at DateTime,
    cancels_billing_document_id String, cancelled_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, billing_document_id);

-- The commands retailflow sent to the loyalty platform (one row per deterministic request id).
CREATE TABLE IF NOT EXISTS {db}.loyalty_commands (
    order_id String, request_id String, row_id String, version UInt64,
    command_type String, member_id String, points Int64, causing_event_id String, source_ref_id String,
    reason String, basis_amount Decimal(18, 4), currency String, earn_rate Decimal(9, 6), tier_code String,
    tier_multiplier Decimal(9, 6), entitled_points Int64, activates_at DateTime, reservation_id String,
    expiry_policy String, policy_version String, requested_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, request_id);

-- The order ledger's state as the changelog carries it; version is the changelog offset + 1,
-- deleted = 1 for a tombstone (evicted order).
CREATE TABLE IF NOT EXISTS {db}.order_state (
    order_id String, row_id String, version UInt64, deleted UInt8,
    member_id String, currency String, tier_code String, tier_multiplier Decimal(9, 6), earn_rate Decimal(9, 6),
    basis_amount Decimal(18, 4), entitled_points Int64, requested_points Int64, posted_points Int64,
    open_exceptions Array(String), updated_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id);

CREATE TABLE IF NOT EXISTS {db}.order_line_state (
    order_id String, order_line_id String, row_id String, version UInt64, deleted UInt8,
    ordered Decimal(12, 3), cancelled Decimal(12, 3), shipped Decimal(12, 3), returned Decimal(12, 3),
    invoiced Decimal(12, 3), credited Decimal(12, 3), line_net Decimal(18, 4), eligible_value Decimal(18, 4),
    net_shipped_value Decimal(18, 4), updated_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, order_line_id);

-- Every point and money movement and the events that caused it. points and amount are signed
-- from the member's / the customer's point of view (an accrual is +, a reversal −, an invoice +,
-- a credit memo −).
CREATE TABLE IF NOT EXISTS {db}.audit_ledger (
    order_id String, movement_id String, row_id String, version UInt64,
    movement_kind String, member_id String, points Int64, amount Decimal(18, 4), currency String,
    event_id String, causing_event_id String, request_id String, source_ref String,
    business_time DateTime, detail String,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, movement_id);

-- Records that could not be processed, keyed by the coordinates of the ORIGINAL record: the
-- runtime's DLQ copy and the sink's own decode failure of the same input record collapse into
-- one row. origin: runtime (read from the DLQ topic), sink-decode, sink-insert.
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    source_topic String, source_partition Int32, source_offset Int64, row_id String, version UInt64,
    origin String, error_class String, error String, event_id String, schema_id Int32,
    record_key String, record_value String,
    header_keys Array(String), header_values Array(String), seen_at DateTime,
    src_topic String, src_partition Int32, src_offset Int64, ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version) ORDER BY (source_topic, source_partition, source_offset);

-- SLAs and grace of the reconciliation views, written by `retailflow migrate` from the recon
-- section of the configuration (the latest version wins); the views read it at query time.
CREATE TABLE IF NOT EXISTS {db}.recon_config (
    id UInt8, version UInt64,
    grace_s Int64, erp_sla_s Int64, invoice_sla_s Int64, redemption_sla_s Int64, return_sla_s Int64,
    accrual_sla_s Int64, three_way_sla_s Int64, amount_tolerance Decimal(18, 4)
) ENGINE = ReplacingMergeTree(version) ORDER BY (id);
