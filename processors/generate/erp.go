package generate

import (
	"fmt"
	"time"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

var companyCodes = map[string]string{"EUR": "1000", "GBP": "2000", "USD": "3000"}

// invoices posts one F2 invoice per non-reship shipment after the nightly billing run, each line
// billing the difference of the line's cumulative value. A few invoices are
// cancelled (S1) and re-issued. Faults: a shipment never invoiced, an invoice line a unit short,
// an invoice not transferred to accounting.
func (o *orderGen) invoices() {
	if len(o.shipments) == 0 {
		return
	}
	missing, shortShip, shortLine, untransferred := -1, -1, "", -1
	if o.want[FaultMissingInvoice] {
		missing = o.fr.IntN(len(o.shipments))
		o.applied(FaultMissingInvoice)
	}
	if o.want[FaultShortInvoice] {
		type cand struct {
			ship int
			line string
		}
		var cands []cand
		for n, s := range o.shipments {
			for _, l := range s.ShipmentConfirmed.Lines {
				if n != missing && l.QuantityShipped.GreaterThanOrEqual(decimal.NewFromInt(2)) {
					cands = append(cands, cand{n, l.OrderLineID})
				}
			}
		}
		if len(cands) > 0 {
			c := cands[o.fr.IntN(len(cands))]
			shortShip, shortLine = c.ship, c.line
			o.applied(FaultShortInvoice)
		}
	}
	foreign := -1
	if o.want[FaultCurrencyDiff] {
		var cands []int
		for n := range o.shipments {
			if n != missing {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			foreign = cands[o.xr.IntN(len(cands))]
			o.applied(FaultCurrencyDiff)
		}
	}
	// TaxDiff: one live invoice's first line taxed at the line's rate + 5 points (a wrong tax
	// code in the ERP); the document's tax and gross follow its lines.
	wrongTax := -1
	if o.want[FaultTaxDiff] {
		var cands []int
		for n := range o.shipments {
			if n != missing && n != foreign {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			wrongTax = cands[o.yr.IntN(len(cands))]
			o.applied(FaultTaxDiff)
		}
	}
	if o.want[FaultInvoiceNotTransferred] {
		var cands []int
		for n := range o.shipments {
			if n != missing {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			untransferred = cands[o.fr.IntN(len(cands))]
			o.applied(FaultInvoiceNotTransferred)
		}
	}
	byID := map[string]*lineState{}
	for _, l := range o.lines {
		byID[l.ol.OrderLineID] = l
	}
	cum := map[string]int{} // units shipped before this shipment, per line
	docs := 0
	dropRedemption := o.want[FaultRedemptionValueDiff]
	for n, s := range o.shipments {
		sc := s.ShipmentConfirmed
		doc := &schemas.BillingDocument{BillingType: "F2", OrderID: o.orderID, ErpSalesOrderID: o.erpSalesOrderID,
			CompanyCode: companyCodes[o.cur.code], AccountingTransferStatus: "TRANSFERRED", Currency: o.cur.code,
			FxRate: decimal.NewFromInt(1)}
		var redemption decimal.Decimal // erp v2: the redemption share of the billed units
		for _, sl := range sc.Lines {
			l := byID[sl.OrderLineID]
			q := int(sl.QuantityShipped.IntPart())
			billed := q
			if n == shortShip && sl.OrderLineID == shortLine {
				billed = q - 1
			}
			redemption = redemption.Add(redemptionShare(l, cum[sl.OrderLineID], cum[sl.OrderLineID]+billed))
			net := valueCum(l.ol.LineNet, cum[sl.OrderLineID]+billed, l.qty).Sub(valueCum(l.ol.LineNet, cum[sl.OrderLineID], l.qty))
			cum[sl.OrderLineID] += q
			t := tax(net, l.taxRate)
			if n == wrongTax && len(doc.Lines) == 0 {
				t = tax(net, l.taxRate.Add(decimal.RequireFromString("0.05")))
			}
			doc.Lines = append(doc.Lines, schemas.BillingLine{BillingItem: fmt.Sprintf("%06d", (len(doc.Lines)+1)*10),
				OrderLineID: sl.OrderLineID, ErpItem: l.erpItem, ReferenceDocument: sc.ShipmentID, SKU: l.ol.SKU,
				Quantity: decimal.NewFromInt(int64(billed)), Net: net, Tax: t})
			doc.Net, doc.Tax = doc.Net.Add(net), doc.Tax.Add(t)
		}
		doc.Gross = doc.Net.Add(doc.Tax)
		if n == missing {
			continue
		}
		if dropRedemption && redemption.IsPositive() && o.confirmed != nil {
			redemption, dropRedemption = decimal.Zero, false
			o.applied(FaultRedemptionValueDiff)
		}
		doc.RedemptionValue = &redemption
		if n == untransferred {
			doc.AccountingTransferStatus = []string{"NOT_TRANSFERRED", "BLOCKED"}[o.fr.IntN(2)]
		}
		if n == foreign {
			doc.Currency = otherCurrency(o.cur.code)
		}
		// Nightly billing run: the early hours after the shipment.
		at := sc.ShippedAt.Add(between(o.r, 3*time.Hour, 20*time.Hour))
		if o.r.Float64() < 0.03 {
			docs++
			first := o.postInvoice(docs, *doc, "TRANSFERRED", at, s)
			docs++
			cancelID := o.id("BD", docs)
			at = at.Add(between(o.r, time.Hour, 6*time.Hour))
			o.emit(schemas.TypeBillingDocCancelled, "ERP", "billing_document", cancelID, at, first, o.orderID, func(e *schemas.Event) {
				e.BillingDocCancelled = &schemas.BillingDocCancelled{BillingDocumentID: cancelID,
					CancelsBillingDocumentID: first.InvoicePosted.BillingDocumentID, OrderID: o.orderID, CancelledAt: e.OccurredAt}
			})
			at = at.Add(time.Minute)
		}
		docs++
		o.liveInvoices = append(o.liveInvoices, o.postInvoice(docs, *doc, doc.AccountingTransferStatus, at, s))
	}
}

// otherCurrency is a currency of the catalogue other than code (a wrong document currency).
func otherCurrency(code string) string {
	for _, c := range currencies {
		if c.code != code {
			return c.code
		}
	}
	return code
}

// billingFaults posts the ERP's extra invoices: one shipment's invoice again under a new
// document id (DuplicateBilling), and an invoice of the units the OMS cancelled
// (InvoicedCancelledLine).
func (o *orderGen) billingFaults() {
	if o.want[FaultDuplicateBilling] && len(o.liveInvoices) > 0 {
		first := o.liveInvoices[o.xr.IntN(len(o.liveInvoices))]
		doc := *first.InvoicePosted
		doc.Lines = append([]schemas.BillingLine(nil), doc.Lines...)
		o.postInvoice(50, doc, doc.AccountingTransferStatus, first.OccurredAt.Add(between(o.xr, 20*time.Hour, 30*time.Hour)), first)
		o.applied(FaultDuplicateBilling)
	}
	if o.want[FaultInvoicedCancelledLine] && o.cancellation != nil {
		c := o.cancellation.OrderLinesCancelled
		doc := schemas.BillingDocument{BillingType: "F2", OrderID: o.orderID, ErpSalesOrderID: o.erpSalesOrderID,
			CompanyCode: companyCodes[o.cur.code], AccountingTransferStatus: "TRANSFERRED", Currency: o.cur.code,
			FxRate: decimal.NewFromInt(1)}
		for _, cl := range c.Lines {
			var l *lineState
			for _, x := range o.lines {
				if x.ol.OrderLineID == cl.OrderLineID {
					l = x
				}
			}
			q := int(cl.QuantityCancelled.IntPart())
			if l == nil || q <= 0 {
				continue
			}
			net := valueCum(l.ol.LineNet, l.qty, l.qty).Sub(valueCum(l.ol.LineNet, l.qty-q, l.qty))
			rv := redemptionShare(l, l.qty-q, l.qty)
			if doc.RedemptionValue != nil {
				rv = rv.Add(*doc.RedemptionValue)
			}
			doc.RedemptionValue = &rv
			t := tax(net, l.taxRate)
			doc.Lines = append(doc.Lines, schemas.BillingLine{BillingItem: fmt.Sprintf("%06d", (len(doc.Lines)+1)*10),
				OrderLineID: l.ol.OrderLineID, ErpItem: l.erpItem, ReferenceDocument: c.CancellationID, SKU: l.ol.SKU,
				Quantity: cl.QuantityCancelled, Net: net, Tax: t})
			doc.Net, doc.Tax = doc.Net.Add(net), doc.Tax.Add(t)
		}
		if len(doc.Lines) > 0 {
			doc.Gross = doc.Net.Add(doc.Tax)
			o.postInvoice(51, doc, "TRANSFERRED", c.CancelledAt.Add(between(o.xr, 3*time.Hour, 20*time.Hour)), o.cancellation)
			o.applied(FaultInvoicedCancelledLine)
		}
	}
}

func (o *orderGen) postInvoice(n int, doc schemas.BillingDocument, status string, at time.Time, cause *schemas.Event) *schemas.Event {
	doc.BillingDocumentID = o.id("BD", n)
	doc.AccountingTransferStatus = status
	if status == "TRANSFERRED" {
		doc.AccountingDocumentID = strp(o.id("AD", n))
	}
	if o.firstInvoiceID == "" {
		o.firstInvoiceID = doc.BillingDocumentID
	}
	return o.emit(schemas.TypeInvoicePosted, "ERP", "billing_document", doc.BillingDocumentID, at, cause, o.orderID, func(e *schemas.Event) {
		doc.BillingDate = e.OccurredAt
		doc.FiscalYear = int32(e.OccurredAt.Year())
		e.InvoicePosted = &doc
	})
}

// creditMemos posts one RE credit memo per return; the MissingCreditMemo fault withholds one.
func (o *orderGen) creditMemos() {
	missing := -1
	if o.want[FaultMissingCreditMemo] && len(o.credits) > 0 {
		missing = o.fr.IntN(len(o.credits))
		o.applied(FaultMissingCreditMemo)
	}
	untaxed := -1
	if o.want[FaultCreditMemoWithoutTax] {
		var cands []int
		for n, c := range o.credits {
			taxed := false
			for _, cl := range c.lines {
				taxed = taxed || tax(cl.net, cl.l.taxRate).IsPositive()
			}
			if n != missing && taxed {
				cands = append(cands, n)
			}
		}
		if len(cands) > 0 {
			untaxed = cands[o.xr.IntN(len(cands))]
			o.applied(FaultCreditMemoWithoutTax)
		}
	}
	returned := map[*lineState]int{} // units credited before this return, per line
	for n, c := range o.credits {
		rr := c.ret.ReturnReceived
		at := rr.ReceivedAt.Add(between(o.r, 2*time.Hour, 24*time.Hour))
		var redemption decimal.Decimal // erp v2: the redemption share the credit memo gives back
		for _, cl := range c.lines {
			redemption = redemption.Add(redemptionShare(cl.l, returned[cl.l], returned[cl.l]+cl.qty))
			returned[cl.l] += cl.qty
		}
		if n == missing {
			continue
		}
		id := o.id("CM", n+1)
		doc := &schemas.BillingDocument{BillingDocumentID: id, BillingType: "RE", OrderID: o.orderID,
			ErpSalesOrderID: o.erpSalesOrderID, CompanyCode: companyCodes[o.cur.code],
			AccountingDocumentID: strp(o.id("AD", 100+n)), AccountingTransferStatus: "TRANSFERRED",
			Currency: o.cur.code, FxRate: decimal.NewFromInt(1), ReturnID: strp(rr.ReturnID), RedemptionValue: &redemption}
		if o.firstInvoiceID != "" {
			doc.ReferenceInvoiceID = strp(o.firstInvoiceID)
		}
		for _, cl := range c.lines {
			t := tax(cl.net, cl.l.taxRate)
			if n == untaxed {
				t = decimal.Zero
			}
			doc.Lines = append(doc.Lines, schemas.BillingLine{BillingItem: fmt.Sprintf("%06d", (len(doc.Lines)+1)*10),
				OrderLineID: cl.l.ol.OrderLineID, ErpItem: cl.l.erpItem, ReferenceDocument: rr.ReturnID, SKU: cl.l.ol.SKU,
				Quantity: decimal.NewFromInt(int64(cl.qty)), Net: cl.net, Tax: t})
			doc.Net, doc.Tax = doc.Net.Add(cl.net), doc.Tax.Add(t)
		}
		doc.Gross = doc.Net.Add(doc.Tax)
		o.emit(schemas.TypeCreditMemoPosted, "ERP", "billing_document", id, at, c.ret, o.orderID, func(e *schemas.Event) {
			doc.BillingDate = e.OccurredAt
			doc.FiscalYear = int32(e.OccurredAt.Year())
			e.CreditMemoPosted = doc
		})
	}
}

// erpReplicaAfterCancel: after an OMS cancellation the ERP rejects the cancelled units and sends
// its sales order's new state (erp v2's ErpSalesOrderChanged, version 1): every item with its
// quantity as created and the cancelled units rejected, status REJECTED when the whole order
// was cancelled, else OPEN (the cancellation precedes fulfilment). The ErpOpenAfterCancel fault
// sends nothing: the ERP's sales order stays as created. Drawn from er and delivered apart
// (extra), so that the other events' records are unchanged.
func (o *orderGen) erpReplicaAfterCancel() {
	if o.cancellation == nil || o.erpCreated == nil {
		return
	}
	if o.want[FaultErpOpenAfterCancel] {
		o.applied(FaultErpOpenAfterCancel)
		return
	}
	c := o.cancellation.OrderLinesCancelled
	created := o.erpCreated.ErpSalesOrderCreated
	rejected := map[string]decimal.Decimal{}
	for _, cl := range c.Lines {
		rejected[cl.OrderLineID] = rejected[cl.OrderLineID].Add(cl.QuantityCancelled)
	}
	status := "OPEN"
	if c.IsFullOrder {
		status = "REJECTED"
	}
	at := maxTime(c.CancelledAt, created.CreatedAt).Add(between(o.er, 5*time.Minute, 2*time.Hour))
	e := o.envelopeFrom(o.er, o.er, schemas.TypeErpSalesOrderChanged, "ERP", "sales_order", o.erpSalesOrderID, at, o.cancellation, o.orderID)
	so := &schemas.ErpSalesOrderChanged{ErpSalesOrderID: o.erpSalesOrderID, OrderID: o.orderID, ErpVersion: 1,
		Status: status, ChangedAt: e.OccurredAt}
	for _, it := range created.Items {
		so.Items = append(so.Items, schemas.ErpReplicaItem{ErpItem: it.ErpItem, OrderLineID: it.OrderLineID,
			Quantity: it.Quantity, RejectedQuantity: decimal.Min(rejected[it.OrderLineID], it.Quantity)})
	}
	e.ErpSalesOrderChanged = so
	o.extra = append(o.extra, &genEvent{ev: e, key: o.orderID})
}

// redemptionShare is the part of line l's redemption value (its allocation, B.3) that units
// (from, to] of the line carry, by cumulative HALF_EVEN rounding like the line's net: what an
// invoice of those units records as redemption_value (erp v2), or a credit memo gives back.
func redemptionShare(l *lineState, from, to int) decimal.Decimal {
	if l.ol.RedemptionAlloc == nil || from == to {
		return decimal.Zero
	}
	a := l.ol.RedemptionAlloc.Value
	return valueCum(a, to, l.qty).Sub(valueCum(a, from, l.qty))
}
