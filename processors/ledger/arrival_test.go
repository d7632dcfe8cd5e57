package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/retailflow/retailflow/schemas"
)

// An orphan's expiry counts from the later of its clock and the time its latest event reached
// the log: a shipment that arrives a fortnight after it occurred (a backlog) still waits
// OrphanGrace + RetentionAfterClose for its OrderAccepted. An accepted order keeps no arrival,
// and Arrived writes only its own copy.
func TestOrphanExpiryCountsFromArrival(t *testing.T) {
	p := DefaultPolicy()
	keep := p.OrphanGrace + p.RetentionAfterClose
	orphan, cmds := run(t, p, shipment("e-s1", "O-1001", "S1", day(1), qty{"L1", "1"}))
	if orphan.Accepted() || len(cmds) != 0 {
		t.Fatalf("the shipment alone: accepted %v, %d commands", orphan.Accepted(), len(cmds))
	}
	expires := func(l Ledger) time.Time {
		t.Helper()
		at, ok := l.ExpiresAt(p)
		if !ok {
			t.Fatal("an orphan has no expiry")
		}
		return at
	}
	if got, want := expires(orphan), day(1).Add(keep); !got.Equal(want) {
		t.Fatalf("no arrival noted: expires %s, want clock + %s = %s", got, keep, want)
	}

	late := orphan.Arrived(day(15).Add(time.Millisecond + 300*time.Microsecond + 7*time.Nanosecond))
	if got, want := expires(late), day(15).Add(time.Millisecond+300*time.Microsecond).Add(keep); !got.Equal(want) {
		t.Fatalf("arrived a fortnight late: expires %s, want arrival (µs) + %s = %s", got, keep, want)
	}
	if !orphan.State().OrphanSince.IsZero() {
		t.Fatalf("Arrived wrote into its receiver: %s", orphan.State().OrphanSince)
	}
	if got := expires(late.Arrived(day(3))); !got.Equal(expires(late)) {
		t.Fatalf("an earlier arrival moved the expiry back to %s", got)
	}
	if got := expires(orphan.Arrived(day(0))); !got.Equal(day(1).Add(keep)) {
		t.Fatalf("an arrival before the clock moved the expiry to %s", got)
	}
	// a timestamp beyond any plausible lag (microseconds written as milliseconds: year 58,000)
	// counts as MaxArrivalLag past the clock, and the state still encodes
	wild := orphan.Arrived(time.UnixMilli(day(1).UnixMicro()))
	if got, want := wild.State().OrphanSince, day(1).Add(MaxArrivalLag); !got.Equal(want) {
		t.Fatalf("a timestamp in year %d kept as %s, want clock + MaxArrivalLag = %s", time.UnixMilli(day(1).UnixMicro()).Year(), got, want)
	}
	serde, err := schemas.NewSerde(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EncodeState(serde, wild); err != nil {
		t.Fatalf("the clamped state does not encode: %v", err)
	}
	for _, none := range []time.Time{{}, time.UnixMilli(-1), time.Unix(0, 0)} {
		if got := orphan.Arrived(none).State().OrphanSince; !got.IsZero() {
			t.Fatalf("no timestamp (%s) was kept as the arrival %s", none, got)
		}
	}

	// its OrderAccepted, arriving later still, finds the held shipment: the points are
	// requested, and the accepted order keeps no arrival
	acc, cmds, err := late.Apply(o1001(), p)
	if err != nil {
		t.Fatal(err)
	}
	acc = acc.Arrived(day(16))
	if !acc.Accepted() || len(cmds) == 0 || acc.State().Points.AccrualRequested == 0 {
		t.Fatalf("accepted %v, %d commands, requested %d", acc.Accepted(), len(cmds), acc.State().Points.AccrualRequested)
	}
	if got := acc.State().OrphanSince; !got.IsZero() {
		t.Fatalf("the accepted order keeps the arrival %s", got)
	}
}
