package ledger

import (
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/retailflow/retailflow/schemas"
	"github.com/shopspring/decimal"
)

// fingerprint is a 64-bit hash of the event's content, published_at excluded (a re-publication
// of the same fact is the same event). Two events get the same fingerprint exactly when their
// JSON encodings (published_at cleared) are equal, up to hash collisions: decimals by value
// (the JSON form trims trailing zeros), times by their RFC 3339 text (instant and offset), nil
// and empty slices apart, absent and present optional fields apart, every invalid UTF-8 byte of
// a string alike (JSON writes each as U+FFFD). An event that has no JSON form (a time outside
// years 0–9999) has no fingerprint either: the error is the same the JSON encoder gives.
//
// It streams a compact binary form of the fields through a 64-bit hash, so it allocates
// nothing; TestFingerprintMatchesJSON holds it to the JSON equivalence field by field.
// State version 1 stored legacyFingerprint instead; see Ledger.Apply.
func fingerprint(e *schemas.Event) (int64, error) {
	var w fpWriter
	w.envelope(&e.Envelope)
	w.orderAccepted(e.OrderAccepted)
	w.cancelled(e.OrderLinesCancelled)
	w.shipment(e.ShipmentConfirmed)
	w.returned(e.ReturnReceived)
	w.reserved(e.PointsReserved)
	w.redemptionConfirmed(e.RedemptionConfirmed)
	w.redemptionReleased(e.RedemptionReleased)
	w.redemptionRefunded(e.RedemptionRefunded)
	w.accrualPosted(e.PointsAccrualPosted)
	w.activated(e.PointsActivated)
	w.reversed(e.PointsReversed)
	w.erpOrder(e.ErpSalesOrderCreated)
	w.document(e.InvoicePosted)
	w.document(e.CreditMemoPosted)
	w.docCancelled(e.BillingDocCancelled)
	w.command(e.LoyaltyCommand)
	w.erpReplica(e.ErpSalesOrderChanged) // erp v2: last, and nothing when absent (see erpReplica)
	if w.err != nil {
		return 0, w.err
	}
	return int64(w.sum()), nil
}

// legacyFingerprint is the fingerprint of state version 1: FNV-64a of the JSON encoding with
// published_at cleared. Apply falls back to it only when a seen id's fingerprint differs, so a
// duplicate of an event recorded by a version-1 ledger is still recognised as one.
func legacyFingerprint(e schemas.Event) (int64, error) {
	e.PublishedAt = time.Time{}
	raw, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	h := fnv.New64a()
	h.Write(raw)
	return int64(h.Sum64()), nil
}

// fpWriter streams the canonical binary form of event fields into hash64's rounds. Every
// variable-length item is length-prefixed and every optional item carries a presence byte, so
// the form is unambiguous. It holds no pointer, so it lives on the caller's stack.
type fpWriter struct {
	h     uint64
	total uint64
	n     int // bytes pending in buf
	buf   [64]byte
	err   error
}

func writeBytes[T string | []byte](w *fpWriter, p T) {
	if w.n+len(p) < len(w.buf) {
		w.n += copy(w.buf[w.n:], p)
		return
	}
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == len(w.buf) {
			w.h = hashRounds(w.h, w.buf[:])
			w.total += uint64(len(w.buf))
			w.n = 0
		}
	}
}

func (w *fpWriter) byte(c byte) {
	w.buf[w.n] = c
	w.n++
	if w.n == len(w.buf) {
		w.h = hashRounds(w.h, w.buf[:])
		w.total += uint64(len(w.buf))
		w.n = 0
	}
}

func (w *fpWriter) uvarint(v uint64) {
	if v < 0x80 {
		w.byte(byte(v))
		return
	}
	var tmp [binary.MaxVarintLen64]byte
	writeBytes(w, binary.AppendUvarint(tmp[:0], v))
}

func (w *fpWriter) sum() uint64 {
	return hashFinal(w.h, w.buf[:w.n], w.total+uint64(w.n))
}

func (w *fpWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	if utf8.ValidString(s) {
		writeBytes(w, s)
		return
	}
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n == 1 {
			w.byte(0xff) // never part of valid UTF-8; one per invalid byte, as JSON
		} else {
			writeBytes(w, s[:n])
		}
		s = s[n:]
	}
}

func (w *fpWriter) optStr(s *string) {
	if w.present(s != nil) {
		w.str(*s)
	}
}

func (w *fpWriter) i64(v int64) {
	var tmp [binary.MaxVarintLen64]byte
	writeBytes(w, binary.AppendVarint(tmp[:0], v))
}

