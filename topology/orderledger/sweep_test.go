package orderledger_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/connectors/kafka"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/processors/ledger"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/headers"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// sweepCase picks, from generated traffic, the orders the eviction tests need: one that closes
// once its return window has passed (every line shipped) and gets no event after that, one
// shipment whose order never arrives (an orphan), one order that stays open (only its
// OrderAccepted), and one OrderAccepted of a fourth order moved 120 days later: the event that
// moves the partition's stream time past the others' expiries. Nothing of the closed order or
// the orphan arrives after their expiry: only time evicts them.
type sweepCase struct {
	closed      []*schemas.Event // every valid event of the closed order
	closedKey   string
	closedAt    time.Time // its ExpiresAt
	orphan      *schemas.Event
	orphanKey   string
	open, clock *schemas.Event
	// near is an OrderAccepted of a fifth order dated a day after both expiries: within the
	// allowed lateness (7 days), so it evicts nothing
	near *schemas.Event
}

// moved is e, an OrderAccepted, with its times moved by d.
func moved(e *schemas.Event, d time.Duration) *schemas.Event {
	m := *e
	body := *e.OrderAccepted
	m.OccurredAt, m.PublishedAt = e.OccurredAt.Add(d), e.PublishedAt.Add(d)
	body.PlacedAt, body.AcceptedAt = body.PlacedAt.Add(d), body.AcceptedAt.Add(d)
	m.OrderAccepted = &body
	return &m
}

func pickSweepCase(t *testing.T) sweepCase {
	t.Helper()
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 40})
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]*schemas.Event{}
	var keys []string
	for _, r := range tr.Records {
		if r.Event == nil || r.Malformed != "" || r.Duplicate {
			continue
		}
		if byKey[r.Key] == nil {
			keys = append(keys, r.Key)
		}
		byKey[r.Key] = append(byKey[r.Key], r.Event)
	}
	p := ledger.DefaultPolicy()
	var c sweepCase
	used := map[string]bool{}
	for _, k := range keys {
		evs := byKey[k]
		if strings.HasPrefix(k, "checkout:") {
			continue
		}
		l := ledger.New(k)
		var accepted *schemas.Event
		ok := true
		for _, e := range evs {
			if e.OrderAccepted != nil {
				accepted = e
			}
			if l, _, err = l.Apply(*e, p); err != nil {
				ok = false
				break
			}
		}
		if !ok || accepted == nil {
			continue
		}
		if at, due := l.ExpiresAt(p); due && c.closed == nil && l.Accepted() {
			c.closed, c.closedKey, c.closedAt = evs, k, at
			used[k] = true
		}
	}
	for _, k := range keys {
		if used[k] || strings.HasPrefix(k, "checkout:") {
			continue
		}
		for _, e := range byKey[k] {
			switch {
			case c.orphan == nil && e.ShipmentConfirmed != nil:
				c.orphan, c.orphanKey = e, k
				used[k] = true
			case c.open == nil && e.OrderAccepted != nil && !used[k]:
				c.open = e
				used[k] = true
			case c.clock == nil && e.OrderAccepted != nil && !used[k]:
				c.clock = moved(e, 120*24*time.Hour)
				used[k] = true
			case c.near == nil && e.OrderAccepted != nil && !used[k]:
				c.near = e // moved below, once both expiries are known
				used[k] = true
			}
			if used[k] {
				break
			}
		}
	}
	if c.closed == nil || c.orphan == nil || c.open == nil || c.clock == nil || c.near == nil {
		t.Fatalf("traffic lacks a case: closed %v orphan %v open %v clock %v near %v", c.closed != nil, c.orphan != nil, c.open != nil, c.clock != nil, c.near != nil)
	}
	// the orphan's shipment is moved so that it expires an hour after the closed order: near,
	// a day after both, keeps the watermark (stream time − 7 days) before either
	if d := c.closedAt.Add(time.Hour - p.OrphanGrace - p.RetentionAfterClose).Sub(c.orphan.OccurredAt); d != 0 {
		m := *c.orphan
		body := *c.orphan.ShipmentConfirmed
		m.OccurredAt, m.PublishedAt, body.ShippedAt = m.OccurredAt.Add(d), m.PublishedAt.Add(d), body.ShippedAt.Add(d)
		m.ShipmentConfirmed = &body
		c.orphan = &m
	}
	last := c.closedAt.Add(time.Hour)
	c.near = moved(c.near, last.Add(24*time.Hour).Sub(c.near.OccurredAt))
	if !c.clock.OccurredAt.After(c.closedAt) || !c.clock.OccurredAt.After(c.orphan.OccurredAt.Add(p.OrphanGrace+p.RetentionAfterClose)) {
		t.Fatalf("the clock event (%s) is not past the expiries", c.clock.OccurredAt)
	}
	return c
}

