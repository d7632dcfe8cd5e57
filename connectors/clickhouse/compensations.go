package clickhouse

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
)

// compensable names, per view and mismatch code, the command whose missing answer the code
// reports: the step `retailflow compensate` re-requests. Other codes (REVERSAL_SHORT, SHORTFALL,
// REVERSED_AFTER_ACTIVATION, WRONG_MULTIPLIER, ACCRUED_BEFORE_SHIPMENT, POINTS_ON_INELIGIBLE) are
// answers that are wrong, not missing: a re-request with the same id would be deduplicated by the
// platform and change nothing, so they are not compensable.
var compensable = map[string]map[string]schemas.EventType{
	"recon_returns_not_reflected_in_loyalty": {
		"REVERSAL_MISSING": schemas.TypeReversalRequested,         // the return's reversal was never posted
		"REFUND_MISSING":   schemas.TypeRedemptionRefundRequested, // the return's redemption refund was never posted
	},
	"recon_accrual_vs_fulfilment": {
		"MEMBER_ORDER_NO_ACCRUAL": schemas.TypeAccrualRequested,  // no accrual posted at all
		"UNDER_ACCRUED":           schemas.TypeAccrualRequested,  // an accrual missing among posted ones
		"OVER_ACCRUED":            schemas.TypeReversalRequested, // a reversal (return or cancellation) missing
	},
}

// CompensableCodes lists the view/code pairs compensate acts on, for help texts.
func CompensableCodes() []string {
	var out []string
	for view, codes := range compensable {
		v, _ := ViewByName(view)
		for code, typ := range codes {
			out = append(out, fmt.Sprintf("%s %s (%s)", v.ID, code, typ))
		}
	}
	sort.Strings(out)
	return out
}

// Compensation is one command the ledger requested and the loyalty platform never answered (no
// posting carries its request id), found through open backlog rows of C4 or C5.
type Compensation struct {
	View           string                `json:"view"` // C4 | C5: the first row's view
	Code           string                `json:"mismatch_code"`
	RowKeys        []string              `json:"row_keys"` // every open backlog row it answers, as view:row_key
	OrderID        string                `json:"order_id"`
	RequestID      string                `json:"request_id"`
	CommandType    string                `json:"command_type"`
	Points         int64                 `json:"points"`
	CausingEventID string                `json:"causing_event_id"`
	SourceRefID    string                `json:"source_ref_id"`
	RequestedAt    time.Time             `json:"requested_at"`
	Original       headers.Coordinates   `json:"-"`
	OriginalRef    string                `json:"original"` // Original as text
	Compensated    *PreviousCompensation `json:"compensated,omitempty"`
}

// PreviousCompensation is what the compensations log says about a request id already re-sent.
type PreviousCompensation struct {
	RunID  string    `json:"run_id"`
	SentAt time.Time `json:"sent_at"`
	SentTo string    `json:"sent_to"` // topic/partition/offset of the copy
	Actor  string    `json:"by"`
}

