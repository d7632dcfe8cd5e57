-- Reconciliation views (DOMAIN.md C, contracts.md). Every view row: business keys,
-- mismatch_code, points/amount columns, business_time (the event time ages are measured from),
-- age_hours, age_bucket, sla_breached. A row appears once its mismatch exists and
-- now() - business_time >= grace. SLAs, grace and the amount tolerance are read from
-- recon_config at query time (written by `retailflow migrate` from the recon configuration).
-- Every view, valid on ClickHouse 18.16 and on current releases (`make test` checks both):
-- `retailflow migrate` drops and re-creates them all whenever this file changes.
-- ClickHouse 18.16 allows one JOIN per SELECT, so the views nest; facts are read with FINAL.
-- Every side of every JOIN has an alias: the analyzer (default since 24.3, mandatory since 26.9)
-- rejects a joined subquery without one.
-- Every branch of a UNION ALL names every column alike: 18.16 prunes unused columns of a
-- UNION ALL by name, and an unnamed column in a later branch silently shifts the values.
-- No ANY INNER JOIN: current servers keep one LEFT row per key too (18.16 one right row per left
-- row); use ANY LEFT JOIN with a flag column from the right side.
-- A lambda reads other columns only as arrays passed to it (replicate(x, arr)), never by capture:
-- 18.16 prunes a subquery column that no outer level selects even when a lambda captures it.

-- Records the runtime rejected (read back from the DLQ topic): their facts are not part of the
-- order's story, exactly as the ledger never applied them.
-- Records the sink dead-lettered because ClickHouse rejected their rows (origin sink-insert)
-- leave the views too: a record is in the views whole or not at all (0003_sink_rejections).
CREATE VIEW IF NOT EXISTS {db}.v_rejected_sources AS
SELECT source_topic, source_partition, source_offset FROM {db}.dead_letters FINAL
WHERE origin IN ('runtime', 'sink-insert');

-- f_<table>: per business key, the first record (highest version: 2^63 − offset) that was not
-- rejected, read from raw_<table>, which keeps every record (0005_facts_by_record.sql).
CREATE VIEW IF NOT EXISTS {db}.f_orders AS
SELECT * FROM {db}.raw_orders FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id;

CREATE VIEW IF NOT EXISTS {db}.f_order_lines AS
SELECT * FROM {db}.raw_order_lines FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, order_line_id;

CREATE VIEW IF NOT EXISTS {db}.f_cancellation_lines AS
SELECT * FROM {db}.raw_cancellation_lines FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, cancellation_id, order_line_id;

CREATE VIEW IF NOT EXISTS {db}.f_shipment_lines AS
SELECT * FROM {db}.raw_shipment_lines FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, shipment_id, shipment_line_id;

CREATE VIEW IF NOT EXISTS {db}.f_return_lines AS
SELECT * FROM {db}.raw_return_lines FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, return_id, return_line_id;

CREATE VIEW IF NOT EXISTS {db}.f_reservation_events AS
SELECT * FROM {db}.raw_reservation_events FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY reservation_id, kind;

CREATE VIEW IF NOT EXISTS {db}.f_loyalty_postings AS
SELECT * FROM {db}.raw_loyalty_postings FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, kind, entry_id;

-- A sales order's current state (erp v2): the record with the highest erp_version — a replica
-- (ErpSalesOrderChanged), else the creation (version 0) — and of equal versions the first
-- (a later one is stale); status '' is a creation's: open.
CREATE VIEW IF NOT EXISTS {db}.f_erp_sales_orders AS
SELECT * FROM {db}.raw_erp_sales_orders FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY erp_version DESC, version DESC LIMIT 1 BY order_id, erp_sales_order_id;

-- The items of the record f_erp_sales_orders keeps (an item a later version drops is gone).
CREATE VIEW IF NOT EXISTS {db}.f_erp_sales_order_items AS
SELECT * FROM {db}.raw_erp_sales_order_items FINAL
WHERE (order_id, erp_sales_order_id, src_topic, src_partition, src_offset) IN (
    SELECT order_id, erp_sales_order_id, src_topic, src_partition, src_offset FROM {db}.f_erp_sales_orders)
ORDER BY version DESC LIMIT 1 BY order_id, erp_sales_order_id, erp_item;

CREATE VIEW IF NOT EXISTS {db}.f_billing_documents AS
SELECT * FROM {db}.raw_billing_documents FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, billing_document_id;

CREATE VIEW IF NOT EXISTS {db}.f_billing_lines AS
SELECT * FROM {db}.raw_billing_lines FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, billing_document_id, billing_item;

