// Package eostest proves the runtime's exactly-once guarantee on the real broker: generated
// retail traffic, 2–3 `retailflow run` processes that are SIGKILLed at random moments and
// restarted with the same instance id, a scale 1 → 3 → 1, and a verification against the
// independent oracle. Run it with
//
//	RETAILFLOW_E2E=1 go test -v -count=1 -run TestEOS ./topology/eostest/            (short, < 2 min)
//	RETAILFLOW_E2E=1 EOS_LONG=1 go test -v -count=1 -timeout 30m -run TestEOS ./topology/eostest/
//
// RETAILFLOW_BIN names a prebuilt binary; otherwise the test builds ./cmd/retailflow.
package eostest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/oracle"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
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
	h := newHarness(t, p)
	h.run()
}

type harness struct {
	t      *testing.T
	p      params
	ctx    context.Context
	bin    string
	dir    string
	suffix string
	names  map[schemas.Topic]string
	group  string
	conn   kafka.Conn
	serde  *schemas.Serde
	rng    *rand.Rand

	mu         sync.Mutex
	slots      map[string]*slot
	kills      int
	rebalances int
	crashes    int
}

func newHarness(t *testing.T, p params) *harness {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + strconv.Itoa(rand.IntN(1000))
	names := map[schemas.Topic]string{}
	for _, tp := range append(append([]schemas.Topic{}, schemas.InputTopics...), schemas.TopicCommands, schemas.TopicChangelog, schemas.TopicDLQ) {
		names[tp] = "eos-" + suffix + "." + string(tp)
	}
	h := &harness{
		t: t, p: p, ctx: ctx, dir: logDir(t), suffix: suffix, names: names, group: "eos-" + suffix,
		conn:  kafka.Conn{Brokers: testBrokers(), Timeout: 10 * time.Second},
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		slots: map[string]*slot{},
	}
	if err := kafka.Ping(ctx, h.conn); err != nil {
		t.Fatalf("Kafka is not running (infra/local.sh up): %v", err)
	}
	var err error
	if h.serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(names)); err != nil {
		t.Fatal(err)
	}
	h.bin = os.Getenv("RETAILFLOW_BIN")
	if h.bin == "" {
		h.bin = filepath.Join(h.dir, "retailflow")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		build := exec.Command("go", "build", "-o", h.bin, "./cmd/retailflow")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command(h.bin, "run", "--help").CombinedOutput(); err != nil {
		t.Fatalf("%s has no run command (is newRunCmd wired into main.go's subcommands?): %v\n%s", h.bin, err, out)
	}
	var specs []kafka.TopicSpec
	for tp, name := range names {
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: p.partitions, ReplicationFactor: 1,
			Compacted: tp == schemas.TopicChangelog, CoPartitioned: true})
	}
	if _, err := kafka.EnsureTopics(ctx, h.conn, specs); err != nil {
		t.Fatal(err)
	}
	return h
}

// env configures a child process through RETAILFLOW_* variables.
func (h *harness) env(instance string) []string {
	env := append(os.Environ(),
		"RETAILFLOW_TOPICS_ORDERS="+h.names[schemas.TopicOrders],
		"RETAILFLOW_TOPICS_SHIPMENTS="+h.names[schemas.TopicShipments],
		"RETAILFLOW_TOPICS_RETURNS="+h.names[schemas.TopicReturns],
		"RETAILFLOW_TOPICS_LOYALTY="+h.names[schemas.TopicLoyalty],
		"RETAILFLOW_TOPICS_ERP="+h.names[schemas.TopicERP],
		"RETAILFLOW_TOPICS_COMMANDS="+h.names[schemas.TopicCommands],
		"RETAILFLOW_TOPICS_CHANGELOG="+h.names[schemas.TopicChangelog],
		"RETAILFLOW_TOPICS_DLQ="+h.names[schemas.TopicDLQ],
		"RETAILFLOW_TOPICS_PARTITIONS="+strconv.Itoa(int(h.p.partitions)),
		"RETAILFLOW_RUNTIME_GROUP="+h.group,
		"RETAILFLOW_RUNTIME_INSTANCE_ID="+instance,
		// the broker's minimum: a SIGKILLed member's partitions move after 6 s
		"RETAILFLOW_RUNTIME_SESSION_TIMEOUT=6s",
		"RETAILFLOW_RUNTIME_REBALANCE_TIMEOUT=20s",
		"RETAILFLOW_LOG_FORMAT=text",
		"RETAILFLOW_LOG_LEVEL=info",
		"RETAILFLOW_HTTP_ADDR=",
		// each instance id keeps its persistent store across its restarts (a pod's volume)
		"RETAILFLOW_STATE_MODE=pebble",
		"RETAILFLOW_STATE_DIR="+filepath.Join(h.dir, "state-"+instance),
	)
	return env
}

