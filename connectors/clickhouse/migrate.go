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

//go:embed migrations/*.sql migrations/views/*.sql
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
		if e.IsDir() { // views/: applied by applyViews, not a numbered migration
			continue
		}
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
	return out, checkFeatureNames(out)
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
	vs, err := loadViews()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "-- views (%s, re-created whenever it changes)\n", viewsFile)
	for _, s := range vs.statements(db) {
		b.WriteString(s + ";\n\n")
	}
	return b.String(), nil
}

func bootstrapStatements(db string) []string {
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + ".schema_migrations (version UInt32, name String, checksum String, " +
			"applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY (version)",
		// per feature of a current server, whether this database uses it (decided once, see features.go)
		"CREATE TABLE IF NOT EXISTS " + db + ".schema_features (feature String, enabled UInt8, server_version String, " +
			"decided_at DateTime) ENGINE = ReplacingMergeTree ORDER BY (feature)",
		// the checksum of the view definitions last created (migrations/views/recon.sql)
		"CREATE TABLE IF NOT EXISTS " + db + ".schema_views (name String, checksum String, server_version String, " +
			"applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY (name)",
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
	ServerVersion string   // version() of the server migrated
	Features      Features // what the database uses, as recorded in schema_features
	Applied       []string // names of the migrations applied by this run
	ViewsUpdated  bool     // the views were (re)created from migrations/views/recon.sql
	ReconUpdated  bool     // recon_config was (re)written
	AlreadyLatest bool     // nothing to do
}

// Migrate creates database db if needed and applies, in order, every embedded migration not yet
// recorded in db.schema_migrations, recording each one after all its statements succeeded; then
// it (re)creates the views when their definitions changed (see applyViews) and stores recon.
// Running it twice is a no-op. A recorded migration whose file changed is an error, except a
// retired one (retiredChecksums).
func Migrate(ctx context.Context, conn driver.Conn, db string, recon ReconSettings) (MigrateResult, error) {
	return MigrateSession(ctx, NativeSession(conn), db, recon)
}

// MigrateSession is Migrate over any Session (the tests run it against the embedded current
// ClickHouse of chDB as well as the 18.16 server).
func MigrateSession(ctx context.Context, s Session, db string, recon ReconSettings) (MigrateResult, error) {
	var res MigrateResult
	if !dbNameRE.MatchString(db) {
		return res, fmt.Errorf("clickhouse: database name %q must match %s", db, dbNameRE)
	}
	v, err := serverVersion(ctx, s)
	if err != nil {
		return res, err
	}
	res.ServerVersion = v
	offered, err := DecideFeatures(res.ServerVersion)
	if err != nil {
		return res, err
	}
	for i, st := range bootstrapStatements(db) {
		if err := s.Exec(ctx, st); err != nil {
			return res, &MigrationError{Migration: "bootstrap", Statement: i + 1, SQL: st, Err: err}
		}
	}
	applied := map[int]string{}
	rows, err := s.Query(ctx, "SELECT toString(version), checksum FROM "+db+".schema_migrations FINAL")
	if err != nil {
		return res, fmt.Errorf("reading %s.schema_migrations: %w", db, err)
	}
	for _, r := range rows {
		n, err := strconv.Atoi(r[0])
		if err != nil {
			return res, fmt.Errorf("reading %s.schema_migrations: version %q", db, r[0])
		}
		applied[n] = r[1]
	}
	ms, err := Migrations()
	if err != nil {
		return res, err
	}
	for _, m := range ms {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum && !contains(retiredChecksums[m.Version], sum) {
				return res, fmt.Errorf("migration %s was applied with checksum %s but the embedded file now has %s: "+
					"never edit an applied migration, add a new one", m.Name, sum[:12], m.Checksum[:12])
			}
			continue
		}
		for i, st := range m.statementsFor(db, offered) {
			if err := s.Exec(ctx, st); err != nil {
				return res, &MigrationError{Migration: m.Name, Statement: i + 1, SQL: st, Err: err}
			}
		}
		// features are decided once, by the server that applies the statements that use them
		for _, f := range m.requires() {
			if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_features (feature, enabled, server_version, decided_at) "+
				"SELECT %s, %d, %s, now()", db, quote(f), boolInt(offered.Has(f)), quote(res.ServerVersion))); err != nil {
				return res, fmt.Errorf("recording feature %s: %w", f, err)
			}
		}
		if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, checksum, applied_at) SELECT %d, %s, %s, now()",
			db, m.Version, quote(m.Name), quote(m.Checksum))); err != nil {
			return res, fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Name)
	}
	if res.ViewsUpdated, err = applyViews(ctx, s, db, res.ServerVersion); err != nil {
		return res, err
	}
	if res.Features, err = readFeatures(ctx, s, db); err != nil {
		return res, err
	}
	res.Features.ServerVersion = res.ServerVersion
	updated, err := storeRecon(ctx, s, db, recon)
	if err != nil {
		return res, err
	}
	res.ReconUpdated = updated
	res.AlreadyLatest = len(res.Applied) == 0 && !updated && !res.ViewsUpdated
	return res, nil
}

