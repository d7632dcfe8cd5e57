package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/schemas"
)

func newTopicsCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "Create or verify the topics retailflow needs"}
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Create missing topics (order-scoped ones co-partitioned, the changelog compacted), register schemas, verify",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Kafka(cmd.Context())
			if err != nil {
				return err
			}
			statuses, err := kafka.EnsureTopics(cmd.Context(), c.KafkaConn(), c.TopicSpecs())
			for _, s := range statuses {
				verb := "exists"
				if s.Created {
					verb = "created"
				}
				fmt.Fprintf(app.Stdout, "%-40s %s (%d partitions)\n", s.Name, verb, s.Partitions)
			}
			if err != nil {
				return err
			}
			return registerSchemas(cmd, app, c)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Check that every topic exists, the changelog is compacted and order-scoped topics are co-partitioned",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Kafka(cmd.Context())
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(c.KafkaConn().Options()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := kafka.VerifyTopics(cmd.Context(), kadm.NewClient(cl), c.TopicSpecs()); err != nil {
				return err
			}
			fmt.Fprintln(app.Stdout, "topics ok")
			return nil
		},
	})
	cmd.AddCommand(newTopicsAcceptCmd(app))
	return cmd
}

// registerSchemas registers every embedded schema under <topic>-value with BACKWARD
// compatibility when a registry is configured; offline mode has nothing to register.
func registerSchemas(cmd *cobra.Command, app *App, c Config) error {
	cl, err := c.registryClient()
	if err != nil || cl == nil {
		if err == nil {
			fmt.Fprintln(app.Stdout, "schemas: offline mode (no registry.url), ids derived from the embedded schemas")
		}
		return err
	}
	ids, err := schemas.RegisterSchemas(cmd.Context(), cl, c.TopicNames())
	if err != nil {
		return err
	}
	for t, id := range ids {
		fmt.Fprintf(app.Stdout, "schema %-40s id %d\n", schemas.Subject(c.TopicNames()[t]), id)
	}
	return nil
}
