package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "1d": 24 * time.Hour, "2160h": 2160 * time.Hour, "30m": 30 * time.Minute} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("parseAge(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "ninety days", "90", "1.5d"} {
		if _, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) accepted", in)
		}
	}
}

// `dlq purge` refuses a bad age as a usage error (exit 2), and on a migrated database lists
// its months; with --dry-run it drops nothing.
func TestDLQPurgeCommand(t *testing.T) {
	if _, stderr, code := runCLI(t, "", "dlq", "purge", "--older-than", "soon"); code != 2 || !strings.Contains(stderr, `--older-than "soon"`) {
		t.Errorf("bad age: exit %d %q, want 2 naming the flag", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "dlq", "purge"); code == 0 || !strings.Contains(stderr, "older-than") {
		t.Errorf("no age: exit %d %q, want an error naming --older-than", code, stderr)
	}
	needServices(t)
	cfg := testConfig(t, 1)
	if out, stderr, code := runCLI(t, "", "migrate", "--config", cfg); code != 0 {
		t.Fatalf("migrate: %s %s", out, stderr)
	}
	out, stderr, code := runCLI(t, "", "dlq", "purge", "--config", cfg, "--older-than", "90d", "--dry-run")
	if code != 0 || !strings.Contains(out, "cutoff ") || !strings.Contains(out, "0 month(s) of dead letters") {
		t.Fatalf("dlq purge --dry-run: exit %d %q %q", code, out, stderr)
	}
}
