package oracle

import (
	"reflect"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// TestC7LoyaltyLiability: DOMAIN B.2 scenarios A and C for member M-77 (day 0 = 1 March):
// accruals 141 (S1, day 1) and 181 (S2, day 4), reversals 39 (R1, day 20) and 77 (R2, day 40,
// 10 April). The platform posts the accruals and R2's reversal at once, R1's reversal on
// 1 April (after the March close), and activates S1's entry on day 2, while B.1 locks it until
// shipped_at + 30 days (1 April, 10:00: still escrow at the March close).
//
// March close: entitled 141 + 181 − 39 = 283, posted 322 → LIABILITY_DIFF +39; active 141 whose
// lock had not ended → ACTIVE_BEFORE_DUE 141. April close: entitled = posted = 206, the lock has
// ended: no row. May is not closed at asOf.
func TestC7LoyaltyLiability(t *testing.T) {
	p := DefaultPolicy()
	s1 := shipment("S1", 1, map[string]string{"L1": "1", "L2": "1", "L3": "1"})
	s2 := shipment("S2", 4, map[string]string{"L1": "1", "L2": "2"})
	r1 := ret("R1", 20, map[string]string{"L2": "1"})
	r2 := ret("R2", 40, map[string]string{"L2": "2"})
	rid := func(cause string, typ schemas.EventType) string {
		return schemas.CommandRequestID("O-1001", cause, typ)
	}
	at := func(days int) time.Time { return day0.AddDate(0, 0, days).Add(5 * time.Minute) }
	posted := func(id, cause string, days int, pts int64) schemas.Event {
		return schemas.Event{Envelope: env("e-"+id, schemas.TypePointsAccrualPosted, at(days)),
			PointsAccrualPosted: &schemas.PointsAccrualPosted{LedgerEntryID: id, RequestID: rid(cause, schemas.TypeAccrualRequested),
				OrderID: "O-1001", MemberID: "M-77", Points: pts, Status: "PENDING", PostedAt: at(days)}}
	}
	reversed := func(id, cause string, days int, pts, fromActive int64) schemas.Event {
		return schemas.Event{Envelope: env("e-"+id, schemas.TypePointsReversed, at(days)),
			PointsReversed: &schemas.PointsReversed{LedgerEntryID: id, RequestID: rid(cause, schemas.TypeReversalRequested),
				OrderID: "O-1001", MemberID: "M-77", Points: pts, FromPending: pts - fromActive, FromActive: fromActive, ReversedAt: at(days)}}
	}
	activated := schemas.Event{Envelope: env("e-act-LE1", schemas.TypePointsActivated, at(2)),
		PointsActivated: &schemas.PointsActivated{LedgerEntryID: "LE-1", OrderID: "O-1001", Points: 141, ActivatedAt: at(2)}}
	events := []schemas.Event{o1001(), confirmed(), s1, s2, r1, r2,
		posted("LE-1", "e-S1", 1, 141), posted("LE-2", "e-S2", 4, 181), activated,
		reversed("LE-3", "e-R1", 31, 39, 0), reversed("LE-4", "e-R2", 40, 77, 0)}
	asOf := time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC)
	if due := day0.AddDate(0, 0, 1+p.LockDays); due.Month() != time.April {
		t.Fatalf("fixture: S1's lock ends %s, want after the March close", due)
	}
	got := Compute(events, p, asOf).Views[ViewLoyaltyLiability]
	want := []ViewRow{
		{View: ViewLoyaltyLiability, MemberID: "M-77", Period: "2026-03-01", MismatchCode: "ACTIVE_BEFORE_DUE", Points: 141,
			BusinessTime: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
		{View: ViewLoyaltyLiability, MemberID: "M-77", Period: "2026-03-01", MismatchCode: "LIABILITY_DIFF", Points: 39,
			BusinessTime: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("C7 rows:\n got %+v\nwant %+v", got, want)
	}

	// The same events evaluated within April: March is closed, April is not.
	if got := Compute(events, p, time.Date(2026, 4, 20, 0, 0, 0, 0, time.UTC)).Views[ViewLoyaltyLiability]; len(got) != 2 {
		t.Fatalf("as of 20 April: %d rows, want March's 2: %+v", len(got), got)
	}
	// Within the grace after the period end, nothing yet.
	if got := Compute(events, p, time.Date(2026, 4, 1, 0, 10, 0, 0, time.UTC)).Views[ViewLoyaltyLiability]; len(got) != 0 {
		t.Fatalf("10 minutes after the March close: %+v, want none within the grace", got)
	}
}
