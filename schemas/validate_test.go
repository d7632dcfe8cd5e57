package schemas

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateFixturesAreValid(t *testing.T) {
	for _, e := range sampleEvents() {
		topic, _ := TopicOf(e.BodyType())
		if err := e.ValidateFor(topic); err != nil {
			t.Errorf("%s: %v", e.EventType, err)
		}
	}
}

func TestValidateNamesFieldPaths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(e *Event)
		want   string
	}{
		{"quantity", func(e *Event) { e.OrderAccepted.Lines[2].Quantity = dec("0") }, "order_accepted.lines[2].quantity: must be > 0"},
		{"duplicate line", func(e *Event) { e.OrderAccepted.Lines[1].OrderLineID = "L1" }, `order_accepted.lines[1].order_line_id: "L1" repeats order_accepted.lines[0].order_line_id`},
		{"currency shape", func(e *Event) { e.OrderAccepted.Currency = "eur" }, `order_accepted.currency: "eur" is not an ISO 4217`},
		{"money scale", func(e *Event) { e.OrderAccepted.Lines[0].LineNet = dec("137.60001") }, "order_accepted.lines[0].line_net: 137.60001 has more than 4 decimal places"},
		{"nested scale", func(e *Event) { e.OrderAccepted.Lines[1].TaxLines[0].Rate = dec("0.1234567") }, "order_accepted.lines[1].tax_lines[0].rate: 0.1234567 has more than 6 decimal places"},
		{"optional scale", func(e *Event) { e.OrderAccepted.TierMultiplier = ptr(dec("1.0000001")) }, "order_accepted.tier_multiplier: 1.0000001 has more than 6 decimal places"},
		{"record scale", func(e *Event) { e.OrderAccepted.Totals.TaxTotal = dec("44.18005") }, "order_accepted.totals.tax_total: 44.18005 has more than 4 decimal places"},
		{"negative money", func(e *Event) { e.OrderAccepted.Totals.GrandTotal = dec("-1") }, "order_accepted.totals.grand_total: must be ≥ 0"},
		{"event type", func(e *Event) { e.EventType = TypeShipmentConfirmed }, `event_type: "ShipmentConfirmed" does not match the body order_accepted`},
		{"no envelope", func(e *Event) { e.Envelope = Envelope{} }, "event_id: is required"},
		{"order id", func(e *Event) { e.OrderAccepted.OrderID = "" }, "order_accepted.order_id: is required"},
		{"allocation sum", func(e *Event) { e.OrderAccepted.Lines[0].RedemptionAlloc.Points = 1 }, "redemption allocations sum to 361 points"},
		{"two bodies", func(e *Event) { e.ShipmentConfirmed = &ShipmentConfirmed{} }, "bodies order_accepted, shipment_confirmed are all set"},
		{"no body", func(e *Event) { e.OrderAccepted = nil }, "no body set"},
	} {
		e := sampleOrderAccepted()
		tc.mutate(e)
		err := e.Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v\nwant %s", tc.name, err, tc.want)
		}
	}
}

// Trailing zeros beyond the scale are not extra places: 1.50000000 is 1.5.
func TestValidateScaleIgnoresTrailingZeros(t *testing.T) {
	e := sampleOrderAccepted()
	e.OrderAccepted.Lines[0].LineNet = dec("137.600000000")
	e.OrderAccepted.TierMultiplier = ptr(dec("1.500000000000"))
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateBodies(t *testing.T) {
	events := sampleEvents()
	byType := map[EventType]*Event{}
	for _, e := range events {
		byType[e.EventType] = e
	}
	for _, tc := range []struct {
		typ    EventType
		mutate func(e *Event)
		want   string
	}{
		{TypeReturnReceived, func(e *Event) { e.ReturnReceived.Lines[0].QuantityAccepted = dec("2") }, "quantity_accepted: 2 exceeds quantity_received 1"},
		{TypeReturnReceived, func(e *Event) { e.ReturnReceived.Refund.Tax = dec("5.165") }, "return_received.refund.tax: 5.165 has more decimal places than EUR's minor unit (2)"},
		{TypeInvoicePosted, func(e *Event) { e.InvoicePosted.Gross = dec("1") }, "invoice_posted.gross: 1 is not net 150.5 + tax 20.1"},
		{TypeInvoicePosted, func(e *Event) { e.InvoicePosted.BillingType = "RE" }, `invoice_posted.billing_type: "RE" is not one of F2, L2`},
		{TypeShipmentConfirmed, func(e *Event) { e.ShipmentConfirmed.Lines[1].ShipmentLineID = "SL1" }, "shipment_confirmed.lines[1].shipment_line_id"},
		{TypeAccrualRequested, func(e *Event) { e.LoyaltyCommand.Points = 0 }, "loyalty_command.points: must be > 0"},
		{TypeAccrualRequested, func(e *Event) { e.LoyaltyCommand.RequestID = "x" }, "loyalty_command.request_id: \"x\" is not CommandRequestID"},
		{TypeAccrualRequested, func(e *Event) { e.EventType = TypeReversalRequested }, `event_type: "ReversalRequested" does not match the body loyalty_command (want "AccrualRequested")`},
		{TypePointsReserved, func(e *Event) { e.PointsReserved.Value.Currency = "EURO" }, "points_reserved.value.currency"},
	} {
		e := byType[tc.typ]
		cp := deepCopy(t, e)
		tc.mutate(cp)
		err := cp.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v\nwant %s", tc.typ, err, tc.want)
		}
	}
}

