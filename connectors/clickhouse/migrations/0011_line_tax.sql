-- C6 TAX_DIFF: the OMS tax of each order line per net quantity, precomputed by the sink like
-- net_value_by_qty (ClickHouse divides Decimals by truncating, so no money is divided in the
-- views): tax_by_qty[q + 1] = round_half_even(net_value_by_qty[q + 1] × the line's rate, 2), the
-- rate being the sum of its tax lines' rates; empty where net_value_by_qty is. The raw_* table
-- first: its materialized view forwards the new column as soon as the fact table has it. Rows
-- written before this migration keep [] (no TAX_DIFF for them: their tax is unknown).

ALTER TABLE {db}.raw_order_lines ADD COLUMN tax_by_qty Array(Decimal(18, 4));

ALTER TABLE {db}.order_lines ADD COLUMN tax_by_qty Array(Decimal(18, 4));