// retiredChecksums are checksums an installed database may have recorded for a migration whose
// file was later emptied because its objects moved elsewhere: 0002_views.sql created the views
// until they moved to migrations/views/recon.sql, which applyViews re-creates whenever it changes
// (the old definitions fail on ClickHouse ≥ 24.3). Only a migration that created views, never
// tables, may be retired: nothing it made holds data.
var retiredChecksums = map[int][]string{
	2: {"f63619404fbe3c9210e3308e98baa73956d10c2f5472060104dddfe18e5c08b9"},
}

func storeRecon(ctx context.Context, s Session, db string, r ReconSettings) (bool, error) {
	want := []int64{int64(r.Grace.Seconds()), int64(r.ErpSLA.Seconds()), int64(r.InvoiceSLA.Seconds()),
		int64(r.RedemptionSLA.Seconds()), int64(r.ReturnSLA.Seconds()), int64(r.AccrualSLA.Seconds()), int64(r.ThreeWaySLA.Seconds())}
	tol := r.AmountTolerance.Round(4)
	rows, err := s.Query(ctx, "SELECT toString(count()), toString(argMax(grace_s, version)), toString(argMax(erp_sla_s, version)), "+
		"toString(argMax(invoice_sla_s, version)), toString(argMax(redemption_sla_s, version)), toString(argMax(return_sla_s, version)), "+
		"toString(argMax(accrual_sla_s, version)), toString(argMax(three_way_sla_s, version)), toString(argMax(amount_tolerance, version)) FROM "+db+".recon_config")
	if err != nil || len(rows) != 1 || len(rows[0]) != 9 {
		return false, fmt.Errorf("reading %s.recon_config: %v", db, err)
	}
	if rows[0][0] != "0" {
		same := true
		for i, w := range want {
			same = same && rows[0][i+1] == strconv.FormatInt(w, 10)
		}
		if have, err := decimal.NewFromString(rows[0][8]); same && err == nil && have.Equal(tol) {
			return false, nil
		}
	}
	vals := make([]string, len(want))
	for i, w := range want {
		vals[i] = strconv.FormatInt(w, 10)
	}
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.recon_config (id, version, grace_s, erp_sla_s, invoice_sla_s, "+
		"redemption_sla_s, return_sla_s, accrual_sla_s, three_way_sla_s, amount_tolerance) SELECT 1, %d, %s, toDecimal64(%s, 4)",
		db, time.Now().UnixNano(), strings.Join(vals, ", "), quote(tol.StringFixed(4)))); err != nil {
		return false, fmt.Errorf("writing %s.recon_config: %w", db, err)
	}
	return true, nil
}

// Session is what Migrate needs of a server: run a statement, read a result as text (callers
// select String columns only).
type Session interface {
	Exec(ctx context.Context, sql string) error
	Query(ctx context.Context, sql string) ([][]string, error)
}

// NativeSession is a Session over a clickhouse-go connection.
func NativeSession(conn driver.Conn) Session { return nativeSession{conn} }

type nativeSession struct{ conn driver.Conn }

func (n nativeSession) Exec(ctx context.Context, sql string) error { return n.conn.Exec(ctx, sql) }

func (n nativeSession) Query(ctx context.Context, sql string) ([][]string, error) {
	rows, err := n.conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals := make([]string, len(rows.Columns()))
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// quote is a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
