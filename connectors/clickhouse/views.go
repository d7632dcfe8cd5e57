package clickhouse

// View describes one reconciliation view for the report: its name, the columns that identify a
// row (the business keys), and the columns worth showing beside them.
type View struct {
	ID      string // C1 … C7, R (refund settlement)
	Name    string
	Title   string
	Keys    []string
	Measure []string // quantity, points and amount columns, as the view names them
	// PerMember: the view's rows belong to a member and a period, not to an order (C7): it has no
	// order_id column, and an order's story does not list it.
	PerMember bool
}

// Views are the reconciliation views the migrations create (migrations/views/recon.sql), in report order.
var Views = []View{
	{ID: "C1", Name: "recon_orders_awaiting_erp", Title: "Orders awaiting ERP",
		Keys: []string{"order_id", "order_line_id"}, Measure: []string{"oms_quantity", "erp_quantity"}},
	{ID: "C2", Name: "recon_shipments_not_invoiced", Title: "Shipments not invoiced",
		Keys: []string{"shipment_id", "order_line_id"}, Measure: []string{"shipped_qty", "billed_qty"}},
	{ID: "C3", Name: "recon_redemptions_pending_confirmation", Title: "Redemptions pending confirmation",
		Keys: []string{"reservation_id", "order_id"}, Measure: []string{"order_points", "confirmed_points"}},
	{ID: "C4", Name: "recon_returns_not_reflected_in_loyalty", Title: "Returns not reflected in loyalty",
		Keys: []string{"return_id", "order_line_id", "order_id"}, Measure: []string{"points", "return_points"}},
	{ID: "C5", Name: "recon_accrual_vs_fulfilment", Title: "Accrual vs fulfilment",
		Keys: []string{"order_id"}, Measure: []string{"entitled_points", "posted_points", "points"}},
	{ID: "C6", Name: "recon_three_way_line", Title: "Three-way line match",
		Keys: []string{"order_id", "order_line_id"}, Measure: []string{"shipped_qty", "invoiced_qty", "returned_qty", "credited_qty", "amount", "points"}},
	{ID: "R", Name: "recon_refunds_vs_credit_memos", Title: "Refunds vs ERP credit memos",
		Keys: []string{"return_id", "order_id"}, Measure: []string{"refunded", "credited", "amount"}},
	{ID: "C7", Name: "recon_loyalty_liability", Title: "Loyalty liability (per member and month)",
		Keys: []string{"member_id", "period"}, Measure: []string{"entitled_points", "posted_points", "active_points", "pending_points", "points"},
		PerMember: true},
}
