package generate

import (
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
)

func gen(t testing.TB, o Options) *Traffic {
	t.Helper()
	tr, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// asOf is well after any generated business time.
func asOf(tr *Traffic) time.Time { return tr.End.Add(time.Hour) }

func viewCounts(x *oracle.Expected) map[string]int {
	out := map[string]int{}
	for view, rows := range x.Views {
		for _, r := range rows {
			out[view+"/"+r.MismatchCode]++
		}
	}
	return out
}

func TestCleanRunHasEmptyViews(t *testing.T) {
	tr := gen(t, Options{Seed: 1, Orders: 2000})
	x := tr.Expected(asOf(tr))
	if c := viewCounts(x); len(c) != 0 {
		for view, rows := range x.Views {
			for i, r := range rows {
				if i < 3 {
					t.Logf("%s %+v", view, r)
				}
			}
		}
		t.Fatalf("clean run expects view rows: %v", c)
	}
	if len(tr.DeadLetters()) != 0 || len(tr.Faults()) != 0 {
		t.Fatalf("clean run has %d dead letters, %d faulty orders", len(tr.DeadLetters()), len(tr.Faults()))
	}
	for _, r := range tr.Records {
		if r.Duplicate || r.Malformed != "" {
			t.Fatalf("clean run has a duplicate or malformed record: %+v", r)
		}
	}
	var accr, rev, ref int
	for _, c := range x.Commands {
		switch c.Type {
		case schemas.TypeAccrualRequested:
			accr++
		case schemas.TypeReversalRequested:
			rev++
		default:
			ref++
		}
	}
	t.Logf("%d records, %d orders, commands: %d accruals, %d reversals, %d refunds; totals %+v",
		len(tr.Records), len(x.Orders), accr, rev, ref, x.Totals)
	if accr == 0 || rev == 0 || ref == 0 {
		t.Fatalf("traffic too poor: %d accruals, %d reversals, %d refunds", accr, rev, ref)
	}
}
