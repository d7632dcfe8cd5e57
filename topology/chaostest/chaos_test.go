// Package chaostest is the reliability suite (RELIABILITY.md §2, oracles §3.2): a seeded,
// scripted sequence of faults, each injected while generated traffic flows through real
// `retailflow run` processes (a chaoshooks build, so they can SIGKILL themselves at exact
// protocol steps) and one `retailflow sink` into ClickHouse, each followed by every oracle over
// all traffic sent so far. It prints a table with a row per fault and the line
//
//	chaos: faults=N passed=N lost=0 duplicated=0 dlq_unexplained=0
//
// Run it with
//
//	RETAILFLOW_E2E=1 go test -v -count=1 -run TestChaos ./topology/chaostest/    (short: 5 faults, ≈ 1–2 min)
//	RETAILFLOW_E2E=1 RETAILFLOW_CHAOS=1 go test -v -count=1 -timeout 40m -run TestChaos ./topology/chaostest/
//
// The short version never stops Kafka or ClickHouse (other packages' tests share them); the long
// one restarts the broker (SIGTERM and SIGKILL) and stops ClickHouse for CHAOS_CH_OUTAGE (3m).
// Both give the sink its own ClickHouse user (infra/local.sh ch-user), so the server must be the
// one infra/local.sh started under RF_RUN_DIR.
// CHAOS_SEED fixes the seed (printed at the start), CHAOS_FAULTS=a,b runs only the named faults,
// RETAILFLOW_CHAOS_BIN names a prebuilt `go build -tags chaoshooks` binary. The processors keep
// their state in the persistent store (state.mode=pebble, a directory per instance that survives
// its restarts); CHAOS_STATE_MODE=memory runs them in memory (the store faults then fail). Logs of every
// process incarnation stay in the directory printed at the start.
package chaostest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/topology/internal/e2e"
)

type params struct {
	seed       uint64
	long       bool
	partitions int32
	orders     int           // per segment
	rate       float64       // base records per second
	chOutage   time.Duration // ClickHouse stopped for this long (long version only)
	rssLimit   int64         // KiB the sink may use while ClickHouse is away
	faults     []fault
}

// fault is one row of the schedule. inject runs while the segment's traffic is produced and
// returns a note for the table; an error fails the row (the fault could not be injected, or it
// was not observed — a fault that silently did nothing proves nothing).
type fault struct {
	name string
	// short: also in the short version (make chaos-short, make test), which must never stop
	// Kafka or ClickHouse (other packages' tests share them) and needs no chattr/mount;
	// long: only in the long version (make chaos): it stops Kafka or ClickHouse
	short, long bool
	traffic     func(*generate.Options)
	rateX       float64 // multiplier of the base rate (1 when zero)
	ordersX     int     // multiplier of the orders per segment (1 when zero)
	poison      int     // oversized records mixed in
	large       []int   // records of these exact sizes (bytes, not Avro) mixed in
	// prepare, if set, runs before the segment's traffic starts (inject runs while it flows):
	// a protocol-step kill arms its instance here, so that the steps it counts happen in the
	// traffic (armed after it, an instance whose partitions had no records left waited for the
	// next segment's traffic, past the wait)
	prepare func(h *harness, seg *segment) error
	inject  func(h *harness, seg *segment) (string, error)
}

// segment is the state of one fault's run, shared between the injector and the checks.
type segment struct {
	produceFor time.Duration
	mark       logMark
	maxLag     int64
	rssBase    int64
	rssMax     int64
	after      func(v verdict) error  // a fault-specific check once the oracles have run
	kill       func() (string, error) // an armed protocol-step kill's wait (armProtocolKill)
	note       string                 // appended to the row's note by after
}