CREATE VIEW IF NOT EXISTS {db}.f_billing_cancellations AS
SELECT * FROM {db}.raw_billing_cancellations FINAL
WHERE (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
ORDER BY version DESC LIMIT 1 BY order_id, billing_document_id;

-- Billing lines of documents that no BillingDocumentCancelled cancels.
CREATE VIEW IF NOT EXISTS {db}.v_live_billing_lines AS
SELECT order_id, billing_document_id, billing_item, doc_kind, accounting_transfer_status, billing_date, occurred_at,
       order_line_id, reference_document, quantity, net, tax
FROM {db}.f_billing_lines
WHERE billing_document_id NOT IN (SELECT cancels_billing_document_id FROM {db}.f_billing_cancellations);

-- Orders cancelled as a whole: a cancellation flagged is_full_order, or every line cancelled.
CREATE VIEW IF NOT EXISTS {db}.v_fully_cancelled_orders AS
SELECT order_id FROM {db}.f_cancellation_lines WHERE is_full_order = 1
UNION ALL
SELECT order_id FROM (
    SELECT order_id, order_line_id, toDecimal64(quantity, 3) AS ordered_qty FROM {db}.f_order_lines
) AS ordered_lines ANY LEFT JOIN (
    SELECT order_id, order_line_id, toDecimal64(sum(quantity_cancelled), 3) AS cancelled_qty
    FROM {db}.f_cancellation_lines GROUP BY order_id, order_line_id
) AS cancelled_lines USING (order_id, order_line_id)
GROUP BY order_id HAVING min(cancelled_qty >= ordered_qty) = 1;

-- Per order line: OMS and ERP quantities, ERP net billed amount, last activity on any side.
CREATE VIEW IF NOT EXISTS {db}.v_line_facts AS
SELECT order_id, order_line_id,
       toDecimal64(sum(ordered), 3) AS ordered_qty, toDecimal64(sum(cancelled), 3) AS cancelled_qty,
       toDecimal64(sum(shipped), 3) AS shipped_qty, toDecimal64(sum(returned), 3) AS returned_qty,
       toDecimal64(sum(invoiced), 3) AS invoiced_qty, toDecimal64(sum(credited), 3) AS credited_qty,
       toDecimal64(sum(billed_net), 4) AS erp_net_billed, toDecimal64(sum(billed_tax), 4) AS erp_tax_billed,
       max(t) AS last_activity, max(known) AS known_line,
       max(billing) AS billed_line, toInt64(sum(billing)) AS billing_lines
FROM (
    SELECT order_id, order_line_id, toDecimal64(quantity, 3) AS ordered, toDecimal64(0, 3) AS cancelled,
           toDecimal64(0, 3) AS shipped, toDecimal64(0, 3) AS returned, toDecimal64(0, 3) AS invoiced,
           toDecimal64(0, 3) AS credited, toDecimal64(0, 4) AS billed_net, toDecimal64(0, 4) AS billed_tax, accepted_at AS t, toUInt8(1) AS known,
           toUInt8(0) AS billing
    FROM {db}.f_order_lines
    UNION ALL
    SELECT order_id, order_line_id, toDecimal64(0, 3) AS ordered, toDecimal64(quantity_cancelled, 3) AS cancelled,
           toDecimal64(0, 3) AS shipped, toDecimal64(0, 3) AS returned, toDecimal64(0, 3) AS invoiced,
           toDecimal64(0, 3) AS credited, toDecimal64(0, 4) AS billed_net, toDecimal64(0, 4) AS billed_tax, toDateTime(0) AS t, toUInt8(0) AS known, toUInt8(0) AS billing
    FROM {db}.f_cancellation_lines WHERE order_line_id != ''
    UNION ALL
    SELECT order_id, order_line_id, toDecimal64(0, 3) AS ordered, toDecimal64(0, 3) AS cancelled,
           toDecimal64(quantity_shipped, 3) AS shipped, toDecimal64(0, 3) AS returned, toDecimal64(0, 3) AS invoiced,
           toDecimal64(0, 3) AS credited, toDecimal64(0, 4) AS billed_net, toDecimal64(0, 4) AS billed_tax, occurred_at AS t, toUInt8(0) AS known, toUInt8(0) AS billing
    FROM {db}.f_shipment_lines WHERE is_reship = 0
    UNION ALL
    SELECT order_id, order_line_id, toDecimal64(0, 3) AS ordered, toDecimal64(0, 3) AS cancelled,
           toDecimal64(0, 3) AS shipped, toDecimal64(quantity_accepted, 3) AS returned, toDecimal64(0, 3) AS invoiced,
           toDecimal64(0, 3) AS credited, toDecimal64(0, 4) AS billed_net, toDecimal64(0, 4) AS billed_tax, occurred_at AS t, toUInt8(0) AS known, toUInt8(0) AS billing
    FROM {db}.f_return_lines
    UNION ALL
    SELECT order_id, order_line_id, toDecimal64(0, 3) AS ordered, toDecimal64(0, 3) AS cancelled,
           toDecimal64(0, 3) AS shipped, toDecimal64(0, 3) AS returned,
           toDecimal64(if(doc_kind = 'INVOICE', quantity, toDecimal64(0, 3)), 3) AS invoiced,
           toDecimal64(if(doc_kind = 'CREDIT_MEMO', quantity, toDecimal64(0, 3)), 3) AS credited,
           toDecimal64(if(doc_kind = 'INVOICE', net, -net), 4) AS billed_net,
           toDecimal64(if(doc_kind = 'INVOICE', tax, -tax), 4) AS billed_tax, occurred_at AS t, toUInt8(0) AS known, toUInt8(1) AS billing
    FROM {db}.v_live_billing_lines
)
GROUP BY order_id, order_line_id;

-- Per reservation: which of RESERVED / CONFIRMED / RELEASED were seen, with their orders and times.
CREATE VIEW IF NOT EXISTS {db}.v_reservations AS
SELECT reservation_id,
       max(kind = 'RESERVED') AS reserved, max(kind = 'CONFIRMED') AS confirmed, max(kind = 'RELEASED') AS released,
       anyIf(order_id, kind = 'RESERVED') AS reserve_order_id, anyIf(order_id, kind = 'CONFIRMED') AS confirm_order_id,
       maxIf(at, kind = 'RESERVED') AS reserved_at, maxIf(at, kind = 'CONFIRMED') AS confirmed_at,
       maxIf(expires_at, kind = 'RESERVED') AS expires_at, maxIf(conversion_rate, kind = 'RESERVED') AS conversion_rate,
       toInt64(sumIf(points, kind = 'RESERVED')) AS reserved_points, toInt64(sumIf(points, kind = 'CONFIRMED')) AS confirmed_points
FROM {db}.f_reservation_events
GROUP BY reservation_id;

-- Per order line with cancelled units: the OMS's ordered − cancelled, the units the ERP still
-- holds open (quantity − rejected_quantity over the items of sales orders neither REJECTED nor
-- COMPLETED, as f_erp_sales_orders has them now), and the line's latest cancellation.
CREATE VIEW IF NOT EXISTS {db}.v_cancelled_lines_in_erp AS
SELECT order_id, order_line_id, oms_open, toDecimal64(erp_open_sum, 3) AS erp_open, cancelled_at
FROM (
    SELECT order_id, order_line_id, toDecimal64(ordered_qty - cancelled_qty, 3) AS oms_open, cancelled_at
    FROM (
        SELECT order_id, order_line_id, ordered_qty, cancelled_qty FROM {db}.v_line_facts
        WHERE known_line = 1 AND cancelled_qty > toDecimal64(0, 3)
    ) AS lf ANY LEFT JOIN (
        SELECT order_id, order_line_id, max(cancelled_at) AS cancelled_at FROM {db}.f_cancellation_lines
        WHERE order_line_id != '' GROUP BY order_id, order_line_id
    ) AS cx USING (order_id, order_line_id)
) AS oms ALL INNER JOIN (
    SELECT order_id, order_line_id,
           toDecimal64(sumIf(quantity - rejected_quantity, live = 1), 3) AS erp_open_sum
    FROM (
        SELECT order_id, erp_sales_order_id, order_line_id, quantity, rejected_quantity FROM {db}.f_erp_sales_order_items
    ) AS it ANY LEFT JOIN (
        SELECT order_id, erp_sales_order_id, toUInt8(status NOT IN ('REJECTED', 'COMPLETED')) AS live FROM {db}.f_erp_sales_orders
    ) AS so USING (order_id, erp_sales_order_id)
    GROUP BY order_id, order_line_id
) AS erp USING (order_id, order_line_id);

-- Orders the OMS cancelled whole while one of their sales orders is still OPEN (status '' is a
-- creation, never changed: open), with the order's latest cancellation.
CREATE VIEW IF NOT EXISTS {db}.v_cancelled_orders_open_in_erp AS
SELECT order_id, cancelled_at
FROM (
    SELECT order_id, max(cancelled_at) AS cancelled_at FROM {db}.f_cancellation_lines
    WHERE order_id IN (SELECT order_id FROM {db}.v_fully_cancelled_orders)
    GROUP BY order_id
) AS cx ALL INNER JOIN (
    SELECT DISTINCT order_id FROM {db}.f_erp_sales_orders WHERE status IN ('', 'OPEN')
) AS so USING (order_id);

-- C1: accepted orders the ERP has not replicated, or replicated with other lines/quantities, or
-- still holding open what the OMS cancelled (CANCELLED_IN_OMS_OPEN_IN_ERP: per cancelled line
-- whose open units exceed ordered − cancelled, or one order-level row, line '', for an order
-- cancelled whole with a sales order still OPEN; aged from the cancellation).
CREATE VIEW IF NOT EXISTS {db}.recon_orders_awaiting_erp AS
SELECT order_id, order_line_id, mismatch_code, oms_quantity, erp_quantity, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 0.25, '0-15m', age_hours < 4, '15m-4h', age_hours < 24, '4-24h', age_hours < 72, '1-3d', '>3d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(erp_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT order_id, '' AS order_line_id, 'NOT_REPLICATED' AS mismatch_code,
           toDecimal64(line_count, 3) AS oms_quantity, toDecimal64(0, 3) AS erp_quantity, accepted_at AS business_time
    FROM {db}.f_orders
    WHERE order_id NOT IN (SELECT order_id FROM {db}.f_erp_sales_orders)
      AND order_id NOT IN (SELECT order_id FROM {db}.v_fully_cancelled_orders)
    UNION ALL
    SELECT order_id, '' AS order_line_id, 'LINE_COUNT_DIFF' AS mismatch_code, toDecimal64(line_count, 3) AS oms_quantity,
           toDecimal64(erp_items, 3) AS erp_quantity, accepted_at AS business_time
    FROM (SELECT order_id, line_count, accepted_at FROM {db}.f_orders) AS oms
    ALL INNER JOIN (
        SELECT order_id, argMax(item_count, version) AS erp_items FROM {db}.f_erp_sales_orders GROUP BY order_id
    ) AS erp USING (order_id)
    WHERE line_count != erp_items
    UNION ALL
    SELECT order_id, order_line_id, 'QTY_DIFF' AS mismatch_code, oms_q AS oms_quantity, erp_q AS erp_quantity, accepted_at AS business_time
    FROM (SELECT order_id, order_line_id, toDecimal64(quantity, 3) AS oms_q, accepted_at FROM {db}.f_order_lines) AS oms
    ALL INNER JOIN (
        SELECT order_id, order_line_id, toDecimal64(sum(quantity), 3) AS erp_q
        FROM {db}.f_erp_sales_order_items GROUP BY order_id, order_line_id
    ) AS erp USING (order_id, order_line_id)
    WHERE oms_q != erp_q
    UNION ALL
    SELECT order_id, '' AS order_line_id, 'CANCELLED_IN_OMS_OPEN_IN_ERP' AS mismatch_code, toDecimal64(0, 3) AS oms_quantity,
           toDecimal64(0, 3) AS erp_quantity, cancelled_at AS business_time
    FROM {db}.v_cancelled_orders_open_in_erp
    WHERE order_id IN (SELECT order_id FROM {db}.f_orders)
    UNION ALL
    SELECT order_id, order_line_id, 'CANCELLED_IN_OMS_OPEN_IN_ERP' AS mismatch_code, oms_open AS oms_quantity,
           erp_open AS erp_quantity, cancelled_at AS business_time
    FROM {db}.v_cancelled_lines_in_erp
    WHERE erp_open > oms_open
      AND order_id IN (SELECT order_id FROM {db}.f_orders)
      AND order_id NOT IN (SELECT order_id FROM {db}.v_cancelled_orders_open_in_erp)
)
WHERE dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- C2: non-reship shipment lines and what live invoices bill against them.
CREATE VIEW IF NOT EXISTS {db}.recon_shipments_not_invoiced AS
SELECT shipment_id, order_line_id, order_id, mismatch_code, shipped_qty, billed_qty,
       toDecimal64(shipped_qty - billed_qty, 3) AS amount, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 24, '0-24h', age_hours < 48, '24-48h', age_hours < 168, '2-7d', age_hours < 720, '7-30d', '>30d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(invoice_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT order_id, shipment_id, order_line_id, shipped_qty, billed_qty, business_time,
           multiIf(billed_qty = 0, 'NOT_BILLED', billed_qty < shipped_qty, 'PARTIALLY_BILLED',
                   billed_qty > shipped_qty, 'OVER_BILLED', not_transferred > 0, 'BILLED_NOT_POSTED', '') AS mismatch_code
    FROM (
        SELECT order_id, shipment_id, order_line_id,
               toDecimal64(sum(shipped), 3) AS shipped_qty, toDecimal64(sum(billed), 3) AS billed_qty,
               sum(not_transferred) AS not_transferred, max(has_shipment) AS has_shipment, max(t) AS business_time
        FROM (
            SELECT order_id, shipment_id, order_line_id, toDecimal64(quantity_shipped, 3) AS shipped,
                   toDecimal64(0, 3) AS billed, toUInt64(0) AS not_transferred, toUInt8(1) AS has_shipment, shipped_at AS t
            FROM {db}.f_shipment_lines WHERE is_reship = 0
            UNION ALL
            SELECT order_id, reference_document AS shipment_id, order_line_id, toDecimal64(0, 3) AS shipped,
                   toDecimal64(quantity, 3) AS billed, toUInt64(accounting_transfer_status != 'TRANSFERRED') AS not_transferred,
                   toUInt8(0) AS has_shipment, toDateTime(0) AS t
            FROM {db}.v_live_billing_lines WHERE doc_kind = 'INVOICE'
        )
        GROUP BY order_id, shipment_id, order_line_id
    )
    WHERE has_shipment = 1
)
WHERE mismatch_code != ''
  AND dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- C3: reservations not confirmed or released as the order says, or inconsistent with it.
