package topology

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// store is the committed state of one partition: the changelog's latest value per key.
//
// A key lives in exactly one of two maps. raw holds changelog bytes not yet decoded: restore
// only copies bytes (one arena allocation per chunk, a map insert per record), so a restore
// costs no decoding. live holds decoded states (with their bytes); it is used only for stages
// whose states are immutable (Processor.ImmutableState), where the runtime decodes a key once, on
// its first use, and from then on keeps the value the last committed transaction produced. A
// decoded state takes several times the memory of its bytes (bench/RESULTS.md), so live is bounded (Options.MaxDecodedStates): beyond the bound, arbitrary keys
// go back to raw and are decoded again on their next use. Without ImmutableState every
// committed state goes back to raw as its encoded bytes, and every transaction decodes a
// fresh copy that no aborted transaction can have touched.
//
// With a persistent store (Options.StateDir) the bytes live on disk instead of in raw: disk is
// the partition's part of the Runner's diskStore and raw stays empty; live is then only a
// bounded cache of decoded states whose bytes are on disk. The runner writes committed states
// to disk (applyOverlay), the store here only reads them.
type store[S any] struct {
	raw   map[string][]byte
	live  map[string]*liveState[S]
	bytes int64  // sum of the changelog value sizes of every key (raw and live); memory mode only
	arena []byte // restore copies values into chunks of it: one allocation per chunk, not per record

	disk *diskStore // nil: memory mode
	part int32
	meta partMeta // disk mode: the checkpoint on disk (kept equal to it by the runner)
	// disk mode: Pebble's estimate of the partition's bytes, refreshed at most every
	// diskSizeEvery (it walks the LSM's file metadata: not for every commit)
	diskSize   int64
	diskSizeAt time.Time

	// disk mode: the committed values of recently written keys (the value cache), so the next
	// event of an order reads its state from memory instead of a Pebble Get (a data block read
	// and decompressed, often from a file a compaction has just written); bounded across the
	// runner's stores by DiskOptions.ValueCacheBytes (Runner.boundValueCache)
	hot      map[string][]byte
	hotBytes int64

	// time-driven eviction (sweep.go): the partition's committed stream time (unix ns; on disk
	// also in meta), and in memory mode the expiry index: a heap of entries, and each key's
	// indexed expiry (an entry whose time differs, or whose key is not here, is stale)
	streamTime int64
	idx        expiryHeap
	idxAt      map[string]int64
}

const diskSizeEvery = 30 * time.Second

// liveState is a decoded committed state and its changelog value, under its key (the map's
// key string: an event of the key reads it here instead of converting its record's key). An
// open transaction's pending entry may point at it (pending.live) so that its commit updates it
// without a lookup: whatever removes an entry from live marks it gone (unlink), and a gone
// entry is never updated.
type liveState[S any] struct {
	key   string
	state S
	raw   []byte
	gone  bool
	// pending: the open transaction's entry for the key (overlay.add), nil if the transaction
	// has not touched it; an event finds it here with the same lookup that finds the state
	pending *pending[S]
}

// unlink removes key's entry from live, marking it gone.
func (s *store[S]) unlink(key string, ls *liveState[S]) {
	ls.gone = true
	delete(s.live, key)
}

// arenaChunk is the size of one restore allocation; values larger than a quarter of it get their own.
const arenaChunk = 1 << 20

func newStore[S any]() *store[S] {
	return &store[S]{raw: map[string][]byte{}, live: map[string]*liveState[S]{}, streamTime: noStreamTime}
}

// noStreamTime is a partition's stream time before any event: nothing is due.
const noStreamTime = -1<<63 + 1

// newDiskStore is the store of partition p kept in d; m is its checkpoint on disk.
func newDiskStore[S any](d *diskStore, p int32, m partMeta) *store[S] {
	return &store[S]{live: map[string]*liveState[S]{}, disk: d, part: p, meta: m, streamTime: m.StreamTime, hot: map[string][]byte{}}
}

// keys is the number of keys with a state.
func (s *store[S]) keys() int {
	if s.disk != nil {
		return int(s.meta.Keys)
	}
	return len(s.raw) + len(s.live)
}

// size is the approximate bytes of the partition's states: in memory, the sum of the changelog
// value sizes; on disk, Pebble's estimate of its (compressed) files.
func (s *store[S]) size() int64 {
	if s.disk != nil {
		if now := time.Now(); now.Sub(s.diskSizeAt) >= diskSizeEvery {
			s.diskSize, s.diskSizeAt = s.disk.diskUsage(s.part), now
		}
		return s.diskSize
	}
	return s.bytes
}

