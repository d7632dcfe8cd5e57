package generate

import (
	"errors"
	"fmt"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
)

// DefaultStart is the business time of the first order when Options.Start is zero: a fixed date,
// so that a seed alone fixes the traffic. The CLI defaults it to a date a fortnight before now.
var DefaultStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// Options control what Generate produces. The zero value of every rate and fault share means
// "never": with all of them at zero the traffic is clean and the oracle expects empty views.
type Options struct {
	Seed   uint64
	Orders int
	// Start is when the first order is accepted (DefaultStart when zero); orders are spread over
	// [Start, Start+Span). Fulfilment, returns and postings follow over about ten days.
	Start time.Time
	Span  time.Duration // 24h when zero
	// Rate is the events per second a producer should send at; 0 means as fast as possible.
	// Generate only validates it.
	Rate float64

	DuplicateRate  float64 // share of records re-sent (same event id and body) shortly after
	OutOfOrderRate float64 // share of orders whose records are delivered shuffled across topics
	LateRate       float64 // share of events published a day after they occurred
	MalformedRate  float64 // share of orders with one extra record that must end in the DLQ
	// CheckoutReservationRate: share of redemptions reserved at checkout before the order number
	// exists: the PointsReserved has no order_id and is keyed checkout:<checkout_id> (DOMAIN
	// A.1); the order references it by reservation_id when it arrives.
	CheckoutReservationRate float64

	Faults Faults
	// Policy is what the simulated loyalty platform and the oracle apply (oracle.DefaultPolicy
	// when its Version is empty).
	Policy oracle.Policy
}

// Faults are shares of orders whose downstream systems fail in one way (each field names the
// view finding it causes). Each applies only to orders where it can: a short invoice needs a shipment
// line of two units or more, a withheld reversal needs a reversal, and so on.
type Faults struct {
	MissingErpOrder       float64 // ErpSalesOrderCreated withheld → C1 NOT_REPLICATED
	WrongErpQty           float64 // one ERP item quantity off by one → C1 QTY_DIFF
	MissingInvoice        float64 // one shipment never invoiced → C2 NOT_BILLED, C6 SHIPPED_NOT_INVOICED
	InvoiceNotTransferred float64 // one invoice not transferred to accounting → C2 BILLED_NOT_POSTED
	ShortInvoice          float64 // one invoice line bills a unit less → C2 PARTIALLY_BILLED, C6
	MissingCreditMemo     float64 // one return never credited → C6 RETURNED_NOT_CREDITED, REFUND_NOT_CREDITED
	WithheldConfirmation  float64 // RedemptionConfirmed withheld → C3 ORDER_ACCEPTED_NOT_CONFIRMED
	AbandonedReservation  float64 // an extra reservation, never released → C3 OPEN_PAST_TTL
	WithheldAccrual       float64 // the order's last accrual posting withheld → C5 NO_ACCRUAL/UNDER
	WrongMultiplier       float64 // accruals posted with a higher multiplier → C5 WRONG_MULTIPLIER, OVER
	WithheldReversal      float64 // one reversal posting withheld → C4 REVERSAL_MISSING, C5 OVER
	ShortReversal         float64 // one reversal posted short → C4 REVERSAL_SHORT, C5 OVER
	WithheldRefund        float64 // one return's redemption refund withheld → C4 REFUND_MISSING
	// EarlyActivation: the platform activates accruals a day after posting them (its lock
	// misconfigured), so a return's reversal takes points from the ACTIVE balance → C4
	// REVERSED_AFTER_ACTIVATION. Applies to orders with a reversal posted for a return.
	EarlyActivation float64
	// AccrualBeforeShipment: the platform posts the order's first accrual at acceptance, before
	// any shipment (it earns on the order, not on fulfilment) → C5 ACCRUED_BEFORE_SHIPMENT.
	AccrualBeforeShipment float64
	// PointsOnIneligible: the platform's first accrual counts the order's ineligible value (gift
	// card lines and the shipping fee, E(l) = 0) in its basis and points → C5
	// POINTS_ON_INELIGIBLE, OVER_ACCRUED. Applies to orders with such value worth a point.
	PointsOnIneligible float64
	// InvoicedCancelledLine: the ERP invoices the units the OMS cancelled (an extra F2 for the
	// cancelled quantity) → C6 INVOICED_CANCELLED_LINE. Applies to orders with a cancellation.
	InvoicedCancelledLine float64
	// DuplicateBilling: the ERP posts one shipment's invoice twice (two live documents) → C6
	// DUPLICATE_BILLING, INVOICED_NOT_SHIPPED, C2 OVER_BILLED. Applies to invoiced orders.
	DuplicateBilling float64
	// CurrencyDiff: one invoice is posted in another currency than the order's (same amounts) →
	// C6 CURRENCY_DIFF on its lines. Applies to invoiced orders.
	CurrencyDiff float64
	// CreditMemoWithoutTax: one return's credit memo credits the net only (its tax code missing)
	// while the customer was refunded net + tax → refund settlement REFUND_AMOUNT_DIFF. Applies to
	// orders with a credited return.
	CreditMemoWithoutTax float64
	// AccrualOtherMember: the platform posts the order's first accrual to another member (a
	// member-id mix-up in its connector) → C7 LIABILITY_DIFF for both members from that month
	// on; the order's own points (C5) still match. Applies to member orders with an accrual.
	AccrualOtherMember float64
	// TaxDiff: one invoice's first line is taxed at its rate + 5 percentage points (a wrong tax
	// code in the ERP) → C6 TAX_DIFF on that line. Applies to invoiced orders.
	TaxDiff float64
	// WithheldCancellationRefund: the platform never posts the redemption refund of a
	// cancellation → C6 POINTS_DIFF (order level). Applies to orders with redeemed points and a
	// cancellation that refunds some.
	WithheldCancellationRefund float64
	// ErpOpenAfterCancel: the ERP leaves its sales order as it was after an OMS cancellation (no
	// ErpSalesOrderChanged rejecting the cancelled units; clean traffic sends one) → C1
	// CANCELLED_IN_OMS_OPEN_IN_ERP, per cancelled line or, for an order cancelled whole, at order
	// level. Applies to replicated orders with a cancellation.
	ErpOpenAfterCancel float64
	// RedemptionValueDiff: the ERP books the order's first invoice carrying a redemption share
	// without it (erp v2 redemption_value 0, its discount or tender not posted) → C6
	// REDEMPTION_VALUE_DIFF once the order's quantities are settled. Applies to orders whose
	// redemption the platform confirmed.
	RedemptionValueDiff float64
}

