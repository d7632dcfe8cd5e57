// Package eostest proves the runtime's exactly-once guarantee on the real broker: generated
// retail traffic, 2–3 `retailflow run` processes that are SIGKILLed at random moments and
// restarted with the same instance id, a scale 1 → 3 → 1, and a verification against the
// independent oracle (the checks of topology/internal/e2e, which the chaos suite shares). Run it
// with
//
//	RETAILFLOW_E2E=1 go test -v -count=1 -run TestEOS ./topology/eostest/            (short, < 2 min)
//	RETAILFLOW_E2E=1 EOS_LONG=1 go test -v -count=1 -timeout 30m -run TestEOS ./topology/eostest/
//
// RETAILFLOW_BIN names a prebuilt binary; otherwise the test builds ./cmd/retailflow.
package eostest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/topology/internal/e2e"
)

type params struct {
	orders     int
	kills      int
	produceFor time.Duration
	partitions int32
}

func TestEOS(t *testing.T) {
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka: run with RETAILFLOW_E2E=1 (make test)")
	}
	p := params{orders: 250, kills: 3, produceFor: 25 * time.Second, partitions: 6}
	if os.Getenv("EOS_LONG") != "" {
		p = params{orders: 3000, kills: 12, produceFor: 150 * time.Second, partitions: 6}
	}
	run(t, p)
}

// counts are what the run did to the group.
type counts struct {
	mu                         sync.Mutex
	kills, rebalances, crashes int
}

func (c *counts) add(kills, rebalances, crashes int) {
	c.mu.Lock()
	c.kills += kills
	c.rebalances += rebalances
	c.crashes += crashes
	c.mu.Unlock()
}

func run(t *testing.T, p params) {
	began := time.Now()
	pl := e2e.NewPipeline(t, "eos", p.partitions)
	stateDir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var rngMu sync.Mutex
	intN := func(n int64) int64 { // the supervisor's restarts draw from it too
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Int64N(n)
	}
	var c counts
	sup := &e2e.Supervisor{
		Bin: pl.Binary("RETAILFLOW_BIN", "", "run"), LogDir: pl.LogDir,
		// each instance id keeps its persistent store across its restarts (a pod's volume);
		// every instance but "0" runs warm standbys (passes killed mid-way included)
		Env: func(s *e2e.Slot) []string {
			env := append(pl.Env(s.ID), "RETAILFLOW_STATE_MODE=pebble",
				"RETAILFLOW_STATE_DIR="+filepath.Join(stateDir, "state-"+s.ID))
			if s.ID != "0" {
				env = append(env, "RETAILFLOW_STATE_STANDBY=all", "RETAILFLOW_STATE_STANDBY_INTERVAL=1s")
			}
			return env
		},
		RestartDelay: func() time.Duration { return time.Duration(300+intN(1200)) * time.Millisecond },
		Errorf:       t.Errorf,
		OnStart:      func(*e2e.Slot) { c.add(0, 1, 0) },
		OnExit: func(s *e2e.Slot, e e2e.Exit) {
			c.add(0, 1, 0) // the member left (killed or crashed)
			if e.Err != nil && e.Signal != syscall.SIGKILL {
				c.add(0, 0, 1)
				t.Logf("instance %s exited by itself (%v); restarting it as a supervisor would (log %s)", s.ID, e.Err, e.Log)
			}
		},
	}
	defer sup.KillAll()
	stop := func(s *e2e.Slot) {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		c.add(0, 1, 0)
	}

	tr, err := generate.Generate(generate.Options{
		Seed: uint64(time.Now().UnixNano()), Orders: p.orders,
		DuplicateRate: 0.05, OutOfOrderRate: 0.2, LateRate: 0.05, MalformedRate: 0.03,
		Faults: generate.Faults{WithheldAccrual: 0.05, WrongMultiplier: 0.05, WithheldReversal: 0.05,
			ShortReversal: 0.05, WithheldRefund: 0.05, MissingInvoice: 0.05},
	})
	if err != nil {
		t.Fatal(err)
	}

	first := sup.Start("run", "0")
	prod := pl.NewProducer()
	producing := make(chan error, 1)
	go func() { producing <- prod.Produce(tr.Records, p.produceFor/time.Duration(len(tr.Records)+1)) }()

	// scale 1 → 3 once the first instance has worked a little, then kill at random moments
	time.Sleep(p.produceFor / 6)
	sup.Start("run", "1")
	sup.Start("run", "2")
	gap := p.produceFor * 4 / 5 / time.Duration(p.kills)
	for i := 0; i < p.kills; i++ {
		time.Sleep(gap/2 + time.Duration(intN(int64(gap))))
		ps := sup.Running("run", "0", "1", "2")
		if ps[intN(int64(len(ps)))].Kill() {
			c.add(1, 0, 0)
		}
	}
	if err := <-producing; err != nil {
		t.Fatal(err)
	}
	// scale 3 → 1 with SIGTERM, then let the survivor catch up alone
	stop(sup.Slot("run", "1"))
	stop(sup.Slot("run", "2"))
	if err := pl.WaitProcessed(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
	stop(first)

	var v e2e.Verdict
	// every process has stopped cleanly: nothing may be open, so no waiting for a timeout
	if err := pl.WaitNoOpenTransactions(0); err != nil {
		v.Problem("%v", err)
	}
	out, err := pl.ReadOutputs(false)
	if err != nil {
		t.Fatal(err)
	}
	sent, bySource := prod.SentSoFar()
	pl.Check(&v, tr.Records, tr.Expected(time.Now()), sent, bySource, out)

	c.mu.Lock()
	line := fmt.Sprintf("eos: events=%d kills=%d rebalances=%d lost=%d duplicated=%d state_mismatches=%d evicted=%d",
		len(tr.Records), c.kills, c.rebalances, v.Lost, v.Duplicated, v.StateMismatch, v.Evicted)
	crashes := c.crashes
	c.mu.Unlock()
	t.Logf("took %s; %d self-exits; logs in %s", time.Since(began).Round(time.Second), crashes, pl.LogDir)
	for _, problem := range v.Problems {
		t.Error(problem)
	}
	if !v.OK() {
		t.Error(line)
	}
	fmt.Println(line)
}
