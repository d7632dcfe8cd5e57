package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
)

func TestBucketOrder(t *testing.T) {
	got := []string{">7d", "3-7d", "30m-24h", "1-3d", "<30m", "0-4h", "4-24h", "15m-4h", "0-15m", ">30d", "7-30d", "2-7d", "24-48h", "0-24h"}
	sort.SliceStable(got, func(a, b int) bool { return bucketMinutes(got[a]) < bucketMinutes(got[b]) })
	want := "<30m 0-4h 0-15m 0-24h 15m-4h 30m-24h 4-24h 1-3d 24-48h 2-7d 3-7d 7-30d >7d >30d"
	if strings.Join(got, " ") != want {
		t.Errorf("buckets sort as %v, want %s", got, want)
	}
}

func TestParseFilterRefusesUnsafeValues(t *testing.T) {
	for _, q := range []string{"topic=a%27+OR+1%3D1", "class=x%20y", "since=yesterday"} {
		v, _ := url.ParseQuery(q)
		if _, err := parseFilter(v); err == nil {
			t.Errorf("parseFilter(%s) accepted it", q)
		}
	}
	v, _ := url.ParseQuery("topic=retail.orders.v1&class=invalid&since=2026-11-02T15:04:05Z")
	f, err := parseFilter(v)
	if err != nil || f.Topic != "retail.orders.v1" || f.Class != "invalid" || f.Since.IsZero() {
		t.Errorf("parseFilter = %+v, %v", f, err)
	}
	if f.Query().Encode() != v.Encode() {
		t.Errorf("Query() = %s, want %s", f.Query().Encode(), v.Encode())
	}
}

// offlineHandler is the page on a connection that is never dialled: the disabled endpoints
// must answer without ClickHouse.
func offlineHandler(t *testing.T) http.Handler {
	t.Helper()
	conn, err := chsink.Connect(chsink.Conn{Addr: "127.0.0.1:1", Database: "retailflow"}) // never dialled here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, err := New(Options{Conn: conn, Database: "retailflow"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// refusedNaming checks that each request is refused (403) with a body naming setting, under
// the page's CSP.
func refusedNaming(t *testing.T, h http.Handler, setting string, reqs ...*http.Request) {
	t.Helper()
	for _, r := range reqs {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), setting) {
			t.Errorf("%s %s = %d %q, want 403 naming %s", r.Method, r.URL, w.Code, w.Body.String(), setting)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("no CSP on %s: %q", r.URL, csp)
		}
	}
}

// Without a Replay function the replay endpoints refuse before touching ClickHouse.
func TestReplayDisabled(t *testing.T) {
	h := offlineHandler(t)
	refusedNaming(t, h, "ui.replay_enabled",
		httptest.NewRequest("GET", "/dlq/replay?class=invalid", nil),
		httptest.NewRequest("POST", "/dlq/replay", strings.NewReader("confirm=yes&class=invalid")))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/assets/style.css", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "body{") {
		t.Errorf("embedded stylesheet: %d", w.Code)
	}
}

// Without an Act function the backlog action endpoints refuse before touching ClickHouse.
func TestActionsDisabled(t *testing.T) {
	refusedNaming(t, offlineHandler(t), "ui.actions_enabled",
		httptest.NewRequest("GET", "/recon/act?view=C4&key=R|L|O|REVERSAL_MISSING", nil),
		httptest.NewRequest("POST", "/recon/act", strings.NewReader("confirm=yes&view=C4&key=R|L|O|REVERSAL_MISSING&action=RESOLVED&note=x&by=y")))
}