// lookup returns key's committed bytes when it has no decoded state in live. The slice is the
// store's (memory) or a copy (disk): the caller must not modify it. A disk read error is not the
// record's fault: the caller stops.
func (s *store[S]) lookup(key string) ([]byte, bool, error) {
	if s.disk != nil {
		if v, ok := s.hot[key]; ok {
			return v, true, nil
		}
		return s.disk.get(s.part, key)
	}
	v, ok := s.raw[key]
	return v, ok, nil
}

// restorePut applies one changelog record read during restore (value nil: tombstone).
func (s *store[S]) restorePut(key, value []byte) {
	if value == nil {
		s.drop(string(key))
		return
	}
	var v []byte
	if len(value) > arenaChunk/4 {
		v = append([]byte(nil), value...)
	} else {
		if cap(s.arena)-len(s.arena) < len(value) {
			s.arena = make([]byte, 0, arenaChunk)
		}
		start := len(s.arena)
		s.arena = append(s.arena, value...)
		v = s.arena[start:len(s.arena):len(s.arena)]
	}
	// A restore sees each key's history in offset order, so the key is usually already in raw
	// (compaction has not run yet): replace it without a second lookup through drop.
	if old, ok := s.raw[string(key)]; ok {
		s.bytes -= int64(len(old))
	} else if ls, ok := s.live[string(key)]; ok {
		s.bytes -= int64(len(ls.raw))
		s.unlink(ls.key, ls)
	}
	s.raw[string(key)] = v
	s.bytes += int64(len(v))
}

// drop deletes the key.
func (s *store[S]) drop(key string) {
	delete(s.idxAt, key)
	if v, ok := s.hot[key]; ok {
		s.hotBytes -= hotSize(key, v)
		delete(s.hot, key)
	}
	if old, ok := s.raw[key]; ok {
		s.bytes -= int64(len(old))
		delete(s.raw, key)
		return
	}
	if old, ok := s.live[key]; ok {
		s.bytes -= int64(len(old.raw))
		s.unlink(key, old)
	}
}

// putRaw stores a committed key's encoded state (owned by the store from now on).
func (s *store[S]) putRaw(key string, value []byte) {
	s.drop(key)
	s.raw[key] = value
	s.bytes += int64(len(value))
}

// putHot keeps a key's committed value (written to disk; owned by the store from now on) in
// the value cache.
//
// The encoder allocates a state with room to spare (its buffer is sized for the largest state
// it has seen), so a value with much more capacity than length is copied first; a value is
// counted by its capacity, its key and hotEntryBytes of map entry.
func (s *store[S]) putHot(key string, value []byte) {
	if cap(value) > len(value)+len(value)/4 {
		value = bytes.Clone(value)
	}
	if old, ok := s.hot[key]; ok {
		s.hotBytes -= hotSize(key, old)
	}
	s.hot[key] = value
	s.hotBytes += hotSize(key, value)
}

// hotEntryBytes is what a value cache entry costs besides its key and value: the map's slot
// (string and slice headers, hash bits) and the key's and value's allocation headers, roughly.
const hotEntryBytes = 64

func hotSize(key string, value []byte) int64 { return int64(len(key) + cap(value) + hotEntryBytes) }

// shrinkHot drops cached values until at most limit bytes are left (which go is arbitrary: map
// order; it drops a tenth more than needed so that it runs rarely). The values stay on disk.
func (s *store[S]) shrinkHot(limit int64) {
	if s.hotBytes <= limit {
		return
	}
	target := limit - limit/10
	for k, v := range s.hot {
		if s.hotBytes <= target {
			break
		}
		s.hotBytes -= hotSize(k, v)
		delete(s.hot, k)
	}
}

// putLive stores a committed key's decoded state and its changelog value (owned by the store).
func (s *store[S]) putLive(key string, state S, value []byte) {
	s.putLiveAt(s.live[key], key, state, value)
}

// putLiveAt is putLive for a key whose entry in live the caller has already looked up (ls, nil
// if it had none; it may have gone since): a memory store updates a live entry in place.
func (s *store[S]) putLiveAt(ls *liveState[S], key string, state S, value []byte) {
	if ls != nil && !ls.gone && s.disk == nil {
		s.update(ls, state, value)
		return
	}
	s.drop(key)
	s.live[key] = &liveState[S]{key: key, state: state, raw: value}
	s.bytes += int64(len(value))
}

// update replaces the state and value of ls, an entry of live that is not gone, in memory mode:
// putLive for a key decoded before, without its lookup. Live and raw hold a key at most once
// between them, and only idxAt can hold it besides (hot is the persistent store's).
func (s *store[S]) update(ls *liveState[S], state S, value []byte) {
	if s.idxAt != nil {
		delete(s.idxAt, ls.key)
	}
	s.bytes += int64(len(value) - len(ls.raw))
	ls.state, ls.raw = state, value
}

