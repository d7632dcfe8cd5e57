package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/retailflow/retailflow/connectors/dlq"
	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
)

// KafkaConn maps the kafka section onto the connector's options.
func (c Config) KafkaConn() kafka.Conn {
	return kafka.Conn{
		Brokers: c.Kafka.Brokers, ClientID: c.Kafka.ClientID, TLS: c.KafkaTLS(),
		SASLMechanism: c.Kafka.SASL.Mechanism, SASLUser: c.Kafka.SASL.Username, SASLPassword: c.Kafka.SASL.Password,
		Timeout: c.Kafka.Timeout,
	}
}

// KafkaTLS is the TLS client configuration of kafka.tls*, built by Validate from the files;
// nil when kafka.tls is false. A Config that skipped Validate gets the system's roots.
func (c Config) KafkaTLS() *tls.Config {
	switch {
	case !c.Kafka.TLS:
		return nil
	case c.kafkaTLS != nil:
		return c.kafkaTLS
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.Kafka.TLSServerName}
}

// ClickHouseTLS is KafkaTLS for the clickhouse section.
func (c Config) ClickHouseTLS() *tls.Config {
	switch {
	case !c.ClickHouse.TLS:
		return nil
	case c.clickhouseTLS != nil:
		return c.clickhouseTLS
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ClickHouse.TLSServerName}
}

// KafkaConn is c.KafkaConn with franz-go's own warnings routed into the app's logger.
func (a *App) KafkaConn(c Config) kafka.Conn {
	k := c.KafkaConn()
	k.Logger = a.Logger(c)
	return k
}

// TopicNames maps every logical topic to its configured physical name.
func (c Config) TopicNames() map[schemas.Topic]string {
	return map[schemas.Topic]string{
		schemas.TopicOrders: c.Topics.Orders, schemas.TopicShipments: c.Topics.Shipments,
		schemas.TopicReturns: c.Topics.Returns, schemas.TopicLoyalty: c.Topics.Loyalty, schemas.TopicERP: c.Topics.ERP,
		schemas.TopicCommands: c.Topics.Commands, schemas.TopicChangelog: c.Topics.Changelog, schemas.TopicDLQ: c.Topics.DLQ,
	}
}

// RerouteTopic is topics.reroute, or <runtime.group>-reroute when it is not set.
func (c Config) RerouteTopic() string {
	if c.Topics.Reroute != "" {
		return c.Topics.Reroute
	}
	return c.Runtime.Group + "-reroute"
}

// TopicSpecs lists every topic retailflow needs: the order-scoped ones co-partitioned, the
// changelog compacted. The DLQ is keyed by the original key, so it is co-partitioned too.
func (c Config) TopicSpecs() []kafka.TopicSpec {
	retention := time.Duration(c.Topics.RetentionHours) * time.Hour
	names := c.TopicNames()
	var specs []kafka.TopicSpec
	for _, t := range []schemas.Topic{
		schemas.TopicOrders, schemas.TopicShipments, schemas.TopicReturns, schemas.TopicLoyalty, schemas.TopicERP,
		schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ,
	} {
		specs = append(specs, kafka.TopicSpec{
			Name: names[t], Partitions: c.Topics.Partitions, ReplicationFactor: c.Topics.ReplicationFactor, MinInsyncReplicas: c.Topics.MinInsyncReplicas, Retention: retention,
			Compacted: t == schemas.TopicChangelog, CoPartitioned: true,
		})
	}
	// Inputs that a producer placed off murmur2 are re-routed through this one (co-partitioned).
	specs = append(specs, kafka.TopicSpec{
		Name: c.RerouteTopic(), Partitions: c.Topics.Partitions, ReplicationFactor: c.Topics.ReplicationFactor,
		MinInsyncReplicas: c.Topics.MinInsyncReplicas, Retention: retention, CoPartitioned: true,
	})
	// The fingerprint of the topics `run` uses, recorded at its first start: a recreated,
	// truncated or repartitioned topic is refused (kafka.CheckTopicHistory).
	fp := kafka.FingerprintSpec(names[schemas.TopicChangelog], c.Topics.ReplicationFactor)
	fp.MinInsyncReplicas = c.Topics.MinInsyncReplicas
	specs = append(specs, fp)
	// The replay log: one record per replayed DLQ record, so a replay never sends one twice.
	specs = append(specs, kafka.TopicSpec{
		Name: dlq.ReplayLogTopic(names[schemas.TopicDLQ]), Partitions: 1,
		ReplicationFactor: c.Topics.ReplicationFactor, MinInsyncReplicas: c.Topics.MinInsyncReplicas, Compacted: true,
	})
	return specs
}

// LedgerPolicy maps the policy section onto the ledger's Policy; a value that is not a
// decimal, or a policy the ledger refuses, is a *ConfigError naming the key.
func (c Config) LedgerPolicy() (ledger.Policy, error) {
	p := ledger.Policy{
		Version: c.Policy.Version, ExcludedSKUs: c.Policy.ExcludedSKUs,
		LockDays: c.Policy.LockDays, ReturnWindowDays: c.Policy.ReturnWindowDays,
		OrphanGrace: c.Policy.OrphanGrace, RetentionAfterClose: c.Policy.RetentionAfterClose,
		MaxEventsPerOrder: c.Policy.MaxEventsPerOrder, ConfirmTrigger: ledger.ConfirmTrigger(c.Policy.ConfirmTrigger),
		EarnRates: map[string]decimal.Decimal{}, TierMultipliers: map[string]decimal.Decimal{},
	}
	parse := func(key, v string) (decimal.Decimal, error) {
		d, err := decimal.NewFromString(v)
		if err != nil {
			return d, &ConfigError{Key: key, Problem: fmt.Sprintf("%q is not a decimal", v)}
		}
		return d, nil
	}
	var err error
	for cur, v := range c.Policy.EarnRates {
		// viper lower-cases map keys; currencies and tiers are upper case by convention.
		if p.EarnRates[strings.ToUpper(cur)], err = parse("policy.earn_rates."+cur, v); err != nil {
			return p, err
		}
	}
	for tier, v := range c.Policy.TierMultipliers {
		if p.TierMultipliers[strings.ToUpper(tier)], err = parse("policy.tier_multipliers."+tier, v); err != nil {
			return p, err
		}
	}
	if p.AmountTolerance, err = parse("policy.amount_tolerance", c.Policy.AmountTolerance); err != nil {
		return p, err
	}
	if err := p.Validate(); err != nil {
		var pe *ledger.PolicyError
		if errors.As(err, &pe) {
			return p, &ConfigError{Key: "policy." + snake(pe.Field), Problem: pe.Problem}
		}
		return p, err
	}
	return p, nil
}

// snake turns a Go field name (EarnRates) into its config key (earn_rates).
func snake(field string) string {
	var b strings.Builder
	for i, r := range field {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
