package schemas

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJSONRoundTripEveryEventType(t *testing.T) {
	var all bytes.Buffer
	for _, e := range sampleEvents() {
		b, err := EncodeJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEventJSON(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", e.EventType, err, b)
		}
		if d := cmp.Diff(e, got); d != "" {
			t.Fatalf("%s (-want +got):\n%s", e.EventType, d)
		}
		b2, _ := EncodeJSON(got)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%s: JSON → Go → JSON differs:\n%s\n%s", e.EventType, b, b2)
		}
		all.Write(b)
		all.WriteString("\n\n")
	}
	r := NewJSONReader(&all)
	n := 0
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(sampleEvents()) {
		t.Fatalf("read %d events, want %d", n, len(sampleEvents()))
	}
}

func TestJSONShape(t *testing.T) {
	e := sampleEvents()[2]
	b, _ := EncodeJSON(e)
	for _, want := range []string{
		`{"event_id":"e-sc","event_type":"ShipmentConfirmed","schema_version":1,`,
		`"occurred_at":"2025-03-01T09:30:00.123456Z"`,
		`"shipment_confirmed":{"shipment_id":"S-1"`,
		`"quantity_shipped":"1.5"`,
		`"tracking_numbers":["TN1","TN2"]`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("missing %s in\n%s", want, b)
		}
	}
	if bytes.Contains(b, []byte("causation_id")) || bytes.Contains(b, []byte("order_accepted")) {
		t.Errorf("nil pointers must be omitted:\n%s", b)
	}
}

func TestJSONErrorsNameLineAndPath(t *testing.T) {
	good, _ := EncodeJSON(sampleEvents()[2])
	bad := func(old, new string) string { return strings.Replace(string(good), old, new, 1) }
	for _, tc := range []struct{ line, want string }{
		{bad(`"quantity_shipped":"1.5"`, `"quantity_shipped":"abc"`), `line 3: shipment_confirmed.lines[1].quantity_shipped: "abc" is not a decimal`},
		{bad(`"carrier":"DHL"`, `"carrier":"DHL","colour":"red"`), `line 3: shipment_confirmed.colour: unknown field`},
		{bad(`"occurred_at":"2025-03-01T09:30:00.123456Z"`, `"occurred_at":"yesterday"`), `line 3: occurred_at: "yesterday" is not an RFC 3339 timestamp`},
		{bad(`"schema_version":1`, `"schema_version":"1"`), `line 3: schema_version: "1" is not an integer`},
		{bad(`"is_reship":false`, `"is_reship":null`), `line 3: shipment_confirmed.is_reship: null is not allowed here`},
		{bad(`"event_type":"ShipmentConfirmed"`, `"event_type":"OrderAccepted"`), `line 3: event_type: "OrderAccepted" does not match the body shipment_confirmed`},
		{`{"event_id":"x"`, `line 3: not JSON`},
		{`{"event_id":"x","event_type":"OrderAccepted"}`, `line 3: no body`},
	} {
		in := string(good) + "\n\n" + tc.line + "\n"
		r := NewJSONReader(strings.NewReader(in))
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		_, err := r.Next()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("err = %v\nwant prefix %s", err, tc.want)
		}
	}
}

func TestJSONDeadLetter(t *testing.T) {
	d := sampleDeadLetter()
	b, err := EncodeJSON(d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"key":"Ty0xMDAx"`)) {
		t.Fatalf("key not base64: %s", b)
	}
	got, err := DecodeJSON[DeadLetter](b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Fatal(diff)
	}
}