func TestChaos(t *testing.T) {
	if os.Getenv("RETAILFLOW_E2E") == "" {
		t.Skip("needs Kafka/ClickHouse: run with RETAILFLOW_E2E=1 (make test)")
	}
	p := params{seed: uint64(time.Now().UnixNano()), partitions: 4, orders: 60, rate: 150, rssLimit: 512 << 10}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
		p.seed = n
	}
	if os.Getenv("RETAILFLOW_CHAOS") != "" {
		p.long, p.orders, p.chOutage = true, 200, 3*time.Minute
	}
	if s := os.Getenv("CHAOS_CH_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CHAOS_CH_OUTAGE=%q: %v", s, err)
		}
		p.chOutage = d
	}
	var only []string
	if s := os.Getenv("CHAOS_FAULTS"); s != "" {
		only = strings.Split(s, ",")
	}
	for _, f := range faults {
		switch {
		case f.long && !p.long: // never in the short version, even when named
		case only != nil:
			if contains(only, f.name) {
				p.faults = append(p.faults, f)
			}
		case p.long || f.short:
			p.faults = append(p.faults, f)
		}
	}
	if len(p.faults) == 0 {
		t.Fatalf("CHAOS_FAULTS=%q names no fault of the schedule", os.Getenv("CHAOS_FAULTS"))
	}
	h := newHarness(t, p)
	fmt.Printf("chaos: seed=%d faults=%d long=%v logs=%s\n", p.seed, len(p.faults), p.long, h.LogDir)
	h.run()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if strings.TrimSpace(y) == x {
			return true
		}
	}
	return false
}

// faults is the fault table: the scripted sequence, run in this order (what happens when within
// a fault comes from the seed). Faults of another file join it with an init that appends to it.
var faults = []fault{
	{name: "sigkill-random", inject: func(h *harness, seg *segment) (string, error) {
		n := 4
		gap := seg.produceFor / time.Duration(n+1)
		var killed []string
		for i := 0; i < n; i++ {
			time.Sleep(gap/2 + time.Duration(h.rng.Int64N(int64(gap))))
			ps := h.processors()
			s := ps[h.rng.IntN(len(ps))]
			if s.Kill() {
				killed = append(killed, s.ID)
			}
		}
		if len(killed) == 0 {
			return "", errors.New("no processor was running to kill")
		}
		return "killed " + strings.Join(killed, ","), nil
	}},
	{name: "sigkill-endtxn-sent", short: true, prepare: armProtocolKill("endtxn-written"), inject: (*harness).awaitKill},
	{name: "sigkill-txnoffsetcommit-sent", prepare: armProtocolKill("txnoffsetcommit-written"), inject: (*harness).awaitKill},
	{name: "sigkill-endtxn-answered", prepare: armProtocolKill("endtxn-read"), inject: (*harness).awaitKill},
	{name: "zombie-sigstop", short: true, inject: (*harness).zombie},
	{name: "rebalance-storm", ordersX: 2, inject: (*harness).storm},
	{name: "dup-ooo-late", traffic: func(o *generate.Options) {
		o.DuplicateRate, o.OutOfOrderRate, o.LateRate = 0.3, 0.7, 0.3
	}, inject: func(h *harness, seg *segment) (string, error) {
		return "30% duplicates, 70% of orders shuffled, 30% day-late", nil
	}},
	{name: "poison", short: true, poison: 2, traffic: func(o *generate.Options) { o.MalformedRate = 0.5 },
		inject: func(h *harness, seg *segment) (string, error) {
			return "not-Avro, unknown schema id, rule-breaking Avro, 2 × 1.5 MB", nil
		}},
	{name: "burst-10x", rateX: 10, ordersX: 5, inject: (*harness).burst},
	// ClickHouse refusing the sink for reasons that are not the rows': the sink must wait
	// them out (dead letters stay explained, nothing lost) and resume by itself. More
	// orders, so that traffic still flows once the fault is in place (a users.d reload
	// takes ≈ 3 s; the sink's open connections keep their login, so the rotation restarts it)
	{name: "clickhouse-password-rotated", ordersX: 4, inject: func(h *harness, seg *segment) (string, error) {
		return h.clickhouseRefuses(seg, "auth", true, "password rotated on the server, sink restarted with the old one",
			func() error { return h.infra("ch-user", h.chUser, "rotated-"+h.chPassword, "default,"+h.db) })
	}},
	{name: "clickhouse-grant-revoked", short: true, ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
		return h.clickhouseRefuses(seg, "access", false, "the sink's user lost its database (allow_databases)",
			func() error { return h.infra("ch-user", h.chUser, h.chPassword, "default") })
	}},
	{name: "clickhouse-table-missing", ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
		return h.clickhouseRefuses(seg, "schema", false, "order_lines detached (a bad migration)",
			func() error { return h.ch.Exec(h.Ctx, "DETACH TABLE "+h.db+".order_lines") })
	}},
	{name: "clickhouse-disk-readonly", ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
		return h.clickhouseRefuses(seg, "disk", false, "the database's data directories unwritable",
			func() error { return h.infra("ch-readonly", h.db, "on") })
	}},
	{name: "sink-one-record-per-insert", inject: (*harness).perRecordInserts},
	{name: "near-max-values", short: true, large: []int{nearMaxKept, nearMaxKept, nearMaxDropped, nearMaxDropped},
		inject: (*harness).nearMax},
	{name: "kafka-restart-sigterm", long: true, ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
		return h.bounceKafka(seg, "kafka-stop")
	}},
	{name: "kafka-restart-sigkill", long: true, ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
		return h.bounceKafka(seg, "kafka-kill")
	}},
	{name: "clickhouse-outage", long: true, inject: (*harness).clickhouseOutage},
}