CREATE VIEW IF NOT EXISTS {db}.recon_redemptions_pending_confirmation AS
SELECT reservation_id, order_id, mismatch_code, order_points, confirmed_points,
       if(mismatch_code = 'POINTS_DIFF', confirmed_points - order_points, toInt64(0)) AS points, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 0.5, '<30m', age_hours < 24, '30m-24h', age_hours < 72, '1-3d', age_hours < 168, '3-7d', '>7d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(redemption_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT reservation_id, order_id, 'ORDER_ACCEPTED_NOT_CONFIRMED' AS mismatch_code,
           toInt64(redemption_points) AS order_points, toInt64(confirmed_points) AS confirmed_points,
           if(reserved = 1, reserved_at, accepted_at) AS business_time
    FROM (SELECT reservation_id, order_id, redemption_points, accepted_at FROM {db}.f_orders WHERE reservation_id != '') AS o
    ANY LEFT JOIN {db}.v_reservations AS r USING (reservation_id)
    WHERE confirmed = 0 AND released = 0
    UNION ALL
    SELECT reservation_id, order_id, 'ORDER_CANCELLED_NOT_RELEASED' AS mismatch_code, toInt64(redemption_points) AS order_points,
           toInt64(confirmed_points) AS confirmed_points, if(reserved = 1, reserved_at, accepted_at) AS business_time
    FROM (SELECT reservation_id, order_id, redemption_points, accepted_at FROM {db}.f_orders WHERE reservation_id != '') AS o
    ANY LEFT JOIN {db}.v_reservations AS r USING (reservation_id)
    WHERE confirmed = 0 AND released = 0 AND order_id IN (SELECT order_id FROM {db}.v_fully_cancelled_orders)
    UNION ALL
    SELECT reservation_id, reserve_order_id AS order_id, 'OPEN_PAST_TTL' AS mismatch_code, toInt64(0) AS order_points,
           toInt64(confirmed_points) AS confirmed_points, reserved_at AS business_time
    FROM {db}.v_reservations
    WHERE reserved = 1 AND confirmed = 0 AND released = 0 AND expires_at < now()
      AND reservation_id NOT IN (SELECT reservation_id FROM {db}.f_orders WHERE reservation_id != '')
    UNION ALL
    SELECT reservation_id, confirm_order_id AS order_id, 'CONFIRMED_WITHOUT_ORDER' AS mismatch_code, toInt64(0) AS order_points,
           toInt64(confirmed_points) AS confirmed_points, if(reserved = 1, reserved_at, confirmed_at) AS business_time
    FROM {db}.v_reservations
    WHERE confirmed = 1 AND confirm_order_id NOT IN (SELECT order_id FROM {db}.f_orders)
    UNION ALL
    SELECT reservation_id, order_id, 'POINTS_DIFF' AS mismatch_code, toInt64(redemption_points) AS order_points,
           toInt64(confirmed_points) AS confirmed_points, if(reserved = 1, reserved_at, accepted_at) AS business_time
    FROM (SELECT reservation_id, order_id, redemption_points, accepted_at FROM {db}.f_orders WHERE reservation_id != '') AS o
    ANY LEFT JOIN {db}.v_reservations AS r USING (reservation_id)
    WHERE confirmed = 1 AND confirmed_points != redemption_points
)
WHERE dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- Per accepted return line (return_id, order_line_id): the weights C4 allocates a return's
-- findings by. reversal_weight: the net value of the returned units (order_lines.net_value_by_qty,
-- in ten-thousandths; 0 for a gift card, which never earned: E(l) = 0); refund_weight: redeemed
-- points allocated to the line × units returned (in thousandths). No money is divided.
CREATE VIEW IF NOT EXISTS {db}.v_return_line_weights AS
SELECT order_id, return_id, order_line_id, received_at,
       toInt64(if(is_gift_card = 0 AND length(net_value_by_qty) > toUInt64(q) AND toDecimal64(toUInt64(q), 3) = q,
                  toInt64(arrayElement(net_value_by_qty, toUInt64(q) + 1) * 10000), toInt64(0))) AS reversal_weight,
       toInt64(redemption_points) * toInt64(q * 1000) AS refund_weight
FROM (
    SELECT order_id, return_id, order_line_id, toDecimal64(sum(quantity_accepted), 3) AS q, min(received_at) AS received_at
    FROM {db}.f_return_lines GROUP BY order_id, return_id, order_line_id
) AS returned ANY LEFT JOIN (
    SELECT order_id, order_line_id, is_gift_card, redemption_points, net_value_by_qty FROM {db}.f_order_lines
) AS ordered USING (order_id, order_line_id);

-- Per return: its lines sorted by order_line_id, with their weights in the same order.
CREATE VIEW IF NOT EXISTS {db}.v_return_lines_by_return AS
SELECT order_id, return_id, received_at, arraySort(ids) AS line_ids,
       arraySort((w, id) -> id, rev, ids) AS reversal_weights, arraySort((w, id) -> id, ref, ids) AS refund_weights
FROM (
    SELECT order_id, return_id, min(received_at) AS received_at, groupArray(order_line_id) AS ids,
           groupArray(reversal_weight) AS rev, groupArray(refund_weight) AS ref
    FROM {db}.v_return_line_weights GROUP BY order_id, return_id
);