// slot is one instance id, kept running by a supervisor until it is stopped on purpose.
type slot struct {
	id      string
	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	starts  int
	done    chan struct{}
	exitErr error     // of the last purposeful stop
	killed  *exec.Cmd // the process the harness last SIGKILLed
	started time.Time // when the current process started
}

func (h *harness) startSlot(id string) *slot {
	s := &slot{id: id, done: make(chan struct{})}
	h.mu.Lock()
	h.slots[id] = s
	h.mu.Unlock()
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			s.starts++
			logf, err := os.Create(filepath.Join(h.dir, fmt.Sprintf("instance-%s-%d.log", id, s.starts)))
			if err != nil {
				s.mu.Unlock()
				h.t.Error(err)
				return
			}
			cmd := exec.Command(h.bin, "run")
			cmd.Env = h.env(id)
			cmd.Stdout, cmd.Stderr = logf, logf
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				s.mu.Unlock()
				h.t.Error(err)
				return
			}
			s.cmd, s.started = cmd, time.Now()
			s.mu.Unlock()
			h.countRebalance()
			err = cmd.Wait()
			logf.Close()
			s.mu.Lock()
			stopped := s.stopped
			if stopped {
				s.exitErr = err
			}
			s.mu.Unlock()
			if stopped {
				return
			}
			h.countRebalance() // the member left (killed or crashed)
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				h.mu.Lock()
				h.crashes++
				h.mu.Unlock()
				h.t.Logf("instance %s exited by itself (%v); restarting it as a supervisor would (log %s)", id, err, logf.Name())
			}
			time.Sleep(time.Duration(300+h.rng.IntN(1200)) * time.Millisecond)
		}
	}()
	return s
}

func (h *harness) countRebalance() {
	h.mu.Lock()
	h.rebalances++
	h.mu.Unlock()
}

// kill SIGKILLs the slot's current process; the supervisor restarts it with the same id.
func (h *harness) kill(s *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil || s.stopped {
		return
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL); err == nil {
		s.killed = s.cmd
		h.mu.Lock()
		h.kills++
		h.mu.Unlock()
	}
}

// stop SIGTERMs the slot's process and expects a clean exit (status 0) within 30 s.
func (h *harness) stop(s *slot) {
	// A stop right after a random kill must test the graceful exit of the restarted process,
	// not report the SIGKILL it raced with: wait for the supervisor's restart first.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		// restarted, and up long enough to have installed its SIGTERM handler
		restarted := (s.killed == nil || s.cmd != s.killed) && time.Since(s.started) > 2*time.Second
		s.mu.Unlock()
		if restarted {
			break
		}
	}
	s.mu.Lock()
	s.stopped = true
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		h.t.Errorf("instance %s did not stop within 40s of SIGTERM", s.id)
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	h.countRebalance()
	if s.exitErr != nil {
		h.t.Errorf("instance %s exited with %v after SIGTERM, want status 0", s.id, s.exitErr)
	}
}

