//go:build !chaoshooks

package main

import "github.com/twmb/franz-go/pkg/kgo"

// chaosClientOpts is empty in a normal build: fault injection exists only in binaries built with
// -tags chaoshooks (see chaos_hooks.go), so production never carries a self-kill switch.
func chaosClientOpts() []kgo.Opt { return nil }
