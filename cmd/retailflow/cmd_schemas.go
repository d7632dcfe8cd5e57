package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/retailflow/retailflow/schemas"
)

// schemaRow is what an upstream team needs to produce to one topic: where, under which
// subject, with which schema id in the Confluent header, and the schema itself.
type schemaRow struct {
	Topic       string `json:"topic"`
	Subject     string `json:"subject"`
	Schema      string `json:"schema"`
	OfflineID   int    `json:"offline_id"`
	RegistryID  int    `json:"registry_id,omitempty"`
	Fingerprint string `json:"fingerprint_sha256"`
	// Released versions the pipeline decodes offline, with the ids producers may still use.
	Released []releasedRow `json:"released"`
}

type releasedRow struct {
	Version   int `json:"version"`
	OfflineID int `json:"offline_id"`
	LegacyID  int `json:"legacy_id"`
}

func newSchemasCmd(app *App) *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "List each topic's subject, schema id and fingerprint (offline and, with registry.url, registered); --out writes the .avsc files",
		Long: `Lists, for every topic retailflow reads or writes, the Confluent subject (<topic>-value), the
schema id a producer puts in the 5-byte header, and the SHA-256 fingerprint of the schema's
Parsing Canonical Form. Offline ids (no registry.url) are the first four bytes of that
fingerprint with the top bit cleared, so any Avro library computes them. With registry.url set,
the id the registry assigned is shown as well (the schemas must be registered: topics create).
--out DIR writes every current schema as DIR/<schema>.avsc and every released version as
DIR/released/<schema>/v<N>.avsc.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			c, err := app.Config()
			if err != nil {
				return err
			}
			reg, err := c.registryClient()
			if err != nil {
				return err
			}
			var rows []schemaRow
			names := c.TopicNames()
			topics := make([]schemas.Topic, 0, len(names))
			for t := range names {
				topics = append(topics, t)
			}
			sort.Slice(topics, func(i, j int) bool { return names[topics[i]] < names[topics[j]] })
			for _, t := range topics {
				name, ok := schemas.ValueSchema(t)
				if !ok {
					continue
				}
				text, err := schemas.SchemaText(name)
				if err != nil {
					return err
				}
				row := schemaRow{Topic: names[t], Subject: schemas.Subject(names[t]), Schema: string(name)}
				if row.OfflineID, err = schemas.OfflineSchemaID(text); err != nil {
					return fmt.Errorf("schema %s: %w", name, err)
				}
				if row.Fingerprint, err = schemas.SchemaFingerprint(text); err != nil {
					return fmt.Errorf("schema %s: %w", name, err)
				}
				if reg != nil {
					ss, err := reg.LookupSchema(cmd.Context(), row.Subject, sr.Schema{Schema: text, Type: sr.TypeAvro})
					if err != nil {
						return fmt.Errorf("registry.url %s: subject %s: %w (run `retailflow topics create` to register)", c.Registry.URL, row.Subject, err)
					}
					row.RegistryID = ss.ID
				}
				released, err := schemas.ReleasedSchemas(name)
				if err != nil {
					return err
				}
				row.Released = []releasedRow{}
				for _, r := range released {
					rr := releasedRow{Version: r.Version}
					if rr.OfflineID, err = schemas.OfflineSchemaID(r.Text); err != nil {
						return err
					}
					if rr.LegacyID, err = schemas.LegacyOfflineSchemaID(r.Text); err != nil {
						return err
					}
					row.Released = append(row.Released, rr)
					if out != "" {
						if err := writeSchemaFile(filepath.Join(out, "released", string(name), fmt.Sprintf("v%d.avsc", r.Version)), r.Text); err != nil {
							return err
						}
					}
				}
				if out != "" {
					if err := writeSchemaFile(filepath.Join(out, string(name)+".avsc"), text); err != nil {
						return err
					}
				}
				rows = append(rows, row)
			}
			if format == "json" {
				enc := json.NewEncoder(app.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(app.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tSUBJECT\tSCHEMA\tOFFLINE ID\tREGISTRY ID\tFINGERPRINT (SHA-256 of the canonical form)\tRELEASED (version:offline id/legacy id)")
			for _, r := range rows {
				regID := "-"
				if r.RegistryID != 0 {
					regID = fmt.Sprint(r.RegistryID)
				}
				rel := ""
				for i, v := range r.Released {
					if i > 0 {
						rel += " "
					}
					rel += fmt.Sprintf("v%d:%d/%d", v.Version, v.OfflineID, v.LegacyID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Topic, r.Subject, r.Schema, r.OfflineID, regID, r.Fingerprint, rel)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the .avsc files into this directory")
	cmd.Flags().StringVar(&format, "format", "text", "text|json")
	return cmd
}

func writeSchemaFile(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}
