package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/connectors/ops"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/topology"
)

// newRunCmd is `retailflow run`: the exactly-once order-ledger processor.
func newRunCmd(app *App) *cobra.Command {
	var instance, cpuProfile string
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
			return runLedger(cmd.Context(), app, c)
		},
	}
	cmd.Flags().StringVar(&instance, "instance-id", "", "stable instance id, e.g. the pod ordinal (runtime.instance_id)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for bench/runtime; stops when run returns)")
	return cmd
}

// LedgerTopology is the processor's graph: the five inputs into the order-ledger stage, which
// writes loyalty commands and keeps its state in the compacted changelog.
func (c Config) LedgerTopology() topology.Topology {
	n := c.TopicNames()
	var inputs []topology.Stream
	for _, t := range schemas.InputTopics {
		inputs = append(inputs, topology.Stream(n[t]))
	}
	commands := topology.Stream(n[schemas.TopicCommands])
	return topology.Topology{
		Sources: inputs,
		Stages: []topology.KeyedStage{{
			Name: "order-ledger", Inputs: inputs, Store: topology.Table(n[schemas.TopicChangelog]),
			Writes: []topology.Stream{commands}, Reroute: topology.Stream(c.RerouteTopic()),
		}},
		Outputs: []topology.Stream{commands},
		DLQ:     topology.Stream(n[schemas.TopicDLQ]),
	}
}

// ledgerCodec stores a Ledger in the changelog through the ledger's own framing.
type ledgerCodec struct {
	ctx   context.Context
	serde *schemas.Serde
}

func (lc ledgerCodec) Encode(l ledger.Ledger) ([]byte, error) { return ledger.EncodeState(lc.serde, l) }
func (lc ledgerCodec) Decode(b []byte) (ledger.Ledger, error) {
	return ledger.DecodeState(lc.ctx, lc.serde, schemas.RecordRef{Topic: schemas.TopicChangelog, Partition: -1, Offset: -1}, b)
}

// LedgerStage builds the typed stage: Avro decode + validation (schemas), Ledger.Apply, Avro
// commands, the ledger's changelog codec, and DeadLetter values for the DLQ.
func (c Config) LedgerStage(ctx context.Context, serde *schemas.Serde, p ledger.Policy) topology.Stage[*schemas.Event, ledger.Ledger, *schemas.Event] {
	logical := map[string]schemas.Topic{}
	for t, name := range c.TopicNames() {
		logical[name] = t
	}
	commands := topology.Stream(c.Topics.Commands)
	return topology.Stage[*schemas.Event, ledger.Ledger, *schemas.Event]{
		// Event times are bounded against the record's timestamp before the ledger sees them:
		// the ledger's clock is the largest occurred_at it folded, and one event dated years
		// ahead would close and evict its order (a later real return then held forever).
		Decode: func(r *kgo.Record) (*schemas.Event, error) {
			e, err := serde.DecodeEventAt(ctx, schemas.RecordRef{Topic: logical[r.Topic], Partition: r.Partition, Offset: r.Offset},
				r.Value, r.Timestamp, c.Runtime.MaxEventSkew)
			if errors.Is(err, schemas.ErrRegistryAuth) {
				// not the record's fault, not fixed by waiting: stop rather than dead-letter
				// every record or retry forever
				return nil, fmt.Errorf("%w: %w", topology.ErrFatal, err)
			}
			return e, err
		},
		Process: func(key string, l ledger.Ledger, found bool, e *schemas.Event) (topology.Step[ledger.Ledger, *schemas.Event], error) {
			if !found {
				l = ledger.New(key)
			}
			n, cmds, err := l.Apply(*e, p)
			if err != nil {
				return topology.Step[ledger.Ledger, *schemas.Event]{}, err
			}
			step := topology.Step[ledger.Ledger, *schemas.Event]{Op: topology.Put, State: n}
			if at, closed := n.EvictAfter(); closed && len(cmds) == 0 && !n.Clock().Before(at) {
				step.Op = topology.Evict
			}
			for i := range cmds {
				step.Outputs = append(step.Outputs, topology.Emit[*schemas.Event]{To: commands, Value: commandEvent(e, &cmds[i])})
			}
			return step, nil
		},
		State: ledgerCodec{ctx: ctx, serde: serde},
		// Ledger.Apply is copy-on-write and never writes into its receiver (processors/ledger
		// cow.go), so the runtime could keep decoded ledgers between transactions; it does
		// not: a decoded ledger is ≈3.5× its bytes and pointer-rich, and on the benchmark the
		// GC work of keeping them cost as much as the decodes it saved and tripled the p99
		// latency (bench/RESULTS.md). Orders are touched a few times over hours, so decoding
		// once per key per transaction is cheap.
		ImmutableState: false,
		Encode: func(_ topology.Stream, ev *schemas.Event) ([]byte, error) {
			return serde.EncodeEvent(schemas.TopicCommands, ev)
		},
		DeadLetter: func(rj topology.Rejected) ([]byte, error) {
			d := &schemas.DeadLetter{
				Key: rj.Record.Key, Value: rj.Record.Value, SourceTopic: rj.Record.Topic,
				SourcePartition: rj.Record.Partition, SourceOffset: rj.Record.Offset,
				ErrorClass: schemas.ErrorClass(rj.Class), ErrorMessage: rj.Err.Error(),
				FirstSeenAt: rj.FirstSeen, Attempt: 1,
			}
			if rj.ValueDropped {
				d.Value = nil
			}
			if rj.SchemaID >= 0 {
				id := rj.SchemaID
				d.SchemaID = &id
			}
			var de *schemas.DecodeError
			var ee *ledger.EventError
			switch {
			case errors.As(rj.Err, &de) && de.EventID != "":
				d.EventID = &de.EventID
			case errors.As(rj.Err, &ee) && ee.EventID != "":
				d.EventID = &ee.EventID
			}
			return schemas.Encode(serde, schemas.TopicDLQ, d)
		},
		Classify: classifyLedgerError,
	}
}