-- C4, per accepted return line. A return's findings come from the commands that carry its share
-- (source_ref_id = return_id: its own and corrections) and the postings answering them by
-- request id: REVERSAL_MISSING (requested points), REVERSAL_SHORT (requested − posted), SHORTFALL
-- (shortfall posted), REVERSED_AFTER_ACTIVATION (points the reversal took from the ACTIVE
-- balance, from_active: the member may have spent them; SLA immediate), REFUND_MISSING
-- (requested refund points). Commands carry no per-line share, so each finding is allocated to
-- the return's lines it concerns: reversal findings by reversal_weight, REFUND_MISSING by
-- refund_weight (v_return_line_weights); share = floor(points × weight / Σ weights), the
-- remainder to the heaviest line (ties: the smallest order_line_id), as DOMAIN B.3 assigns a
-- residual; a line of weight 0 is not concerned and has no row (all lines weigh 1 when every
-- weight is 0). Σ points over a return's rows of one code = the return's finding.
-- A lambda reads other columns only as arrays passed to it (replicate(x, arr)), never by
-- capture: 18.16 prunes a subquery column that an outer level does not select even when a
-- lambda captures it ("Unknown identifier").
CREATE VIEW IF NOT EXISTS {db}.recon_returns_not_reflected_in_loyalty AS
SELECT return_id, order_line_id, order_id, mismatch_code, points, return_points, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 4, '0-4h', age_hours < 24, '4-24h', age_hours < 72, '1-3d', age_hours < 168, '3-7d', '>7d') AS age_bucket,
       toUInt8(mismatch_code = 'REVERSED_AFTER_ACTIVATION' OR
               dateDiff('second', business_time, now()) >= (SELECT argMax(return_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
  SELECT return_id, order_id, mismatch_code, return_points, business_time, line_ids, weights, total, top, floors,
         arrayMap((f, i, t, r) -> f + if(i = t, r, toInt64(0)), floors, arrayEnumerate(floors), replicate(top, floors),
                  replicate(return_points - arraySum(floors), floors)) AS shares
  FROM (
    SELECT return_id, order_id, mismatch_code, return_points, business_time, line_ids, weights, total,
           arrayFirstIndex((w, h) -> w = h, weights, replicate(heaviest, weights)) AS top,
           arrayMap((w, p, t) -> intDiv(p * w, t), weights, replicate(return_points, weights), replicate(total, weights)) AS floors
    FROM (
      SELECT return_id, order_id, mismatch_code, return_points, business_time, line_ids, weights,
             arraySum(weights) AS total, arrayReduce('max', weights) AS heaviest
      FROM (
        SELECT return_id, order_id, mismatch_code, return_points, business_time, line_ids,
               if(arraySum(raw_weights) = 0, arrayMap(w -> toInt64(1), raw_weights), raw_weights) AS weights
        FROM (
          SELECT return_id, order_id, mismatch_code, return_points, line_ids,
                 if(mismatch_code = 'REFUND_MISSING', refund_weights, reversal_weights) AS raw_weights,
                 if(received_at > toDateTime(0), received_at, requested_at) AS business_time
          FROM (
            SELECT return_id, order_id, mismatch_code, toInt64(sum(code_points)) AS return_points, min(requested_at) AS requested_at
            FROM (
                SELECT source_ref_id AS return_id, order_id, requested_at, mismatch_code,
                       multiIf(mismatch_code = 'SHORTFALL', shortfall, mismatch_code = 'REVERSED_AFTER_ACTIVATION', from_active,
                               points - answered) AS code_points
                FROM (
                    SELECT source_ref_id, order_id, points, answered, shortfall, from_active, requested_at,
                           arrayFilter(c -> c != '', [
                               if(command_type = 'ReversalRequested' AND answers = 0, 'REVERSAL_MISSING', ''),
                               if(command_type = 'ReversalRequested' AND answers > 0 AND answered < points, 'REVERSAL_SHORT', ''),
                               if(command_type = 'ReversalRequested' AND shortfall > 0, 'SHORTFALL', ''),
                               if(command_type = 'ReversalRequested' AND from_active > 0, 'REVERSED_AFTER_ACTIVATION', ''),
                               if(command_type = 'RedemptionRefundRequested' AND answers = 0, 'REFUND_MISSING', '')]) AS codes
                    FROM (
                        SELECT order_id, request_id, command_type, points, source_ref_id, requested_at
                        FROM {db}.loyalty_commands FINAL
                        WHERE command_type IN ('ReversalRequested', 'RedemptionRefundRequested')
                          AND source_ref_id IN (SELECT return_id FROM {db}.f_return_lines)
                    ) AS cmd ANY LEFT JOIN (
                        SELECT request_id, toInt64(sum(points)) AS answered, count() AS answers,
                               toInt64(sum(shortfall_points)) AS shortfall, toInt64(sum(from_active)) AS from_active
                        FROM {db}.f_loyalty_postings
                        WHERE kind IN ('REVERSAL', 'REDEMPTION_REFUND') AND request_id != ''
                        GROUP BY request_id
                    ) AS answers_by_request USING (request_id)
                )
                ARRAY JOIN codes AS mismatch_code
            )
            GROUP BY return_id, order_id, mismatch_code
          ) AS per_code ANY LEFT JOIN (
            SELECT return_id, order_id, received_at, line_ids, reversal_weights, refund_weights FROM {db}.v_return_lines_by_return
          ) AS lines_of_return USING (return_id, order_id)
        )
      )
    )
  )
)
ARRAY JOIN line_ids AS order_line_id, shares AS points, weights AS weight
WHERE weight > 0
  AND dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- The tier multiplier snapshotted for each order: OrderAccepted's when it states one, else the
-- one the ledger stamped on its point commands (policy by tier at acceptance).
CREATE VIEW IF NOT EXISTS {db}.v_order_multiplier AS
SELECT order_id, if(has_ord = 1, ord_mult, cmd_mult) AS multiplier, toUInt8(has_ord = 1 OR has_cmd = 1) AS known
FROM (SELECT order_id, tier_multiplier AS ord_mult, has_tier_multiplier AS has_ord FROM {db}.f_orders) AS ord
ALL FULL OUTER JOIN (
    SELECT order_id, any(tier_multiplier) AS cmd_mult, toUInt8(1) AS has_cmd
    FROM {db}.loyalty_commands FINAL WHERE command_type IN ('AccrualRequested', 'ReversalRequested')
    GROUP BY order_id
) AS cmd USING (order_id);

-- Per order, checks of its accrual postings: those posted before the order's first non-reship
-- shipment (or with none: early_*), and those whose basis_amount exceeds the basis of the
-- AccrualRequested they answer (ineligible_*: the platform counted value the pipeline excluded
-- as ineligible, E(l) = 0: gift cards, excluded SKUs, fees; points = posted − requested).
CREATE VIEW IF NOT EXISTS {db}.v_accrual_posting_checks AS
SELECT order_id, toInt64(sum(early)) AS early_postings, toInt64(sum(early * points)) AS early_points,
       toInt64(sum(over_basis)) AS ineligible_postings, toInt64(sum(over_basis * (points - requested_points))) AS ineligible_points
FROM (
    SELECT order_id, points, requested_points,
           toInt64(has_shipment = 0 OR posted_at < first_shipped_at) AS early,
           toInt64(has_request = 1 AND posted_basis > requested_basis) AS over_basis
    FROM (
        SELECT order_id, request_id, points, posted_at, basis_amount AS posted_basis, has_shipment, first_shipped_at
        FROM (
            SELECT order_id, request_id, points, posted_at, basis_amount FROM {db}.f_loyalty_postings WHERE kind = 'ACCRUAL'
        ) AS accrual_rows ANY LEFT JOIN (
            SELECT order_id, min(shipped_at) AS first_shipped_at, toUInt8(1) AS has_shipment
            FROM {db}.f_shipment_lines WHERE is_reship = 0 GROUP BY order_id
        ) AS first_shipment USING (order_id)
    ) AS accruals_shipped ANY LEFT JOIN (
        SELECT request_id, basis_amount AS requested_basis, points AS requested_points, toUInt8(1) AS has_request
        FROM {db}.loyalty_commands FINAL WHERE command_type = 'AccrualRequested'
    ) AS requests USING (request_id)
)
GROUP BY order_id;

-- C5: per member order, entitled points P (Σ accrual − Σ reversal commands: each command brings
-- what was requested back to P) against posted (Σ PointsAccrualPosted − Σ PointsReversed), the
-- multiplier of the postings, and v_accrual_posting_checks (ACCRUED_BEFORE_SHIPMENT,
-- POINTS_ON_INELIGIBLE). points: early_points, ineligible_points for those two codes, posted − P
-- for the others.
CREATE VIEW IF NOT EXISTS {db}.recon_accrual_vs_fulfilment AS
SELECT order_id, mismatch_code, entitled_points, posted_points,
       multiIf(mismatch_code = 'ACCRUED_BEFORE_SHIPMENT', early_points, mismatch_code = 'POINTS_ON_INELIGIBLE', ineligible_points,
               posted_points - entitled_points) AS points,
       wrong_multiplier_postings, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 1, '0-1h', age_hours < 24, '1-24h', age_hours < 168, '1-7d', '>7d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(accrual_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT order_id, entitled_points, posted_points, wrong_multiplier_postings, early_points, ineligible_points,
           if(last_fulfilment_at > toDateTime(0), last_fulfilment_at, accepted_at) AS business_time,
           arrayFilter(c -> c != '', [
               if(entitled_points > 0 AND accrual_postings = 0, 'MEMBER_ORDER_NO_ACCRUAL', ''),
               if(posted_points < entitled_points AND accrual_postings > 0, 'UNDER_ACCRUED', ''),
               if(posted_points > entitled_points, 'OVER_ACCRUED', ''),
               if(wrong_multiplier_postings > 0, 'WRONG_MULTIPLIER', ''),
               if(early_postings > 0, 'ACCRUED_BEFORE_SHIPMENT', ''),
               if(ineligible_postings > 0, 'POINTS_ON_INELIGIBLE', '')]) AS codes
    FROM (
      SELECT order_id, entitled_points, posted_points, accrual_postings, last_fulfilment_at, accepted_at, wrong_multiplier_postings
      FROM (
        SELECT order_id, entitled_points, posted_points, accrual_postings, last_fulfilment_at, accepted_at
        FROM (
            SELECT order_id, toInt64(sum(req)) AS entitled_points, toInt64(sum(posted)) AS posted_points,
                   sum(accruals) AS accrual_postings, max(t) AS last_fulfilment_at
            FROM (
                SELECT order_id, if(command_type = 'AccrualRequested', points, -points) AS req, toInt64(0) AS posted,
                       toUInt64(0) AS accruals, toDateTime(0) AS t
                FROM {db}.loyalty_commands FINAL WHERE command_type IN ('AccrualRequested', 'ReversalRequested')
                UNION ALL
                SELECT order_id, toInt64(0) AS req, if(kind = 'ACCRUAL', points, -points) AS posted,
                       toUInt64(kind = 'ACCRUAL') AS accruals, toDateTime(0) AS t
                FROM {db}.f_loyalty_postings WHERE kind IN ('ACCRUAL', 'REVERSAL')
                UNION ALL
                SELECT order_id, toInt64(0) AS req, toInt64(0) AS posted, toUInt64(0) AS accruals, occurred_at AS t FROM {db}.f_shipment_lines
                UNION ALL
                SELECT order_id, toInt64(0) AS req, toInt64(0) AS posted, toUInt64(0) AS accruals, occurred_at AS t FROM {db}.f_return_lines
            )
            GROUP BY order_id
        ) AS moved ALL INNER JOIN (
            SELECT order_id, accepted_at FROM {db}.f_orders WHERE loyalty_member_id != ''
        ) AS member_orders USING (order_id)
        WHERE entitled_points > 0 OR posted_points != 0 OR accrual_postings > 0
      ) AS order_points_moved ANY LEFT JOIN (
        SELECT order_id, count() AS wrong_multiplier_postings
        FROM (SELECT order_id, tier_multiplier FROM {db}.f_loyalty_postings WHERE kind = 'ACCRUAL') AS accrual_rows
        ALL INNER JOIN (SELECT order_id, multiplier FROM {db}.v_order_multiplier WHERE known = 1) AS snapshot USING (order_id)
        WHERE tier_multiplier != multiplier
        GROUP BY order_id
      ) AS wrong USING (order_id)
    ) AS order_checked ANY LEFT JOIN (
        SELECT order_id, early_postings, early_points, ineligible_postings, ineligible_points FROM {db}.v_accrual_posting_checks
    ) AS posting_checks USING (order_id)
)
ARRAY JOIN codes AS mismatch_code
WHERE dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- Per order line billed by live documents: whether one reference document (shipment) is billed
-- by more than one live invoice (duplicate_billing), and whether a live document bills it in
-- another currency than the order's (currency_diff).
CREATE VIEW IF NOT EXISTS {db}.v_billing_line_checks AS
SELECT order_id, order_line_id, max(dup) AS duplicate_billing, max(foreign_currency) AS currency_diff
FROM (
    SELECT order_id, order_line_id, toUInt8(docs > 1) AS dup, toUInt8(0) AS foreign_currency
    FROM (
        SELECT order_id, order_line_id, reference_document, uniqExact(billing_document_id) AS docs
        FROM {db}.v_live_billing_lines WHERE doc_kind = 'INVOICE'
        GROUP BY order_id, order_line_id, reference_document
    )
    UNION ALL
    SELECT order_id, order_line_id, toUInt8(0) AS dup,
           toUInt8(has_doc = 1 AND has_order = 1 AND doc_currency != order_currency) AS foreign_currency
    FROM (
        SELECT order_id, order_line_id, doc_currency, has_doc
        FROM (SELECT order_id, billing_document_id, order_line_id FROM {db}.v_live_billing_lines) AS billed
        ANY LEFT JOIN (
            SELECT order_id, billing_document_id, currency AS doc_currency, toUInt8(1) AS has_doc FROM {db}.f_billing_documents
        ) AS documents USING (order_id, billing_document_id)
    ) AS billed_currency ANY LEFT JOIN (
        SELECT order_id, currency AS order_currency, toUInt8(1) AS has_order FROM {db}.f_orders
    ) AS currency_of_order USING (order_id)
)
GROUP BY order_id, order_line_id;

-- C6: per order line, OMS shipped/returned against ERP invoiced/credited, and ERP net billed
-- against the OMS value of the net shipped quantity (precomputed in order_lines.net_value_by_qty
-- with HALF_EVEN to 2 dp, so no money is divided here). AMOUNT_DIFF allows amount_tolerance
-- (policy.amount_tolerance, the ledger's key too) per live billing line behind the ERP net, at
-- least one: each rounded document line may be ½ minor unit off (DOMAIN B.3).
-- Invoiced beyond shipped is INVOICED_CANCELLED_LINE when the line has cancelled units, the
-- invoiced quantity exceeds ordered − cancelled (the ERP billed what the OMS cancelled) and no
-- duplicate billing explains the excess, else INVOICED_NOT_SHIPPED. DUPLICATE_BILLING and CURRENCY_DIFF from v_billing_line_checks; a line
-- billed in another currency has no AMOUNT_DIFF (its nets are not comparable). TAX_DIFF: see
-- below (the OMS tax of the net shipped quantity from order_lines.tax_by_qty, migration 0011).
CREATE VIEW IF NOT EXISTS {db}.v_three_way_line_rows AS
SELECT order_id, order_line_id, mismatch_code, shipped_qty, returned_qty, invoiced_qty, credited_qty,
       erp_net_billed, oms_net_value, erp_tax_billed, oms_tax,
       multiIf(mismatch_code = 'AMOUNT_DIFF', diff, mismatch_code = 'TAX_DIFF', tax_diff, toDecimal64(0, 4)) AS amount, business_time
FROM (
    SELECT order_id, order_line_id, shipped_qty, returned_qty, invoiced_qty, credited_qty, erp_net_billed,
           oms_net_value, toDecimal64(erp_net_billed - oms_net_value, 4) AS diff, last_activity AS business_time,
           billing_lines, erp_tax_billed, oms_tax, toDecimal64(erp_tax_billed - oms_tax, 4) AS tax_diff,
           toUInt8(value_known = 1 AND shipped_qty = invoiced_qty AND returned_qty = credited_qty AND currency_diff = 0) AS comparable,
           toUInt8(toInt64(abs(erp_net_billed - oms_net_value) * 10000) >
                   (SELECT toInt64(argMax(amount_tolerance, version) * 10000) FROM {db}.recon_config)
                   * if(billing_lines > 1, billing_lines, toInt64(1))) AS net_differs,
           toUInt8(duplicate_billing = 0 AND cancelled_qty > 0 AND invoiced_qty > ordered_qty - cancelled_qty) AS cancelled_billed,
           arrayFilter(c -> c != '', [
               if(shipped_qty > invoiced_qty, 'SHIPPED_NOT_INVOICED', ''),
               if(invoiced_qty > shipped_qty AND cancelled_billed = 1, 'INVOICED_CANCELLED_LINE', ''),
               if(invoiced_qty > shipped_qty AND cancelled_billed = 0, 'INVOICED_NOT_SHIPPED', ''),
               if(returned_qty > credited_qty, 'RETURNED_NOT_CREDITED', ''),
               if(credited_qty > returned_qty, 'CREDITED_NOT_RETURNED', ''),
               if(duplicate_billing = 1, 'DUPLICATE_BILLING', ''),
               if(currency_diff = 1, 'CURRENCY_DIFF', ''),
               -- AMOUNT_DIFF only where the quantities and currencies agree: a quantity mismatch
               -- already explains the money, and one line must not count twice (DOMAIN C6: one
               -- cause per line). Compared in ten-thousandths: 18.16 cannot compare a Decimal
               -- with a Decimal scalar subquery
               if(comparable = 1 AND net_differs = 1, 'AMOUNT_DIFF', ''),
               -- TAX_DIFF where the nets agree too (a net difference explains the tax): the ERP's
               -- tax (Σ per billing line, each rounded) against the OMS tax of the net shipped
               -- value (order_lines.tax_by_qty, rounded once): ½ minor unit per rounded amount on
               -- either side, amount_tolerance × (billing lines + 1)
               if(comparable = 1 AND net_differs = 0 AND tax_known = 1
                      AND toInt64(abs(erp_tax_billed - oms_tax) * 10000) >
                      (SELECT toInt64(argMax(amount_tolerance, version) * 10000) FROM {db}.recon_config) * (billing_lines + 1),
                  'TAX_DIFF', '')]) AS codes
    FROM (
      SELECT order_id, order_line_id, shipped_qty, returned_qty, invoiced_qty, credited_qty, ordered_qty, cancelled_qty,
             erp_net_billed, last_activity, billing_lines, value_known, oms_net_value, duplicate_billing, currency_diff,
             erp_tax_billed, tax_known, oms_tax
      FROM (
        SELECT order_id, order_line_id, shipped_qty, returned_qty, invoiced_qty, credited_qty, ordered_qty, cancelled_qty,
               erp_net_billed, last_activity, billing_lines, erp_tax_billed,
               if(shipped_qty > returned_qty, shipped_qty - returned_qty, toDecimal64(0, 3)) AS net_qty,
               toUInt8(known_line = 0 OR (length(net_value_by_qty) > toUInt64(net_qty) AND toDecimal64(toUInt64(net_qty), 3) = net_qty)) AS value_known,
               toDecimal64(if(value_known = 1, arrayElement(net_value_by_qty, toUInt64(net_qty) + 1), toDecimal64(0, 4)), 4) AS oms_net_value,
               toUInt8(known_line = 0 OR (value_known = 1 AND length(tax_by_qty) > toUInt64(net_qty))) AS tax_known,
               toDecimal64(if(tax_known = 1 AND known_line = 1, arrayElement(tax_by_qty, toUInt64(net_qty) + 1), toDecimal64(0, 4)), 4) AS oms_tax
        FROM (
            -- explicit columns: 18.16 mislabels SELECT * of a view filtered by IN under a JOIN
            SELECT order_id, order_line_id, shipped_qty, returned_qty, invoiced_qty, credited_qty, ordered_qty, cancelled_qty,
                   erp_net_billed, erp_tax_billed, last_activity, known_line, billing_lines
            FROM {db}.v_line_facts
            WHERE known_line = 1 OR (billed_line = 1 AND order_id IN (SELECT order_id FROM {db}.f_orders))
        ) AS facts
        ANY LEFT JOIN (SELECT order_id, order_line_id, net_value_by_qty, tax_by_qty FROM {db}.f_order_lines) AS line_values USING (order_id, order_line_id)
      ) AS valued ANY LEFT JOIN (
        SELECT order_id, order_line_id, duplicate_billing, currency_diff FROM {db}.v_billing_line_checks
      ) AS billing_checks USING (order_id, order_line_id)
    )
)
ARRAY JOIN codes AS mismatch_code
WHERE dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- C6 POINTS_DIFF, per order whose redemption the platform confirmed (one order-level row,
-- order_line_id ''): the redeemed points the platform refunded (Σ RedemptionRefunded) against the
-- share the OMS cancelled and returned, DOMAIN B.1's RR(l) = floor(alloc_pts(l) ×
-- min(q_cxl + q_ret, q_ord) / q_ord) summed over the lines, in thousandths with intDiv (no
-- Decimal division). points = refunded − RR. Aged from the latest of acceptance, cancellations,
-- returns and refunds.
CREATE VIEW IF NOT EXISTS {db}.v_redemption_refund_checks AS
SELECT order_id, toInt64(sum(expected)) AS expected_refund, toInt64(sum(refunded)) AS refunded_points, max(t) AS business_time
FROM (
    SELECT order_id, intDiv(toInt64(redemption_points) * toInt64(if(has_moved = 1 AND moved_qty < ordered_qty, moved_qty, if(has_moved = 1, ordered_qty, toDecimal64(0, 3))) * 1000),
                            toInt64(ordered_qty * 1000)) AS expected,
           toInt64(0) AS refunded, toDateTime(0) AS t
    FROM (
        SELECT order_id, order_line_id, redemption_points, toDecimal64(quantity, 3) AS ordered_qty
        FROM {db}.f_order_lines WHERE redemption_points > 0 AND quantity > 0
    ) AS redeemed_lines ANY LEFT JOIN (
        SELECT order_id, order_line_id, toDecimal64(cancelled_qty + returned_qty, 3) AS moved_qty, toUInt8(1) AS has_moved
        FROM {db}.v_line_facts
    ) AS moved_lines USING (order_id, order_line_id)
    UNION ALL
    SELECT order_id, toInt64(0) AS expected, points AS refunded, posted_at AS t
    FROM {db}.f_loyalty_postings WHERE kind = 'REDEMPTION_REFUND'
    UNION ALL
    SELECT order_id, toInt64(0) AS expected, toInt64(0) AS refunded, occurred_at AS t FROM {db}.f_return_lines
    UNION ALL
    SELECT order_id, toInt64(0) AS expected, toInt64(0) AS refunded, occurred_at AS t FROM {db}.f_cancellation_lines
    UNION ALL
    SELECT order_id, toInt64(0) AS expected, toInt64(0) AS refunded, accepted_at AS t FROM {db}.f_orders
)
WHERE order_id IN (
    SELECT order_id FROM {db}.f_orders
    WHERE reservation_id != '' AND reservation_id IN (SELECT reservation_id FROM {db}.v_reservations WHERE confirmed = 1)
)
GROUP BY order_id;

-- C6 REDEMPTION_VALUE_DIFF (DESIGN "Reconciliation grains"): per order whose redemption the
-- platform confirmed, the redemption value the live invoices record net of the live credit
-- memos (erp v2 redemption_value) against the value the platform kept, (confirmed − refunded
-- points) × the reservation's conversion rate; compared only when the order is settled (every
-- OMS line invoiced − credited = ordered − cancelled − returned), every live billing document
-- carries a value (a v1 writer's is unknown) and the rate is known. allowance =
-- amount_tolerance × (live billing lines + 1) + one point's value per line with cancelled or
-- returned units.
CREATE VIEW IF NOT EXISTS {db}.v_redemption_value_checks AS
SELECT order_id, erp_value, loyalty_value,
       -- the tolerance read in ten-thousandths: 18.16 refuses a Decimal scalar subquery here
       toDecimal64(toDecimal64((SELECT toInt64(argMax(amount_tolerance, version) * 10000) FROM {db}.recon_config) * (billing_lines + 1), 0)
                   * toDecimal64('0.0001', 4), 4)
           + toDecimal64(rate * toDecimal64(moved_lines, 0), 6) AS allowance,
       business_time
FROM (
    SELECT order_id, toDecimal64(sum(erp_v), 4) AS erp_value,
           toDecimal64(toDecimal64(toInt64(sum(conf_pts)) - toInt64(sum(ref_pts)), 0) * max(rate_in), 6) AS loyalty_value,
           max(rate_in) AS rate, toInt64(sum(bl)) AS billing_lines, toInt64(sum(moved)) AS moved_lines,
           toInt64(sum(unknown_docs)) AS unknown, toInt64(sum(unsettled)) AS unsettled_lines, max(has_conf) AS confirmed,
           max(t) AS business_time
    FROM (
        SELECT order_id, toDecimal64(if(doc_kind = 'INVOICE', redemption_value, -redemption_value), 4) AS erp_v,
               toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in, toInt64(0) AS bl, toInt64(0) AS moved,
               toInt64(has_redemption_value = 0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf, occurred_at AS t
        FROM {db}.f_billing_documents
        WHERE billing_document_id NOT IN (SELECT cancels_billing_document_id FROM {db}.f_billing_cancellations)
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(1) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf,
               toDateTime(0) AS t
        FROM {db}.v_live_billing_lines
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, points AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(0) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf,
               posted_at AS t
        FROM {db}.f_loyalty_postings WHERE kind = 'REDEMPTION_REFUND'
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(0) AS bl, toInt64(cancelled_qty + returned_qty > toDecimal64(0, 3)) AS moved, toInt64(0) AS unknown_docs,
               toInt64(invoiced_qty - credited_qty != ordered_qty - cancelled_qty - returned_qty) AS unsettled, toUInt8(0) AS has_conf,
               toDateTime(0) AS t
        FROM {db}.v_line_facts WHERE known_line = 1
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(0) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf,
               occurred_at AS t
        FROM {db}.f_cancellation_lines
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(0) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf,
               occurred_at AS t
        FROM {db}.f_return_lines
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, toInt64(0) AS conf_pts, toInt64(0) AS ref_pts, toDecimal64(0, 6) AS rate_in,
               toInt64(0) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs, toInt64(0) AS unsettled, toUInt8(0) AS has_conf,
               occurred_at AS t
        FROM {db}.f_shipment_lines WHERE is_reship = 0
        UNION ALL
        SELECT order_id, toDecimal64(0, 4) AS erp_v, confirmed_points AS conf_pts, toInt64(0) AS ref_pts,
               toDecimal64(conversion_rate, 6) AS rate_in, toInt64(0) AS bl, toInt64(0) AS moved, toInt64(0) AS unknown_docs,
               toInt64(0) AS unsettled, toUInt8(1) AS has_conf, if(confirmed_at > accepted_at, confirmed_at, accepted_at) AS t
        FROM (SELECT order_id, reservation_id, accepted_at FROM {db}.f_orders WHERE reservation_id != '') AS o
        ALL INNER JOIN (
            SELECT reservation_id, confirmed_points, conversion_rate, confirmed_at FROM {db}.v_reservations WHERE confirmed = 1
        ) AS r USING (reservation_id)
    )
    GROUP BY order_id
)
WHERE confirmed = 1 AND unknown = 0 AND unsettled_lines = 0 AND rate > toDecimal64(0, 6);

-- C6: the line rows (v_three_way_line_rows) and the order-level POINTS_DIFF and
-- REDEMPTION_VALUE_DIFF rows.
CREATE VIEW IF NOT EXISTS {db}.recon_three_way_line AS
SELECT order_id, order_line_id, mismatch_code, shipped_qty, returned_qty, invoiced_qty, credited_qty,
       erp_net_billed, oms_net_value, erp_tax_billed, oms_tax, amount, points, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 48, '0-48h', age_hours < 168, '2-7d', age_hours < 720, '7-30d', '>30d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(three_way_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT order_id, order_line_id, mismatch_code, shipped_qty, returned_qty, invoiced_qty, credited_qty,
           erp_net_billed, oms_net_value, erp_tax_billed, oms_tax, amount, toInt64(0) AS points, business_time
    FROM {db}.v_three_way_line_rows
    UNION ALL
    SELECT order_id, '' AS order_line_id, 'POINTS_DIFF' AS mismatch_code, toDecimal64(0, 3) AS shipped_qty,
           toDecimal64(0, 3) AS returned_qty, toDecimal64(0, 3) AS invoiced_qty, toDecimal64(0, 3) AS credited_qty,
           toDecimal64(0, 4) AS erp_net_billed, toDecimal64(0, 4) AS oms_net_value, toDecimal64(0, 4) AS erp_tax_billed,
           toDecimal64(0, 4) AS oms_tax, toDecimal64(0, 4) AS amount, toInt64(refunded_points - expected_refund) AS points, business_time
    FROM {db}.v_redemption_refund_checks
    WHERE refunded_points != expected_refund
      AND dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config)
    UNION ALL
    SELECT order_id, '' AS order_line_id, 'REDEMPTION_VALUE_DIFF' AS mismatch_code, toDecimal64(0, 3) AS shipped_qty,
           toDecimal64(0, 3) AS returned_qty, toDecimal64(0, 3) AS invoiced_qty, toDecimal64(0, 3) AS credited_qty,
           toDecimal64(0, 4) AS erp_net_billed, toDecimal64(0, 4) AS oms_net_value, toDecimal64(0, 4) AS erp_tax_billed,
           toDecimal64(0, 4) AS oms_tax, toDecimal64(erp_value - loyalty_value, 4) AS amount, toInt64(0) AS points, business_time
    FROM {db}.v_redemption_value_checks
    WHERE (erp_value - loyalty_value > allowance OR loyalty_value - erp_value > allowance)
      AND dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config)
);

