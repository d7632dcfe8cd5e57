package ledger

import (
	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// The loyalty and ERP feeds are recorded as documents keyed by their own ids, whether or not the
// order has arrived: every total derived from them is a sum over the documents, so it does not
// depend on the order in which they were seen.

// applyFeed records a loyalty or ERP event and returns the fact group it belongs to (derive.go:
// touchPostings or touchBilling; touchAll for an event of neither, which Apply does not pass).
func (n *Ledger) applyFeed(e schemas.Event) int {
	if k, p, ok := postingOf(e); ok {
		if _, found := findPosting(n.s.Postings, k, p.EntryID); !found {
			n.s.Postings = insertSorted(n.s.Postings, p, postingLess)
		}
		return touchPostings
	}
	if d, ok := documentOf(e); ok {
		for _, old := range n.s.Documents {
			if old.BillingDocumentID == d.BillingDocumentID {
				return touchBilling
			}
		}
		n.s.Documents = insertSorted(n.s.Documents, d, func(a, b BillingDocState) bool { return a.BillingDocumentID < b.BillingDocumentID })
		return touchBilling
	}
	touched := touchAll
	switch {
	case e.PointsReserved != nil:
		r := e.PointsReserved
		rs := n.reservation(r.ReservationID)
		rs.Reserved, rs.ReservedPoints, rs.ReservedAt, rs.ExpiresAt = true, r.Points, r.ReservedAt.UTC(), r.ExpiresAt.UTC()
		touched = touchPostings
	case e.RedemptionConfirmed != nil:
		r := e.RedemptionConfirmed
		rs := n.reservation(r.ReservationID)
		rs.Confirmed, rs.ConfirmedPoints, rs.ConfirmedAt, rs.RedemptionID = true, r.Points, r.ConfirmedAt.UTC(), r.RedemptionID
		touched = touchPostings
	case e.RedemptionReleased != nil:
		r := e.RedemptionReleased
		rs := n.reservation(r.ReservationID)
		rs.Released, rs.ReleasedAt, rs.ReleaseReason = true, r.ReleasedAt.UTC(), r.Reason
		touched = touchPostings
	case e.ErpSalesOrderCreated != nil:
		touched = touchBilling
		eo := erpOrderOf(e.ErpSalesOrderCreated)
		for _, old := range n.s.ErpOrders {
			if old.ErpSalesOrderID == eo.ErpSalesOrderID {
				return touched
			}
		}
		n.s.ErpOrders = insertSorted(n.s.ErpOrders, eo, func(a, b ErpOrderState) bool { return a.ErpSalesOrderID < b.ErpSalesOrderID })
	case e.ErpSalesOrderChanged != nil:
		// The version rule (erp v2): a replica carries the sales order's whole state, and the
		// highest erp_version is the current one whatever the arrival order, so a lower or equal
		// version with another body is stale — never a conflicting duplicate. Nothing the ledger
		// derives reads a replica (C1's CANCELLED_IN_OMS_OPEN_IN_ERP is found by the views, which
		// keep the highest version: f_erp_sales_orders), so the ledger keeps none and has no
		// version to compare: the replica is only recorded as seen (Apply's dedup by event id and
		// fingerprint), touches no fact group, and the state is the same for any arrival order.
		return 0
	case e.BillingDocCancelled != nil:
		touched = touchBilling
		c := e.BillingDocCancelled
		dc := DocCancelState{BillingDocumentID: c.BillingDocumentID, CancelsDocumentID: c.CancelsBillingDocumentID, CancelledAt: c.CancelledAt.UTC()}
		for _, old := range n.s.DocCancels {
			if old.BillingDocumentID == dc.BillingDocumentID {
				return touched
			}
		}
		n.s.DocCancels = insertSorted(n.s.DocCancels, dc, func(a, b DocCancelState) bool { return a.BillingDocumentID < b.BillingDocumentID })
	}
	return touched
}

// reservation returns the reservation with id, adding it (sorted) when new, in a slice this
// Ledger owns (the caller writes through the pointer).
func (n *Ledger) reservation(id string) *ReservationState {
	for i := range n.s.Reservations {
		if n.s.Reservations[i].ReservationID == id {
			return &n.mutReservations()[i]
		}
	}
	n.s.Reservations = insertSorted(n.s.Reservations, ReservationState{ReservationID: id},
		func(a, b ReservationState) bool { return a.ReservationID < b.ReservationID })
	n.own |= ownReservations // a fresh slice of values
	for i := range n.s.Reservations {
		if n.s.Reservations[i].ReservationID == id {
			return &n.s.Reservations[i]
		}
	}
	panic("unreachable")
}

func postingLess(a, b PostingRecord) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	return a.EntryID < b.EntryID
}

