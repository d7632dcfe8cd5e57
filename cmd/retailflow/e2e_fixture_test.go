package main

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
)

// pipeline is one end-to-end test's own pipeline on the local Kafka and ClickHouse: a config
// file (testConfig: topics, groups and a database of its own), its topics created and its
// database migrated with the CLI, the loaded Config, and a connection to the database that the
// test's end closes. The processes (`run`, `sink`) are the test's to start: background or
// runContext.
type pipeline struct {
	t    *testing.T
	File string // the config file, for --config
	C    Config
	DB   string // the ClickHouse database
	CH   driver.Conn
}

// newPipeline skips the test without services (needServices), else sets up a pipeline with
// partitions per topic; args are added to `topics create` and `migrate` (e.g. --log-level).
func newPipeline(t *testing.T, partitions int, args ...string) *pipeline {
	t.Helper()
	needServices(t)
	p := &pipeline{t: t, File: testConfig(t, partitions)}
	for _, cmd := range [][]string{{"topics", "create"}, {"migrate"}} {
		if out, stderr, code := runCLI(t, "", append(append(cmd, "--config", p.File), args...)...); code != 0 {
			t.Fatalf("%v: %s %s", cmd, out, stderr)
		}
	}
	var err error
	if p.C, err = LoadConfig(p.File, nil); err != nil {
		t.Fatal(err)
	}
	p.DB = p.C.ClickHouse.Database
	if p.CH, err = chsink.Open(context.Background(), p.C.ClickHouseConn()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.CH.Close() })
	return p
}

// generate is generate.Generate with opts; the test fails on an error.
func (p *pipeline) generate(opts generate.Options) *generate.Traffic {
	p.t.Helper()
	tr, err := generate.Generate(opts)
	if err != nil {
		p.t.Fatal(err)
	}
	return tr
}

// produce produces the traffic to the pipeline's input topics as `generate --produce` does,
// unpaced, with app's output (a quiet one when app is nil).
func (p *pipeline) produce(app *App, tr *generate.Traffic) {
	p.t.Helper()
	if app == nil {
		app = &App{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	}
	if err := produceTraffic(context.Background(), app, p.C, tr, 0); err != nil {
		p.t.Fatalf("produce traffic: %v", err)
	}
}

// count is the one number q (with {db} for the database) answers.
func (p *pipeline) count(q string, args ...any) uint64 {
	p.t.Helper()
	q = strings.ReplaceAll(q, "{db}", p.DB)
	var n uint64
	if err := p.CH.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		p.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// strs is the one string column q (with {db} for the database) answers, sorted.
func (p *pipeline) strs(q string, args ...any) []string {
	p.t.Helper()
	q = strings.ReplaceAll(q, "{db}", p.DB)
	rows, err := p.CH.Query(context.Background(), q, args...)
	if err != nil {
		p.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		p.t.Fatalf("%s: %v", q, err)
	}
	sort.Strings(out)
	return out
}

// configWith writes the pipeline's config with replace applied (old, new pairs) to a new file
// named after name, and returns its path (e.g. another log level for one process).
func (p *pipeline) configWith(name string, replace ...string) string {
	p.t.Helper()
	body, err := os.ReadFile(p.File)
	if err != nil {
		p.t.Fatal(err)
	}
	f := p.File + "." + name + ".yaml"
	if err := os.WriteFile(f, []byte(strings.NewReplacer(replace...).Replace(string(body))), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return f
}
