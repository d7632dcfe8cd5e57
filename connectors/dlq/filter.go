package dlq

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Filter selects the DLQ records a replay considers. Within one key the values are
// alternatives (class A or class B); across keys all must hold (class A and topic T). The
// zero Filter matches everything.
type Filter struct {
	// Classes are error classes (DeadLetter.ErrorClass, e.g. "unknown-schema", "ledger").
	Classes []string
	// Topics are physical source topics (DeadLetter.SourceTopic).
	Topics []string
	// Since keeps records rejected at or after this instant (DeadLetter.FirstSeenAt, or the
	// DLQ record's timestamp when that is unset).
	Since time.Time
}

// ParseFilter reads expressions of the form key=value, key one of error-class, topic and
// since (RFC 3339). topicName maps a user's topic name (logical or physical) to the physical
// name, or returns an error that says which names exist.
func ParseFilter(exprs []string, topicName func(string) (string, error)) (Filter, error) {
	var f Filter
	for _, e := range exprs {
		key, val, ok := strings.Cut(e, "=")
		if !ok || val == "" {
			return Filter{}, fmt.Errorf("filter %q: want key=value with key error-class, topic or since", e)
		}
		switch key {
		case "error-class", "class":
			f.Classes = append(f.Classes, val)
		case "topic":
			name, err := topicName(val)
			if err != nil {
				return Filter{}, fmt.Errorf("filter %q: %w", e, err)
			}
			f.Topics = append(f.Topics, name)
		case "since":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return Filter{}, fmt.Errorf("filter %q: since must be RFC 3339, e.g. 2026-11-02T15:04:05Z", e)
			}
			if !f.Since.IsZero() {
				return Filter{}, fmt.Errorf("filter %q: since given twice", e)
			}
			f.Since = t
		default:
			return Filter{}, fmt.Errorf("filter %q: unknown key %q (error-class, topic, since)", e, key)
		}
	}
	return f, nil
}

// Match reports whether l is selected.
func (f Filter) Match(l *Letter) bool {
	if len(f.Classes) > 0 && !slices.Contains(f.Classes, string(l.Dead.ErrorClass)) {
		return false
	}
	if len(f.Topics) > 0 && !slices.Contains(f.Topics, l.Dead.SourceTopic) {
		return false
	}
	if !f.Since.IsZero() && l.RejectedAt().Before(f.Since) {
		return false
	}
	return true
}

// String renders the filter for messages ("all" for the zero Filter).
func (f Filter) String() string {
	var parts []string
	for _, c := range f.Classes {
		parts = append(parts, "error-class="+c)
	}
	for _, t := range f.Topics {
		parts = append(parts, "topic="+t)
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.Format(time.RFC3339Nano))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}
