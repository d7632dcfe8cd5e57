//go:build chaoshooks

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/topology"
)

// ChaosKillEnv names the environment variable that arms the protocol-step kill of a chaoshooks
// build: "<step>:<n>" SIGKILLs the process the n-th time (1-based) the step happens, where step is
//
//	endtxn-written            an EndTxn request (key 26) was written to the broker
//	endtxn-read               an EndTxn response was read (the broker has committed or aborted)
//	txnoffsetcommit-written   a TxnOffsetCommit request (key 28) was written
//	txnoffsetcommit-read      a TxnOffsetCommit response was read
//	store-flush-before        a committed transaction's states and checkpoints are about to be
//	                          written to the persistent store (Kafka has committed; Pebble has not)
//	store-flush-after         Pebble's Commit(NoSync) of that batch returned (its WAL record may
//	                          still be in Pebble's buffer, not yet written to the OS)
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
	h := armedChaosKill()
	if h == nil || h.store {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(h)}
}

// chaosStoreHook returns the persistent store's flush hook that kills the process at a
// store-flush step, as RETAILFLOW_CHAOS_KILL_AT asks; nil for any other step.
func chaosStoreHook() func(topology.FlushStep) {
	h := armedChaosKill()
	if h == nil || !h.store {
		return nil
	}
	return func(s topology.FlushStep) {
		if s == h.flush {
			h.step()
		}
	}
}

var (
	armedOnce sync.Once
	armed     *chaosKill
)

// armedChaosKill parses RETAILFLOW_CHAOS_KILL_AT once (nil when unset) and reports the armed
// step on stderr.
func armedChaosKill() *chaosKill {
	armedOnce.Do(func() {
		spec := os.Getenv(ChaosKillEnv)
		if spec == "" {
			return
		}
		h, err := parseChaosKill(spec)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s=%q: %v\n", ChaosKillEnv, spec, err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "chaoshooks: armed %s\n", spec)
		armed = h
	})
	return armed
}

// chaosKill counts one protocol step and SIGKILLs the process when the count reaches at.
type chaosKill struct {
	spec  string
	key   int16
	write bool // on the request written (true) or the response read (false)
	store bool // a store-flush step (flush) rather than a protocol step (key, write)
	flush topology.FlushStep
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
	case "store-flush-before":
		h.store, h.flush = true, topology.FlushBeforeCommit
	case "store-flush-after":
		h.store, h.flush = true, topology.FlushAfterCommit
	default:
		return nil, fmt.Errorf("unknown step %q (endtxn-written, endtxn-read, txnoffsetcommit-written, txnoffsetcommit-read, store-flush-before, store-flush-after)", step)
	}
	return h, nil
}

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (h *chaosKill) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if !h.store && h.write && key == h.key && err == nil {
		h.step()
	}
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (h *chaosKill) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if !h.store && !h.write && key == h.key && err == nil {
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
