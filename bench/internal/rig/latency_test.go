package rig

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

func TestQuantile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(1, 2, 3), 0, time.Millisecond},
		{ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{ms(1, 2, 3), 1, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond}, // ⌊0.5·3⌋ = 1: the lower median
		{ms(hundred...), 0.5, 50 * time.Millisecond},
		{ms(hundred...), 0.99, 99 * time.Millisecond}, // ⌊0.99·99⌋ = 98
		{ms(hundred...), 1, 100 * time.Millisecond},
	} {
		if got := Quantile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("Quantile(%d values, %v) = %s, want %s", len(tc.sorted), tc.q, got, tc.want)
		}
	}
}

func TestCaughtUp(t *testing.T) {
	ends := func(offs ...int64) kadm.ListedOffsets {
		l := kadm.ListedOffsets{"in": {}}
		for p, o := range offs {
			l["in"][int32(p)] = kadm.ListedOffset{Topic: "in", Partition: int32(p), Offset: o}
		}
		return l
	}
	committed := func(offs map[int32]int64) kadm.OffsetResponses {
		r := kadm.OffsetResponses{"in": {}}
		for p, o := range offs {
			r["in"][p] = kadm.OffsetResponse{Offset: kadm.Offset{Topic: "in", Partition: p, At: o}}
		}
		return r
	}
	for _, tc := range []struct {
		name string
		ends kadm.ListedOffsets
		com  kadm.OffsetResponses
		want bool
	}{
		{"every partition at its end", ends(10, 5), committed(map[int32]int64{0: 10, 1: 5}), true},
		{"one behind", ends(10, 5), committed(map[int32]int64{0: 10, 1: 4}), false},
		{"nothing committed yet", ends(10, 5), committed(nil), false},
		{"an empty partition needs no commit", ends(10, 0), committed(map[int32]int64{0: 10}), true},
		{"no records at all", ends(0, 0), committed(nil), true},
	} {
		if got := CaughtUp(tc.ends, tc.com); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