-- What the customer was refunded per return (ReturnReceived.refund: merchandise + tax +
-- shipping − return fee), from the audit trail's RETURN_REFUND movement (amount signed from the
-- customer's side), records the runtime or the sink rejected left out.
CREATE VIEW IF NOT EXISTS {db}.v_return_refunds AS
SELECT order_id, return_id, toDecimal64(-sum(amount), 4) AS refunded, min(business_time) AS received_at
FROM (
    SELECT order_id, source_ref AS return_id, amount, business_time
    FROM {db}.audit_ledger FINAL
    WHERE movement_kind = 'RETURN_REFUND'
      AND (src_topic, src_partition, src_offset) NOT IN (SELECT source_topic, source_partition, source_offset FROM {db}.v_rejected_sources)
)
GROUP BY order_id, return_id;

-- Live credit memos per return: their gross and how many rounded lines they have.
CREATE VIEW IF NOT EXISTS {db}.v_credit_memos_by_return AS
SELECT order_id, return_id, toDecimal64(sum(gross), 4) AS credited, toInt64(sum(lines)) AS credit_lines
FROM (
    SELECT order_id, return_id, gross, lines
    FROM (
        SELECT order_id, billing_document_id, return_id, gross FROM {db}.f_billing_documents
        WHERE doc_kind = 'CREDIT_MEMO' AND return_id != ''
          AND billing_document_id NOT IN (SELECT cancels_billing_document_id FROM {db}.f_billing_cancellations)
    ) AS memos ANY LEFT JOIN (
        SELECT order_id, billing_document_id, count() AS lines FROM {db}.f_billing_lines GROUP BY order_id, billing_document_id
    ) AS memo_lines USING (order_id, billing_document_id)
)
GROUP BY order_id, return_id;