// armProtocolKill is a fault's prepare that arms one processor to SIGKILL itself at a protocol
// step (killAtStep's first half); awaitKill, its inject, waits for the kill while traffic flows.
func armProtocolKill(step string) func(h *harness, seg *segment) error {
	return func(h *harness, seg *segment) error {
		seg.kill = h.armKill(step, true)
		return nil
	}
}

// awaitKill waits for the kill armProtocolKill prepared.
func (h *harness) awaitKill(seg *segment) (string, error) {
	if seg.kill == nil {
		return "", errors.New("no kill was armed")
	}
	return seg.kill()
}

// row is one line of the result table.
type row struct {
	name     string
	took     time.Duration
	records  int
	restarts int
	maxLag   int64
	v        verdict
	note     string
	passed   bool
}

func (h *harness) run() {
	t := h.t
	began := time.Now()
	for _, id := range []string{"0", "1", "2"} {
		h.sup.Start("run", id)
	}
	h.sup.Start("sink", "0")
	defer h.sup.KillAll()

	var all []generate.Record
	var rows []row
	for i, f := range h.p.faults {
		r, recs := h.segment(i, f, all)
		all = append(all, recs...)
		rows = append(rows, r)
		fmt.Printf("chaos: %-28s %s (%s)\n", f.name, map[bool]string{true: "PASS", false: "FAIL"}[r.passed], r.took.Round(time.Second))
		if !r.passed {
			for _, p := range r.v.Problems {
				t.Errorf("%s: %s", f.name, p)
			}
		}
	}
	for _, s := range append(h.processors(), h.sup.Slot("sink", "0")) {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	}

	fmt.Printf("| %-28s | %6s | %7s | %8s | %6s | %4s | %4s | %7s | %5s | %5s | %7s | %-4s | %s\n",
		"fault", "secs", "records", "restarts", "maxlag", "lost", "dup", "dlq_unx", "state", "views", "aborted", "ok", "note")
	var lost, dup, unx, passed int
	for _, r := range rows {
		fmt.Printf("| %-28s | %6.0f | %7d | %8d | %6d | %4d | %4d | %7d | %5d | %5d | %7d | %-4s | %s\n",
			r.name, r.took.Seconds(), r.records, r.restarts, r.maxLag, r.v.Lost, r.v.Duplicated, r.v.DLQUnexplained,
			r.v.StateMismatch, r.v.viewDiffs, r.v.aborted, map[bool]string{true: "PASS", false: "FAIL"}[r.passed], r.note)
		lost += r.v.Lost
		dup += r.v.Duplicated
		unx += r.v.DLQUnexplained
		if r.passed {
			passed++
		}
	}
	line := fmt.Sprintf("chaos: faults=%d passed=%d lost=%d duplicated=%d dlq_unexplained=%d", len(rows), passed, lost, dup, unx)
	fmt.Printf("chaos: seed=%d took %s; %d records; logs in %s\n", h.p.seed, time.Since(began).Round(time.Second), len(all), h.LogDir)
	fmt.Println(line)
	if passed != len(rows) || lost != 0 || dup != 0 || unx != 0 {
		t.Error(line) // the logs stay (e2e.NewPipeline removes them after a passing test only)
	}
}

