package schemas

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hamba/avro/v2"
	"github.com/linkedin/goavro/v2"
	"github.com/shopspring/decimal"
)

// Every released version of every schema lives in avro/released/<name>/v<N>.avsc (embedded:
// offline decoding knows their ids, see ReleasedSchemas). When a
// schema changes, the previous file stays and the new one is released as the next version;
// this test proves the current schema can read data written with every earlier one (BACKWARD,
// as the registry is configured), using hamba/avro's implementation of Avro's resolution rules
// (srfake accepts anything), and then reads real bytes through our own resolving codec.

func parseHamba(t *testing.T, text string) avro.Schema {
	t.Helper()
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func releasedVersions(t *testing.T, name SchemaName) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("avro", "released", string(name), "v*.avsc"))
	sort.Strings(files)
	return files
}

func TestSchemasBackwardCompatibleWithReleasedVersions(t *testing.T) {
	for _, name := range SchemaNames() {
		t.Run(string(name), func(t *testing.T) {
			versions := releasedVersions(t, name)
			if len(versions) == 0 {
				if name == "order_ledger" {
					t.Skip("order_ledger (owned by processors/ledger) has no released snapshot yet")
				}
				t.Fatalf("no released version under avro/released/%s: snapshot the schema as v1.avsc", name)
			}
			cur, _ := SchemaText(name)
			reader := parseHamba(t, cur)
			for _, v := range versions {
				old, err := os.ReadFile(v)
				if err != nil {
					t.Fatal(err)
				}
				if err := avro.NewSchemaCompatibility().Compatible(reader, parseHamba(t, string(old))); err != nil {
					t.Errorf("current %s cannot read data written with %s: %v", name, v, err)
				}
				if err := sameDecimals(cur, string(old)); err != nil {
					t.Errorf("current %s vs %s: %v", name, v, err)
				}
			}
		})
	}
}

