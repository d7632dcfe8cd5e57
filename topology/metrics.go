package topology

import (
	"sync"
	"time"
)

// Metrics receives the runtime's measurements. Calls come from the run loop goroutine and from
// the restore; implementations must be safe for concurrent use and must not block. Embed
// NopMetrics to implement only some of the hooks.
type Metrics interface {
	// Consumed counts input records polled from topic (including ones later dead-lettered).
	Consumed(topic string, n int)
	// Produced counts records a committed transaction wrote to topic (outputs, changelog, DLQ).
	Produced(topic string, n int)
	// DeadLettered counts records of a committed transaction sent to the DLQ, by source topic and class.
	DeadLettered(topic, class string, n int)
	// Committed is one committed transaction with its input record count and duration.
	Committed(records int, d time.Duration)
	// Aborted is one aborted transaction; reason is "rebalance", "coordinator" (End aborted without
	// a rebalance: coordinator moved or loading, concurrent transactions), "produce", "encode",
	// "transient" or "shutdown".
	Aborted(reason string)
	// Latency is, per committed input record, the time from its record timestamp to the commit.
	Latency(d time.Duration)
	// RestoreProgress reports a partition's restore: records read so far of the changelog
	// range [start, end). done is true once the store is complete.
	RestoreProgress(partition int32, read, total int64, done bool)
	// StateSize reports a partition's store after each commit and restore; keys = -1 means
	// the partition was dropped (revoked).
	StateSize(partition int32, keys int, bytes int64)
	// Rerouted counts records of a committed transaction that arrived on another partition
	// than their key's and were re-routed, by the topic they arrived on.
	Rerouted(topic string, n int)
}

// NopMetrics implements Metrics by doing nothing.
type NopMetrics struct{}

func (NopMetrics) Consumed(string, int)                      {}
func (NopMetrics) Produced(string, int)                      {}
func (NopMetrics) DeadLettered(string, string, int)          {}
func (NopMetrics) Committed(int, time.Duration)              {}
func (NopMetrics) Aborted(string)                            {}
func (NopMetrics) Latency(time.Duration)                     {}
func (NopMetrics) RestoreProgress(int32, int64, int64, bool) {}
func (NopMetrics) StateSize(int32, int, int64)               {}
func (NopMetrics) Rerouted(string, int)                      {}

// Counters is a Metrics that keeps totals in memory, for tests, benchmarks and the CLI summary.
type Counters struct {
	mu          sync.Mutex
	consumed    map[string]int
	produced    map[string]int
	dead        map[string]int // "topic/class"
	commits     int
	aborts      map[string]int
	records     int
	latencies   []time.Duration
	keepLatency int
	restored    map[int32]int64
	stateKeys   map[int32]int
	rerouted    map[string]int
	// standby passes that caught up, and the records they copied
	standbyPasses  int
	standbyRecords int64
}

// NewCounters returns Counters that keep up to keepLatencies latency samples (the first ones).
func NewCounters(keepLatencies int) *Counters {
	return &Counters{
		consumed: map[string]int{}, produced: map[string]int{}, dead: map[string]int{},
		aborts: map[string]int{}, restored: map[int32]int64{}, stateKeys: map[int32]int{},
		rerouted: map[string]int{}, keepLatency: keepLatencies,
	}
}

func (c *Counters) Consumed(t string, n int) { c.mu.Lock(); c.consumed[t] += n; c.mu.Unlock() }
func (c *Counters) Produced(t string, n int) { c.mu.Lock(); c.produced[t] += n; c.mu.Unlock() }
func (c *Counters) DeadLettered(t, class string, n int) {
	c.mu.Lock()
	c.dead[t+"/"+class] += n
	c.mu.Unlock()
}
func (c *Counters) Committed(records int, _ time.Duration) {
	c.mu.Lock()
	c.commits++
	c.records += records
	c.mu.Unlock()
}
func (c *Counters) Aborted(reason string)    { c.mu.Lock(); c.aborts[reason]++; c.mu.Unlock() }
func (c *Counters) Rerouted(t string, n int) { c.mu.Lock(); c.rerouted[t] += n; c.mu.Unlock() }

// StandbyCaughtUp counts standby passes and the records they copied.
func (c *Counters) StandbyCaughtUp(_ int, records int64, _ time.Duration) {
	c.mu.Lock()
	c.standbyPasses++
	c.standbyRecords += records
	c.mu.Unlock()
}
func (c *Counters) Latency(d time.Duration) {
	c.mu.Lock()
	if len(c.latencies) < c.keepLatency {
		c.latencies = append(c.latencies, d)
	}
	c.mu.Unlock()
}
func (c *Counters) RestoreProgress(p int32, read, _ int64, done bool) {
	if done {
		c.mu.Lock()
		c.restored[p] += read
		c.mu.Unlock()
	}
}
func (c *Counters) StateSize(p int32, keys int, _ int64) {
	c.mu.Lock()
	if keys < 0 {
		delete(c.stateKeys, p)
	} else {
		c.stateKeys[p] = keys
	}
	c.mu.Unlock()
}

// Snapshot is a copy of Counters' totals.
type Snapshot struct {
	Consumed, Produced, DeadLettered map[string]int
	Commits, CommittedRecords        int
	Aborts                           map[string]int
	Latencies                        []time.Duration
	Restored                         map[int32]int64
	StateKeys                        map[int32]int
	Rerouted                         map[string]int
}

// Snapshot copies the current totals.
func (c *Counters) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		o := make(map[string]int, len(m))
		for k, v := range m {
			o[k] = v
		}
		return o
	}
	s := Snapshot{Consumed: cp(c.consumed), Produced: cp(c.produced), DeadLettered: cp(c.dead),
		Commits: c.commits, CommittedRecords: c.records, Aborts: cp(c.aborts),
		Latencies: append([]time.Duration(nil), c.latencies...),
		Restored:  map[int32]int64{}, StateKeys: map[int32]int{}, Rerouted: cp(c.rerouted)}
	for k, v := range c.restored {
		s.Restored[k] = v
	}
	for k, v := range c.stateKeys {
		s.StateKeys[k] = v
	}
	return s
}
