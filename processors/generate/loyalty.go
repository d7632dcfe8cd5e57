package generate

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// loyaltyPostings simulates the loyalty platform answering the commands the pipeline emits for
// this order (as the oracle computes them): accruals posted PENDING, reversals taken from the
// order's pending entries first (latest first) then from the active balance, redemption refunds.
// Faults withhold or distort some postings.
func (o *orderGen) loyaltyPostings() {
	evs := make([]schemas.Event, 0, len(o.events))
	for _, ge := range o.events {
		if ge.key == o.orderID {
			evs = append(evs, *ge.ev)
		}
	}
	cmds := oracle.Commands(evs, o.pol)
	var accruals, reversals, returnRefunds, cancelRefunds []int
	for n, c := range cmds {
		switch {
		case c.Type == schemas.TypeAccrualRequested:
			accruals = append(accruals, n)
		case c.Type == schemas.TypeReversalRequested:
			reversals = append(reversals, n)
		case c.Reason == "RETURN":
			returnRefunds = append(returnRefunds, n)
		case c.Reason == "CANCELLATION":
			cancelRefunds = append(cancelRefunds, n)
		}
	}
	withheld := map[int]bool{}
	short := -1
	wrongMult := false
	if o.want[FaultWithheldAccrual] && len(accruals) > 0 {
		withheld[accruals[len(accruals)-1]] = true
		o.applied(FaultWithheldAccrual)
	}
	if o.want[FaultWrongMultiplier] && len(accruals) > 0 {
		wrongMult = true
		o.applied(FaultWrongMultiplier)
	}
	if o.want[FaultWithheldReversal] && len(reversals) > 0 {
		withheld[reversals[o.fr.IntN(len(reversals))]] = true
		o.applied(FaultWithheldReversal)
	}
	if o.want[FaultShortReversal] {
		var cands []int
		for _, n := range reversals {
			if !withheld[n] && cmds[n].Points >= 2 {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			short = cands[o.fr.IntN(len(cands))]
			o.applied(FaultShortReversal)
		}
	}
	if o.want[FaultWithheldRefund] && len(returnRefunds) > 0 {
		withheld[returnRefunds[o.fr.IntN(len(returnRefunds))]] = true
		o.applied(FaultWithheldRefund)
	}
	if o.want[FaultWithheldCxlRefund] && len(cancelRefunds) > 0 {
		withheld[cancelRefunds[o.yr.IntN(len(cancelRefunds))]] = true
		o.applied(FaultWithheldCxlRefund)
	}
	var p postingFaults
	if o.want[FaultEarlyActivation] {
		for _, n := range reversals {
			if !withheld[n] && cmds[n].Reason == "RETURN" {
				p.earlyActivation = true
			}
		}
		if p.earlyActivation {
			o.applied(FaultEarlyActivation)
		}
	}
	if len(accruals) > 0 && !withheld[accruals[0]] {
		if o.want[FaultAccrualBeforeShipment] {
			p.early = accruals[0]
			o.applied(FaultAccrualBeforeShipment)
		} else {
			p.early = -1
		}
		if value, pts := o.ineligibleValue(cmds[accruals[0]]); o.want[FaultPointsOnIneligible] && pts > 0 {
			p.ineligible, p.ineligibleValue, p.ineligiblePoints = accruals[0], value, pts
			o.applied(FaultPointsOnIneligible)
		} else {
			p.ineligible = -1
		}
	} else {
		p.early, p.ineligible = -1, -1
	}
	p.otherMember = -1
	if o.want[FaultAccrualOtherMember] && len(accruals) > 0 && !withheld[accruals[0]] && len(o.g.members) > 1 {
		m := o.g.members[o.yr.IntN(len(o.g.members))].id
		for m == o.memberID {
			m = o.g.members[o.yr.IntN(len(o.g.members))].id
		}
		p.otherMember, p.otherMemberID = accruals[0], m
		o.applied(FaultAccrualOtherMember)
	}
	causes := map[string]*schemas.Event{}
	for _, ge := range o.events {
		causes[ge.ev.EventID] = ge.ev
	}
	for n, c := range cmds {
		at := c.BusinessTime.Add(between(o.r, time.Minute, 15*time.Minute))
		if withheld[n] {
			continue
		}
		cause := causes[c.CausingEventID]
		switch c.Type {
		case schemas.TypeAccrualRequested:
			o.postAccrual(n, c, at, cause, wrongMult, p)
		case schemas.TypeReversalRequested:
			pts := c.Points
			if n == short {
				pts -= max(1, pts/4)
			}
			o.postReversal(n, c, pts, at, cause)
		case schemas.TypeRedemptionRefundRequested:
			o.emit(schemas.TypeRedemptionRefunded, "LOYALTY", "redemption", o.redemptionID, at, cause, o.orderID, func(e *schemas.Event) {
				req := c.RequestID
				e.RedemptionRefunded = &schemas.RedemptionRefunded{RefundEntryID: o.id("RFE", n+1), RequestID: &req,
					RedemptionID: o.redemptionID, OrderID: o.orderID, Points: c.Points, Reason: c.Reason,
					SourceRefID: c.SourceRefID, ExpiryPolicy: "RESTORE_ORIGINAL", RefundedAt: e.OccurredAt}
			})
		}
	}
}

// postingFaults are the accrual-posting faults chosen for an order: indexes into its commands
// (-1 for none).
type postingFaults struct {
	earlyActivation  bool
	early            int
	ineligible       int
	ineligibleValue  decimal.Decimal
	ineligiblePoints int64
	otherMember      int    // the accrual posted to otherMemberID instead of the order's member
	otherMemberID    string // AccrualOtherMember
}

// ineligibleValue is what a platform that ignored E(l) = 0 would add to c's basis: the net of
// the order's gift card lines and its shipping fee, with the points it would earn at c's rate.
func (o *orderGen) ineligibleValue(c oracle.Command) (decimal.Decimal, int64) {
	a := o.oa.OrderAccepted
	value := a.ShippingNet
	for _, l := range a.Lines {
		if l.IsGiftCard {
			value = value.Add(l.LineNet)
		}
	}
	return value, value.Mul(c.EarnRate).Mul(c.TierMultiplier).Floor().IntPart()
}

func (o *orderGen) postAccrual(n int, c oracle.Command, at time.Time, cause *schemas.Event, wrongMult bool, f postingFaults) {
	id := o.id("LE", n+1)
	pts, mult, basis := c.Points, c.TierMultiplier, c.BasisAmount
	if wrongMult {
		mult = o.tier.wrong
		inflated := decimal.NewFromInt(c.Points).Mul(mult).Div(c.TierMultiplier).IntPart()
		pts = max(c.Points+1, inflated)
	}
	if n == f.ineligible {
		basis, pts = basis.Add(f.ineligibleValue), pts+f.ineligiblePoints
	}
	if n == f.early {
		at = o.acceptedAt.Add(between(o.xr, time.Minute, 10*time.Minute))
	}
	member := o.memberID
	if n == f.otherMember {
		member = f.otherMemberID
	}
	activates := c.ActivatesAt.UTC().Truncate(time.Microsecond)
	if f.earlyActivation {
		activates = at.Add(24 * time.Hour).UTC().Truncate(time.Microsecond)
	}
	ev := o.emit(schemas.TypePointsAccrualPosted, "LOYALTY", "ledger_entry", id, at, cause, o.orderID, func(e *schemas.Event) {
		expires := activates.AddDate(1, 0, 0)
		e.PointsAccrualPosted = &schemas.PointsAccrualPosted{LedgerEntryID: id, RequestID: c.RequestID, OrderID: o.orderID,
			MemberID: member, Points: pts, Status: "PENDING", ActivatesAt: activates, ExpiresAt: &expires,
			SourceRef: c.SourceRefID, BasisAmount: basis, Currency: o.cur.code, EarnRate: c.EarnRate,
			TierCode: c.TierCode, TierMultiplier: mult, RuleVersion: o.pol.Version, PostedAt: e.OccurredAt}
	})
	o.entries = append(o.entries, &entry{id: id, ev: ev, points: pts, activatesAt: activates})
}

func (o *orderGen) postReversal(n int, c oracle.Command, pts int64, at time.Time, cause *schemas.Event) {
	id := o.id("LE", n+1)
	var fromPending int64
	var touched []string
	for k := len(o.entries) - 1; k >= 0 && fromPending < pts; k-- {
		en := o.entries[k]
		if !en.activatesAt.After(at) {
			continue // already active
		}
		take := min(en.points-en.taken, pts-fromPending)
		if take > 0 {
			en.taken += take
			fromPending += take
			touched = append(touched, en.id)
		}
	}
	fromActive := pts - fromPending
	if fromActive > 0 {
		for k := len(o.entries) - 1; k >= 0; k-- {
			if !o.entries[k].activatesAt.After(at) {
				touched = append(touched, o.entries[k].id)
			}
		}
	}
	if touched == nil {
		touched = []string{}
	}
	o.emit(schemas.TypePointsReversed, "LOYALTY", "ledger_entry", id, at, cause, o.orderID, func(e *schemas.Event) {
		e.PointsReversed = &schemas.PointsReversed{LedgerEntryID: id, RequestID: c.RequestID, OrderID: o.orderID,
			MemberID: o.memberID, Points: pts, FromPending: fromPending, FromActive: fromActive, Reason: "RETURN",
			SourceRefID: c.SourceRefID, ReversesEntryIDs: touched, ReversedAt: e.OccurredAt}
	})
}

// activate posts PointsActivated for every entry whose lock ended by end, for what is left
// pending of it.
func (o *orderGen) activate(end time.Time) {
	for _, en := range o.entries {
		left := en.points - en.taken
		if left <= 0 || en.activatesAt.After(end) {
			continue
		}
		o.emit(schemas.TypePointsActivated, "LOYALTY", "ledger_entry", en.id, en.activatesAt, en.ev, o.orderID, func(e *schemas.Event) {
			e.PointsActivated = &schemas.PointsActivated{LedgerEntryID: en.id, OrderID: o.orderID, Points: left, ActivatedAt: e.OccurredAt}
		})
	}
}

// movesPoints reports whether e changes P or the refundable points of its order: the OMS events
// whose relative order decides the points of each command (oracle.Command).
func movesPoints(e *schemas.Event) bool {
	return e.OrderLinesCancelled != nil || e.ShipmentConfirmed != nil || e.ReturnReceived != nil
}

// deliver turns the order's events into records: late publication, shuffled (out-of-order)
// delivery, duplicates and one malformed record, as the options ask.
//
// Neither lateness nor shuffling changes the relative order of the events that move points
// (cancellations, shipments, returns): the pipeline's commands then equal the oracle's canonical
// ones, and the loyalty postings (which answer those) match what the pipeline asks. (A pipeline
// that reads the topics in another relative order still gives every event its canonical share,
// but through corrections that these pre-generated postings do not answer: DESIGN.md
// invariant 13.)
// Everything else moves freely: OrderAccepted after shipments, postings and ERP documents before
// what caused them.
func (o *orderGen) deliver() []seqRecord {
	opts := o.g.opts
	var moving []*schemas.Event // canonical order
	for _, ge := range o.events {
		if movesPoints(ge.ev) {
			moving = append(moving, ge.ev)
		}
	}
	sort.SliceStable(moving, func(i, j int) bool { return moving[i].OccurredAt.Before(moving[j].OccurredAt) })
	nextMoving := map[*schemas.Event]time.Time{}
	for i := 0; i+1 < len(moving); i++ {
		nextMoving[moving[i]] = moving[i+1].PublishedAt
	}
	for _, ge := range o.events {
		if o.dr.Float64() >= opts.LateRate {
			continue
		}
		late := ge.ev.OccurredAt.Add(between(o.dr, 24*time.Hour, 26*time.Hour))
		if next, ok := nextMoving[ge.ev]; ok && !late.Before(next) {
			continue // it would overtake a later event that moves points
		}
		ge.ev.PublishedAt = late
	}
	recs := make([]seqRecord, 0, len(o.events)+2)
	for _, ge := range o.events {
		recs = append(recs, seqRecord{Record: Record{Topic: topicOf(ge.ev.EventType), Key: ge.key, Event: ge.ev, At: ge.ev.PublishedAt}})
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
	if o.dr.Float64() < opts.OutOfOrderRate && len(recs) > 1 {
		times := make([]time.Time, len(recs))
		for i := range recs {
			times[i] = recs[i].At
		}
		o.dr.Shuffle(len(times), func(i, j int) { times[i], times[j] = times[j], times[i] })
		var slots []time.Time
		for i := range recs {
			recs[i].At = times[i]
			if movesPoints(recs[i].Event) {
				slots = append(slots, times[i])
			}
		}
		// The events that move points take their shuffled slots in canonical order.
		sort.Slice(slots, func(i, j int) bool { return slots[i].Before(slots[j]) })
		slot := map[*schemas.Event]time.Time{}
		for i, e := range moving {
			slot[e] = slots[i]
		}
		for i := range recs {
			if t, ok := slot[recs[i].Event]; ok {
				recs[i].At = t
			}
		}
		// Exercise holding: something must arrive before OrderAccepted, preferably the first
		// shipment (the earliest slot keeps the canonical order).
		first := minAt(recs)
		for i := range recs {
			if recs[i].Event != o.oa || !recs[i].At.Equal(first) {
				continue
			}
			j := (i + 1 + o.dr.IntN(len(recs)-1)) % len(recs)
			if len(moving) > 0 {
				for k := range recs {
					if recs[k].Event == moving[0] {
						j = k
					}
				}
			}
			recs[i].At, recs[j].At = recs[j].At, recs[i].At
		}
	}
	n := len(recs)
	for i := range n {
		if o.dr.Float64() < opts.DuplicateRate {
			d := recs[i]
			d.At = d.At.Add(between(o.dr, time.Second, 10*time.Minute))
			d.Duplicate = true
			recs = append(recs, d)
		}
	}
	if o.dr.Float64() < opts.MalformedRate {
		recs = append(recs, o.malformed(recs[o.dr.IntN(n)].At.Add(time.Second)))
	}
	// erp v2's replicas: late and duplicated like the rest, drawn from their own stream.
	for _, ge := range o.extra {
		if o.er.Float64() < opts.LateRate {
			ge.ev.PublishedAt = ge.ev.OccurredAt.Add(between(o.er, 24*time.Hour, 26*time.Hour))
		}
		r := seqRecord{Record: Record{Topic: topicOf(ge.ev.EventType), Key: ge.key, Event: ge.ev, At: ge.ev.PublishedAt}}
		recs = append(recs, r)
		if o.er.Float64() < opts.DuplicateRate {
			r.At = r.At.Add(between(o.er, time.Second, 10*time.Minute))
			r.Duplicate = true
			recs = append(recs, r)
		}
	}
	return recs
}

func minAt(recs []seqRecord) time.Time {
	m := recs[0].At
	for _, r := range recs[1:] {
		if r.At.Before(m) {
			m = r.At
		}
	}
	return m
}

// malformed is one record that must end in the DLQ.
func (o *orderGen) malformed(at time.Time) seqRecord {
	rec := Record{Key: o.orderID, At: at}
	line := o.lines[0]
	switch o.dr.IntN(4) {
	case 0:
		rec.Topic, rec.Class = schemas.TopicShipments, schemas.ClassBadHeader
		rec.Raw = []byte(fmt.Sprintf(`{"event_type":"ShipmentConfirmed","order_id":%q,"lines":[{"order_line_id":%q,"quantity_shipped":"1"}]}`,
			o.orderID, line.ol.OrderLineID))
		rec.Malformed = "value is JSON, not Confluent-framed Avro (first byte 0x7b, want magic byte 0)"
	case 1:
		rec.Topic, rec.Class = schemas.TopicReturns, schemas.ClassUnknownSchema
		rec.Raw = make([]byte, 5, 21)
		binary.BigEndian.PutUint32(rec.Raw[1:], UnknownSchemaID)
		rec.Raw = binary.BigEndian.AppendUint64(rec.Raw, o.dr.Uint64())
		rec.Raw = binary.BigEndian.AppendUint64(rec.Raw, o.dr.Uint64())
		rec.Malformed = fmt.Sprintf("schema id %d is not registered", UnknownSchemaID)
	case 2:
		id := o.id("SH", 77)
		e := o.envelope(schemas.TypeShipmentConfirmed, "WMS", "shipment", id, at.Add(-time.Second), o.oa, o.orderID)
		e.ShipmentConfirmed = &schemas.ShipmentConfirmed{ShipmentID: id, OrderID: o.orderID, ShipNodeID: "DC-NORTH",
			FulfillmentType: "WAREHOUSE", Carrier: o.cur.carrier[0], ServiceLevel: "STANDARD", TrackingNumbers: []string{},
			ShippedAt: e.OccurredAt, Lines: []schemas.ShipmentLine{{ShipmentLineID: id + "-1", OrderLineID: line.ol.OrderLineID,
				SKU: line.ol.SKU, QuantityShipped: decimal.Zero}}}
		rec.Topic, rec.Class, rec.Event = schemas.TopicShipments, schemas.ClassInvalid, e
		rec.Malformed = "shipment line quantity_shipped must be > 0"
	default:
		id := o.id("RT", 77)
		e := o.envelope(schemas.TypeReturnReceived, "OMS", "return", id, at.Add(-time.Second), o.oa, o.orderID)
		e.ReturnReceived = &schemas.ReturnReceived{ReturnID: id, OrderID: o.orderID, ReceivedAt: e.OccurredAt,
			ReceivingLocationID: "RC-" + o.cur.country + "-01", Channel: "MAIL",
			Lines: []schemas.ReturnLine{{ReturnLineID: id + "-1", OrderLineID: line.ol.OrderLineID, SKU: line.ol.SKU,
				QuantityReceived: decimal.NewFromInt(1), QuantityAccepted: decimal.NewFromInt(-1), Disposition: "RESTOCK", ReasonCode: "SIZE"}}}
		rec.Topic, rec.Class, rec.Event = schemas.TopicReturns, schemas.ClassInvalid, e
		rec.Malformed = "return line quantity_accepted must be > 0"
	}
	return seqRecord{Record: rec}
}