// promote moves a key decoded from raw into live (ImmutableState only), so it is decoded once,
// and returns its entry (nil if key had no committed bytes in memory mode).
func (s *store[S]) promote(key string, state S) *liveState[S] {
	if s.disk != nil {
		if old, ok := s.live[key]; ok {
			s.unlink(key, old) // not reached: process promotes only a key find did not see in live
		}
		ls := &liveState[S]{key: key, state: state}
		s.live[key] = ls
		return ls
	}
	if v, ok := s.raw[key]; ok {
		delete(s.raw, key)
		ls := &liveState[S]{key: key, state: state, raw: v}
		s.live[key] = ls
		return ls
	}
	return nil
}

// bound moves keys from live back to raw until at most limit are decoded. Which keys go is
// arbitrary (map order); it takes a tenth more than needed so that it runs rarely.
func (s *store[S]) bound(limit int) {
	if len(s.live) <= limit {
		return
	}
	target := limit - limit/10
	for k, ls := range s.live {
		if len(s.live) <= target {
			break
		}
		s.unlink(k, ls)
		if s.disk == nil { // on disk the bytes are there already
			s.raw[k] = ls.raw
		}
	}
}

// pending is one key's state inside the open transaction.
type pending[S any] struct {
	key       string
	partition int32
	state     S
	found     bool    // state is a real value (from the store or a Put), not the zero S
	op        StateOp // Keep: only read in this transaction; Put/Evict: write at commit
	enc       []byte  // encoded state for Put: set when the changelog is prepared (or per event, see Runner.eagerEncode)
	src       source  // the input that last changed the key
	// existed: the key had a committed state when the transaction first read it (the
	// persistent store's key count)
	existed bool
	out     *kgo.Record // the changelog record produced for the key (its offset once committed)
	// live: the key's decoded committed entry when the transaction read it from the store's
	// live map, which links back to this entry (overlay.find); in memory mode the commit
	// updates it in place unless it is gone by then
	live *liveState[S]
	// time-driven eviction (sweep.go): a Put's expiry (unix ns), set when its changelog record
	// is produced; a sweep tombstone's headers
	exp    int64
	hasExp bool
	hdrs   []kgo.RecordHeader
}

// source identifies an input record.
type source struct {
	topic     string
	partition int32
	offset    int64
}

// overlay holds the open transaction's state changes, per partition and key. It is applied to
// the stores only after the transaction commits and dropped otherwise.
//
// A key the transaction found in its store's live map has its entry linked from there
// (liveState.pending) and not in parts: find looks in live first, so most events of a
// transaction cost one map lookup. parts holds the entries of keys that were not in live when
// the transaction first touched them. Nothing adds a key to live during a transaction except
// promote, which comes before the key's add; the commit's putLive comes after the last find.
type overlay[S any] struct {
	parts map[int32]map[string]*pending[S]
	order []*pending[S] // first-touch order, so changelog records are produced deterministically
	free  []*pending[S] // entries of earlier transactions, reused (nothing refers to them after reset)
}

// find returns key's entry in the open transaction (nil if it has none) and its decoded
// committed state in st (nil if it is not in live).
func (o *overlay[S]) find(st *store[S], p int32, key string) (*pending[S], *liveState[S]) {
	if ls := st.live[key]; ls != nil {
		return ls.pending, ls
	}
	return o.parts[p][key], nil
}

// add returns a new, zero entry for key, which must have none yet; ls is the key's entry in
// its store's live map as find returned it, or nil.
func (o *overlay[S]) add(p int32, key string, ls *liveState[S]) *pending[S] {
	var e *pending[S]
	if n := len(o.free); n > 0 {
		e, o.free = o.free[n-1], o.free[:n-1]
	} else {
		e = new(pending[S])
	}
	e.key, e.partition, e.live = key, p, ls
	if ls != nil {
		ls.pending = e
	} else {
		m := o.parts[p]
		if m == nil {
			m = map[string]*pending[S]{}
			o.parts[p] = m
		}
		m[key] = e
	}
	o.order = append(o.order, e)
	return e
}

// reset empties the overlay; the entries are zeroed (so they hold no state), unlinked from
// live, and kept for reuse.
func (o *overlay[S]) reset() {
	for _, e := range o.order {
		if e.live != nil {
			e.live.pending = nil
		}
		*e = pending[S]{}
		o.free = append(o.free, e)
	}
	for _, m := range o.parts {
		clear(m)
	}
	o.order = o.order[:0]
}
