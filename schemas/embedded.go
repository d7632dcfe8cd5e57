package schemas

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"
)

//go:embed avro/*.avsc
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