func (w *fpWriter) flag(v bool) {
	if v {
		w.byte(1)
	} else {
		w.byte(0)
	}
}

// present writes a presence byte and returns p.
func (w *fpWriter) present(p bool) bool {
	w.flag(p)
	return p
}

// list writes a slice header: nil (JSON null) and empty (JSON []) differ.
func (w *fpWriter) list(isNil bool, n int) {
	if isNil {
		w.byte(0)
		return
	}
	w.byte(1)
	w.uvarint(uint64(n))
}

func (w *fpWriter) time(t time.Time) {
	var tmp [64]byte
	b, err := t.AppendText(tmp[:0])
	if err != nil {
		if w.err == nil {
			w.err = err
		}
		return
	}
	w.uvarint(uint64(len(b)))
	writeBytes(w, b)
}

func (w *fpWriter) optTime(t *time.Time) {
	if w.present(t != nil) {
		w.time(*t)
	}
}

func (w *fpWriter) dec(d decimal.Decimal) {
	var tmp [48]byte
	b := appendDecimal(tmp[:0], d)
	w.uvarint(uint64(len(b)))
	writeBytes(w, b)
}

func (w *fpWriter) optDec(d *decimal.Decimal) {
	if w.present(d != nil) {
		w.dec(*d)
	}
}

func (w *fpWriter) strs(ss []string) {
	w.list(ss == nil, len(ss))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *fpWriter) envelope(e *schemas.Envelope) {
	w.str(e.EventID)
	w.str(string(e.EventType))
	w.i64(int64(e.SchemaVersion))
	w.str(e.SourceSystem)
	w.optStr(e.SourceEventID)
	w.time(e.OccurredAt)
	// PublishedAt is left out on purpose.
	w.str(e.AggregateType)
	w.str(e.AggregateID)
	w.i64(e.AggregateVersion)
	w.str(e.CorrelationID)
	w.optStr(e.CausationID)
	w.str(e.TenantID)
}

func (w *fpWriter) tenders(ts []schemas.Tender) {
	w.list(ts == nil, len(ts))
	for i := range ts {
		w.str(ts[i].TenderType)
		w.dec(ts[i].Amount)
	}
}

func (w *fpWriter) orderAccepted(o *schemas.OrderAccepted) {
	if !w.present(o != nil) {
		return
	}
	w.str(o.OrderID)
	w.i64(o.OrderVersion)
	w.optStr(o.CheckoutID)
	w.str(o.Channel)
	w.optStr(o.SellingStoreID)
	w.time(o.PlacedAt)
	w.time(o.AcceptedAt)
	w.str(o.CustomerID)
	w.optStr(o.LoyaltyMemberID)
	w.optStr(o.LoyaltyTierAtOrder)
	w.str(o.Currency)
	w.flag(o.PricesIncludeTax)
	w.str(o.RoundingMode)
	w.str(o.TaxCalculationMode)
	t := &o.Totals
	w.dec(t.MerchandiseNet)
	w.dec(t.DiscountTotal)
	w.dec(t.LoyaltyRedemptionValue)
	w.dec(t.ShippingNet)
	w.dec(t.TaxTotal)
	w.dec(t.GrandTotal)
	w.list(o.DiscountApps == nil, len(o.DiscountApps))
	for i := range o.DiscountApps {
		d := &o.DiscountApps[i]
		w.str(d.DiscountID)
		w.optStr(d.Code)
		w.str(d.Kind)
		w.str(d.AllocationMethod)
		w.dec(d.Value)
	}
	if r := o.LoyaltyRedemption; w.present(r != nil) {
		w.str(r.ReservationID)
		w.i64(r.Points)
		w.dec(r.Value)
		w.str(r.Accounting)
	}
	w.tenders(o.Tenders)
	w.str(o.ShipTo.Country)
	w.str(o.ShipTo.Region)
	w.str(o.ShipTo.Postcode)
	w.list(o.Lines == nil, len(o.Lines))
	for i := range o.Lines {
		w.orderLine(&o.Lines[i])
	}
	w.optDec(o.EarnRate)
	w.optDec(o.TierMultiplier)
	w.dec(o.ShippingNet)
	w.dec(o.ShippingTax)
	w.i64(int64(o.ReturnWindowDays))
	w.optStr(o.LoyaltyProgramRefID)
}