func deepCopy(t *testing.T, e *Event) *Event {
	b, err := EncodeJSON(e)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := DecodeJSON[Event](b)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestDecimalHelpers(t *testing.T) {
	for _, tc := range []struct {
		d      string
		places int32
		want   bool
	}{
		{"1.5", 2, true}, {"1.50000", 2, true}, {"1.505", 2, false}, {"-1.50100", 2, false},
		{"100", 0, true}, {"0.0000000000000000000001", 4, false}, {"123456789012345678901234.50", 1, true},
	} {
		if got := hasAtMostPlaces(dec(tc.d), tc.places); got != tc.want {
			t.Errorf("hasAtMostPlaces(%s, %d) = %v", tc.d, tc.places, got)
		}
	}
	for _, tc := range []struct {
		a, b, c string
		want    bool
	}{
		{"1.10", "2.20", "3.30", true}, {"1.1", "2.20", "3.3", true}, {"1.10", "2.20", "3.31", false},
		{"-5.00", "2.00", "-3.00", true}, {"99999999999999999999", "1", "100000000000000000000", true},
	} {
		if got := sumEquals(dec(tc.a), dec(tc.b), dec(tc.c)); got != tc.want {
			t.Errorf("sumEquals(%s, %s, %s) = %v", tc.a, tc.b, tc.c, got)
		}
	}
}

// TestCheckTimes (issue 12.2): times are bounded absolutely (ClickHouse DateTime) and against
// the record's timestamp; late events and future-by-design fields pass.
func TestCheckTimes(t *testing.T) {
	rec := t0.Add(time.Minute) // the record was produced a minute after the event occurred
	const skew = time.Hour
	for _, e := range sampleEvents() {
		if err := e.CheckTimes(rec, skew); err != nil {
			t.Errorf("sample %s: %v", e.EventType, err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(e *Event)
		rec    time.Time
		want   []string // paths with a problem; none: nil error
	}{
		{"ten years ahead", func(e *Event) {
			e.OccurredAt, e.PublishedAt = t0.AddDate(10, 0, 0), t0.AddDate(10, 0, 0)
		}, rec, []string{"occurred_at", "published_at"}},
		{"occurred after published", func(e *Event) { e.OccurredAt = e.PublishedAt.Add(2 * time.Hour) }, time.Time{}, []string{"occurred_at"}},
		{"published late is fine", func(e *Event) { e.PublishedAt = t0.AddDate(0, 0, 3) }, t0.AddDate(0, 0, 3), nil},
		{"within the skew", func(e *Event) { e.OccurredAt = rec.Add(50 * time.Minute); e.PublishedAt = e.OccurredAt }, rec, nil},
		{"body time ahead", func(e *Event) { e.OrderAccepted.AcceptedAt = rec.Add(48 * time.Hour) }, rec, []string{"order_accepted.accepted_at"}},
		{"after 2106", func(e *Event) { e.OrderAccepted.PlacedAt = time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC) }, time.Time{}, []string{"order_accepted.placed_at"}},
		{"before 1970", func(e *Event) { e.OrderAccepted.PlacedAt = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }, rec, []string{"order_accepted.placed_at"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sampleOrderAccepted()
			tc.change(e)
			err := e.CheckTimes(tc.rec, skew)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var te *TimeRangeError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a *TimeRangeError", err)
			}
			var got []string
			for _, p := range te.Problems {
				got = append(got, p.Path)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems at %v, want %v: %v", got, tc.want, err)
			}
		})
	}
	// activates_at and expires_at lie ahead by meaning: only the absolute range applies
	pap := sampleEvents()[0]
	for _, e := range sampleEvents() {
		if e.PointsAccrualPosted != nil {
			pap = e
		}
	}
	pap.PointsAccrualPosted.ExpiresAt = ptr(t0.AddDate(5, 0, 0))
	if err := pap.CheckTimes(rec, skew); err != nil {
		t.Errorf("expires_at five years ahead: %v", err)
	}
	pap.PointsAccrualPosted.ExpiresAt = ptr(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := pap.CheckTimes(rec, skew); err == nil || !strings.Contains(err.Error(), "points_accrual_posted.expires_at") {
		t.Errorf("expires_at in 2200: err = %v, want it named", err)
	}
}

// CheckTimes runs on every input record: on a well-formed event it walks the times without
// allocating (issue 16: it was 10% of the run process's CPU and 17% of its allocations).
func TestCheckTimesAllocatesNothing(t *testing.T) {
	rec := t0.Add(time.Minute)
	for _, e := range sampleEvents() {
		if n := testing.AllocsPerRun(20, func() { _ = e.CheckTimes(rec, time.Hour) }); n != 0 {
			t.Errorf("%s: %.0f allocations per CheckTimes", e.EventType, n)
		}
	}
}

// erp v2: the sales-order replica and the billing documents' redemption value, each problem
// named by its path.
func TestValidateErpV2(t *testing.T) {
	sample := func(typ EventType) *Event {
		for _, e := range sampleEvents() {
			if e.EventType == typ {
				return e
			}
		}
		t.Fatalf("no sample %s", typ)
		return nil
	}
	for _, tc := range []struct {
		name   string
		typ    EventType
		mutate func(e *Event)
		want   string
	}{
		{"version zero", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.ErpVersion = 0 }, "erp_sales_order_changed.erp_version: must be > 0"},
		{"status", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Status = "CLOSED" }, `erp_sales_order_changed.status: "CLOSED" is not one of`},
		{"no items", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Items = nil }, "erp_sales_order_changed.item_map: is empty"},
		{"rejected > quantity", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Items[0].RejectedQuantity = dec("3") },
			"erp_sales_order_changed.item_map[0].rejected_quantity: 3 exceeds quantity 2"},
		{"rejected negative", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Items[1].RejectedQuantity = dec("-1") },
			"erp_sales_order_changed.item_map[1].rejected_quantity: must be ≥ 0"},
		{"rejected scale", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Items[1].RejectedQuantity = dec("0.0001") },
			"erp_sales_order_changed.item_map[1].rejected_quantity: 0.0001 has more than 3 decimal places"},
		{"duplicate item", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.Items[1].ErpItem = "10" }, `item_map[1].erp_item: "10" repeats`},
		{"no order", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.OrderID = "" }, "erp_sales_order_changed.order_id: is required"},
		{"no changed_at", TypeErpSalesOrderChanged, func(e *Event) { e.ErpSalesOrderChanged.ChangedAt = time.Time{} }, "erp_sales_order_changed.changed_at: is required"},
		{"redemption negative", TypeInvoicePosted, func(e *Event) { e.InvoicePosted.RedemptionValue = ptr(dec("-1")) }, "invoice_posted.redemption_value: must be ≥ 0"},
		{"redemption minor unit", TypeInvoicePosted, func(e *Event) { e.InvoicePosted.RedemptionValue = ptr(dec("1.005")) },
			"invoice_posted.redemption_value: 1.005 has more decimal places than EUR's minor unit (2)"},
	} {
		e := sample(tc.typ)
		tc.mutate(e)
		err := e.Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v\nwant %s", tc.name, err, tc.want)
		}
	}
	// Unknown (nil) is valid: every v1 writer's documents.
	e := sample(TypeInvoicePosted)
	e.InvoicePosted.RedemptionValue = nil
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}