// NotCompensable is an open backlog row of a compensable code for which no unanswered command
// exists (the platform answered every request of that type, short: a manual adjustment), or whose
// command is not the ledger's (its request id is not CommandRequestID of its order, causing event
// and type).
type NotCompensable struct {
	View    string `json:"view"`
	Code    string `json:"mismatch_code"`
	RowKey  string `json:"row_key"`
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// CompensationPlan is what compensate would do: Pending to send, Done already sent by an earlier
// run (the log has their request ids), Skipped rows it cannot act on.
type CompensationPlan struct {
	Pending []Compensation
	Done    []Compensation
	Skipped []NotCompensable
}

// PlanCompensations reads the open (not resolved) rows of the compensable codes of C4 and C5 and
// the unanswered commands they stand for. orders, if not empty, restricts it to those orders.
// A command found through several rows (a return's lines, C4 and C5 of one order) is planned once.
func PlanCompensations(ctx context.Context, conn driver.Conn, db string, orders []string) (*CompensationPlan, error) {
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	type backlogRow struct {
		view    View
		code    string
		rowKey  string
		orderID string
		ref     string // C4: the return id; C5: ''
	}
	var rows []backlogRow
	orderSet := map[string]bool{}
	for _, v := range Views {
		codes := compensable[v.Name]
		if len(codes) == 0 {
			continue
		}
		var names []string
		for c := range codes {
			names = append(names, quote(c))
		}
		sort.Strings(names)
		ref := "''"
		if v.Name == "recon_returns_not_reflected_in_loyalty" {
			ref = "return_id"
		}
		q := fmt.Sprintf(`SELECT mismatch_code, row_key, order_id, %s FROM %s.%s WHERE mismatch_code IN (%s)`,
			ref, db, v.OpenView(), strings.Join(names, ", "))
		var args []any
		if len(orders) > 0 {
			q += " AND has(?, order_id)"
			args = append(args, orders)
		}
		res, err := conn.Query(ctx, q+" ORDER BY order_id, row_key", args...)
		if err != nil {
			return nil, fmt.Errorf("compensate: reading %s: %w", v.OpenView(), err)
		}
		for res.Next() {
			r := backlogRow{view: v}
			if err := res.Scan(&r.code, &r.rowKey, &r.orderID, &r.ref); err != nil {
				res.Close()
				return nil, fmt.Errorf("compensate: reading %s: %w", v.OpenView(), err)
			}
			rows = append(rows, r)
			orderSet[r.orderID] = true
		}
		res.Close()
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("compensate: reading %s: %w", v.OpenView(), err)
		}
	}
	plan := &CompensationPlan{}
	if len(rows) == 0 {
		return plan, nil
	}
	ids := make([]string, 0, len(orderSet))
	for id := range orderSet {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// the commands of those orders that no posting answers (f_loyalty_postings: every kind of
	// posting carries the request id it answers)
	res, err := conn.Query(ctx, fmt.Sprintf(`SELECT order_id, request_id, command_type, points, causing_event_id, source_ref_id,
		requested_at, src_topic, src_partition, src_offset
		FROM %[1]s.loyalty_commands FINAL
		WHERE has(?, order_id) AND request_id NOT IN (SELECT request_id FROM %[1]s.f_loyalty_postings WHERE request_id != '')
		ORDER BY order_id, requested_at, request_id`, db), ids)
	if err != nil {
		return nil, fmt.Errorf("compensate: reading unanswered commands: %w", err)
	}
	var cmds []Compensation
	for res.Next() {
		var c Compensation
		if err := res.Scan(&c.OrderID, &c.RequestID, &c.CommandType, &c.Points, &c.CausingEventID, &c.SourceRefID, &c.RequestedAt,
			&c.Original.Topic, &c.Original.Partition, &c.Original.Offset); err != nil {
			res.Close()
			return nil, fmt.Errorf("compensate: reading unanswered commands: %w", err)
		}
		c.RequestedAt = c.RequestedAt.UTC()
		c.OriginalRef = c.Original.String()
		cmds = append(cmds, c)
	}
	res.Close()
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("compensate: reading unanswered commands: %w", err)
	}
	prev, err := compensated(ctx, conn, db)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Compensation{}
	var order []string
	for _, r := range rows {
		want := compensable[r.view.Name][r.code]
		found := false
		for _, c := range cmds {
			if c.OrderID != r.orderID || c.CommandType != string(want) || (r.ref != "" && c.SourceRefID != r.ref) {
				continue
			}
			found = true
			// the ledger's id for this command: CommandRequestID of its order, causing event and
			// type (schemas, the one derivation the ledger uses). A row whose id is not that is
			// not the ledger's command and is not re-sent.
			if id := schemas.CommandRequestID(c.OrderID, c.CausingEventID, schemas.EventType(c.CommandType)); id != c.RequestID {
				plan.Skipped = append(plan.Skipped, NotCompensable{View: r.view.ID, Code: r.code, RowKey: r.rowKey, OrderID: r.orderID,
					Reason: fmt.Sprintf("command %s at %s has request id %s, the ledger's for (%s, %s, %s) is %s: not re-sent",
						c.CommandType, c.OriginalRef, c.RequestID, c.OrderID, c.CausingEventID, c.CommandType, id)})
				continue
			}
			key := r.view.ID + ":" + r.rowKey
			if have := byID[c.RequestID]; have != nil {
				if !contains(have.RowKeys, key) {
					have.RowKeys = append(have.RowKeys, key)
				}
				continue
			}
			cc := c
			cc.View, cc.Code, cc.RowKeys = r.view.ID, r.code, []string{key}
			if p, ok := prev[c.RequestID]; ok {
				cc.Compensated = &p
			}
			byID[c.RequestID] = &cc
			order = append(order, c.RequestID)
		}
		if !found {
			what := "order " + r.orderID
			if r.ref != "" {
				what = "return " + r.ref
			}
			plan.Skipped = append(plan.Skipped, NotCompensable{View: r.view.ID, Code: r.code, RowKey: r.rowKey, OrderID: r.orderID,
				Reason: fmt.Sprintf("every %s of %s has a posting (answered short or otherwise wrong): a re-request would be deduplicated; adjust manually", want, what)})
		}
	}
	for _, id := range order {
		if c := byID[id]; c.Compensated != nil {
			plan.Done = append(plan.Done, *c)
		} else {
			plan.Pending = append(plan.Pending, *c)
		}
	}
	return plan, nil
}

