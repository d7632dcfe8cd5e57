package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Feature names: what a current ClickHouse offers over 18.16 and the schema uses where the
// server has it. A migration statement preceded by `-- requires: <feature>` runs only when the
// feature is enabled.
const (
	// FeatureLowCardinality: code columns and src_topic as LowCardinality(String) (server ≥ 20.1).
	FeatureLowCardinality = "low_cardinality"
	// FeatureDedupToken: tables keep a deduplication window (non_replicated_deduplication_window)
	// and the server accepts the insert_deduplication_token setting (server ≥ 22.2).
	FeatureDedupToken = "dedup_token"
	// FeatureTableComments: raw fact tables carry a comment that points analysts to the f_* views
	// (server ≥ 21.10).
	FeatureTableComments = "table_comments"
)

// featureMinVersion is the first ClickHouse release (major, minor) that has each feature.
var featureMinVersion = map[string][2]int{
	FeatureLowCardinality: {20, 1},
	FeatureDedupToken:     {22, 2},
	FeatureTableComments:  {21, 10},
}

// Features is what a database uses of its server. Capabilities reads it back for the sink.
type Features struct {
	ServerVersion string
	Enabled       map[string]bool // by feature name; a feature absent was never decided (older database)
}

// Has reports whether feature f is enabled.
func (f Features) Has(name string) bool { return f.Enabled[name] }

