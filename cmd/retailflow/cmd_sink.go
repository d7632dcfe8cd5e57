package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

func newSinkCmd(app *App) *cobra.Command {
	var noChangelog bool
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Copy the committed topics into ClickHouse (idempotent; its own consumer group)",
		Long: "Reads the five input topics, the loyalty commands, the DLQ and the ledger changelog with\n" +
			"read_committed in consumer group sink.group, and inserts them into the ClickHouse database\n" +
			"(run `retailflow migrate` first). Offsets are committed only after ClickHouse acknowledged the\n" +
			"INSERTs; while ClickHouse is down or refuses inserts for a reason that is not a row's (password,\n" +
			"rights, read-only, disk, missing table) the sink pauses, reports not ready and retries; only a\n" +
			"record whose rows are refused alone while others go in is dead-lettered. Stops on SIGTERM.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// Kafka must answer at start (a wrong address fails within kafka.timeout); ClickHouse
			// may be down: the sink waits that out, as it does for an outage later on.
			c, err := app.Kafka(ctx)
			if err != nil {
				return err
			}
			log := app.Logger(c).With("component", "sink")
			serde, err := c.NewSerde(ctx)
			if err != nil {
				return err
			}
			// Connect, not Open: a ClickHouse outage at start is waited out like one later on
			conn, err := chsink.Connect(c.ClickHouseConn())
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := conn.Ping(ctx); err != nil {
				log.Warn("clickhouse not reachable yet; the sink will retry", "addr", c.ClickHouse.Addr, "err", err)
			}
			reg := prometheus.NewRegistry()
			metrics, err := ops.NewSinkMetrics(reg)
			if err != nil {
				return err
			}
			if err := initSinkTables(metrics); err != nil {
				return err
			}
			// not ready while ClickHouse refuses inserts for an environment reason (the sink sets it)
			ready := &ops.Readiness{}
			ready.SetReady()
			s, err := chsink.NewSink(chsink.SinkOptions{
				// Static membership keyed by the instance id (the pod ordinal, unique per live
				// process like the runtime's transactional id): a restarted sink takes its
				// partitions back at once instead of waiting for the dead member's session to end.
				Kafka: append(app.KafkaConn(c).Options(), kgo.SessionTimeout(c.Runtime.SessionTimeout), kgo.HeartbeatInterval(c.Runtime.HeartbeatInterval),
					kgo.InstanceID(c.Sink.Group+"-"+c.Runtime.InstanceID), kafkaClientMetrics(reg, "sink")), Group: c.Sink.Group, Topics: c.TopicNames(), Serde: serde,
				Conn: conn, Database: c.ClickHouse.Database, Changelog: !noChangelog,
				BatchRows: c.Sink.BatchRows, BatchTimeout: c.Sink.BatchTimeout, MaxRetryWait: c.Sink.MaxRetryWait,
				MaxBufferBytes: c.Sink.MaxBufferBytes, Logger: log, Metrics: metrics, Ready: ready,
				DeadLetterValues: chsink.DeadLetterValues(c.Sink.DeadLetterValues),
			})
			if err != nil {
				return err
			}
			var lag, backlog func(context.Context) error
			if c.HTTP.Addr != "" {
				if lag, err = startLagCollector(app, c, reg); err != nil {
					return err
				}
				if backlog, err = startBacklogCollector(c, conn, reg); err != nil {
					return err
				}
			}
			g, gctx := errgroup.WithContext(ctx)
			if c.HTTP.Addr != "" {
				srv := ops.NewServer(c.HTTP.Addr, reg, ready.Check)
				g.Go(func() error { return srv.Run(gctx) })
				for _, poll := range []func(context.Context) error{lag, backlog} {
					if poll != nil {
						g.Go(func() error { return poll(gctx) })
					}
				}
			}
			g.Go(func() error {
				log.Info("sink starting", "group", c.Sink.Group, "database", c.ClickHouse.Database)
				if err := s.Run(gctx); err != nil {
					return fmt.Errorf("sink: %w", err)
				}
				return errors.New("sink stopped") // stops the HTTP server too
			})
			if err := g.Wait(); err != nil && ctx.Err() == nil {
				return err
			}
			log.Info("sink stopped")
			return nil
		},
	}
	cmd.Flags().BoolVar(&noChangelog, "no-changelog", false, "do not read the ledger changelog (order_state, order_line_state)")
	return cmd
}
