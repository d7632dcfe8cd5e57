package schemas

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func topicCodec(t testing.TB, e *Event) *Codec[Event] {
	t.Helper()
	topic, ok := TopicOf(e.BodyType())
	if !ok {
		t.Fatalf("no topic for %s", e.BodyType())
	}
	name, _ := ValueSchema(topic)
	c, err := NewCodec[Event](name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCodecRoundTripEveryEventType(t *testing.T) {
	seen := map[EventType]bool{}
	for _, e := range sampleEvents() {
		t.Run(string(e.EventType), func(t *testing.T) {
			if err := e.Validate(); err != nil {
				t.Fatalf("fixture invalid: %v", err)
			}
			c := topicCodec(t, e)
			b, err := c.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(e, got); d != "" {
				t.Fatalf("round trip (-want +got):\n%s", d)
			}
			b2, err := c.Encode(got)
			if err != nil || string(b2) != string(b) {
				t.Fatalf("re-encode differs (err %v)", err)
			}
		})
		seen[e.BodyType()] = true
	}
	for _, et := range EventTypes() {
		if !seen[et] && et != TypeReversalRequested && et != TypeRedemptionRefundRequested {
			t.Errorf("no fixture for %s", et)
		}
	}
}

func TestCodecDeadLetterRoundTrip(t *testing.T) {
	c, err := NewCodec[DeadLetter]("dlq")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*DeadLetter{sampleDeadLetter(), {SourceTopic: "x", ErrorClass: ClassBadHeader, FirstSeenAt: t0, Attempt: 1, Key: []byte{}}} {
		b, err := c.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	}
}

func TestCodecRejectsDecimalsThatDoNotFit(t *testing.T) {
	for _, tc := range []struct{ qty, want string }{
		{"1.2345", "payload.shipment_confirmed.lines[0].quantity_shipped: 1.2345 has more than 3 decimal places"},
		{"1000000000", "payload.shipment_confirmed.lines[0].quantity_shipped: 1000000000 does not fit decimal(12,3)"},
		{"999999999.999", ""},
		{"-999999999.999", ""},
		{"1.2300000", ""}, // trailing zeros are exact
	} {
		e := sampleEvents()[2] // ShipmentConfirmed
		e.ShipmentConfirmed.Lines[0].QuantityShipped = dec(tc.qty)
		c := topicCodec(t, e)
		_, err := c.Encode(e)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.qty, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want %q", tc.qty, err, tc.want)
		}
	}
}

func TestCodecRejectsBodyNotInSchema(t *testing.T) {
	e := sampleEvents()[2]
	c, err := NewCodec[Event]("orders")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Encode(e); err == nil || !strings.Contains(err.Error(), "payload: shipment_confirmed is not carried by this schema") {
		t.Fatalf("err = %v", err)
	}
	e.OrderAccepted = sampleOrderAccepted().OrderAccepted
	if _, err := c.Encode(e); err == nil || !strings.Contains(err.Error(), "exactly one body") {
		t.Fatalf("err = %v", err)
	}
}

func TestCodecDecodeRejectsTrailingBytes(t *testing.T) {
	e := sampleEvents()[2]
	c := topicCodec(t, e)
	b, _ := c.Encode(e)
	if _, err := c.Decode(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := c.Decode(b[:len(b)-1]); err == nil {
		t.Fatal("truncated value accepted")
	}
}

// A type from another package shape: nested records, maps, nullable records, embedded structs.
type ledgerLike struct {
	Header
	Lines  map[string]ledgerLine `json:"lines"`
	Holds  []*string             `json:"holds"`
	Parent *ledgerLine           `json:"parent,omitempty"`
	Raw    []byte                `json:"raw"`
	N      int                   `json:"n"`
}

type Header struct {
	OrderID string `json:"order_id"`
}

type ledgerLine struct {
	Qty   []string `json:"qty"`
	Ratio float64  `json:"ratio"`
}

const ledgerLikeSchema = `{"type":"record","name":"L","namespace":"t","fields":[
 {"name":"order_id","type":"string"},
 {"name":"lines","type":{"type":"map","values":{"type":"record","name":"Line","fields":[
   {"name":"qty","type":{"type":"array","items":"string"}},{"name":"ratio","type":"double"}]}}},
 {"name":"holds","type":{"type":"array","items":["null","string"]}},
 {"name":"parent","type":["null","Line"],"default":null},
 {"name":"raw","type":"bytes"},
 {"name":"n","type":"long"},
 {"name":"added","type":"string","default":"x"}]}`

func TestCodecOtherTypes(t *testing.T) {
	c, err := NewCodecFromSchema[ledgerLike](ledgerLikeSchema)
	if err != nil {
		t.Fatal(err)
	}
	v := &ledgerLike{Header: Header{"O-1"}, Lines: map[string]ledgerLine{"L1": {Qty: []string{"a"}, Ratio: 0.5}},
		Holds: []*string{nil, ptr("h")}, Parent: &ledgerLine{Ratio: 1}, Raw: []byte{0}, N: -7}
	b, err := c.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(v, got); d != "" {
		t.Fatal(d)
	}
}

func TestCodecStrictMapping(t *testing.T) {
	type extra struct {
		OrderID string `json:"order_id"`
		Lost    string `json:"lost"`
	}
	_, err := NewCodecFromSchema[extra](`{"type":"record","name":"X","fields":[{"name":"order_id","type":"string"}]}`)
	if err == nil || !strings.Contains(err.Error(), `no field "lost"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = NewCodecFromSchema[extra](`{"type":"record","name":"X","fields":[{"name":"order_id","type":"long"},{"name":"lost","type":"string"}]}`)
	if err == nil || !strings.Contains(err.Error(), "order_id: Go type string cannot map to Avro long") {
		t.Fatalf("err = %v", err)
	}
	var pe *pathError
	if !errors.As(err, &pe) {
		t.Fatalf("not a path error: %T", err)
	}
}
