package topology

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A transaction's produce results: no allocation per produce, the first error kept, the
// buffered records aborted on it (the client's abort returns at once here: nothing is
// buffered), and an input whose output the broker refused for what it is marked for the DLQ.
func TestProduceResults(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rejected []source
	p := newProduceResults(cl, func(src source, topic string) { rejected = append(rejected, src) })
	rec := &kgo.Record{Topic: "out"}
	if n := testing.AllocsPerRun(1000, func() { p.add()(rec, nil) }); n != 0 {
		t.Errorf("%.1f allocations per produce", n)
	}
	if err := p.wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}

	p = newProduceResults(cl, func(src source, topic string) { rejected = append(rejected, src) })
	src := source{topic: "in", partition: 2, offset: 7}
	tooLarge := &kgo.Record{Topic: "out", Headers: sourceHeaders(src, 0, 4)}
	first, second := p.add(), p.add()
	first(tooLarge, kerr.MessageTooLarge)
	second(rec, errors.New("later"))
	if err := p.wait(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("wait = %v, want the first error", err)
	}
	if len(rejected) != 1 || rejected[0] != src {
		t.Errorf("rejected inputs %v, want [%v]", rejected, src)
	}
}