-- Refund settlement, per return with a refund: the money refunded to the customer against the
-- ERP credit memos for the return. REFUND_NOT_CREDITED: no live credit memo; REFUND_AMOUNT_DIFF:
-- |refunded − credited gross| > amount_tolerance × the memos' lines (at least one: ½ minor unit
-- per rounded line, DOMAIN B.3). amount = refunded − credited. SLA: the billing SLA (credit
-- memos come from the same billing runs as invoices).
CREATE VIEW IF NOT EXISTS {db}.recon_refunds_vs_credit_memos AS
SELECT return_id, order_id, mismatch_code, refunded, credited, amount, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 24, '0-24h', age_hours < 48, '24-48h', age_hours < 168, '2-7d', age_hours < 720, '7-30d', '>30d') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(invoice_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT return_id, order_id, refunded, credited, toDecimal64(refunded - credited, 4) AS amount, received_at AS business_time,
           multiIf(has_memo = 0, 'REFUND_NOT_CREDITED',
                   toInt64(abs(refunded - credited) * 10000) >
                   (SELECT toInt64(argMax(amount_tolerance, version) * 10000) FROM {db}.recon_config)
                   * if(credit_lines > 1, credit_lines, toInt64(1)), 'REFUND_AMOUNT_DIFF', '') AS mismatch_code
    FROM (SELECT order_id, return_id, refunded, received_at FROM {db}.v_return_refunds) AS refunds
    ANY LEFT JOIN (
        SELECT order_id, return_id, credited, credit_lines, toUInt8(1) AS has_memo FROM {db}.v_credit_memos_by_return
    ) AS memos USING (order_id, return_id)
)
WHERE mismatch_code != ''
  AND dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);