func findPosting(ps []PostingRecord, kind, id string) (PostingRecord, bool) {
	for _, p := range ps {
		if p.Kind == kind && p.EntryID == id {
			return p, true
		}
	}
	return PostingRecord{}, false
}

func equalPosting(a, b PostingRecord) bool {
	return a.Kind == b.Kind && a.EntryID == b.EntryID && a.RequestID == b.RequestID && a.Points == b.Points &&
		a.FromPending == b.FromPending && a.FromActive == b.FromActive && a.Shortfall == b.Shortfall &&
		a.TierMultiplier.Equal(b.TierMultiplier) && a.SourceRef == b.SourceRef && a.PostedAt.Equal(b.PostedAt)
}

// postingOf maps a loyalty booking to its PostingRecord.
func postingOf(e schemas.Event) (string, PostingRecord, bool) {
	switch {
	case e.PointsAccrualPosted != nil:
		a := e.PointsAccrualPosted
		return PostingAccrual, PostingRecord{Kind: PostingAccrual, EntryID: a.LedgerEntryID, RequestID: a.RequestID, Points: a.Points,
			TierMultiplier: a.TierMultiplier, SourceRef: a.SourceRef, PostedAt: a.PostedAt.UTC()}, true
	case e.PointsActivated != nil:
		a := e.PointsActivated
		return PostingActivation, PostingRecord{Kind: PostingActivation, EntryID: a.LedgerEntryID, Points: a.Points,
			TierMultiplier: decimal.Zero, PostedAt: a.ActivatedAt.UTC()}, true
	case e.PointsReversed != nil:
		r := e.PointsReversed
		return PostingReversal, PostingRecord{Kind: PostingReversal, EntryID: r.LedgerEntryID, RequestID: r.RequestID, Points: r.Points,
			FromPending: r.FromPending, FromActive: r.FromActive, Shortfall: r.ShortfallPoints,
			TierMultiplier: decimal.Zero, SourceRef: r.SourceRefID, PostedAt: r.ReversedAt.UTC()}, true
	case e.RedemptionRefunded != nil:
		r := e.RedemptionRefunded
		p := PostingRecord{Kind: PostingRefund, EntryID: r.RefundEntryID, Points: r.Points,
			TierMultiplier: decimal.Zero, SourceRef: r.SourceRefID, PostedAt: r.RefundedAt.UTC()}
		if r.RequestID != nil {
			p.RequestID = *r.RequestID
		}
		return PostingRefund, p, true
	}
	return "", PostingRecord{}, false
}

// documentOf maps an invoice or credit memo to its BillingDocState.
func documentOf(e schemas.Event) (BillingDocState, bool) {
	d, kind := e.InvoicePosted, DocInvoice
	if d == nil {
		d, kind = e.CreditMemoPosted, DocCreditMemo
	}
	if d == nil {
		return BillingDocState{}, false
	}
	st := BillingDocState{
		BillingDocumentID: d.BillingDocumentID, Kind: kind, BillingType: d.BillingType,
		TransferStatus: d.AccountingTransferStatus, Currency: d.Currency, BillingDate: d.BillingDate.UTC(),
		Net: d.Net, Tax: d.Tax, Gross: d.Gross,
	}
	if d.ReturnID != nil {
		st.ReturnID = *d.ReturnID
	}
	for _, ln := range d.Lines {
		st.Lines = append(st.Lines, BillingLineState{BillingItem: ln.BillingItem, OrderLineID: ln.OrderLineID,
			ReferenceDocument: ln.ReferenceDocument, Quantity: ln.Quantity, Net: ln.Net, Tax: ln.Tax})
	}
	return st, true
}

func erpOrderOf(eo *schemas.ErpSalesOrderCreated) ErpOrderState {
	st := ErpOrderState{ErpSalesOrderID: eo.ErpSalesOrderID, Currency: eo.Currency, CreatedAt: eo.CreatedAt.UTC()}
	for _, it := range eo.Items {
		st.Items = append(st.Items, ErpItemState{ErpItem: it.ErpItem, OrderLineID: it.OrderLineID, Quantity: it.Quantity})
	}
	return st
}
