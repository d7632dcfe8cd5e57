// Package headers is the contract of what travels in Kafka record headers beside a value: one
// naming convention (every retailflow header starts with "rf."), one format for record
// coordinates (Coordinates, "topic/partition/offset"), and one error-class type (ErrorClass,
// the value of rf.error.class and of the DLQ value's error_class). The runtime (topology), the
// DLQ replay (connectors/dlq), the ClickHouse sink and the verifiers read and write headers
// through these names. It imports nothing, so the runtime can use it without the Avro codecs.
package headers

import (
	"fmt"
	"strconv"
	"strings"
)

// Prefix starts every header retailflow writes.
const Prefix = "rf."

// Headers the runtime writes for one hop (hop headers: IsHop). Every output and changelog record
// (except a tombstone of the time-driven sweep, which no input caused: it carries Evicted)
// carries the source coordinates of the input that caused it (Source*, plus OutputSeq, the index
// among that input's outputs), so a verifier can prove no input was processed twice. DLQ records
// carry all of them. A record on the re-route topic carries the Source* coordinates of the input
// it re-routes, and the outputs, changelog records and dead letters of a re-routed record name
// that original input.
const (
	SourceTopic     = "rf.source.topic"
	SourcePartition = "rf.source.partition" // decimal
	SourceOffset    = "rf.source.offset"    // decimal
	OutputSeq       = "rf.output.seq"       // decimal
	ErrorClassKey   = "rf.error.class"      // an ErrorClass
	ErrorMessage    = "rf.error.message"
	SchemaID        = "rf.schema.id"        // decimal; absent when the value has no Confluent header
	FirstSeen       = "rf.first.seen"       // RFC 3339 (nanoseconds), wall clock of the runtime
	SourceTimestamp = "rf.source.timestamp" // RFC 3339 (nanoseconds), the input record's timestamp
	ValueDropped    = "rf.value.dropped"    // "true": the DLQ record carries no value
	DLQEncodeError  = "rf.dlq.encode.error" // the stage's DeadLetter failed; the value is the original
)

// Headers that describe a record's history rather than one hop: they travel with the record
// through a re-route and into the DLQ.
const (
	// ReplayOf names the DLQ record a replay came from, as Coordinates.
	ReplayOf = "rf.replay.of"
	// ReplayAttempt is the delivery attempt a replay is, in decimal (the original delivery is
	// 1, the first replay 2).
	ReplayAttempt = "rf.replay.attempt"
	// Origin marks a DLQ record that was not written by the runtime: "sink-insert" for one the
	// ClickHouse sink wrote.
	Origin = "rf.origin"
	// ValueRef names, as Coordinates, the record a dead letter stands for when the dead letter
	// carries no value (too large for a message): its bytes stay in that source record.
	ValueRef = "rf.value.ref"
	// CompensationOf names, as Coordinates, the ledger's command record that `retailflow
	// compensate` re-sent (same key and value: the same request id); CompensationRun is the run.
	CompensationOf  = "rf.compensation.of"
	CompensationRun = "rf.compensation.run"
)

// Headers of the changelog that time-driven eviction reads (topology/sweep.go). Times are unix
// nanoseconds in decimal, in business (event) time.
const (
	// Expires, on a changelog value, is when the key may be evicted if no later event changes
	// it (absent: not by time): a restore indexes it without decoding the value.
	Expires = "rf.expires"
	// StreamTime, on every changelog record, is its partition's stream time when the record was
	// written (the highest event time of its committed input): a restore resumes from it.
	StreamTime = "rf.stream-time"
	// Evicted, on a tombstone the sweep wrote, says why ("closed", "orphan"); OpenExceptions
	// lists the state's exceptions at eviction ("CODE:ref" separated by spaces), which the
	// ClickHouse sink keeps on the order's deleted row.
	Evicted        = "rf.evicted"
	OpenExceptions = "rf.open-exceptions"
)

// Names used before the rf. convention. Records written with them are still in topics (a DLQ
// keeps a week), so readers accept them (Names); nothing writes them.
const (
	LegacyReplayOf      = "retailflow.replay-of"
	LegacyReplayAttempt = "retailflow.replay-attempt"
	LegacyOrigin        = "retailflow-origin"
)

// Names returns the keys under which the header name may be found on a record: name itself and,
// for a header renamed to the rf. convention, its legacy name.
func Names(name string) []string {
	switch name {
	case ReplayOf:
		return []string{ReplayOf, LegacyReplayOf}
	case ReplayAttempt:
		return []string{ReplayAttempt, LegacyReplayAttempt}
	case Origin:
		return []string{Origin, LegacyOrigin}
	}
	return []string{name}
}

// IsHop reports whether key is one of the runtime's per-hop headers, which describe the hop that
// wrote the record: a re-route, the input a re-routed record stands for, and a replay drop them
// (the next hop writes its own). The history headers (ReplayOf, ReplayAttempt, Origin) are kept.
func IsHop(key string) bool {
	switch key {
	case SourceTopic, SourcePartition, SourceOffset, OutputSeq, ErrorClassKey, ErrorMessage, SchemaID,
		FirstSeen, SourceTimestamp, ValueDropped, DLQEncodeError:
		return true
	}
	return false
}

// IsRetailflow reports whether key is a header retailflow writes (now or under a legacy name).
func IsRetailflow(key string) bool {
	return strings.HasPrefix(key, Prefix) || key == LegacyReplayOf || key == LegacyReplayAttempt || key == LegacyOrigin
}

// Coordinates locate one record: the one format retailflow writes them in, in headers (ReplayOf),
// in the replay log's keys and in messages.
type Coordinates struct {
	Topic     string
	Partition int32
	Offset    int64
}

// String is "topic/partition/offset".
func (c Coordinates) String() string {
	return c.Topic + "/" + strconv.FormatInt(int64(c.Partition), 10) + "/" + strconv.FormatInt(c.Offset, 10)
}

// ParseCoordinates reads what Coordinates.String wrote (topic names may contain '/'; the last two
// fields are the partition and the offset).
func ParseCoordinates(s string) (Coordinates, error) {
	o := strings.LastIndexByte(s, '/')
	if o <= 0 {
		return Coordinates{}, fmt.Errorf("record coordinates %q: want topic/partition/offset", s)
	}
	p := strings.LastIndexByte(s[:o], '/')
	if p <= 0 {
		return Coordinates{}, fmt.Errorf("record coordinates %q: want topic/partition/offset", s)
	}
	part, err1 := strconv.ParseInt(s[p+1:o], 10, 32)
	off, err2 := strconv.ParseInt(s[o+1:], 10, 64)
	if err1 != nil || err2 != nil || part < 0 || off < 0 {
		return Coordinates{}, fmt.Errorf("record coordinates %q: partition and offset must be non-negative integers", s)
	}
	return Coordinates{Topic: s[:p], Partition: int32(part), Offset: off}, nil
}