func (h *harness) run() {
	t := h.t
	began := time.Now()
	tr, err := generate.Generate(generate.Options{
		Seed: uint64(time.Now().UnixNano()), Orders: h.p.orders,
		DuplicateRate: 0.05, OutOfOrderRate: 0.2, LateRate: 0.05, MalformedRate: 0.03,
		Faults: generate.Faults{WithheldAccrual: 0.05, WrongMultiplier: 0.05, WithheldReversal: 0.05,
			ShortReversal: 0.05, WithheldRefund: 0.05, MissingInvoice: 0.05},
	})
	if err != nil {
		t.Fatal(err)
	}

	first := h.startSlot("0")
	producing := make(chan error, 1)
	go func() { producing <- h.produce(tr) }()

	// scale 1 → 3 once the first instance has worked a little, then kill at random moments
	time.Sleep(h.p.produceFor / 6)
	h.startSlot("1")
	h.startSlot("2")
	ids := []string{"0", "1", "2"}
	gap := h.p.produceFor * 4 / 5 / time.Duration(h.p.kills)
	for i := 0; i < h.p.kills; i++ {
		time.Sleep(gap/2 + time.Duration(h.rng.Int64N(int64(gap))))
		h.mu.Lock()
		s := h.slots[ids[h.rng.IntN(len(ids))]]
		h.mu.Unlock()
		h.kill(s)
	}
	if err := <-producing; err != nil {
		t.Fatal(err)
	}
	// scale 3 → 1 with SIGTERM, then let the survivor catch up alone
	h.mu.Lock()
	s1, s2 := h.slots["1"], h.slots["2"]
	h.mu.Unlock()
	h.stop(s1)
	h.stop(s2)
	h.waitCaughtUp(3 * time.Minute)
	h.stop(first)

	lost, dup, mism := h.verify(tr)
	h.mu.Lock()
	line := fmt.Sprintf("eos: events=%d kills=%d rebalances=%d lost=%d duplicated=%d state_mismatches=%d",
		len(tr.Records), h.kills, h.rebalances, lost, dup, mism)
	crashes := h.crashes
	h.mu.Unlock()
	t.Logf("took %s; %d self-exits; logs in %s", time.Since(began).Round(time.Second), crashes, h.dir)
	if lost != 0 || dup != 0 || mism != 0 {
		t.Error(line)
	}
	fmt.Println(line)
}

