package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// OffsetReset is what a consumer group does when its committed offset is no longer in the log
// (retention or a DeleteRecords passed it during an outage): the operator's explicit choice.
type OffsetReset string

const (
	// ResetNone stops with an *OffsetsLostError naming what was lost (the default).
	ResetNone OffsetReset = "none"
	// ResetEarliest resumes at the log start: the records in between are skipped.
	ResetEarliest OffsetReset = "earliest"
	// ResetLatest resumes at the log end: everything not yet consumed is skipped.
	ResetLatest OffsetReset = "latest"
)

// ParseOffsetReset accepts none, earliest or latest ("" is none).
func ParseOffsetReset(s string) (OffsetReset, error) {
	switch OffsetReset(s) {
	case "", ResetNone:
		return ResetNone, nil
	case ResetEarliest, ResetLatest:
		return OffsetReset(s), nil
	}
	return "", fmt.Errorf("%q is not one of none, earliest, latest", s)
}

// ConsumeOptions are the start and reset options of a group consumer: a group without a
// committed offset starts at the log start; a committed offset that is no longer in the log is
// fatal (the partition's fetch reports kerr.OffsetOutOfRange; see OffsetsLost) unless reset
// says to skip to the start or the end.
func (r OffsetReset) ConsumeOptions() []kgo.Opt {
	start := kgo.ConsumeStartOffset(kgo.NewOffset().AtStart())
	switch r {
	case ResetEarliest:
		return []kgo.Opt{start, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	case ResetLatest:
		return []kgo.Opt{start, kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd())}
	}
	// NoResetOffset().AtStart(): a new group still starts at the start; out of range is kept
	return []kgo.Opt{kgo.ConsumeResetOffset(kgo.NoResetOffset().AtStart())}
}

// OffsetsLostError says that a group's committed offset is no longer in its partition's log:
// the records [Committed, LogStart) were deleted before the group read them, or the partition
// now ends before Committed (it was truncated or recreated).
type OffsetsLostError struct {
	Group     string
	Topic     string
	Partition int32
	// Committed is the group's committed offset, −1 when it could not be read.
	Committed int64
	// LogStart and LogEnd bound the partition's log now, −1 when they could not be read.
	LogStart, LogEnd int64
	Err              error // the fetch error (kerr.OffsetOutOfRange)
}

func (e *OffsetsLostError) Error() string {
	var what string
	switch {
	case e.Committed < 0 || e.LogStart < 0:
		what = fmt.Sprintf("the committed offset of group %s is out of range (log now [%d, %d))", e.Group, e.LogStart, e.LogEnd)
	case e.Committed < e.LogStart:
		what = fmt.Sprintf("offsets %d–%d (%d records) were deleted before group %s consumed them (committed %d, log now starts at %d; retention shorter than an outage, or DeleteRecords)",
			e.Committed, e.LogStart-1, e.LogStart-e.Committed, e.Group, e.Committed, e.LogStart)
	case e.Committed > e.LogEnd:
		what = fmt.Sprintf("group %s committed offset %d but the log now ends at %d: offsets %d–%d are gone (topic truncated or recreated?)",
			e.Group, e.Committed, e.LogEnd, e.LogEnd, e.Committed-1)
	default:
		what = fmt.Sprintf("group %s committed offset %d was out of range (log now [%d, %d))", e.Group, e.Committed, e.LogStart, e.LogEnd)
	}
	return fmt.Sprintf("%s[%d]: %s; not resetting, which would silently skip or repeat records. "+
		"Recover the records if they exist elsewhere, or set the reset policy explicitly (earliest|latest) for one start to accept the loss (README \"Recovery\")",
		e.Topic, e.Partition, what)
}

func (e *OffsetsLostError) Unwrap() error { return e.Err }

// OffsetsLost returns an *OffsetsLostError for the first partition of fs whose fetch failed
// with kerr.OffsetOutOfRange (what a consumer built with ResetNone.ConsumeOptions reports),
// with the group's committed offset and the log bounds looked up through cl (best effort,
// bounded by timeout); nil if there is none. Other fetch errors are left to the caller.
func OffsetsLost(ctx context.Context, cl *kgo.Client, group string, fs kgo.Fetches, timeout time.Duration) error {
	var lost *OffsetsLostError
	fs.EachError(func(t string, p int32, err error) {
		if lost == nil && errors.Is(err, kerr.OffsetOutOfRange) {
			lost = &OffsetsLostError{Group: group, Topic: t, Partition: p, Committed: -1, LogStart: -1, LogEnd: -1, Err: err}
		}
	})
	if lost == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	if offs, err := adm.FetchOffsetsForTopics(ctx, group, lost.Topic); err == nil {
		if o, ok := offs.Lookup(lost.Topic, lost.Partition); ok && o.Err == nil && o.At >= 0 {
			lost.Committed = o.At
		}
	}
	if so, err := adm.ListStartOffsets(ctx, lost.Topic); err == nil {
		if o, ok := so.Lookup(lost.Topic, lost.Partition); ok && o.Err == nil {
			lost.LogStart = o.Offset
		}
	}
	if eo, err := adm.ListEndOffsets(ctx, lost.Topic); err == nil {
		if o, ok := eo.Lookup(lost.Topic, lost.Partition); ok && o.Err == nil {
			lost.LogEnd = o.Offset
		}
	}
	return lost
}
