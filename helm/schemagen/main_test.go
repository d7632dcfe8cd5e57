package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

const swaggerFixture = `{"definitions": {
  "io.k8s.api.apps.v1.StatefulSet": {
    "type": "object",
    "properties": {"apiVersion": {"type": "string"}, "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.StatefulSetSpec"}},
    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "StatefulSet", "version": "v1"}]
  },
  "io.k8s.api.apps.v1.StatefulSetSpec": {
    "type": "object",
    "properties": {"replicas": {"type": "integer"}, "maxUnavailable": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}}
  },
  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
  "io.k8s.api.core.v1.ConfigMap": {
    "type": "object",
    "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}},
    "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}]
  },
  "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {
    "type": "object", "properties": {"kind": {"type": "string"}},
    "x-kubernetes-group-version-kind": [{"group": "", "kind": "DeleteOptions", "version": "v1"}, {"group": "apps", "kind": "DeleteOptions", "version": "v1"}]
  }
}}`

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "swagger.json")
	if err := os.WriteFile(in, []byte(swaggerFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "schemas")
	n, err := generate(in, out)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("wrote %d schemas, want 2 (StatefulSet, ConfigMap; DeleteOptions is shared by several kinds)", n)
	}
	var sts map[string]any
	b, err := os.ReadFile(filepath.Join(out, "statefulset-apps-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sts); err != nil {
		t.Fatal(err)
	}
	if sts["additionalProperties"] != false {
		t.Errorf("top-level additionalProperties = %v, want false (strict)", sts["additionalProperties"])
	}
	defs, _ := sts["definitions"].(map[string]any)
	spec, _ := defs["io.k8s.api.apps.v1.StatefulSetSpec"].(map[string]any)
	if spec == nil || spec["additionalProperties"] != false {
		t.Errorf("referenced StatefulSetSpec missing or not strict: %v", spec)
	}
	ios, _ := defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].(map[string]any)
	if _, ok := ios["oneOf"]; !ok {
		t.Errorf("IntOrString = %v, want oneOf string|integer", ios)
	}
	if _, err := os.Stat(filepath.Join(out, "configmap-v1-v1.json")); err != nil {
		t.Errorf("core-group kind not written as configmap-v1-v1.json: %v", err)
	}
	var cm map[string]any
	b, _ = os.ReadFile(filepath.Join(out, "configmap-v1-v1.json"))
	_ = json.Unmarshal(b, &cm)
	data, _ := cm["properties"].(map[string]any)["data"].(map[string]any)
	if ap, ok := data["additionalProperties"].(map[string]any); !ok || ap["type"] != "string" {
		t.Errorf("a map's additionalProperties schema was overwritten: %v", data)
	}
}
