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

// Row is one row for one table. The mappers (EventRows, CommandRows, StateRows, ...) build it
// in its table's column order; a row built by hand gives its values by column name (Values).
// Ordered turns either into the table's column order for a batch INSERT.
type Row struct {
	Table  string
	Values map[string]any
	// vals are the values in the column order of Tables()[Table] (rows of the mappers; then
	// Values is nil); err is a mapping bug found while building them, reported by Ordered.
	vals []any
	err  error
}

// Get returns the value of column c (nil when the row has none).
func (r Row) Get(c string) any {
	if r.vals == nil {
		return r.Values[c]
	}
	if _, idx := tableColumns(r.Table); idx != nil {
		if i, ok := idx[c]; ok {
			return r.vals[i]
		}
	}
	return nil
}

// Set sets the value of column c, which must be one of the row's table.
func (r Row) Set(c string, v any) {
	if r.vals == nil {
		r.Values[c] = v
		return
	}
	if _, idx := tableColumns(r.Table); idx != nil {
		if i, ok := idx[c]; ok {
			r.vals[i] = v
		}
	}
}

// Ordered returns the row's values in t's column order; a missing or unknown column is an error
// (a mapping bug, caught by the tests that map every event type). A mapper's row is returned
// as it is, without a copy.
func (r Row) Ordered(t Table) ([]any, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.vals != nil {
		if r.Table != t.Name || len(r.vals) != len(t.Columns) {
			return nil, fmt.Errorf("row for %s ordered as %s", r.Table, t.Name)
		}
		return r.vals, nil
	}
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

var (
	columnsOnce  sync.Once
	columnIndex  map[string]map[string]int // table → column → position in Table.Columns
	columnTables map[string]Table
)

// tableColumns returns table t and its columns' positions (nil when there is no such table).
func tableColumns(name string) (Table, map[string]int) {
	columnsOnce.Do(func() {
		ts, err := Tables()
		if err != nil {
			return // Tables reports it to NewSink; every row then fails with "no table"
		}
		columnIndex, columnTables = map[string]map[string]int{}, ts
		for n, t := range ts {
			idx := make(map[string]int, len(t.Columns))
			for i, c := range t.Columns {
				idx[c] = i
			}
			columnIndex[n] = idx
		}
	})
	return columnTables[name], columnIndex[name]
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
