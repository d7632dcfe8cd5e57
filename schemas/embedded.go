package schemas

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed avro/*.avsc avro/released
var avroFS embed.FS

// SchemaName is the name of an embedded schema: the file name under schemas/avro without
// ".avsc" ("orders", "loyalty-commands", "dlq", "order_ledger", …).
type SchemaName string

// schemaNames maps each logical topic to the schema of its values.
var schemaNames = map[Topic]SchemaName{
	TopicOrders:    "orders",
	TopicShipments: "shipments",
	TopicReturns:   "returns",
	TopicLoyalty:   "loyalty",
	TopicERP:       "erp",
	TopicCommands:  "loyalty-commands",
	TopicChangelog: "order_ledger",
	TopicDLQ:       "dlq",
}

// ValueSchema returns the name of the embedded schema of a logical topic's values.
func ValueSchema(t Topic) (SchemaName, bool) {
	n, ok := schemaNames[t]
	return n, ok
}

// SchemaText returns the embedded schema text (as committed, with its formatting).
func SchemaText(name SchemaName) (string, error) {
	b, err := avroFS.ReadFile(path.Join("avro", string(name)+".avsc"))
	if err != nil {
		return "", fmt.Errorf("schemas: no embedded schema %q (known: %s)", name, strings.Join(schemaNameList(), ", "))
	}
	return string(b), nil
}

// SchemaNames lists the embedded schemas, sorted.
func SchemaNames() []SchemaName {
	var out []SchemaName
	for _, n := range schemaNameList() {
		out = append(out, SchemaName(n))
	}
	return out
}

func schemaNameList() []string {
	entries, _ := avroFS.ReadDir("avro")
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".avsc"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// ReleasedSchema is one released version of a schema: avro/released/<name>/v<N>.avsc. A
// released file never changes; a schema change adds the next version (and the compatibility
// test proves the current schema reads every released one).
type ReleasedSchema struct {
	Name    SchemaName
	Version int
	Text    string
}

// ReleasedSchemas lists every released version of a schema, oldest first.
func ReleasedSchemas(name SchemaName) ([]ReleasedSchema, error) {
	dir := path.Join("avro", "released", string(name))
	entries, err := avroFS.ReadDir(dir)
	if err != nil {
		return nil, nil // nothing released yet (e.g. the changelog state before its first release)
	}
	var out []ReleasedSchema
	for _, e := range entries {
		v, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "v"), ".avsc")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || !strings.HasPrefix(e.Name(), "v") {
			return nil, fmt.Errorf("schemas: %s/%s: released versions are named v<N>.avsc", dir, e.Name())
		}
		b, err := avroFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, ReleasedSchema{Name: name, Version: n, Text: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}
