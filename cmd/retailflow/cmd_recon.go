package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
)

// newReconCmd is `retailflow recon`: act on one reconciliation backlog row (acknowledge, resolve,
// reopen) and read its audit trail.
func newReconCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recon",
		Short: "Acknowledge, resolve or reopen a reconciliation backlog row, with a note; show its audit trail",
		Long: `Every open row of a reconciliation view has an owner team (recon.owners in the configuration,
stored by migrate) and a state: OPEN, ACKNOWLEDGED (someone is on it; it stays in the backlog),
RESOLVED (it leaves the backlog: the open_<view> views, recon_backlog, the report, the page and
the backlog gauges exclude it) or REOPENED. Every action is appended, with who, when and the
note, to the audit table recon_actions; nothing is ever deleted.

A row is named by its view (C1…C6, R, or the view's name) and its key: the view's business keys
and the mismatch code joined by '|', as ` + "`retailflow reconcile`" + ` prints it (key=…).`,
		Args: cobra.NoArgs,
	}
	for _, a := range []struct {
		use    string
		action chsink.Action
		short  string
	}{
		{"ack", chsink.Acknowledged, "Acknowledge a backlog row: its owner is on it (it stays in the backlog)"},
		{"resolve", chsink.Resolved, "Resolve a backlog row: it leaves the backlog, the audit table keeps it"},
		{"reopen", chsink.Reopened, "Reopen a resolved row: it is back in the backlog"},
	} {
		cmd.AddCommand(newReconActionCmd(app, a.use, a.action, a.short))
	}
	cmd.AddCommand(newReconHistoryCmd(app))
	return cmd
}

func newReconActionCmd(app *App, use string, action chsink.Action, short string) *cobra.Command {
	var view, key, note, by, format string
	cmd := &cobra.Command{
		Use:   use + ` --view V --key K --note "..." [--by USER]`,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := reconRow(view, key, format)
			if err != nil {
				return err
			}
			switch {
			case strings.TrimSpace(note) == "":
				return &usageError{msg: "recon " + use + ": --note is required (what was done or decided)"}
			case strings.TrimSpace(by) == "":
				return &usageError{msg: "recon " + use + ": --by is required (who acts; $USER is the default and is not set)"}
			}
			ctx := cmd.Context()
			c, conn, err := app.ClickHouse(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			res, err := chsink.RecordAction(ctx, conn, c.ClickHouse.Database, chsink.ActionRequest{View: v, RowKey: key, Action: action, Note: note, Actor: by})
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(app.Stdout).Encode(res)
			}
			prev := res.Previous
			if prev == "" {
				prev = "?"
			}
			where := "stays in the backlog"
			if !res.InBacklog {
				where = "left the backlog (kept in recon_actions)"
			}
			_, err = fmt.Fprintf(app.Stdout, "%s %s (order %s, %s, owner %s): %s → %s by %s at %s; %s\n  note: %s\n",
				v.ID, res.RowKey, res.OrderID, res.Code, res.Owner, prev, res.State, res.Actor, res.ActedAt.Format(time.RFC3339), where, res.Note)
			return err
		},
	}
	cmd.Flags().StringVar(&view, "view", "", "the view: C1…C6, R, or its name (recon_…)")
	cmd.Flags().StringVar(&key, "key", "", "the row key: business keys and mismatch code joined by '|' (as reconcile prints it)")
	cmd.Flags().StringVar(&note, "note", "", "what was done or decided (required)")
	cmd.Flags().StringVar(&by, "by", os.Getenv("USER"), "who acts")
	cmd.Flags().StringVar(&format, "format", "text", "text | json")
	return cmd
}

func newReconHistoryCmd(app *App) *cobra.Command {
	var view, key, format string
	cmd := &cobra.Command{
		Use:   "history --view V --key K",
		Short: "Print the audit trail of a backlog row (every action, who, when, the note)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := reconRow(view, key, format)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, conn, err := app.ClickHouse(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			h, err := chsink.RowHistory(ctx, conn, c.ClickHouse.Database, v, key)
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(app.Stdout).Encode(h)
			}
			fmt.Fprintf(app.Stdout, "%s %s: %d actions\n", v.ID, key, len(h))
			for _, a := range h {
				fmt.Fprintf(app.Stdout, "  %s  %-12s %s: %s\n", a.At.Format(time.RFC3339), a.Action, a.Actor, a.Note)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&view, "view", "", "the view: C1…C6, R, or its name (recon_…)")
	cmd.Flags().StringVar(&key, "key", "", "the row key, as reconcile prints it")
	cmd.Flags().StringVar(&format, "format", "text", "text | json")
	return cmd
}

// reconRow checks the flags that name a row.
func reconRow(view, key, format string) (chsink.View, error) {
	if format != "text" && format != "json" {
		return chsink.View{}, &usageError{msg: fmt.Sprintf("--format %q must be text or json", format)}
	}
	v, ok := chsink.ViewByName(view)
	if !ok {
		var names []string
		for _, v := range chsink.Views {
			names = append(names, v.ID+" ("+v.Name+")")
		}
		return chsink.View{}, &usageError{msg: fmt.Sprintf("--view %q is not a reconciliation view: one of %s", view, strings.Join(names, ", "))}
	}
	if n := strings.Count(key, "|"); key == "" || n != len(v.Keys) {
		return chsink.View{}, &usageError{msg: fmt.Sprintf("--key %q: %s rows are keyed %s|mismatch_code (%d fields joined by '|')",
			key, v.ID, strings.Join(v.Keys, "|"), len(v.Keys)+1)}
	}
	return v, nil
}
