package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/retailflow/retailflow/schemas"
)

// registryClient returns the schema registry client the config names, or nil for offline mode.
func (c Config) registryClient() (*sr.Client, error) {
	if c.Registry.URL == "" {
		return nil, nil
	}
	opts := []sr.ClientOpt{sr.URLs(c.Registry.URL)}
	if c.Registry.Username != "" {
		opts = append(opts, sr.BasicAuth(c.Registry.Username, c.Registry.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry.url %s: %w", c.Registry.URL, err)
	}
	return cl, nil
}

// NewSerde builds the serde for the configured topics: registry-backed when registry.url is
// set, offline (ids derived from the embedded schemas) otherwise.
func (c Config) NewSerde(ctx context.Context) (*schemas.Serde, error) {
	opts := []schemas.SerdeOption{schemas.WithPhysicalTopics(c.TopicNames())}
	cl, err := c.registryClient()
	if err != nil {
		return nil, err
	}
	if cl != nil {
		opts = append(opts, schemas.WithRegistry(cl))
	}
	return schemas.NewSerde(ctx, opts...)
}

// LogicalTopic accepts a logical name ("orders") or the configured physical name
// ("retail.orders.v1") and returns the logical topic.
func (c Config) LogicalTopic(name string) (schemas.Topic, error) {
	for logical, physical := range c.TopicNames() {
		if name == string(logical) || name == physical {
			return logical, nil
		}
	}
	return "", &usageError{msg: fmt.Sprintf("--topic %q is not a retailflow topic (logical names: orders, shipments, returns, loyalty, erp, loyalty-commands, order-ledger-changelog, dlq; or their configured names)", name)}
}
