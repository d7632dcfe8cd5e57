package ledger_test

import (
	"fmt"
	"time"

	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// A GOLD member's order (the worked example, O-1001) ships in two parts: the cumulative rule posts 141 and
// then 181 points — 322 in all, as if it had shipped at once (per-shipment flooring would give 321).
func ExampleLedger_Apply() {
	day := func(n int) time.Time { return time.Date(2026, 10, 1+n, 9, 0, 0, 0, time.UTC) }
	member, tier := "M-77", "GOLD"
	line := func(id string, qty int64, net string, gift bool) schemas.OrderLine {
		return schemas.OrderLine{OrderLineID: id, SKU: "SKU-" + id, Quantity: decimal.NewFromInt(qty), LineNet: decimal.RequireFromString(net), IsGiftCard: gift}
	}
	ship := func(id, shipment string, at time.Time, lines ...schemas.ShipmentLine) schemas.Event {
		return schemas.Event{
			Envelope:          schemas.Envelope{EventID: id, EventType: schemas.TypeShipmentConfirmed, OccurredAt: at},
			ShipmentConfirmed: &schemas.ShipmentConfirmed{ShipmentID: shipment, OrderID: "O-1001", ShippedAt: at, Lines: lines},
		}
	}
	units := func(id string, q int64) schemas.ShipmentLine {
		return schemas.ShipmentLine{OrderLineID: id, QuantityShipped: decimal.NewFromInt(q)}
	}
	events := []schemas.Event{
		{Envelope: schemas.Envelope{EventID: "e-1", EventType: schemas.TypeOrderAccepted, OccurredAt: day(0)},
			OrderAccepted: &schemas.OrderAccepted{OrderID: "O-1001", Currency: "EUR", AcceptedAt: day(0),
				LoyaltyMemberID: &member, LoyaltyTierAtOrder: &tier,
				Lines: []schemas.OrderLine{line("L1", 2, "137.60", false), line("L2", 3, "77.40", false), line("L3", 1, "50.00", true)}}},
		ship("e-2", "S1", day(1), units("L1", 1), units("L2", 1), units("L3", 1)),
		ship("e-3", "S2", day(4), units("L1", 1), units("L2", 2)),
	}
	p := ledger.DefaultPolicy()
	var l ledger.Ledger
	for _, e := range events {
		var cmds []schemas.LoyaltyCommand
		var err error
		if l, cmds, err = l.Apply(e, p); err != nil {
			fmt.Println(err)
			return
		}
		for _, c := range cmds {
			fmt.Printf("%s %d points for %s (P = %d), active from %s\n", c.CommandType, c.Points, c.SourceRefID, c.EntitledPoints, c.ActivatesAt.Format("2006-01-02"))
		}
	}
	fmt.Println("entitled:", l.Points().Entitled)
	// Output:
	// AccrualRequested 141 points for S1 (P = 141), active from 2026-11-01
	// AccrualRequested 181 points for S2 (P = 322), active from 2026-11-04
	// entitled: 322
}