// produce sends the traffic in delivery order, paced over produceFor.
func (h *harness) produce(tr *generate.Traffic) error {
	cl, err := kgo.NewClient(append(h.conn.Options(), kgo.MaxBufferedRecords(10000))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var firstErr error
	per := h.p.produceFor / time.Duration(len(tr.Records)+1)
	start := time.Now()
	for i, r := range tr.Records {
		value := r.Raw
		if r.Event != nil {
			if value, err = h.serde.EncodeEvent(r.Topic, r.Event); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		if wait := time.Until(start.Add(per * time.Duration(i))); wait > 0 {
			time.Sleep(wait)
		}
		cl.Produce(h.ctx, &kgo.Record{Topic: h.names[r.Topic], Key: []byte(r.Key), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(h.ctx); err != nil {
		return err
	}
	return firstErr
}

// waitCaughtUp waits until the group's committed offsets reach the end of every input partition.
func (h *harness) waitCaughtUp(limit time.Duration) {
	cl, err := kgo.NewClient(h.conn.Options()...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var inputs []string
	for _, tp := range schemas.InputTopics {
		inputs = append(inputs, h.names[tp])
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ends, err1 := adm.ListEndOffsets(h.ctx, inputs...)
		committed, err2 := adm.FetchOffsets(h.ctx, h.group)
		if err1 == nil && err2 == nil {
			behind := 0
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if !ok || c.At < o.Offset {
					behind++
				}
			})
			if behind == 0 {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	h.t.Fatalf("the group did not catch up within %s", limit)
}

// record is an output read back with its source coordinates.
type record struct {
	key, value []byte
	headers    map[string]string
	partition  int32
}

// readAll reads a topic read_committed to its end, every partition (kafka.ReadToEnd: the run has
// stopped, so LSO = HWM; an open transaction fails the read after a minute).
func (h *harness) readAll(topic string) []record {
	var out []record
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	err := kafka.ReadToEnd(ctx, h.conn, topic, kafka.ReadOptions{Until: kafka.EndQuiescent}, func(r *kgo.Record) error {
		hs := map[string]string{}
		for _, x := range r.Headers {
			hs[x.Key] = string(x.Value)
		}
		out = append(out, record{key: r.Key, value: r.Value, headers: hs, partition: r.Partition})
		return nil
	})
	if err != nil {
		h.t.Fatalf("reading %s: %v", topic, err)
	}
	return out
}

func (h *harness) verify(tr *generate.Traffic) (lost, dup, mism int) {
	t := h.t
	ex := tr.Expected(time.Now())

	// 1. Loyalty commands: every oracle request id once, from distinct sources; besides them only
	// corrections for late events (causing id "<late>/<corrected>", DESIGN.md invariant 13); per
	// point-moving event (order, reason, source ref) exactly the oracle's share.
	got := map[string]int{}
	perOrder := map[string][3]int64{} // accrual, reversal, refund points
	sources := map[string]int{}
	type shareKey struct{ order, reason, ref string }
	shares, wantShares := map[shareKey][2]int64{}, map[shareKey][2]int64{}
	addShare := func(m map[shareKey][2]int64, order, reason, ref string, typ schemas.EventType, points int64) {
		k := shareKey{order, reason, ref}
		sh := m[k]
		switch typ {
		case schemas.TypeAccrualRequested:
			sh[0] += points
		case schemas.TypeReversalRequested:
			sh[0] -= points
		case schemas.TypeRedemptionRefundRequested:
			sh[1] += points
		}
		m[k] = sh
	}
	for _, c := range ex.Commands {
		addShare(wantShares, c.OrderID, c.Reason, c.SourceRefID, c.Type, c.Points)
	}
	corrections := map[string]bool{}
	for _, r := range h.readAll(h.names[schemas.TopicCommands]) {
		e, err := h.serde.DecodeEvent(h.ctx, schemas.RecordRef{Topic: schemas.TopicCommands, Partition: r.partition}, r.value)
		if err != nil || e.LoyaltyCommand == nil {
			t.Errorf("command does not decode: %v", err)
			continue
		}
		c := e.LoyaltyCommand
		got[c.RequestID]++
		sources[r.headers[headers.SourceTopic]+"/"+r.headers[headers.SourcePartition]+"@"+r.headers[headers.SourceOffset]+"#"+r.headers[headers.OutputSeq]]++
		if got[c.RequestID] > 1 {
			continue
		}
		s := perOrder[c.OrderID]
		switch c.CommandType {
		case schemas.TypeAccrualRequested:
			s[0] += c.Points
		case schemas.TypeReversalRequested:
			s[1] += c.Points
		case schemas.TypeRedemptionRefundRequested:
			s[2] += c.Points
		}
		perOrder[c.OrderID] = s
		addShare(shares, c.OrderID, c.Reason, c.SourceRefID, c.CommandType, c.Points)
		if strings.Contains(c.CausingEventID, "/") {
			corrections[c.RequestID] = true
		}
	}
	shareMismatch := 0
	for k, sh := range wantShares {
		if shares[k] != sh {
			shareMismatch++
			if shareMismatch <= 5 {
				t.Errorf("order %s %s %s: share (points, refund) %v in commands, oracle %v", k.order, k.reason, k.ref, shares[k], sh)
			}
		}
	}
	for k, sh := range shares {
		if _, ok := wantShares[k]; !ok && sh != ([2]int64{}) {
			shareMismatch++
			t.Errorf("order %s %s %s: share %v in commands, none in the oracle", k.order, k.reason, k.ref, sh)
		}
	}
	for id := range ex.Commands {
		if got[id] == 0 {
			lost++
			if lost <= 5 {
				c := ex.Commands[id]
				t.Errorf("missing command %s (%s, order %s, cause %s)", id, c.Type, c.OrderID, c.CausingEventID)
			}
		}
	}
	unexpected := 0
	for id, n := range got {
		if n > 1 {
			dup += n - 1
		}
		if _, ok := ex.Commands[id]; !ok && !corrections[id] {
			unexpected++
			if unexpected <= 5 {
				t.Errorf("command %s is not in the oracle's set", id)
			}
		}
	}
	for src, n := range sources {
		if n > 1 {
			dup += n - 1
			t.Errorf("source %s produced %d outputs with one sequence number", src, n)
		}
	}
	netMismatch := 0
	for id, o := range ex.Orders {
		s := perOrder[id]
		if s[0]-s[1] != o.RequestedNet() || s[2] != o.RefundRequested {
			netMismatch++
			if netMismatch <= 5 {
				t.Errorf("order %s: net points %d refunds %d, oracle %d and %d", id, s[0]-s[1], s[2], o.RequestedNet(), o.RefundRequested)
			}
		}
	}
	if unexpected > 0 || netMismatch > 0 || shareMismatch > 0 {
		t.Errorf("%d unexpected commands, %d orders with wrong net points, %d events with a wrong share", unexpected, netMismatch, shareMismatch)
	}

	// 2. Dead letters: the generator's malformed records, each once, with its class.
	wantDLQ := map[string]int{}
	for _, d := range tr.DeadLetters() {
		wantDLQ[string(d.Class)]++
	}
	gotDLQ := map[string]int{}
	dlqSources := map[string]int{}
	for _, r := range h.readAll(h.names[schemas.TopicDLQ]) {
		gotDLQ[r.headers[headers.ErrorClassKey]]++
		dlqSources[r.headers[headers.SourceTopic]+"/"+r.headers[headers.SourcePartition]+"@"+r.headers[headers.SourceOffset]]++
	}
	for src, n := range dlqSources {
		if n > 1 {
			dup += n - 1
			t.Errorf("DLQ holds source %s %d times", src, n)
		}
	}
	for class, n := range wantDLQ {
		if gotDLQ[class] < n {
			lost += n - gotDLQ[class]
			t.Errorf("DLQ class %s: %d records, want %d", class, gotDLQ[class], n)
		}
	}
	for class, n := range gotDLQ {
		if n > wantDLQ[class] {
			t.Errorf("DLQ class %s: %d records, want %d (unexpected dead letters)", class, n, wantDLQ[class])
		}
	}

	// 3. No open transaction: LSO = HWM on every output partition; none of our ids Ongoing.
	h.checkNoOpenTransactions()

	// 4. A fresh restore from the changelog alone equals the oracle's state.
	states := map[string][]byte{}
	err := kafka.RestoreChangelog(h.ctx, h.conn, h.names[schemas.TopicChangelog], h.partitions(),
		func(_ int32, k, v []byte) {
			if v == nil {
				delete(states, string(k))
			} else {
				states[string(k)] = append([]byte(nil), v...)
			}
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// the runtime keys state by record key; the oracle groups by order (a reservation that never
	// became an order travels under "checkout:<id>")
	recordKey := map[string]string{}
	for _, r := range tr.Records {
		if r.Event != nil {
			recordKey[oracle.OrderKey(r.Event)] = r.Key
		}
	}
	for id, o := range ex.Orders {
		key := id
		if k, ok := recordKey[id]; ok {
			key = k
		}
		raw, ok := states[key]
		if !ok {
			mism++
			if mism <= 5 {
				var some []string
				for k := range states {
					if _, ok := ex.Orders[k]; !ok && len(some) < 5 {
						some = append(some, k)
					}
				}
				t.Errorf("order %s has no state in the changelog (changelog keys the oracle lacks: %v)", id, some)
			}
			continue
		}
		st, err := ledgerstate.Decode(h.ctx, h.serde, schemas.RecordRef{Topic: schemas.TopicChangelog}, raw)
		if err != nil {
			mism++
			t.Errorf("order %s: state does not decode: %v", id, err)
			continue
		}
		// The oracle's request ids, and besides them only corrections and the commands they
		// correct (DESIGN.md invariant 13; the shares are held exact above).
		oracleIDs, corrected := map[string]bool{}, map[string]bool{}
		for _, id := range o.Commands {
			oracleIDs[id] = true
		}
		for _, c := range st.Commands {
			corrected[c.AttributedTo] = c.AttributedTo != ""
		}
		var reqIDs []string
		for _, c := range st.Commands {
			if oracleIDs[c.RequestID] || c.AttributedTo == "" && !corrected[c.CausingEventID] {
				reqIDs = append(reqIDs, c.RequestID)
			}
		}
		want := append([]string(nil), o.Commands...)
		sort.Strings(reqIDs)
		sort.Strings(want)
		pts := st.Points
		if pts.Entitled != o.EntitledPoints || pts.AccrualRequested-pts.ReversalRequested != o.RequestedNet() ||
			pts.RefundRequested != o.RefundRequested || strings.Join(reqIDs, ",") != strings.Join(want, ",") {
			mism++
			if mism <= 5 {
				t.Errorf("order %s: restored P=%d requested=%d refunds=%d commands=%d; oracle P=%d requested=%d refunds=%d commands=%d",
					id, pts.Entitled, pts.AccrualRequested-pts.ReversalRequested, pts.RefundRequested, len(reqIDs),
					o.EntitledPoints, o.RequestedNet(), o.RefundRequested, len(want))
			}
		}
	}
	return lost, dup, mism
}

func (h *harness) partitions() []int32 {
	var ps []int32
	for p := int32(0); p < h.p.partitions; p++ {
		ps = append(ps, p)
	}
	return ps
}

func (h *harness) checkNoOpenTransactions() {
	cl, err := kgo.NewClient(h.conn.Options()...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := []string{h.names[schemas.TopicCommands], h.names[schemas.TopicChangelog], h.names[schemas.TopicDLQ]}
	hwm, err := adm.ListEndOffsets(h.ctx, topics...)
	if err != nil {
		h.t.Fatal(err)
	}
	lso, err := adm.ListCommittedOffsets(h.ctx, topics...)
	if err != nil {
		h.t.Fatal(err)
	}
	hwm.Each(func(o kadm.ListedOffset) {
		if l, _ := lso.Lookup(o.Topic, o.Partition); l.Offset != o.Offset {
			h.t.Errorf("%s[%d]: LSO %d < HWM %d: a transaction is still open", o.Topic, o.Partition, l.Offset, o.Offset)
		}
	})
	txns, err := adm.ListTransactions(h.ctx, nil, nil)
	if err != nil {
		h.t.Logf("list transactions: %v", err)
		return
	}
	for _, tx := range txns.Sorted() {
		if strings.HasPrefix(tx.TxnID, h.group+"-") && tx.State == "Ongoing" {
			h.t.Errorf("transaction %s is still ongoing", tx.TxnID)
		}
	}
}

// logDir holds the instances' logs: removed after a passing test, kept (and named in the
// failure) after a failing one, so a failure can be read after the fact.
func logDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "retailflow-eos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// testBrokers is the broker the test uses: RETAILFLOW_KAFKA_BROKERS, as for the processes it
// starts, or the local default.
func testBrokers() []string {
	if b := os.Getenv("RETAILFLOW_KAFKA_BROKERS"); b != "" {
		return strings.Split(b, ",")
	}
	return []string{"localhost:9092"}
}