// segment produces one fault's traffic while the fault is injected, then waits for the pipeline
// to drain and runs the oracles over everything sent so far.
func (h *harness) segment(i int, f fault, before []generate.Record) (row, []generate.Record) {
	r := row{name: f.name}
	start := time.Now()
	opts := generate.Options{
		Seed: h.p.seed*1000 + uint64(i), Orders: h.p.orders * max(f.ordersX, 1),
		Start:         time.Now().Add(-20 * 24 * time.Hour).Truncate(time.Hour),
		DuplicateRate: 0.05, OutOfOrderRate: 0.2, LateRate: 0.05, MalformedRate: 0.03,
	}
	for _, name := range generate.AllFaults() {
		opts.Faults.Set(name, 0.12)
	}
	if f.traffic != nil {
		f.traffic(&opts)
	}
	tr, err := generate.Generate(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	recs := tr.Records
	for j := 0; j < f.poison; j++ {
		at := h.rng.IntN(len(recs))
		recs = append(recs[:at], append([]generate.Record{oversized(recs[at].Key)}, recs[at:]...)...)
	}
	for _, n := range f.large {
		at := h.rng.IntN(len(recs))
		recs = append(recs[:at], append([]generate.Record{largeRecord(recs[at].Key, n)}, recs[at:]...)...)
	}
	r.records = len(recs)
	rate := h.p.rate * max(f.rateX, 1)
	seg := &segment{produceFor: time.Duration(float64(len(recs)) / rate * float64(time.Second)), mark: h.mark()}
	var prepErr error
	if f.prepare != nil {
		prepErr = f.prepare(h, seg)
	}
	h.mu.Lock()
	restarts := h.restarts
	h.mu.Unlock()

	produced := make(chan error, 1)
	go func() { produced <- h.produce(recs, rate) }()
	// the processor group's lag, sampled every second until it has drained
	stopLag, lagDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(lagDone)
		adm := h.Admin()
		defer adm.Close()
		for {
			if l := h.Lag(adm); l > seg.maxLag {
				seg.maxLag = l
			}
			select {
			case <-stopLag:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	note, injErr := f.inject(h, seg)
	if err := <-produced; err != nil {
		h.t.Fatalf("%s: %v", f.name, err)
	}
	r.note = note
	fail := func(err error) (row, []generate.Record) {
		r.v.Problem("%v", err)
		if seg.after != nil {
			// undo the fault (a sink restarted with its own settings, a user changed) so one
			// failure does not fail every fault after it: a sink left on one INSERT per record
			// once failed the next four on a loaded box
			if err := seg.after(r.v); err != nil {
				r.v.Problem("%v", err)
			}
			r.note += seg.note
		}
		r.took = time.Since(start)
		return r, recs
	}
	if injErr == nil {
		injErr = prepErr
	}
	if injErr != nil {
		r.v.Problem("fault not injected: %v", injErr)
	}
	err = h.WaitProcessed(4 * time.Minute)
	close(stopLag)
	<-lagDone
	if err != nil {
		return fail(err)
	}
	if err := h.WaitNoOpenTransactions(time.Minute); err != nil {
		return fail(err)
	}
	out, err := h.ReadOutputs(true)
	if err != nil {
		return fail(err)
	}
	if err := h.waitSunk(out, 4*time.Minute); err != nil {
		return fail(err)
	}
	v := h.verify(append(append([]generate.Record(nil), before...), recs...), tr.Options.Policy, out)
	v.Problems = append(r.v.Problems, v.Problems...)
	v.aborted -= h.abortedSoFar // verify counts every aborted record since the start
	h.abortedSoFar += v.aborted
	r.v = v
	if seg.after != nil {
		if err := seg.after(v); err != nil {
			r.v.Problem("%v", err)
		}
		r.note += seg.note
	}
	h.lastAbortedBy = v.abortedBy
	h.mu.Lock()
	r.restarts = h.restarts - restarts
	h.mu.Unlock()
	r.maxLag = seg.maxLag
	r.took = time.Since(start)
	r.passed = r.v.ok()
	return r, recs
}

// killAtStep restarts one processor (SIGTERM; the supervisor starts it again) with
// RETAILFLOW_CHAOS_KILL_AT=<step>:<n> and waits for that incarnation to SIGKILL itself. It fails
// loudly when the hooks are not wired into `retailflow run`.
func (h *harness) killAtStep(step string) (string, error) { return h.armKill(step, false)() }

// armKill arms one processor (SIGTERM; the supervisor starts it again with the kill armed) and
// returns the wait for its kill; ready also waits until the armed incarnation has restored its
// partitions (before a segment's traffic: the kill cannot come before it).
func (h *harness) armKill(step string, ready bool) func() (string, error) {
	ps := h.processors()
	s := ps[h.rng.IntN(len(ps))]
	spec := fmt.Sprintf("%s:%d", step, 2+h.rng.IntN(5))
	s.Arm(killAtEnv + "=" + spec)
	s.DrainExits()
	s.Signal(syscall.SIGTERM)
	notWired := func(what string) error {
		return fmt.Errorf("hooks are not wired: `retailflow run` with %s=%s %s "+
			"(cmd_run.go runLedger needs `o.ClientOpts = append(o.ClientOpts, chaosClientOpts()...)`)", killAtEnv, spec, what)
	}
	// ready: the armed incarnation runs and has logged a restore (its partitions are assigned),
	// so that the traffic that follows reaches it; bounded, the wait below judges the rest
	for until := time.Now().Add(time.Minute); ready && time.Now().Before(until); time.Sleep(200 * time.Millisecond) {
		if log, ok := s.ArmedStarted(); ok {
			if b, _ := os.ReadFile(log); strings.Contains(string(b), "restored state") {
				break
			}
		}
	}
	return func() (string, error) { return h.awaitArmed(s, spec, notWired) }
}

// awaitArmed waits for the armed incarnation of s to kill itself at spec.
func (h *harness) awaitArmed(s *e2e.Slot, spec string, notWired func(string) error) (string, error) {
	// Usually seconds once traffic flows. Generous: the fault is about the kill, not a
	// latency bound (armed after the traffic, an instance whose partitions had no records
	// left waited up to the next segment's traffic: 85 s and 3 min in two runs).
	const armedWithin = 3 * time.Minute
	deadline := time.Now().Add(armedWithin)
	var armedLog string
	var armedAt time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case e := <-s.Exits():
			if len(e.Armed) == 0 {
				continue // the SIGTERMed incarnation
			}
			b, _ := os.ReadFile(e.Log)
			switch {
			case !strings.Contains(string(b), hookArmed):
				return "", notWired(fmt.Sprintf("never called chaosClientOpts; it exited with signal %v code %d (log %s)", e.Signal, e.Code, e.Log))
			case e.Signal != syscall.SIGKILL || !strings.Contains(string(b), hookBanner):
				return "", fmt.Errorf("instance %s armed with %s ended with signal %v code %d, not by its own SIGKILL (log %s)", s.ID, spec, e.Signal, e.Code, e.Log)
			}
			return fmt.Sprintf("instance %s killed itself at %s", s.ID, spec), nil
		case <-tick.C:
			if armedLog == "" {
				if log, ok := s.ArmedStarted(); ok {
					armedLog, armedAt = log, time.Now()
				}
			} else if time.Since(armedAt) > 20*time.Second {
				// chaosClientOpts reports itself before the client connects: 20 s is plenty
				if b, _ := os.ReadFile(armedLog); !strings.Contains(string(b), hookArmed) {
					return "", notWired(fmt.Sprintf("ran 20s without calling chaosClientOpts (log %s)", armedLog))
				}
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("instance %s armed with %s did not die within %s (log %s)", s.ID, spec, armedWithin, s.LogPath())
			}
		}
	}
}

// zombie SIGSTOPs a processor past its session timeout while traffic flows, so its partitions
// move, then SIGCONTs it: whatever it writes late must stay invisible to read_committed readers
// (the oracles) while a read_uncommitted reader sees aborted records.
func (h *harness) zombie(seg *segment) (string, error) {
	time.Sleep(seg.produceFor / 3)
	ps := h.processors()
	s := ps[h.rng.IntN(len(ps))]
	s.DrainExits()
	adm := h.Admin()
	defer adm.Close()
	txnID := h.Group + "-" + s.ID
	// SIGSTOP it while its transaction is Ongoing with records written, so the zombie surely
	// holds writes that must never become visible
	var producerID int64 = -1
	pid := 0
	for wait := time.Now().Add(15 * time.Second); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
		d, err := adm.DescribeTransactions(h.Ctx, txnID)
		if x, ok := d[txnID]; err == nil && ok && x.State == "Ongoing" && len(x.Topics) > 0 {
			if pid = s.Pid(); pid != 0 && syscall.Kill(-pid, syscall.SIGSTOP) == nil {
				producerID = x.ProducerID
				break
			}
		}
	}
	if producerID < 0 {
		return "", fmt.Errorf("instance %s (%s) had no ongoing transaction with writes to pause within 15s", s.ID, txnID)
	}
	before := h.lastAbortedBy[producerID]
	pause := 15 * time.Second // session timeout 6s, transaction timeout 10s
	time.Sleep(pause)
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	// give the zombie time to try its late writes and meet the fence
	time.Sleep(8 * time.Second)
	fate := "survived (rejoined)"
	select {
	case e := <-s.Exits():
		fate = fmt.Sprintf("exited with code %d (restarted)", e.Code)
		if e.Signal != 0 {
			fate = fmt.Sprintf("killed by %v (restarted)", e.Signal)
		}
	default:
	}
	seg.after = func(v verdict) error {
		// O7: the zombie's transactional producer wrote records that read_committed readers
		// (every oracle above) never saw
		if n := v.abortedBy[producerID] - before; producerID >= 0 && n > 0 {
			seg.note = fmt.Sprintf("; %d aborted records of its producer %d seen read_uncommitted only", n, producerID)
			return nil
		}
		if ev := h.grepSince(seg.mark, "fenced", "ILLEGAL_GENERATION", "INVALID_PRODUCER_EPOCH", "abort"); len(ev) > 0 {
			seg.note = "; no aborted record of its own, but it met the fence: " + ev[0]
			return nil
		}
		return fmt.Errorf("the zombie (producer %d) left no trace: no aborted output records and no fenced/aborted line in its log — the fault did not test anything", producerID)
	}
	return fmt.Sprintf("instance %s paused %s; %s", s.ID, pause, fate), nil
}