func (w *fpWriter) orderLine(l *schemas.OrderLine) {
	w.str(l.OrderLineID)
	w.i64(int64(l.LineNumber))
	w.str(l.SKU)
	w.optStr(l.GTIN)
	w.str(l.ProductID)
	w.optStr(l.CategoryPath)
	w.flag(l.IsGiftCard)
	w.dec(l.Quantity)
	w.str(l.UOM)
	w.dec(l.UnitListPrice)
	w.dec(l.UnitSalePrice)
	w.dec(l.LineSubtotal)
	w.list(l.DiscountAllocations == nil, len(l.DiscountAllocations))
	for i := range l.DiscountAllocations {
		w.str(l.DiscountAllocations[i].DiscountID)
		w.dec(l.DiscountAllocations[i].Amount)
	}
	if r := l.RedemptionAlloc; w.present(r != nil) {
		w.i64(r.Points)
		w.dec(r.Value)
	}
	w.dec(l.LineNet)
	w.list(l.TaxLines == nil, len(l.TaxLines))
	for i := range l.TaxLines {
		w.str(l.TaxLines[i].TaxCode)
		w.dec(l.TaxLines[i].Rate)
		w.dec(l.TaxLines[i].Amount)
	}
	w.str(l.FulfillmentMethod)
}

func (w *fpWriter) cancelled(c *schemas.OrderLinesCancelled) {
	if !w.present(c != nil) {
		return
	}
	w.str(c.CancellationID)
	w.str(c.OrderID)
	w.time(c.CancelledAt)
	w.str(c.ReasonCode)
	w.flag(c.IsFullOrder)
	w.flag(c.IsPreFulfillment)
	w.list(c.Lines == nil, len(c.Lines))
	for i := range c.Lines {
		w.str(c.Lines[i].OrderLineID)
		w.dec(c.Lines[i].QuantityCancelled)
	}
}

func (w *fpWriter) shipment(s *schemas.ShipmentConfirmed) {
	if !w.present(s != nil) {
		return
	}
	w.str(s.ShipmentID)
	w.optStr(s.FulfillmentOrderID)
	w.str(s.OrderID)
	w.str(s.ShipNodeID)
	w.str(s.FulfillmentType)
	w.str(s.Carrier)
	w.str(s.ServiceLevel)
	w.strs(s.TrackingNumbers)
	w.time(s.ShippedAt)
	w.list(s.Lines == nil, len(s.Lines))
	for i := range s.Lines {
		l := &s.Lines[i]
		w.str(l.ShipmentLineID)
		w.str(l.OrderLineID)
		w.str(l.SKU)
		w.dec(l.QuantityShipped)
	}
	w.flag(s.IsReship)
	w.optStr(s.Currency)
	w.optStr(s.ErpDeliveryID)
}

func (w *fpWriter) returned(r *schemas.ReturnReceived) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.ReturnID)
	w.str(r.OrderID)
	w.time(r.ReceivedAt)
	w.str(r.ReceivingLocationID)
	w.str(r.Channel)
	w.list(r.Lines == nil, len(r.Lines))
	for i := range r.Lines {
		l := &r.Lines[i]
		w.str(l.ReturnLineID)
		w.str(l.OrderLineID)
		w.str(l.SKU)
		w.dec(l.QuantityReceived)
		w.dec(l.QuantityAccepted)
		w.str(l.Disposition)
		w.str(l.ReasonCode)
	}
	if f := r.Refund; w.present(f != nil) {
		w.str(f.RefundID)
		w.str(f.Currency)
		w.dec(f.MerchandiseNet)
		w.dec(f.Tax)
		w.dec(f.ShippingRefund)
		w.dec(f.ReturnFee)
		w.tenders(f.Tenders)
	}
}

func (w *fpWriter) reserved(r *schemas.PointsReserved) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.ReservationID)
	w.str(r.MemberID)
	w.str(r.CheckoutID)
	w.optStr(r.OrderID)
	w.i64(r.Points)
	w.dec(r.Value.Amount)
	w.str(r.Value.Currency)
	w.dec(r.ConversionRate)
	w.time(r.ReservedAt)
	w.time(r.ExpiresAt)
}

func (w *fpWriter) redemptionConfirmed(r *schemas.RedemptionConfirmed) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.ReservationID)
	w.str(r.RedemptionID)
	w.str(r.OrderID)
	w.i64(r.Points)
	w.time(r.ConfirmedAt)
}

func (w *fpWriter) redemptionReleased(r *schemas.RedemptionReleased) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.ReservationID)
	w.optStr(r.OrderID)
	w.str(r.Reason)
	w.time(r.ReleasedAt)
}

func (w *fpWriter) redemptionRefunded(r *schemas.RedemptionRefunded) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.RefundEntryID)
	w.optStr(r.RequestID)
	w.str(r.RedemptionID)
	w.str(r.OrderID)
	w.i64(r.Points)
	w.str(r.Reason)
	w.str(r.SourceRefID)
	w.str(r.ExpiryPolicy)
	w.time(r.RefundedAt)
}

