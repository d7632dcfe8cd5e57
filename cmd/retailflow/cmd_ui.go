package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/dlq"
	"github.com/retailflow/retailflow/connectors/ops/ui"
	"github.com/retailflow/retailflow/schemas"
)

// UIConfig is `retailflow ui`, the read-only operations page.
type UIConfig struct {
	// Addr is where the page listens (host:port); loopback by default: put an authenticating
	// proxy in front of it before exposing it.
	Addr string `mapstructure:"addr"`
	// ClickHouseUsername / ClickHousePassword: the read-only ClickHouse user the page reads as
	// (RETAILFLOW_UI_CLICKHOUSE_PASSWORD, or a file: ui.clickhouse_password_file); empty uses
	// clickhouse.username.
	ClickHouseUsername     string `mapstructure:"clickhouse_username"`
	ClickHousePassword     string `mapstructure:"clickhouse_password"`
	ClickHousePasswordFile string `mapstructure:"clickhouse_password_file"`
	// ReplayEnabled offers replaying dead letters from the page (after a confirmation page).
	ReplayEnabled bool `mapstructure:"replay_enabled"`
}

func defaultUIConfig() UIConfig { return UIConfig{Addr: "127.0.0.1:8088"} }

func (u UIConfig) validate(bad func(key, format string, args ...any)) {
	if _, _, err := net.SplitHostPort(u.Addr); err != nil {
		bad("ui.addr", "%q is not host:port", u.Addr)
	}
}

// UIClickHouseConn is the ClickHouse connection the page reads with: ui.clickhouse_username
// when set (the read-only user), else the clickhouse section's.
func (c Config) UIClickHouseConn() chsink.Conn {
	conn := c.ClickHouseConn()
	if c.UI.ClickHouseUsername != "" {
		conn.Username, conn.Password = c.UI.ClickHouseUsername, c.UI.ClickHousePassword
	}
	return conn
}

// UIHandler builds the page from the configuration; replay is wired only when enabled.
func (a *App) UIHandler(ctx context.Context, c Config) (http.Handler, func(), error) {
	conn, err := chsink.Open(ctx, c.UIClickHouseConn())
	if err != nil {
		return nil, nil, err
	}
	o := ui.Options{Conn: conn, Database: c.ClickHouse.Database}
	if c.UI.ReplayEnabled {
		serde, err := c.NewSerde(ctx)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		names := c.TopicNames()
		var sources []string
		for _, t := range schemas.InputTopics {
			sources = append(sources, names[t])
		}
		log := a.Logger(c).With("component", "ui")
		o.Replay = func(ctx context.Context, f ui.Filter) (int, error) {
			df := dlq.Filter{Since: f.Since}
			if f.Class != "" {
				df.Classes = []string{f.Class}
			}
			if f.Topic != "" {
				df.Topics = []string{f.Topic}
			}
			res, err := dlq.Replay(ctx, dlq.Options{
				Conn: a.KafkaConn(c), DLQ: c.Topics.DLQ, Sources: sources, TransactionalID: c.Runtime.Group + "-replay",
				Serde: serde, Filter: df, ReplicationFactor: c.Topics.ReplicationFactor,
			})
			log.Info("replay from the page", "filter", df.String(), "replayed", res.Replayed, "selected", res.Selected,
				"already_replayed", res.AlreadyReplayed, "unreplayable", res.Unreplayable, "err", err)
			return res.Replayed, err
		}
	}
	h, err := ui.New(o)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return h, func() { conn.Close() }, nil
}

func newUICmd(app *App) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the read-only operations page (backlog, order stories, dead letters) from ClickHouse",
		Long: `ui serves a web page on ui.addr (default 127.0.0.1:8088) that reads ClickHouse, as
ui.clickhouse_username when set (give it a read-only user): the reconciliation backlog per view
by ageing bucket with SLA breaches, each row's order story and audit trail, and the dead letters
with filters. With ui.replay_enabled the dead-letter page offers a replay, which asks for an
explicit confirmation first. Nothing is loaded from the internet. Stops on SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr != "" {
				app.overrides["ui.addr"] = addr
			}
			c, err := app.Config()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			h, closeConn, err := app.UIHandler(ctx, c)
			if err != nil {
				return err
			}
			defer closeConn()
			l, err := net.Listen("tcp", c.UI.Addr)
			if err != nil {
				return fmt.Errorf("ui: %w", err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(app.Stderr, "retailflow ui: http://%s/ (database %s)\n", l.Addr(), c.ClickHouse.Database)
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("ui: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "listen address host:port (ui.addr)")
	return cmd
}
