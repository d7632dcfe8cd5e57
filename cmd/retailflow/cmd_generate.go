package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

// produceBuffer bounds the records the generator's producer holds unacknowledged: Produce blocks
// when it is full (back-pressure instead of growth); 10k records is a few MB of Avro.
const produceBuffer = 10_000

func newGenerateCmd(app *App) *cobra.Command {
	var (
		opts      generate.Options
		start     string
		faultArgs []string
		allFaults float64
		outDir    string
		produce   bool
	)
	cmd := &cobra.Command{
		Use:   "generate [--out DIR] [--produce]",
		Short: "Generate realistic retail traffic for the five input topics, with controllable faults",
		Long: `Generates orders, cancellations, shipments, returns, loyalty postings and ERP documents from a
seed: the same flags always give the same traffic. Delivery knobs (--duplicate-rate, --out-of-order-rate,
--late-rate, --malformed-rate) change how records arrive; fault shares (--fault NAME=SHARE, or
--faults SHARE for all of them) withhold or distort downstream documents so that every reconciliation
view has something true to find. Fault names: ` + faultNames() + `.

--out DIR writes one JSON-lines file per input topic (the form 'retailflow produce' reads), the
malformed records (malformed.jsonl, the bytes base64) and expected.json (the oracle's loyalty
commands, view rows as of now, totals, and the faults applied per order).
--produce sends every record, in delivery order, to the configured topics (Avro, keyed by order_id)
at --rate events per second, then flushes and reports the counts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if outDir == "" && !produce {
				return &usageError{msg: "generate: give --out DIR, --produce, or both"}
			}
			c, err := app.Config()
			if err != nil {
				return err
			}
			if opts.Policy, err = oraclePolicy(c); err != nil {
				return err
			}
			if start != "" {
				if opts.Start, err = time.Parse(time.RFC3339, start); err != nil {
					return &usageError{msg: fmt.Sprintf("--start %q: want RFC 3339, e.g. 2026-11-01T00:00:00Z", start)}
				}
			} else {
				opts.Start = time.Now().UTC().Add(-14 * 24 * time.Hour).Truncate(time.Hour)
			}
			if cmd.Flags().Changed("faults") {
				for _, f := range generate.AllFaults() {
					opts.Faults.Set(f, allFaults)
				}
			}
			for _, a := range faultArgs {
				name, share, ok := strings.Cut(a, "=")
				v, err := strconv.ParseFloat(share, 64)
				if !ok || err != nil || !opts.Faults.Set(generate.Fault(name), v) {
					return &usageError{msg: fmt.Sprintf("--fault %q: want NAME=SHARE with NAME one of %s", a, faultNames())}
				}
			}
			began := time.Now()
			tr, err := generate.Generate(opts)
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			// The summary is printed only after everything succeeded, so a failure leaves no
			// success line behind.
			summary := fmt.Sprintf("generated %d orders, %d records (seed %d) in %s\n",
				opts.Orders, len(tr.Records), opts.Seed, time.Since(began).Round(time.Millisecond))
			if outDir != "" {
				if err := writeTraffic(outDir, tr); err != nil {
					return err
				}
				summary += fmt.Sprintf("wrote %s\n", outDir)
			}
			if produce {
				if err := produceTraffic(cmd.Context(), app, c, tr, opts.Rate); err != nil {
					return err
				}
			}
			_, err = io.WriteString(app.Stdout, summary)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Orders, "orders", 1000, "orders to generate")
	f.Uint64Var(&opts.Seed, "seed", 1, "random seed: the same seed and flags give the same traffic")
	f.StringVar(&start, "start", "", "business time of the first order, RFC 3339 (default: 14 days ago, on the hour)")
	f.DurationVar(&opts.Span, "span", 24*time.Hour, "orders are accepted over this period after --start")
	f.Float64Var(&opts.Rate, "rate", 0, "events per second when producing (0: as fast as the broker takes them)")
	f.Float64Var(&opts.DuplicateRate, "duplicate-rate", 0, "share of records re-sent")
	f.Float64Var(&opts.OutOfOrderRate, "out-of-order-rate", 0, "share of orders delivered shuffled across topics")
	f.Float64Var(&opts.LateRate, "late-rate", 0, "share of events published a day after they occurred")
	f.Float64Var(&opts.MalformedRate, "malformed-rate", 0, "share of orders with one record that must end in the DLQ")
	f.StringArrayVar(&faultArgs, "fault", nil, "NAME=SHARE: share of orders with this downstream fault (repeatable)")
	f.Float64Var(&allFaults, "faults", 0, "share for every fault at once (--fault overrides single ones)")
	f.StringVar(&outDir, "out", "", "directory for JSON-lines files per topic, malformed.jsonl and expected.json")
	f.BoolVar(&produce, "produce", false, "produce the records to the configured Kafka topics")
	return cmd
}

func faultNames() string {
	var names []string
	for _, f := range generate.AllFaults() {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}

// oraclePolicy maps the policy and recon sections onto the oracle's policy, so the generated
// loyalty postings and expected.json follow the same rules the ledger is configured with.
func oraclePolicy(c Config) (oracle.Policy, error) {
	p := oracle.DefaultPolicy()
	p.Version, p.LockDays, p.OrphanGrace, p.ReconGrace = c.Policy.Version, c.Policy.LockDays, c.Policy.OrphanGrace, c.Recon.Grace
	p.ConfirmTrigger = c.Policy.ConfirmTrigger
	p.EarnRates, p.TierMultipliers, p.ExcludedSKUs = map[string]decimal.Decimal{}, map[string]decimal.Decimal{}, map[string]bool{}
	for cur, s := range c.Policy.EarnRates {
		d, err := decimal.NewFromString(s)
		if err != nil {
			return p, &ConfigError{Key: "policy.earn_rates." + strings.ToLower(cur), Problem: fmt.Sprintf("%q is not a decimal", s)}
		}
		p.EarnRates[strings.ToUpper(cur)] = d
	}
	for tier, s := range c.Policy.TierMultipliers {
		d, err := decimal.NewFromString(s)
		if err != nil {
			return p, &ConfigError{Key: "policy.tier_multipliers." + strings.ToLower(tier), Problem: fmt.Sprintf("%q is not a decimal", s)}
		}
		p.TierMultipliers[strings.ToUpper(tier)] = d
	}
	for _, sku := range c.Policy.ExcludedSKUs {
		p.ExcludedSKUs[sku] = true
	}
	return p, p.Validate()
}

// malformedLine is one line of malformed.jsonl.
type malformedLine struct {
	Topic  schemas.Topic      `json:"topic"`
	Key    string             `json:"key"`
	Class  schemas.ErrorClass `json:"error_class"`
	Reason string             `json:"reason"`
	Value  string             `json:"value_base64,omitempty"`
	Event  json.RawMessage    `json:"event,omitempty"`
}

// writeTraffic writes <topic>.jsonl per input topic, malformed.jsonl and expected.json.
func writeTraffic(dir string, tr *generate.Traffic) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	files := map[schemas.Topic]*bufio.Writer{}
	var closers []*os.File
	open := func(name string) (*bufio.Writer, error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		closers = append(closers, f)
		return bufio.NewWriterSize(f, 1<<16), nil
	}
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	for _, t := range schemas.InputTopics {
		w, err := open(string(t) + ".jsonl")
		if err != nil {
			return err
		}
		files[t] = w
	}
	bad, err := open("malformed.jsonl")
	if err != nil {
		return err
	}
	for _, r := range tr.Records {
		var line []byte
		var err error
		w := files[r.Topic]
		switch {
		case r.Malformed != "":
			m := malformedLine{Topic: r.Topic, Key: r.Key, Class: r.Class, Reason: r.Malformed}
			if r.Raw != nil {
				m.Value = base64.StdEncoding.EncodeToString(r.Raw)
			} else if m.Event, err = schemas.EncodeJSON(r.Event); err != nil {
				return fmt.Errorf("malformed record of %s: %w", r.Key, err)
			}
			line, err = json.Marshal(m)
			w = bad
		default:
			line, err = schemas.EncodeJSON(r.Event)
		}
		if err != nil {
			return fmt.Errorf("record of %s: %w", r.Key, err)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	for _, w := range append(mapValues(files), bad) {
		if err := w.Flush(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return writeExpected(filepath.Join(dir, "expected.json"), tr)
}

func mapValues(m map[schemas.Topic]*bufio.Writer) []*bufio.Writer {
	var out []*bufio.Writer
	for _, t := range schemas.InputTopics {
		out = append(out, m[t])
	}
	return out
}

// expectedFile is expected.json: what the pipeline must produce from the traffic.
type expectedFile struct {
	AsOf        time.Time                   `json:"as_of"`
	Commands    []expectedCommand           `json:"commands"`
	Views       map[string][]expectedRow    `json:"views"`
	Totals      oracle.Totals               `json:"totals"`
	DeadLetters []generate.DeadLetter       `json:"dead_letters"`
	Faults      map[string][]generate.Fault `json:"faults"`
}

type expectedCommand struct {
	RequestID string            `json:"request_id"`
	Type      schemas.EventType `json:"command_type"`
	OrderID   string            `json:"order_id"`
	Points    int64             `json:"points"`
	CausingID string            `json:"causing_event_id"`
	SourceRef string            `json:"source_ref_id"`
}

type expectedRow struct {
	Key1         string    `json:"key1"`
	Key2         string    `json:"key2,omitempty"`
	MismatchCode string    `json:"mismatch_code"`
	BusinessTime time.Time `json:"business_time"`
}

func writeExpected(path string, tr *generate.Traffic) error {
	asOf := time.Now().UTC().Truncate(time.Second)
	x := tr.Expected(asOf)
	out := expectedFile{AsOf: asOf, Views: map[string][]expectedRow{}, Totals: x.Totals,
		DeadLetters: tr.DeadLetters(), Faults: tr.Faults()}
	for _, c := range x.Commands {
		out.Commands = append(out.Commands, expectedCommand{c.RequestID, c.Type, c.OrderID, c.Points, c.CausingEventID, c.SourceRefID})
	}
	sort.Slice(out.Commands, func(i, j int) bool { return out.Commands[i].RequestID < out.Commands[j].RequestID })
	for view, rows := range x.Views {
		out.Views[view] = []expectedRow{}
		for _, r := range rows {
			k1, k2 := r.Keys()
			out.Views[view] = append(out.Views[view], expectedRow{k1, k2, r.MismatchCode, r.BusinessTime})
		}
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return fmt.Errorf("expected.json: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// produceTraffic sends every record in delivery order, keyed by Record.Key, paced at rate
// events per second (0: unpaced), and waits for every acknowledgement.
func produceTraffic(ctx context.Context, app *App, c Config, tr *generate.Traffic, rate float64) error {
	serde, err := c.NewSerde(ctx)
	if err != nil {
		return err
	}
	conn := c.KafkaConn()
	if err := kafka.Ping(ctx, conn); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(conn.Options(), kgo.MaxBufferedRecords(produceBuffer),
		kgo.RecordDeliveryTimeout(conn.Timeout*3))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	names := c.TopicNames()
	var (
		mu       sync.Mutex
		firstErr error
		acked    = map[schemas.Topic]int{}
	)
	began := time.Now()
	sent := 0
	for i, r := range tr.Records {
		value := r.Raw
		if r.Event != nil {
			if value, err = serde.EncodeEvent(r.Topic, r.Event); err != nil {
				return fmt.Errorf("record %d (%s, event %s): %w", i, r.Topic, r.Event.EventID, err)
			}
		}
		if rate > 0 {
			due := began.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
		topic := r.Topic
		rec := &kgo.Record{Topic: names[topic], Key: []byte(r.Key), Value: value}
		cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s[%d] key %s: %w", rec.Topic, rec.Partition, rec.Key, err)
				}
				return
			}
			acked[topic]++
		})
		sent++
		mu.Lock()
		failed := firstErr
		mu.Unlock()
		if failed != nil {
			break
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush after %d records: %w", sent, err)
	}
	total := 0
	var parts []string
	for _, t := range schemas.InputTopics {
		total += acked[t]
		parts = append(parts, fmt.Sprintf("%s %d", names[t], acked[t]))
	}
	dups, bad := 0, 0
	for _, r := range tr.Records {
		if r.Duplicate {
			dups++
		}
		if r.Malformed != "" {
			bad++
		}
	}
	fmt.Fprintf(app.Stdout, "produced %d of %d records in %s (%s; %d duplicates, %d malformed)\n",
		total, len(tr.Records), time.Since(began).Round(time.Millisecond), strings.Join(parts, ", "), dups, bad)
	if firstErr != nil {
		return fmt.Errorf("%d of %d records acknowledged; first failure: %w", total, len(tr.Records), firstErr)
	}
	return nil
}
