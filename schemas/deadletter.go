package schemas

import (
	"time"

	"github.com/retailflow/retailflow/schemas/headers"
)

// ErrorClass says why a record was rejected (the one class type: schemas/headers).
type ErrorClass = headers.ErrorClass

// The error classes (schemas/headers has their meaning).
const (
	ClassBadHeader           = headers.ClassBadHeader
	ClassUnknownSchema       = headers.ClassUnknownSchema
	ClassIncompatibleSchema  = headers.ClassIncompatibleSchema
	ClassAvro                = headers.ClassAvro
	ClassInvalid             = headers.ClassInvalid
	ClassRegistryUnavailable = headers.ClassRegistryUnavailable
	ClassRegistryAuth        = headers.ClassRegistryAuth
	ClassTimeOutOfRange      = headers.ClassTimeOutOfRange
	ClassLedger              = headers.ClassLedger
)

// DeadLetter is the value of the DLQ topic (schemas/avro/dlq.avsc): a rejected record with its
// original bytes, unchanged, and the coordinates needed to find it again and replay it.
type DeadLetter struct {
	Key             []byte     `json:"key"`   // nil: the record had no key
	Value           []byte     `json:"value"` // nil: tombstone
	SourceTopic     string     `json:"source_topic"`
	SourcePartition int32      `json:"source_partition"`
	SourceOffset    int64      `json:"source_offset"`
	SchemaID        *int32     `json:"schema_id,omitempty"`
	EventID         *string    `json:"event_id,omitempty"`
	ErrorClass      ErrorClass `json:"error_class"`
	ErrorMessage    string     `json:"error_message"`
	FirstSeenAt     time.Time  `json:"first_seen_at"`
	Attempt         int32      `json:"attempt"`
	ReplayOf        *string    `json:"replay_of,omitempty"`
}
