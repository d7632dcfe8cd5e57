package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/retailflow/retailflow/connectors/dlq"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// newReplayCmd is `retailflow replay --from-dlq`: DLQ records back to their source topic.
func newReplayCmd(app *App) *cobra.Command {
	var (
		fromDLQ bool
		filters []string
		dryRun  bool
		perTxn  int
	)
	cmd := &cobra.Command{
		Use:   "replay --from-dlq [--filter error-class=C|topic=T|since=RFC3339]... [--dry-run]",
		Short: "Re-send dead-lettered records to their source topic after the upstream fix (exactly once)",
		Long: `Reads the DLQ (read_committed, up to its end when the command starts) and re-produces the
ORIGINAL key and value of every selected record to its source topic and partition, with the
headers rf.replay.of (<dlq topic>/<partition>/<offset>) and rf.replay.attempt.
The processor applies the replay, ignores it as a duplicate, or rejects it again (then the new
DLQ record carries those headers).

Each replay is logged, in the same transaction, in the compacted topic <topics.dlq>.replayed
(created on first use), keyed by the DLQ record; a record listed there is never sent again,
whatever filters later runs use. Filters (repeatable; values of one key are alternatives, keys
combine with AND): error-class=CLASS, topic=TOPIC (logical or configured name), since=RFC3339.

Records the ClickHouse sink dead-lettered, records without a key or without a kept value, and
records of non-input topics are reported as unreplayable and not sent.

Output: one JSON line per selected record on stdout (action would-replay, replayed,
already-replayed or unreplayable), a summary on stderr. --dry-run sends nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !fromDLQ {
				return &usageError{msg: "replay: --from-dlq is required (the DLQ is the only replay source)"}
			}
			if perTxn < 1 || perTxn > 10000 {
				return &usageError{msg: fmt.Sprintf("--max-per-txn %d must be between 1 and 10000", perTxn)}
			}
			c, err := app.Config()
			if err != nil {
				return err
			}
			names := c.TopicNames()
			f, err := dlq.ParseFilter(filters, func(name string) (string, error) {
				t, err := c.LogicalTopic(name)
				if err != nil {
					return "", fmt.Errorf("%q is not a retailflow topic", name)
				}
				return names[t], nil
			})
			if err != nil {
				return &usageError{msg: "--filter " + err.Error()}
			}
			ctx := cmd.Context()
			if err := kafka.Ping(ctx, c.KafkaConn()); err != nil {
				return err
			}
			serde, err := c.NewSerde(ctx)
			if err != nil {
				return err
			}
			var sources []string
			for _, t := range schemas.InputTopics {
				sources = append(sources, names[t])
			}
			res, err := dlq.Replay(ctx, dlq.Options{
				Conn: app.KafkaConn(c), DLQ: c.Topics.DLQ, Sources: sources, TransactionalID: c.Runtime.Group + "-replay",
				Serde: serde, Filter: f, DryRun: dryRun, MaxPerTxn: perTxn, ReplicationFactor: c.Topics.ReplicationFactor,
				Out: app.Stdout,
			})
			verb := "replayed"
			if dryRun {
				verb = "would replay"
			}
			summary := fmt.Sprintf("retailflow replay: %s %d of %d selected DLQ records (filter %s; %d read, %d already replayed, %d unreplayable)",
				verb, res.Replayed, res.Selected, f, res.Read, res.AlreadyReplayed, res.Unreplayable)
			if err != nil {
				return fmt.Errorf("%w (before the error: %d replayed)", err, res.Replayed)
			}
			fmt.Fprintln(app.Stderr, summary)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromDLQ, "from-dlq", false, "replay from the DLQ topic (topics.dlq)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "error-class=CLASS | topic=TOPIC | since=RFC3339 (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be replayed, send nothing")
	cmd.Flags().IntVar(&perTxn, "max-per-txn", 500, "replays per transaction")
	return cmd
}