// commandEvent wraps a command in the envelope of the commands topic. Every field is derived
// from the command and its causing event, so a replay re-emits the identical event: event_id is
// the request id, occurred_at and published_at the command's business time.
func commandEvent(cause *schemas.Event, cmd *schemas.LoyaltyCommand) *schemas.Event {
	causation := cause.EventID
	corr := cause.CorrelationID
	if corr == "" {
		corr = cmd.OrderID
	}
	return &schemas.Event{
		Envelope: schemas.Envelope{
			EventID: cmd.RequestID, EventType: cmd.CommandType, SchemaVersion: 1, SourceSystem: "retailflow",
			OccurredAt: cmd.RequestedAt, PublishedAt: cmd.RequestedAt,
			AggregateType: "order", AggregateID: cmd.OrderID, CorrelationID: corr, CausationID: &causation,
			TenantID: cause.TenantID,
		},
		LoyaltyCommand: cmd,
	}
}

// classifyLedgerError: schemas' decode classes go to the DLQ as they are (registry-unavailable
// is transient); a ledger rejection is class "ledger"; anything else falls back to
// topology.DefaultClassify.
func classifyLedgerError(err error) (string, bool) {
	var de *schemas.DecodeError
	if errors.As(err, &de) {
		return string(de.Class), de.Transient()
	}
	var ee *ledger.EventError
	if errors.As(err, &ee) {
		return "ledger", false
	}
	return topology.DefaultClassify(err)
}

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
		// fault-injection hooks exist only in binaries built with -tags chaoshooks (make chaos)
		ClientOpts: chaosClientOpts(),
	}
}

func runLedger(ctx context.Context, app *App, c Config) error {
	log := app.Logger(c)
	p, err := c.LedgerPolicy()
	if err != nil {
		return err
	}
	serde, err := c.NewSerde(ctx)
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := ops.NewRuntimeMetrics(reg)
	if err != nil {
		return err
	}
	o := c.RunnerOptions()
	o.Metrics, o.Logger = metrics, log
	o.Conn.Logger = log // franz-go's warnings
	runner, err := topology.NewRunner(c.LedgerTopology(), c.LedgerStage(ctx, serde, p), o)
	if err != nil {
		return err
	}
	if c.HTTP.Addr == "" {
		return runner.Run(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	srvCtx, stopSrv := context.WithCancel(context.Background())
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
			}
			return nil
		})
		return srv.Run(srvCtx)
	})
	return g.Wait()
}
