package clickhouse

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/retailflow/retailflow/processors/oracle"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestDDLGolden(t *testing.T) {
	got, err := DDL("retailflow")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/ddl.golden", got)
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the output; review the change and run go test -update\n--- got ---\n%s", file, got)
	}
}

func TestMigrationsParse(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Fatalf("got %d migrations", len(ms))
	}
	for _, m := range ms {
		for i, s := range m.Statements("db") {
			if headline(s) == "" || s[len(s)-1] == ';' {
				t.Errorf("%s statement %d malformed: %q", m.Name, i+1, s)
			}
		}
	}
}

// needsServices skips a test unless the local Kafka and ClickHouse are meant to be used.
func needsServices(t testing.TB) {
	t.Helper()
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka/ClickHouse: run with RETAILFLOW_E2E=1 (make test)")
	}
}

func testConn(t testing.TB) driver.Conn {
	t.Helper()
	addr := os.Getenv("RETAILFLOW_CLICKHOUSE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9000"
	}
	conn, err := Open(context.Background(), Conn{Addr: addr, Database: "default", Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testDB creates a fresh database with every migration applied and drops it after the test
// (unless RETAILFLOW_KEEP_DB is set, to inspect it).
func testDB(t testing.TB, conn driver.Conn) string {
	t.Helper()
	db := "rf_test_" + randomID()
	if _, err := Migrate(context.Background(), conn, db, testRecon()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("RETAILFLOW_KEEP_DB") == "" {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		}
	})
	return db
}

func testRecon() ReconSettings {
	return ReconSettings{Grace: 15 * time.Minute, ErpSLA: 4 * time.Hour, InvoiceSLA: 48 * time.Hour, RedemptionSLA: time.Hour,
		ReturnSLA: 24 * time.Hour, AccrualSLA: time.Hour, ThreeWaySLA: 48 * time.Hour, AmountTolerance: oracle.DefaultPolicy().AmountTolerance}
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	ctx := context.Background()
	db := testDB(t, conn)
	res, err := Migrate(ctx, conn, db, testRecon())
	if err != nil {
		t.Fatal(err)
	}
	if !res.AlreadyLatest || len(res.Applied) != 0 || res.ReconUpdated {
		t.Fatalf("second migrate did something: %+v", res)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := Migrations()
	if n != uint64(len(ms)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	// the features were decided once, all off on 18.16, and the sink can read them back
	caps, err := Capabilities(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(caps.ServerVersion, "18.16") || len(caps.Names()) != 0 || len(caps.Enabled) != len(featureMinVersion) {
		t.Fatalf("capabilities on 18.16: %+v", caps)
	}
	// every view can be queried on empty tables
	for _, v := range Views {
		rows, err := conn.Query(ctx, "SELECT * FROM "+db+"."+v.Name)
		if err != nil {
			t.Fatalf("view %s: %v", v.Name, err)
		}
		rows.Close()
	}
	// a changed recon setting is stored, and only then
	r := testRecon()
	r.Grace = time.Hour
	if res, err = Migrate(ctx, conn, db, r); err != nil || !res.ReconUpdated {
		t.Fatalf("recon change not stored: %+v %v", res, err)
	}
}

func TestMigrateReportsFailingStatement(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	ctx := context.Background()
	db := "rf_test_" + randomID()
	t.Cleanup(func() { _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db) })
	// an orders table that is not ours: 0001 skips it (IF NOT EXISTS), 0005 fails on it
	for _, s := range []string{"CREATE DATABASE " + db, "CREATE TABLE " + db + ".orders (order_id String) ENGINE = Memory"} {
		if err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Migrate(ctx, conn, db, testRecon())
	var me *MigrationError
	if !errors.As(err, &me) {
		t.Fatalf("want a MigrationError, got %v", err)
	}
	if me.Migration != "0005_facts_by_record" || !strings.Contains(err.Error(), "statement 1 ") || !strings.Contains(err.Error(), "raw_orders") {
		t.Fatalf("error does not say which statement failed: %v", err)
	}
	t.Logf("as reported: %v", err)
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations WHERE version = 5").Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed migration recorded: n=%d err=%v", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_views").Scan(&n); err != nil || n != 0 {
		t.Fatalf("views recorded after a failed migration: n=%d err=%v", n, err)
	}
}

// TestMigrateUpgradesReleasedViews: a database migrated by the release whose 0002_views.sql
// created the views (the definitions current ClickHouse rejects) upgrades: its recorded checksum
// is accepted, the views are re-created from migrations/views/recon.sql, and they answer.
func TestMigrateUpgradesReleasedViews(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	ctx := context.Background()
	db := "rf_test_" + randomID()
	t.Cleanup(func() { _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db) })
	released, err := os.ReadFile("testdata/0002_views_as_released.sql")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(released)
	if !contains(retiredChecksums[2], hex.EncodeToString(sum[:])) {
		t.Fatal("testdata/0002_views_as_released.sql is not the released file")
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	s := NativeSession(conn)
	for _, st := range bootstrapStatements(db)[:2] { // the release had schema_migrations only
		if err := s.Exec(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[:3] {
		if m.Version == 2 {
			m = Migration{Version: 2, Name: m.Name, Checksum: hex.EncodeToString(sum[:]), body: string(released)}
		}
		for _, st := range m.Statements(db) {
			if err := s.Exec(ctx, st); err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
		}
		if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, checksum, applied_at) SELECT %d, %s, %s, now()",
			db, m.Version, quote(m.Name), quote(m.Checksum))); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Migrate(ctx, conn, db, testRecon())
	if err != nil {
		t.Fatalf("upgrade of a released database: %v", err)
	}
	ms, err = Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var later []string // every migration after the released 0003
	for _, m := range ms {
		if m.Version > 3 {
			later = append(later, m.Name)
		}
	}
	if !res.ViewsUpdated || strings.Join(res.Applied, " ") != strings.Join(later, " ") {
		t.Fatalf("upgrade did %+v, want %v applied and the views re-created", res, later)
	}
	vs, _ := loadViews()
	for _, v := range vs.names {
		rows, err := s.Query(ctx, "SELECT toString(count()) FROM "+db+"."+v)
		if err != nil {
			t.Fatalf("view %s after the upgrade: %v", v, err)
		}
		_ = rows
	}
	// the recorded view definitions are the current file's, so a second run does nothing
	if res, err := Migrate(ctx, conn, db, testRecon()); err != nil || !res.AlreadyLatest {
		t.Fatalf("second migrate after the upgrade: %+v %v", res, err)
	}
	// an edited (not retired) migration is still refused
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, checksum, applied_at) SELECT 3, '0003_sink_rejections', %s, now()",
		db, quote(strings.Repeat("ab", 32)))); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn, db, testRecon()); err == nil || !strings.Contains(err.Error(), "never edit an applied migration") {
		t.Fatalf("a changed migration was accepted: %v", err)
	}
}

// TestDDLClusterGolden: cluster mode's statements (clickhouse.cluster), for review beside the
// single-node DDL, which TestDDLGolden keeps unchanged.
func TestDDLClusterGolden(t *testing.T) {
	got, err := DDLCluster("retailflow", "retailflow")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/ddl_cluster.golden", got)
}