// storm adds and removes processors 3 and 4 every few seconds while traffic flows.
func (h *harness) storm(seg *segment) (string, error) {
	deadline := time.Now().Add(seg.produceFor)
	changes := 0
	var errs []error
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(2000+h.rng.IntN(2000)) * time.Millisecond)
		id := []string{"3", "4"}[h.rng.IntN(2)]
		if s := h.sup.Slot("run", id); s != nil {
			if err := s.Stop(); err != nil {
				errs = append(errs, err)
			}
		} else {
			h.sup.Start("run", id)
		}
		changes++
	}
	for _, id := range []string{"3", "4"} {
		if s := h.sup.Slot("run", id); s != nil {
			if err := s.Stop(); err != nil {
				errs = append(errs, err)
			}
			changes++
		}
	}
	return fmt.Sprintf("%d membership changes (instances 3,4 joining/leaving)", changes), errors.Join(errs...)
}

// burst produces at 10× the base rate; lag must rise and drain, and no transaction may time out.
func (h *harness) burst(seg *segment) (string, error) {
	seg.after = func(verdict) error {
		if bad := h.grepSince(seg.mark, "INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "fenced", "TRANSACTION_TIMED_OUT", "transaction timed out"); len(bad) > 0 {
			return fmt.Errorf("a transaction was fenced or timed out under the burst: %s", strings.Join(bad[:min(3, len(bad))], " | "))
		}
		if seg.maxLag <= 0 {
			return errors.New("lag never rose under the burst: the fault did not load the pipeline")
		}
		return nil
	}
	return fmt.Sprintf("%.0f records/s", h.p.rate*10), nil
}

