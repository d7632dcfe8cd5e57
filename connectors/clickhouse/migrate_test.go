package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
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
		ReturnSLA: 24 * time.Hour, AccrualSLA: time.Hour, ThreeWaySLA: 48 * time.Hour, AmountTolerance: decimal.RequireFromString("0.01")}
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
	// an orders table that is not ours: 0001 skips it (IF NOT EXISTS), the views fail on it
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
	if me.Migration != "views/recon" || !strings.Contains(err.Error(), "statement ") || !strings.Contains(err.Error(), "CREATE VIEW") {
		t.Fatalf("error does not say which statement failed: %v", err)
	}
	t.Logf("as reported: %v", err)
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_views").Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed views recorded: n=%d err=%v", n, err)
	}
}
