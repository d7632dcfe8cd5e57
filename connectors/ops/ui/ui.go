// Package ui is `retailflow ui`: a read-only operations page over ClickHouse. It shows the
// reconciliation backlog per view by ageing bucket with SLA breaches, drills down from any
// row to the order's story and audit trail ("why these points"), and browses the dead letters
// with filters. Replaying dead letters from the page exists only when the caller passes a
// Replay function (config ui.replay_enabled) and then only after an explicit confirmation.
//
// Everything is server-rendered with html/template; the stylesheet is embedded. The page
// loads nothing from the internet.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
)

//go:embed assets/*
var assets embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"query": func(f Filter) template.URL { return template.URL(f.Query().Encode()) },
	"last":  func(rows []trendRow) int { return len(rows) - 1 },
}).ParseFS(assets, "assets/*.html"))

// Filter selects dead letters: every set field must hold.
type Filter struct {
	Topic  string    // physical source topic
	Class  string    // error class
	Origin string    // runtime, sink-decode, sink-insert
	Since  time.Time // seen at or after
}

// Query is the filter as URL parameters.
func (f Filter) Query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"topic": f.Topic, "class": f.Class, "origin": f.Origin} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	return v
}

var safeValue = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

func parseFilter(v url.Values) (Filter, error) {
	f := Filter{Topic: v.Get("topic"), Class: v.Get("class"), Origin: v.Get("origin")}
	for k, s := range map[string]string{"topic": f.Topic, "class": f.Class, "origin": f.Origin} {
		if s != "" && !safeValue.MatchString(s) {
			return Filter{}, fmt.Errorf("filter %s=%q: letters, digits, '.', '_' and '-' only", k, s)
		}
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Filter{}, fmt.Errorf("filter since=%q: want RFC 3339, e.g. 2026-11-02T15:04:05Z", s)
		}
		f.Since = t
	}
	return f, nil
}

// ReplayFunc replays the dead letters f selects (the runtime's, to their source topics) and
// returns how many it sent.
type ReplayFunc func(ctx context.Context, f Filter) (replayed int, err error)

// Options configure the page.
type Options struct {
	Conn     driver.Conn // ClickHouse, ideally as a read-only user
	Database string
	// Replay enables replay from the page; nil disables it (no button, the endpoints refuse).
	Replay ReplayFunc
	// Oldest bounds the oldest rows listed per view (default 20); DLQLimit the dead letters
	// listed (default 200).
	Oldest, DLQLimit int
}

type server struct {
	o Options
}

// New returns the page's handler.
func New(o Options) (http.Handler, error) {
	if o.Conn == nil || o.Database == "" {
		return nil, errors.New("ui: a ClickHouse connection and database are required")
	}
	if o.Oldest <= 0 {
		o.Oldest = 20
	}
	if o.DLQLimit <= 0 {
		o.DLQLimit = 200
	}
	s := &server{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.backlog)
	mux.HandleFunc("GET /order", s.order)
	mux.HandleFunc("GET /dlq", s.dlq)
	mux.HandleFunc("GET /dlq/replay", s.confirmReplay)
	mux.HandleFunc("POST /dlq/replay", s.replay)
	mux.Handle("GET /assets/", http.FileServerFS(assets))
	return securityHeaders(mux), nil
}

// securityHeaders: nothing but this origin, no framing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *server) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "ui: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, b.String())
}

func (s *server) fail(w http.ResponseWriter, code int, err error) {
	w.WriteHeader(code)
	s.render(w, "error.html", map[string]any{"Title": http.StatusText(code), "Err": err.Error()})
}

// bucketMinutes orders the views' age buckets ('<30m', '0-15m', '15m-4h', '4-24h', '1-3d',
// '>7d') by their lower bound in minutes.
var bucketStart = regexp.MustCompile(`^([<>]?)([0-9]+)([mhd]?)`)

func bucketMinutes(b string) float64 {
	m := bucketStart.FindStringSubmatch(b)
	if m == nil {
		return 1 << 30
	}
	if m[1] == "<" {
		return 0
	}
	n, _ := strconv.ParseFloat(m[2], 64)
	unit := m[3]
	if unit == "" {
		unit = b[len(b)-1:]
	}
	n *= map[string]float64{"m": 1, "h": 60, "d": 1440}[unit]
	if m[1] == ">" {
		n += 0.5
	}
	return n
}

type bucketCell struct {
	Bucket         string
	Rows, Breached uint64
}

type viewRow struct {
	OrderID, Code, Keys, BusinessTime, Bucket string
	Breached                                  bool
}

type viewData struct {
	ID, Name, Title string
	Total, Breached uint64
	Buckets         []bucketCell
	Oldest          []viewRow
}

