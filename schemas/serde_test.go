package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func offlineSerde(t testing.TB) *Serde {
	t.Helper()
	s, err := NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func refFor(e *Event) RecordRef {
	topic, _ := TopicOf(e.BodyType())
	return RecordRef{Topic: topic, Partition: 2, Offset: 40}
}

func TestSerdeOfflineRoundTrip(t *testing.T) {
	s := offlineSerde(t)
	for _, e := range sampleEvents() {
		ref := refFor(e)
		b, err := s.EncodeEvent(ref.Topic, e)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := s.SchemaID(ref.Topic)
		if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != id {
			t.Fatalf("bad header % x, want id %d", b[:5], id)
		}
		got, err := s.DecodeEvent(context.Background(), ref, b)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(e, got); d != "" {
			t.Fatal(d)
		}
	}
	// Offline ids are a function of the schema alone: a second Serde agrees.
	s2 := offlineSerde(t)
	for topic := range s.current {
		a, _ := s.SchemaID(topic)
		b, _ := s2.SchemaID(topic)
		if a != b || a <= 0 {
			t.Fatalf("%s: ids %d and %d", topic, a, b)
		}
	}
}

func decodeErr(t *testing.T, err error) *DecodeError {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	return de
}

func TestSerdeDecodeErrorClasses(t *testing.T) {
	s := offlineSerde(t)
	ctx := context.Background()
	e := sampleEvents()[2]
	ref := refFor(e)
	good, _ := s.EncodeEvent(ref.Topic, e)
	invalid := sampleEvents()[2]
	invalid.ShipmentConfirmed.Lines[0].QuantityShipped = dec("0")
	invalidBytes, _ := s.EncodeEvent(ref.Topic, invalid)
	wrongTopic, _ := s.EncodeEvent(TopicOrders, sampleOrderAccepted())
	unknownID := append([]byte{0, 0x7f, 0, 0, 1}, good[5:]...)

	for _, tc := range []struct {
		name  string
		ref   RecordRef
		value []byte
		class ErrorClass
		msg   string
	}{
		{"empty", ref, nil, ClassBadHeader, "shorter than the 5-byte"},
		{"magic", ref, append([]byte{1}, good[1:]...), ClassBadHeader, "magic byte is 0x01"},
		{"unknown id", ref, unknownID, ClassUnknownSchema, "not known"},
		{"truncated", ref, good[:len(good)-3], ClassAvro, "goavro"},
		{"trailing", ref, append(good[:len(good):len(good)], 0), ClassAvro, "left after"},
		{"invalid", ref, invalidBytes, ClassInvalid, "shipment_confirmed.lines[0].quantity_shipped: must be > 0"},
		{"other topic's schema", ref, wrongTopic, ClassInvalid, "OrderAccepted belongs on topic orders, not shipments"},
	} {
		_, err := s.DecodeEvent(ctx, tc.ref, tc.value)
		de := decodeErr(t, err)
		if de.Class != tc.class || !strings.Contains(err.Error(), tc.msg) || de.Topic != ref.Topic || de.Offset != 40 || de.Transient() {
			t.Errorf("%s: class %s, err %v", tc.name, de.Class, err)
		}
	}
}

func registry(t *testing.T) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

var physical = map[Topic]string{TopicOrders: "retail.orders.v1", TopicShipments: "retail.shipments.v1",
	TopicReturns: "retail.returns.v1", TopicLoyalty: "retail.loyalty.v1", TopicERP: "retail.erp.v1",
	TopicCommands: "retailflow.loyalty-commands.v1", TopicDLQ: "retailflow.dlq.v1"}

func TestSerdeRegistry(t *testing.T) {
	ctx := context.Background()
	reg, cl := registry(t)

	if _, err := NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(physical)); err == nil || !strings.Contains(err.Error(), "is not registered under subject") {
		t.Fatalf("unregistered schemas: err = %v", err)
	}
	ids, err := RegisterSchemas(ctx, cl, physical)
	if err != nil {
		t.Fatal(err)
	}
	again, err := RegisterSchemas(ctx, cl, physical)
	if err != nil || !cmp.Equal(ids, again) {
		t.Fatalf("re-registering changed ids: %v → %v (%v)", ids, again, err)
	}
	for _, r := range cl.Compatibility(ctx, "retail.orders.v1-value") {
		if r.Err != nil || r.Level != sr.CompatBackward {
			t.Fatalf("compatibility %v (%v)", r.Level, r.Err)
		}
	}
	s, err := NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(physical))
	if err != nil {
		t.Fatal(err)
	}
	for topic, id := range ids {
		if got, _ := s.SchemaID(topic); got != id {
			t.Fatalf("%s: serde id %d, registered %d", topic, got, id)
		}
	}

	// A record written by an older producer with an older schema version (no erp_delivery_id,
	// no currency): the Serde fetches the writer schema by id and resolves it.
	cur, _ := SchemaText("shipments")
	old := removeField(t, removeField(t, cur, "erp_delivery_id"), "currency")
	oldID, _, err := reg.RegisterSchema("retail.shipments.v1-value", sr.Schema{Schema: old, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	e := sampleEvents()[2]
	oldBody := encodeWithSchema(t, old, e)
	value := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(oldID)), oldBody...)
	got, err := s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, value)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleEvents()[2]
	want.ShipmentConfirmed.Currency, want.ShipmentConfirmed.ErpDeliveryID = nil, nil
	if d := cmp.Diff(want, got); d != "" {
		t.Fatal(d)
	}

	// Unknown id: poison. Registry down: transient.
	_, err = s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, []byte{0, 0, 0, 0x30, 0x39, 0})
	if de := decodeErr(t, err); de.Class != ClassUnknownSchema || de.Transient() {
		t.Fatalf("unknown id: %v", err)
	}
	reg.Close()
	_, err = s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, []byte{0, 0, 0, 0x30, 0x3a, 0})
	if de := decodeErr(t, err); de.Class != ClassRegistryUnavailable || !de.Transient() || !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("registry down: %v", err)
	}
	// Known ids keep decoding without the registry.
	if _, err := s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, value); err != nil {
		t.Fatal(err)
	}
}

