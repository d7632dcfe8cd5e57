package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Report is the reconciliation report: per view, row counts by mismatch code and ageing bucket,
// and the oldest rows.
type Report struct {
	Database string       `json:"database"`
	Views    []ViewReport `json:"views"`
}

// ViewReport is one view's part of the report.
type ViewReport struct {
	ID      string      `json:"id"`
	Name    string      `json:"name"`
	Title   string      `json:"title"`
	Total   uint64      `json:"total"`
	Buckets []BucketRow `json:"buckets"` // by code, then bucket
	Owners  []OwnerRow  `json:"owners"`  // by owner team, then state
	Oldest  []ItemRow   `json:"oldest"`  // oldest business_time first
}

// OwnerRow counts a view's open rows of one owner team in one state (OPEN, ACKNOWLEDGED,
// REOPENED; RESOLVED rows are not in the backlog).
type OwnerRow struct {
	Owner       string `json:"owner_team"`
	State       string `json:"state"`
	Rows        uint64 `json:"rows"`
	SLABreached uint64 `json:"sla_breached"`
}

// BucketRow counts a view's rows of one mismatch code in one ageing bucket.
type BucketRow struct {
	Code        string `json:"mismatch_code"`
	Bucket      string `json:"age_bucket"`
	Rows        uint64 `json:"rows"`
	SLABreached uint64 `json:"sla_breached"`
}

// ItemRow is one view row: its keys and measures as text (exact decimals, never floats).
type ItemRow struct {
	Keys         map[string]string `json:"keys"`
	Code         string            `json:"mismatch_code"`
	RowKey       string            `json:"row_key"` // what `retailflow recon` takes as --key
	Owner        string            `json:"owner_team"`
	State        string            `json:"state"`
	Measures     map[string]string `json:"measures"`
	BusinessTime time.Time         `json:"business_time"`
	AgeHours     float64           `json:"age_hours"`
	Bucket       string            `json:"age_bucket"`
	SLABreached  bool              `json:"sla_breached"`
}

// reportSQL is the report's queries of view v's backlog (its open_ view: resolved rows excluded):
// rows by code and bucket, and the oldest rows. ownersSQL counts rows by owner and state.
func reportSQL(db string, v View, top int) (buckets, oldest string) {
	cols := append(append([]string{}, v.Keys...), v.Measure...)
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "toString(" + c + ")"
	}
	buckets = fmt.Sprintf(`SELECT mismatch_code, age_bucket, count(), toUInt64(sum(sla_breached))
			FROM %s.%s GROUP BY mismatch_code, age_bucket ORDER BY mismatch_code, age_bucket`, db, v.OpenView())
	oldest = fmt.Sprintf(`SELECT %s, mismatch_code, row_key, owner_team, state, business_time, age_hours, age_bucket, sla_breached
			FROM %s.%s ORDER BY business_time, %s, mismatch_code LIMIT %d`, strings.Join(sel, ", "), db, v.OpenView(), strings.Join(v.Keys, ", "), top)
	return buckets, oldest
}

func ownersSQL(db string, v View) string {
	return fmt.Sprintf(`SELECT owner_team, state, count(), toUInt64(sum(sla_breached))
			FROM %s.%s GROUP BY owner_team, state ORDER BY owner_team, state`, db, v.OpenView())
}

// storyViewSQL is the story's query of the open rows of view v for one order (bound as ?).
func storyViewSQL(db string, v View) string {
	return fmt.Sprintf(`SELECT '%s', mismatch_code, concat(%s), toString(business_time), age_bucket, owner_team, state
			FROM %s.%s WHERE order_id = ? ORDER BY mismatch_code, %s`, v.ID, keyConcat(v.Keys), db, v.OpenView(), strings.Join(v.Keys, ", "))
}

