// Command schemagen turns the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json of
// the k8s.io/kubernetes Go module, fetched with `go mod download`) into one standalone, strict
// JSON schema per kind, laid out for kubeconform's -schema-location template
//
//	DIR/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json
//
// (Group is the API group, or the version for the core group: configmap-v1-v1.json,
// statefulset-apps-v1.json). helm/test.sh uses it because kubeconform's default schema source
// is not reachable from here; the conversion follows openapi2jsonschema's rules:
//
//   - each file holds the kind's definition at the top level and every definition it references
//     under "definitions" (refs keep their "#/definitions/…" form);
//   - strict: an object with declared properties gets additionalProperties: false, so a
//     misspelt or misplaced field fails validation;
//   - IntOrString accepts a string or an integer, Quantity a string or a number, as the API
//     server does.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

func main() {
	swagger := flag.String("swagger", "", "path of the Kubernetes swagger.json")
	out := flag.String("out", "", "directory to write the schemas into")
	flag.Parse()
	if *swagger == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: schemagen -swagger swagger.json -out DIR")
		os.Exit(2)
	}
	n, err := generate(*swagger, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "schemagen: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("schemagen: wrote %d schemas to %s\n", n, *out)
}

func generate(swaggerPath, outDir string) (int, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return 0, fmt.Errorf("%s: no definitions", swaggerPath)
	}
	defs := doc.Definitions
	for name, def := range defs {
		switch {
		case strings.HasSuffix(name, ".intstr.IntOrString"):
			defs[name] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		case strings.HasSuffix(name, ".resource.Quantity"):
			defs[name] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
		default:
			strict(def)
		}
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return 0, err
	}
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	written := 0
	for _, name := range names {
		var kinds []gvk
		if x, ok := defs[name]["x-kubernetes-group-version-kind"]; ok {
			b, _ := json.Marshal(x)
			if err := json.Unmarshal(b, &kinds); err != nil {
				return written, fmt.Errorf("definition %s: x-kubernetes-group-version-kind: %w", name, err)
			}
		}
		if len(kinds) != 1 { // 0: not a kind; >1: shared types such as DeleteOptions
			continue
		}
		k := kinds[0]
		schema := map[string]any{"$schema": "http://json-schema.org/draft-07/schema#"}
		for key, v := range defs[name] {
			schema[key] = v
		}
		closure := map[string]any{}
		collect(defs[name], defs, closure)
		if len(closure) > 0 {
			schema["definitions"] = closure
		}
		group := k.Group
		if group == "" {
			group = k.Version
		}
		file := filepath.Join(outDir, fmt.Sprintf("%s-%s-%s.json", strings.ToLower(k.Kind), group, k.Version))
		b, err := json.Marshal(schema)
		if err != nil {
			return written, fmt.Errorf("definition %s: %w", name, err)
		}
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
}

// strict forbids undeclared fields in v and every object schema nested in it.
func strict(v any) {
	switch s := v.(type) {
	case map[string]any:
		if props, ok := s["properties"].(map[string]any); ok && len(props) > 0 {
			if _, set := s["additionalProperties"]; !set {
				s["additionalProperties"] = false
			}
		}
		for _, child := range s {
			strict(child)
		}
	case []any:
		for _, child := range s {
			strict(child)
		}
	}
}

// collect adds to into every definition v references, transitively.
func collect(v any, defs map[string]map[string]any, into map[string]any) {
	switch s := v.(type) {
	case map[string]any:
		if ref, ok := s["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			if _, seen := into[name]; !seen {
				if def, ok := defs[name]; ok {
					into[name] = def
					collect(def, defs, into)
				}
			}
		}
		for _, child := range s {
			collect(child, defs, into)
		}
	case []any:
		for _, child := range s {
			collect(child, defs, into)
		}
	}
}
