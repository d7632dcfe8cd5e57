package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
)

// newDLQCmd is `retailflow dlq`: housekeeping of the dead letters in ClickHouse.
func newDLQCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Housekeeping of the dead_letters table (retention)",
		Args:  cobra.NoArgs,
	}
	var olderThan string
	var dryRun bool
	purge := &cobra.Command{
		Use:   "purge --older-than 90d",
		Short: "Drop the months of dead_letters that ended before now - --older-than (18.16 has no TTL)",
		Long: "dead_letters is partitioned by the month its rows were first seen. purge drops every month that\n" +
			"ended at least --older-than ago (30d, 2160h, …), so nothing younger is removed and a row stays at most\n" +
			"a month beyond it. Run it from cron as a user allowed DDL (the migrate user). The DLQ topic keeps\n" +
			"its own retention (topics.retention_hours). --dry-run lists what would go.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			age, err := parseAge(olderThan)
			if err != nil {
				return &usageError{msg: fmt.Sprintf("--older-than %q: %v", olderThan, err)}
			}
			ctx := cmd.Context()
			c, conn, err := app.ClickHouse(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			cutoff := time.Now().UTC().Add(-age)
			months, err := chsink.PurgeDeadLetters(ctx, conn, c.ClickHouse.Database, cutoff, dryRun)
			for _, m := range months {
				verb := "kept"
				switch {
				case m.Dropped:
					verb = "dropped"
				case m.Expired:
					verb = "would drop"
				}
				fmt.Fprintf(app.Stdout, "%s %s.dead_letters month %s (%d rows)\n", verb, c.ClickHouse.Database, m.Month, m.Rows)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(app.Stdout, "cutoff %s: %d month(s) of dead letters\n", cutoff.Format(time.RFC3339), len(months))
			return nil
		},
	}
	purge.Flags().StringVar(&olderThan, "older-than", "", "age of the dead letters to drop: 90d, 2160h (required)")
	purge.Flags().BoolVar(&dryRun, "dry-run", false, "list the months, drop nothing")
	_ = purge.MarkFlagRequired("older-than")
	cmd.AddCommand(purge)
	return cmd
}

// parseAge reads a positive age: a number of days ("90d") or a Go duration ("2160h").
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("not a number of days")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("not 90d or a duration like 2160h")
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}
