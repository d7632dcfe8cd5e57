package schemas

import (
	"crypto/sha256"
	"encoding/hex"
)

// CommandRequestID is the contract for loyalty-command request ids: deterministic in the order,
// the event that caused the command and the command type, so replaying history (after a crash,
// a rebalance or a DLQ replay) re-emits the same ids and the loyalty platform can deduplicate.
// It is the first 32 hex digits of SHA-256("order_id|causing_event_id|command_type").
func CommandRequestID(orderID, causingEventID string, commandType EventType) string {
	h := sha256.Sum256([]byte(orderID + "|" + causingEventID + "|" + string(commandType)))
	return hex.EncodeToString(h[:16])
}
