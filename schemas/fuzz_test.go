package schemas

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode feeds arbitrary bytes to the offline Serde as a value of every topic.
// Invariants: it never panics; every error is a *DecodeError; and a value that decodes
// re-encodes to bytes that decode to the same value and are a fixed point of decode∘encode.
// (Byte equality with the input is not required: Avro has several encodings of one value —
// arrays in several blocks, non-minimal decimal bytes — and a record from another writer
// library must still be accepted.)
func FuzzDecode(f *testing.F) {
	s := offlineSerde(f)
	for _, e := range sampleEvents() {
		b, err := s.EncodeEvent(refFor(e).Topic, e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{1, 2, 3, 4, 5, 6})
	topics := []Topic{TopicOrders, TopicShipments, TopicReturns, TopicLoyalty, TopicERP, TopicCommands}
	f.Fuzz(func(t *testing.T, value []byte) {
		for _, topic := range topics {
			ref := RecordRef{Topic: topic}
			e, err := Decode[Event](context.Background(), s, ref, value)
			if err != nil {
				decodeErrOrFail(t, err)
				continue
			}
			// A record may carry another topic's schema id (DecodeEvent rejects it as invalid);
			// it re-encodes with the schema of its body's topic. (Not TopicOf(BodyType()): a
			// loyalty command's body type is its command_type, which may be any string.)
			body, _ := e.setBody()
			topic := body.topic
			ref = RecordRef{Topic: topic}
			b, err := s.EncodeEvent(topic, e)
			if err != nil {
				t.Fatalf("%s: decoded value does not re-encode: %v", topic, err)
			}
			e2, err := Decode[Event](context.Background(), s, ref, b)
			if err != nil {
				t.Fatalf("%s: re-encoded value does not decode: %v", topic, err)
			}
			if d := cmp.Diff(e, e2); d != "" {
				t.Fatalf("%s: value changed through encode/decode:\n%s", topic, d)
			}
			b2, _ := s.EncodeEvent(topic, e2)
			if !bytes.Equal(b, b2) {
				t.Fatalf("%s: canonical encoding is not a fixed point", topic)
			}
		}
	})
}

func decodeErrOrFail(t *testing.T, err error) {
	t.Helper()
	if _, ok := err.(*DecodeError); !ok {
		t.Fatalf("error %v is %T, not *DecodeError", err, err)
	}
}

// FuzzJSON feeds arbitrary lines to the JSON form. Invariants: never panics; a line that
// parses encodes back to a line that parses to the same value and re-encodes byte-identically.
func FuzzJSON(f *testing.F) {
	for _, e := range sampleEvents() {
		b, _ := EncodeJSON(e)
		f.Add(b)
	}
	f.Add([]byte(`{"event_id":"x","event_type":"ShipmentConfirmed","shipment_confirmed":{"lines":[{"quantity_shipped":"1e3"}]}}`))
	f.Add([]byte(`{"event_type":"OrderAccepted","order_accepted":{"lines":null,"earn_rate":1.5}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := DecodeEventJSON(line)
		if err != nil {
			return
		}
		b, err := EncodeJSON(e)
		if err != nil {
			t.Fatalf("parsed value does not encode: %v", err)
		}
		e2, err := DecodeEventJSON(b)
		if err != nil {
			t.Fatalf("encoded form does not parse: %v\n%s", err, b)
		}
		if d := cmp.Diff(e, e2); d != "" {
			t.Fatalf("value changed:\n%s", d)
		}
		b2, _ := EncodeJSON(e2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("JSON not a fixed point:\n%s\n%s", b, b2)
		}
	})
}