-- Activations with the member of the accrual entry they activate (order_id, entry_id) and the
-- activates_at of the AccrualRequested that entry answers (request id): when the pipeline said
-- its lock ends. has_due = 0 when no command is known.
CREATE VIEW IF NOT EXISTS {db}.v_activations AS
SELECT member_id, activated_at, points, due, has_due
FROM (
    SELECT order_id, entry_id, activated_at, points, member_id, request_id, has_entry
    FROM (
        SELECT order_id, entry_id, posted_at AS activated_at, points FROM {db}.f_loyalty_postings WHERE kind = 'ACTIVATION'
    ) AS activation_rows ANY LEFT JOIN (
        SELECT order_id, entry_id, member_id, request_id, toUInt8(1) AS has_entry FROM {db}.f_loyalty_postings WHERE kind = 'ACCRUAL'
    ) AS accrual_entries USING (order_id, entry_id)
    WHERE has_entry = 1
) AS activated ANY LEFT JOIN (
    SELECT request_id, activates_at AS due, toUInt8(1) AS has_due
    FROM {db}.loyalty_commands FINAL WHERE command_type = 'AccrualRequested'
) AS accrual_requests USING (request_id);

-- C7 movements, one row per change of a member's balances at business time t: entitled (the
-- pipeline's accrual − reversal commands, by the command's member), posted (the platform's
-- accrual − reversal postings, by the posting's member), active (activations − reversals'
-- from_active), early (+points at an activation before its due time, −points at the due time).
CREATE VIEW IF NOT EXISTS {db}.v_member_point_movements AS
SELECT member_id, t, entitled, posted, active, early
FROM (
    SELECT member_id, requested_at AS t, if(command_type = 'AccrualRequested', points, -points) AS entitled,
           toInt64(0) AS posted, toInt64(0) AS active, toInt64(0) AS early
    FROM {db}.loyalty_commands FINAL WHERE command_type IN ('AccrualRequested', 'ReversalRequested')
    UNION ALL
    SELECT member_id, posted_at AS t, toInt64(0) AS entitled, if(kind = 'ACCRUAL', points, -points) AS posted,
           if(kind = 'REVERSAL', -from_active, toInt64(0)) AS active, toInt64(0) AS early
    FROM {db}.f_loyalty_postings WHERE kind IN ('ACCRUAL', 'REVERSAL')
    UNION ALL
    SELECT member_id, t, toInt64(0) AS entitled, toInt64(0) AS posted, a AS active, e AS early
    FROM (
        SELECT member_id, [activated_at, due] AS ts, [points, toInt64(0)] AS actives,
               if(has_due = 1 AND due > activated_at, [points, -points], [toInt64(0), toInt64(0)]) AS earlies
        FROM {db}.v_activations
    )
    ARRAY JOIN ts AS t, actives AS a, earlies AS e
)
WHERE member_id != '' AND (entitled != 0 OR posted != 0 OR active != 0 OR early != 0);

