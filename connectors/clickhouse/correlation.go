package clickhouse

import (
	"context"

	"github.com/retailflow/retailflow/schemas"
)

// correlationOf is the correlation id of the event a dead letter carries: its original value
// decoded (not validated), or "" when it does not decode (undecodable bytes) or was dropped. Only DLQ records pay for this decode.
func (s *Sink) correlationOf(ctx context.Context, d *schemas.DeadLetter) string {
	if len(d.Value) == 0 {
		return ""
	}
	ref := schemas.RecordRef{Topic: s.logical[d.SourceTopic], Partition: d.SourcePartition, Offset: d.SourceOffset}
	if ref.Topic == "" {
		return ""
	}
	// decode only, no validation: a record the runtime found invalid still names its ids
	e, err := schemas.Decode[schemas.Event](ctx, s.o.Serde, ref, d.Value)
	if err != nil {
		return ""
	}
	return e.CorrelationID
}
