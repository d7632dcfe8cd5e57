//go:build !chaoshooks

package main

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/topology"
)

// chaosClientOpts is empty in a normal build: fault injection exists only in binaries built with
// -tags chaoshooks (see chaos_hooks.go), so production never carries a self-kill switch.
func chaosClientOpts() []kgo.Opt { return nil }

// chaosStoreHook is nil in a normal build (see chaos_hooks.go).
func chaosStoreHook() func(topology.FlushStep) { return nil }
