package main

import (
	"time"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

// KafkaConn maps the kafka section onto the connector's options.
func (c Config) KafkaConn() kafka.Conn {
	return kafka.Conn{
		Brokers: c.Kafka.Brokers, ClientID: c.Kafka.ClientID, TLS: c.Kafka.TLS,
		SASLMechanism: c.Kafka.SASL.Mechanism, SASLUser: c.Kafka.SASL.Username, SASLPassword: c.Kafka.SASL.Password,
		Timeout: c.Kafka.Timeout,
	}
}

// TopicNames maps every logical topic to its configured physical name.
func (c Config) TopicNames() map[schemas.Topic]string {
	return map[schemas.Topic]string{
		schemas.TopicOrders: c.Topics.Orders, schemas.TopicShipments: c.Topics.Shipments,
		schemas.TopicReturns: c.Topics.Returns, schemas.TopicLoyalty: c.Topics.Loyalty, schemas.TopicERP: c.Topics.ERP,
		schemas.TopicCommands: c.Topics.Commands, schemas.TopicChangelog: c.Topics.Changelog, schemas.TopicDLQ: c.Topics.DLQ,
	}
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
			Name: names[t], Partitions: c.Topics.Partitions, Retention: retention,
			Compacted: t == schemas.TopicChangelog, CoPartitioned: true,
		})
	}
	return specs
}
