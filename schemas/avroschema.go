package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// avroType is the parsed form of an Avro schema, just enough of it to plan the mapping to Go
// types and to compute defaults; goavro does the bytes. Named types are shared pointers, so a
// recursive schema is a cyclic graph.
type avroType struct {
	kind     string // null boolean int long float double bytes string record enum array map union fixed
	logical  string // decimal, timestamp-micros, timestamp-millis, … ("" when none)
	prec     int    // decimal precision
	scale    int    // decimal scale
	name     string // full name of a named type
	fields   []*avroField
	items    *avroType // array
	values   *avroType // map
	branches []*avroType
	symbols  []string // enum
	size     int      // fixed
}

type avroField struct {
	name   string
	typ    *avroType
	def    any // the JSON default, decoded with UseNumber
	hasDef bool
}

// shortName is the name without its namespace.
func (t *avroType) shortName() string {
	if i := strings.LastIndexByte(t.name, '.'); i >= 0 {
		return t.name[i+1:]
	}
	return t.name
}

// unionKey is the key goavro uses for this type as a union member.
func (t *avroType) unionKey() string {
	switch {
	case t.name != "":
		return t.name
	case t.logical == "decimal" && t.kind == "bytes":
		return "bytes.decimal"
	case t.logical != "":
		return t.kind + "." + t.logical
	}
	return t.kind
}

func (t *avroType) String() string {
	switch {
	case t.name != "":
		return t.kind + " " + t.name
	case t.logical == "decimal":
		return fmt.Sprintf("decimal(%d,%d)", t.prec, t.scale)
	case t.logical != "":
		return t.kind + "." + t.logical
	case t.kind == "array":
		return "array<" + t.items.String() + ">"
	case t.kind == "map":
		return "map<" + t.values.String() + ">"
	case t.kind == "union":
		parts := make([]string, len(t.branches))
		for i, b := range t.branches {
			parts[i] = b.String()
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return t.kind
}

// field returns the record field with that name, or nil.
func (t *avroType) field(name string) *avroField {
	for _, f := range t.fields {
		if f.name == name {
			return f
		}
	}
	return nil
}

// nullable reports whether t is a union with a null branch, and the single other branch when
// there is exactly one.
func (t *avroType) nullable() (other *avroType, ok bool) {
	if t.kind != "union" {
		return nil, false
	}
	hasNull := false
	for _, b := range t.branches {
		if b.kind == "null" {
			hasNull = true
		} else if other == nil {
			other = b
		} else {
			return nil, hasNull
		}
	}
	return other, hasNull
}

// parseAvroSchema parses schema text into an avroType, resolving named references with the
// Avro namespace rules.
func parseAvroSchema(text string) (*avroType, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	p := &schemaParser{named: map[string]*avroType{}}
	return p.parse(v, "")
}

type schemaParser struct {
	named map[string]*avroType
}

var primitives = map[string]bool{"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true}

func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return name
	}
	return ns + "." + name
}

func (p *schemaParser) parse(v any, ns string) (*avroType, error) {
	switch x := v.(type) {
	case string:
		if primitives[x] {
			return &avroType{kind: x}, nil
		}
		if t, ok := p.named[fullName(x, ns)]; ok {
			return t, nil
		}
		if t, ok := p.named[x]; ok {
			return t, nil
		}
		return nil, fmt.Errorf("unknown type %q", x)
	case []any:
		u := &avroType{kind: "union"}
		for _, b := range x {
			bt, err := p.parse(b, ns)
			if err != nil {
				return nil, err
			}
			u.branches = append(u.branches, bt)
		}
		return u, nil
	case map[string]any:
		return p.parseObject(x, ns)
	}
	return nil, fmt.Errorf("unexpected schema element %T", v)
}

func (p *schemaParser) parseObject(x map[string]any, ns string) (*avroType, error) {
	typ, _ := x["type"].(string)
	if typ == "" {
		// {"type": {...}} or {"type": [...]}: a wrapped type.
		if inner, ok := x["type"]; ok {
			return p.parse(inner, ns)
		}
		return nil, fmt.Errorf("schema object without type")
	}
	logical, _ := x["logicalType"].(string)
	switch typ {
	case "record", "error", "enum", "fixed":
		name, _ := x["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("%s without name", typ)
		}
		if n, ok := x["namespace"].(string); ok && !strings.Contains(name, ".") {
			ns = n
		}
		full := fullName(name, ns)
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			ns = full[:i]
		} else {
			ns = ""
		}
		t := &avroType{kind: typ, name: full, logical: logical}
		if typ == "error" {
			t.kind = "record"
		}
		p.named[full] = t
		switch typ {
		case "enum":
			syms, _ := x["symbols"].([]any)
			for _, s := range syms {
				str, _ := s.(string)
				t.symbols = append(t.symbols, str)
			}
		case "fixed":
			t.size = intAttr(x, "size")
			if logical == "decimal" {
				t.prec, t.scale = intAttr(x, "precision"), intAttr(x, "scale")
			}
		default:
			fs, _ := x["fields"].([]any)
			for _, f := range fs {
				fm, ok := f.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("record %s: field is not an object", full)
				}
				fname, _ := fm["name"].(string)
				ft, err := p.parse(fm["type"], ns)
				if err != nil {
					return nil, fmt.Errorf("record %s field %s: %w", full, fname, err)
				}
				def, hasDef := fm["default"]
				t.fields = append(t.fields, &avroField{name: fname, typ: ft, def: def, hasDef: hasDef})
			}
		}
		return t, nil
	case "array":
		it, err := p.parse(x["items"], ns)
		if err != nil {
			return nil, err
		}
		return &avroType{kind: "array", items: it}, nil
	case "map":
		vt, err := p.parse(x["values"], ns)
		if err != nil {
			return nil, err
		}
		return &avroType{kind: "map", values: vt}, nil
	}
	if !primitives[typ] {
		// {"type": "SomeNamedType"}
		return p.parse(typ, ns)
	}
	t := &avroType{kind: typ, logical: logical}
	if logical == "decimal" {
		t.prec, t.scale = intAttr(x, "precision"), intAttr(x, "scale")
	}
	return t, nil
}

func intAttr(x map[string]any, k string) int {
	n, _ := x[k].(json.Number)
	i, _ := n.Int64()
	return int(i)
}

// compactJSON strips insignificant whitespace, so ids do not depend on formatting.
func compactJSON(text string) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(text)); err != nil {
		return "", err
	}
	return b.String(), nil
}
