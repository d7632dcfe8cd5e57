package topology

import (
	"context"
	"testing"
)

// putLive keeps the memory store's byte count, key count and expiry index as drop-then-insert
// did, also on its one-lookup path for a key already decoded.
func TestPutLiveAccounting(t *testing.T) {
	s := newStore[int]()
	check := func(what string, bytes int64, keys int) {
		t.Helper()
		if s.bytes != bytes || s.keys() != keys {
			t.Fatalf("%s: %d bytes, %d keys; want %d, %d", what, s.bytes, s.keys(), bytes, keys)
		}
	}
	s.putRaw("a", make([]byte, 10))
	check("raw a", 10, 1)
	s.promote("a", 1)
	check("a promoted", 10, 1)
	s.putLive("a", 2, make([]byte, 20))
	check("a put live", 20, 1)
	if _, ok := s.raw["a"]; ok {
		t.Fatal("a is in raw and live")
	}
	s.index("a", 100)
	s.putLive("a", 3, make([]byte, 5))
	check("a put again", 5, 1)
	if _, ok := s.idxAt["a"]; ok {
		t.Fatal("a put without an expiry kept its old one")
	}
	if got := s.live["a"]; got.state != 3 || len(got.raw) != 5 {
		t.Fatalf("live a = %+v", got)
	}
	s.putLive("b", 1, make([]byte, 7))
	check("b put live", 12, 2)
	s.drop("a")
	check("a dropped", 7, 1)
}

// With a persistent store, putLive of a key decoded before also drops its value-cache entry
// (the one-lookup path is the memory store's only).
func TestPutLiveDropsCachedValue(t *testing.T) {
	d, err := openDiskStore(context.Background(), t.TempDir(), "sum", DiskOptions{CacheBytes: 1 << 20}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	s := newDiskStore[int](d, 0, partMeta{})
	s.putHot("a", []byte("old"))
	s.promote("a", 1)
	s.putLive("a", 2, []byte("new"))
	if v, ok := s.hot["a"]; ok {
		t.Fatalf("the value cache still holds a's old value %q", v)
	}
	if s.hotBytes != 0 {
		t.Fatalf("value cache bytes %d after its only entry went", s.hotBytes)
	}
}