-- C7 per member: the months (UTC) with movements, sorted, and each balance's cumulative sum
-- over them; periods: every month from the first movement's to the last one that has ended.
CREATE VIEW IF NOT EXISTS {db}.v_member_point_months AS
SELECT member_id, months, arrayCumSum(d_entitled) AS cum_entitled, arrayCumSum(d_posted) AS cum_posted,
       arrayCumSum(d_active) AS cum_active, arrayCumSum(d_early) AS cum_early,
       arrayMap((i, f) -> addMonths(f, i), range(toUInt64(closed)), replicate(first_month, range(toUInt64(closed)))) AS periods
FROM (
    SELECT member_id, arraySort(ms) AS months, arraySort((d, m) -> m, de, ms) AS d_entitled,
           arraySort((d, m) -> m, dp, ms) AS d_posted, arraySort((d, m) -> m, da, ms) AS d_active,
           arraySort((d, m) -> m, dy, ms) AS d_early, arrayReduce('min', ms) AS first_month,
           dateDiff('month', first_month, toStartOfMonth(now(), 'UTC')) AS months_before_now,
           if(months_before_now > 0, months_before_now, 0) AS closed
    FROM (
        SELECT member_id, groupArray(m) AS ms, groupArray(de) AS de, groupArray(dp) AS dp, groupArray(da) AS da, groupArray(dy) AS dy
        FROM (
            SELECT member_id, toStartOfMonth(t, 'UTC') AS m, toInt64(sum(entitled)) AS de, toInt64(sum(posted)) AS dp,
                   toInt64(sum(active)) AS da, toInt64(sum(early)) AS dy
            FROM {db}.v_member_point_movements
            GROUP BY member_id, m
        )
        GROUP BY member_id
    )
);

-- C7: loyalty liability, per member and closed month (UTC), the balances at the period end T
-- (movements before T): entitled (what the member's orders earned by DOMAIN B.1, Σ the
-- pipeline's accrual − reversal commands), posted (pending + active on the platform), active,
-- pending = posted − active. LIABILITY_DIFF: posted ≠ entitled (points = posted − entitled: the
-- platform's liability is off by that many points; a command requested before T and posted after
-- it is a cut-off difference of that period). ACTIVE_BEFORE_DUE: points active at T whose lock
-- (the AccrualRequested's activates_at) had not ended (points: those). Aged from the period end;
-- SLA: the three-way SLA (clean before the close).
CREATE VIEW IF NOT EXISTS {db}.recon_loyalty_liability AS
SELECT member_id, period, mismatch_code, entitled_points, posted_points, active_points,
       toInt64(posted_points - active_points) AS pending_points,
       if(mismatch_code = 'LIABILITY_DIFF', toInt64(posted_points - entitled_points), early_points) AS points, business_time,
       round(dateDiff('second', business_time, now()) / 3600, 2) AS age_hours,
       multiIf(age_hours < 120, '0-5d', age_hours < 720, '5-30d', age_hours < 2160, '1-3mo', '>3mo') AS age_bucket,
       toUInt8(dateDiff('second', business_time, now()) >= (SELECT argMax(three_way_sla_s, version) FROM {db}.recon_config)) AS sla_breached
FROM (
    SELECT member_id, period, entitled_points, posted_points, active_points, early_points, business_time,
           arrayFilter(c -> c != '', [
               if(posted_points != entitled_points, 'LIABILITY_DIFF', ''),
               if(early_points > 0, 'ACTIVE_BEFORE_DUE', '')]) AS codes
    FROM (
        SELECT member_id, period, toDateTime(addMonths(period, 1), 'UTC') AS business_time,
               arrayCount((m, p) -> m <= p, months, replicate(period, months)) AS k,
               if(k = 0, toInt64(0), arrayElement(cum_entitled, k)) AS entitled_points,
               if(k = 0, toInt64(0), arrayElement(cum_posted, k)) AS posted_points,
               if(k = 0, toInt64(0), arrayElement(cum_active, k)) AS active_points,
               if(k = 0, toInt64(0), arrayElement(cum_early, k)) AS early_points
        FROM {db}.v_member_point_months
        ARRAY JOIN periods AS period
    )
)
ARRAY JOIN codes AS mismatch_code
WHERE dateDiff('second', business_time, now()) >= (SELECT argMax(grace_s, version) FROM {db}.recon_config);
