package ledger

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// genOrder generates the events of one valid order: every eligible unit is worth ≥ 1 currency
// unit and each line's redemption allocation is ≥ its quantity (the generator guarantees of the
// contracts), partial cancellations, split shipments, returns after the shipments, the loyalty
// reservation and confirmation, the ERP sales order, an invoice per shipment and a credit memo
// per return, all with exact cents so that ERP and OMS agree.
func genOrder(r *rand.Rand, orderID string) []schemas.Event {
	base := t0.Add(time.Duration(r.IntN(1000)) * time.Minute)
	ev := 0
	id := func() string { ev++; return fmt.Sprintf("%s-e%02d", orderID, ev) }
	type genLine struct {
		id          string
		qty, cxl    int
		unit        decimal.Decimal
		gift        bool
		allocPts    int64
		shipped     []int // per shipment
		returnedQty int
	}
	member := r.IntN(5) > 0
	redeem := member && r.IntN(2) == 0
	var lines []*genLine
	for i := range 1 + r.IntN(4) {
		gl := &genLine{id: fmt.Sprintf("L%d", i+1), qty: 1 + r.IntN(4), unit: decimal.New(int64(100+r.IntN(9900)), -2), gift: r.IntN(7) == 0}
		if redeem && !gl.gift {
			gl.allocPts = int64(gl.qty * (1 + r.IntN(50)))
		}
		lines = append(lines, gl)
	}
	var totalPts int64
	var ols []schemas.OrderLine
	for i, gl := range lines {
		net := gl.unit.Mul(decimal.NewFromInt(int64(gl.qty)))
		ol := schemas.OrderLine{OrderLineID: gl.id, LineNumber: int32(i + 1), SKU: "SKU-" + gl.id, IsGiftCard: gl.gift,
			Quantity: decimal.NewFromInt(int64(gl.qty)), UOM: "EA", LineSubtotal: net, LineNet: net}
		if gl.allocPts > 0 {
			ol.RedemptionAlloc = &schemas.RedemptionAlloc{Points: gl.allocPts, Value: decimal.New(gl.allocPts, -2)}
			totalPts += gl.allocPts
		}
		ols = append(ols, ol)
	}
	var red *schemas.LoyaltyRedemption
	if totalPts > 0 {
		red = &schemas.LoyaltyRedemption{ReservationID: "RSV-" + orderID, Points: totalPts, Value: decimal.New(totalPts, -2), Accounting: []string{"DISCOUNT", "TENDER"}[r.IntN(2)]}
	}
	tier := []string{"BASE", "SILVER", "GOLD", "PLATINUM"}[r.IntN(4)]
	m := ""
	if member {
		m = "M-" + orderID
	}
	events := []schemas.Event{accepted(id(), orderID, base, m, tier, red, ols...)}
	if red != nil {
		events = append(events,
			schemas.Event{Envelope: envelope(id(), schemas.TypePointsReserved, base.Add(-time.Minute), orderID),
				PointsReserved: &schemas.PointsReserved{ReservationID: red.ReservationID, MemberID: m, CheckoutID: "CO", OrderID: &orderID, Points: totalPts,
					Value: schemas.Money{Amount: red.Value, Currency: "EUR"}, ReservedAt: base.Add(-time.Minute), ExpiresAt: base.Add(time.Hour)}},
			confirmed(id(), orderID, red.ReservationID, totalPts, base.Add(time.Minute)))
	}
	erp := &schemas.ErpSalesOrderCreated{ErpSalesOrderID: "SO-" + orderID, OrderID: orderID, Currency: "EUR", CreatedAt: base.Add(time.Hour)}
	for _, gl := range lines {
		erp.Items = append(erp.Items, schemas.ErpItemLink{ErpItem: gl.id, OrderLineID: gl.id, Quantity: decimal.NewFromInt(int64(gl.qty))})
	}
	events = append(events, schemas.Event{Envelope: envelope(id(), schemas.TypeErpSalesOrderCreated, base.Add(time.Hour), orderID), ErpSalesOrderCreated: erp})

	// Cancellations first (before any shipment), then shipments, then returns.
	nShip := 1 + r.IntN(3)
	allCancelled := true
	var cxl []qty
	for _, gl := range lines {
		if r.IntN(4) == 0 {
			gl.cxl = 1 + r.IntN(gl.qty)
		}
		if gl.cxl > 0 {
			cxl = append(cxl, qty{gl.id, fmt.Sprint(gl.cxl)})
		}
		if gl.cxl < gl.qty {
			allCancelled = false
		}
		gl.shipped = make([]int, nShip)
		for range gl.qty - gl.cxl {
			gl.shipped[r.IntN(nShip)]++
		}
	}
	if len(cxl) > 0 {
		events = append(events, cancelled(id(), orderID, "C-"+orderID, base.Add(12*time.Hour), allCancelled, cxl...))
	}
	for k := range nShip {
		at := base.Add(time.Duration(k+1) * 24 * time.Hour)
		var sl []qty
		inv := &schemas.BillingDocument{BillingDocumentID: fmt.Sprintf("INV-%s-%d", orderID, k), BillingType: "F2", OrderID: orderID,
			AccountingTransferStatus: "TRANSFERRED", BillingDate: at.Add(time.Hour), Currency: "EUR"}
		sid := fmt.Sprintf("S-%s-%d", orderID, k)
		for _, gl := range lines {
			if q := gl.shipped[k]; q > 0 {
				sl = append(sl, qty{gl.id, fmt.Sprint(q)})
				net := gl.unit.Mul(decimal.NewFromInt(int64(q)))
				inv.Lines = append(inv.Lines, schemas.BillingLine{BillingItem: gl.id, OrderLineID: gl.id, ReferenceDocument: sid, Quantity: decimal.NewFromInt(int64(q)), Net: net})
				inv.Net = inv.Net.Add(net)
			}
		}
		if len(sl) == 0 {
			continue
		}
		events = append(events, shipment(id(), orderID, sid, at, sl...),
			schemas.Event{Envelope: envelope(id(), schemas.TypeInvoicePosted, at.Add(time.Hour), orderID), InvoicePosted: inv})
	}
	for k := range 2 {
		at := base.Add(time.Duration(10+k) * 24 * time.Hour)
		rid := fmt.Sprintf("R-%s-%d", orderID, k)
		cm := &schemas.BillingDocument{BillingDocumentID: "CM-" + rid, BillingType: "RE", OrderID: orderID, AccountingTransferStatus: "TRANSFERRED",
			BillingDate: at.Add(time.Hour), Currency: "EUR", ReturnID: &rid}
		var rl []qty
		for _, gl := range lines {
			shipped := gl.qty - gl.cxl
			if left := shipped - gl.returnedQty; left > 0 && r.IntN(3) == 0 {
				q := 1 + r.IntN(left)
				gl.returnedQty += q
				rl = append(rl, qty{gl.id, fmt.Sprint(q)})
				net := gl.unit.Mul(decimal.NewFromInt(int64(q)))
				cm.Lines = append(cm.Lines, schemas.BillingLine{BillingItem: gl.id, OrderLineID: gl.id, ReferenceDocument: rid, Quantity: decimal.NewFromInt(int64(q)), Net: net})
				cm.Net = cm.Net.Add(net)
			}
		}
		if len(rl) > 0 {
			events = append(events, returned(id(), orderID, rid, at, rl...),
				schemas.Event{Envelope: envelope(id(), schemas.TypeCreditMemoPosted, at.Add(time.Hour), orderID), CreditMemoPosted: cm})
		}
	}
	return events
}