// BuildReport queries every reconciliation view of db. top bounds the oldest rows per view.
func BuildReport(ctx context.Context, conn driver.Conn, db string, top int) (*Report, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	r := &Report{Database: db}
	for _, v := range Views {
		vr := ViewReport{ID: v.ID, Name: v.Name, Title: v.Title}
		bucketsSQL, oldestSQL := reportSQL(db, v, top)
		rows, err := conn.Query(ctx, bucketsSQL)
		if err != nil {
			return nil, fmt.Errorf("report %s: %w", v.Name, err)
		}
		for rows.Next() {
			var b BucketRow
			if err := rows.Scan(&b.Code, &b.Bucket, &b.Rows, &b.SLABreached); err != nil {
				rows.Close()
				return nil, fmt.Errorf("report %s: %w", v.Name, err)
			}
			vr.Total += b.Rows
			vr.Buckets = append(vr.Buckets, b)
		}
		rows.Close()
		rows, err = conn.Query(ctx, ownersSQL(db, v))
		if err != nil {
			return nil, fmt.Errorf("report %s: %w", v.Name, err)
		}
		for rows.Next() {
			var o OwnerRow
			if err := rows.Scan(&o.Owner, &o.State, &o.Rows, &o.SLABreached); err != nil {
				rows.Close()
				return nil, fmt.Errorf("report %s: %w", v.Name, err)
			}
			vr.Owners = append(vr.Owners, o)
		}
		rows.Close()
		cols := append(append([]string{}, v.Keys...), v.Measure...)
		rows, err = conn.Query(ctx, oldestSQL)
		if err != nil {
			return nil, fmt.Errorf("report %s: %w", v.Name, err)
		}
		for rows.Next() {
			vals := make([]string, len(cols))
			dest := make([]any, 0, len(cols)+5)
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			var it ItemRow
			var sla uint8
			dest = append(dest, &it.Code, &it.RowKey, &it.Owner, &it.State, &it.BusinessTime, &it.AgeHours, &it.Bucket, &sla)
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("report %s: %w", v.Name, err)
			}
			it.SLABreached = sla == 1
			it.BusinessTime = it.BusinessTime.UTC()
			it.Keys, it.Measures = map[string]string{}, map[string]string{}
			for i, c := range cols {
				if i < len(v.Keys) {
					it.Keys[c] = vals[i]
				} else {
					it.Measures[c] = vals[i]
				}
			}
			vr.Oldest = append(vr.Oldest, it)
		}
		rows.Close()
		r.Views = append(r.Views, vr)
	}
	return r, nil
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a terminal. It shows business times, not ages, so that the
// same data gives the same text tomorrow (ages are in the JSON form).
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Reconciliation report — database %s\n", r.Database)
	for _, v := range r.Views {
		fmt.Fprintf(tw, "\n%s %s (%s): %d rows\n", v.ID, v.Title, v.Name, v.Total)
		if v.Total == 0 {
			continue
		}
		fmt.Fprintf(tw, "  code\tbucket\trows\tSLA breached\n")
		for _, b := range v.Buckets {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\n", b.Code, b.Bucket, b.Rows, b.SLABreached)
		}
		fmt.Fprintf(tw, "  owner\tstate\trows\tSLA breached\n")
		for _, o := range v.Owners {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\n", o.Owner, o.State, o.Rows, o.SLABreached)
		}
		fmt.Fprintf(tw, "  oldest:\n")
		for _, it := range v.Oldest {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\tkey=%s\n", it.BusinessTime.Format(time.RFC3339), it.Code,
				kv(it.Keys, orderOf(v.Name, true)), kv(it.Measures, orderOf(v.Name, false)), it.Bucket, it.Owner, it.State, it.RowKey)
		}
	}
	return tw.Flush()
}

func orderOf(view string, keys bool) []string {
	for _, v := range Views {
		if v.Name == view {
			if keys {
				return v.Keys
			}
			return v.Measure
		}
	}
	return nil
}

