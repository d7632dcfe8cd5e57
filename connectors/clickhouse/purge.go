package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// PurgedMonth is one monthly partition of dead_letters that PurgeDeadLetters considered.
type PurgedMonth struct {
	Month   string // YYYYMM, the month of seen_at
	Rows    uint64 // rows in its active parts (before merges collapse redeliveries)
	Dropped bool   // false: kept (too recent) or, with dryRun, would be dropped when Expired
	Expired bool   // every row of the month was seen before the cutoff
}

// PurgeDeadLetters is the retention of dead_letters (ClickHouse 18.16 has no TTL): it drops
// every monthly partition whose month ended at or before cutoff, so no row seen after cutoff is
// removed and rows seen before it stay at most until the end of their month. dryRun only reports.
// It needs a user allowed DDL on db (the migrate user, not the sink's or the analyst's). The DLQ
// topic's own retention (topics.retention_hours) is separate.
func PurgeDeadLetters(ctx context.Context, conn driver.Conn, db string, cutoff time.Time, dryRun bool) ([]PurgedMonth, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q must match %s", db, dbNameRE)
	}
	// cluster mode (cluster.go): the rows are in dead_letters_local, replicated; a partition
	// dropped on one replica is dropped on every replica through the replication log
	table := "dead_letters"
	var local uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'dead_letters_local' AND engine LIKE 'Replicated%'", db).Scan(&local); err != nil {
		return nil, fmt.Errorf("clickhouse: %s.dead_letters: %w", db, err)
	}
	if local > 0 {
		table = "dead_letters_local"
	}
	var key string
	if err := conn.QueryRow(ctx, "SELECT partition_key FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&key); err != nil {
		return nil, fmt.Errorf("clickhouse: %s.%s: %w (run `retailflow migrate`)", db, table, err)
	}
	if key != "toYYYYMM(seen_at)" {
		return nil, fmt.Errorf("clickhouse: %s.%s is partitioned by %q, not by month (toYYYYMM(seen_at)): run `retailflow migrate` first", db, table, key)
	}
	rows, err := conn.Query(ctx, `SELECT partition, sum(rows) FROM system.parts
		WHERE database = ? AND table = ? AND active GROUP BY partition ORDER BY partition`, db, table)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: list the partitions of %s.%s: %w", db, table, err)
	}
	var out []PurgedMonth
	for rows.Next() {
		var m PurgedMonth
		if err := rows.Scan(&m.Month, &m.Rows); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		m := &out[i]
		ym, err := strconv.Atoi(m.Month)
		if err != nil || ym < 100001 {
			return out, fmt.Errorf("clickhouse: %s.%s has partition %q, not a YYYYMM month", db, table, m.Month)
		}
		end := time.Date(ym/100, time.Month(ym%100)+1, 1, 0, 0, 0, 0, time.UTC) // first instant after the month
		m.Expired = !end.After(cutoff)
		if !m.Expired || dryRun {
			continue
		}
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %d", db, table, ym)); err != nil {
			return out, fmt.Errorf("clickhouse: drop month %s of %s.%s: %w", m.Month, db, table, err)
		}
		m.Dropped = true
	}
	return out, nil
}
