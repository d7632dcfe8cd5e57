package clickhouse

import (
	"strings"
	"testing"
)

func TestOwnersTeamAndValidate(t *testing.T) {
	o := DefaultOwners()
	if err := o.Validate("recon.owners"); err != nil {
		t.Fatalf("the default mapping is invalid: %v", err)
	}
	for _, v := range Views {
		if o.Team(v.Name, "ANY_CODE") == "" {
			t.Errorf("%s has no owner", v.Name)
		}
	}
	for _, tc := range []struct{ view, code, want string }{
		{"recon_returns_not_reflected_in_loyalty", "REVERSAL_MISSING", TeamRetailOperations},
		{"recon_returns_not_reflected_in_loyalty", "SHORTFALL", TeamFinance}, // the code's team over the view's
		{"recon_three_way_line", "AMOUNT_DIFF", TeamFinance},
		{"recon_orders_awaiting_erp", "NOT_REPLICATED", TeamIntegrationSupport},
		{"recon_orders_awaiting_erp", "CANCELLED_IN_OMS_OPEN_IN_ERP", TeamRetailOperations}, // rejected in the ERP by order management
		{"recon_not_yet_built", "X", TeamIntegrationSupport},                                // the default
	} {
		if got := o.Team(tc.view, tc.code); got != tc.want {
			t.Errorf("Team(%s, %s) = %s, want %s", tc.view, tc.code, got, tc.want)
		}
	}
	for _, tc := range []struct {
		o    Owners
		want string
	}{
		{Owners{}, "recon.owners.default: must name a team"},
		{Owners{Default: "a", Views: map[string]string{"recon_nope": "b"}}, `recon.owners.views.recon_nope: no reconciliation view is named "recon_nope"`},
		{Owners{Default: "a", Codes: map[string]string{"recon_three_way_line": "b"}}, "recon.owners.codes.recon_three_way_line: must be <view>/<MISMATCH_CODE>"},
		{Owners{Default: "a", Codes: map[string]string{"recon_three_way_line/TAX_DIFF": " "}}, "recon.owners.codes.recon_three_way_line/TAX_DIFF: must name a team"},
	} {
		if err := tc.o.Validate("recon.owners"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
	// the stored rows: the default as view '*', whole views with code '', sorted
	rows := Owners{Default: "d", Views: map[string]string{"recon_three_way_line": "f"}, Codes: map[string]string{"recon_three_way_line/TAX_DIFF": "t"}}.rows()
	if len(rows) != 3 || rows[0] != [3]string{"*", "", "d"} || rows[1] != [3]string{"recon_three_way_line", "", "f"} || rows[2] != [3]string{"recon_three_way_line", "TAX_DIFF", "t"} {
		t.Errorf("rows = %v", rows)
	}
}

func TestRowKeyMatchesTheViews(t *testing.T) {
	v, ok := ViewByName("c4")
	if !ok || v.Name != "recon_returns_not_reflected_in_loyalty" {
		t.Fatalf("ViewByName(c4) = %v %v", v, ok)
	}
	if got := v.RowKey(map[string]string{"return_id": "R-1", "order_line_id": "L2", "order_id": "O-1"}, "REVERSAL_MISSING"); got != "R-1|L2|O-1|REVERSAL_MISSING" {
		t.Errorf("RowKey = %q", got)
	}
	// every view gets its open_ view, and recon_backlog unions them all
	sql := ownershipViews()
	for _, v := range Views {
		if !strings.Contains(sql, "{db}."+v.OpenView()+" AS") || !strings.Contains(sql, "FROM {db}."+v.OpenView()) {
			t.Errorf("no open view of %s in the generated SQL", v.Name)
		}
	}
}

// A view whose rows name no order (C7, per member and period) gets an open_ view without
// order_id and an empty order in recon_backlog.
func TestOwnershipViewsOfAPerMemberView(t *testing.T) {
	saved := Views
	defer func() { Views = saved }()
	Views = append(append([]View{}, saved...), View{ID: "C7", Name: "recon_loyalty_liability", Keys: []string{"member_id", "period"}, Measure: []string{"points"}})
	sql := ownershipViews()
	start := strings.Index(sql, "{db}.open_recon_loyalty_liability AS")
	end := strings.Index(sql[start:], ";")
	if start < 0 || end < 0 {
		t.Fatalf("no open view of C7 in %s", sql)
	}
	if def := sql[start : start+end]; strings.Contains(def, "order_id") {
		t.Errorf("C7's open view selects order_id: %s", def)
	}
	if !strings.Contains(sql, "'recon_loyalty_liability' AS view_name, row_key, '' AS order_id") {
		t.Errorf("recon_backlog does not give C7 an empty order_id")
	}
}
