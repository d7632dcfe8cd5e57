package clickhouse

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/shopspring/decimal"
)

// The current-ClickHouse half of the view check. The sink writes to Debian's 18.16 server in
// every test (no current server is installable here); chDB, installed from PyPI by infra/chdb.sh
// into a project-local venv, embeds the current engine with its mandatory query analyzer.
// `make test` sets RETAILFLOW_CHDB_PYTHON to that venv's python.

// chdbSession is one chDB session (infra/chdb_session.py) behind the Session interface.
type chdbSession struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	version string
}

func newChdbSession(t *testing.T, tz string) *chdbSession {
	t.Helper()
	py := os.Getenv("RETAILFLOW_CHDB_PYTHON")
	if py == "" {
		t.Skip("needs chDB: set RETAILFLOW_CHDB_PYTHON to the python of infra/chdb.sh (make test does)")
	}
	script, err := filepath.Abs("../../infra/chdb_session.py")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script, t.TempDir())
	cmd.Env = append(os.Environ(), "TZ="+tz)
	cmd.Stderr = os.Stderr
	s := &chdbSession{cmd: cmd}
	if s.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.in.Close(); _ = cmd.Wait() })
	var hello struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}
	line, err := s.out.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &hello) != nil || !hello.OK {
		t.Fatalf("chdb session did not start: %v %s", err, line)
	}
	s.version = hello.Version
	return s
}

