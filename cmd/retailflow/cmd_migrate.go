package main

import (
	"fmt"
	"strings"
	"time"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"
)

// ClickHouseConn maps the clickhouse section onto the connector's options. Sessions start in
// the database (users limited to it by <allow_databases> log in there); migrate, which may have
// to create it, starts in "default".
func (c Config) ClickHouseConn() chsink.Conn {
	return chsink.Conn{Addr: c.ClickHouse.Addr, Database: c.ClickHouse.Database, Username: c.ClickHouse.Username,
		Password: c.ClickHouse.Password, TLS: c.ClickHouseTLS(), DialTimeout: c.ClickHouse.DialTimeout, InDatabase: true}
}

// ReconSettings maps the recon section (and the C6 amount tolerance) onto what migrate stores.
func (c Config) ReconSettings(tolerance decimal.Decimal) chsink.ReconSettings {
	r := c.Recon
	return chsink.ReconSettings{Grace: r.Grace, ErpSLA: r.ErpSLA, InvoiceSLA: r.InvoiceSLA, RedemptionSLA: r.RedemptionSLA,
		ReturnSLA: r.ReturnSLA, AccrualSLA: r.AccrualSLA, ThreeWaySLA: r.ThreeWaySLA, AmountTolerance: tolerance}
}

func newMigrateCmd(app *App) *cobra.Command {
	var tolerance string
	var printDDL bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse database (versioned, idempotent) and store the recon SLAs",
		Long: "Applies every embedded migration not yet recorded in <database>.schema_migrations, in order, and\n" +
			"writes the recon section (grace, SLAs) and --amount-tolerance into recon_config, which the views\n" +
			"read when queried. Running it twice is a no-op. --print-ddl prints the full DDL and exits.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Config()
			if err != nil {
				return err
			}
			if printDDL {
				ddl, err := chsink.DDL(c.ClickHouse.Database)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(app.Stdout, ddl)
				return err
			}
			tol, err := decimal.NewFromString(tolerance)
			if err != nil || tol.IsNegative() {
				return &usageError{msg: fmt.Sprintf("--amount-tolerance %q must be a non-negative decimal", tolerance)}
			}
			ctx := cmd.Context()
			cc := c.ClickHouseConn()
			cc.InDatabase = false // the database may not exist yet
			conn, err := chsink.Open(ctx, cc)
			if err != nil {
				return err
			}
			defer conn.Close()
			start := time.Now()
			res, err := chsink.Migrate(ctx, conn, c.ClickHouse.Database, c.ReconSettings(tol))
			if err != nil {
				// name who tried where: a read-only or mistyped user is the usual cause
				return fmt.Errorf("migrate %s as user %s on %s: %w", c.ClickHouse.Database, c.ClickHouse.Username, c.ClickHouse.Addr, err)
			}
			feats := "none"
			if n := res.Features.Names(); len(n) > 0 {
				feats = strings.Join(n, ", ")
			}
			fmt.Fprintf(app.Stdout, "clickhouse %s on %s: features enabled: %s\n", res.ServerVersion, c.ClickHouse.Addr, feats)
			switch {
			case res.AlreadyLatest:
				fmt.Fprintf(app.Stdout, "database %s is up to date (nothing applied)\n", c.ClickHouse.Database)
			default:
				if len(res.Applied) > 0 {
					fmt.Fprintf(app.Stdout, "database %s: applied %s in %s\n", c.ClickHouse.Database, strings.Join(res.Applied, ", "), time.Since(start).Round(time.Millisecond))
				}
				if res.ViewsUpdated {
					fmt.Fprintf(app.Stdout, "database %s: views (re)created\n", c.ClickHouse.Database)
				}
				if res.ReconUpdated {
					fmt.Fprintf(app.Stdout, "database %s: recon settings stored (grace %s, amount tolerance %s)\n", c.ClickHouse.Database, c.Recon.Grace, tol)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tolerance, "amount-tolerance", "0.01", "C6 AMOUNT_DIFF when |ERP net billed − OMS net value| exceeds this (currency units)")
	cmd.Flags().BoolVar(&printDDL, "print-ddl", false, "print the DDL the migrations run and exit")
	return cmd
}
