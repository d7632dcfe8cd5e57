package generate

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// orderGen builds the whole life of one order. Each concern draws from its own stream so that
// turning a delivery knob does not change an order's content: r (content), fr (fault decisions),
// dr (delivery), idr (event ids), xr (decisions of the faults added later, firstFaults), yr
// (those added after them, secondFaults), zr (erp v2's faults, thirdFaults), er (erp v2's
// events: ids, times and delivery of the sales-order replicas, kept apart in extra so that the
// records of every other event are what they were before erp v2).
type orderGen struct {
	g                              *generator
	i                              int
	r, fr, dr, idr, xr, yr, zr, er *rand.Rand
	extra                          []*genEvent // erp v2 replicas: delivered after the rest (deliver)
	pol                            oracle.Policy
	orderID                        string
	memberID                       string
	tier                           tier
	cur                            currency
	acceptedAt                     time.Time
	want                           map[Fault]bool
	faults                         []Fault
	events                         []*genEvent
	versions                       map[string]int64
	oa                             *schemas.Event
	lines                          []*lineState
	reservationID                  string
	redemptionID                   string
	erpSalesOrderID                string
	erpCreated                     *schemas.Event // the ErpSalesOrderCreated, if sent
	confirmed                      *schemas.Event
	cancellation                   *schemas.Event   // the order's OrderLinesCancelled, if any
	liveInvoices                   []*schemas.Event // InvoicePosted events no BillingDocumentCancelled cancels
	shipments                      []*schemas.Event // non-reship, in time order
	returns                        []*schemas.Event
	entries                        []*entry
	credits                        []credit
	firstInvoiceID                 string
}

// credit is what a return is worth, line by line, for its credit memo.
type credit struct {
	ret   *schemas.Event
	lines []creditLine
}

type creditLine struct {
	l   *lineState
	qty int
	net decimal.Decimal
}

type genEvent struct {
	ev  *schemas.Event
	key string
}

type lineState struct {
	ol        *schemas.OrderLine
	qty       int
	taxRate   decimal.Decimal
	taxCode   string
	erpItem   string
	cancelled int
	shipped   int
	returned  int
}

// entry is a posted accrual as the simulated loyalty platform keeps it.
type entry struct {
	id          string
	ev          *schemas.Event
	points      int64
	taken       int64 // reversed from it while pending
	activatesAt time.Time
}

func (g *generator) order(i int) *orderGen {
	s := g.opts.Seed
	o := &orderGen{
		g: g, i: i, pol: g.opts.Policy,
		r:        rand.New(rand.NewPCG(s, uint64(i)*4)),
		fr:       rand.New(rand.NewPCG(s, uint64(i)*4+1)),
		dr:       rand.New(rand.NewPCG(s, uint64(i)*4+2)),
		xr:       rand.New(rand.NewPCG(s^0x6661756c7473, uint64(i))),   // "faults"
		yr:       rand.New(rand.NewPCG(s^0x6c6961626c65, uint64(i))),   // "liable"
		zr:       rand.New(rand.NewPCG(s^0x65727076326620, uint64(i))), // "erpv2f "
		er:       rand.New(rand.NewPCG(s^0x65727076326576, uint64(i))), // "erpv2ev"
		idr:      rand.New(rand.NewPCG(s, uint64(i)*4+3)),
		orderID:  fmt.Sprintf("O-%s-%06d", g.tag, i+1),
		versions: map[string]int64{},
		want:     map[Fault]bool{},
	}
	for n, f := range g.opts.Faults.shares() {
		// Always draw, so one knob's value never shifts another's decisions. Faults added after
		// the first thirteen draw from their own stream, so that the traffic of a seed (and the
		// seeds RELIABILITY.md records) stays what it was for every earlier fault.
		r := o.fr
		switch {
		case n >= thirdFaults:
			r = o.zr
		case n >= secondFaults:
			r = o.yr
		case n >= firstFaults:
			r = o.xr
		}
		if r.Float64() < f.Share {
			o.want[f.Fault] = true
		}
	}
	step := g.opts.Span / time.Duration(max(g.opts.Orders, 1))
	o.acceptedAt = g.opts.Start.Add(step * time.Duration(i)).Add(between(o.r, 0, step))
	return o
}

