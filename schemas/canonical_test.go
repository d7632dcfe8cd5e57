package schemas

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withReleased adds released versions to an offline Serde, as a future release of the schema
// files would (every file under avro/released is identical to the current schema today).
func withReleased(name SchemaName, texts ...string) SerdeOption {
	return func(c *serdeConfig) {
		if c.released == nil {
			c.released = map[SchemaName][]string{}
		}
		c.released[name] = append(c.released[name], texts...)
	}
}

// The specification's examples, and what Java's SchemaNormalization / fastavro produce.
func TestParsingCanonicalForm(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"primitive object", `{"type": "int"}`, `"int"`},
		{"logical type stripped", `{"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}`, `"bytes"`},
		{"timestamp stripped", `{"type": "long", "logicalType": "timestamp-micros"}`, `"long"`},
		{"fullnames, order, strip", `{"namespace": "a.b", "doc": "x", "fields": [{"type": "string", "name": "f", "default": "q", "doc": "d"}], "name": "R", "type": "record", "aliases": ["Q"]}`,
			`{"name":"a.b.R","type":"record","fields":[{"name":"f","type":"string"}]}`},
		{"nested names inherit the namespace; second use by name", `{"type": "record", "name": "x.Outer", "fields": [
			{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}},
			{"name": "e2", "type": "E"},
			{"name": "f", "type": {"type": "fixed", "name": "other.F", "size": "16"}},
			{"name": "m", "type": {"type": "map", "values": {"type": "array", "items": ["null", "E"]}}}]}`,
			`{"name":"x.Outer","type":"record","fields":[{"name":"e","type":{"name":"x.E","type":"enum","symbols":["A","B"]}},{"name":"e2","type":"x.E"},{"name":"f","type":{"name":"other.F","type":"fixed","size":16}},{"name":"m","type":{"type":"map","values":{"type":"array","items":["null","x.E"]}}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsingCanonicalForm(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The offline ids of the current schemas, as computed independently with fastavro 1.13 (the
// Python producer's library): int.from_bytes(sha256(to_parsing_canonical_form(schema))[:4],
// "big") & 0x7fffffff. A change here changes every offline id: it needs a released version.
func TestOfflineSchemaIDsMatchFastavro(t *testing.T) {
	want := map[SchemaName]int{
		"orders": 226845695, "shipments": 1670614445, "returns": 1476499774, "loyalty": 718659718,
		"erp": 460828499, "loyalty-commands": 1589432172, "dlq": 355299989, "order_ledger": 625133908,
	}
	for name, id := range want {
		text, err := SchemaText(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := OfflineSchemaID(text)
		if err != nil || got != id {
			t.Errorf("%s: id %d (%v), fastavro says %d", name, got, err, id)
		}
	}
}

// Data written before the ids followed the specification keeps decoding offline.
func TestOfflineDecodesLegacyIDs(t *testing.T) {
	s := offlineSerde(t)
	e := sampleEvents()[2]
	cur, _ := SchemaText("shipments")
	legacy, err := LegacyOfflineSchemaID(cur)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := s.SchemaID(TopicShipments); id == legacy {
		t.Fatalf("legacy and specification ids are the same (%d): the test proves nothing", id)
	}
	value := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(legacy)), encodeWithSchema(t, cur, e)...)
	got, err := s.DecodeEvent(context.Background(), RecordRef{Topic: TopicShipments}, value)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(e, got); d != "" {
		t.Fatal(d)
	}
}

// A producer still on a released version (an optional field fewer) is decoded offline by
// resolution into the current types, with the missing field at its default.
func TestOfflineDecodesReleasedVersions(t *testing.T) {
	cur, _ := SchemaText("shipments")
	old := removeField(t, removeField(t, cur, "erp_delivery_id"), "currency")
	oldID, err := OfflineSchemaID(old)
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEvents()[2]
	value := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(oldID)), encodeWithSchema(t, old, e)...)

	// Without the version released, the id is unknown: dead-lettered as unknown-schema.
	_, err = offlineSerde(t).DecodeEvent(context.Background(), RecordRef{Topic: TopicShipments}, value)
	if de := decodeErr(t, err); de.Class != ClassUnknownSchema {
		t.Fatalf("unreleased version: %v", err)
	}

	s, err := NewSerde(context.Background(), withReleased("shipments", old))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.DecodeEvent(context.Background(), RecordRef{Topic: TopicShipments}, value)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleEvents()[2]
	want.ShipmentConfirmed.Currency, want.ShipmentConfirmed.ErpDeliveryID = nil, nil
	if d := cmp.Diff(want, got); d != "" {
		t.Fatal(d)
	}
	// Encoding always uses the current schema's id.
	if id, _ := s.SchemaID(TopicShipments); id == oldID {
		t.Fatal("the released version's id became the current one")
	}
}

// Every file under avro/released parses and has a distinct, positive id.
func TestReleasedSchemasEmbedded(t *testing.T) {
	for _, name := range SchemaNames() {
		rs, err := ReleasedSchemas(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if _, err := OfflineSchemaID(r.Text); err != nil {
				t.Errorf("%s v%d: %v", name, r.Version, err)
			}
		}
	}
}

// Record keys follow the topics' contract: order_id, or checkout:<id> before the order exists.
func TestEventKey(t *testing.T) {
	ck := "CK-1"
	for _, tc := range []struct {
		e    *Event
		want string
	}{
		{&Event{ShipmentConfirmed: &ShipmentConfirmed{OrderID: "O-1"}}, "O-1"},
		{&Event{PointsReserved: &PointsReserved{CheckoutID: ck}}, "checkout:CK-1"},
		{&Event{Envelope: Envelope{CorrelationID: ck}, RedemptionReleased: &RedemptionReleased{ReservationID: "R"}}, "checkout:CK-1"},
		{&Event{Envelope: Envelope{CorrelationID: "x"}, ShipmentConfirmed: &ShipmentConfirmed{}}, ""},
	} {
		if got := tc.e.Key(); got != tc.want {
			t.Errorf("Key() = %q, want %q", got, tc.want)
		}
	}
}
