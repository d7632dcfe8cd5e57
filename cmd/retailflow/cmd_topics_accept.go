package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/retailflow/retailflow/connectors/kafka"
)

// newTopicsAcceptCmd is `retailflow topics accept-changes`: the explicit step after a refusal
// of `run` for topics that changed behind its back (README "Recovery").
func newTopicsAcceptCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "accept-changes",
		Short: "Record the topics as they are now, after a refused `run` start has been dealt with (README \"Recovery\")",
		Long: `run refuses to start when a topic it uses was deleted and created again, changed its
partition count, or lost records from its changelog since the fingerprint it recorded at its first
start (in <topics.changelog>.fingerprint), or when the group's committed offset of an input is past
the input's end. Once the state has been rebuilt or the topics restored (README "Recovery"), this
command prints what changed and records the topics as they are now; the next run starts.

It does not change any topic, offset or state. Run it with every processor instance stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.Kafka(cmd.Context())
			if err != nil {
				return err
			}
			top := c.LedgerTopology()
			h := top.Stages[0].HistorySpec(c.Runtime.Group, top.DLQ)
			accepted, err := kafka.AcceptTopicChanges(cmd.Context(), c.KafkaConn(), h)
			if err != nil {
				return err
			}
			for _, p := range accepted {
				fmt.Fprintln(app.Stdout, "accepted:", p)
			}
			fmt.Fprintf(app.Stdout, "recorded the fingerprint of %d topics in %s (%d changes accepted)\n",
				len(h.Inputs)+1+len(h.Outputs), kafka.FingerprintTopic(h.Changelog), len(accepted))
			return nil
		},
	}
}
