package clickhouse

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The teams the default ownership names (README "Reconciliation ownership").
const (
	TeamRetailOperations   = "retail-operations"
	TeamFinance            = "finance"
	TeamIntegrationSupport = "integration-support"
)

// Owners maps the reconciliation backlog to owner teams: the team of a row is Codes[view/CODE]
// if set, else Views[view], else Default. Views are named as the views are (recon_…).
type Owners struct {
	Default string
	Views   map[string]string // view name → team
	Codes   map[string]string // "view name/MISMATCH_CODE" → team
}

// DefaultOwners is the mapping of a configuration that sets none (README documents it): what
// only moves between systems (replication, confirmations, the pipeline's own accrual) is
// integration support's; what the customer or the member feels (returns, points) retail
// operations'; what the books close on (billing, credit memos, refunds, the three-way match,
// the liability) finance's, and a member's unrecoverable shortfall is a write-off decision.
func DefaultOwners() Owners {
	return Owners{
		Default: TeamIntegrationSupport,
		Views: map[string]string{
			"recon_orders_awaiting_erp":              TeamIntegrationSupport,
			"recon_shipments_not_invoiced":           TeamFinance,
			"recon_redemptions_pending_confirmation": TeamIntegrationSupport,
			"recon_returns_not_reflected_in_loyalty": TeamRetailOperations,
			"recon_accrual_vs_fulfilment":            TeamIntegrationSupport,
			"recon_three_way_line":                   TeamFinance,
			"recon_refunds_vs_credit_memos":          TeamFinance,
			"recon_loyalty_liability":                TeamFinance,
		},
		Codes: map[string]string{
			"recon_returns_not_reflected_in_loyalty/SHORTFALL": TeamFinance,
			"recon_accrual_vs_fulfilment/WRONG_MULTIPLIER":     TeamRetailOperations,
			"recon_accrual_vs_fulfilment/POINTS_ON_INELIGIBLE": TeamRetailOperations,
			// units the customer cancelled are still open in the ERP: whoever runs the orders
			// rejects them there before they ship or bill
			"recon_orders_awaiting_erp/CANCELLED_IN_OMS_OPEN_IN_ERP": TeamRetailOperations,
		},
	}
}

// Validate reports the first problem: an empty team, a key that names no view this build
// creates, a code key that is not view/CODE. key is the configuration key the caller reads
// owners from (recon.owners), for the message.
func (o Owners) Validate(key string) error {
	if strings.TrimSpace(o.Default) == "" {
		return fmt.Errorf("%s.default: must name a team", key)
	}
	known := map[string]bool{}
	for _, v := range Views {
		known[v.Name] = true
	}
	for view, team := range o.Views {
		if !known[view] && !optionalView(view) {
			return fmt.Errorf("%s.views.%s: no reconciliation view is named %q (known: %s)", key, view, view, viewNames())
		}
		if strings.TrimSpace(team) == "" {
			return fmt.Errorf("%s.views.%s: must name a team", key, view)
		}
	}
	for vc, team := range o.Codes {
		view, code, ok := strings.Cut(vc, "/")
		if !ok || code == "" || strings.ToUpper(code) != code {
			return fmt.Errorf("%s.codes.%s: must be <view>/<MISMATCH_CODE>", key, vc)
		}
		if !known[view] && !optionalView(view) {
			return fmt.Errorf("%s.codes.%s: no reconciliation view is named %q (known: %s)", key, vc, view, viewNames())
		}
		if strings.TrimSpace(team) == "" {
			return fmt.Errorf("%s.codes.%s: must name a team", key, vc)
		}
	}
	return nil
}

// optionalView: a view the default mapping names ahead of the build that creates it (C7).
func optionalView(name string) bool { return name == "recon_loyalty_liability" }

