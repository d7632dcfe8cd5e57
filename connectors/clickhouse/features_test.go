package clickhouse

import "testing"

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