// sweepRig is a one-partition pipeline on kfake (all keys share a partition, so one event's
// time is every key's stream time).
type sweepRig struct {
	t      *testing.T
	ctx    context.Context
	conn   kafka.Conn
	topics orderledger.Topics
	serde  *schemas.Serde
	prod   *kgo.Client
	dir    string    // persistent store directory; "" for memory
	logw   io.Writer // the runners' log (text); nil: discarded
	// cluster is the kfake cluster, for tests that control its answers
	cluster *kfake.Cluster
}

// syncBuffer is a log sink the test reads while runners write it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSweepRig(t *testing.T, disk bool) *sweepRig {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx := context.Background()
	rg := &sweepRig{t: t, ctx: ctx, conn: kafka.Conn{Brokers: cluster.ListenAddrs(), ClientID: "sweep", Timeout: 10 * time.Second}, topics: benchTopics(""), cluster: cluster}
	ensureTopics(t, ctx, rg.conn, rg.topics, 1)
	if rg.serde, err = schemas.NewSerde(ctx, schemas.WithPhysicalTopics(rg.topics.Names)); err != nil {
		t.Fatal(err)
	}
	if rg.prod, err = kgo.NewClient(rg.conn.Options()...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rg.prod.Close)
	if disk {
		rg.dir = t.TempDir()
	}
	return rg
}

// send produces each event with its record dated when it was published.
func (rg *sweepRig) send(evs ...*schemas.Event) {
	rg.t.Helper()
	for _, e := range evs {
		rg.produce(e, e.PublishedAt)
	}
}

// produce writes one event to its input topic, the record's timestamp at: when it reached the log.
func (rg *sweepRig) produce(e *schemas.Event, at time.Time) {
	rg.t.Helper()
	tp, ok := schemas.TopicOf(e.EventType)
	if !ok {
		rg.t.Fatalf("no topic for %s", e.EventType)
	}
	v, err := rg.serde.EncodeEvent(tp, e)
	if err != nil {
		rg.t.Fatal(err)
	}
	rec := &kgo.Record{Topic: rg.topics.Names[tp], Key: []byte(e.Key()), Value: v, Timestamp: at}
	if err := rg.prod.ProduceSync(rg.ctx, rec).FirstErr(); err != nil {
		rg.t.Fatal(err)
	}
}

type sweepRun struct {
	r      *topology.Runner[orderledger.Input, ledger.Ledger, *schemas.Event]
	m      *topology.Counters
	cancel context.CancelFunc
	done   chan error
}