func (s *server) backlog(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rep, err := chsink.BuildReport(ctx, s.o.Conn, s.o.Database, 1)
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	var views []viewData
	var total, breached uint64
	for i, v := range rep.Views {
		vd := viewData{ID: v.ID, Name: v.Name, Title: v.Title, Total: v.Total}
		byBucket := map[string]*bucketCell{}
		for _, b := range v.Buckets {
			c := byBucket[b.Bucket]
			if c == nil {
				c = &bucketCell{Bucket: b.Bucket}
				byBucket[b.Bucket] = c
			}
			c.Rows += b.Rows
			c.Breached += b.SLABreached
			vd.Breached += b.SLABreached
		}
		for _, c := range byBucket {
			vd.Buckets = append(vd.Buckets, *c)
		}
		sort.Slice(vd.Buckets, func(a, b int) bool {
			return bucketMinutes(vd.Buckets[a].Bucket) < bucketMinutes(vd.Buckets[b].Bucket)
		})
		if vd.Oldest, err = s.oldest(ctx, chsink.Views[i]); err != nil {
			s.fail(w, http.StatusBadGateway, err)
			return
		}
		total += vd.Total
		breached += vd.Breached
		views = append(views, vd)
	}
	trend, trendErr := s.trend(ctx)
	s.render(w, "backlog.html", map[string]any{"Title": "Reconciliation backlog", "Views": views,
		"Total": total, "Breached": breached, "Database": s.o.Database, "Trend": trend, "TrendErr": trendErr})
}

// trendDays is how far back the trend chart goes.
const trendDays = 30

type series struct {
	View   string
	Points string // SVG polyline points
	Dots   []dot  // the same points as markers (one day draws no line)
	Last   uint64
}

type dot struct {
	X, Y float64
	Day  string
	N    uint64
}

type trendRow struct {
	Day   string
	Cells []uint64 // open rows per view, in Views order
}

type trendData struct {
	Width, Height int
	Views         []string
	Series        []series
	Rows          []trendRow
	Max           uint64
}

// trend charts the open rows per view per day (recon_backlog_history, the sink's daily
// counts) as inline SVG: one polyline per view, with the numbers in a table beside it.
func (s *server) trend(ctx context.Context) (*trendData, error) {
	hist, err := chsink.BacklogHistory(ctx, s.o.Conn, s.o.Database, time.Now().AddDate(0, 0, -trendDays))
	if err != nil {
		return nil, err
	}
	if len(hist) == 0 {
		return nil, nil
	}
	td := &trendData{Width: 720, Height: 200}
	col := map[string]int{}
	for i, v := range chsink.Views {
		td.Views = append(td.Views, v.ID)
		col[v.ID] = i
	}
	byDay := map[string]*trendRow{}
	var days []string
	for _, h := range hist {
		d := h.Day.UTC().Format("2006-01-02")
		r := byDay[d]
		if r == nil {
			r = &trendRow{Day: d, Cells: make([]uint64, len(td.Views))}
			byDay[d] = r
			days = append(days, d)
		}
		if i, ok := col[h.View]; ok {
			r.Cells[i] = h.Rows
			td.Max = max(td.Max, h.Rows)
		}
	}
	sort.Strings(days)
	maxY := float64(max(td.Max, 1))
	const left, top, plotW, plotH = 40.0, 10.0, 660.0, 170.0
	x := func(i int) float64 {
		if len(days) == 1 {
			return left + plotW/2
		}
		return left + float64(i)*plotW/float64(len(days)-1)
	}
	for i, v := range td.Views {
		var pts []string
		var dots []dot
		var last uint64
		for j, d := range days {
			n := byDay[d].Cells[i]
			y := top + plotH - float64(n)/maxY*plotH
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j), y))
			dots = append(dots, dot{X: x(j), Y: y, Day: d, N: n})
			last = n
		}
		td.Series = append(td.Series, series{View: v, Points: strings.Join(pts, " "), Dots: dots, Last: last})
	}
	for _, d := range days {
		td.Rows = append(td.Rows, *byDay[d])
	}
	return td, nil
}

// oldest lists a view's oldest rows with the order each belongs to (every view has order_id).
func (s *server) oldest(ctx context.Context, v chsink.View) ([]viewRow, error) {
	parts := make([]string, 0, 2*len(v.Keys))
	for i, k := range v.Keys {
		if i > 0 {
			parts = append(parts, "' '")
		}
		parts = append(parts, fmt.Sprintf("'%s=', toString(%s)", k, k))
	}
	q := fmt.Sprintf(`SELECT order_id, mismatch_code, concat(%s), toString(business_time), age_bucket, sla_breached
		FROM %s.%s ORDER BY business_time, %s, mismatch_code LIMIT %d`,
		strings.Join(parts, ", "), s.o.Database, v.Name, strings.Join(v.Keys, ", "), s.o.Oldest)
	rows, err := s.o.Conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", v.ID, v.Name, err)
	}
	defer rows.Close()
	var out []viewRow
	for rows.Next() {
		var vr viewRow
		var sla uint8
		if err := rows.Scan(&vr.OrderID, &vr.Code, &vr.Keys, &vr.BusinessTime, &vr.Bucket, &sla); err != nil {
			return nil, fmt.Errorf("%s: %w", v.ID, err)
		}
		vr.Breached = sla == 1
		out = append(out, vr)
	}
	return out, rows.Err()
}

