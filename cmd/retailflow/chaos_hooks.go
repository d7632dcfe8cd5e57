//go:build chaoshooks

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ChaosKillEnv names the environment variable that arms the protocol-step kill of a chaoshooks
// build: "<step>:<n>" SIGKILLs the process the n-th time (1-based) the step happens, where step is
//
//	endtxn-written            an EndTxn request (key 26) was written to the broker
//	endtxn-read               an EndTxn response was read (the broker has committed or aborted)
//	txnoffsetcommit-written   a TxnOffsetCommit request (key 28) was written
//	txnoffsetcommit-read      a TxnOffsetCommit response was read
//
// Unset or empty: the hooks are installed but never fire.
const ChaosKillEnv = "RETAILFLOW_CHAOS_KILL_AT"

// ChaosKillBanner starts the line written to stderr just before the self-kill, so a harness can
// tell a hook kill from any other death.
const ChaosKillBanner = "chaoshooks: SIGKILL self"

const (
	keyEndTxn          int16 = 26
	keyTxnOffsetCommit int16 = 28
)

// chaosClientOpts returns the hook that kills the process at an exact protocol step, as
// RETAILFLOW_CHAOS_KILL_AT asks. A malformed value is reported on stderr and exits 2 at once:
// a chaos run that silently injects nothing would prove nothing.
func chaosClientOpts() []kgo.Opt {
	spec := os.Getenv(ChaosKillEnv)
	if spec == "" {
		return nil
	}
	h, err := parseChaosKill(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", ChaosKillEnv, spec, err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "chaoshooks: armed %s\n", spec)
	return []kgo.Opt{kgo.WithHooks(h)}
}

// chaosKill counts one protocol step and SIGKILLs the process when the count reaches at.
type chaosKill struct {
	spec  string
	key   int16
	write bool // on the request written (true) or the response read (false)
	at    int64
	seen  atomic.Int64
}

func parseChaosKill(spec string) (*chaosKill, error) {
	step, n, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("want <step>:<n>, e.g. endtxn-written:3")
	}
	at, err := strconv.ParseInt(n, 10, 64)
	if err != nil || at < 1 {
		return nil, fmt.Errorf("count %q must be a positive integer", n)
	}
	h := &chaosKill{spec: spec, at: at}
	switch step {
	case "endtxn-written":
		h.key, h.write = keyEndTxn, true
	case "endtxn-read":
		h.key, h.write = keyEndTxn, false
	case "txnoffsetcommit-written":
		h.key, h.write = keyTxnOffsetCommit, true
	case "txnoffsetcommit-read":
		h.key, h.write = keyTxnOffsetCommit, false
	default:
		return nil, fmt.Errorf("unknown step %q (endtxn-written, endtxn-read, txnoffsetcommit-written, txnoffsetcommit-read)", step)
	}
	return h, nil
}

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (h *chaosKill) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if h.write && key == h.key && err == nil {
		h.step()
	}
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (h *chaosKill) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if !h.write && key == h.key && err == nil {
		h.step()
	}
}

func (h *chaosKill) step() {
	if h.seen.Add(1) != h.at {
		return
	}
	fmt.Fprintf(os.Stderr, "%s at %s\n", ChaosKillBanner, h.spec)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; nothing after the step may run
}
