// Command retailflow runs the retailflow pipeline and its tools: the exactly-once processor
// (run), the ClickHouse sink (sink), migrations, topic administration, JSON ↔ Avro produce and
// consume, DLQ replay, the reconciliation report, the traffic generator and the demo.
//
// Exit codes: 0 success (and after a graceful SIGTERM), 1 an error (one line on stderr, no stack
// trace), 2 a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/cobra"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// App is what every subcommand receives: the loaded configuration and the process's I/O.
// Subcommands get the configuration through Config, which loads and validates it once.
type App struct {
	configFile string
	overrides  map[string]any
	cfg        *Config
	Stdout     io.Writer
	Stderr     io.Writer
	Stdin      io.Reader
}

// Config loads, validates and caches the configuration.
func (a *App) Config() (Config, error) {
	if a.cfg != nil {
		return *a.cfg, nil
	}
	c, err := LoadConfig(a.configFile, a.overrides)
	if err != nil {
		return Config{}, err
	}
	a.cfg = &c
	return c, nil
}

// Kafka loads the configuration and checks that Kafka answers as configured (kafka.Ping: a
// wrong address, password or certificate fails here, named, in one line).
func (a *App) Kafka(ctx context.Context) (Config, error) {
	c, err := a.Config()
	if err != nil {
		return Config{}, err
	}
	if err := kafka.Ping(ctx, c.KafkaConn()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ClickHouse loads the configuration and opens the configured ClickHouse database
// (clickhouse.*), checked with a ping; the caller closes the connection.
func (a *App) ClickHouse(ctx context.Context) (Config, driver.Conn, error) {
	c, err := a.Config()
	if err != nil {
		return Config{}, nil, err
	}
	conn, err := chsink.Open(ctx, c.ClickHouseConn())
	if err != nil {
		return Config{}, nil, err
	}
	return c, conn, nil
}

// Topic loads the configuration and resolves a --topic value (logical or configured name).
func (a *App) Topic(name string) (Config, schemas.Topic, error) {
	c, err := a.Config()
	if err != nil {
		return Config{}, "", err
	}
	t, err := c.LogicalTopic(name)
	if err != nil {
		return Config{}, "", err
	}
	return c, t, nil
}

// Logger builds the structured logger the configuration asks for.
func (a *App) Logger(c Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(a.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(a.Stderr, opts))
}

func newRootCmd(app *App) *cobra.Command {
	root := &cobra.Command{
		Use:           "retailflow",
		Short:         "Keeps an OMS, a loyalty platform and an ERP in step, exactly once",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&app.configFile, "config", "", "YAML config file (env RETAILFLOW_* and flags override it)")
	var brokers, chAddr, logLevel string
	root.PersistentFlags().StringVar(&brokers, "brokers", "", "Kafka bootstrap brokers, comma separated (kafka.brokers)")
	root.PersistentFlags().StringVar(&chAddr, "clickhouse", "", "ClickHouse native address host:port (clickhouse.addr)")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "", "debug|info|warn|error (log.level)")
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		app.overrides = map[string]any{}
		if brokers != "" {
			app.overrides["kafka.brokers"] = strings.Split(brokers, ",")
		}
		if chAddr != "" {
			app.overrides["clickhouse.addr"] = chAddr
		}
		if logLevel != "" {
			app.overrides["log.level"] = logLevel
		}
	}
	for _, c := range subcommands(app) {
		root.AddCommand(c)
	}
	return root
}

// subcommands lists every subcommand; each lives in its own cmd_*.go file.
func subcommands(app *App) []*cobra.Command {
	return []*cobra.Command{
		newConfigCmd(app),
		newTopicsCmd(app),
		newSchemasCmd(app),
		newProduceCmd(app),
		newConsumeCmd(app),
		newGenerateCmd(app),
		newRunCmd(app),
		newSinkCmd(app),
		newMigrateCmd(app),
		newReconcileCmd(app),
		newReplayCmd(app),
		newDLQCmd(app),
		newUICmd(app),
	}
}

func newConfigCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Validate the configuration and print it as YAML (secrets masked)",
		Long: "Prints the effective configuration (file, then RETAILFLOW_* environment, then flags) as the YAML\n" +
			"--config reads. Secrets are never printed: a password read from its *_file is left out (the file\n" +
			"key stays), any other is \"***\", as is the password inside a URL; feed the output back with\n" +
			"--config and give the secrets through the environment or the files again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Config()
			if err != nil {
				return err
			}
			out, err := c.MaskedYAML()
			if err != nil {
				return err
			}
			_, err = app.Stdout.Write(out)
			return err
		},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code; SIGINT and SIGTERM
// cancel the command's context (graceful shutdown).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdin, stdout, stderr)
}

// runContext executes one command line under ctx and returns the process exit code.
func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &App{Stdout: stdout, Stderr: stderr, Stdin: stdin}
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ue *usageError
		fmt.Fprintf(stderr, "retailflow: %v\n", err)
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
