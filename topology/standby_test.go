package topology

import (
	"fmt"
	"testing"
	"time"
)

// waitStandbyPasses waits until the log has n standby passes from index from on: the second
// of two began after the first ended, so it read everything committed before from.
func waitStandbyPasses(t *testing.T, rl *restoreLog, from, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		passes := 0
		for _, m := range rl.snapshot()[from:] {
			if m["msg"] == "standby copies caught up" {
				passes++
			}
		}
		if passes >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d standby passes in 20 s", n)
}

// TestStandbyMakesAMoveATailRestore: instance "1" joins "0" with an empty state directory and
// gets a share of the partitions; "0" then stops and its partitions move to "1". Without
// standbys "1" restores them fully; with standbys it has followed their changelog while "0"
// owned them and reads no record at the move. Either way the sums continue exactly and "1"'s
// store holds every key's sum.
func TestStandbyMakesAMoveATailRestore(t *testing.T) {
	for _, standby := range []bool{false, true} {
		t.Run(fmt.Sprintf("standby=%v", standby), func(t *testing.T) {
			f, rl := newDiskFixture(t)
			f.standby = standby
			inputs := map[string][]int64{}
			rn0 := f.start("0", nil, nil)
			waitReady(t, rn0)
			f.feed(6, 5, inputs)
			checkSums(t, f.committed("out", 30), inputs)

			m1 := NewCounters(0)
			rn1 := f.start("1", m1, nil)
			deadline := time.Now().Add(20 * time.Second)
			for len(rn0.r.Status().Owned)+len(rn1.r.Status().Owned) != testPartitions || len(rn1.r.Status().Owned) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the two instances do not share the partitions: %+v / %+v", rn0.r.Status(), rn1.r.Status())
				}
				time.Sleep(20 * time.Millisecond)
			}
			moved := len(rn0.r.Status().Owned)
			f.feed(6, 5, inputs)
			checkSums(t, f.committed("out", 60), inputs)
			if standby {
				waitStandbyPasses(t, rl, len(rl.snapshot()), 2)
			}

			mark := len(rl.snapshot())
			rn0.stop(t)
			waitReady(t, rn1)
			records, full, wiped := rl.restored(mark)
			if standby {
				passes, copied := m1.standbyTotals()
				if passes == 0 || copied == 0 {
					t.Errorf("standby metrics: %d passes, %d records copied; want some of both", passes, copied)
				}
			}
			if standby && (records != 0 || full != "[]" || len(wiped) > 0) {
				t.Errorf("with standbys the move of %d partitions restored %d records (full %s, wiped %v), want a tail of 0", moved, records, full, wiped)
			}
			if !standby && (records == 0 || full == "[]") {
				t.Errorf("without standbys the move of %d partitions restored %d records (full %s): the test no longer tells the two apart", moved, records, full)
			}
			t.Logf("standby=%v: the move of %d partitions restored %d records, full %s", standby, moved, records, full)
			f.feed(6, 1, inputs)
			checkSums(t, f.committed("out", 66), inputs)
			rn1.stop(t)
			checkDisk(t, f.instanceStateDir("1"), sumsOf(inputs))
		})
	}
}

// TestValueCacheStaysWithinItsBound: the value caches of a runner's stores give up values
// once together above DiskOptions.ValueCacheBytes, in proportion to their share, and a
// dropped (evicted) key leaves its store's cache; every value kept is the last one put.
func TestValueCacheStaysWithinItsBound(t *testing.T) {
	r := &Runner[sumEvent, int64, string]{stores: map[int32]*store[int64]{}}
	r.o.State.ValueCacheBytes = 10_000
	for p := int32(0); p < 2; p++ {
		r.stores[p] = newDiskStore[int64](nil, p, partMeta{})
	}
	last := map[string]string{}
	for i := 0; i < 400; i++ {
		p := int32(i % 2)
		key := fmt.Sprintf("k%03d", i%150)
		v := fmt.Sprintf("%s=%090d", key, i)
		b := make([]byte, len(v), 4*len(v)) // the encoder's spare capacity: copied, counted by cap
		copy(b, v)
		r.stores[p].putHot(key, b)
		last[fmt.Sprint(p, key)] = v
		r.boundValueCache(map[int32]bool{p: true})
		var total int64
		for _, st := range r.stores {
			total += st.hotBytes
		}
		if total > r.o.State.ValueCacheBytes+200 { // one entry over, at most, before the bound runs
			t.Fatalf("after %d puts the caches hold %d bytes, bound %d", i+1, total, r.o.State.ValueCacheBytes)
		}
	}
	for p, st := range r.stores {
		var sum int64
		for k, v := range st.hot {
			sum += hotSize(k, v)
			if last[fmt.Sprint(p, k)] != string(v) {
				t.Errorf("partition %d caches %s = %q, the last put was %q", p, k, v, last[fmt.Sprint(p, k)])
			}
		}
		for _, v := range st.hot {
			if cap(v) > len(v)+len(v)/4 {
				t.Fatalf("a cached value keeps %d bytes of capacity for %d of length", cap(v), len(v))
			}
		}
		if sum != st.hotBytes || len(st.hot) == 0 {
			t.Errorf("partition %d: %d values of %d bytes, accounted %d", p, len(st.hot), sum, st.hotBytes)
		}
		for k := range st.hot {
			st.drop(k)
			if _, ok := st.hot[k]; ok {
				t.Errorf("dropped key %s is still cached", k)
			}
			break
		}
	}
}

// standbyTotals is the standby passes counted and the records they copied (tests).
func (c *Counters) standbyTotals() (passes int, records int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.standbyPasses, c.standbyRecords
}