// walkTimes skips the fields that cannot hold a time (reachesTime); on every sample body it
// still visits every time an unpruned walk of all exported, JSON-named fields finds.
func TestWalkTimesVisitsEveryTime(t *testing.T) {
	var all func(path string, v reflect.Value, out *[]string)
	all = func(path string, v reflect.Value, out *[]string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				all(path, v.Elem(), out)
			}
		case reflect.Slice:
			for i := range v.Len() {
				all(fmt.Sprintf("%s[%d]", path, i), v.Index(i), out)
			}
		case reflect.Struct:
			if v.Type() == timeType {
				*out = append(*out, path)
				return
			}
			for i := range v.NumField() {
				f := v.Type().Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.IsExported() && name != "" && name != "-" {
					all(path+"."+name, v.Field(i), out)
				}
			}
		}
	}
	for _, e := range sampleEvents() {
		b, n := e.setBody()
		if n != 1 {
			t.Fatalf("%s: %d bodies", e.EventType, n)
		}
		body := reflect.ValueOf(e).Elem().FieldByIndex(bodyFieldIndex(b.key))
		var want, got []string
		all(b.key, body, &want)
		walkTimes([]byte(b.key), body, func(path, _ []byte, _ time.Time) { got = append(got, string(path)) })
		if !slices.Equal(got, want) {
			t.Errorf("%s: walkTimes visits %v, the full walk finds %v", e.EventType, got, want)
		}
		if len(want) == 0 {
			t.Errorf("%s: no time in the body (the test proves nothing for it)", e.EventType)
		}
	}
}

// BenchmarkCheckTimes: CheckTimes over the sample events (one of each body type).
func BenchmarkCheckTimes(b *testing.B) {
	rec := t0.Add(time.Minute)
	es := sampleEvents()
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range es {
			_ = e.CheckTimes(rec, time.Hour)
		}
	}
}
