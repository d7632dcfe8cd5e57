package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/ops"
)

const dashboardFile = "../../helm/retailflow/files/dashboard.json"

// recordingRegisterer keeps every collector registered through it, and registers it in a real
// registry too (so duplicate names fail as they would in `run` and `sink`).
type recordingRegisterer struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredMetrics returns every series name `run` and `sink` can expose, derived from the
// collectors the code registers (the same constructors the commands call: runtime metrics,
// sink metrics, the lag collector and franz-go's kprom hooks), not from a list: histograms
// contribute their _bucket, _sum and _count series.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recordingRegisterer{Registry: prometheus.NewRegistry()}
	if _, err := ops.NewRuntimeMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.NewSinkMetrics(rec); err != nil {
		t.Fatal(err)
	}
	// kprom registers its collectors when a client is created; no broker is contacted.
	for _, name := range []string{"ledger", "sink"} {
		cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kafkaClientMetrics(rec, name))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	lc, err := ops.NewLagCollector(kadm.NewClient(cl), ops.LagOptions{Groups: []string{"ledger", "sink"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Register(lc); err != nil {
		t.Fatal(err)
	}
	// the sink's reconciliation backlog gauges; Connect does not dial
	chConn, err := chsink.Connect(chsink.Conn{Addr: "127.0.0.1:1", Database: "retailflow"})
	if err != nil {
		t.Fatal(err)
	}
	defer chConn.Close()
	c := DefaultConfig()
	if poll, err := startBacklogCollector(c, chConn, rec); err != nil || poll == nil {
		t.Fatalf("backlog collector: %v (nil: %v)", err, poll == nil)
	}
	names := map[string]bool{}
	for _, c := range rec.collectors {
		_, histogram := c.(prometheus.ObserverVec)
		if _, ok := c.(prometheus.Histogram); ok {
			histogram = true
		}
		descs := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
			if histogram {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[m[1]+suffix] = true
				}
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d metric names found in the registered collectors: %v", len(names), names)
	}
	return names
}

// promqlKeywords are PromQL's aggregation operators, modifiers and binary operators: words that
// are never metric names.
var promqlKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true,
	"limit_ratio": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true,
	"atan2": true, "inf": true, "nan": true,
}

// labelListWords are followed by a parenthesised list of label names.
var labelListWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promqlMetricNames tokenises a PromQL expression and returns the metric names it selects: the
// identifiers that are not a function call, a keyword, a label name inside {…} or a label list
// (by/without/on/ignoring/group_*), nor inside a string. Grafana's $variables are taken as
// values. It fails on unbalanced brackets or an unterminated string, so a query that cannot
// parse is reported, not silently skipped.
func promqlMetricNames(expr string) ([]string, error) {
	rs := []rune(expr)
	var names []string
	var stack []rune // open brackets
	labelList := false
	next := func(i int) rune { // first non-space rune at or after i
		for ; i < len(rs); i++ {
			if !unicode.IsSpace(rs[i]) {
				return rs[i]
			}
		}
		return 0
	}
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			j := i + 1
			for ; j < len(rs) && rs[j] != r; j++ {
				if rs[j] == '\\' && r != '`' {
					j++
				}
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case r == '$': // Grafana variable: $name or ${name}
			j := i + 1
			for ; j < len(rs) && (rs[j] == '_' || rs[j] == '{' || rs[j] == '}' || unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j])); j++ {
			}
			i = j
		case r == '(' || r == '{' || r == '[':
			stack = append(stack, r)
			i++
		case r == ')' || r == '}' || r == ']':
			open := map[rune]rune{')': '(', '}': '{', ']': '['}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return nil, fmt.Errorf("unbalanced %q at %d", r, i)
			}
			stack = stack[:len(stack)-1]
			if r == ')' {
				labelList = false
			}
			i++
		case unicode.IsLetter(r) || r == '_' || r == ':':
			j := i
			for ; j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_' || rs[j] == ':'); j++ {
			}
			word := string(rs[i:j])
			inBraces := len(stack) > 0 && stack[len(stack)-1] == '{'
			inRange := len(stack) > 0 && stack[len(stack)-1] == '['
			switch {
			case labelListWords[word] && next(j) == '(':
				labelList = true
				stack = append(stack, '(')
				j = j + strings.IndexRune(string(rs[j:]), '(') + 1
			case inBraces, inRange, labelList, promqlKeywords[word], next(j) == '(':
			default:
				names = append(names, word)
			}
			i = j
		case unicode.IsDigit(r) || r == '.':
			j := i
			for ; j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '.'); j++ {
			}
			i = j
		case strings.ContainsRune("+-*/%^=!<>,~:@", r):
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d", r, i)
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return names, nil
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (topic) (rate(retailflow_records_consumed_total{namespace=~"$namespace"}[$__rate_interval]))`: {"retailflow_records_consumed_total"},
		`histogram_quantile(0.99, sum by (le, table) (rate(a_bucket{x="by (y)"}[5m])))`:                       {"a_bucket"},
		`time() - max by (group) (b)`: {"b"},
		`sum(rate(a[5m])) / on (job) group_left (x) sum(c) > 0.5 and d offset 1h`: {"a", "c", "d"},
		`predict_linear(e[30m], 3600) > 1e3`:                                      {"e"},
	} {
		got, err := promqlMetricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("promqlMetricNames(%s) = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{`sum(rate(a[5m])`, `a{x="y}`, `a]`} {
		if _, err := promqlMetricNames(bad); err == nil {
			t.Errorf("promqlMetricNames(%s) accepted an unbalanced query", bad)
		}
	}
}

