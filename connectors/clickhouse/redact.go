package clickhouse

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// DeadLetterValues says what the dead_letters table keeps of a rejected record's value. The
// DLQ topic always keeps the full value (replay needs it); the table is read by more people
// and kept longer, and the value holds personal data (customer and member ids, postcodes).
type DeadLetterValues string

const (
	// DeadLetterRedacted (the default) stores "<redacted N bytes sha256:…>": enough to tell
	// two values apart and to match the DLQ topic's copy, nothing of the content.
	DeadLetterRedacted DeadLetterValues = "redacted"
	// DeadLetterFull stores the value as it was: an explicit choice (sink.dead_letter_values).
	DeadLetterFull DeadLetterValues = "full"
)

// ParseDeadLetterValues accepts "", redacted and full ("" is redacted).
func ParseDeadLetterValues(s string) (DeadLetterValues, error) {
	switch DeadLetterValues(s) {
	case "", DeadLetterRedacted:
		return DeadLetterRedacted, nil
	case DeadLetterFull:
		return DeadLetterFull, nil
	}
	return "", fmt.Errorf("%q is not one of redacted, full", s)
}

// RedactedValue is the redacted form of a dead letter's value; "" stays "" (a tombstone or a
// value the DLQ record dropped).
func RedactedValue(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	sum := sha256.Sum256(v)
	return fmt.Sprintf("<redacted %d bytes sha256:%s>", len(v), hex.EncodeToString(sum[:]))
}

// Apply sets the record_value of dead_letters rows to the form m asks for; other rows are
// left alone. value is the original record's value the rows were built from.
func (m DeadLetterValues) Apply(rows []Row, value []byte) []Row {
	if m == DeadLetterFull {
		return rows
	}
	for _, r := range rows {
		if r.Table == "dead_letters" {
			r.Set("record_value", RedactedValue(value))
		}
	}
	return rows
}
