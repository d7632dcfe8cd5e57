package topology

import (
	"testing"

	"github.com/retailflow/retailflow/schemas/headers"
)

// TestRunnerHeadersAreHops: every header the runner writes for one hop (source coordinates,
// output sequence, the dead-letter reason) is a hop header of schemas/headers, so a re-route or
// a replay strips it instead of carrying a stale copy forward.
func TestRunnerHeadersAreHops(t *testing.T) {
	for _, h := range []string{headers.SourceTopic, headers.SourcePartition, headers.SourceOffset, headers.OutputSeq,
		headers.ErrorClassKey, headers.ErrorMessage, headers.SchemaID, headers.FirstSeen, headers.SourceTimestamp,
		headers.ValueDropped, headers.DLQEncodeError} {
		if !headers.IsHop(h) {
			t.Errorf("%s is not a hop header of schemas/headers", h)
		}
	}
}
