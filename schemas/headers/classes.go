package headers

// ErrorClass says why a record was rejected; it travels in the ErrorClassKey header and in the
// DLQ value's error_class, so upstream owners can tell their bug from ours. Every class is
// permanent for the record (poison: it goes to the DLQ) except ClassRegistryUnavailable, which is
// transient: retried with back-off, never dead-lettered.
type ErrorClass string

// Classes of the codec and the contract (schemas).
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
	// ClassInvalid: the value decoded but breaks a contract rule (schemas.Event.Validate); also
	// the runtime's class for a Validate failure.
	ClassInvalid ErrorClass = "invalid"
	// ClassRegistryUnavailable: the schema registry could not be asked (network error,
	// 5xx, timeout). Transient: retry with back-off, do not dead-letter.
	ClassRegistryUnavailable ErrorClass = "registry-unavailable"
	// ClassRegistryAuth: the registry refused the credentials (never dead-lettered: the run
	// stops, see topology.ErrFatal).
	ClassRegistryAuth ErrorClass = "registry-auth"
	// ClassTimeOutOfRange: an event time outside 1970–2106, or further than the allowed skew
	// after the record's timestamp (schemas.Event.CheckTimes).
	ClassTimeOutOfRange ErrorClass = "time-out-of-range"
)

// Classes of the order ledger.
const (
	// ClassLedger: the event is valid but the order ledger refused it given the order's state
	// (a conflicting duplicate, a second OrderAccepted, too many events, …).
	ClassLedger ErrorClass = "ledger"
)

// Classes the runtime (topology) assigns when the stage's Classify names none.
const (
	ClassDecode  ErrorClass = "decode"
	ClassProcess ErrorClass = "process"
	ClassEncode  ErrorClass = "encode"
	// ClassNoKey is a record without a key: a keyed stage cannot place it.
	ClassNoKey ErrorClass = "no-key"
	// ClassOutputRejected is an input whose outputs the broker refused (e.g. too large).
	ClassOutputRejected ErrorClass = "output-rejected"
	// ClassMisrouted is a record on the re-route topic that is still on the wrong partition, or
	// that lacks its origin headers: it was not written by the runtime.
	ClassMisrouted ErrorClass = "misrouted"
)

// Transient reports whether a record failing with this class may succeed on retry.
func (c ErrorClass) Transient() bool { return c == ClassRegistryUnavailable }