// removeField deletes the line declaring a field from a schema in the committed layout.
func removeField(t *testing.T, schema, field string) string {
	t.Helper()
	lines := strings.Split(schema, "\n")
	for i, l := range lines {
		if strings.Contains(l, `{"name": "`+field+`"`) {
			out := append(append([]string{}, lines[:i]...), lines[i+1:]...)
			if !strings.HasSuffix(l, ",") { // it was the last field
				out[i-1] = strings.TrimSuffix(out[i-1], ",")
			}
			return strings.Join(out, "\n")
		}
	}
	t.Fatalf("no field %s", field)
	return ""
}

// encodeWithSchema writes e with another schema version, through goavro's native form, as an
// independent producer would.
func encodeWithSchema(t *testing.T, schema string, e *Event) []byte {
	t.Helper()
	w, err := parseAvroSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	p := &planner{encs: map[planKey]*encFn{}, decs: map[planKey]*decFn{}}
	enc, err := p.encoder(reflectTypeOfEvent, w)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewResolvingCodec[Event](schema, schema)
	if err != nil {
		t.Fatal(err)
	}
	native, err := enc(reflectValueOf(e))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.avro.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRegistryNegativeCacheExpires (issue 12.5): an id the registry answered 404 for is not
// asked again for a while, but not forever: once the schema is registered, records with it
// decode again after the TTL (it used to be dead-lettered until the process restarted).
func TestRegistryNegativeCacheExpires(t *testing.T) {
	ctx := context.Background()
	reg, cl := registry(t)
	if _, err := RegisterSchemas(ctx, cl, physical); err != nil {
		t.Fatal(err)
	}
	const ttl = 200 * time.Millisecond
	s, err := NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(physical), WithNegativeCacheTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := SchemaText("shipments")
	old := removeField(t, cur, "erp_delivery_id")
	const lateID = 4242
	value := append(binary.BigEndian.AppendUint32([]byte{0}, lateID), encodeWithSchema(t, old, sampleEvents()[2])...)
	var asked atomic.Int32
	reg.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, fmt.Sprintf("/schemas/ids/%d", lateID)) {
			asked.Add(1)
		}
		return false
	})
	if _, err := s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, value); decodeErr(t, err).Class != ClassUnknownSchema {
		t.Fatalf("before registration: %v", err)
	}
	reg.SeedSchema("retail.shipments.v1-value", 100, lateID, sr.Schema{Schema: old, Type: sr.TypeAvro})
	if _, err := s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, value); decodeErr(t, err).Class != ClassUnknownSchema || asked.Load() != 1 {
		t.Fatalf("within the TTL the 404 is cached (asked %d times): %v", asked.Load(), err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if _, err := s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, value); err != nil {
		t.Fatalf("after the TTL the registered schema must decode: %v", err)
	}
}

// TestRegistryAuthIsPermanent (issue 12.5): 401 and 403 are not the registry being briefly
// unavailable (which is retried forever): they are class registry-auth, not transient, and
// wrap ErrRegistryAuth with a message that says what to check.
func TestRegistryAuthIsPermanent(t *testing.T) {
	ctx := context.Background()
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		reg, cl := registry(t)
		if _, err := RegisterSchemas(ctx, cl, physical); err != nil {
			t.Fatal(err)
		}
		s, err := NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(physical))
		if err != nil {
			t.Fatal(err)
		}
		reg.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error_code":%d,"message":"denied"}`, code)
			return true
		})
		_, err = s.DecodeEvent(ctx, RecordRef{Topic: TopicShipments}, []byte{0, 0, 0, 0x30, 0x39, 0})
		de := decodeErr(t, err)
		if de.Class != ClassRegistryAuth || de.Transient() || !errors.Is(err, ErrRegistryAuth) || !strings.Contains(err.Error(), "registry.username") {
			t.Errorf("HTTP %d: class %s, transient %v: %v", code, de.Class, de.Transient(), err)
		}
		if _, err := NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(physical)); !errors.Is(err, ErrRegistryAuth) {
			t.Errorf("HTTP %d at start: %v, want ErrRegistryAuth", code, err)
		}
	}
}
