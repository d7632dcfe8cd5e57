package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
)

// chUser runs infra/local.sh ch-user (or ch-user-rm) against the server of RF_RUN_DIR: a user in
// users.d that the server reloads by itself. The test is skipped when the server is not one
// infra/local.sh started (no users.d to write).
func chUser(t *testing.T, args ...string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	run := os.Getenv("RF_RUN_DIR")
	if run == "" {
		run = filepath.Join(root, ".run")
	}
	if _, err := os.Stat(filepath.Join(run, "clickhouse", "config.xml")); err != nil {
		t.Skipf("no ClickHouse started by infra/local.sh under %s (RF_RUN_DIR): cannot change its users", run)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "infra", "local.sh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("infra/local.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestSinkEnvironmentErrorsNeverDeadLetter (issue 11 item 2): with the sink's ClickHouse user
// given a wrong password, its database revoked, its profile made read-only, a table missing, or
// a table that refuses every row (no record can be proven to be the cause),
// the sink dead-letters nothing and commits nothing: it reports not ready with the reason,
// counts the failures by reason, logs, and backs off. Once the environment is fixed, every
// record is stored and the views equal the oracle's.
func TestSinkEnvironmentErrorsNeverDeadLetter(t *testing.T) {
	needsServices(t)
	type fault struct {
		name, reason       string
		password           string // the sink's
		breakIt, restoreIt func(t *testing.T, e *env, user string)
	}
	faults := []fault{
		{name: "wrong-password", reason: "auth", password: "new-secret",
			breakIt:   func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "old-secret", "default,"+e.db) },
			restoreIt: func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "new-secret", "default,"+e.db) }},
		{name: "database-revoked", reason: "access", password: "pw",
			breakIt:   func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "pw", "default") },
			restoreIt: func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "pw", "default,"+e.db) }},
		{name: "readonly-profile", reason: "readonly", password: "pw",
			breakIt:   func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "pw", "default,"+e.db, "readonly") },
			restoreIt: func(t *testing.T, e *env, u string) { chUser(t, "ch-user", u, "pw", "default,"+e.db) }},
		{name: "table-missing", reason: "schema", password: "pw",
			breakIt: func(t *testing.T, e *env, u string) {
				chUser(t, "ch-user", u, "pw", "default,"+e.db)
				if err := e.conn.Exec(context.Background(), "DETACH TABLE "+e.db+".shipment_lines"); err != nil {
					t.Fatal(err)
				}
			},
			restoreIt: func(t *testing.T, e *env, u string) {
				if err := e.conn.Exec(context.Background(), "ATTACH TABLE "+e.db+".shipment_lines"); err != nil {
					t.Fatal(err)
				}
			}},
		// a bad migration that makes the table refuse every row: each record fails alone too, so
		// none is proven row-specific and none may be dead-lettered
		{name: "every-record-refused", reason: "unproven", password: "pw",
			breakIt: func(t *testing.T, e *env, u string) {
				chUser(t, "ch-user", u, "pw", "default,"+e.db)
				if err := e.conn.Exec(context.Background(), "ALTER TABLE "+e.db+".shipment_lines ADD COLUMN guard UInt8 MATERIALIZED throwIf(length(sku) > 0)"); err != nil {
					t.Fatal(err)
				}
			},
			restoreIt: func(t *testing.T, e *env, u string) {
				if err := e.conn.Exec(context.Background(), "ALTER TABLE "+e.db+".shipment_lines DROP COLUMN guard"); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 2)
			user := "rf_sink_" + e.id
			t.Cleanup(func() { chUser(t, "ch-user-rm", user) })
			f.breakIt(t, e, user)
			tr := faultyTraffic(t, 11, 30, 0)
			exp := tr.Expected(time.Now())
			n := e.produceTraffic(t, tr, exp)

			conn, err := Connect(Conn{Addr: chAddrFromEnv(), Database: e.db, Username: user, Password: f.password, DialTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			reg := prometheus.NewRegistry()
			m, err := ops.NewSinkMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			ready := &ops.Readiness{}
			ready.SetReady()
			o := e.sinkOptions()
			o.Conn, o.Metrics, o.Ready = conn, m, ready
			o.MaxRetryWait = 500 * time.Millisecond
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			s, err := NewSink(o)
			if err != nil {
				t.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- s.Run(sctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()

			deadline := time.Now().Add(30 * time.Second)
			for counterSum(t, reg, "retailflow_sink_blocked_total", "reason", f.reason) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("the sink never reported %q failures (blocked_total by reason: %s)", f.reason, blockedReasons(t, reg))
				}
				time.Sleep(100 * time.Millisecond)
			}
			rerr := ready.Check(ctx)
			if rerr == nil || !strings.Contains(rerr.Error(), f.reason) {
				t.Errorf("readiness while blocked: %v, want not ready naming %q", rerr, f.reason)
			}
			t.Logf("not ready: %v", rerr)
			if got := counterSum(t, reg, "retailflow_sink_dead_lettered_total", "", ""); got != 0 {
				t.Errorf("%v records dead-lettered by an environment failure", got)
			}
			if dl := e.dlqRecords(t); dl != 0 {
				t.Errorf("%d records in the DLQ topic after an environment failure", dl)
			}
			if lags, err := e.adm.Lag(ctx, e.group); err == nil {
				if gl, ok := lags[e.group]; ok && gl.Lag.Total() < int64(n) && len(gl.Lag) > 0 {
					// the tables before shipment_lines were stored; the offsets must wait for all
					t.Errorf("the sink committed offsets (lag %d of %d records) while a table refused its rows", gl.Lag.Total(), n)
				}
			}

			f.restoreIt(t, e, user)
			e.caughtUp(t, 60*time.Second)
			if err := ready.Check(ctx); err != nil {
				t.Errorf("still not ready after the fix: %v", err)
			}
			compareViews(t, e.viewRows(t), exp.Views)
			e.checkTotals(t, exp.Totals)
			var dead uint64
			if err := e.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL WHERE origin = 'sink-insert'", e.db)).Scan(&dead); err != nil || dead != 0 {
				t.Errorf("dead_letters holds %d sink-insert rows (%v)", dead, err)
			}
		})
	}
}

func blockedReasons(t *testing.T, reg *prometheus.Registry) string {
	mfs, _ := reg.Gather()
	var out []string
	for _, mf := range mfs {
		if mf.GetName() == "retailflow_sink_blocked_total" {
			for _, m := range mf.GetMetric() {
				out = append(out, fmt.Sprintf("%v=%v", m.GetLabel(), m.Counter.GetValue()))
			}
		}
	}
	return strings.Join(out, " ")
}

// dlqRecords is the number of records in the DLQ topic (sum of its end offsets).
func (e *env) dlqRecords(t *testing.T) int64 {
	t.Helper()
	ends, err := e.adm.ListEndOffsets(context.Background(), e.topics[schemas.TopicDLQ])
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}
