package headers

import "testing"

func TestCoordinatesRoundTrip(t *testing.T) {
	for _, c := range []Coordinates{{"retailflow.dlq.v1", 3, 12345}, {"a/b", 0, 0}} {
		got, err := ParseCoordinates(c.String())
		if err != nil || got != c {
			t.Fatalf("%v → %q → %v, %v", c, c.String(), got, err)
		}
	}
	for _, bad := range []string{"", "t", "t/1", "/1/2", "t/x/2", "t/1/-2", "t/-1/2"} {
		if _, err := ParseCoordinates(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOneConvention(t *testing.T) {
	for _, h := range []string{SourceTopic, SourcePartition, SourceOffset, OutputSeq, ErrorClassKey, ErrorMessage, SchemaID,
		FirstSeen, SourceTimestamp, ValueDropped, DLQEncodeError, ReplayOf, ReplayAttempt, Origin} {
		if !IsRetailflow(h) || h[:len(Prefix)] != Prefix {
			t.Errorf("%s does not follow the rf. convention", h)
		}
	}
	for _, h := range []string{ReplayOf, ReplayAttempt, Origin} {
		if IsHop(h) {
			t.Errorf("%s is history, not a hop header: a re-route or replay must keep it", h)
		}
		if len(Names(h)) != 2 || !IsRetailflow(Names(h)[1]) {
			t.Errorf("%s: legacy name not recognised: %v", h, Names(h))
		}
	}
}
