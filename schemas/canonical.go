package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ParsingCanonicalForm returns the Parsing Canonical Form of an Avro schema exactly as the Avro
// specification defines it ("Schema Resolution → Parsing Canonical Form for Schemas"), the form
// Java's SchemaNormalization.toParsingForm and fastavro's to_parsing_canonical_form produce:
//
//   - PRIMITIVES: {"type":"int"} becomes "int";
//   - FULLNAMES: names are replaced by fullnames, and "namespace" is dropped;
//   - STRIP: only name, type, fields, symbols, items, values and size are kept (doc, aliases,
//     default, order and logicalType with its precision/scale go: a decimal is its "bytes");
//   - ORDER: attributes in the order name, type, fields, symbols, items, values, size;
//   - STRINGS, INTEGERS, WHITESPACE: no escapes beyond JSON's required ones, plain integers,
//     no whitespace;
//   - a named type is written in full where it is first defined and by its fullname after.
//
// goavro's CanonicalSchema keeps logical types, so its form (and a hash of it) differs from what
// a producer in another language computes; offline schema ids use this form (see SchemaID).
func ParsingCanonicalForm(schema string) (string, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(schema))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("schemas: schema is not JSON: %w", err)
	}
	c := canonicalizer{defined: map[string]bool{}}
	var b strings.Builder
	if err := c.write(&b, v, ""); err != nil {
		return "", err
	}
	return b.String(), nil
}

type canonicalizer struct {
	defined map[string]bool // fullnames of the named types written so far
}

func (c *canonicalizer) write(b *strings.Builder, v any, ns string) error {
	switch x := v.(type) {
	case string:
		if primitives[x] {
			writeCanonicalString(b, x)
			return nil
		}
		writeCanonicalString(b, fullName(x, ns))
		return nil
	case []any:
		b.WriteByte('[')
		for i, branch := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := c.write(b, branch, ns); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case map[string]any:
		return c.writeObject(b, x, ns)
	default:
		return fmt.Errorf("schemas: %v is not a schema (want a type name, a union or an object)", v)
	}
}

func (c *canonicalizer) writeObject(b *strings.Builder, x map[string]any, ns string) error {
	typ, ok := x["type"].(string)
	if !ok {
		if nested, isNested := x["type"]; isNested {
			// {"type": {...}} or {"type": [...]}: the object only wraps another schema.
			return c.write(b, nested, ns)
		}
		return fmt.Errorf("schemas: object without a type: %v", x)
	}
	switch typ {
	case "record", "error", "enum", "fixed":
		name, _ := x["name"].(string)
		if name == "" {
			return fmt.Errorf("schemas: a %s without a name", typ)
		}
		if own, _ := x["namespace"].(string); own != "" && !strings.Contains(name, ".") {
			ns = own
		}
		full := fullName(name, ns)
		if c.defined[full] {
			writeCanonicalString(b, full)
			return nil
		}
		c.defined[full] = true
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			ns = full[:i] // the namespace of everything defined inside
		} else {
			ns = ""
		}
		b.WriteString(`{"name":`)
		writeCanonicalString(b, full)
		b.WriteString(`,"type":`)
		writeCanonicalString(b, typ)
		switch typ {
		case "record", "error":
			fields, _ := x["fields"].([]any)
			b.WriteString(`,"fields":[`)
			for i, f := range fields {
				fo, ok := f.(map[string]any)
				if !ok {
					return fmt.Errorf("schemas: field %d of %s is not an object", i, full)
				}
				fname, _ := fo["name"].(string)
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`{"name":`)
				writeCanonicalString(b, fname)
				b.WriteString(`,"type":`)
				if err := c.write(b, fo["type"], ns); err != nil {
					return fmt.Errorf("%s.%s: %w", full, fname, err)
				}
				b.WriteByte('}')
			}
			b.WriteByte(']')
		case "enum":
			symbols, _ := x["symbols"].([]any)
			b.WriteString(`,"symbols":[`)
			for i, s := range symbols {
				if i > 0 {
					b.WriteByte(',')
				}
				str, _ := s.(string)
				writeCanonicalString(b, str)
			}
			b.WriteByte(']')
		case "fixed":
			size, err := canonicalInt(x["size"])
			if err != nil {
				return fmt.Errorf("schemas: fixed %s: size: %w", full, err)
			}
			b.WriteString(`,"size":`)
			b.WriteString(size)
		}
		b.WriteByte('}')
		return nil
	case "array":
		b.WriteString(`{"type":"array","items":`)
		if err := c.write(b, x["items"], ns); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	case "map":
		b.WriteString(`{"type":"map","values":`)
		if err := c.write(b, x["values"], ns); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	default:
		// A primitive, possibly with a logical type or other attributes: all stripped.
		return c.write(b, typ, ns)
	}
}

func canonicalInt(v any) (string, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(i, 10), nil
	case string: // [INTEGERS] "eliminate quotes around … JSON integer literals"
		i, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(i, 10), nil
	}
	return "", fmt.Errorf("%v is not an integer", v)
}

// writeCanonicalString writes s as a JSON string literal with only the escapes JSON requires
// ([STRINGS]: other characters are written as UTF-8).
func writeCanonicalString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