// bounceKafka stops the broker (kafka-stop: SIGTERM, kafka-kill: SIGKILL) a third into the
// segment, keeps it down 10 s and starts it again; processors that exit are restarted by the
// supervisor, and the producer retries.
func (h *harness) bounceKafka(seg *segment, how string) (string, error) {
	time.Sleep(seg.produceFor / 3)
	if err := h.infra(how); err != nil {
		return "", err
	}
	down := time.Now()
	time.Sleep(10 * time.Second)
	if err := h.infra("kafka-start"); err != nil {
		return "", err
	}
	return fmt.Sprintf("broker down %s (%s)", time.Since(down).Round(time.Second), how), nil
}

// clickhouseOutage stops ClickHouse for the configured time while traffic flows; the sink's RSS
// must stay bounded and its lag must drain once ClickHouse is back.
func (h *harness) clickhouseOutage(seg *segment) (string, error) {
	sink := h.sup.Slot("sink", "0")
	seg.rssBase = rssKiB(sink.Pid())
	if err := h.infra("ch-stop"); err != nil {
		return "", err
	}
	end := time.Now().Add(h.p.chOutage)
	for time.Now().Before(end) {
		if r := rssKiB(sink.Pid()); r > seg.rssMax {
			seg.rssMax = r
		}
		time.Sleep(2 * time.Second)
	}
	if err := h.infra("ch-start"); err != nil {
		return "", err
	}
	// the harness's own connection pool reconnects on its next query
	ctx, cancel := context.WithTimeout(h.Ctx, time.Minute)
	defer cancel()
	for ctx.Err() == nil && h.ch.Ping(ctx) != nil {
		time.Sleep(time.Second)
	}
	seg.after = func(verdict) error {
		var errs []error
		if seg.rssMax > h.p.rssLimit {
			errs = append(errs, fmt.Errorf("sink RSS reached %d MiB during the outage (limit %d MiB)", seg.rssMax>>10, h.p.rssLimit>>10))
		}
		if len(h.grepSince(seg.mark, "fetching paused, retrying")) == 0 {
			errs = append(errs, errors.New("the sink never saw the outage (no retry in its log)"))
		}
		return errors.Join(errs...)
	}
	return fmt.Sprintf("ClickHouse down %s; sink RSS %d → max %d MiB", h.p.chOutage, seg.rssBase>>10, seg.rssMax>>10), nil
}

