package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCLI runs a long-running command in-process until the test ends; the test fails if it
// exits with a non-zero code.
func startCLI(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, args, strings.NewReader(""), &syncBuffer{}, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("%v exited %d: %s", args, code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%v did not stop within 30s of cancellation", args)
		}
	})
}

// TestWalkingSkeleton is the foundation's end-to-end path: an OrderAccepted and a
// ShipmentConfirmed produced with the CLI end up as rows in ClickHouse, with the accrual the
// shipment earns, through the real broker, `retailflow run` and `retailflow sink`.
func TestWalkingSkeleton(t *testing.T) {
	p := newPipeline(t, 2)
	cfg := p.File
	orderID := fmt.Sprintf("O-SKEL-%d", time.Now().UnixNano())
	order := strings.ReplaceAll(`{"event_id":"ev-oa-ORDER","event_type":"OrderAccepted","schema_version":1,"source_system":"OMS","occurred_at":"2026-11-20T10:00:00Z","published_at":"2026-11-20T10:00:01Z","aggregate_type":"order","aggregate_id":"ORDER","aggregate_version":1,"correlation_id":"ORDER","tenant_id":"t1",
"order_accepted":{"order_id":"ORDER","order_version":1,"channel":"WEB","placed_at":"2026-11-20T09:59:00Z","accepted_at":"2026-11-20T10:00:00Z","customer_id":"C-1","loyalty_member_id":"M-77","loyalty_tier_at_order":"GOLD","currency":"EUR","prices_include_tax":false,"rounding_mode":"HALF_EVEN","tax_calculation_mode":"LINE",
"totals":{"merchandise_net":"160.0000","discount_total":"0","loyalty_redemption_value":"0","shipping_net":"0","tax_total":"32.0000","grand_total":"192.0000"},
"discount_applications":[],"tenders":[{"tender_type":"CARD","amount":"192.0000"}],"ship_to":{"country":"DE","region":"BE","postcode":"10115"},
"lines":[{"order_line_id":"L1","line_number":1,"sku":"SKU-A","product_id":"P-A","is_gift_card":false,"quantity":"2","uom":"EA","unit_list_price":"80","unit_sale_price":"80","line_subtotal":"160","discount_allocations":[],"line_net":"160","tax_lines":[{"tax_code":"VAT","rate":"0.2","amount":"32"}],"fulfillment_method":"SHIP"}],
"shipping_net":"0","shipping_tax":"0","return_window_days":30}}`, "ORDER", orderID)
	shipment := strings.ReplaceAll(`{"event_id":"ev-sh-ORDER","event_type":"ShipmentConfirmed","schema_version":1,"source_system":"WMS","occurred_at":"2026-11-21T08:00:00Z","published_at":"2026-11-21T08:00:01Z","aggregate_type":"shipment","aggregate_id":"SH-ORDER","aggregate_version":1,"correlation_id":"ORDER","tenant_id":"t1",
"shipment_confirmed":{"shipment_id":"SH-ORDER","order_id":"ORDER","ship_node_id":"DC-1","fulfillment_type":"WAREHOUSE","carrier":"DHL","service_level":"STD","tracking_numbers":["T1"],"shipped_at":"2026-11-21T08:00:00Z","lines":[{"shipment_line_id":"SL1","order_line_id":"L1","sku":"SKU-A","quantity_shipped":"1"}],"is_reship":false}}`, "ORDER", orderID)
	oneLine := func(s string) string { return strings.ReplaceAll(s, "\n", "") + "\n" }
	for topic, line := range map[string]string{"orders": oneLine(order), "shipments": oneLine(shipment)} {
		if out, stderr, code := runCLI(t, line, "produce", "--config", cfg, "--topic", topic); code != 0 {
			t.Fatalf("produce %s: %s %s", topic, out, stderr)
		}
	}
	startCLI(t, "run", "--config", cfg, "--instance-id", "0")
	startCLI(t, "sink", "--config", cfg)

	conn, db := p.CH, p.DB
	deadline := time.Now().Add(90 * time.Second)
	for {
		var orders, shipped, accrued uint64
		var points int64
		row := conn.QueryRow(context.Background(), fmt.Sprintf(`SELECT
			(SELECT count() FROM %[1]s.orders FINAL WHERE order_id = ?),
			(SELECT count() FROM %[1]s.shipment_lines FINAL WHERE order_id = ?),
			(SELECT count() FROM %[1]s.loyalty_commands FINAL WHERE order_id = ? AND command_type = 'AccrualRequested'),
			(SELECT sum(points) FROM %[1]s.loyalty_commands FINAL WHERE order_id = ?)`, db), orderID, orderID, orderID, orderID)
		if err := row.Scan(&orders, &shipped, &accrued, &points); err != nil {
			t.Fatalf("query ClickHouse: %v", err)
		}
		// One of two units of 80.00 shipped, GOLD ×1.5 at 1 point per euro: floor(80 × 1.5) = 120.
		if orders == 1 && shipped == 1 && accrued == 1 {
			if points != 120 {
				t.Fatalf("accrual of %d points, want 120", points)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s: orders=%d shipment_lines=%d accruals=%d in ClickHouse", orders, shipped, accrued)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
