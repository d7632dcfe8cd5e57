package main

import (
	"strings"
	"testing"
	"time"

	"github.com/retailflow/retailflow/topology"
)

// TestStateConfigErrorsNameTheKey: the state section is checked at load time, each mistake named
// by its key, and a valid pebble section reaches the runner's options.
func TestStateConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad mode", map[string]string{"RETAILFLOW_STATE_MODE": "rocksdb"}, `state.mode: "rocksdb" is not memory or pebble`},
		{"pebble without dir", map[string]string{"RETAILFLOW_STATE_MODE": "pebble"}, "state.dir: is required when state.mode is pebble"},
		{"tiny cache", map[string]string{"RETAILFLOW_STATE_MODE": "pebble", "RETAILFLOW_STATE_DIR": "/x", "RETAILFLOW_STATE_CACHE_BYTES": "1000"}, "state.cache_bytes"},
		{"huge memtable", map[string]string{"RETAILFLOW_STATE_MODE": "pebble", "RETAILFLOW_STATE_DIR": "/x", "RETAILFLOW_STATE_MEMTABLE_BYTES": "4294967296"}, "state.memtable_bytes"},
		{"no commit timeout", map[string]string{"RETAILFLOW_STATE_MODE": "pebble", "RETAILFLOW_STATE_DIR": "/x", "RETAILFLOW_STATE_COMMIT_TIMEOUT": "10ms"}, "state.commit_timeout: must be between 1s and 10m"},
		{"sweep too often", map[string]string{"RETAILFLOW_STATE_SWEEP_INTERVAL": "1ms"}, "state.sweep_interval: must be between 10ms and 1h"},
		{"lateness negative", map[string]string{"RETAILFLOW_STATE_ALLOWED_LATENESS": "-1h"}, "state.allowed_lateness: must be between 0 and 8784h"},
		{"standby of what", map[string]string{"RETAILFLOW_STATE_STANDBY": "some"}, `state.standby: "some" is not none or all`},
		{"standby in memory", map[string]string{"RETAILFLOW_STATE_STANDBY": "all"}, "state.standby: all needs state.mode pebble"},
		{"standby too often", map[string]string{"RETAILFLOW_STATE_MODE": "pebble", "RETAILFLOW_STATE_DIR": "/x", "RETAILFLOW_STATE_STANDBY": "all", "RETAILFLOW_STATE_STANDBY_INTERVAL": "1ms"}, "state.standby_interval: must be between 100ms and 1h"},
		{"negative value cache", map[string]string{"RETAILFLOW_STATE_MODE": "pebble", "RETAILFLOW_STATE_DIR": "/x", "RETAILFLOW_STATE_VALUE_CACHE_BYTES": "-1"}, "state.value_cache_bytes: must be between 0 (off) and 16 GiB"},
		{"sweep of nothing", map[string]string{"RETAILFLOW_STATE_SWEEP_MAX_KEYS": "0"}, "state.sweep_max_keys: must be between 1 and 100000"},
		{"layout of what", map[string]string{"RETAILFLOW_STATE_CHANGELOG_LAYOUT": "v4"}, `state.changelog_layout: "v4" is not v3 (the default) or v2`},
		{"layout v2 with a registry", map[string]string{"RETAILFLOW_STATE_CHANGELOG_LAYOUT": "v2", "RETAILFLOW_REGISTRY_URL": "http://registry:8081"}, "state.changelog_layout: v2 is for offline schema ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, stderr, code := runCLI(t, "", "config")
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 naming %q", code, stderr, tc.want)
			}
		})
	}
	t.Setenv("RETAILFLOW_STATE_MODE", "pebble")
	t.Setenv("RETAILFLOW_STATE_DIR", "/var/lib/retailflow/state")
	c, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.RunnerOptions()
	if o.StateDir != "/var/lib/retailflow/state" || o.State.CacheBytes != 64<<20 || o.State.MemtableBytes != 32<<20 || o.State.CommitTimeout != topology.DefaultCommitTimeout {
		t.Errorf("runner options: dir %q, %+v", o.StateDir, o.State)
	}
	if o.SweepInterval != topology.DefaultSweepInterval || o.SweepMaxKeys != topology.DefaultSweepMaxKeys || o.AllowedLateness != 7*24*time.Hour {
		t.Errorf("runner options: sweep every %s, at most %d keys; want the defaults", o.SweepInterval, o.SweepMaxKeys)
	}
	if o.State.ValueCacheBytes != topology.DefaultValueCacheBytes {
		t.Errorf("runner options: value cache %d bytes, want the default", o.State.ValueCacheBytes)
	}
	if o.Standby || o.StandbyInterval != topology.DefaultStandbyInterval {
		t.Errorf("runner options: standby %v every %s; want none by default", o.Standby, o.StandbyInterval)
	}
	t.Setenv("RETAILFLOW_STATE_STANDBY", "all")
	if c, err = LoadConfig("", nil); err != nil || !c.RunnerOptions().Standby {
		t.Errorf("state.standby all: %v (%v), want standbys", c.RunnerOptions().Standby, err)
	}
	t.Setenv("RETAILFLOW_STATE_STANDBY", "none")
	t.Setenv("RETAILFLOW_STATE_MODE", "memory")
	if c, err = LoadConfig("", nil); err != nil || c.RunnerOptions().StateDir != "" {
		t.Errorf("memory mode: dir %q (%v), want none", c.RunnerOptions().StateDir, err)
	}
}