// clickhouseRefuses makes ClickHouse refuse the sink's inserts for an environment reason as the
// segment's traffic starts (breakIt; the pipeline is running: earlier segments' sink is live;
// restartSink: the sink restarts meanwhile, so it must log in again), waits until the sink reports that reason (it must wait, never dead-letter: an
// unexplained dead letter or a lost row fails the oracles), keeps it so for 15 s and restores
// the healthy state. A fault the sink never saw fails the row.
func (h *harness) clickhouseRefuses(seg *segment, reason string, restartSink bool, what string, breakIt func() error) (string, error) {
	restore := func() error {
		var errs []error
		switch reason {
		case "schema":
			errs = append(errs, h.ch.Exec(h.Ctx, "ATTACH TABLE "+h.db+".order_lines"))
		case "disk":
			errs = append(errs, h.infra("ch-readonly", h.db, "off"))
		}
		return errors.Join(append(errs, h.grantSink())...)
	}
	if err := breakIt(); err != nil {
		return "", errors.Join(err, restore())
	}
	began := time.Now()
	if restartSink {
		h.sup.Slot("sink", "0").Signal(syscall.SIGTERM) // the supervisor starts it again
	}
	seen := h.waitLog(seg.mark, time.Minute, "reason="+reason)
	time.Sleep(15 * time.Second)
	if err := restore(); err != nil {
		return "", fmt.Errorf("restoring after %s: %w", what, err)
	}
	if seen == "" {
		return "", fmt.Errorf("%s, but the sink never reported reason=%s within a minute: the fault tested nothing", what, reason)
	}
	seg.after = func(verdict) error {
		if len(h.grepSince(seg.mark, "accepts inserts again")) == 0 {
			return errors.New("the sink never said it resumed")
		}
		if dl := h.grepSince(seg.mark, "record dead-lettered"); len(dl) > 0 {
			return fmt.Errorf("the sink dead-lettered records under an environment fault: %s", dl[0])
		}
		return nil
	}
	return fmt.Sprintf("%s for %s; the sink waited (reason=%s)", what, time.Since(began).Round(time.Second), reason), nil
}

