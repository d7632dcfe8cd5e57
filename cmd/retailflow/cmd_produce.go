package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// maxReportedLines bounds how many bad lines produce lists before summarising.
const maxReportedLines = 20

func newProduceCmd(app *App) *cobra.Command {
	var topic, file string
	cmd := &cobra.Command{
		Use:   "produce --topic TOPIC [--file F]",
		Short: "Read events as JSON lines, validate them against the topic's schema, produce Avro keyed by order_id",
		Long: `Reads one event per line (the JSON form: decimals as strings, timestamps RFC 3339) from --file or
stdin. The whole input is parsed and validated first: if any line is bad, nothing is sent and every
bad line is reported with its number and field path. Then every event is produced (idempotent
producer, acks=all) and the command waits for each acknowledgement; if the broker fails part-way,
the error says how many events were acknowledged before it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, t, err := app.Topic(topic)
			if err != nil {
				return err
			}
			if !isInputTopic(t) {
				return &usageError{msg: fmt.Sprintf("--topic %s: produce writes the input topics only (orders, shipments, returns, loyalty, erp)", topic)}
			}
			in := app.Stdin
			name := "stdin"
			if file != "" && file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("--file: %w", err)
				}
				defer f.Close()
				in, name = f, file
			}
			events, err := readEvents(in, name, t)
			if err != nil {
				return err
			}
			serde, err := c.NewSerde(cmd.Context())
			if err != nil {
				return err
			}
			n, err := produceEvents(cmd.Context(), c.KafkaConn(), serde, c.TopicNames()[t], t, events)
			if err != nil {
				return fmt.Errorf("%s: %d of %d events acknowledged before: %w", name, n, len(events), err)
			}
			fmt.Fprintf(app.Stdout, "produced %d events to %s\n", n, c.TopicNames()[t])
			return nil
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "topic: orders|shipments|returns|loyalty|erp (or its configured name)")
	cmd.Flags().StringVar(&file, "file", "", "JSON lines file (default stdin)")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func isInputTopic(t schemas.Topic) bool {
	for _, in := range schemas.InputTopics {
		if t == in {
			return true
		}
	}
	return false
}

// readEvents parses and validates every line; it returns all problems at once, or the events.
func readEvents(r io.Reader, name string, t schemas.Topic) ([]*schemas.Event, error) {
	jr := schemas.NewJSONReader(r)
	var events []*schemas.Event
	var problems []string
	bad := 0
	for {
		e, err := jr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			if verr := e.ValidateFor(t); verr != nil {
				err = fmt.Errorf("line %d: %w", jr.Line(), verr)
			}
		}
		if err != nil {
			bad++
			if len(problems) < maxReportedLines {
				problems = append(problems, err.Error())
			}
			if jr.Line() == 0 || strings.Contains(err.Error(), "token too long") {
				break
			}
			continue
		}
		events = append(events, e)
	}
	if bad > 0 {
		more := ""
		if bad > len(problems) {
			more = fmt.Sprintf("; and %d more", bad-len(problems))
		}
		return nil, fmt.Errorf("%s: %d bad line(s), nothing was sent: %s%s", name, bad, strings.Join(problems, "; "), more)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%s: no events", name)
	}
	return events, nil
}

// produceEvents sends every event keyed by its order id and returns how many were
// acknowledged. It stops at the first failure.
func produceEvents(ctx context.Context, conn kafka.Conn, serde *schemas.Serde, physical string, t schemas.Topic, events []*schemas.Event) (int, error) {
	cl, err := kgo.NewClient(append(conn.Options(), kgo.DefaultProduceTopic(physical), kgo.RecordDeliveryTimeout(conn.Timeout*3))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := kafka.Ping(ctx, conn); err != nil {
		return 0, err
	}
	records := make([]*kgo.Record, 0, len(events))
	for _, e := range events {
		v, err := serde.EncodeEvent(t, e)
		if err != nil {
			return 0, fmt.Errorf("event %s: %w", e.EventID, err)
		}
		records = append(records, &kgo.Record{Key: []byte(e.Key()), Value: v, Timestamp: time.Now()})
	}
	ack := 0
	for _, r := range cl.ProduceSync(ctx, records...) {
		if r.Err != nil {
			return ack, fmt.Errorf("topic %s: %w", physical, r.Err)
		}
		ack++
	}
	return ack, nil
}
