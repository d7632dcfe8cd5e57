package schemas

import "time"

// ErrorClass says why a record was rejected; it travels in DeadLetter.ErrorClass and in the
// DLQ record's headers, so upstream owners can tell their bug from ours.
type ErrorClass string

// The error classes. All but ClassRegistryUnavailable are permanent for the record (poison:
// retrying cannot help, so the record goes to the DLQ); ClassRegistryUnavailable is transient
// and must be retried, never dead-lettered.
const (
	// ClassBadHeader: the value is not in the Confluent wire format (no magic byte 0, or
	// shorter than the 5-byte header).
	ClassBadHeader ErrorClass = "bad-header"
	// ClassUnknownSchema: the schema id is unknown to the registry (or, offline, to the
	// embedded schema set), or the schema it names is not Avro.
	ClassUnknownSchema ErrorClass = "unknown-schema"
	// ClassIncompatibleSchema: the writer schema is known but cannot be read into the current
	// Go type (a field changed type, a field without default was removed, …).
	ClassIncompatibleSchema ErrorClass = "incompatible-schema"
	// ClassAvro: the body is not valid Avro for its writer schema (truncated, trailing bytes,
	// a decimal beyond its precision, …).
	ClassAvro ErrorClass = "avro"
	// ClassInvalid: the value decoded but breaks a contract rule (Event.Validate).
	ClassInvalid ErrorClass = "invalid"
	// ClassRegistryUnavailable: the schema registry could not be asked (network error,
	// 5xx, timeout). Transient: retry with back-off, do not dead-letter.
	ClassRegistryUnavailable ErrorClass = "registry-unavailable"
	// ClassLedger: the event is valid but the order ledger refused it given the order's state
	// (a conflicting duplicate, a second OrderAccepted, too many events, …).
	ClassLedger ErrorClass = "ledger"
)

// Transient reports whether a record failing with this class may succeed on retry.
func (c ErrorClass) Transient() bool { return c == ClassRegistryUnavailable }

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
