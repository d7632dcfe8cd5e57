// Package kafka is retailflow's edge to Kafka: client options from configuration, topic
// administration (create, verify co-partitioning) and, in the files beside this one, the
// transactional session the runtime drives.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"
)

// Conn says how to reach the brokers. The password is never logged.
type Conn struct {
	Brokers  []string
	ClientID string
	// TLS, when set, wraps every broker connection: its RootCAs (nil: the system's) verify the
	// brokers, its Certificates are the client certificate for listeners that require one
	// (mTLS). Build it with TLSConfig. nil means plaintext.
	TLS           *tls.Config
	SASLMechanism string // "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	SASLUser      string
	SASLPassword  string
	// Timeout bounds each admin request and start-up probes.
	Timeout time.Duration
	// Logger receives franz-go's own log lines at WARN and above (broker errors it retries,
	// offset resets, rebalance trouble); nil leaves them unlogged.
	Logger *slog.Logger
}

// Options returns the franz-go options for Conn; callers append their own.
func (c Conn) Options() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.Logger != nil {
		opts = append(opts, kgo.WithLogger(kslog.New(slog.New(minLevel{c.Logger.Handler(), slog.LevelWarn}).With("component", "franz-go"))))
	}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	switch c.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	return opts
}

// minLevel passes on records at or above min only: franz-go logs every request at DEBUG and
// each rebalance step at INFO, which would drown the application's own lines.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

func (c Conn) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 10 * time.Second
	}
	return c.Timeout
}

// Ping checks that the brokers answer a metadata request within the timeout, and says which
// brokers were tried when they do not.
func Ping(ctx context.Context, c Conn) error {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return fmt.Errorf("kafka %s: %w", strings.Join(c.Brokers, ","), err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		if why := c.AuthProblem(err); why != "" {
			return fmt.Errorf("kafka %s: %s: %w", strings.Join(c.Brokers, ","), why, err)
		}
		return fmt.Errorf("kafka %s unreachable within %s: %w", strings.Join(c.Brokers, ","), c.timeout(), err)
	}
	return nil
}

// TopicSpec is one topic retailflow needs.
type TopicSpec struct {
	Name       string
	Partitions int32
	// ReplicationFactor of a created topic; 0 means the broker's default.
	ReplicationFactor int16
	// MinInsyncReplicas of a created topic (min.insync.replicas); 0 means the broker's default.
	MinInsyncReplicas int16
	// Compacted topics keep the latest value per key (the ledger changelog).
	Compacted bool
	// Retention of a non-compacted topic; zero keeps the broker default.
	Retention time.Duration
	// CoPartitioned topics must all have the same partition count.
	CoPartitioned bool
}

func (s TopicSpec) configs() map[string]*string {
	cfg := map[string]*string{}
	if s.Compacted {
		cfg["cleanup.policy"] = kadm.StringPtr("compact")
		// dirty ratio low enough that restore reads little more than one value per live key
		cfg["min.cleanable.dirty.ratio"] = kadm.StringPtr("0.1")
		cfg["segment.ms"] = kadm.StringPtr(strconv.FormatInt((time.Hour).Milliseconds(), 10))
	} else if s.Retention > 0 {
		cfg["retention.ms"] = kadm.StringPtr(strconv.FormatInt(s.Retention.Milliseconds(), 10))
	}
	if s.MinInsyncReplicas > 0 {
		cfg["min.insync.replicas"] = kadm.StringPtr(strconv.Itoa(int(s.MinInsyncReplicas)))
	}
	// a 1 MiB record limit plus headroom for the DLQ's copy of an oversized input and its headers
	cfg["max.message.bytes"] = kadm.StringPtr(strconv.Itoa(2 << 20))
	return cfg
}

// TopicStatus is what EnsureTopics did with one topic.
type TopicStatus struct {
	Name       string
	Partitions int32
	// ReplicationFactor of a created topic; 0 means the broker's default.
	ReplicationFactor int16
	Created           bool
}

