package orderledger_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSweepTransactionIsFenced: a sweep transaction consumes no input, yet it must be fenced
// like one. The instance's transactional id does not fence a zombie (KIP-447): the group
// generation checked by TxnOffsetCommit does, so a sweep re-commits its partitions' input
// offsets inside its transaction. Here the broker answers every TxnOffsetCommit after the clock
// event's transaction with ILLEGAL_GENERATION — what a member that stalled past its session
// while its partitions moved to another instance is told — and the due tombstones must not
// commit; once the member's commits are accepted again, the next sweep writes them. Before the
// fence the sweep sent no TxnOffsetCommit and committed the tombstones as a zombie.
func TestSweepTransactionIsFenced(t *testing.T) {
	for _, mode := range []string{"memory", "disk"} {
		t.Run(mode, func(t *testing.T) {
			c := pickSweepCase(t)
			rg := newSweepRig(t, mode == "disk")
			var armed atomic.Bool
			var passed, refused atomic.Int32
			rg.cluster.ControlKey(int16(kmsg.TxnOffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
				if !armed.Load() {
					return nil, nil, false
				}
				if passed.Load() == 0 { // the clock event's own transaction commits
					passed.Add(1)
					return nil, nil, false
				}
				rg.cluster.KeepControl()
				refused.Add(1)
				r := req.(*kmsg.TxnOffsetCommitRequest)
				resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
				for _, rt := range r.Topics {
					st := kmsg.NewTxnOffsetCommitResponseTopic()
					st.Topic, st.TopicID = rt.Topic, rt.TopicID
					for _, rp := range rt.Partitions {
						sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
						sp.Partition, sp.ErrorCode = rp.Partition, kerr.IllegalGeneration.Code
						st.Partitions = append(st.Partitions, sp)
					}
					resp.Topics = append(resp.Topics, st)
				}
				return resp, nil, true
			})
			run := rg.start()
			rg.send(c.closed...)
			rg.send(c.orphan, c.open, c.near)
			run.waitCommitted(t, int64(len(c.closed)+3))
			armed.Store(true)
			rg.send(c.clock)
			run.waitCommitted(t, int64(len(c.closed)+4))
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				for _, r := range rg.changelog(func([]*kgo.Record) bool { return true }) {
					if r.Value == nil {
						t.Fatalf("tombstone of %s committed by a sweep whose member the broker refused (%d TxnOffsetCommits refused)", r.Key, refused.Load())
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			if refused.Load() == 0 {
				t.Fatal("no sweep transaction sent a TxnOffsetCommit: nothing fences it")
			}
			armed.Store(false)
			evictedByTime(t, rg, c)
			run.stop(t)
		})
	}
}