func canonical(events []schemas.Event) []schemas.Event {
	out := slices.Clone(events)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].OccurredAt.Equal(out[j].OccurredAt) {
			return out[i].OccurredAt.Before(out[j].OccurredAt)
		}
		return out[i].EventID < out[j].EventID
	})
	return out
}

// netCommands is what must not depend on arrival order: the request ids, and the sums per type.
type netCommands struct {
	ids               []string
	accrualMinusRev   int64
	refunds           int64
	accruals, reverse int
}

func summarize(cmds []schemas.LoyaltyCommand) netCommands {
	var n netCommands
	for _, c := range cmds {
		n.ids = append(n.ids, c.RequestID)
		switch c.CommandType {
		case schemas.TypeAccrualRequested:
			n.accrualMinusRev += c.Points
			n.accruals++
		case schemas.TypeReversalRequested:
			n.accrualMinusRev -= c.Points
			n.reverse++
		case schemas.TypeRedemptionRefundRequested:
			n.refunds += c.Points
		}
	}
	sort.Strings(n.ids)
	return n
}

// normalized clears what legitimately depends on arrival order: the commands (a late event adds
// corrections; what each event's commands carry does not depend on it, see sameCommands) and
// the gross accrual and reversal sums (only net sums are fixed), and when an exception was first
// observed.
func normalized(l Ledger) State {
	s := l.State()
	s.Points.AccrualRequested, s.Points.ReversalRequested = 0, 0
	s.Commands = nil
	for i := range s.Exceptions {
		s.Exceptions[i].FirstSeen = time.Time{}
	}
	return s
}

