package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// newRunCmd is `retailflow run`: the exactly-once order-ledger processor.
func newRunCmd(app *App) *cobra.Command {
	var instance, cpuProfile, memProfile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the exactly-once order ledger (consume inputs → ledger → loyalty commands, changelog, DLQ)",
		Long: `run joins the consumer group runtime.group with the transactional id
<runtime.group>-<runtime.instance_id>, restores the order-ledger state of its partitions from the
changelog, and processes the five input topics exactly once. SIGTERM finishes the open
transaction, leaves the group and exits 0; a fatal error (fenced, a failed commit) exits 1 for
the supervisor to restart the process with the same instance id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if instance != "" {
				app.overrides["runtime.instance_id"] = instance
			}
			c, err := app.Config()
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				defer func() {
					if f, err := os.Create(memProfile); err == nil {
						_ = pprof.Lookup("allocs").WriteTo(f, 0)
						_ = f.Close()
					}
				}()
			}
			return runLedger(cmd.Context(), app, c)
		},
	}
	cmd.Flags().StringVar(&instance, "instance-id", "", "stable instance id, e.g. the pod ordinal (runtime.instance_id)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for bench/runtime; stops when run returns)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write an allocation profile of the whole run to this file when run returns (for bench/runtime)")
	return cmd
}

// LedgerTopics names the order-ledger pipeline's topics from the topics section.
func (c Config) LedgerTopics() orderledger.Topics {
	return orderledger.Topics{Names: c.TopicNames(), Reroute: c.RerouteTopic()}
}

// LedgerTopology is the processor's graph (orderledger.Topology).
func (c Config) LedgerTopology() topology.Topology { return orderledger.Topology(c.LedgerTopics()) }

// RunnerOptions maps the runtime section onto the runner's options.
func (c Config) RunnerOptions() topology.Options {
	return topology.Options{
		Conn: c.KafkaConn(), Group: c.Runtime.Group, InstanceID: c.Runtime.InstanceID,
		TransactionTimeout: c.Runtime.TransactionTimeout, SessionTimeout: c.Runtime.SessionTimeout,
		HeartbeatInterval: c.Runtime.HeartbeatInterval,
		RebalanceTimeout:  c.Runtime.RebalanceTimeout, MaxRecordsPerTxn: c.Runtime.MaxRecordsPerTxn,
		MaxTxnDuration: c.Runtime.MaxTxnDuration, MaxBufferedRecords: c.Runtime.MaxBufferedRecords,
		MinTxnDuration: c.Runtime.MinTxnDuration, Parallelism: c.Runtime.Parallelism,
		OffsetReset: kafka.OffsetReset(c.Runtime.OffsetReset),
		StateDir:    c.StateDir(),
		State: topology.DiskOptions{CacheBytes: c.State.CacheBytes, MemtableBytes: c.State.MemtableBytes, ValueCacheBytes: valueCache(c.State.ValueCacheBytes),
			CommitTimeout: c.State.CommitTimeout, FlushHook: chaosStoreHook()},
		SweepInterval: c.State.SweepInterval, SweepMaxKeys: c.State.SweepMaxKeys, AllowedLateness: c.State.AllowedLateness,
		Standby: c.State.Standby == "all", StandbyInterval: c.State.StandbyInterval,
		// fault-injection hooks exist only in binaries built with -tags chaoshooks (make chaos)
		ClientOpts: chaosClientOpts(),
	}
}

// StateDir is the persistent store's directory, "" in memory mode.
func (c Config) StateDir() string {
	if c.State.Mode != "pebble" {
		return ""
	}
	return c.State.Dir
}

func runLedger(ctx context.Context, app *App, c Config) error {
	log := app.Logger(c)
	// a wrong password or certificate ends the start here, in one line, not in client retries
	if err := kafka.Ping(ctx, c.KafkaConn()); err != nil {
		if ctx.Err() != nil {
			return nil // SIGTERM during the start-up checks is a clean stop (DESIGN.md invariant 14)
		}
		return err
	}
	p, err := c.LedgerPolicy()
	if err != nil {
		return err
	}
	serde, err := c.NewSerde(ctx)
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	reg := prometheus.NewRegistry()
	// the Go runtime's own figures (go_memstats_mallocs_total, GC pauses, heap) beside the
	// runner's: bench/runtime reads allocations per event from them
	reg.MustRegister(collectors.NewGoCollector())
	metrics, err := ops.NewRuntimeMetrics(reg)
	if err != nil {
		return err
	}
	o := c.RunnerOptions()
	o.Metrics, o.Logger = metrics, log
	o.Conn = app.KafkaConn(c) // with franz-go's warnings in slog
	o.ClientOpts = append(o.ClientOpts[:len(o.ClientOpts):len(o.ClientOpts)], kafkaClientMetrics(reg, "ledger"))
	proc := orderledger.NewProcessor(ctx, c.LedgerTopics(), orderledger.Options{Serde: serde, Policy: p, MaxEventSkew: c.Runtime.MaxEventSkew, StateLayout: c.StateLayout()})
	runner, err := topology.NewRunner(c.LedgerTopology(), proc, o)
	if err != nil {
		return err
	}
	if c.HTTP.Addr == "" {
		return runner.Run(ctx)
	}
	lag, err := startLagCollector(app, c, reg)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	srvCtx, stopSrv := context.WithCancel(context.Background())
	if lag != nil {
		g.Go(func() error { return lag(srvCtx) })
	}
	g.Go(func() error {
		defer stopSrv() // the listener outlives the runner only until it has stopped
		return runner.Run(gctx)
	})
	g.Go(func() error {
		srv := ops.NewServer(c.HTTP.Addr, reg, func(context.Context) error {
			st := runner.Status()
			switch {
			case st.Err != nil:
				return st.Err
			case !st.Joined:
				return errors.New("not yet joined the consumer group")
			case len(st.Restoring) > 0:
				return fmt.Errorf("restoring state of partitions %v", st.Restoring)
			case st.Store != nil:
				return st.Store // stalled (a full disk): not ready until it takes writes again
			}
			return nil
		})
		return srv.Run(srvCtx)
	})
	return g.Wait()
}

// valueCache is state.value_cache_bytes as topology.DiskOptions.ValueCacheBytes (0 there means the
// default; the config's 0 means off).
func valueCache(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
