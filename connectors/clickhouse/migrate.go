package clickhouse

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned, embedded SQL file (migrations/NNNN_name.sql). Its statements end
// with ';' at the end of a line and use {db} for the database; each is idempotent on its own
// (IF NOT EXISTS), so re-running a migration that failed half-way is safe.
type Migration struct {
	Version  int
	Name     string
	Checksum string // sha256 of the file, recorded when applied; a changed file is refused
	body     string
}

// Statements returns the migration's statements for database db, in order.
func (m Migration) Statements(db string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(strings.ReplaceAll(m.body, "{db}", db), "\n") {
		cur.WriteString(line)
		if strings.HasSuffix(strings.TrimSpace(line), ";") && !strings.HasPrefix(strings.TrimSpace(line), "--") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	return out
}

// Migrations lists the embedded migrations by version.
func Migrations() ([]Migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_description.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migration files %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: name, Checksum: hex.EncodeToString(sum[:]), body: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// DDL renders every statement Migrate runs for database db, bookkeeping first: what reviewers
// read (testdata/ddl.golden).
func DDL(db string) (string, error) {
	ms, err := Migrations()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range bootstrapStatements(db) {
		b.WriteString(s + ";\n\n")
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "-- migration %s\n", m.Name)
		for _, s := range m.Statements(db) {
			b.WriteString(s + ";\n\n")
		}
	}
	return b.String(), nil
}

func bootstrapStatements(db string) []string {
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + ".schema_migrations (version UInt32, name String, checksum String, " +
			"applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY (version)",
	}
}

// ReconSettings are the SLAs and grace of the reconciliation views. Migrate stores them in
// recon_config (only when they differ from what is stored), and the views read them when queried:
// changing them needs `retailflow migrate`, not a new migration.
type ReconSettings struct {
	Grace                                                    time.Duration
	ErpSLA, InvoiceSLA, RedemptionSLA, ReturnSLA, AccrualSLA time.Duration
	ThreeWaySLA                                              time.Duration
	AmountTolerance                                          decimal.Decimal // C6 AMOUNT_DIFF when |ERP − OMS| > this
}

// MigrationError says which migration and statement failed and why (the server's message).
type MigrationError struct {
	Migration string
	Statement int // 1-based within the migration
	SQL       string
	Err       error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("migration %s statement %d (%s): %v", e.Migration, e.Statement, headline(e.SQL), e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// headline is the first non-comment line of a statement, shortened.
func headline(sql string) string {
	for _, l := range strings.Split(sql, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "--") {
			if len(l) > 100 {
				l = l[:100] + "…"
			}
			return l
		}
	}
	return ""
}

// MigrateResult reports what Migrate did.
type MigrateResult struct {
	Applied       []string // names of the migrations applied by this run
	ReconUpdated  bool     // recon_config was (re)written
	AlreadyLatest bool     // nothing to do
}

// Migrate creates database db if needed and applies, in order, every embedded migration not yet
// recorded in db.schema_migrations, recording each one (batch INSERT with a column list: the only
// insert form that works on 18.16 with clickhouse-go v2.51) after all its statements succeeded.
// Running it twice is a no-op. A recorded migration whose file changed is an error.
func Migrate(ctx context.Context, conn driver.Conn, db string, recon ReconSettings) (MigrateResult, error) {
	var res MigrateResult
	if !dbNameRE.MatchString(db) {
		return res, fmt.Errorf("clickhouse: database name %q must match %s", db, dbNameRE)
	}
	for i, s := range bootstrapStatements(db) {
		if err := conn.Exec(ctx, s); err != nil {
			return res, &MigrationError{Migration: "bootstrap", Statement: i + 1, SQL: s, Err: err}
		}
	}
	applied := map[int]string{}
	rows, err := conn.Query(ctx, "SELECT version, checksum FROM "+db+".schema_migrations FINAL")
	if err != nil {
		return res, fmt.Errorf("reading %s.schema_migrations: %w", db, err)
	}
	for rows.Next() {
		var v uint32
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return res, fmt.Errorf("reading %s.schema_migrations: %w", db, err)
		}
		applied[int(v)] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("reading %s.schema_migrations: %w", db, err)
	}
	ms, err := Migrations()
	if err != nil {
		return res, err
	}
	for _, m := range ms {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return res, fmt.Errorf("migration %s was applied with checksum %s but the embedded file now has %s: "+
					"never edit an applied migration, add a new one", m.Name, sum[:12], m.Checksum[:12])
			}
			continue
		}
		for i, s := range m.Statements(db) {
			if err := conn.Exec(ctx, s); err != nil {
				return res, &MigrationError{Migration: m.Name, Statement: i + 1, SQL: s, Err: err}
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, name, checksum, applied_at)")
		if err != nil {
			return res, fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		if err := b.Append(uint32(m.Version), m.Name, m.Checksum, time.Now()); err != nil {
			return res, fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		if err := b.Send(); err != nil {
			return res, fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Name)
	}
	updated, err := storeRecon(ctx, conn, db, recon)
	if err != nil {
		return res, err
	}
	res.ReconUpdated = updated
	res.AlreadyLatest = len(res.Applied) == 0 && !updated
	return res, nil
}

func storeRecon(ctx context.Context, conn driver.Conn, db string, r ReconSettings) (bool, error) {
	want := []int64{int64(r.Grace.Seconds()), int64(r.ErpSLA.Seconds()), int64(r.InvoiceSLA.Seconds()),
		int64(r.RedemptionSLA.Seconds()), int64(r.ReturnSLA.Seconds()), int64(r.AccrualSLA.Seconds()), int64(r.ThreeWaySLA.Seconds())}
	tol := r.AmountTolerance.Round(4)
	var have [7]int64
	var haveTol decimal.Decimal
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count(), argMax(grace_s, version), argMax(erp_sla_s, version), argMax(invoice_sla_s, version), "+
		"argMax(redemption_sla_s, version), argMax(return_sla_s, version), argMax(accrual_sla_s, version), "+
		"argMax(three_way_sla_s, version), argMax(amount_tolerance, version) FROM "+db+".recon_config").
		Scan(&n, &have[0], &have[1], &have[2], &have[3], &have[4], &have[5], &have[6], &haveTol)
	if err != nil {
		return false, fmt.Errorf("reading %s.recon_config: %w", db, err)
	}
	if n > 0 && haveTol.Equal(tol) && have == [7]int64(want) {
		return false, nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".recon_config (id, version, grace_s, erp_sla_s, invoice_sla_s, "+
		"redemption_sla_s, return_sla_s, accrual_sla_s, three_way_sla_s, amount_tolerance)")
	if err != nil {
		return false, fmt.Errorf("writing %s.recon_config: %w", db, err)
	}
	if err := b.Append(uint8(1), uint64(time.Now().UnixNano()), want[0], want[1], want[2], want[3], want[4], want[5], want[6], tol); err != nil {
		return false, fmt.Errorf("writing %s.recon_config: %w", db, err)
	}
	if err := b.Send(); err != nil {
		return false, fmt.Errorf("writing %s.recon_config: %w", db, err)
	}
	return true, nil
}