// dashboardQueries returns every Prometheus query of the shipped dashboard (panel targets and
// templating variables), keyed by where it is.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	type panel struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	qs := map[string]string{}
	var walk func([]json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, raw := range raws {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: panel: %v", dashboardFile, err)
			}
			for _, tg := range p.Targets {
				uid := p.Datasource.UID
				if tg.Datasource != nil && tg.Datasource.UID != "" {
					uid = tg.Datasource.UID
				}
				if uid != "${prometheus}" {
					continue // ClickHouse panels: SQL, checked by the views' tests
				}
				if tg.Expr == "" {
					t.Errorf("panel %q target %s: a Prometheus target without expr", p.Title, tg.RefID)
				}
				qs[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\(\s*([^,]+),\s*\w+\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" || v.Datasource.UID != "${prometheus}" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: cannot read query %q", v.Name, v.Definition)
			continue
		}
		qs["variable "+v.Name] = m[1]
	}
	return qs
}

// TestDashboardQueriesUseRegisteredMetrics parses every Prometheus query of the shipped Grafana
// dashboard and checks each metric it selects is one `run` or `sink` registers, so a renamed
// metric or a panel over a metric nobody exports fails here instead of staying empty.
func TestDashboardQueriesUseRegisteredMetrics(t *testing.T) {
	reg := registeredMetrics(t)
	qs := dashboardQueries(t)
	if len(qs) < 20 {
		t.Fatalf("only %d Prometheus queries found in %s", len(qs), dashboardFile)
	}
	used := map[string]bool{}
	for where, q := range qs {
		names, err := promqlMetricNames(q)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, q, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, q)
		}
		for _, n := range names {
			used[n] = true
			if !reg[n] {
				t.Errorf("%s: metric %s is not registered by run or sink", where, n)
			}
		}
	}
	t.Logf("%d queries use %d metrics, all registered", len(qs), len(used))
}

// dashboardMetrics is the set of metric names the dashboard's Prometheus queries select.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	set := map[string]bool{}
	for where, q := range dashboardQueries(t) {
		names, err := promqlMetricNames(q)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, n := range names {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestAlertRulesUseRegisteredMetrics reads the PrometheusRule of the chart as helm/test.sh
// renders it with every feature on (helm/testdata/full.golden, which test.sh keeps equal to the
// chart) and checks each alert's expression parses, selects only metrics `run` or `sink`
// registers, and has a runbook line in helm/README.md.
func TestAlertRulesUseRegisteredMetrics(t *testing.T) {
	reg := registeredMetrics(t)
	golden, err := os.ReadFile("../../helm/testdata/full.golden")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../helm/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rule string
	for _, doc := range strings.Split(string(golden), "\n---\n") {
		if strings.Contains(doc, "\nkind: PrometheusRule\n") {
			rule = doc
		}
	}
	if rule == "" {
		t.Fatal("helm/testdata/full.golden has no PrometheusRule")
	}
	alertRE := regexp.MustCompile(`(?m)^\s+- alert: (\S+)\n\s+expr: (.+)$`)
	alerts := alertRE.FindAllStringSubmatch(rule, -1)
	if n := strings.Count(rule, "- alert: "); n != len(alerts) || n == 0 {
		t.Fatalf("%d alerts, %d with a one-line expr right after the name", n, len(alerts))
	}
	seen := map[string]bool{}
	for _, a := range alerts {
		name, expr := a[1], a[2]
		names, err := promqlMetricNames(expr)
		if err != nil {
			t.Errorf("alert %s: %q does not parse: %v", name, expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("alert %s: %q selects no metric", name, expr)
		}
		for _, n := range names {
			if !reg[n] {
				t.Errorf("alert %s: metric %s is not registered by run or sink", name, n)
			}
		}
		if !seen[name] && !regexp.MustCompile(`(?m)^\| `+"`"+name+"`"+` \|`).Match(readme) {
			t.Errorf("alert %s has no runbook line in helm/README.md (a table row starting with `%s`)", name, name)
		}
		seen[name] = true
	}
	for _, want := range []string{"RetailflowReconSLABreached", "RetailflowDLQGrowing", "RetailflowConsumerLagHigh",
		"RetailflowConsumerLagGrowing", "RetailflowRestoreTooLong", "RetailflowTransactionsAborting"} {
		if !seen[want] {
			t.Errorf("the chart has no alert %s", want)
		}
	}
	t.Logf("%d rules (%d alerts) checked", len(alerts), len(seen))
}
