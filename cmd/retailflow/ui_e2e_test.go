package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// browser starts headless Chromium (Debian's chromium, installed by infra/chromium.sh) and,
// when the test fails, saves a screenshot of the page it was on into $RF_ARTIFACT_DIR
// (default .artifacts/ at the repository root).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("chromium is not installed: run infra/chromium.sh (make test does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			sctx, c := context.WithTimeout(ctx, 10*time.Second)
			if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(90)); err == nil {
				dir := os.Getenv("RF_ARTIFACT_DIR")
				if dir == "" {
					dir = filepath.Join("..", "..", ".artifacts")
				}
				_ = os.MkdirAll(dir, 0o755)
				f := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
				if err := os.WriteFile(f, png, 0o644); err == nil {
					t.Logf("screenshot of the failing page: %s", f)
				}
			}
			c()
		}
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return ctx
}

// text is the text of the element sel (CSS) on the current page.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func atoi(t *testing.T, what, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", what, s)
	}
	return n
}

// TestOperationsPageInChromium drives `retailflow ui` in headless Chromium over a pipeline that
// ran generated traffic with downstream faults and malformed records: the backlog numbers equal
// the views' (per view, per ageing bucket, SLA breaches), a row drills down to its order's story
// with the audit trail, the dead-letter browser's counts equal dead_letters (with a filter),
// and the replay asks for a confirmation before it sends anything.
func TestOperationsPageInChromium(t *testing.T) {
	p := newPipeline(t, 2)
	cfg, c := p.File, p.C
	tr := p.generate(generate.Options{Seed: 51, Orders: 30, MalformedRate: 0.3,
		Faults: generate.Faults{MissingErpOrder: 0.2, MissingInvoice: 0.2, WithheldAccrual: 0.2, WithheldConfirmation: 0.2}})
	invalid := 0
	for _, r := range tr.Records {
		if r.Malformed != "" && r.Class == schemas.ClassInvalid {
			invalid++
		}
	}
	if invalid == 0 {
		t.Fatal("no malformed record of class invalid: change the seed")
	}
	commands := len(tr.Expected(time.Now()).Commands)
	app := &App{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	p.produce(app, tr)
	stopRun := background(t, "run", "--config", cfg)
	// the sink serves metrics, so it counts the views every second and records the day's
	// counts (the page's trend)
	stopSink := background(t, "sink", "--config", withOps(t, cfg, freeAddr(t), "sink"))
	conn, db, count := p.CH, p.DB, p.count
	waitFor(t, 120*time.Second, "the pipeline to write every command and invalid dead letter", func() string {
		cmds := count(fmt.Sprintf("SELECT count() FROM %s.loyalty_commands FINAL", db))
		dead := count(fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL WHERE origin = 'runtime' AND error_class = 'invalid'", db))
		// at least the oracle's commands: a pipeline that reads the topics in another relative
		// order than canonical adds corrections (DESIGN.md invariant 13)
		if cmds < uint64(commands) || dead != uint64(invalid) {
			return fmt.Sprintf("%d/%d commands, %d/%d invalid dead letters", cmds, commands, dead, invalid)
		}
		return ""
	})
	// Let the processor and sink finish their last batches and the sink record today's counts
	// of the final views, then stop them: the page reads a database that no longer changes
	// (but for the views' clock).
	time.Sleep(2 * time.Second)
	stopRun()
	waitFor(t, 30*time.Second, "today's recorded backlog to equal the views", func() string {
		rep, err := chsink.BuildReport(context.Background(), conn, db, 1)
		if err != nil {
			return err.Error()
		}
		hist, err := chsink.BacklogHistory(context.Background(), conn, db, time.Now().UTC())
		if err != nil {
			return err.Error()
		}
		got := map[string]uint64{}
		for _, h := range hist {
			got[h.View] = h.Rows
		}
		for _, v := range rep.Views {
			if got[v.ID] != v.Total {
				return fmt.Sprintf("%s: recorded %d, view %d", v.ID, got[v.ID], v.Total)
			}
		}
		return ""
	})
	stopSink()

	// The page, with replay enabled, on loopback, reading as the read-only user of the local
	// server (infra/clickhouse/users.xml).
	c.UI.ReplayEnabled = true
	c.UI.ClickHouseUsername, c.UI.ClickHousePassword = "analyst", "analyst"
	h, closeUI, err := app.UIHandler(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeUI()
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx := browser(t)

	// 1. The backlog equals the views.
	rep, err := chsink.BuildReport(context.Background(), conn, db, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#total-open"))); err != nil {
		t.Fatalf("backlog page: %v", err)
	}
	totalOpen, totalBreached := text(t, ctx, "#total-open"), text(t, ctx, "#total-breached")
	var wantOpen, wantBreached uint64
	for _, v := range rep.Views {
		perBucket := map[string][2]uint64{}
		for _, b := range v.Buckets {
			x := perBucket[b.Bucket]
			perBucket[b.Bucket] = [2]uint64{x[0] + b.Rows, x[1] + b.SLABreached}
		}
		var sla uint64
		for _, x := range perBucket {
			sla += x[1]
		}
		wantOpen, wantBreached = wantOpen+v.Total, wantBreached+sla
		sel := "#view-" + v.ID
		open, breached := text(t, ctx, sel+" strong.open"), text(t, ctx, sel+" strong.breached")
		if atoi(t, v.ID+" open", open) != v.Total || atoi(t, v.ID+" breached", breached) != sla {
			t.Errorf("page shows %s: %s open, %s past SLA; the view has %d, %d", v.ID, open, breached, v.Total, sla)
		}
		for bucket, want := range perBucket {
			rows := text(t, ctx, fmt.Sprintf(`%s td.rows[data-bucket=%q]`, sel, bucket))
			past := text(t, ctx, fmt.Sprintf(`%s td.sla[data-bucket=%q]`, sel, bucket))
			if atoi(t, "rows", rows) != want[0] || atoi(t, "sla", past) != want[1] {
				t.Errorf("page shows %s bucket %s: %s rows, %s past SLA; the view has %d, %d", v.ID, bucket, rows, past, want[0], want[1])
			}
		}
	}
	if atoi(t, "total open", totalOpen) != wantOpen || atoi(t, "total breached", totalBreached) != wantBreached || wantBreached == 0 {
		t.Errorf("page totals %s open, %s past SLA; views %d, %d (want some past SLA)", totalOpen, totalBreached, wantOpen, wantBreached)
	}

	// The trend: one line per view, and today's numbers equal the views.
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#trend-chart polyline').length`))
	if err != nil || lines != len(rep.Views) {
		t.Errorf("trend chart has %d lines (%v), want %d", lines, err, len(rep.Views))
	}
	today, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('.trend-table tbody tr:last-child td')].map(td => td.textContent)`))
	if err != nil {
		t.Fatalf("trend table: %v", err)
	}
	if len(today) != len(rep.Views)+1 || today[0] != time.Now().UTC().Format("2006-01-02") {
		t.Errorf("trend table's last row %v, want today and %d views", today, len(rep.Views))
	} else {
		for i, v := range rep.Views {
			if atoi(t, "trend "+v.ID, today[i+1]) != v.Total {
				t.Errorf("trend shows %s open today, the view %s has %d", today[i+1], v.ID, v.Total)
			}
		}
	}

	// 2. Drill-down: the first row of C5 (accrual vs fulfilment) opens its order's story, with
	// the audit trail that says why these points.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#view-C5 details').open = true`)); err != nil {
		t.Fatalf("open C5's oldest rows: %v", err)
	}
	orderID := text(t, ctx, `#view-C5 a.order-link`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#view-C5 a.order-link`)), chromedp.WaitVisible(chromedp.CSS(`section.story`))); err != nil {
		t.Fatalf("drill-down from C5: %v", err)
	}
	heading := text(t, ctx, "h1")
	audit, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('section.story')].filter(s => s.querySelector('h2').textContent.startsWith('Audit trail'))[0].querySelectorAll('tbody tr').length`))
	if err != nil {
		t.Fatalf("audit trail: %v", err)
	}
	if heading != "Order "+orderID {
		t.Errorf("drill-down from %s landed on %q", orderID, heading)
	}
	if want := count(fmt.Sprintf("SELECT count() FROM %s.audit_ledger FINAL WHERE order_id = ?", db), orderID); uint64(audit) != want || want == 0 {
		t.Errorf("order %s: %d audit rows on the page, %d in audit_ledger (want some)", orderID, audit, want)
	}

	// 3. The dead-letter browser, unfiltered and filtered by class.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dlq"), chromedp.WaitVisible(chromedp.CSS("#dlq-count"))); err != nil {
		t.Fatalf("dead letters: %v", err)
	}
	all := text(t, ctx, "#dlq-count")
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`select[name=class]`), "invalid"), chromedp.Click(chromedp.CSS("#apply")),
		// the filtered page: its form shows the class selected
		chromedp.WaitReady(chromedp.CSS(`select[name=class] option[selected]`)), chromedp.WaitVisible(chromedp.CSS(`#replay`))); err != nil {
		t.Fatalf("dead letters filtered by class: %v", err)
	}
	filtered := text(t, ctx, "#dlq-count")
	if want := count(fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL", db)); atoi(t, "dlq", all) != want {
		t.Errorf("page shows %s dead letters, dead_letters has %d", all, want)
	}
	if want := count(fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL WHERE error_class = 'invalid'", db)); atoi(t, "dlq invalid", filtered) != want {
		t.Errorf("page shows %s invalid dead letters, dead_letters has %d", filtered, want)
	}

	// 4. Replay asks first: the button leads to a confirmation page and nothing is sent until
	// "Replay now"; a POST without the confirmation is refused.
	replayLog := c.Topics.DLQ + ".replayed"
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#replay")), chromedp.WaitVisible(chromedp.CSS("#replay-now"))); err != nil {
		t.Fatalf("replay button: %v", err)
	}
	confirmCount := text(t, ctx, "#confirm-count")
	if atoi(t, "confirm", confirmCount) != uint64(invalid) {
		t.Errorf("confirmation offers %s records, %d runtime dead letters are of class invalid", confirmCount, invalid)
	}
	if out, _, _ := runCLI(t, "", "consume", "--config", cfg, "--topic", replayLog, "--from-beginning", "--idle", "2s"); strings.TrimSpace(out) != "" {
		t.Errorf("the replay log has records before the confirmation:\n%s", out)
	}
	resp, err := http.PostForm(srv.URL+"/dlq/replay", url.Values{"class": {"invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /dlq/replay without confirm = %d, want 400", resp.StatusCode)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#replay-now")), chromedp.WaitVisible(chromedp.CSS("#replayed-count"))); err != nil {
		t.Fatalf("replay now: %v", err)
	}
	replayed := text(t, ctx, "#replayed-count")
	if atoi(t, "replayed", replayed) != uint64(invalid) {
		t.Errorf("replayed %s, want the %d invalid dead letters", replayed, invalid)
	}
	t.Logf("page: %s open rows, %s past SLA over %d views; order %s with %d audit rows; %s dead letters (%s invalid); replayed %s after the confirmation",
		totalOpen, totalBreached, len(rep.Views), orderID, audit, all, filtered, replayed)
}