func (s *server) order(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > 200 {
		s.fail(w, http.StatusBadRequest, errors.New("order: ?id=<order id> is required"))
		return
	}
	st, err := chsink.OrderStory(r.Context(), s.o.Conn, s.o.Database, id)
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	found := false
	for _, sec := range st.Sections {
		if len(sec.Rows) > 0 {
			found = true
		}
	}
	s.render(w, "order.html", map[string]any{"Title": "Order " + id, "Story": st, "Found": found})
}

type letter struct {
	Source, Origin, Class, Error, EventID, CorrelationID, SeenAt string
}

func (s *server) letters(ctx context.Context, f Filter, limit int) ([]letter, uint64, error) {
	where := []string{"1"}
	var args []any
	if f.Topic != "" {
		where, args = append(where, "source_topic = ?"), append(args, f.Topic)
	}
	if f.Class != "" {
		where, args = append(where, "error_class = ?"), append(args, f.Class)
	}
	if f.Origin != "" {
		where, args = append(where, "origin = ?"), append(args, f.Origin)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "seen_at >= toDateTime(?)"), append(args, f.Since.UTC().Format("2006-01-02 15:04:05"))
	}
	cond := strings.Join(where, " AND ")
	var n uint64
	if err := s.o.Conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.dead_letters FINAL WHERE %s", s.o.Database, cond), args...).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("dead letters: %w", err)
	}
	rows, err := s.o.Conn.Query(ctx, fmt.Sprintf(`SELECT concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)),
		origin, error_class, error, event_id, correlation_id, toString(seen_at)
		FROM %s.dead_letters FINAL WHERE %s ORDER BY seen_at DESC, source_topic, source_partition, source_offset LIMIT %d`,
		s.o.Database, cond, limit), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("dead letters: %w", err)
	}
	defer rows.Close()
	var out []letter
	for rows.Next() {
		var l letter
		if err := rows.Scan(&l.Source, &l.Origin, &l.Class, &l.Error, &l.EventID, &l.CorrelationID, &l.SeenAt); err != nil {
			return nil, 0, fmt.Errorf("dead letters: %w", err)
		}
		out = append(out, l)
	}
	return out, n, rows.Err()
}

// facets are the values the filter form offers.
func (s *server) facets(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	for _, col := range []string{"source_topic", "error_class", "origin"} {
		rows, err := s.o.Conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT %s FROM %s.dead_letters ORDER BY %s LIMIT 100", col, s.o.Database, col))
		if err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return nil, err
			}
			out[col] = append(out[col], v)
		}
		rows.Close()
	}
	return out, nil
}

func (s *server) dlq(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	ls, n, err := s.letters(r.Context(), f, s.o.DLQLimit)
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	facets, err := s.facets(r.Context())
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	since := ""
	if !f.Since.IsZero() {
		since = f.Since.UTC().Format(time.RFC3339)
	}
	s.render(w, "dlq.html", map[string]any{"Title": "Dead letters", "Filter": f, "Since": since, "Letters": ls, "Count": n,
		"Limit": s.o.DLQLimit, "Facets": facets, "ReplayEnabled": s.o.Replay != nil})
}

var errReplayDisabled = errors.New("replay from the page is disabled (config ui.replay_enabled: false); use `retailflow replay --from-dlq`")

func (s *server) confirmReplay(w http.ResponseWriter, r *http.Request) {
	if s.o.Replay == nil {
		s.fail(w, http.StatusForbidden, errReplayDisabled)
		return
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	f.Origin = "runtime" // only the runtime's dead letters go back to a source topic
	_, n, err := s.letters(r.Context(), f, 1)
	if err != nil {
		s.fail(w, http.StatusBadGateway, err)
		return
	}
	s.render(w, "confirm.html", map[string]any{"Title": "Confirm replay", "Filter": f, "Count": n})
}

func (s *server) replay(w http.ResponseWriter, r *http.Request) {
	if s.o.Replay == nil {
		s.fail(w, http.StatusForbidden, errReplayDisabled)
		return
	}
	// a form posted from another site is refused (the browser sends Origin on POST)
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			s.fail(w, http.StatusForbidden, fmt.Errorf("replay: request from origin %q refused", o))
			return
		}
	}
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		s.fail(w, http.StatusBadRequest, errors.New("replay needs an explicit confirmation: open the replay page and press “Replay now”"))
		return
	}
	f, err := parseFilter(r.PostForm)
	if err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	n, err := s.o.Replay(r.Context(), f)
	if err != nil {
		s.fail(w, http.StatusBadGateway, fmt.Errorf("replay: %w (before the error: %d replayed)", err, n))
		return
	}
	s.render(w, "replayed.html", map[string]any{"Title": "Replayed", "Filter": f, "Replayed": n})
}
