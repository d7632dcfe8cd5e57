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
		Password: c.ClickHouse.Password, TLS: c.ClickHouseTLS(), DialTimeout: c.ClickHouse.DialTimeout, InDatabase: true,
		Cluster: c.ClickHouse.Cluster}
}

// ReconSettings maps the recon section, and the policy's amount tolerance, onto what migrate
// stores in recon_config.
//
// The tolerance is policy.amount_tolerance, the one key the ledger (its BILLED_AMOUNT_DIFF
// exception) and the views (C6 AMOUNT_DIFF) both read: an allowance per rounded ERP document
// line (DOMAIN B.3: ½ minor unit per rounded line), multiplied by the lines behind a net.
func (c Config) ReconSettings() (chsink.ReconSettings, error) {
	tol, err := c.AmountTolerance()
	if err != nil {
		return chsink.ReconSettings{}, err
	}
	r := c.Recon
	return chsink.ReconSettings{Grace: r.Grace, ErpSLA: r.ErpSLA, InvoiceSLA: r.InvoiceSLA, RedemptionSLA: r.RedemptionSLA,
		ReturnSLA: r.ReturnSLA, AccrualSLA: r.AccrualSLA, ThreeWaySLA: r.ThreeWaySLA, AmountTolerance: tol, Owners: r.Owners.owners()}, nil
}

// AmountTolerance is policy.amount_tolerance parsed, exactly as LedgerPolicy reads it.
func (c Config) AmountTolerance() (decimal.Decimal, error) {
	const key = "policy.amount_tolerance"
	tol, err := decimal.NewFromString(c.Policy.AmountTolerance)
	if err != nil {
		return tol, &ConfigError{Key: key, Problem: fmt.Sprintf("%q is not a decimal", c.Policy.AmountTolerance)}
	}
	if tol.IsNegative() {
		return tol, &ConfigError{Key: key, Problem: fmt.Sprintf("%s must not be negative", tol)}
	}
	return tol, nil
}

// checkToleranceFlag accepts the deprecated --amount-tolerance only when it states what the
// configuration already says: two sources for one setting are how the ledger (0.005) and the
// views (0.01) came to disagree.
func checkToleranceFlag(flag string, configured decimal.Decimal) error {
	tol, err := decimal.NewFromString(flag)
	if err != nil || tol.IsNegative() {
		return &usageError{msg: fmt.Sprintf("--amount-tolerance %q must be a non-negative decimal", flag)}
	}
	if !tol.Equal(configured) {
		return &usageError{msg: fmt.Sprintf("--amount-tolerance %s disagrees with policy.amount_tolerance %s from the configuration: "+
			"the ledger and the views read one tolerance; set policy.amount_tolerance (RETAILFLOW_POLICY_AMOUNT_TOLERANCE) and drop the flag",
			tol, configured)}
	}
	return nil
}

func newMigrateCmd(app *App) *cobra.Command {
	var tolerance string
	var printDDL bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse database (versioned, idempotent) and store the recon SLAs",
		Long: "Applies every embedded migration not yet recorded in <database>.schema_migrations, in order, and\n" +
			"writes the recon section (grace, SLAs) and policy.amount_tolerance into recon_config, which the\n" +
			"views read when queried (the ledger reads the same key). Running it twice is a no-op.\n" +
			"--print-ddl prints the full DDL and exits.",
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
			recon, err := c.ReconSettings()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("amount-tolerance") {
				if err := checkToleranceFlag(tolerance, recon.AmountTolerance); err != nil {
					return err
				}
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
			var res chsink.MigrateResult
			if c.ClickHouse.Cluster != "" {
				res, err = chsink.MigrateCluster(ctx, chsink.NativeSession(conn), c.ClickHouse.Database, c.ClickHouse.Cluster, recon)
			} else {
				res, err = chsink.Migrate(ctx, conn, c.ClickHouse.Database, recon)
			}
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
					fmt.Fprintf(app.Stdout, "database %s: recon settings stored (grace %s, amount tolerance %s)\n", c.ClickHouse.Database, c.Recon.Grace, recon.AmountTolerance)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tolerance, "amount-tolerance", "",
		"deprecated: policy.amount_tolerance is the one source; accepted only when equal to it")
	cmd.Flags().BoolVar(&printDDL, "print-ddl", false, "print the DDL the migrations run and exit")
	return cmd
}