// between is a uniform duration in [lo, hi), whole milliseconds (timestamps stay exact in micros).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	ms := int64((hi - lo) / time.Millisecond)
	if ms <= 0 {
		return lo
	}
	return lo + time.Duration(r.Int64N(ms))*time.Millisecond
}

func (o *orderGen) applied(f Fault) { o.faults = append(o.faults, f) }

func (o *orderGen) id(prefix string, n int) string {
	return fmt.Sprintf("%s-%s-%06d-%d", prefix, o.g.tag, o.i+1, n)
}

// emit creates one event with a complete envelope; body sets the event's body.
func (o *orderGen) emit(typ schemas.EventType, source, aggType, aggID string, at time.Time,
	cause *schemas.Event, key string, body func(*schemas.Event)) *schemas.Event {
	e := o.envelope(typ, source, aggType, aggID, at, cause, key)
	body(e)
	o.events = append(o.events, &genEvent{ev: e, key: key})
	return e
}

// envelope is a new event with every envelope field set and no body.
func (o *orderGen) envelope(typ schemas.EventType, source, aggType, aggID string, at time.Time,
	cause *schemas.Event, key string) *schemas.Event {
	return o.envelopeFrom(o.dr, o.idr, typ, source, aggType, aggID, at, cause, key)
}

// envelopeFrom is envelope drawing the publish delay from dr and the event id from idr.
func (o *orderGen) envelopeFrom(dr, idr *rand.Rand, typ schemas.EventType, source, aggType, aggID string, at time.Time,
	cause *schemas.Event, key string) *schemas.Event {
	o.versions[aggID]++
	at = at.UTC().Truncate(time.Microsecond)
	published := at.Add(between(dr, 50*time.Millisecond, 3*time.Second)) // deliver may make it late
	corr := o.orderID
	if key != o.orderID {
		corr = key[len("checkout:"):]
	}
	e := &schemas.Event{Envelope: schemas.Envelope{
		EventID: uuid4(idr), EventType: typ, SchemaVersion: 1, SourceSystem: source,
		OccurredAt: at, PublishedAt: published, AggregateType: aggType, AggregateID: aggID,
		AggregateVersion: o.versions[aggID], CorrelationID: corr, TenantID: "retailflow-demo",
	}}
	if cause != nil {
		id := cause.EventID
		e.CausationID = &id
	}
	return e
}

