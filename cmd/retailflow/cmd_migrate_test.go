package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMigrateToleranceHasOneSource: the views' tolerance is policy.amount_tolerance, the key the
// ledger reads; --amount-tolerance is refused when it disagrees, naming both, and a bad
// configured value is refused with its key before anything connects.
func TestMigrateToleranceHasOneSource(t *testing.T) {
	noCH := []string{"--clickhouse", "127.0.0.1:1"}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"flag disagrees with the default", nil, append([]string{"migrate", "--amount-tolerance", "0.01"}, noCH...), 2,
			[]string{"--amount-tolerance 0.01", "policy.amount_tolerance 0.005"}},
		{"flag disagrees with the configured key", map[string]string{"RETAILFLOW_POLICY_AMOUNT_TOLERANCE": "0.02"},
			append([]string{"migrate", "--amount-tolerance", "0.005"}, noCH...), 2, []string{"0.005", "policy.amount_tolerance 0.02"}},
		// equal: accepted, so migrate goes on to connect (and fails on the unreachable server)
		{"flag equal to the configured key", map[string]string{"RETAILFLOW_POLICY_AMOUNT_TOLERANCE": "0.01"},
			append([]string{"migrate", "--amount-tolerance", "0.010"}, noCH...), 1, []string{"127.0.0.1:1"}},
		{"configured key not a decimal", map[string]string{"RETAILFLOW_POLICY_AMOUNT_TOLERANCE": "half a cent"},
			append([]string{"migrate"}, noCH...), 1, []string{"policy.amount_tolerance", "half a cent"}},
		{"configured key negative", map[string]string{"RETAILFLOW_POLICY_AMOUNT_TOLERANCE": "-0.005"},
			append([]string{"migrate"}, noCH...), 1, []string{"policy.amount_tolerance"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("RETAILFLOW_CLICKHOUSE_DIAL_TIMEOUT", "2s")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, stderr, code := runEdge(ctx, "", c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not name %q", stderr, w)
				}
			}
		})
	}
}
