package ops_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/retailflow/retailflow/connectors/ops"
)

// /readyz names the state a component declared (ops.Reason, Readiness) but never echoes the
// text of an internal error: a driver's message can carry host names, user names, SQL or a
// record's values, and the endpoint is reachable by whoever can reach the pod.
func TestReadyzDoesNotEchoInternalErrors(t *testing.T) {
	internal := errors.New(`code: 516, message: default: Authentication failed: password is incorrect for user rf_sink at 10.4.2.7:9440, member M-4711`)
	for name, tc := range map[string]struct {
		check ops.Check
		want  string
	}{
		"raw error":         {func(context.Context) error { return internal }, "not ready: a readiness check failed (the process log has the detail)"},
		"wrapped raw error": {func(context.Context) error { return fmt.Errorf("ping: %w", internal) }, "a readiness check failed"},
		"processor fatal": {ops.ProcessorCheck(func() (bool, []int32, error) { return true, nil, internal }),
			"not ready: stopped after a fatal error (the process log has it)"},
		"declared reason": {ops.ProcessorCheck(func() (bool, []int32, error) { return true, []int32{2}, nil }), "not ready: restoring state of partitions [2]"},
		"timeout":         {func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, "not ready: readiness check timed out"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(ops.NewServer("unused:0", prometheus.NewRegistry(), tc.check).Handler())
			defer srv.Close()
			code, body := get(t, srv.URL+"/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, tc.want) {
				t.Errorf("/readyz = %d %q, want 503 with %q", code, body, tc.want)
			}
			for _, leak := range []string{"password", "rf_sink", "10.4.2.7", "M-4711", "516"} {
				if strings.Contains(body, leak) {
					t.Errorf("/readyz body %q contains %q", body, leak)
				}
			}
		})
	}
}
