package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// LagOptions configure a LagCollector.
type LagOptions struct {
	// Groups are the consumer groups to watch (runtime.group, sink.group); at least one.
	Groups []string
	// Topics restricts the samples to these topics; empty means every topic a group has
	// committed offsets for or is assigned.
	Topics []string
	// Interval between polls; 0 means 15 s (a Prometheus scrape interval: polling faster
	// only loads the group coordinator).
	Interval time.Duration
	// Timeout of one poll (describe groups, fetch offsets, list end offsets); 0 means
	// min(Interval, 10 s).
	Timeout time.Duration
}

// LagCollector measures consumer lag per group, topic and partition as end offset (high
// watermark) − committed offset, with kadm, and exposes the last successful poll as Prometheus
// gauges. franz-go's kprom has no lag metric: lag is a property of the group, not of a client.
//
// On transactional topics (every topic the processor writes, and so everything the sink reads)
// the last offset of a partition is a transaction commit marker, which consumers never see and
// never commit past: a fully caught-up group shows lag 1 per partition, not 0. Alerts and the
// KEDA lag threshold must allow that (threshold > 1 per partition).
//
// Exposed series (group-scoped, so run one collector per group, or point every replica's
// scrape at one of them and aggregate with max, not sum):
//
//	retailflow_consumer_lag{group,topic,partition}
//	retailflow_consumer_group_lag{group}                      sum over partitions
//	retailflow_consumer_lag_poll_errors_total{group}
//	retailflow_consumer_lag_last_success_timestamp_seconds{group}
//
// Collect is safe concurrently with Poll and Run.
type LagCollector struct {
	adm  *kadm.Client
	opts LagOptions

	descLag, descGroupLag, descErrors, descLastOK *prometheus.Desc

	mu      sync.Mutex
	samples map[string][]lagSample // group → last successful poll
	errs    map[string]float64     // group → poll errors so far
	lastOK  map[string]time.Time   // group → time of the last successful poll
}

type lagSample struct {
	topic     string
	partition int32
	lag       int64
}

// NewLagCollector validates o and builds a collector that polls through adm. Register it in a
// registry and start Run.
func NewLagCollector(adm *kadm.Client, o LagOptions) (*LagCollector, error) {
	if adm == nil {
		return nil, errors.New("ops: lag collector: nil kadm client")
	}
	if len(o.Groups) == 0 {
		return nil, errors.New("ops: lag collector: no consumer group to watch")
	}
	for _, g := range o.Groups {
		if g == "" {
			return nil, errors.New("ops: lag collector: empty consumer group name")
		}
	}
	if o.Interval < 0 || o.Timeout < 0 {
		return nil, fmt.Errorf("ops: lag collector: negative interval %s or timeout %s", o.Interval, o.Timeout)
	}
	if o.Interval == 0 {
		o.Interval = 15 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = min(o.Interval, 10*time.Second)
	}
	o.Groups = slices.Clone(o.Groups)
	o.Topics = slices.Clone(o.Topics)
	return &LagCollector{
		adm:  adm,
		opts: o,
		descLag: prometheus.NewDesc(Namespace+"_consumer_lag",
			"End offset minus committed offset of one partition at the last successful poll; 1 on a caught-up transactional topic (the commit marker).",
			[]string{"group", "topic", "partition"}, nil),
		descGroupLag: prometheus.NewDesc(Namespace+"_consumer_group_lag",
			"Sum of retailflow_consumer_lag over a group's partitions (caught up on transactional topics = number of partitions).",
			[]string{"group"}, nil),
		descErrors: prometheus.NewDesc(Namespace+"_consumer_lag_poll_errors_total",
			"Lag polls that failed; the gauges keep the last successful values.",
			[]string{"group"}, nil),
		descLastOK: prometheus.NewDesc(Namespace+"_consumer_lag_last_success_timestamp_seconds",
			"Unix time of the last successful lag poll; alert when it stops advancing.",
			[]string{"group"}, nil),
		samples: map[string][]lagSample{},
		errs:    map[string]float64{},
		lastOK:  map[string]time.Time{},
	}, nil
}

// Run polls once at once and then every Interval until ctx is cancelled, and returns nil then.
// A failed poll is counted (retailflow_consumer_lag_poll_errors_total) and does not stop it:
// lag is advisory and the broker may be briefly unavailable.
func (c *LagCollector) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		_ = c.Poll(ctx) // counted in the metrics; see Run's contract
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll measures every group once, bounded by the poll timeout, and replaces the samples of the
// groups that succeeded. It returns the errors of the groups that failed (also counted).
func (c *LagCollector) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	lags, err := c.adm.Lag(ctx, c.opts.Groups...)
	now := time.Now()
	var errs []error
	fresh := map[string][]lagSample{}
	for _, g := range c.opts.Groups {
		if err != nil {
			errs = append(errs, fmt.Errorf("ops: lag of group %s: %w", g, err))
			continue
		}
		l, ok := lags[g]
		if !ok {
			errs = append(errs, fmt.Errorf("ops: lag of group %s: missing from the response", g))
			continue
		}
		if gerr := l.Error(); gerr != nil {
			errs = append(errs, fmt.Errorf("ops: lag of group %s: %w", g, gerr))
			continue
		}
		samples, perr := c.samplesOf(l.Lag)
		if perr != nil {
			errs = append(errs, fmt.Errorf("ops: lag of group %s: %w", g, perr))
			continue
		}
		fresh[g] = samples
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.opts.Groups {
		if s, ok := fresh[g]; ok {
			c.samples[g] = s
			c.lastOK[g] = now
		} else {
			c.errs[g]++
		}
	}
	return errors.Join(errs...)
}

// samplesOf keeps the configured topics and fails on the first partition whose commit or end
// offset could not be read (a partial picture would under-report lag).
func (c *LagCollector) samplesOf(gl kadm.GroupLag) ([]lagSample, error) {
	var out []lagSample
	for _, m := range gl.Sorted() {
		if len(c.opts.Topics) > 0 && !slices.Contains(c.opts.Topics, m.Topic) {
			continue
		}
		if m.Err != nil {
			return nil, fmt.Errorf("topic %s partition %d: %w", m.Topic, m.Partition, m.Err)
		}
		out = append(out, lagSample{topic: m.Topic, partition: m.Partition, lag: m.Lag})
	}
	return out, nil
}

// Lag returns the last successfully polled lag of group's topic and partition.
func (c *LagCollector) Lag(group, topic string, partition int32) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.samples[group] {
		if s.topic == topic && s.partition == partition {
			return s.lag, true
		}
	}
	return 0, false
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descLag
	ch <- c.descGroupLag
	ch <- c.descErrors
	ch <- c.descLastOK
}

// Collect implements prometheus.Collector: it reports the last successful poll, never polls.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	groups := slices.Clone(c.opts.Groups)
	sort.Strings(groups)
	for _, g := range groups {
		ch <- prometheus.MustNewConstMetric(c.descErrors, prometheus.CounterValue, c.errs[g], g)
		at, ok := c.lastOK[g]
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.descLastOK, prometheus.GaugeValue, float64(at.UnixNano())/1e9, g)
		var sum int64
		for _, s := range c.samples[g] {
			sum += s.lag
			ch <- prometheus.MustNewConstMetric(c.descLag, prometheus.GaugeValue, float64(s.lag), g, s.topic, partLabel(s.partition))
		}
		ch <- prometheus.MustNewConstMetric(c.descGroupLag, prometheus.GaugeValue, float64(sum), g)
	}
}