// TestOrderIndependence: for generated orders, any permutation of the events with duplicates
// injected gives the same final ledger and the same share of points per event as canonical order
// (sameCommands), and the canonical run emits exactly the commands the independent oracle
// computes.
func TestOrderIndependence(t *testing.T) {
	// The default grace (24 h), not an endless one: returns come 9–10 days after the shipments,
	// so a permutation that delivers them first exercises the grace. An endless grace here is
	// what hid the reported bug (a later return expiring a held one).
	p := DefaultPolicy()
	op := oracle.DefaultPolicy()
	r := rand.New(rand.NewPCG(1, 2))
	orders, perms := 200, 12
	if testing.Short() {
		orders = 40
	}
	for o := range orders {
		orderID := fmt.Sprintf("O-%04d", o)
		events := genOrder(r, orderID)
		ref, refCmds := run(t, p, canonical(events)...)
		if ref.Held() != 0 || len(ref.Exceptions()) != 0 {
			t.Fatalf("%s: valid order ends with held %d, exceptions %+v", orderID, ref.Held(), ref.Exceptions())
		}
		want := oracle.Commands(events, op)
		if len(want) != len(refCmds) {
			t.Fatalf("%s: %d commands, oracle %d\n got %q", orderID, len(refCmds), len(want), cmdSummary(refCmds))
		}
		for i, c := range refCmds {
			if w := want[i]; c.RequestID != w.RequestID || c.Points != w.Points || c.SourceRefID != w.SourceRefID || c.EntitledPoints != w.EntitledPoints {
				t.Fatalf("%s: command %d = %s %d %s, oracle %s %d %s", orderID, i, c.CommandType, c.Points, c.SourceRefID, w.Type, w.Points, w.SourceRefID)
			}
		}
		refNet := summarize(refCmds)
		for k := range perms {
			shuffled := slices.Clone(events)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			for i := range shuffled {
				if r.IntN(4) == 0 {
					dup := shuffled[i]
					dup.PublishedAt = dup.PublishedAt.Add(time.Hour)
					at := r.IntN(len(shuffled) + 1)
					shuffled = slices.Insert(shuffled, at, dup)
				}
			}
			l, cmds := run(t, p, shuffled...)
			if diff := cmp.Diff(normalized(ref), normalized(l), stateOpts...); diff != "" {
				t.Fatalf("%s permutation %d: final ledger differs (-canonical +permuted):\n%s", orderID, k, diff)
			}
			if got := summarize(cmds); got.accrualMinusRev != refNet.accrualMinusRev || got.refunds != refNet.refunds {
				t.Fatalf("%s permutation %d: net commands %+v, canonical %+v", orderID, k, got, refNet)
			}
			if err := sameCommands(cmds, want, false); err != nil {
				t.Fatalf("%s permutation %d: %v", orderID, k, err)
			}
		}
	}
}