func (rg *sweepRig) start() *sweepRun {
	rg.t.Helper()
	m := topology.NewCounters(0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if rg.logw != nil {
		log = slog.New(slog.NewTextHandler(rg.logw, nil))
	}
	if os.Getenv("RUNTIME_TEST_LOG") != "" {
		log = slog.Default()
	}
	r, err := topology.NewRunner(orderledger.Topology(rg.topics),
		orderledger.NewProcessor(rg.ctx, rg.topics, orderledger.Options{Serde: rg.serde, Policy: ledger.DefaultPolicy(), MaxEventSkew: time.Hour}),
		topology.Options{
			Conn: rg.conn, Group: "sweep", InstanceID: "0",
			TransactionTimeout: 10 * time.Second, SessionTimeout: 3 * time.Second, HeartbeatInterval: time.Second,
			RebalanceTimeout: 5 * time.Second, MaxRecordsPerTxn: 100, MaxTxnDuration: 100 * time.Millisecond,
			MaxBufferedRecords: 1000, Parallelism: 1, OffsetReset: kafka.ResetNone,
			SweepInterval: 50 * time.Millisecond, AllowedLateness: 7 * 24 * time.Hour, Metrics: m, Logger: log, StateDir: rg.dir,
		})
	if err != nil {
		rg.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(rg.ctx)
	run := &sweepRun{r: r, m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	return run
}

func (run *sweepRun) waitCommitted(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for int64(run.m.Snapshot().CommittedRecords) < n {
		select {
		case err := <-run.done:
			t.Fatalf("runner stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d records", run.m.Snapshot().CommittedRecords, n)
		}
	}
}

func (run *sweepRun) stop(t *testing.T) {
	t.Helper()
	run.cancel()
	if err := <-run.done; err != nil {
		t.Fatal(err)
	}
}

// changelog reads the committed changelog (one partition) until cond holds on it or 20 s pass.
func (rg *sweepRig) changelog(cond func([]*kgo.Record) bool) []*kgo.Record {
	rg.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var recs []*kgo.Record
		err := kafka.ReadToEnd(rg.ctx, rg.conn, rg.topics.Names[schemas.TopicChangelog], kafka.ReadOptions{}, func(r *kgo.Record) error {
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			rg.t.Fatal(err)
		}
		if cond(recs) || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hdr(r *kgo.Record, k string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// lastOf is each key's last changelog record.
func lastOf(recs []*kgo.Record) map[string]*kgo.Record {
	out := map[string]*kgo.Record{}
	for _, r := range recs {
		out[string(r.Key)] = r
	}
	return out
}

// TestSweepEvictsByTimeAlone: a closed order and an orphan that get no later event are evicted
// once other keys' events move the partition's stream time past their expiry plus the allowed
// lateness (an event a day past both evicts nothing; one 120 days later does) — tombstones
// written by the sweep in one transaction (adjacent offsets, nothing between), each saying why,
// the orphan's carrying its HELD_WITHOUT_ORDER exception for the sink; the open order and the
// clock order stay. Modes: one runner (memory and disk), and a restart between the two phases —
// the index rebuilt from the changelog's headers (memory), kept on disk, and rebuilt after the
// state directory was deleted (disk, wiped).
func TestSweepEvictsByTimeAlone(t *testing.T) {
	for _, mode := range []string{"memory", "disk", "memory-restart", "disk-restart", "disk-wiped"} {
		t.Run(mode, func(t *testing.T) {
			c := pickSweepCase(t)
			rg := newSweepRig(t, strings.HasPrefix(mode, "disk"))
			run := rg.start()
			rg.send(c.closed...)
			// near moves the stream time a day past both expiries: within the allowed lateness
			rg.send(c.orphan, c.open, c.near)
			n := int64(len(c.closed) + 3)
			run.waitCommitted(t, n)
			time.Sleep(300 * time.Millisecond) // several sweep intervals: nothing is due yet (lateness)
			for _, r := range rg.changelog(func([]*kgo.Record) bool { return true }) {
				if r.Value == nil {
					t.Fatalf("tombstone for %s before any key was due (headers %v; orphan %s at %s, closed %s expires %s, near %s)", r.Key, r.Headers, c.orphanKey, c.orphan.OccurredAt, c.closedKey, c.closedAt, c.near.OccurredAt)
				}
				if _, ok := hdr(r, headers.StreamTime); !ok {
					t.Fatalf("changelog record of %s has no %s header", r.Key, headers.StreamTime)
				}
			}
			if strings.Contains(mode, "restart") || mode == "disk-wiped" {
				run.stop(t)
				if mode == "disk-wiped" {
					if err := os.RemoveAll(rg.dir); err != nil {
						t.Fatal(err)
					}
				}
				run = rg.start()
				n = 0
			}
			rg.send(c.clock)
			run.waitCommitted(t, n+1)
			last := evictedByTime(t, rg, c)
			closed, orphan := last[c.closedKey], last[c.orphanKey]
			want := ledger.ExcHeldWithoutOrder + ":" + c.orphan.EventID
			if exc, _ := hdr(orphan, headers.OpenExceptions); !strings.Contains(" "+exc+" ", " "+want+" ") {
				t.Errorf("orphan's tombstone carries exceptions %q, want %s", exc, want)
			}
			// one sweep transaction: both tombstones adjacent, after the clock event's record
			lo, hi := min(closed.Offset, orphan.Offset), max(closed.Offset, orphan.Offset)
			if hi != lo+1 {
				t.Errorf("tombstones at offsets %d and %d: not one transaction's consecutive records", lo, hi)
			}
			clockTime := strconv.FormatInt(c.clock.OccurredAt.UnixNano(), 10)
			for _, r := range []*kgo.Record{closed, orphan} {
				if st, _ := hdr(r, headers.StreamTime); st != clockTime {
					t.Errorf("tombstone of %s at stream time %s, want the clock event's %s", r.Key, st, clockTime)
				}
				if _, ok := hdr(r, headers.SourceTopic); ok {
					t.Errorf("a sweep tombstone names an input (%s): it has none", headers.SourceTopic)
				}
			}
			keptAndGone(t, rg, c, run, last)
		})
	}
}

// legacyChangelog runs c's closed order, orphan and open order through a pipeline (memory) and
// returns their changelog records as the version before time-driven eviction wrote them: each
// key's last value, without the rf.expires and rf.stream-time headers.
func legacyChangelog(t *testing.T, c sweepCase) []*kgo.Record {
	t.Helper()
	rg := newSweepRig(t, false)
	run := rg.start()
	rg.send(c.closed...)
	rg.send(c.orphan, c.open)
	run.waitCommitted(t, int64(len(c.closed)+2))
	run.stop(t)
	var out []*kgo.Record
	last := lastOf(rg.changelog(func([]*kgo.Record) bool { return true }))
	for _, k := range []string{c.closedKey, c.orphanKey, c.open.Key()} {
		r := last[k]
		if r == nil || r.Value == nil {
			t.Fatalf("no changelog value for %s", k)
		}
		out = append(out, &kgo.Record{Key: r.Key, Value: r.Value})
	}
	return out
}

// TestSweepEvictsLegacyChangelog: orders written before the upgrade (changelog values without
// rf.expires, as the previous version wrote them) are evicted by time alone after a restore
// indexes them from their decoded state — the memory restore, the full restore of a new
// persistent store (sstable ingest), and the tail restore of an existing one (batches).
func TestSweepEvictsLegacyChangelog(t *testing.T) {
	for _, mode := range []string{"memory", "disk-ingest", "disk-tail"} {
		t.Run(mode, func(t *testing.T) {
			c := pickSweepCase(t)
			legacy := legacyChangelog(t, c)
			rg := newSweepRig(t, mode != "memory")
			produceLegacy := func() {
				for _, r := range legacy {
					r.Topic = rg.topics.Names[schemas.TopicChangelog]
					if err := rg.prod.ProduceSync(rg.ctx, r).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if mode == "disk-tail" {
				// the store exists (checkpoint of an empty changelog) before the legacy records
				// arrive: the restart reads them as its tail
				run := rg.start()
				rg.send(c.near)
				run.waitCommitted(t, 1)
				run.stop(t)
				produceLegacy()
				run = rg.start()
				rg.send(c.clock)
				run.waitCommitted(t, 1)
				keptAndGone(t, rg, c, run, evictedByTime(t, rg, c))
				return
			}
			produceLegacy()
			run := rg.start()
			rg.send(c.near)
			run.waitCommitted(t, 1)
			time.Sleep(300 * time.Millisecond) // several sweep intervals: nothing is due yet (lateness)
			for _, r := range rg.changelog(func([]*kgo.Record) bool { return true }) {
				if r.Value == nil {
					t.Fatalf("tombstone for %s before any key was due", r.Key)
				}
			}
			rg.send(c.clock)
			run.waitCommitted(t, 2)
			keptAndGone(t, rg, c, run, evictedByTime(t, rg, c))
		})
	}
}

// evictedByTime waits until the closed order and the orphan of c are tombstones on the
// changelog and checks that each says why; it returns every key's last record.
func evictedByTime(t *testing.T, rg *sweepRig, c sweepCase) (last map[string]*kgo.Record) {
	t.Helper()
	recs := rg.changelog(func(recs []*kgo.Record) bool {
		l := lastOf(recs)
		return l[c.closedKey] != nil && l[c.closedKey].Value == nil && l[c.orphanKey] != nil && l[c.orphanKey].Value == nil
	})
	last = lastOf(recs)
	closed, orphan := last[c.closedKey], last[c.orphanKey]
	if closed == nil || closed.Value != nil || orphan == nil || orphan.Value != nil {
		t.Fatalf("closed order %s and orphan %s not both evicted by time (%d changelog records)", c.closedKey, c.orphanKey, len(recs))
	}
	if why, _ := hdr(closed, headers.Evicted); why != "closed" {
		t.Errorf("closed order's tombstone says %s=%q, want closed", headers.Evicted, why)
	}
	if why, _ := hdr(orphan, headers.Evicted); why != "orphan" {
		t.Errorf("orphan's tombstone says %s=%q, want orphan", headers.Evicted, why)
	}
	return last
}

// keptAndGone checks that the keys of c that are not due are still on the changelog, stops the
// run, and on disk that the store holds them and not the evicted two.
func keptAndGone(t *testing.T, rg *sweepRig, c sweepCase, run *sweepRun, last map[string]*kgo.Record) {
	t.Helper()
	for _, k := range []string{c.open.Key(), c.clock.Key(), c.near.Key()} {
		if r := last[k]; r == nil || r.Value == nil {
			t.Errorf("key %s (not due) was evicted or never written", k)
		}
	}
	run.stop(t)
	if rg.dir != "" {
		keys := map[string]bool{}
		if err := topology.ScanStore(rg.dir, orderledger.StageName, func(_ int32, k, _ []byte) error {
			keys[string(k)] = true
			return nil
		}, nil); err != nil {
			t.Fatal(err)
		}
		if keys[c.closedKey] || keys[c.orphanKey] || !keys[c.open.Key()] || !keys[c.clock.Key()] {
			t.Errorf("store after the sweep holds %v", keys)
		}
	}
}

// TestSweepKeepsUndecodableStateIndexed: a due key whose stored state does not decode is not
// evicted (its next event dead-letters it) and stays indexed: it is looked at again, and logged
// with its key and partition, each time the watermark has moved on by a sweep interval — not
// dropped from the index silently at the first sweep that met it.
func TestSweepKeepsUndecodableStateIndexed(t *testing.T) {
	for _, mode := range []string{"memory", "disk"} {
		t.Run(mode, func(t *testing.T) {
			c := pickSweepCase(t)
			second := anotherOrderAccepted(t, c)
			rg := newSweepRig(t, mode == "disk")
			logs := &syncBuffer{}
			rg.logw = logs
			const bad = "O-UNDECODABLE-1"
			at := strconv.FormatInt(c.closedAt.UnixNano(), 10)
			rec := &kgo.Record{Topic: rg.topics.Names[schemas.TopicChangelog], Key: []byte(bad), Value: []byte("not an avro ledger state"),
				Headers: []kgo.RecordHeader{{Key: headers.StreamTime, Value: []byte(at)}, {Key: headers.Expires, Value: []byte(at)}}}
			if err := rg.prod.ProduceSync(rg.ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			run := rg.start()
			defer run.stop(t)
			seen := func(n int) bool {
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					got := 0
					for _, l := range strings.Split(logs.String(), "\n") {
						if strings.Contains(l, "does not decode") && strings.Contains(l, "key="+bad) && strings.Contains(l, "partition=0") {
							got++
						}
					}
					if got >= n {
						return true
					}
					time.Sleep(20 * time.Millisecond)
				}
				return false
			}
			rg.send(c.clock) // the bad key is due
			run.waitCommitted(t, 1)
			if !seen(1) {
				t.Fatalf("no log line names the undecodable due key %s:\n%s", bad, logs.String())
			}
			rg.send(second) // the watermark moves on by more than a sweep interval: due again
			run.waitCommitted(t, 2)
			if !seen(2) {
				t.Fatalf("the undecodable key %s was not looked at again after the watermark moved: dropped from the index", bad)
			}
			for _, r := range rg.changelog(func([]*kgo.Record) bool { return true }) {
				if string(r.Key) == bad && r.Value == nil {
					t.Fatalf("the undecodable key was evicted")
				}
			}
		})
	}
}

// anotherOrderAccepted is an OrderAccepted of an order c does not use, dated a day after c.clock.
func anotherOrderAccepted(t *testing.T, c sweepCase) *schemas.Event {
	t.Helper()
	tr, err := generate.Generate(generate.Options{Seed: 11, Orders: 40})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{c.closedKey: true, c.orphanKey: true, c.open.Key(): true, c.clock.Key(): true, c.near.Key(): true}
	for _, r := range tr.Records {
		if e := r.Event; e != nil && r.Malformed == "" && !r.Duplicate && e.OrderAccepted != nil && !used[r.Key] && !strings.HasPrefix(r.Key, "checkout:") {
			return moved(e, c.clock.OccurredAt.Add(24*time.Hour).Sub(e.OccurredAt))
		}
	}
	t.Fatal("no other OrderAccepted in the traffic")
	return nil
}
