package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/retailflow/retailflow/schemas"
)

// An upstream team gets its ids and .avsc files from the CLI, offline.
func TestSchemasCommandListsIDsAndWritesFiles(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "", "schemas", "--format", "json", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []schemaRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	byTopic := map[string]schemaRow{}
	for _, r := range rows {
		byTopic[r.Topic] = r
	}
	orders, ok := byTopic["retail.orders.v1"]
	if !ok || orders.Subject != "retail.orders.v1-value" {
		t.Fatalf("orders row: %+v", orders)
	}
	// The id fastavro / Java's SchemaNormalization give (see schemas.TestOfflineSchemaIDsMatchFastavro).
	if orders.OfflineID != 226845695 || len(orders.Released) == 0 || orders.Released[0].LegacyID != 326666773 {
		t.Fatalf("orders ids: %+v", orders)
	}
	for _, name := range []string{"orders.avsc", "shipments.avsc", "released/orders/v1.avsc"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if id, err := schemas.OfflineSchemaID(string(b)); err != nil || id <= 0 {
			t.Fatalf("%s: id %d, %v", name, id, err)
		}
	}
	if _, stderr, code := runCLI(t, "", "schemas", "--format", "yaml"); code == 0 || stderr == "" {
		t.Fatalf("--format yaml accepted (exit %d)", code)
	}
}
