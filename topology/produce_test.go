package topology

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction's produce results (kgo.AbortingFirstErrPromise's contract): no allocation per
// produce; wait returns only once every produce has reported; the first error is kept and aborts
// the client's buffered records; an input whose output the broker refused for what it is is
// marked for the DLQ. The client's broker does not exist, so a produced record stays buffered
// until the abort fails it.
func TestProduceResults(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.DefaultProduceTopic("out"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rejected []source
	reject := func(src source, topic string) { rejected = append(rejected, src) }
	p := newProduceResults(cl, reject)
	rec := &kgo.Record{Topic: "out"}
	if n := testing.AllocsPerRun(1000, func() { p.add()(rec, nil) }); n != 0 {
		t.Errorf("%.1f allocations per produce", n)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}

	p = newProduceResults(cl, reject)
	buffered := make(chan error, 1)
	promise := p.add()
	cl.Produce(context.Background(), &kgo.Record{Topic: "out", Value: []byte("v")}, func(r *kgo.Record, err error) {
		buffered <- err
		promise(r, err)
	})
	src := source{topic: "in", partition: 2, offset: 7}
	tooLarge := &kgo.Record{Topic: "out", Headers: sourceHeaders(src, 0, 4)}
	first, second := p.add(), p.add()
	waited := make(chan error, 1)
	go func() { waited <- p.wait() }()
	first(tooLarge, kerr.MessageTooLarge)
	select {
	case err := <-waited:
		t.Fatalf("wait returned %v before every produce reported", err)
	case <-time.After(50 * time.Millisecond):
	}
	second(rec, errors.New("later"))
	select {
	case err := <-buffered:
		if !errors.Is(err, kgo.ErrAborting) {
			t.Errorf("the buffered record failed with %v, want kgo.ErrAborting (aborted on the first error)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the buffered record was not aborted after the first error")
	}
	select {
	case err := <-waited:
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Errorf("wait = %v, want the first error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return after every produce reported")
	}
	if len(rejected) != 1 || rejected[0] != src {
		t.Errorf("rejected inputs %v, want [%v]", rejected, src)
	}
}
