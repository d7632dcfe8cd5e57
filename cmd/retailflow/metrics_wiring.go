package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/ops"
)

// MetricsConfig tunes the metrics `run` and `sink` compute by polling (served on http.addr).
type MetricsConfig struct {
	// LagInterval is how often consumer lag (kadm) of the processor group and the sink group is
	// polled; 0 disables the lag collector.
	LagInterval time.Duration `mapstructure:"lag_interval"`
	// BacklogInterval is how often the sink counts the rows of each reconciliation view and those
	// past their SLA (one count() query per view); 0 disables it.
	BacklogInterval time.Duration `mapstructure:"backlog_interval"`
}

func defaultMetricsConfig() MetricsConfig {
	return MetricsConfig{LagInterval: 15 * time.Second, BacklogInterval: time.Minute}
}

func (m MetricsConfig) validate(bad func(key, format string, args ...any)) {
	if m.LagInterval < 0 {
		bad("metrics.lag_interval", "must not be negative")
	} else if m.LagInterval > 0 && m.LagInterval < time.Second {
		bad("metrics.lag_interval", "%s polls the group coordinator too often (at least 1s)", m.LagInterval)
	}
	if m.BacklogInterval < 0 {
		bad("metrics.backlog_interval", "must not be negative")
	} else if m.BacklogInterval > 0 && m.BacklogInterval < time.Second {
		bad("metrics.backlog_interval", "%s queries ClickHouse too often (at least 1s)", m.BacklogInterval)
	}
}

// kafkaClientMetrics is the kgo option that gives the client named client franz-go's metrics
// (kprom, retailflow_kafka_*{client=…}) in reg. One per kgo.Client: kprom registers its
// collectors when the client is created.
func kafkaClientMetrics(reg prometheus.Registerer, client string) kgo.Opt {
	return kgo.WithHooks(ops.KafkaClientMetrics(reg, client))
}

// startLagCollector registers, in reg, the consumer lag of both retailflow groups (the
// processor's runtime.group and the sink's sink.group) and returns the function that polls it
// until its context ends and then closes its admin client. Both `run` and `sink` serve both
// groups, so the lag of a group whose processes are all down (the processor crash-looping, or
// scaled to zero) is still reported by the other's; dashboards and alerts take max by
// (group, topic, partition). nil when metrics.lag_interval is 0.
func startLagCollector(app *App, c Config, reg prometheus.Registerer) (func(context.Context) error, error) {
	if c.Metrics.LagInterval == 0 {
		return nil, nil
	}
	conn := app.KafkaConn(c)
	cl, err := kgo.NewClient(conn.Options()...)
	if err != nil {
		return nil, fmt.Errorf("lag collector: kafka client: %w", err)
	}
	lc, err := ops.NewLagCollector(kadm.NewClient(cl), ops.LagOptions{
		Groups: []string{c.Runtime.Group, c.Sink.Group}, Interval: c.Metrics.LagInterval,
	})
	if err == nil {
		err = reg.Register(lc)
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return func(ctx context.Context) error {
		defer cl.Close()
		return lc.Run(ctx)
	}, nil
}

// initSinkTables creates the sink's per-table series at 0 for every table it inserts into.
func initSinkTables(m *ops.SinkMetrics) error {
	ts, err := chsink.Tables()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	m.InitTables(names...)
	return nil
}

// startBacklogCollector registers, in reg, the reconciliation backlog gauges (rows and rows past
// SLA per view, counted every metrics.backlog_interval through conn) and returns the function
// that polls until its context ends; nil when metrics.backlog_interval is 0.
func startBacklogCollector(c Config, conn driver.Conn, reg prometheus.Registerer) (func(context.Context) error, error) {
	if c.Metrics.BacklogInterval == 0 {
		return nil, nil
	}
	bc, err := chsink.NewBacklogCollector(conn, c.ClickHouse.Database, c.Metrics.BacklogInterval)
	if err != nil {
		return nil, err
	}
	bc.History = true // the operations page's trend over days
	if err := reg.Register(bc); err != nil {
		return nil, err
	}
	return bc.Run, nil
}