func kv(m map[string]string, order []string) string {
	parts := make([]string, 0, len(m))
	for _, k := range order {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// Section is one table of an order's story: a title, column names and rows of text.
type Section struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

// Story is one order's full story: what the OMS, the ERP and the loyalty platform said, what
// retailflow asked for and why (the audit trail), the ledger's state and the open view rows.
type Story struct {
	OrderID  string    `json:"order_id"`
	Sections []Section `json:"sections"`
}

// storyQueries are the sections of a story; %[1]s is the database, the order id is bound as ?.
var storyQueries = []struct{ title, sql string }{
	// multiplier: the one the ledger applied — the order's own, else the tier's from the policy as
	// stamped on the order's point commands (v_order_multiplier); empty while neither is known
	{"Order", `SELECT order_id, toString(accepted_at) AS accepted_at, customer_id, loyalty_member_id AS member, tier_code AS tier,
		multiIf(has_tier_multiplier = 1, toString(tier_multiplier), known = 1, concat(toString(applied_multiplier), ' (tier policy)'), '') AS multiplier,
		currency, toString(grand_total) AS grand_total, reservation_id, toString(redemption_points) AS redemption_points
		FROM (SELECT order_id, accepted_at, customer_id, loyalty_member_id, tier_code, tier_multiplier, has_tier_multiplier, currency,
		             grand_total, reservation_id, redemption_points FROM %[1]s.f_orders WHERE order_id = ?) AS ord
		ANY LEFT JOIN (SELECT order_id, multiplier AS applied_multiplier, known FROM %[1]s.v_order_multiplier WHERE order_id = ?) AS applied
		USING (order_id)`},
	{"Lines (OMS vs ERP quantities, ERP net billed)", `SELECT order_line_id, toString(ordered_qty) AS ordered, toString(cancelled_qty) AS cancelled,
		toString(shipped_qty) AS shipped, toString(returned_qty) AS returned, toString(invoiced_qty) AS invoiced,
		toString(credited_qty) AS credited, toString(erp_net_billed) AS erp_net_billed
		FROM %[1]s.v_line_facts WHERE order_id = ? ORDER BY order_line_id`},
	{"Shipments", `SELECT toString(occurred_at) AS at, shipment_id, shipment_line_id, order_line_id, toString(quantity_shipped) AS qty,
		toString(is_reship) AS reship FROM %[1]s.f_shipment_lines WHERE order_id = ? ORDER BY occurred_at, shipment_id, shipment_line_id`},
	{"Returns", `SELECT toString(occurred_at) AS at, return_id, return_line_id, order_line_id, toString(quantity_accepted) AS accepted, disposition
		FROM %[1]s.f_return_lines WHERE order_id = ? ORDER BY occurred_at, return_id, return_line_id`},
	{"Billing documents", `SELECT toString(billing_date) AS date, billing_document_id, doc_kind, billing_type, accounting_transfer_status AS transfer,
		toString(net) AS net, toString(tax) AS tax, toString(gross) AS gross,
		if(billing_document_id IN (SELECT cancels_billing_document_id FROM %[1]s.f_billing_cancellations), 'CANCELLED', '') AS cancelled
		FROM %[1]s.f_billing_documents WHERE order_id = ? ORDER BY billing_date, billing_document_id`},
	{"Points requested vs posted", `SELECT toString(requested_at) AS at, command_type, request_id, source_ref_id, toString(points) AS requested,
		toString(answered) AS posted, toString(entitled_points) AS entitled_after
		FROM (SELECT requested_at, command_type, request_id, source_ref_id, points, entitled_points FROM %[1]s.loyalty_commands FINAL WHERE order_id = ?) AS cmd
		ANY LEFT JOIN (SELECT request_id, toInt64(sum(points)) AS answered FROM %[1]s.f_loyalty_postings WHERE request_id != '' GROUP BY request_id) AS posted
		USING (request_id) ORDER BY requested_at, request_id`},
	{"Audit trail (every point and money movement, and why)", `SELECT toString(business_time) AS at, movement_kind AS movement,
		toString(points) AS points, toString(amount) AS amount, currency, source_ref, if(event_id != '', event_id, causing_event_id) AS event, detail
		FROM %[1]s.audit_ledger FINAL WHERE order_id = ? ORDER BY business_time, movement_id`},
	{"Ledger state (changelog)", `SELECT toString(updated_at) AS as_of, toString(entitled_points) AS entitled, toString(requested_points) AS requested,
		toString(posted_points) AS posted, toString(basis_amount) AS basis, arrayStringConcat(open_exceptions, ' ') AS exceptions
		FROM %[1]s.order_state FINAL WHERE order_id = ? AND deleted = 0`},
}

// OrderStory collects one order's story from db.
func OrderStory(ctx context.Context, conn driver.Conn, db, orderID string) (*Story, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	s := &Story{OrderID: orderID}
	for _, q := range storyQueries {
		args := make([]any, strings.Count(q.sql, "?")) // every ? is the order id
		for i := range args {
			args[i] = orderID
		}
		sec, err := querySection(ctx, conn, q.title, fmt.Sprintf(q.sql, db), args...)
		if err != nil {
			return nil, err
		}
		s.Sections = append(s.Sections, sec)
	}
	sec := Section{Title: "Open reconciliation rows", Columns: []string{"view", "mismatch_code", "keys", "business_time", "age_bucket", "owner", "state"}}
	for _, v := range Views {
		if v.PerMember {
			continue
		}
		part, err := querySection(ctx, conn, "", storyViewSQL(db, v), orderID)
		if err != nil {
			return nil, err
		}
		sec.Rows = append(sec.Rows, part.Rows...)
	}
	s.Sections = append(s.Sections, sec)
	return s, nil
}

func keyConcat(keys []string) string {
	parts := make([]string, 0, 2*len(keys))
	for i, k := range keys {
		sep := ""
		if i > 0 {
			sep = " "
		}
		parts = append(parts, "'"+sep+k+"='", k)
	}
	return strings.Join(parts, ", ")
}

func querySection(ctx context.Context, conn driver.Conn, title, sql string, args ...any) (Section, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return Section{}, fmt.Errorf("story %q: %w", title, err)
	}
	defer rows.Close()
	sec := Section{Title: title, Columns: rows.Columns()}
	for rows.Next() {
		vals := make([]string, len(sec.Columns))
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return Section{}, fmt.Errorf("story %q: %w", title, err)
		}
		sec.Rows = append(sec.Rows, vals)
	}
	return sec, rows.Err()
}

// WriteText writes the story as titled tables.
func (s *Story) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Order %s\n", s.OrderID)
	for _, sec := range s.Sections {
		fmt.Fprintf(tw, "\n%s\n", sec.Title)
		if len(sec.Rows) == 0 {
			fmt.Fprintf(tw, "  (none)\n")
			continue
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(sec.Columns, "\t"))
		for _, r := range sec.Rows {
			fmt.Fprintf(tw, "  %s\n", strings.Join(r, "\t"))
		}
	}
	return tw.Flush()
}

// WriteJSON writes the story as one JSON document.
func (s *Story) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
