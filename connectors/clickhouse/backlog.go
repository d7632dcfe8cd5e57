package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

// BacklogCount is one reconciliation view's open rows and those past their SLA.
type BacklogCount struct {
	Rows, SLABreached uint64
}

// CountBacklog counts the open rows of view v and those past its SLA: one count() query.
func CountBacklog(ctx context.Context, conn driver.Conn, db string, v View) (BacklogCount, error) {
	if !dbNameRE.MatchString(db) {
		return BacklogCount{}, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	var c BacklogCount
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(), toUInt64(sum(sla_breached)) FROM %s.%s`, db, v.Name)).Scan(&c.Rows, &c.SLABreached)
	if err != nil {
		return BacklogCount{}, fmt.Errorf("backlog of %s (%s): %w", v.ID, v.Name, err)
	}
	return c, nil
}

// BacklogCollector exports the reconciliation backlog as Prometheus gauges, so an alert can fire
// on rows past their SLA without an analyst running `retailflow reconcile`:
//
//	retailflow_recon_backlog_rows{view,name}                 open rows of the view
//	retailflow_recon_sla_breached_rows{view,name}            of which past the view's SLA
//	retailflow_recon_backlog_poll_errors_total
//	retailflow_recon_backlog_last_success_timestamp_seconds
//
// It runs one count() query per view every interval (bounded cost: six queries per interval,
// whatever the traffic) and Collect serves the last successful poll. The values are
// database-wide: every sink replica reports the same, so aggregate with max by (view).
type BacklogCollector struct {
	// History also records each successful count in recon_backlog_history (the day's last
	// count per view wins), the trend the operations page charts. Set it before Run.
	History bool

	conn     driver.Conn
	db       string
	interval time.Duration
	timeout  time.Duration

	descRows, descBreached, descErrors, descLastOK *prometheus.Desc

	mu     sync.Mutex
	counts map[string]BacklogCount // view id → last successful count
	errs   float64
	lastOK time.Time
}

// NewBacklogCollector polls db's reconciliation views through conn every interval (> 0).
func NewBacklogCollector(conn driver.Conn, db string, interval time.Duration) (*BacklogCollector, error) {
	if conn == nil {
		return nil, errors.New("clickhouse: backlog collector: nil connection")
	}
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: backlog collector: database name %q is invalid", db)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("clickhouse: backlog collector: interval %s must be positive", interval)
	}
	labels := []string{"view", "name"}
	return &BacklogCollector{
		conn: conn, db: db, interval: interval, timeout: backlogPollTimeout(interval),
		descRows: prometheus.NewDesc("retailflow_recon_backlog_rows",
			"Open rows of a reconciliation view at the last successful poll.", labels, nil),
		descBreached: prometheus.NewDesc("retailflow_recon_sla_breached_rows",
			"Open rows of a reconciliation view past the view's SLA (sla_breached = 1) at the last successful poll.", labels, nil),
		descErrors: prometheus.NewDesc("retailflow_recon_backlog_poll_errors_total",
			"Backlog polls that failed; the gauges keep the last successful values.", nil, nil),
		descLastOK: prometheus.NewDesc("retailflow_recon_backlog_last_success_timestamp_seconds",
			"Unix time of the last successful backlog poll; alert when it stops advancing.", nil, nil),
		counts: map[string]BacklogCount{},
	}, nil
}

// backlogPollTimeout bounds one poll: the interval, but never under 10 s (a short interval must
// not fail every poll on a busy server: seven counts took 0.4–1.5 s each at load 25) nor over
// 30 s. A poll that outlasts the interval delays the next one; it never overlaps it.
func backlogPollTimeout(interval time.Duration) time.Duration {
	return min(max(interval, 10*time.Second), 30*time.Second)
}

// Poll counts every view once. A poll replaces the counts only when every view answered, so
// the gauges never mix two moments; a failure is counted and returned.
func (c *BacklogCollector) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	fresh := map[string]BacklogCount{}
	for _, v := range Views {
		n, err := CountBacklog(ctx, c.conn, c.db, v)
		if err != nil {
			c.mu.Lock()
			c.errs++
			c.mu.Unlock()
			return err
		}
		fresh[v.ID] = n
	}
	now := time.Now()
	c.mu.Lock()
	c.counts, c.lastOK = fresh, now
	c.mu.Unlock()
	if c.History {
		if err := c.record(ctx, now, fresh); err != nil {
			c.mu.Lock()
			c.errs++
			c.mu.Unlock()
			return err
		}
	}
	return nil
}

// record inserts one count per view into recon_backlog_history.
func (c *BacklogCollector) record(ctx context.Context, at time.Time, counts map[string]BacklogCount) error {
	b, err := c.conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.recon_backlog_history (day, view, counted_at, open_rows, sla_breached)", c.db))
	if err != nil {
		return fmt.Errorf("backlog history: %w", err)
	}
	day := time.Date(at.UTC().Year(), at.UTC().Month(), at.UTC().Day(), 0, 0, 0, 0, time.UTC)
	for _, v := range Views {
		n := counts[v.ID]
		if err := b.Append(day, v.ID, at.UTC().Truncate(time.Second), n.Rows, n.SLABreached); err != nil {
			_ = b.Abort()
			return fmt.Errorf("backlog history: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("backlog history: %w", err)
	}
	return nil
}

// BacklogDay is one day's last count of one view (recon_backlog_history).
type BacklogDay struct {
	Day               time.Time
	View              string
	Rows, SLABreached uint64
}

// BacklogHistory reads the last count of each view per day for the days since since.
func BacklogHistory(ctx context.Context, conn driver.Conn, db string, since time.Time) ([]BacklogDay, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT day, view, argMax(open_rows, counted_at), argMax(sla_breached, counted_at)
		FROM %s.recon_backlog_history WHERE day >= toDate(?) GROUP BY day, view ORDER BY day, view`, db), since.UTC().Format("2006-01-02"))
	if err != nil {
		return nil, fmt.Errorf("backlog history: %w", err)
	}
	defer rows.Close()
	var out []BacklogDay
	for rows.Next() {
		var d BacklogDay
		if err := rows.Scan(&d.Day, &d.View, &d.Rows, &d.SLABreached); err != nil {
			return nil, fmt.Errorf("backlog history: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Run polls at once and then every interval until ctx ends; it returns nil then. Failed polls
// are counted, not fatal: ClickHouse being down is the sink's own business.
func (c *BacklogCollector) Run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		_ = c.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descRows
	ch <- c.descBreached
	ch <- c.descErrors
	ch <- c.descLastOK
}

// Collect implements prometheus.Collector: the last successful poll, never a query.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.descErrors, prometheus.CounterValue, c.errs)
	if c.lastOK.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.descLastOK, prometheus.GaugeValue, float64(c.lastOK.UnixNano())/1e9)
	for _, v := range Views {
		n := c.counts[v.ID]
		ch <- prometheus.MustNewConstMetric(c.descRows, prometheus.GaugeValue, float64(n.Rows), v.ID, v.Name)
		ch <- prometheus.MustNewConstMetric(c.descBreached, prometheus.GaugeValue, float64(n.SLABreached), v.ID, v.Name)
	}
}
