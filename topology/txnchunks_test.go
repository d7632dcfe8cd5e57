package topology

import (
	"strconv"
	"testing"

	"github.com/retailflow/retailflow/schemas/headers"
)

// TestTxnChunksReused: within a transaction every output record and header is its own (a
// full chunk is never written again while its records may still be produced), and a later
// transaction of the same size reuses the earlier one's chunks instead of allocating.
func TestTxnChunksReused(t *testing.T) {
	var tx txnState
	const n = 20_000 // several record, header and header-byte chunks
	fill := func(txn int) {
		tx.resetOutputs()
		seen := map[*byte]bool{}
		for i := range n {
			rec := tx.record()
			if rec.Topic != "" || rec.Headers != nil {
				t.Fatalf("txn %d: record %d is not zero", txn, i)
			}
			rec.Topic = "out"
			rec.Headers = tx.sourceHeaders(source{topic: "orders", partition: int32(i % 6), offset: int64(i)}, txn, 6)
			rec.Headers = append(rec.Headers, tx.nanosHeader(headers.SourceOffset, int64(i)))
			p := &rec.Headers[0].Value[0]
			if seen[p] {
				t.Fatalf("txn %d: record %d's headers share bytes with an earlier record's", txn, i)
			}
			seen[p] = true
		}
	}
	fill(0)
	// every record of the transaction still carries its own values at its end
	var got []string
	for _, c := range append(tx.full.recs, tx.recs) {
		for i := range c {
			got = append(got, string(c[i].Headers[2].Value)+"/"+string(c[i].Headers[4].Value))
		}
	}
	if len(got) != n {
		t.Fatalf("%d records in the chunks, want %d", len(got), n)
	}
	for i, g := range got {
		if want := strconv.Itoa(i) + "/" + strconv.Itoa(i); g != want {
			t.Fatalf("record %d carries %s, want %s: a chunk was written again within the transaction", i, g, want)
		}
	}
	if len(tx.full.recs) == 0 || len(tx.full.hdrs) == 0 || len(tx.full.hbuf) == 0 {
		t.Fatalf("the test did not fill more than one chunk of each kind: %d %d %d", len(tx.full.recs), len(tx.full.hdrs), len(tx.full.hbuf))
	}
	fill(1) // the free lists now hold every chunk the first transaction used
	plain := func() {
		tx.resetOutputs()
		for i := range n {
			rec := tx.record()
			rec.Headers = tx.sourceHeaders(source{topic: "orders", partition: int32(i % 6), offset: int64(i)}, 2, 6)
			rec.Headers = append(rec.Headers, tx.nanosHeader(headers.SourceOffset, int64(i)))
		}
	}
	if a := testing.AllocsPerRun(3, plain); a > 0 {
		t.Errorf("a transaction like the last one allocated %.0f times: its chunks should be reused", a)
	}
}
