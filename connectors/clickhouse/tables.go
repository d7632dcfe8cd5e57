package clickhouse

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Table is a table the sink inserts into: its name and the columns an INSERT lists (every
// column of the DDL except those with a DEFAULT), parsed from the embedded migrations so that
// the DDL stays the single source of truth.
type Table struct {
	Name    string
	Columns []string
}

var (
	tablesOnce sync.Once
	tables     map[string]Table
	tablesErr  error
	createRE   = regexp.MustCompile(`(?s)CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*?)\n\) ENGINE`)
	// a column a later migration adds to a table the sink inserts into (no DEFAULT: the sink fills it)
	addColumnRE = regexp.MustCompile(`ALTER TABLE \{db\}\.(\w+) ADD COLUMN (\w+) [^;]+;`)
)

// Tables returns the insertable tables by name.
func Tables() (map[string]Table, error) {
	tablesOnce.Do(func() {
		ms, err := Migrations()
		if err != nil {
			tablesErr = err
			return
		}
		tables = map[string]Table{}
		for _, m := range ms {
			for _, match := range createRE.FindAllStringSubmatch(m.body, -1) {
				t := Table{Name: match[1]}
				for _, def := range splitTopLevel(match[2]) {
					def = strings.TrimSpace(def)
					if def == "" || strings.Contains(def, " DEFAULT ") {
						continue
					}
					t.Columns = append(t.Columns, strings.Fields(def)[0])
				}
				tables[t.Name] = t
			}
			for _, match := range addColumnRE.FindAllStringSubmatch(m.body, -1) {
				if t, ok := tables[match[1]]; ok && !strings.Contains(match[0], " DEFAULT ") {
					t.Columns = append(t.Columns, match[2])
					tables[t.Name] = t
				}
			}
		}
		// tables without row_id hold no record rows: recon_backlog_history (written by the
		// backlog count) is left out; recon_config stays, as it always was (callers skip it)
		for name, t := range tables {
			if !contains(t.Columns, "row_id") && name != "recon_config" {
				delete(tables, name)
			}
		}
	})
	return tables, tablesErr
}

// splitTopLevel splits a column list on the commas that are not inside parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// Row is one row for one table, its values by column name. Ordered turns it into the table's
// column order for a batch INSERT.
type Row struct {
	Table  string
	Values map[string]any
}

// Ordered returns the row's values in t's column order; a missing or unknown column is an error
// (a mapping bug, caught by the tests that map every event type).
func (r Row) Ordered(t Table) ([]any, error) {
	out := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		v, ok := r.Values[c]
		if !ok {
			return nil, fmt.Errorf("row for %s lacks column %s", t.Name, c)
		}
		out[i] = v
	}
	if len(r.Values) != len(t.Columns) {
		var extra []string
		for k := range r.Values {
			if !contains(t.Columns, k) {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		return nil, fmt.Errorf("row for %s has unknown columns %v", t.Name, extra)
	}
	return out, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