// EnsureTopics creates the topics that do not exist and verifies the ones that do: a compacted
// topic must be compacted, and every co-partitioned topic must have the same partition count.
// It never changes an existing topic; a mismatch is an error that names the topic.
func EnsureTopics(ctx context.Context, c Conn, specs []TopicSpec) ([]TopicStatus, error) {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 3*c.timeout())
	defer cancel()

	var out []TopicStatus
	for _, s := range specs {
		rf := s.ReplicationFactor
		if rf == 0 {
			rf = -1 // broker default (KIP-464)
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, rf, s.configs(), s.Name)
		switch {
		case err == nil && resp.Err == nil:
			out = append(out, TopicStatus{Name: s.Name, Partitions: s.Partitions, Created: true})
		case errors.Is(err, kerr.TopicAlreadyExists) || errors.Is(resp.Err, kerr.TopicAlreadyExists):
			out = append(out, TopicStatus{Name: s.Name})
		case err != nil:
			return out, fmt.Errorf("create topic %s: %w", s.Name, err)
		default:
			return out, fmt.Errorf("create topic %s: %w", s.Name, resp.Err)
		}
	}
	// A created topic shows in metadata only once the controller has propagated it, which can
	// take seconds on a busy broker: verify until it does or the deadline passes.
	for {
		err := VerifyTopics(ctx, adm, specs)
		if err == nil {
			break
		}
		var missing *MissingTopicsError
		if !errors.As(err, &missing) || ctx.Err() != nil {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(200 * time.Millisecond):
		}
	}
	details, err := adm.ListTopics(ctx, names(specs)...)
	if err != nil {
		return out, err
	}
	for i := range out {
		out[i].Partitions = int32(len(details[out[i].Name].Partitions))
	}
	return out, nil
}

func names(specs []TopicSpec) []string {
	n := make([]string, len(specs))
	for i, s := range specs {
		n[i] = s.Name
	}
	return n
}

// VerifyTopics checks that every topic exists, compacted topics are compacted only
// (cleanup.policy=compact, not compact,delete), and all
// co-partitioned topics have one partition count. The error lists every problem found.
func VerifyTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	details, err := adm.ListTopics(ctx, names(specs)...)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var problems []string
	missing := 0
	counts := map[int32][]string{}
	var compacted []string
	for _, s := range specs {
		d, ok := details[s.Name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			problems = append(problems, fmt.Sprintf("topic %s does not exist (run `retailflow topics create`)", s.Name))
			missing++
			continue
		}
		if d.Err != nil {
			problems = append(problems, fmt.Sprintf("topic %s: %v", s.Name, d.Err))
			continue
		}
		if s.CoPartitioned {
			n := int32(len(d.Partitions))
			counts[n] = append(counts[n], s.Name)
		}
		if s.Compacted {
			compacted = append(compacted, s.Name)
		}
	}
	if len(compacted) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, compacted...)
		if err != nil {
			return fmt.Errorf("describe topic configs: %w", err)
		}
		for _, rc := range rcs {
			policy := ""
			for _, cfg := range rc.Configs {
				if cfg.Key == "cleanup.policy" && cfg.Value != nil {
					policy = *cfg.Value
				}
			}
			// exactly compact: "compact,delete" also deletes by retention, and a quiet order's
			// state would vanish from the changelog
			if policy != "compact" {
				problems = append(problems, fmt.Sprintf("topic %s must have cleanup.policy=compact exactly, has %q (with delete, retention removes the state of quiet orders; fix: kafka-configs --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact)", rc.Name, policy, rc.Name))
			}
		}
	}
	if len(counts) > 1 {
		var parts []string
		for n, ts := range counts {
			sort.Strings(ts)
			parts = append(parts, fmt.Sprintf("%d partitions: %s", n, strings.Join(ts, ", ")))
		}
		sort.Strings(parts)
		problems = append(problems, "co-partitioned topics differ in partition count ("+strings.Join(parts, "; ")+"); every order-scoped topic needs the same count and key")
	}
	if len(problems) > 0 {
		if len(problems) == missing {
			return &MissingTopicsError{msg: strings.Join(problems, "; ")}
		}
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// MissingTopicsError is VerifyTopics' error when the only problem is topics that do not exist
// (yet: metadata of a just-created topic propagates asynchronously).
type MissingTopicsError struct{ msg string }

func (e *MissingTopicsError) Error() string { return e.msg }