// Names lists the enabled features, sorted.
func (f Features) Names() []string {
	var out []string
	for n, on := range f.Enabled {
		if on {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// DecideFeatures returns the features a server of this version() offers.
func DecideFeatures(version string) (Features, error) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return Features{}, fmt.Errorf("clickhouse: cannot read server version %q", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Features{}, fmt.Errorf("clickhouse: cannot read server version %q", version)
	}
	f := Features{ServerVersion: version, Enabled: map[string]bool{}}
	for name, min := range featureMinVersion {
		f.Enabled[name] = major > min[0] || (major == min[0] && minor >= min[1])
	}
	return f, nil
}

// Capabilities reads what database db was migrated to use (schema_features) and the version of
// the server now answering. The sink uses it once at start: with FeatureDedupToken it may set
// insert_deduplication_token on each batch INSERT (a token derived from the batch's source
// coordinates, so a retried batch is recognised before any merge); without it, the
// ReplacingMergeTree + FINAL idempotence of 18.16 is the only one.
func Capabilities(ctx context.Context, conn driver.Conn, db string) (Features, error) {
	if !dbNameRE.MatchString(db) {
		return Features{}, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	s := NativeSession(conn)
	f, err := readFeatures(ctx, s, db)
	if err != nil {
		return f, err
	}
	if f.ServerVersion, err = serverVersion(ctx, s); err != nil {
		return f, err
	}
	return f, nil
}

// serverVersion is the version() of the server s talks to: the one query of it, for Migrate
// (which decides features from it) and Capabilities.
func serverVersion(ctx context.Context, s Session) (string, error) {
	rows, err := s.Query(ctx, "SELECT version()")
	if err != nil {
		return "", fmt.Errorf("reading the server version: %w", err)
	}
	return versionOf(rows)
}

// versionOf is the version in the answer to SELECT version(): one row of one cell.
func versionOf(rows [][]string) (string, error) {
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == "" {
		return "", fmt.Errorf("reading the server version: SELECT version() answered %d rows (%v), want one row of one value", len(rows), rows)
	}
	return rows[0][0], nil
}

func readFeatures(ctx context.Context, s Session, db string) (Features, error) {
	rows, err := s.Query(ctx, "SELECT feature, toString(enabled) FROM "+db+".schema_features FINAL")
	if err != nil {
		return Features{}, fmt.Errorf("reading %s.schema_features: %w", db, err)
	}
	f := Features{Enabled: map[string]bool{}}
	for _, r := range rows {
		f.Enabled[r[0]] = r[1] == "1"
	}
	return f, nil
}

var requiresRE = regexp.MustCompile(`(?m)^\s*-- requires: (\w+)\s*$`)

// statementRequires is the feature a statement's `-- requires:` line names, or "".
func statementRequires(stmt string) string {
	if m := requiresRE.FindStringSubmatch(stmt); m != nil {
		return m[1]
	}
	return ""
}

// statementsFor returns the statements of m that run on a server with features f.
func (m Migration) statementsFor(db string, f Features) []string {
	var out []string
	for _, s := range m.Statements(db) {
		if r := statementRequires(s); r == "" || f.Has(r) {
			out = append(out, s)
		}
	}
	return out
}

// requires lists the features m's statements depend on.
func (m Migration) requires() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range m.Statements("db") {
		if r := statementRequires(s); r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// checkFeatureNames fails on a `-- requires:` that names no known feature (a typo would silently
// skip the statement everywhere).
func checkFeatureNames(ms []Migration) error {
	for _, m := range ms {
		for _, r := range m.requires() {
			if _, ok := featureMinVersion[r]; !ok {
				return fmt.Errorf("migration %s: -- requires: %s names no known feature", m.Name, r)
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------- views

const viewsFile = "migrations/views/recon.sql"

var createViewRE = regexp.MustCompile(`CREATE VIEW IF NOT EXISTS \{db\}\.(\w+) AS`)

// viewSet is the view definitions: names in creation order, statements, checksum.
type viewSet struct {
	names    []string
	body     string
	checksum string
}

func loadViews() (viewSet, error) {
	b, err := migrationFS.ReadFile(viewsFile)
	if err != nil {
		return viewSet{}, err
	}
	sum := sha256.Sum256(b)
	vs := viewSet{body: string(b), checksum: hex.EncodeToString(sum[:])}
	for _, m := range createViewRE.FindAllStringSubmatch(vs.body, -1) {
		vs.names = append(vs.names, m[1])
	}
	return vs, nil
}

// statements drops every view (dependants first) and creates them in file order.
func (vs viewSet) statements(db string) []string {
	var out []string
	for i := len(vs.names) - 1; i >= 0; i-- {
		out = append(out, "DROP TABLE IF EXISTS "+db+"."+vs.names[i])
	}
	return append(out, Migration{Name: "views", body: vs.body}.Statements(db)...)
}

// applyViews (re)creates the views when migrations/views/recon.sql differs from the definitions
// recorded in schema_views. Views hold no data and ClickHouse resolves them when queried, so the
// whole set is dropped and created again: one file holds every view as it is today, valid on
// 18.16 and on current ClickHouse alike.
func applyViews(ctx context.Context, s Session, db, serverVersion string) (bool, error) {
	vs, err := loadViews()
	if err != nil {
		return false, err
	}
	rows, err := s.Query(ctx, "SELECT checksum FROM "+db+".schema_views FINAL WHERE name = 'recon'")
	if err != nil {
		return false, fmt.Errorf("reading %s.schema_views: %w", db, err)
	}
	if len(rows) == 1 && rows[0][0] == vs.checksum {
		return false, nil
	}
	for i, st := range vs.statements(db) {
		if err := s.Exec(ctx, st); err != nil {
			return false, &MigrationError{Migration: "views/recon", Statement: i + 1, SQL: st, Err: err}
		}
	}
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_views (name, checksum, server_version, applied_at) SELECT 'recon', %s, %s, now()",
		db, quote(vs.checksum), quote(serverVersion))); err != nil {
		return false, fmt.Errorf("recording the views: %w", err)
	}
	return true, nil
}

// InsertDedupToken is the insert_deduplication_token for one batch INSERT of rows into table on a
// database with FeatureDedupToken: a hash of the table and of every row's source record and row
// id, in a canonical order. A retried INSERT of the same rows (a timeout after the server wrote
// them, a restart that re-reads the same offsets) carries the same token and the server
// acknowledges it without writing the rows again; any other batch has another token.
// The sink sets it with clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
// "insert_deduplication_token": token})) when Capabilities reports the feature, and never on 18.16.
func InsertDedupToken(table string, rows []Row) string {
	keys := make([]string, 0, len(rows))
	for _, r := range rows {
		keys = append(keys, fmt.Sprintf("%v\x00%v\x00%v\x00%v", r.Get("src_topic"), r.Get("src_partition"), r.Get("src_offset"), r.Get("row_id")))
	}
	sort.Strings(keys)
	h := sha256.New()
	h.Write([]byte(table))
	for _, k := range keys {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	return hex.EncodeToString(h.Sum(nil))
}
