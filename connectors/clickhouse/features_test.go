package clickhouse

import (
	"context"
	"strings"
	"testing"
)

func TestDecideFeatures(t *testing.T) {
	for _, c := range []struct {
		version string
		want    []string
	}{
		{"18.16.1", nil},
		{"20.1.2.4", []string{FeatureLowCardinality}},
		{"21.10.1", []string{FeatureLowCardinality, FeatureTableComments}},
		{"22.2.1", []string{FeatureDedupToken, FeatureLowCardinality, FeatureTableComments}},
		{"26.9.2.1", []string{FeatureDedupToken, FeatureLowCardinality, FeatureTableComments}},
	} {
		f, err := DecideFeatures(c.version)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Names(); len(got) != len(c.want) || (len(got) > 0 && !equalStrings(got, c.want)) {
			t.Errorf("%s: features %v, want %v", c.version, got, c.want)
		}
	}
	for _, bad := range []string{"", "x.y", "26"} {
		if _, err := DecideFeatures(bad); err == nil {
			t.Errorf("version %q accepted", bad)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStatementsForFeatures: a statement marked -- requires: runs only where the feature is on.
func TestStatementsForFeatures(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	old, _ := DecideFeatures("18.16.1")
	cur, _ := DecideFeatures("26.9.2.1")
	for _, m := range ms {
		if m.Name != "0004_current_server" {
			continue
		}
		if n := len(m.statementsFor("db", old)); n != 0 {
			t.Errorf("0004 runs %d statements on 18.16, want none", n)
		}
		if n, all := len(m.statementsFor("db", cur)), len(m.Statements("db")); n != all || n == 0 {
			t.Errorf("0004 runs %d of %d statements on 26.9", n, all)
		}
		return
	}
	t.Fatal("no migration 0004_current_server")
}

func TestInsertDedupToken(t *testing.T) {
	a := Row{Table: "orders", Values: map[string]any{"src_topic": "o", "src_partition": int32(1), "src_offset": int64(5), "row_id": "O-1"}}
	b := Row{Table: "orders", Values: map[string]any{"src_topic": "o", "src_partition": int32(1), "src_offset": int64(6), "row_id": "O-2"}}
	if InsertDedupToken("orders", []Row{a, b}) != InsertDedupToken("orders", []Row{b, a}) {
		t.Error("token depends on row order")
	}
	if InsertDedupToken("orders", []Row{a, b}) == InsertDedupToken("orders", []Row{a}) {
		t.Error("another batch has the same token")
	}
	if InsertDedupToken("orders", []Row{a}) == InsertDedupToken("order_lines", []Row{a}) {
		t.Error("token does not depend on the table")
	}
}

// TestVersionOf: the answer to SELECT version() is one row of one value; anything else is an
// error that says what came back (Capabilities used to index a row without a cell).
func TestVersionOf(t *testing.T) {
	if v, err := versionOf([][]string{{"18.16.1"}}); err != nil || v != "18.16.1" {
		t.Errorf("one row: %q, %v", v, err)
	}
	for _, rows := range [][][]string{nil, {}, {{}}, {{""}}, {{"1", "2"}}, {{"1"}, {"2"}}} {
		if v, err := versionOf(rows); err == nil || !strings.Contains(err.Error(), "SELECT version()") {
			t.Errorf("%v: %q, %v; want an error naming the query", rows, v, err)
		}
	}
}

// countingSession counts the statements a real session runs.
type countingSession struct {
	Session
	queries map[string]int
}

func (c *countingSession) Query(ctx context.Context, sql string) ([][]string, error) {
	c.queries[sql]++
	return c.Session.Query(ctx, sql)
}

// TestMigrateReadsVersionOnce: a migrate asks the server its version once, and decides every
// feature and the views from that answer.
func TestMigrateReadsVersionOnce(t *testing.T) {
	needsServices(t)
	conn := testConn(t)
	ctx := context.Background()
	db := "rf_test_" + randomID()
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	for _, run := range []string{"first", "second"} {
		s := &countingSession{Session: NativeSession(conn), queries: map[string]int{}}
		res, err := MigrateSession(ctx, s, db, testRecon())
		if err != nil {
			t.Fatal(err)
		}
		if n := s.queries["SELECT version()"]; n != 1 || !strings.HasPrefix(res.ServerVersion, "18.16") {
			t.Errorf("%s migrate: SELECT version() ran %d times, server version %q; want once", run, n, res.ServerVersion)
		}
	}
}