func weighted(r *rand.Rand, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

func strp(s string) *string { return &s }

// build generates every event of the order in business time: checkout and acceptance, ERP
// replica, cancellations, shipments, invoices, returns, credit memos and loyalty postings.
func (o *orderGen) build() {
	o.accept()
	o.abandonedReservations()
	o.erpSalesOrder()
	full := o.r.Float64() < 0.04
	if o.reservationID != "" {
		o.confirm(full)
	}
	var lastShip time.Time
	if full {
		o.cancel(true)
	} else {
		if o.r.Float64() < 0.08 {
			o.cancel(false)
		}
		lastShip = o.ship()
	}
	o.erpReplicaAfterCancel()
	if len(o.shipments) > 0 && o.r.Float64() < 0.15 {
		o.returnGoods(lastShip)
	}
	o.invoices()
	o.billingFaults()
	o.creditMemos()
	o.loyaltyPostings()
}

// accept builds the checkout (reservation) and OrderAccepted.
func (o *orderGen) accept() {
	r := o.r
	o.cur = currencies[weighted(r, currencies[0].weight, currencies[1].weight, currencies[2].weight)]
	isMember := r.Float64() < 0.75
	var m member
	if isMember {
		m = o.g.members[r.IntN(len(o.g.members))]
		o.memberID, o.tier = m.id, m.tier
	}
	placed := o.acceptedAt.Add(-between(r, 30*time.Second, 5*time.Minute))

	nLines := 1 + weighted(r, 30, 30, 20, 12, 8)
	perm := r.Perm(len(catalog))[:nLines]
	var products []product
	for _, p := range perm {
		products = append(products, catalog[p])
	}
	if r.Float64() < 0.08 {
		products = append(products, giftCards[r.IntN(len(giftCards))])
	}
	a := &schemas.OrderAccepted{
		OrderID: o.orderID, OrderVersion: 1, Channel: channels[r.IntN(len(channels))],
		PlacedAt: placed.UTC().Truncate(time.Microsecond), AcceptedAt: o.acceptedAt.UTC().Truncate(time.Microsecond),
		Currency: o.cur.code, PricesIncludeTax: false, RoundingMode: "HALF_EVEN", TaxCalculationMode: "LINE",
		ShipTo:           schemas.Address{Country: o.cur.country, Region: o.cur.region, Postcode: fmt.Sprintf("%05d", r.IntN(100000))},
		ReturnWindowDays: 30, DiscountApps: []schemas.DiscountApplication{}, Tenders: []schemas.Tender{},
	}
	if a.Channel == "STORE" {
		a.SellingStoreID = strp(shipNodes[3+r.IntN(2)])
	}
	if isMember {
		a.CustomerID = "C-" + m.id[2:]
		a.LoyaltyMemberID = strp(m.id)
		a.LoyaltyTierAtOrder = strp(m.tier.code)
		rate, mult := o.pol.EarnRates[o.cur.code], o.pol.TierMultipliers[m.tier.code]
		a.EarnRate, a.TierMultiplier = &rate, &mult
		a.LoyaltyProgramRefID = strp("LP-MAIN")
	} else {
		a.CustomerID = o.id("G", 0)
	}
	var eligibleSub decimal.Decimal
	for n, p := range products {
		q := 1
		if !p.giftCard {
			q = 1 + weighted(r, 60, 25, 10, 5)
		}
		price := decimal.RequireFromString(p.price)
		list := price
		if !p.giftCard && r.Float64() < 0.2 {
			list = price.Mul(decimal.RequireFromString("1.25")).RoundBank(2)
		}
		sub := price.Mul(decimal.NewFromInt(int64(q)))
		ol := schemas.OrderLine{
			OrderLineID: fmt.Sprintf("%s-L%d", o.orderID, n+1), LineNumber: int32(n + 1), SKU: p.sku,
			GTIN: strp(fmt.Sprintf("40%011d", 1000+len(p.sku)*7919+n)), ProductID: "P-" + p.sku,
			CategoryPath: strp(p.category), IsGiftCard: p.giftCard, Quantity: decimal.NewFromInt(int64(q)), UOM: "EA",
			UnitListPrice: list, UnitSalePrice: price, LineSubtotal: sub,
			DiscountAllocations: []schemas.DiscountAllocation{}, FulfillmentMethod: "SHIP",
		}
		ls := &lineState{qty: q, taxRate: o.cur.taxRate, taxCode: o.cur.taxCode, erpItem: fmt.Sprintf("%06d", (n+1)*10)}
		if p.giftCard {
			ls.taxRate, ls.taxCode = decimal.Zero, "EXEMPT-MPV"
		} else {
			eligibleSub = eligibleSub.Add(sub)
		}
		a.Lines = append(a.Lines, ol)
		o.lines = append(o.lines, ls)
	}
	for n := range o.lines {
		o.lines[n].ol = &a.Lines[n]
	}
	// Coupon: ACROSS the non-gift-card lines, at most 20 % of their subtotal.
	coupon := decimal.Zero
	couponShare := make([]decimal.Decimal, len(a.Lines))
	if r.Float64() < 0.3 && eligibleSub.GreaterThanOrEqual(decimal.NewFromInt(40)) {
		coupon = decimal.NewFromInt(int64(5 * (1 + r.IntN(4))))
		if ceiling := eligibleSub.Mul(decimal.RequireFromString("0.2")).Floor(); coupon.GreaterThan(ceiling) {
			coupon = ceiling
		}
		weights := make([]decimal.Decimal, len(a.Lines))
		for n, l := range a.Lines {
			if !l.IsGiftCard {
				weights[n] = l.LineSubtotal
			}
		}
		couponShare = allocateAcross(coupon, weights)
		code := couponCodes[r.IntN(len(couponCodes))]
		discountID := o.id("DSC", 1)
		a.DiscountApps = append(a.DiscountApps, schemas.DiscountApplication{DiscountID: discountID, Code: &code,
			Kind: "COUPON", AllocationMethod: "ACROSS", Value: coupon})
		for n := range a.Lines {
			if couponShare[n].IsPositive() {
				a.Lines[n].DiscountAllocations = append(a.Lines[n].DiscountAllocations,
					schemas.DiscountAllocation{DiscountID: discountID, Amount: couponShare[n]})
			}
		}
	}
	// Points redemption: at most 30 % of the post-coupon eligible value, each line ≥ its quantity.
	redeemPts := int64(0)
	tender := false
	if isMember && eligibleSub.IsPositive() && r.Float64() < 0.3 {
		var cents []int64
		var floors []int64
		var netCents int64
		for n, l := range a.Lines {
			c, f := int64(0), int64(0)
			if !l.IsGiftCard {
				c = l.LineSubtotal.Sub(couponShare[n]).Shift(2).IntPart()
				f = int64(o.lines[n].qty)
			}
			cents = append(cents, c)
			floors = append(floors, f)
			netCents += c
		}
		maxPts := netCents * 3 / 10 // 1 point = 0.01
		if k := maxPts / 50; k >= 4 {
			redeemPts = 50 * (4 + r.Int64N(k-3))
			alloc := largestRemainder(redeemPts, floors, cents)
			tender = r.Float64() < 0.2
			o.reservationID = o.id("RS", 1)
			o.redemptionID = o.id("RD", 1)
			accounting := "DISCOUNT"
			if tender {
				accounting = "TENDER"
			}
			a.LoyaltyRedemption = &schemas.LoyaltyRedemption{ReservationID: o.reservationID, Points: redeemPts,
				Value: decimal.New(redeemPts, -2), Accounting: accounting}
			a.CheckoutID = strp(o.id("CK", 1))
			for n := range a.Lines {
				if alloc[n] > 0 {
					a.Lines[n].RedemptionAlloc = &schemas.RedemptionAlloc{Points: alloc[n], Value: decimal.New(alloc[n], -2)}
				}
			}
		}
	}
	var lineNetSum, taxSum, merch decimal.Decimal
	for n := range a.Lines {
		l := &a.Lines[n]
		net := l.LineSubtotal.Sub(couponShare[n])
		if l.RedemptionAlloc != nil && !tender {
			net = net.Sub(l.RedemptionAlloc.Value)
		}
		l.LineNet = net
		t := tax(net, o.lines[n].taxRate)
		l.TaxLines = []schemas.TaxLine{{TaxCode: o.lines[n].taxCode, Rate: o.lines[n].taxRate, Amount: t}}
		lineNetSum, taxSum, merch = lineNetSum.Add(net), taxSum.Add(t), merch.Add(l.LineSubtotal)
	}
	shipping := decimal.Zero
	if merch.LessThan(decimal.NewFromInt(50)) {
		shipping = decimal.RequireFromString("4.95")
	}
	shipTax := tax(shipping, o.cur.taxRate)
	a.ShippingNet, a.ShippingTax = shipping, shipTax
	redValue := decimal.New(redeemPts, -2)
	grand := lineNetSum.Add(shipping).Add(taxSum).Add(shipTax)
	a.Totals = schemas.OrderTotals{MerchandiseNet: merch, DiscountTotal: coupon, LoyaltyRedemptionValue: redValue,
		ShippingNet: shipping, TaxTotal: taxSum.Add(shipTax), GrandTotal: grand}
	card := grand
	if tender {
		a.Tenders = append(a.Tenders, schemas.Tender{TenderType: "LOYALTY_POINTS", Amount: redValue})
		card = grand.Sub(redValue)
	}
	a.Tenders = append(a.Tenders, schemas.Tender{TenderType: "CARD", Amount: card})

	if o.reservationID != "" {
		reservedAt := placed.Add(-between(r, time.Minute, 10*time.Minute))
		// reserved before the order number existed: no order_id, keyed by the checkout (its own
		// stream, so the rate changes nothing else)
		key, orderID := o.orderID, strp(o.orderID)
		if rand.New(rand.NewPCG(o.g.opts.Seed^0x636b6f7574, uint64(o.i))).Float64() < o.g.opts.CheckoutReservationRate {
			key, orderID = "checkout:"+*a.CheckoutID, nil
		}
		o.emit(schemas.TypePointsReserved, "LOYALTY", "reservation", o.reservationID, reservedAt, nil, key, func(e *schemas.Event) {
			e.PointsReserved = &schemas.PointsReserved{ReservationID: o.reservationID, MemberID: o.memberID,
				CheckoutID: *a.CheckoutID, OrderID: orderID, Points: redeemPts,
				Value: schemas.Money{Amount: redValue, Currency: o.cur.code}, ConversionRate: decimal.RequireFromString("0.01"),
				ReservedAt: e.OccurredAt, ExpiresAt: e.OccurredAt.Add(30 * time.Minute)}
		})
	}
	o.oa = o.emit(schemas.TypeOrderAccepted, "OMS", "order", o.orderID, o.acceptedAt, nil, o.orderID, func(e *schemas.Event) {
		e.OrderAccepted = a
	})
}

// abandonedReservations: a member who abandoned an earlier checkout. Normally the loyalty
// platform releases the hold at TTL; the AbandonedReservation fault leaves it open.
func (o *orderGen) abandonedReservations() {
	if o.memberID == "" {
		return
	}
	var releases []bool
	if o.r.Float64() < 0.03 {
		releases = append(releases, true)
	}
	if o.want[FaultAbandonedReservation] {
		releases = append(releases, false)
	}
	for n, release := range releases {
		ck := o.id("CK", 10+n)
		res := o.id("RS", 10+n)
		pts := int64(100 * (2 + o.r.IntN(20)))
		at := o.acceptedAt.Add(-between(o.r, 2*time.Hour, 72*time.Hour))
		key := "checkout:" + ck
		reserved := o.emit(schemas.TypePointsReserved, "LOYALTY", "reservation", res, at, nil, key, func(e *schemas.Event) {
			e.PointsReserved = &schemas.PointsReserved{ReservationID: res, MemberID: o.memberID, CheckoutID: ck,
				Points: pts, Value: schemas.Money{Amount: decimal.New(pts, -2), Currency: o.cur.code},
				ConversionRate: decimal.RequireFromString("0.01"), ReservedAt: e.OccurredAt, ExpiresAt: e.OccurredAt.Add(30 * time.Minute)}
		})
		if release {
			o.emit(schemas.TypeRedemptionReleased, "LOYALTY", "reservation", res, at.Add(30*time.Minute+between(o.r, 0, 5*time.Minute)),
				reserved, key, func(e *schemas.Event) {
					e.RedemptionReleased = &schemas.RedemptionReleased{ReservationID: res, Reason: "TTL_EXPIRED", ReleasedAt: e.OccurredAt}
				})
		} else {
			o.applied(FaultAbandonedReservation)
		}
	}
}

func (o *orderGen) erpSalesOrder() {
	o.erpSalesOrderID = o.id("SO", 1)
	at := o.acceptedAt.Add(between(o.r, 2*time.Minute, 45*time.Minute))
	if o.want[FaultMissingErpOrder] {
		o.applied(FaultMissingErpOrder)
		return
	}
	wrong := -1
	if o.want[FaultWrongErpQty] {
		wrong = o.fr.IntN(len(o.lines))
		o.applied(FaultWrongErpQty)
	}
	o.erpCreated = o.emit(schemas.TypeErpSalesOrderCreated, "ERP", "sales_order", o.erpSalesOrderID, at, o.oa, o.orderID, func(e *schemas.Event) {
		s := &schemas.ErpSalesOrderCreated{ErpSalesOrderID: o.erpSalesOrderID, OrderID: o.orderID,
			SalesOrg: o.cur.country + "01", SoldTo: o.oa.OrderAccepted.CustomerID, Currency: o.cur.code, CreatedAt: e.OccurredAt}
		for n, l := range o.lines {
			q := l.ol.Quantity
			if n == wrong {
				q = q.Add(decimal.NewFromInt(1))
			}
			s.Items = append(s.Items, schemas.ErpItemLink{ErpItem: l.erpItem, OrderLineID: l.ol.OrderLineID, Quantity: q})
		}
		e.ErpSalesOrderCreated = s
	})
}

// confirm: the loyalty platform confirms the reservation once the order is accepted. The
// WithheldConfirmation fault is not applied to orders that will be fully cancelled: their
// refund is requested either way (the reservation is confirmed by OrderAccepted,
// B.1), and a simulated platform that refunds points it never confirmed would be a second fault.
func (o *orderGen) confirm(fullCancel bool) {
	at := o.acceptedAt.Add(between(o.r, 20*time.Second, 3*time.Minute))
	if o.want[FaultWithheldConfirmation] && !fullCancel {
		o.applied(FaultWithheldConfirmation)
		return
	}
	a := o.oa.OrderAccepted
	o.confirmed = o.emit(schemas.TypeRedemptionConfirmed, "LOYALTY", "reservation", o.reservationID, at, o.oa, o.orderID, func(e *schemas.Event) {
		e.RedemptionConfirmed = &schemas.RedemptionConfirmed{ReservationID: o.reservationID, RedemptionID: o.redemptionID,
			OrderID: o.orderID, Points: a.LoyaltyRedemption.Points, ConfirmedAt: e.OccurredAt}
	})
}

// cancel: a full cancellation, or a partial one of some units of one line, before fulfilment.
func (o *orderGen) cancel(full bool) {
	c := &schemas.OrderLinesCancelled{CancellationID: o.id("CX", 1), OrderID: o.orderID, IsFullOrder: full, IsPreFulfillment: true}
	total := 0
	for _, l := range o.lines {
		total += l.qty
	}
	if full {
		c.ReasonCode = cancelWhy[o.r.IntN(len(cancelWhy))]
		for _, l := range o.lines {
			l.cancelled = l.qty
			c.Lines = append(c.Lines, schemas.CancelledLine{OrderLineID: l.ol.OrderLineID, QuantityCancelled: l.ol.Quantity})
		}
	} else {
		if total < 2 {
			return
		}
		l := o.lines[o.r.IntN(len(o.lines))]
		n := 1 + o.r.IntN(min(l.qty, total-1))
		l.cancelled = n
		c.ReasonCode = "inventory"
		c.Lines = []schemas.CancelledLine{{OrderLineID: l.ol.OrderLineID, QuantityCancelled: decimal.NewFromInt(int64(n))}}
	}
	at := o.acceptedAt.Add(between(o.r, 15*time.Minute, 5*time.Hour))
	o.cancellation = o.emit(schemas.TypeOrderLinesCancelled, "OMS", "order", o.orderID, at, o.oa, o.orderID, func(e *schemas.Event) {
		c.CancelledAt = e.OccurredAt
		e.OrderLinesCancelled = c
	})
}

// ship splits the open units into 1–3 shipments (some orders keep one unit back-ordered) and
// occasionally reships a unit. It returns the time of the last non-reship shipment.
func (o *orderGen) ship() time.Time {
	r := o.r
	var units []int // line index per unit
	for n, l := range o.lines {
		for range l.qty - l.cancelled {
			units = append(units, n)
		}
	}
	if len(units) >= 2 && r.Float64() < 0.03 {
		units = units[:len(units)-1] // back-ordered: never ships within the traffic
	}
	if len(units) == 0 {
		return time.Time{}
	}
	k := min(1+weighted(r, 60, 30, 10), len(units))
	r.Shuffle(len(units), func(i, j int) { units[i], units[j] = units[j], units[i] })
	parts := make([][]int, k)
	for n, u := range units {
		p := n
		if n >= k {
			p = r.IntN(k)
		}
		parts[p] = append(parts[p], u)
	}
	at := o.acceptedAt.Add(between(r, 8*time.Hour, 30*time.Hour))
	for n, part := range parts {
		if n > 0 {
			at = at.Add(between(r, 4*time.Hour, 48*time.Hour))
		}
		qty := make([]int, len(o.lines))
		for _, u := range part {
			qty[u]++
		}
		o.shipments = append(o.shipments, o.shipment(n+1, at, qty, false))
	}
	last := at
	if r.Float64() < 0.03 {
		var shipped []int
		for n, l := range o.lines {
			if l.shipped > 0 {
				shipped = append(shipped, n)
			}
		}
		qty := make([]int, len(o.lines))
		qty[shipped[r.IntN(len(shipped))]] = 1
		o.shipment(9, last.Add(between(r, 24*time.Hour, 72*time.Hour)), qty, true)
	}
	return last
}

func (o *orderGen) shipment(n int, at time.Time, qty []int, reship bool) *schemas.Event {
	r := o.r
	id := o.id("SH", n)
	node := shipNodes[r.IntN(len(shipNodes))]
	ftype := "WAREHOUSE"
	if node[:5] == "STORE" {
		ftype = "STORE"
	}
	s := &schemas.ShipmentConfirmed{
		ShipmentID: id, FulfillmentOrderID: strp(o.id("FO", n)), OrderID: o.orderID, ShipNodeID: node,
		FulfillmentType: ftype, Carrier: o.cur.carrier[r.IntN(len(o.cur.carrier))],
		ServiceLevel:    []string{"STANDARD", "STANDARD", "EXPRESS"}[r.IntN(3)],
		TrackingNumbers: []string{fmt.Sprintf("TRK%012d", r.Int64N(1e12))}, IsReship: reship,
		Currency: strp(o.cur.code), ErpDeliveryID: strp(o.id("DL", n)),
	}
	for ln, q := range qty {
		if q == 0 {
			continue
		}
		l := o.lines[ln]
		if !reship {
			l.shipped += q
		}
		s.Lines = append(s.Lines, schemas.ShipmentLine{ShipmentLineID: fmt.Sprintf("%s-%d", id, len(s.Lines)+1),
			OrderLineID: l.ol.OrderLineID, SKU: l.ol.SKU, QuantityShipped: decimal.NewFromInt(int64(q))})
	}
	return o.emit(schemas.TypeShipmentConfirmed, "WMS", "shipment", id, at, o.oa, o.orderID, func(e *schemas.Event) {
		s.ShippedAt = e.OccurredAt
		e.ShipmentConfirmed = s
	})
}

// returnGoods: one or two returns of shipped, returnable (not gift card) units, after the last
// shipment; some are full returns.
func (o *orderGen) returnGoods(lastShip time.Time) {
	r := o.r
	returnable := func() []int {
		var out []int
		for n, l := range o.lines {
			if !l.ol.IsGiftCard && l.shipped > l.returned {
				out = append(out, n)
			}
		}
		return out
	}
	at := lastShip.Add(between(r, 48*time.Hour, 120*time.Hour))
	count := 1
	if r.Float64() < 0.25 {
		count = 2
	}
	fullReturn := r.Float64() < 0.3
	for n := 1; n <= count; n++ {
		cands := returnable()
		if len(cands) == 0 {
			return
		}
		qty := make([]int, len(o.lines))
		if fullReturn {
			for _, c := range cands {
				qty[c] = o.lines[c].shipped - o.lines[c].returned
			}
		} else {
			r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
			for _, c := range cands[:1+r.IntN(min(2, len(cands)))] {
				qty[c] = 1 + r.IntN(o.lines[c].shipped-o.lines[c].returned)
			}
		}
		o.returns = append(o.returns, o.returnEvent(n, at, qty))
		if fullReturn {
			return
		}
		at = at.Add(between(r, 24*time.Hour, 144*time.Hour))
	}
}

func (o *orderGen) returnEvent(n int, at time.Time, qty []int) *schemas.Event {
	r := o.r
	id := o.id("RT", n)
	rr := &schemas.ReturnReceived{ReturnID: id, OrderID: o.orderID, Channel: "MAIL", ReceivingLocationID: "RC-" + o.cur.country + "-01"}
	if r.Float64() < 0.3 {
		rr.Channel, rr.ReceivingLocationID = "STORE", shipNodes[3+r.IntN(2)]
	}
	var net, tx decimal.Decimal
	var cl []creditLine
	for ln, q := range qty {
		if q == 0 {
			continue
		}
		l := o.lines[ln]
		cn := o.creditNet(l, q)
		cl = append(cl, creditLine{l: l, qty: q, net: cn})
		net, tx = net.Add(cn), tx.Add(tax(cn, l.taxRate))
		l.returned += q
		disposition := "RESTOCK"
		if r.Float64() < 0.2 {
			disposition = "DAMAGED"
		}
		rr.Lines = append(rr.Lines, schemas.ReturnLine{ReturnLineID: fmt.Sprintf("%s-%d", id, len(rr.Lines)+1),
			OrderLineID: l.ol.OrderLineID, SKU: l.ol.SKU, QuantityReceived: decimal.NewFromInt(int64(q)),
			QuantityAccepted: decimal.NewFromInt(int64(q)), Disposition: disposition, ReasonCode: returnWhy[r.IntN(len(returnWhy))]})
	}
	rr.Refund = &schemas.Refund{RefundID: o.id("RF", n), Currency: o.cur.code, MerchandiseNet: net, Tax: tx,
		ShippingRefund: decimal.Zero, ReturnFee: decimal.Zero,
		Tenders: []schemas.Tender{{TenderType: "CARD", Amount: net.Add(tx)}}}
	cause := o.shipments[len(o.shipments)-1]
	ev := o.emit(schemas.TypeReturnReceived, "OMS", "return", id, at, cause, o.orderID, func(e *schemas.Event) {
		rr.ReceivedAt = e.OccurredAt
		e.ReturnReceived = rr
	})
	o.credits = append(o.credits, credit{ret: ev, lines: cl})
	return ev
}

// creditNet is the value of q more returned units of l: the drop of the line's cumulative net
// value valueCum(shipped − returned), so ERP invoiced − credited equals the OMS net value.
func (o *orderGen) creditNet(l *lineState, q int) decimal.Decimal {
	return valueCum(l.ol.LineNet, l.shipped-l.returned, l.qty).Sub(valueCum(l.ol.LineNet, l.shipped-l.returned-q, l.qty))
}
