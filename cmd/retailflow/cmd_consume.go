package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
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
			c, t, err := app.Topic(topic)
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
	w := bufio.NewWriter(app.Stdout)
	defer w.Flush()
	n := 0
	// emit writes one record's JSON line; it reports false once max lines are written.
	emit := func(r *kgo.Record) bool {
		if max > 0 && n >= max {
			return false
		}
		line, err := recordJSON(ctx, serde, t, r)
		if err != nil {
			fmt.Fprintf(app.Stderr, "retailflow: skipped %s[%d]@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
			return true
		}
		w.Write(line)
		w.WriteByte('\n')
		n++
		return max == 0 || n < max
	}
	if fromStart {
		// to the last stable offsets now (kafka.ReadToEnd); an idle poll ends the read early
		errStop := errors.New("max reached")
		err := kafka.ReadToEnd(ctx, conn, physical, kafka.ReadOptions{Until: kafka.EndStable, PollTimeout: idle}, func(r *kgo.Record) error {
			if !emit(r) {
				return errStop
			}
			return nil
		})
		switch {
		case errors.Is(err, kafka.ErrUnknownTopic):
			return fmt.Errorf("topic %s does not exist (run `retailflow topics create`)", physical)
		case err == nil, errors.Is(err, errStop), ctx.Err() != nil, idle > 0 && errors.Is(err, context.DeadlineExceeded):
			return nil
		}
		return err
	}

	// Tail from the end. Control records (transaction markers) are skipped when printing.
	cl, err := kgo.NewClient(append(conn.Options(),
		kgo.ConsumeTopics(physical), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for max == 0 || n < max {
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
			if r := it.Next(); !r.Attrs.IsControl() && !emit(r) {
				break
			}
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
