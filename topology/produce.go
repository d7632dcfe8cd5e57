package topology

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceResults collects the results of one transaction's produces. It keeps the contract of
// kgo.AbortingFirstErrPromise: the first error is kept and aborts the client's buffered records
// (the flush then fails fast instead of sending records the transaction cannot commit), and
// wait returns once every produce has reported. Besides, a record the broker refuses for what
// it is (too large, invalid) marks its source input (reject), which is dead-lettered when it is
// re-polled after the abort instead of failing the same way forever.
//
// It is not a kgo.FirstErrPromise because that cost two allocations per produced record: its
// Promise returns a method value, and the rule above wrapped it in a closure. Here the callback
// is bound once per transaction and passed to every produce of it (≈ 3 allocations per input
// event of the full ledger, which produces a changelog record and often a command per input).
// Each transaction has its own (begin), so a late report can never land in the next one.
type produceResults struct {
	wg       sync.WaitGroup
	failed   atomic.Bool
	err      error // the first error: written by the report that set failed, read after wg.Wait
	cl       *kgo.Client
	reject   func(src source, topic string)
	callback func(*kgo.Record, error) // report, bound once
}

func newProduceResults(cl *kgo.Client, reject func(source, string)) *produceResults {
	p := &produceResults{cl: cl, reject: reject}
	p.callback = p.report
	return p
}

// add is the promise of one more produce of the transaction.
func (p *produceResults) add() func(*kgo.Record, error) {
	p.wg.Add(1)
	return p.callback
}

func (p *produceResults) report(rec *kgo.Record, err error) {
	defer p.wg.Done()
	if err == nil {
		return
	}
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage) {
		if src, ok := headerSource(rec.Headers); ok {
			p.reject(src, rec.Topic)
		}
	}
	if !p.failed.Swap(true) {
		p.err = err
		p.wg.Add(1) // still above zero: this report's Done is deferred
		go func() {
			defer p.wg.Done()
			p.cl.AbortBufferedRecords(context.Background())
		}()
	}
}

// wait returns the transaction's first produce error once every produce has reported.
func (p *produceResults) wait() error {
	p.wg.Wait()
	return p.err
}