// compensated reads the compensations log: per request id, its latest compensation.
func compensated(ctx context.Context, conn driver.Conn, db string) (map[string]PreviousCompensation, error) {
	res, err := conn.Query(ctx, fmt.Sprintf(`SELECT request_id, argMax(run_id, sent_at), max(sent_at),
		argMax(concat(sent_topic, '/', toString(sent_partition), '/', toString(sent_offset)), sent_at), argMax(actor, sent_at)
		FROM %s.compensations FINAL GROUP BY request_id`, db))
	if err != nil {
		return nil, fmt.Errorf("compensate: reading %s.compensations: %w", db, err)
	}
	defer res.Close()
	out := map[string]PreviousCompensation{}
	for res.Next() {
		var id string
		var p PreviousCompensation
		if err := res.Scan(&id, &p.RunID, &p.SentAt, &p.SentTo, &p.Actor); err != nil {
			return nil, fmt.Errorf("compensate: reading %s.compensations: %w", db, err)
		}
		p.SentAt = p.SentAt.UTC()
		out[id] = p
	}
	return out, res.Err()
}

// SentCompensation is a compensation whose command a committed transaction carried.
type SentCompensation struct {
	Compensation
	SentTo headers.Coordinates
	RunID  string
	Actor  string
	SentAt time.Time
}

// LogCompensations appends sent to the compensations log, in one INSERT.
func LogCompensations(ctx context.Context, conn driver.Conn, db string, sent []SentCompensation) error {
	if !dbNameRE.MatchString(db) {
		return fmt.Errorf("clickhouse: database name %q is invalid", db)
	}
	if len(sent) == 0 {
		return nil
	}
	rows := make([][]any, len(sent))
	for i, s := range sent {
		rows[i] = []any{s.RequestID, s.OrderID, s.CommandType, s.Points, s.SourceRefID, viewNameOf(s.View), s.Code, s.OriginalRef,
			s.SentTo.Topic, s.SentTo.Partition, s.SentTo.Offset, s.RunID, s.Actor, s.SentAt.UTC().Truncate(time.Second)}
	}
	if err := appendBatch(ctx, conn, db+".compensations (request_id, order_id, command_type, points, source_ref_id, view_name, mismatch_code, "+
		"original, sent_topic, sent_partition, sent_offset, run_id, actor, sent_at)", rows...); err != nil {
		return fmt.Errorf("writing %s.compensations: %w", db, err)
	}
	return nil
}

func viewNameOf(id string) string {
	if v, ok := ViewByName(id); ok {
		return v.Name
	}
	return id
}