func viewNames() string {
	names := make([]string, len(Views))
	for i, v := range Views {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// Team is the owner team of a row of view with mismatch code code.
func (o Owners) Team(view, code string) string {
	if t := o.Codes[view+"/"+code]; t != "" {
		return t
	}
	if t := o.Views[view]; t != "" {
		return t
	}
	return o.Default
}

// rows is the mapping as recon_owners rows (view_name, mismatch_code, team), sorted.
func (o Owners) rows() [][3]string {
	out := [][3]string{{"*", "", o.Default}}
	for v, t := range o.Views {
		out = append(out, [3]string{v, "", t})
	}
	for vc, t := range o.Codes {
		v, c, _ := strings.Cut(vc, "/")
		out = append(out, [3]string{v, c, t})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

// storeOwners writes o as a new version of recon_owners when it differs from the latest one.
func storeOwners(ctx context.Context, s Session, db string, o Owners) (bool, error) {
	if o.Default == "" {
		o = DefaultOwners()
	}
	if err := o.Validate("recon.owners"); err != nil {
		return false, err
	}
	want := o.rows()
	have, err := s.Query(ctx, "SELECT view_name, mismatch_code, team FROM "+db+".recon_owners FINAL "+
		"WHERE version = (SELECT max(version) FROM "+db+".recon_owners) ORDER BY view_name, mismatch_code")
	if err != nil {
		return false, fmt.Errorf("reading %s.recon_owners: %w", db, err)
	}
	if len(have) == len(want) {
		same := true
		for i, r := range have {
			same = same && len(r) == 3 && r[0] == want[i][0] && r[1] == want[i][1] && r[2] == want[i][2]
		}
		if same {
			return false, nil
		}
	}
	version := time.Now().UnixNano()
	vals := make([]string, len(want))
	for i, r := range want {
		vals[i] = fmt.Sprintf("SELECT toUInt64(%d) AS version, %s AS view_name, %s AS mismatch_code, %s AS team", version, quote(r[0]), quote(r[1]), quote(r[2]))
	}
	// INSERT … SELECT: a VALUES literal sent as a query waits for a data block on the native protocol
	if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO %s.recon_owners (version, view_name, mismatch_code, team) %s",
		db, strings.Join(vals, " UNION ALL "))); err != nil {
		return false, fmt.Errorf("writing %s.recon_owners: %w", db, err)
	}
	return true, nil
}

// OpenView is the name of the view that wraps v for the backlog: v's rows that are not resolved,
// with row_key, owner_team and the row's state (ownershipViews).
func (v View) OpenView() string { return "open_" + v.Name }

// RowKey is the key of one backlog row as row_key holds it: v's key values in v.Keys order and
// the mismatch code, joined by '|'.
func (v View) RowKey(keys map[string]string, code string) string {
	parts := make([]string, 0, len(v.Keys)+1)
	for _, k := range v.Keys {
		parts = append(parts, keys[k])
	}
	return strings.Join(append(parts, code), "|")
}

// hasOrderID reports whether v's rows name an order (C7's belong to members: View.PerMember).
func hasOrderID(v View) bool { return !v.PerMember }

// orderIDExpr is v's order_id column, or an empty string for a view whose rows name no order.
func orderIDExpr(v View) string {
	if hasOrderID(v) {
		return "order_id"
	}
	return "'' AS order_id"
}

// OrderIDColumn is what to select as a row's order of view v: order_id, or an empty string for a view whose
// rows name no order.
func OrderIDColumn(v View) string {
	if hasOrderID(v) {
		return "order_id"
	}
	return "''"
}

// openColumns are the columns of v that its open_ view carries, besides row_key and the
// ownership columns: the keys, the measures and what every view has.
func (v View) openColumns() []string {
	var cols []string
	seen := map[string]bool{}
	orderID := []string{"order_id"}
	if !hasOrderID(v) {
		orderID = nil
	}
	for _, group := range [][]string{v.Keys, orderID, v.Measure, {"mismatch_code", "business_time", "age_hours", "age_bucket", "sla_breached"}} {
		for _, c := range group {
			if !seen[c] {
				seen[c] = true
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// ownershipViews is the SQL of the views the backlog is read through, generated from Views so
// that a view added there is owned and acknowledgeable without more SQL (applied with, and
// checksummed with, migrations/views/recon.sql):
//
//   - v_recon_owners: the latest recon_owners mapping; v_recon_row_state: per backlog row its
//     latest action (state, note, by, at);
//   - open_<view> per view: the view's rows not RESOLVED, with row_key, owner_team (the code's
//     team, else the view's, else the default) and state (OPEN when no one acted);
//   - recon_backlog: every open row of every view, with the columns they share.
//
// Named columns throughout: on 18.16 a SELECT * over a JOIN keeps the left side only.
func ownershipViews() string {
	var b strings.Builder
	b.WriteString(`
-- Generated from Views (connectors/clickhouse/ownership.go): ownership and state of the backlog.
CREATE VIEW IF NOT EXISTS {db}.v_recon_owners AS
SELECT view_name, mismatch_code, team FROM {db}.recon_owners FINAL
WHERE version = (SELECT max(version) FROM {db}.recon_owners);

CREATE VIEW IF NOT EXISTS {db}.v_recon_row_state AS
SELECT view_name, row_key, argMax(action, seq) AS state, argMax(note, seq) AS state_note,
       argMax(actor, seq) AS state_by, argMax(acted_at, seq) AS state_at
FROM {db}.recon_actions FINAL GROUP BY view_name, row_key;
`)
	var union []string
	for _, v := range Views {
		cols := v.openColumns()
		keyParts := make([]string, 0, len(v.Keys)+1)
		for _, k := range v.Keys {
			keyParts = append(keyParts, "toString("+k+")")
		}
		keyParts = append(keyParts, "mismatch_code")
		fmt.Fprintf(&b, `
CREATE VIEW IF NOT EXISTS {db}.%[1]s AS
SELECT %[2]s, row_key, owner_team, if(act_state = '', 'OPEN', act_state) AS state, act_note AS state_note,
       act_by AS state_by, act_at AS state_at
FROM (
    SELECT %[2]s, row_key,
           if(code_team != '', code_team,
              (SELECT argMax(team, view_name != '*') FROM {db}.v_recon_owners WHERE view_name IN ('%[3]s', '*') AND mismatch_code = '')) AS owner_team
    FROM (
        SELECT %[2]s, concat(%[4]s) AS row_key FROM {db}.%[3]s
    ) AS view_rows ANY LEFT JOIN (
        SELECT mismatch_code, team AS code_team FROM {db}.v_recon_owners WHERE view_name = '%[3]s' AND mismatch_code != ''
    ) AS code_owner USING (mismatch_code)
) AS owned ANY LEFT JOIN (
    SELECT row_key, state AS act_state, state_note AS act_note, state_by AS act_by, state_at AS act_at
    FROM {db}.v_recon_row_state WHERE view_name = '%[3]s'
) AS row_state USING (row_key)
WHERE act_state != 'RESOLVED';
`, v.OpenView(), strings.Join(cols, ", "), v.Name, strings.Join(keyParts, ", '|', "))
		union = append(union, fmt.Sprintf(`SELECT '%s' AS view_id, '%s' AS view_name, row_key, %s, mismatch_code, business_time,
       age_hours, age_bucket, sla_breached, owner_team, state, state_note, state_by, state_at FROM {db}.%s`, v.ID, v.Name, orderIDExpr(v), v.OpenView()))
	}
	fmt.Fprintf(&b, `
CREATE VIEW IF NOT EXISTS {db}.recon_backlog AS
%s;
`, strings.Join(union, "\nUNION ALL\n"))
	return b.String()
}

// ViewByName finds a reconciliation view by its id (C4) or name (recon_…), case-insensitively.
func ViewByName(name string) (View, bool) {
	for _, v := range Views {
		if strings.EqualFold(v.ID, name) || strings.EqualFold(v.Name, name) {
			return v, true
		}
	}
	return View{}, false
}

// Action is what a person does with a backlog row; the row's state is its latest action.
type Action string

const (
	Acknowledged Action = "ACKNOWLEDGED" // someone owns it and is on it; it stays in the backlog
	Resolved     Action = "RESOLVED"     // handled: it leaves the backlog (open_ views), the audit keeps it
	Reopened     Action = "REOPENED"     // back in the backlog after a resolution
)

// ActionRequest is one action on one backlog row.
type ActionRequest struct {
	View   View
	RowKey string
	Action Action
	Note   string
	Actor  string
}

// ErrNoSuchRow is wrapped when an action names a row the view does not have (or, for an
// acknowledgement or resolution, a row already resolved).
var ErrNoSuchRow = errors.New("no such backlog row")

// ActionResult is the row an action was recorded for, as the backlog shows it afterwards.
type ActionResult struct {
	View      string    `json:"view"`
	RowKey    string    `json:"row_key"`
	OrderID   string    `json:"order_id"`
	Code      string    `json:"mismatch_code"`
	Owner     string    `json:"owner_team"`
	Previous  string    `json:"previous_state"`
	State     string    `json:"state"`
	Note      string    `json:"note"`
	Actor     string    `json:"by"`
	ActedAt   time.Time `json:"at"`
	ActionID  string    `json:"action_id"`
	InBacklog bool      `json:"in_backlog"`
}

// RecordAction appends a to recon_actions after checking that the row exists where the action
// makes sense: ACKNOWLEDGED and RESOLVED need the row in the backlog (open_ view), REOPENED a
// RESOLVED row that the view still has. The note and the actor are required: the audit says
// who decided what and why.
func RecordAction(ctx context.Context, conn driver.Conn, db string, a ActionRequest) (ActionResult, error) {
	res := ActionResult{View: a.View.Name, RowKey: a.RowKey, State: string(a.Action), Note: a.Note, Actor: a.Actor}
	if !dbNameRE.MatchString(db) {
		return res, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	switch {
	case a.Action != Acknowledged && a.Action != Resolved && a.Action != Reopened:
		return res, fmt.Errorf("action %q is not one of %s, %s, %s", a.Action, Acknowledged, Resolved, Reopened)
	case strings.TrimSpace(a.Note) == "":
		return res, errors.New("a note is required: say what was done or decided")
	case strings.TrimSpace(a.Actor) == "":
		return res, errors.New("the actor is required: who acts")
	case a.RowKey == "":
		return res, errors.New("the row key is required")
	}
	var q string
	args := []any{a.RowKey}
	if a.Action == Reopened {
		args = append(args, a.View.Name)
		// the raw view still has the row, and its latest action is RESOLVED
		q = fmt.Sprintf(`SELECT order_id, mismatch_code, '', 'RESOLVED' FROM (
			SELECT %s, mismatch_code, concat(%s) AS row_key FROM %s.%s) AS view_rows
			WHERE row_key = ? AND row_key IN (SELECT row_key FROM %s.v_recon_row_state WHERE view_name = ? AND state = 'RESOLVED') LIMIT 1`,
			orderIDExpr(a.View), rowKeyExpr(a.View), db, a.View.Name, db)
	} else {
		q = fmt.Sprintf(`SELECT %s, mismatch_code, owner_team, state FROM %s.%s WHERE row_key = ? LIMIT 1`, orderIDExpr(a.View), db, a.View.OpenView())
	}
	if err := conn.QueryRow(ctx, q, args...).Scan(&res.OrderID, &res.Code, &res.Owner, &res.Previous); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			where := "in the backlog of " + a.View.OpenView()
			if a.Action == Reopened {
				where = "resolved in " + a.View.Name
			}
			return res, fmt.Errorf("%s %s: %w %s (keys %s|mismatch_code, as `retailflow reconcile` prints them)",
				a.View.ID, a.RowKey, ErrNoSuchRow, where, strings.Join(a.View.Keys, "|"))
		}
		return res, fmt.Errorf("%s %s: %w", a.View.ID, a.RowKey, err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	now := time.Now().UTC()
	res.ActionID, res.ActedAt = hex.EncodeToString(id), now.Truncate(time.Second)
	if err := appendBatch(ctx, conn, db+".recon_actions (view_name, row_key, action, note, actor, acted_at, seq, action_id)",
		[]any{a.View.Name, a.RowKey, string(a.Action), a.Note, a.Actor, res.ActedAt, uint64(now.UnixNano()), res.ActionID}); err != nil {
		return res, fmt.Errorf("recording %s of %s %s: %w", a.Action, a.View.ID, a.RowKey, err)
	}
	if a.Action == Reopened {
		if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT owner_team FROM %s.%s WHERE row_key = ? LIMIT 1`, db, a.View.OpenView()), a.RowKey).Scan(&res.Owner); err != nil {
			return res, fmt.Errorf("%s %s reopened, but reading it back: %w", a.View.ID, a.RowKey, err)
		}
	}
	res.InBacklog = a.Action != Resolved
	return res, nil
}

func rowKeyExpr(v View) string {
	parts := make([]string, 0, len(v.Keys)+1)
	for _, k := range v.Keys {
		parts = append(parts, "toString("+k+")")
	}
	return strings.Join(append(parts, "mismatch_code"), ", '|', ")
}

// RowAction is one line of a backlog row's audit trail.
type RowAction struct {
	Action string    `json:"action"`
	Note   string    `json:"note"`
	Actor  string    `json:"by"`
	At     time.Time `json:"at"`
}

// RowHistory is the audit trail of one backlog row, oldest first.
func RowHistory(ctx context.Context, conn driver.Conn, db string, v View, rowKey string) ([]RowAction, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT action, note, actor, acted_at FROM %s.recon_actions FINAL
		WHERE view_name = ? AND row_key = ? ORDER BY seq`, db), v.Name, rowKey)
	if err != nil {
		return nil, fmt.Errorf("history of %s %s: %w", v.ID, rowKey, err)
	}
	defer rows.Close()
	var out []RowAction
	for rows.Next() {
		var a RowAction
		if err := rows.Scan(&a.Action, &a.Note, &a.Actor, &a.At); err != nil {
			return nil, fmt.Errorf("history of %s %s: %w", v.ID, rowKey, err)
		}
		a.At = a.At.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// appendBatch appends rows (each in the column order target names) in one batch INSERT.
func appendBatch(ctx context.Context, conn driver.Conn, target string, rows ...[]any) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+target)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			_ = b.Abort()
			return err
		}
	}
	return b.Send()
}