func (w *fpWriter) accrualPosted(a *schemas.PointsAccrualPosted) {
	if !w.present(a != nil) {
		return
	}
	w.str(a.LedgerEntryID)
	w.str(a.RequestID)
	w.str(a.OrderID)
	w.str(a.MemberID)
	w.i64(a.Points)
	w.str(a.Status)
	w.time(a.ActivatesAt)
	w.optTime(a.ExpiresAt)
	w.str(a.SourceRef)
	w.dec(a.BasisAmount)
	w.str(a.Currency)
	w.dec(a.EarnRate)
	w.str(a.TierCode)
	w.dec(a.TierMultiplier)
	w.str(a.RuleVersion)
	w.time(a.PostedAt)
}

func (w *fpWriter) activated(a *schemas.PointsActivated) {
	if !w.present(a != nil) {
		return
	}
	w.str(a.LedgerEntryID)
	w.str(a.OrderID)
	w.i64(a.Points)
	w.time(a.ActivatedAt)
}

func (w *fpWriter) reversed(r *schemas.PointsReversed) {
	if !w.present(r != nil) {
		return
	}
	w.str(r.LedgerEntryID)
	w.str(r.RequestID)
	w.str(r.OrderID)
	w.str(r.MemberID)
	w.i64(r.Points)
	w.i64(r.FromPending)
	w.i64(r.FromActive)
	w.i64(r.ShortfallPoints)
	w.str(r.Reason)
	w.str(r.SourceRefID)
	w.strs(r.ReversesEntryIDs)
	w.time(r.ReversedAt)
}

func (w *fpWriter) erpOrder(o *schemas.ErpSalesOrderCreated) {
	if !w.present(o != nil) {
		return
	}
	w.str(o.ErpSalesOrderID)
	w.str(o.OrderID)
	w.str(o.SalesOrg)
	w.str(o.SoldTo)
	w.str(o.Currency)
	w.time(o.CreatedAt)
	w.list(o.Items == nil, len(o.Items))
	for i := range o.Items {
		w.str(o.Items[i].ErpItem)
		w.str(o.Items[i].OrderLineID)
		w.dec(o.Items[i].Quantity)
	}
}

func (w *fpWriter) document(d *schemas.BillingDocument) {
	if !w.present(d != nil) {
		return
	}
	w.str(d.BillingDocumentID)
	w.str(d.BillingType)
	w.str(d.OrderID)
	w.str(d.ErpSalesOrderID)
	w.str(d.CompanyCode)
	w.i64(int64(d.FiscalYear))
	w.optStr(d.AccountingDocumentID)
	w.str(d.AccountingTransferStatus)
	w.time(d.BillingDate)
	w.str(d.Currency)
	w.dec(d.FxRate)
	w.dec(d.Net)
	w.dec(d.Tax)
	w.dec(d.Gross)
	w.list(d.Lines == nil, len(d.Lines))
	for i := range d.Lines {
		l := &d.Lines[i]
		w.str(l.BillingItem)
		w.str(l.OrderLineID)
		w.str(l.ErpItem)
		w.str(l.ReferenceDocument)
		w.str(l.SKU)
		w.dec(l.Quantity)
		w.dec(l.Net)
		w.dec(l.Tax)
	}
	w.optStr(d.ReferenceInvoiceID)
	w.optStr(d.ReturnID)
	// erp v2's optional field writes nothing when absent, so every fingerprint recorded before it
	// existed stays the same (a re-delivered document is still a duplicate, not a conflict); when
	// present its marker 1 is where the absent form has the next presence byte, 0.
	if d.RedemptionValue != nil {
		w.byte(1)
		w.dec(*d.RedemptionValue)
	}
}

// erpReplica writes an ErpSalesOrderChanged (erp v2) after every other body, and nothing when
// absent, so that the fingerprints of the earlier bodies are unchanged; the marker 1 is where
// an event without it ends.
func (w *fpWriter) erpReplica(o *schemas.ErpSalesOrderChanged) {
	if o == nil {
		return
	}
	w.byte(1)
	w.str(o.ErpSalesOrderID)
	w.str(o.OrderID)
	w.i64(o.ErpVersion)
	w.str(o.Status)
	w.time(o.ChangedAt)
	w.list(o.Items == nil, len(o.Items))
	for i := range o.Items {
		w.str(o.Items[i].ErpItem)
		w.str(o.Items[i].OrderLineID)
		w.dec(o.Items[i].Quantity)
		w.dec(o.Items[i].RejectedQuantity)
	}
}

