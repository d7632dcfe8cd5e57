package main

import (
	"fmt"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/spf13/cobra"
)

func newReconcileCmd(app *App) *cobra.Command {
	var orderID, format string
	var top int
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Reconciliation report: per view, counts by mismatch code and age, and the oldest rows",
		Long: "Queries the reconciliation views C1–C6 and the refund settlement check (refunds vs ERP credit\n" +
			"memos) in ClickHouse: rows per mismatch code and age bucket, and the oldest rows. --order ID\n" +
			"prints one order's full story\n" +
			"instead: lines, shipments, returns, invoices, points requested vs posted, the audit trail of\n" +
			"every point and money movement, the ledger state and the order's open view rows.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return &usageError{msg: fmt.Sprintf("--format %q must be text or json", format)}
			}
			if top < 1 {
				return &usageError{msg: "--top must be at least 1"}
			}
			ctx := cmd.Context()
			c, conn, err := app.ClickHouse(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if orderID != "" {
				s, err := chsink.OrderStory(ctx, conn, c.ClickHouse.Database, orderID)
				if err != nil {
					return err
				}
				if format == "json" {
					return s.WriteJSON(app.Stdout)
				}
				return s.WriteText(app.Stdout)
			}
			r, err := chsink.BuildReport(ctx, conn, c.ClickHouse.Database, top)
			if err != nil {
				return err
			}
			if format == "json" {
				return r.WriteJSON(app.Stdout)
			}
			return r.WriteText(app.Stdout)
		},
	}
	cmd.Flags().StringVar(&orderID, "order", "", "print this order's full story")
	cmd.Flags().StringVar(&format, "format", "text", "text | json")
	cmd.Flags().IntVar(&top, "top", 10, "oldest rows shown per view")
	return cmd
}