// The check above must fail for a breaking change, or it proves nothing.
func TestCompatibilityCheckCatchesBreakingChanges(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("avro", "released", "shipments", "v1.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	writer := parseHamba(t, string(v1))
	for _, tc := range []struct{ name, from, to string }{
		{"new field without default", `{"name": "is_reship", "type": "boolean"},`,
			`{"name": "is_reship", "type": "boolean"}, {"name": "weight_kg", "type": "string"},`},
		{"changed decimal scale", `"precision": 12, "scale": 3`, `"precision": 12, "scale": 2`},
		{"type change", `{"name": "is_reship", "type": "boolean"}`, `{"name": "is_reship", "type": "string"}`},
		{"renamed record", `"name": "ShipmentLine"`, `"name": "ShipLine"`},
	} {
		changed := strings.Replace(string(v1), tc.from, tc.to, 1)
		if changed == string(v1) {
			t.Fatalf("%s: edit did not apply", tc.name)
		}
		if avro.NewSchemaCompatibility().Compatible(parseHamba(t, changed), writer) == nil && sameDecimals(changed, string(v1)) == nil {
			t.Errorf("%s: reported compatible", tc.name)
		}
	}
	// And a compatible evolution passes: a new optional field and a new event type.
	changed := strings.Replace(string(v1), `{"name": "is_reship", "type": "boolean"},`,
		`{"name": "is_reship", "type": "boolean"}, {"name": "weight_kg", "type": ["null", "string"], "default": null},`, 1)
	if err := avro.NewSchemaCompatibility().Compatible(parseHamba(t, changed), writer); err != nil {
		t.Errorf("optional field reported incompatible: %v", err)
	}
}

// Real bytes written with each released version decode into today's Go types. The bytes of an
// older version are what its writers produce: the event as the current schema encodes it,
// re-encoded by goavro with the older schema (which leaves out what that version does not have —
// the strict Go encoder refuses to, it would lose a field). An event whose body the older
// version has no branch for cannot have been written by it and is skipped; a field it lacks
// must decode as the reader's default (for erp v1's billing documents, redemption_value null:
// unknown, never 0).
func TestReleasedVersionsDecodeIntoCurrentTypes(t *testing.T) {
	for _, e := range sampleEvents() {
		topic, _ := TopicOf(e.BodyType())
		name, _ := ValueSchema(topic)
		cur, _ := SchemaText(name)
		curCodec, err := NewCodecFromSchema[Event](cur)
		if err != nil {
			t.Fatal(err)
		}
		curAvro, err := goavro.NewCodec(cur)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range releasedVersions(t, name) {
			old, _ := os.ReadFile(v)
			if !strings.Contains(string(old), `"name": "`+string(e.BodyType())+`"`) && e.LoyaltyCommand == nil {
				continue // a body this version has no branch for
			}
			oldAvro, err := goavro.NewCodec(string(old))
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			b, err := curCodec.Encode(e)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			native, _, err := curAvro.NativeFromBinary(b)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			b, err = oldAvro.BinaryFromNative(nil, native)
			if err != nil {
				t.Fatalf("%s: written with %s: %v", e.EventType, v, err)
			}
			r, err := NewResolvingCodec[Event](string(old), cur)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			got, err := r.Decode(b)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			want := *e
			if !strings.Contains(string(old), `"redemption_value"`) {
				for _, d := range []**BillingDocument{&want.InvoicePosted, &want.CreditMemoPosted} {
					if *d != nil {
						c := **d
						c.RedemptionValue = nil // unknown to a v1 writer: must not come back as 0
						*d = &c
					}
				}
			}
			if d := cmp.Diff(&want, got); d != "" {
				t.Fatalf("%s %s:\n%s", v, e.EventType, d)
			}
		}
	}
}

// erp v2 adds an optional field: the strict Go encoder refuses to write the current type with
// the v1 schema (it would lose redemption_value; only goavro-style writers of v1 exist), and
// v2 bytes keep the value. That v1 bytes decode with it unknown (nil, not 0) is the previous
// test's erp/v1 case.
func TestErpRedemptionValueAddedOptional(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("avro", "released", "erp", "v1.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCodecFromSchema[Event](string(v1)); err == nil || !strings.Contains(err.Error(), `"redemption_value"`) {
		t.Fatalf("v1 writer codec: err = %v, want the lost-field refusal", err)
	}
	cur, _ := SchemaText("erp")
	c, err := NewCodecFromSchema[Event](cur)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sampleEvents() {
		if e.InvoicePosted == nil {
			continue
		}
		b, err := c.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if rv := got.InvoicePosted.RedemptionValue; rv == nil || !rv.Equal(decimal.RequireFromString("10")) {
			t.Fatalf("redemption_value = %v, want 10.00", rv)
		}
	}
}

// Resolution fills fields the writer lacked with the reader's defaults, not Go zero values.
func TestResolvingCodecUsesReaderDefaults(t *testing.T) {
	writer := strings.Replace(ledgerLikeSchema, `{"name":"n","type":"long"},`, ``, 1)
	reader := strings.Replace(ledgerLikeSchema, `{"name":"n","type":"long"}`, `{"name":"n","type":"long","default":42}`, 1)
	type v0 struct {
		Header
		Lines map[string]ledgerLine `json:"lines"`
		Holds []*string             `json:"holds"`
		Raw   []byte                `json:"raw"`
	}
	w, err := NewCodecFromSchema[v0](writer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Encode(&v0{Header: Header{"O-1"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolvingCodec[ledgerLike](writer, reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.N != 42 || got.OrderID != "O-1" || got.Raw == nil {
		t.Fatalf("got %+v", got)
	}
	if _, err := r.Encode(got); err == nil {
		t.Fatal("a resolving codec must not encode")
	}
}

// sameDecimals reports a decimal field whose precision or scale differs between two versions.
// Avro resolution ignores logical types (bytes reads bytes), so a scale change would silently
// rescale every amount; the contract freezes precision and scale per field forever (quantities decimal(12,3), amounts decimal(18,4)).
func sameDecimals(current, old string) error {
	a, err := parseAvroSchema(current)
	if err != nil {
		return err
	}
	b, err := parseAvroSchema(old)
	if err != nil {
		return err
	}
	return walkDecimals("", a, b, map[[2]*avroType]bool{})
}

func walkDecimals(path string, a, b *avroType, seen map[[2]*avroType]bool) error {
	if seen[[2]*avroType{a, b}] {
		return nil
	}
	seen[[2]*avroType{a, b}] = true
	a, b = unwrapNullable(a), unwrapNullable(b)
	if a.logical == "decimal" && b.logical == "decimal" && (a.prec != b.prec || a.scale != b.scale) {
		return fmt.Errorf("%s: decimal(%d,%d) was decimal(%d,%d)", path, a.prec, a.scale, b.prec, b.scale)
	}
	switch {
	case a.kind == "record" && b.kind == "record":
		for _, f := range a.fields {
			if g := b.field(f.name); g != nil {
				if err := walkDecimals(path+"."+f.name, f.typ, g.typ, seen); err != nil {
					return err
				}
			}
		}
	case a.kind == "array" && b.kind == "array":
		return walkDecimals(path+"[]", a.items, b.items, seen)
	case a.kind == "map" && b.kind == "map":
		return walkDecimals(path+"[]", a.values, b.values, seen)
	case a.kind == "union" && b.kind == "union":
		for _, x := range a.branches {
			for _, y := range b.branches {
				if x.name != "" && x.shortName() == y.shortName() {
					if err := walkDecimals(path+"."+x.shortName(), x, y, seen); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
