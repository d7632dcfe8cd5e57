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

// Whatever removes an entry from live marks it gone, so that a transaction that read it (its
// pending.live) does not update a removed entry at commit; an entry that stays is updated in
// place and counted.
func TestLiveEntryGone(t *testing.T) {
	s := newStore[int]()
	entry := func(key string) *liveState[int] {
		t.Helper()
		s.putRaw(key, make([]byte, 4))
		ls := s.promote(key, 1)
		if ls == nil || ls.key != key || s.live[key] != ls {
			t.Fatalf("promote(%s) = %+v", key, ls)
		}
		return ls
	}
	a := entry("a")
	s.drop("a")
	b := entry("b")
	s.restorePut([]byte("b"), []byte("xy"))
	c := entry("c")
	s.putLive("c", 2, make([]byte, 3)) // replaced in place: the same entry
	if c.gone || c.state != 2 || s.live["c"] != c {
		t.Fatalf("entry c replaced in place: %+v", c)
	}
	d := entry("d")
	s.bound(0)
	for _, ls := range []*liveState[int]{a, b, c, d} {
		if !ls.gone {
			t.Errorf("entry %s removed from live but not marked gone", ls.key)
		}
	}
	e := entry("e")
	bytes := s.bytes
	s.index("e", 10)
	s.update(e, 7, make([]byte, 9))
	if s.live["e"] != e || e.state != 7 || s.bytes != bytes+5 || s.keys() != len(s.raw)+len(s.live) {
		t.Fatalf("update: %+v, %d bytes (want %d)", e, s.bytes, bytes+5)
	}
	if _, ok := s.idxAt["e"]; ok {
		t.Fatal("update kept the old expiry")
	}
	if got := s.promote("nothing", 1); got != nil {
		t.Fatalf("promote of a key with no bytes = %+v", got)
	}
}

// A key found in live has its open-transaction entry linked from there, a key that was not is
// in the overlay's map; find returns either, and reset unlinks and forgets both.
func TestOverlayFind(t *testing.T) {
	s := newStore[int]()
	s.putLive("old", 1, []byte("x"))
	o := &overlay[int]{parts: map[int32]map[string]*pending[int]{}}
	pe, ls := o.find(s, 3, "old")
	if pe != nil || ls == nil || ls.state != 1 {
		t.Fatalf("find(old) before add = %v, %+v", pe, ls)
	}
	a := o.add(3, "old", ls)
	if pe, got := o.find(s, 3, "old"); pe != a || got != ls || a.live != ls {
		t.Fatalf("find(old) after add = %p, %p; want %p, %p", pe, got, a, ls)
	}
	if len(o.parts[3]) != 0 {
		t.Fatalf("a key in live is also in the overlay's map: %v", o.parts[3])
	}
	b := o.add(3, "new", nil)
	if pe, got := o.find(s, 3, "new"); pe != b || got != nil {
		t.Fatalf("find(new) = %p, %p; want %p, nil", pe, got, b)
	}
	if pe, _ := o.find(s, 4, "new"); pe != nil {
		t.Fatal("a key's entry found under another partition")
	}
	if len(o.order) != 2 || o.order[0] != a || o.order[1] != b {
		t.Fatalf("first-touch order %v", o.order)
	}
	o.reset()
	if ls.pending != nil {
		t.Fatal("reset left the live entry linked to a dropped transaction's entry")
	}
	for _, k := range []string{"old", "new"} {
		if pe, _ := o.find(s, 3, k); pe != nil {
			t.Fatalf("find(%s) after reset = %+v", k, pe)
		}
	}
	if len(o.free) != 2 || o.free[0].key != "" || o.free[0].live != nil {
		t.Fatalf("reset kept %d entries for reuse, first %+v", len(o.free), o.free[0])
	}
}