// waitLog polls the logs written since m until a line contains one of the needles.
func (h *harness) waitLog(m logMark, limit time.Duration, needles ...string) string {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if l := h.grepSince(m, needles...); len(l) > 0 {
			return l[0]
		}
	}
	return ""
}

// perRecordInserts runs the sink with sink.batch_rows=1 for the whole segment (until the
// oracles have run): an INSERT per table for every record, the pattern that ends in
// TOO_MANY_PARTS. The server's InsertQuery counter must show it; the oracles show that nothing
// was lost or doubled meanwhile.
func (h *harness) perRecordInserts(seg *segment) (string, error) {
	inserts := func() (uint64, error) {
		var n uint64
		err := h.ch.QueryRow(h.Ctx, "SELECT value FROM system.events WHERE event = 'InsertQuery'").Scan(&n)
		return n, err
	}
	before, err := inserts()
	if err != nil {
		return "", err
	}
	restart := func(extra ...string) {
		h.mu.Lock()
		h.sinkExtra = extra
		h.mu.Unlock()
		h.sup.Slot("sink", "0").Signal(syscall.SIGTERM)
	}
	restart("RETAILFLOW_SINK_BATCH_ROWS=1")
	recs := int(seg.produceFor.Seconds() * h.p.rate)
	seg.after = func(verdict) error {
		after, err := inserts()
		restart()
		if err != nil {
			return err
		}
		parts := len(h.grepSince(seg.mark, "reason=overload"))
		seg.note = fmt.Sprintf("; %d INSERTs for %d records; %d too-many-parts waits", after-before, recs, parts)
		if after-before < uint64(recs) {
			return fmt.Errorf("%d INSERTs for %d records: the sink did not insert record by record", after-before, recs)
		}
		return nil
	}
	if h.waitLog(seg.mark, time.Minute, "sink starting") == "" {
		return "", errors.New("the sink did not restart with sink.batch_rows=1")
	}
	return "sink.batch_rows=1 (one INSERT per table per record)", nil
}

// nearMax mixes in values just under and just over what a dead letter can carry: the first keep
// their bytes in the DLQ and in dead_letters, the second are dead-lettered without the value
// (checked by the DLQ oracle) and keep their coordinates.
func (h *harness) nearMax(seg *segment) (string, error) {
	seg.after = func(verdict) error {
		var kept uint64
		if err := h.ch.QueryRow(h.Ctx, "SELECT count() FROM "+h.db+".dead_letters FINAL WHERE origin = 'runtime' AND length(record_value) = ?",
			nearMaxKept).Scan(&kept); err != nil {
			return err
		}
		seg.note = fmt.Sprintf("; %d near-max values kept whole in dead_letters", kept)
		if kept < 2 {
			return fmt.Errorf("dead_letters holds %d of the near-max values (%d bytes) with their bytes, want ≥ 2", kept, nearMaxKept)
		}
		return nil
	}
	return fmt.Sprintf("2 × %d B (kept in the dead letter), 2 × %d B (dropped, coordinates kept)", nearMaxKept, nearMaxDropped), nil
}
