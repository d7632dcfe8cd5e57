package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
)

func newConsumeCmd(app *App) *cobra.Command {
	var (
		topic     string
		fromStart bool
		max       int
		idle      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "consume --topic TOPIC [--from-beginning] [--max N]",
		Short: "Print a topic's records (read_committed) as JSON lines, in the shape produce reads",
		Long: `Decodes each record with the topic's schema and prints it as one JSON line. Input topics print
events in exactly the shape 'retailflow produce' reads, so the two round-trip; loyalty-commands,
dlq and the changelog print their own values. A record that does not decode is reported on
stderr with topic/partition/offset and the reason, and skipped.

With --from-beginning it reads from the start and stops at the end offsets it saw when it
started; without it, it follows new records. --max stops after N records; --idle stops when
nothing arrives for that long.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Config()
			if err != nil {
				return err
			}
			t, err := c.LogicalTopic(topic)
			if err != nil {
				return err
			}
			serde, err := c.NewSerde(cmd.Context())
			if err != nil {
				return err
			}
			return consume(cmd.Context(), app, c.KafkaConn(), serde, c.TopicNames()[t], t, fromStart, max, idle)
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "logical or configured topic name")
	cmd.Flags().BoolVar(&fromStart, "from-beginning", false, "read from the start and stop at the current end")
	cmd.Flags().IntVar(&max, "max", 0, "stop after N records (0: no limit)")
	cmd.Flags().DurationVar(&idle, "idle", 0, "stop when no record arrives for this long (0: never)")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func consume(ctx context.Context, app *App, conn kafka.Conn, serde *schemas.Serde, physical string, t schemas.Topic, fromStart bool, max int, idle time.Duration) error {
	if err := kafka.Ping(ctx, conn); err != nil {
		return err
	}
	start := kgo.NewOffset().AtEnd()
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	// Control records (transaction markers) are kept so the position reaches the end offset of
	// a transactional topic; they are skipped when printing.
	cl, err := kgo.NewClient(append(conn.Options(),
		kgo.ConsumeTopics(physical), kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return err
	}
	defer cl.Close()

	// The stopping point for --from-beginning: the last stable offsets now.
	var end map[int32]int64
	if fromStart {
		adm := kadm.NewClient(cl)
		offs, err := adm.ListCommittedOffsets(ctx, physical)
		if err != nil {
			return fmt.Errorf("list offsets of %s: %w", physical, err)
		}
		if len(offs) == 0 {
			return fmt.Errorf("topic %s does not exist (run `retailflow topics create`)", physical)
		}
		end = map[int32]int64{}
		var lerr error
		offs.Each(func(o kadm.ListedOffset) {
			switch {
			case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
				lerr = fmt.Errorf("topic %s does not exist (run `retailflow topics create`)", physical)
			case o.Err != nil:
				lerr = fmt.Errorf("topic %s partition %d: %w", physical, o.Partition, o.Err)
			case o.Offset > 0:
				end[o.Partition] = o.Offset
			}
		})
		if lerr != nil {
			return lerr
		}
	}
	done := func(pos map[int32]int64) bool {
		if end == nil {
			return false
		}
		for p, e := range end {
			if pos[p] < e {
				return false
			}
		}
		return true
	}

	w := bufio.NewWriter(app.Stdout)
	defer w.Flush()
	pos := map[int32]int64{}
	n := 0
	for !done(pos) && (max == 0 || n < max) {
		pctx := ctx
		var cancel context.CancelFunc = func() {}
		if idle > 0 {
			pctx, cancel = context.WithTimeout(ctx, idle)
		}
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() || (idle > 0 && pctx.Err() != nil && fs.NumRecords() == 0) {
			return nil
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s[%d]: %w", tp, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			pos[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				continue
			}
			if max > 0 && n >= max {
				break
			}
			line, err := recordJSON(ctx, serde, t, r)
			if err != nil {
				fmt.Fprintf(app.Stderr, "retailflow: skipped %s[%d]@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
				continue
			}
			w.Write(line)
			w.WriteByte('\n')
			n++
		}
		w.Flush()
	}
	return nil
}

// recordJSON decodes one record of topic t into its JSON line.
func recordJSON(ctx context.Context, serde *schemas.Serde, t schemas.Topic, r *kgo.Record) ([]byte, error) {
	ref := schemas.RecordRef{Topic: t, Partition: r.Partition, Offset: r.Offset}
	switch t {
	case schemas.TopicDLQ:
		v, err := schemas.Decode[schemas.DeadLetter](ctx, serde, ref, r.Value)
		if err != nil {
			return nil, err
		}
		return schemas.EncodeJSON(v)
	case schemas.TopicChangelog:
		if r.Value == nil {
			return []byte(fmt.Sprintf(`{"order_id":%q,"tombstone":true}`, string(r.Key))), nil
		}
		st, err := ledgerstate.Decode(ctx, serde, ref, r.Value)
		if err != nil {
			return nil, err
		}
		return schemas.EncodeJSON(st)
	default:
		v, err := schemas.Decode[schemas.Event](ctx, serde, ref, r.Value)
		if err != nil {
			return nil, err
		}
		return schemas.EncodeJSON(v)
	}
}