// Fault names one fault applied to an order (ground truth for tests and reports).
type Fault string

// The faults, one per Faults field.
const (
	FaultMissingErpOrder       Fault = "missing_erp_order"
	FaultWrongErpQty           Fault = "wrong_erp_qty"
	FaultMissingInvoice        Fault = "missing_invoice"
	FaultInvoiceNotTransferred Fault = "invoice_not_transferred"
	FaultShortInvoice          Fault = "short_invoice"
	FaultMissingCreditMemo     Fault = "missing_credit_memo"
	FaultWithheldConfirmation  Fault = "withheld_confirmation"
	FaultAbandonedReservation  Fault = "abandoned_reservation"
	FaultWithheldAccrual       Fault = "withheld_accrual"
	FaultWrongMultiplier       Fault = "wrong_multiplier"
	FaultWithheldReversal      Fault = "withheld_reversal"
	FaultShortReversal         Fault = "short_reversal"
	FaultWithheldRefund        Fault = "withheld_refund"
	FaultEarlyActivation       Fault = "early_activation"
	FaultAccrualBeforeShipment Fault = "accrual_before_shipment"
	FaultPointsOnIneligible    Fault = "points_on_ineligible"
	FaultInvoicedCancelledLine Fault = "invoiced_cancelled_line"
	FaultDuplicateBilling      Fault = "duplicate_billing"
	FaultCurrencyDiff          Fault = "currency_diff"
	FaultCreditMemoWithoutTax  Fault = "credit_memo_without_tax"
	FaultAccrualOtherMember    Fault = "accrual_other_member"
	FaultTaxDiff               Fault = "tax_diff"
	FaultWithheldCxlRefund     Fault = "withheld_cancellation_refund"
	FaultErpOpenAfterCancel    Fault = "erp_open_after_cancel"
	FaultRedemptionValueDiff   Fault = "redemption_value_diff"
)

// firstFaults is how many faults (the first in shares) draw from an order's original fault
// stream; later ones draw from their own, so adding a fault leaves existing traffic unchanged.
// secondFaults: the faults from this index on (issue 20's second half) draw from a third
// stream, so that the first half's traffic for a seed is unchanged too; thirdFaults (erp v2's
// codes) from a fourth.
const (
	firstFaults  = 13
	secondFaults = 20
	thirdFaults  = 23
)