func (s *chdbSession) run(sql, format string) (string, error) {
	req, _ := json.Marshal(map[string]string{"sql": sql, "format": format})
	if _, err := s.in.Write(append(req, '\n')); err != nil {
		return "", err
	}
	line, err := s.out.ReadBytes('\n')
	if err != nil {
		return "", fmt.Errorf("chdb session: %w", err)
	}
	var resp struct {
		OK    bool   `json:"ok"`
		Out   string `json:"out"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return "", err
	}
	if !resp.OK {
		return "", fmt.Errorf("%s", resp.Error)
	}
	return resp.Out, nil
}

func (s *chdbSession) Exec(_ context.Context, sql string) error {
	_, err := s.run(sql, "TSV")
	return err
}

func (s *chdbSession) Query(_ context.Context, sql string) ([][]string, error) {
	out, err := s.run(sql, "TSV")
	if err != nil {
		return nil, err
	}
	return parseTSV(out), nil
}

func parseTSV(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "\t"))
		}
	}
	return rows
}

// httpQuery runs sql on the 18.16 server's HTTP interface (CH_HTTP_PORT, as infra/local.sh
// starts it) and returns the body: the export side of the check, in TabSeparated.
func httpQuery(t *testing.T, sql string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(chAddrFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	port := os.Getenv("CH_HTTP_PORT")
	if port == "" {
		port = "8123"
	}
	resp, err := http.Post("http://"+net.JoinHostPort(host, port)+"/?"+url.Values{"user": {"default"}}.Encode(), "text/plain", strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("18.16 over HTTP: %s: %v %s", headline(sql), err, b)
	}
	return string(b)
}

// normalizeCell makes one text cell comparable across versions: current ClickHouse prints
// decimals without trailing zeros (output_format_decimal_trailing_zeros = 0), 18.16 with.
func normalizeCell(c string) string {
	if c == "0000-00-00 00:00:00" { // 18.16's rendering of the zero DateTime
		return "1970-01-01 00:00:00"
	}
	if strings.HasPrefix(c, "[") && strings.HasSuffix(c, "]") && !strings.Contains(c, "'") {
		parts := strings.Split(c[1:len(c)-1], ",")
		for i, p := range parts {
			parts[i] = normalizeCell(p)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	if d, err := decimal.NewFromString(c); err == nil && strings.ContainsAny(c, "0123456789") && !strings.ContainsAny(c, "eE") {
		return d.String()
	}
	return c
}

func normalizedRows(rows [][]string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		cells := make([]string, len(r))
		for j, c := range r {
			cells[j] = normalizeCell(c)
		}
		out[i] = strings.Join(cells, " | ")
	}
	sort.Strings(out)
	return out
}

func diffRows(t *testing.T, what string, old, cur []string) {
	t.Helper()
	if strings.Join(old, "\n") == strings.Join(cur, "\n") {
		return
	}
	in := func(xs []string) map[string]int {
		m := map[string]int{}
		for _, x := range xs {
			m[x]++
		}
		return m
	}
	o, c := in(old), in(cur)
	n := 0
	for x, k := range o {
		if c[x] != k && n < 10 {
			t.Errorf("%s: 18.16 has %d× [%s], current has %d×", what, k, x, c[x])
			n++
		}
	}
	for x, k := range c {
		if o[x] == 0 && n < 20 {
			t.Errorf("%s: only current has %d× [%s]", what, k, x)
			n++
		}
	}
	t.Errorf("%s: 18.16 returns %d rows, current %d", what, len(old), len(cur))
}

// checkCurrentClickHouse migrates a chDB database named like e.db, loads into it every fact row
// of e.db as the 18.16 server holds it after FINAL, and checks that every view returns on the
// current engine exactly what it returns on 18.16 (every column but age_hours, which moves with
// now() between the two queries) and what the oracle predicts, and that the report's and the
// Grafana dashboard's queries run unchanged on both with the same results.
func (e *env) checkCurrentClickHouse(t *testing.T, exp *oracle.Expected) {
	ctx := context.Background()
	tz := strings.TrimSpace(httpQuery(t, "SELECT timezone()"))
	if off := strings.TrimSpace(httpQuery(t, "SELECT toString(toDateTime(0))")); off != "0000-00-00 00:00:00" && off != "1970-01-01 00:00:00" {
		t.Skipf("the 18.16 server's time zone %s is not UTC (epoch renders as %s): the zero-date translation below assumes UTC", tz, off)
	}
	cur := newChdbSession(t, tz)
	oldVersion := strings.TrimSpace(httpQuery(t, "SELECT version()"))
	t.Logf("ClickHouse versions compared: %s (the sink's server) and %s (chDB)", oldVersion, cur.version)

	res, err := MigrateSession(ctx, cur, e.db, testRecon())
	if err != nil {
		t.Fatalf("migrate on %s: %v", cur.version, err)
	}
	if !res.Features.Has(FeatureLowCardinality) || !res.Features.Has(FeatureDedupToken) || !res.Features.Has(FeatureTableComments) {
		t.Errorf("features on %s: %v, want dedup_token, low_cardinality and table_comments", cur.version, res.Features.Names())
	}
	t.Logf("migrated on %s: %v, features %v", cur.version, res.Applied, res.Features.Names())
	if c, err := cur.Query(ctx, "SELECT comment FROM system.tables WHERE database = "+quote(e.db)+" AND name = 'orders'"); err != nil ||
		len(c) != 1 || !strings.Contains(c[0][0], "f_orders") {
		t.Errorf("orders has no comment naming f_orders on %s: %v %v", cur.version, c, err)
	}

	// the fact rows, as 18.16 holds them after FINAL
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	// the input tables first (their materialized views copy the rows into raw_*), then raw_* as
	// 18.16 holds them (every record, also those merged out of the input tables)
	names := make([]string, 0, len(tables))
	for name := range tables {
		if name != "recon_config" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, r := range parseTSV(httpQuery(t, "SELECT name FROM system.tables WHERE database = "+quote(e.db)+
		" AND name LIKE 'raw\\_%' AND engine != 'MaterializedView' ORDER BY name FORMAT TabSeparated")) {
		names = append(names, r[0])
	}
	if len(names) < len(tables)+11 {
		t.Fatalf("tables to load: %v", names)
	}
	loaded := 0
	for _, name := range names {
		// every column, ingested_at too: the tables have the same columns in the same order on both
		data := httpQuery(t, fmt.Sprintf("SELECT * FROM %s.%s FINAL FORMAT TabSeparated", e.db, name))
		if data == "" {
			continue
		}
		loaded += strings.Count(data, "\n")
		// 18.16 writes the zero DateTime (the epoch) as 0000-00-00 00:00:00, which the current
		// parser does not read as the epoch; the server's time zone is UTC here (checked above)
		data = strings.ReplaceAll(data, "0000-00-00 00:00:00", "1970-01-01 00:00:00")
		if err := cur.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s FORMAT TabSeparated\n%s", e.db, name, data)); err != nil {
			t.Fatalf("load %s into %s: %v", name, cur.version, err)
		}
	}
	t.Logf("loaded %d fact rows from %s into %s", loaded, oldVersion, cur.version)
	old := NativeSession(e.conn)

	// every view, every column but age_hours
	vs, err := loadViews()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.names {
		desc := func(s Session) []string {
			rows, err := s.Query(ctx, "DESCRIBE TABLE "+e.db+"."+v)
			if err != nil {
				t.Fatalf("describe %s: %v", v, err)
			}
			var names []string
			for _, r := range rows {
				names = append(names, r[0])
			}
			return names
		}
		oc, cc := desc(old), desc(cur)
		if strings.Join(oc, ",") != strings.Join(cc, ",") {
			t.Errorf("%s columns differ: 18.16 %v, current %v", v, oc, cc)
			continue
		}
		var sel []string
		for _, c := range oc {
			if c != "age_hours" {
				sel = append(sel, c)
			}
		}
		q := fmt.Sprintf("SELECT %s FROM %s.%s", strings.Join(sel, ", "), e.db, v)
		diffRows(t, v, normalizedRows(textQuery(t, old, q)), normalizedRows(textQuery(t, cur, q)))
	}
	// the oracle's rows, read from the current engine the way they are read from 18.16
	compareViews(t, viewRowsFrom(t, cur, e.db), exp.Views)

	// the report's queries, the story's, and the dashboard's, unchanged on both
	var queries []string
	for _, v := range Views {
		b, o := reportSQL(e.db, v, 20)
		queries = append(queries, b, o, ownersSQL(e.db, v))
	}
	orderIDs, err := old.Query(ctx, "SELECT order_id FROM "+e.db+".f_orders ORDER BY order_id LIMIT 3")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range orderIDs {
		for _, q := range storyQueries {
			queries = append(queries, strings.ReplaceAll(fmt.Sprintf(q.sql, e.db), "?", quote(id[0])))
		}
		for _, v := range Views {
			if v.PerMember {
				continue
			}
			queries = append(queries, strings.Replace(storyViewSQL(e.db, v), "?", quote(id[0]), 1))
		}
	}
	dash, err := dashboardSQL()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range dash {
		queries = append(queries, strings.ReplaceAll(q, "__RETAILFLOW_DATABASE__", e.db))
	}
	for _, q := range queries {
		or := textQuery(t, old, q)
		cr := textQuery(t, cur, q)
		if strings.Contains(q, "age_hours") { // the report's oldest rows: drop the age, which moves with now()
			or, cr = dropAgeHours(or), dropAgeHours(cr)
		}
		diffRows(t, headline(q), normalizedRows(or), normalizedRows(cr))
	}
	t.Logf("%d view, %d report/story/dashboard queries equal on %s and %s", len(vs.names), len(queries), oldVersion, cur.version)

	// dedup_token: a retried INSERT with the same token is acknowledged and not written twice;
	// another token is another batch (last: it changes the rows compared above)
	row := httpQuery(t, "SELECT * FROM "+e.db+".orders FINAL ORDER BY order_id LIMIT 1 FORMAT TabSeparated")
	row = strings.ReplaceAll(row, "0000-00-00 00:00:00", "1970-01-01 00:00:00")
	for i, token := range []string{"batch-a", "batch-a", "batch-b"} {
		if err := cur.Exec(ctx, fmt.Sprintf("INSERT INTO %s.orders SETTINGS insert_deduplication_token = %s FORMAT TabSeparated\n%s",
			e.db, quote(token), row)); err != nil {
			t.Fatalf("insert #%d with token %s: %v", i+1, token, err)
		}
	}
	id := strings.SplitN(row, "\t", 2)[0]
	n, err := cur.Query(ctx, fmt.Sprintf("SELECT count() FROM %s.orders WHERE order_id = %s", e.db, quote(id)))
	if err != nil || len(n) != 1 || n[0][0] != "3" { // the original row, batch-a once, batch-b once
		t.Errorf("rows of %s after inserts with tokens a, a, b: %v %v, want 3", id, n, err)
	}
}

// textQuery runs q on the 18.16 server (over HTTP) or on chDB, both in TabSeparated: the same
// text form for both, with no conversion on the way.
func textQuery(t *testing.T, s Session, q string) [][]string {
	t.Helper()
	if cs, ok := s.(*chdbSession); ok {
		rows, err := cs.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("%s on %s: %v", headline(q), cs.version, err)
		}
		return rows
	}
	return parseTSV(httpQuery(t, q+" FORMAT TabSeparated"))
}

func dropAgeHours(rows [][]string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		// the oldest-rows query ends with business_time, age_hours, age_bucket, sla_breached
		out[i] = append(append([]string{}, r[:len(r)-3]...), r[len(r)-2:]...)
	}
	return out
}

// dashboardSQL is every rawSql of the Grafana dashboard the chart ships.
func dashboardSQL() ([]string, error) {
	b, err := os.ReadFile("../../helm/retailflow/files/dashboard.json")
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []string
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, p := range raw {
			var panel struct {
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					RawSQL string `json:"rawSql"`
				} `json:"targets"`
			}
			if json.Unmarshal(p, &panel) != nil {
				continue
			}
			for _, tg := range panel.Targets {
				if tg.RawSQL != "" {
					out = append(out, tg.RawSQL)
				}
			}
			walk(panel.Panels)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		return nil, fmt.Errorf("dashboard.json has no rawSql targets")
	}
	return out, nil
}
