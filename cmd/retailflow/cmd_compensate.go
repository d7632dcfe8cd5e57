package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// newCompensateCmd is `retailflow compensate`: re-request the loyalty commands that C4/C5 rows
// show the platform never answered.
func newCompensateCmd(app *App) *cobra.Command {
	var (
		apply  bool
		orders []string
		actor  string
	)
	cmd := &cobra.Command{
		Use:   "compensate [--apply] [--order ID]... [--by USER]",
		Short: "Re-request the loyalty commands the platform never answered (C4/C5 missing accrual, reversal, refund)",
		Long: `Finds, through the open (not resolved) rows of the reconciliation views C4 and C5, the loyalty
commands the ledger requested and the loyalty platform never answered (no posting carries their
request id): ` + strings.Join(chsink.CompensableCodes(), ", ") + `.
Each is re-requested as it was: the ledger's own command record (same key, same value, so the same
request id = CommandRequestID(order, causing event, type), which is checked) is read back from the
commands topic and produced again to the same partition, with the headers rf.compensation.of
(the original's topic/partition/offset) and rf.compensation.run. The platform deduplicates by
request id, so a command it did receive after all is not applied twice.

Dry run by default: prints what it would send. --apply sends them in one Kafka transaction
(transactional id <runtime.group>-compensate: a concurrent run is fenced, and a run that fails
leaves nothing visible to read_committed readers) and then logs each one in the ClickHouse table
compensations. A request id in that log is never sent again: a second run sends nothing. If the
process dies between the commit and the log, the next run sends those commands once more — with
the same request ids, which the platform deduplicates.

Output: one JSON line per command (action would-send, sent, already-compensated) and per row that
cannot be compensated (action not-compensable: the platform answered, short — a manual
adjustment), a summary on stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if apply && strings.TrimSpace(actor) == "" {
				return &usageError{msg: "compensate --apply: --by is required (who sends; $USER is the default and is not set)"}
			}
			ctx := cmd.Context()
			c, conn, err := app.ClickHouse(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			db := c.ClickHouse.Database
			plan, err := chsink.PlanCompensations(ctx, conn, db, orders)
			if err != nil {
				return err
			}
			out := json.NewEncoder(app.Stdout)
			for _, d := range plan.Done {
				if err := out.Encode(compensationLine{Action: "already-compensated", Compensation: d}); err != nil {
					return err
				}
			}
			for _, s := range plan.Skipped {
				if err := out.Encode(struct {
					Action string `json:"action"`
					chsink.NotCompensable
				}{"not-compensable", s}); err != nil {
					return err
				}
			}
			if !apply {
				for _, p := range plan.Pending {
					if err := out.Encode(compensationLine{Action: "would-send", Compensation: p}); err != nil {
						return err
					}
				}
				fmt.Fprintf(app.Stderr, "retailflow compensate (dry run): would send %d commands (%d already compensated, %d rows not compensable); --apply sends them\n",
					len(plan.Pending), len(plan.Done), len(plan.Skipped))
				return nil
			}
			sent, err := sendCompensations(ctx, app, c, plan.Pending, actor)
			for _, s := range sent {
				if e := out.Encode(compensationLine{Action: "sent", Compensation: s.Compensation, SentTo: s.SentTo.String(), RunID: s.RunID}); e != nil && err == nil {
					err = e
				}
			}
			if err != nil {
				return err
			}
			if err := chsink.LogCompensations(ctx, conn, db, sent); err != nil {
				return fmt.Errorf("%w — the %d commands were sent (committed); a re-run sends them again with the same request ids, which the platform deduplicates", err, len(sent))
			}
			fmt.Fprintf(app.Stderr, "retailflow compensate: sent %d commands and logged them in %s.compensations (%d already compensated, %d rows not compensable)\n",
				len(sent), db, len(plan.Done), len(plan.Skipped))
			return nil
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "send the commands (default: dry run, print what would be sent)")
	cmd.Flags().StringArrayVar(&orders, "order", nil, "only rows of this order (repeatable)")
	cmd.Flags().StringVar(&actor, "by", os.Getenv("USER"), "who sends them, for the log")
	return cmd
}

// compensationLine is one output line of compensate.
type compensationLine struct {
	Action string `json:"action"`
	chsink.Compensation
	SentTo string `json:"sent_to,omitempty"`
	RunID  string `json:"run_id,omitempty"`
}

// sendCompensations reads each pending command's original record from the commands topic, checks
// it is that command, and produces it again in one transaction. It returns what the committed
// transaction carried (nothing when it fails).
func sendCompensations(ctx context.Context, app *App, c Config, pending []chsink.Compensation, actor string) ([]chsink.SentCompensation, error) {
	if len(pending) == 0 {
		return nil, nil
	}
	kc := app.KafkaConn(c)
	if err := kafka.Ping(ctx, kc); err != nil {
		return nil, err
	}
	serde, err := c.NewSerde(ctx)
	if err != nil {
		return nil, err
	}
	originals, err := readOriginals(ctx, kc, pending)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, p := range pending {
		r, ok := originals[p.Original]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s (request %s): the record is no longer in the topic (retention); re-request it by hand", p.OriginalRef, p.RequestID))
			continue
		}
		e, err := serde.DecodeEvent(ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.Partition, Offset: r.Offset}, r.Value)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", p.OriginalRef, err))
		case e.LoyaltyCommand == nil || e.LoyaltyCommand.RequestID != p.RequestID || e.EventID != p.RequestID:
			problems = append(problems, fmt.Sprintf("%s is not the command with request id %s", p.OriginalRef, p.RequestID))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("compensate: nothing sent: %s", strings.Join(problems, "; "))
	}

	cl, err := kgo.NewClient(append(kc.Options(),
		kgo.TransactionalID(c.Runtime.Group+"-compensate"), kgo.TransactionTimeout(max(kc.Timeout*3, 10*time.Second)),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(kc.Timeout*3))...)
	if err != nil {
		return nil, fmt.Errorf("compensate producer: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*kc.Timeout)
	_, _, err = cl.ProducerID(pctx) // fences an earlier run that is still in its transaction
	cancel()
	if err != nil {
		return nil, fmt.Errorf("compensate producer %s-compensate: %w", c.Runtime.Group, err)
	}
	runID := newRunID()
	if err := cl.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("compensate: begin transaction: %w", err)
	}
	promise := kgo.AbortingFirstErrPromise(cl)
	sent := make([]chsink.SentCompensation, len(pending))
	for i, p := range pending {
		orig := originals[p.Original]
		rec := &kgo.Record{Topic: c.Topics.Commands, Partition: orig.Partition, Key: orig.Key, Value: orig.Value,
			Headers: []kgo.RecordHeader{
				{Key: headers.CompensationOf, Value: []byte(p.OriginalRef)},
				{Key: headers.CompensationRun, Value: []byte(runID)},
			}}
		sent[i] = chsink.SentCompensation{Compensation: p, RunID: runID, Actor: actor}
		pr := promise.Promise()
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err == nil {
				sent[i].SentTo = headers.Coordinates{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
			}
			pr(r, err)
		})
	}
	perr := promise.Err()
	// not inheriting cancellation: a cancelled EndTransaction can leave its outcome unknown
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 3*kc.Timeout)
	defer ecancel()
	if err := cl.EndTransaction(ectx, kgo.TransactionEndTry(perr == nil)); err != nil {
		return nil, fmt.Errorf("compensate: end transaction of %d commands: %w (none of them was sent)", len(pending), err)
	}
	if perr != nil {
		return nil, fmt.Errorf("compensate: transaction of %d commands aborted, none was sent: %w", len(pending), perr)
	}
	now := time.Now().UTC()
	for i := range sent {
		sent[i].SentAt = now
	}
	return sent, nil
}

// readOriginals reads the records at the pending commands' coordinates, one bounded read per
// partition (from the lowest offset wanted to the highest).
func readOriginals(ctx context.Context, kc kafka.Conn, pending []chsink.Compensation) (map[headers.Coordinates]*kgo.Record, error) {
	type part struct {
		topic string
		p     int32
	}
	wanted := map[part][]int64{}
	for _, p := range pending {
		k := part{p.Original.Topic, p.Original.Partition}
		wanted[k] = append(wanted[k], p.Original.Offset)
	}
	parts := make([]part, 0, len(wanted))
	for k := range wanted {
		parts = append(parts, k)
	}
	sort.Slice(parts, func(i, j int) bool {
		return parts[i].topic < parts[j].topic || parts[i].topic == parts[j].topic && parts[i].p < parts[j].p
	})
	out := map[headers.Coordinates]*kgo.Record{}
	errDone := errors.New("read what was wanted")
	for _, k := range parts {
		offs := wanted[k]
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		need := map[int64]bool{}
		for _, o := range offs {
			need[o] = true
		}
		last := offs[len(offs)-1]
		err := kafka.ReadToEnd(ctx, kc, k.topic, kafka.ReadOptions{Partitions: []int32{k.p}, From: map[int32]int64{k.p: offs[0]},
			Until: kafka.EndStable, PollTimeout: kc.Timeout}, func(r *kgo.Record) error {
			if need[r.Offset] {
				cp := *r
				cp.Key, cp.Value = append([]byte(nil), r.Key...), append([]byte(nil), r.Value...)
				out[headers.Coordinates{Topic: k.topic, Partition: k.p, Offset: r.Offset}] = &cp
			}
			if r.Offset >= last {
				return errDone
			}
			return nil
		})
		if err != nil && !errors.Is(err, errDone) {
			return nil, fmt.Errorf("compensate: reading the original commands from %s/%d: %w", k.topic, k.p, err)
		}
	}
	return out, nil
}

func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}