// shares pairs every fault with its share, in a fixed order.
func (f Faults) shares() []struct {
	Fault Fault
	Share float64
} {
	return []struct {
		Fault Fault
		Share float64
	}{
		{FaultMissingErpOrder, f.MissingErpOrder}, {FaultWrongErpQty, f.WrongErpQty},
		{FaultMissingInvoice, f.MissingInvoice}, {FaultInvoiceNotTransferred, f.InvoiceNotTransferred},
		{FaultShortInvoice, f.ShortInvoice}, {FaultMissingCreditMemo, f.MissingCreditMemo},
		{FaultWithheldConfirmation, f.WithheldConfirmation}, {FaultAbandonedReservation, f.AbandonedReservation},
		{FaultWithheldAccrual, f.WithheldAccrual}, {FaultWrongMultiplier, f.WrongMultiplier},
		{FaultWithheldReversal, f.WithheldReversal}, {FaultShortReversal, f.ShortReversal},
		{FaultWithheldRefund, f.WithheldRefund},
		{FaultEarlyActivation, f.EarlyActivation}, {FaultAccrualBeforeShipment, f.AccrualBeforeShipment},
		{FaultPointsOnIneligible, f.PointsOnIneligible}, {FaultInvoicedCancelledLine, f.InvoicedCancelledLine},
		{FaultDuplicateBilling, f.DuplicateBilling}, {FaultCurrencyDiff, f.CurrencyDiff},
		{FaultCreditMemoWithoutTax, f.CreditMemoWithoutTax},
		{FaultAccrualOtherMember, f.AccrualOtherMember}, {FaultTaxDiff, f.TaxDiff},
		{FaultWithheldCxlRefund, f.WithheldCancellationRefund},
		{FaultErpOpenAfterCancel, f.ErpOpenAfterCancel}, {FaultRedemptionValueDiff, f.RedemptionValueDiff},
	}
}

// Set sets the share of one fault by name (as the CLI spells it) and reports whether it exists.
func (f *Faults) Set(name Fault, share float64) bool {
	ptr := map[Fault]*float64{
		FaultMissingErpOrder: &f.MissingErpOrder, FaultWrongErpQty: &f.WrongErpQty,
		FaultMissingInvoice: &f.MissingInvoice, FaultInvoiceNotTransferred: &f.InvoiceNotTransferred,
		FaultShortInvoice: &f.ShortInvoice, FaultMissingCreditMemo: &f.MissingCreditMemo,
		FaultWithheldConfirmation: &f.WithheldConfirmation, FaultAbandonedReservation: &f.AbandonedReservation,
		FaultWithheldAccrual: &f.WithheldAccrual, FaultWrongMultiplier: &f.WrongMultiplier,
		FaultWithheldReversal: &f.WithheldReversal, FaultShortReversal: &f.ShortReversal,
		FaultWithheldRefund:  &f.WithheldRefund,
		FaultEarlyActivation: &f.EarlyActivation, FaultAccrualBeforeShipment: &f.AccrualBeforeShipment,
		FaultPointsOnIneligible: &f.PointsOnIneligible, FaultInvoicedCancelledLine: &f.InvoicedCancelledLine,
		FaultDuplicateBilling: &f.DuplicateBilling, FaultCurrencyDiff: &f.CurrencyDiff,
		FaultCreditMemoWithoutTax: &f.CreditMemoWithoutTax, FaultAccrualOtherMember: &f.AccrualOtherMember,
		FaultTaxDiff: &f.TaxDiff, FaultWithheldCxlRefund: &f.WithheldCancellationRefund,
		FaultErpOpenAfterCancel: &f.ErpOpenAfterCancel, FaultRedemptionValueDiff: &f.RedemptionValueDiff,
	}[name]
	if ptr == nil {
		return false
	}
	*ptr = share
	return true
}

// AllFaults lists every fault name.
func AllFaults() []Fault {
	var out []Fault
	for _, s := range (Faults{}).shares() {
		out = append(out, s.Fault)
	}
	return out
}

// maxOrders bounds one run: every record is held in memory.
const maxOrders = 5_000_000

// Validate reports every invalid option.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("generate: "+format, args...)) }
	if o.Orders < 0 || o.Orders > maxOrders {
		bad("orders must be between 0 and %d, got %d", maxOrders, o.Orders)
	}
	if o.Span < 0 {
		bad("span must not be negative, got %s", o.Span)
	}
	if o.Rate < 0 {
		bad("rate must not be negative, got %g", o.Rate)
	}
	share := func(name string, v float64) {
		if v < 0 || v > 1 || v != v {
			bad("%s must be a share between 0 and 1, got %g", name, v)
		}
	}
	share("duplicate rate", o.DuplicateRate)
	share("out-of-order rate", o.OutOfOrderRate)
	share("late rate", o.LateRate)
	share("malformed rate", o.MalformedRate)
	share("checkout reservation rate", o.CheckoutReservationRate)
	for _, s := range o.Faults.shares() {
		share("fault "+string(s.Fault), s.Share)
	}
	if o.Policy.Version != "" {
		if err := o.Policy.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, cur := range currencies {
			if _, ok := o.Policy.EarnRates[cur.code]; !ok {
				bad("policy has no earn rate for %s", cur.code)
			}
		}
		for _, t := range tiers {
			if _, ok := o.Policy.TierMultipliers[t.code]; !ok {
				bad("policy has no multiplier for tier %s", t.code)
			}
		}
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	o.Start = o.Start.UTC().Truncate(time.Microsecond)
	if o.Span == 0 {
		o.Span = 24 * time.Hour
	}
	if o.Policy.Version == "" {
		o.Policy = oracle.DefaultPolicy()
	}
	return o
}