func (w *fpWriter) docCancelled(c *schemas.BillingDocCancelled) {
	if !w.present(c != nil) {
		return
	}
	w.str(c.BillingDocumentID)
	w.str(c.CancelsBillingDocumentID)
	w.str(c.OrderID)
	w.time(c.CancelledAt)
}

func (w *fpWriter) command(c *schemas.LoyaltyCommand) {
	if !w.present(c != nil) {
		return
	}
	w.str(c.RequestID)
	w.str(string(c.CommandType))
	w.str(c.OrderID)
	w.str(c.MemberID)
	w.i64(c.Points)
	w.str(c.CausingEventID)
	w.str(c.SourceRefID)
	w.str(c.Reason)
	w.dec(c.BasisAmount)
	w.str(c.Currency)
	w.dec(c.EarnRate)
	w.str(c.TierCode)
	w.dec(c.TierMultiplier)
	w.i64(c.EntitledPoints)
	w.optTime(c.ActivatesAt)
	w.optStr(c.ReservationID)
	w.optStr(c.ExpiryPolicy)
	w.str(c.PolicyVersion)
	w.time(c.RequestedAt)
}

// appendDecimal appends d.String() (with the library's default formatting: trailing zeros
// trimmed, no scientific notation) without allocating when the coefficient fits an int64.
func appendDecimal(b []byte, d decimal.Decimal) []byte {
	if !decimal.TrimTrailingZeros || decimal.UseScientificNotation || d.NumDigits() > 18 {
		return append(b, d.String()...)
	}
	c, exp := d.CoefficientInt64(), d.Exponent()
	switch {
	case exp == 0 || c == 0:
		return strconv.AppendInt(b, c, 10)
	case exp > 0:
		if exp > 18 {
			return append(b, d.String()...)
		}
		hi, lo := bits.Mul64(uint64(absInt64(c)), pow10u[exp])
		if hi != 0 || lo > 1<<63-1 {
			return append(b, d.String()...)
		}
		if c < 0 {
			b = append(b, '-')
		}
		return strconv.AppendUint(b, lo, 10)
	}
	if c < 0 {
		b = append(b, '-')
	}
	var digits [20]byte
	ds := strconv.AppendUint(digits[:0], uint64(absInt64(c)), 10)
	k := int(-exp)
	ip, fr, lead := []byte("0"), ds, k-len(ds)
	if len(ds) > k {
		ip, fr, lead = ds[:len(ds)-k], ds[len(ds)-k:], 0
	}
	for len(fr) > 0 && fr[len(fr)-1] == '0' {
		fr = fr[:len(fr)-1]
	}
	b = append(b, ip...)
	if len(fr) == 0 {
		return b
	}
	b = append(b, '.')
	for ; lead > 0; lead-- {
		b = append(b, '0')
	}
	return append(b, fr...)
}

func absInt64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// pow10u[i] = 10^i for 0 ≤ i ≤ 19.
var pow10u = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// hashRounds and hashFinal are a 64-bit non-cryptographic hash (xxHash64's 8-byte-lane round
// and avalanche, single lane): good dispersion for a fingerprint, no table, no allocation.
// hashRounds consumes whole 8-byte words of b; hashFinal the rest and the total length.
const (
	hp1 = 11400714785074694791
	hp2 = 14029467366897019727
	hp3 = 1609587929392839161
	hp4 = 9650029242287828579
	hp5 = 2870177450012600261
)

func hashRounds(h uint64, b []byte) uint64 {
	for ; len(b) >= 8; b = b[8:] {
		k := binary.LittleEndian.Uint64(b)
		k *= hp2
		k = bits.RotateLeft64(k, 31)
		k *= hp1
		h ^= k
		h = bits.RotateLeft64(h, 27)*hp1 + hp4
	}
	return h
}

func hashFinal(h uint64, b []byte, total uint64) uint64 {
	h = hashRounds(h+hp5, b[:len(b)&^7])
	b = b[len(b)&^7:]
	if len(b) >= 4 {
		h ^= uint64(binary.LittleEndian.Uint32(b)) * hp1
		h = bits.RotateLeft64(h, 23)*hp2 + hp3
		b = b[4:]
	}
	for _, c := range b {
		h ^= uint64(c) * hp5
		h = bits.RotateLeft64(h, 11) * hp1
	}
	h += total
	h ^= h >> 33
	h *= hp2
	h ^= h >> 29
	h *= hp3
	h ^= h >> 32
	return h
}
