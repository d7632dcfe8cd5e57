package oracle

import (
	"sort"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// c7: loyalty liability, per member and closed calendar month (UTC). The balances are
// cumulative at the period end T (movements with a business time, to the second as ClickHouse
// keeps it, before T):
//   - entitled: what the pipeline says the member's orders earned, Σ AccrualRequested −
//     Σ ReversalRequested (each command brings its order's requests back to P, DOMAIN B.1), by
//     the command's member (the order's, snapshotted at acceptance) at its business time;
//   - posted: what the platform holds for the member from those orders, pending + active,
//     Σ PointsAccrualPosted − Σ PointsReversed by the posting's member at posted_at/reversed_at;
//   - active: Σ PointsActivated (the member of the accrual entry it activates) − Σ from_active;
//   - early: points active at T whose lock had not ended at T: an activation counts from its
//     activated_at until the activates_at of the AccrualRequested its entry answers (request id).
//
// Codes: LIABILITY_DIFF when posted ≠ entitled (points = posted − entitled: the platform's
// liability is off by that many points; a command requested before T and posted after it shows
// as a cut-off difference of that period), ACTIVE_BEFORE_DUE when early > 0 (points = early:
// redeemable points the contract still holds in escrow). Periods run from the month of the
// member's first movement to the last month that ended before asOf; the row's business time is
// the period end.
func c7(v *viewSet, folded []*orderFold, issued map[string][]Command) {
	type move struct {
		at                              time.Time
		entitled, posted, active, early int64
	}
	moves := map[string][]move{}
	add := func(member string, m move) {
		if member == "" || (m.entitled == 0 && m.posted == 0 && m.active == 0 && m.early == 0) {
			return
		}
		m.at = m.at.UTC().Truncate(time.Second)
		moves[member] = append(moves[member], m)
	}
	for _, f := range folded {
		cmds := f.commands
		if issued != nil {
			cmds = issued[f.truth.OrderID]
		}
		due := map[string]time.Time{} // AccrualRequested request id → activates_at
		for _, c := range cmds {
			switch c.Type {
			case schemas.TypeAccrualRequested:
				add(c.MemberID, move{at: c.BusinessTime, entitled: c.Points})
				due[c.RequestID] = c.ActivatesAt
			case schemas.TypeReversalRequested:
				add(c.MemberID, move{at: c.BusinessTime, entitled: -c.Points})
			}
		}
		accruals := map[string]*schemas.PointsAccrualPosted{} // by ledger entry, the first record
		for _, e := range f.events {
			if a := e.PointsAccrualPosted; a != nil && accruals[a.LedgerEntryID] == nil {
				accruals[a.LedgerEntryID] = a
			}
		}
		for _, e := range f.events {
			switch {
			case e.PointsAccrualPosted != nil:
				a := e.PointsAccrualPosted
				add(a.MemberID, move{at: a.PostedAt, posted: a.Points})
			case e.PointsReversed != nil:
				r := e.PointsReversed
				add(r.MemberID, move{at: r.ReversedAt, posted: -r.Points, active: -r.FromActive})
			case e.PointsActivated != nil:
				act := e.PointsActivated
				entry := accruals[act.LedgerEntryID]
				if entry == nil {
					continue // the entry's member is unknown
				}
				add(entry.MemberID, move{at: act.ActivatedAt, active: act.Points})
				at := act.ActivatedAt.UTC().Truncate(time.Second)
				if d, ok := due[entry.RequestID]; ok && d.UTC().Truncate(time.Second).After(at) {
					add(entry.MemberID, move{at: act.ActivatedAt, early: act.Points})
					add(entry.MemberID, move{at: d, early: -act.Points})
				}
			}
		}
	}
	closedBefore := monthOf(v.asOf)
	members := make([]string, 0, len(moves))
	for m := range moves {
		members = append(members, m)
	}
	sort.Strings(members)
	for _, member := range members {
		ms := moves[member]
		sort.Slice(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
		first := monthOf(ms[0].at)
		var cum move
		next := 0
		for p := first; p.Before(closedBefore); p = p.AddDate(0, 1, 0) {
			end := p.AddDate(0, 1, 0)
			for ; next < len(ms) && ms[next].at.Before(end); next++ {
				cum.entitled += ms[next].entitled
				cum.posted += ms[next].posted
				cum.active += ms[next].active
				cum.early += ms[next].early
			}
			row := ViewRow{View: ViewLoyaltyLiability, MemberID: member, Period: p.Format("2006-01-02"), BusinessTime: end}
			if cum.posted != cum.entitled {
				r := row
				r.MismatchCode, r.Points = "LIABILITY_DIFF", cum.posted-cum.entitled
				v.add(r)
			}
			if cum.early > 0 {
				r := row
				r.MismatchCode, r.Points = "ACTIVE_BEFORE_DUE", cum.early
				v.add(r)
			}
		}
	}
}

// monthOf is the first instant of t's calendar month, UTC.
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
