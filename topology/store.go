package topology

// store is the committed state of one partition: the changelog's latest value per key, as
// bytes. Keeping bytes (not decoded values) makes restore a copy and a map insert, and gives
// every transaction a freshly decoded value that no aborted transaction can have touched.
type store struct {
	vals  map[string][]byte
	bytes int64
	arena []byte // restore copies values into chunks of it: one allocation per chunk, not per record
}

// arenaChunk is the size of one restore allocation; values larger than a quarter of it get their own.
const arenaChunk = 1 << 20

func newStore() *store { return &store{vals: map[string][]byte{}} }

// restorePut applies one changelog record read during restore (value nil: tombstone).
func (s *store) restorePut(key, value []byte) {
	if value == nil {
		if old, ok := s.vals[string(key)]; ok {
			s.bytes -= int64(len(old))
			delete(s.vals, string(key))
		}
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
	s.set(string(key), v)
}

// set stores value (owned by the store from now on) or deletes the key when value is nil.
func (s *store) set(key string, value []byte) {
	if old, ok := s.vals[key]; ok {
		s.bytes -= int64(len(old))
	}
	if value == nil {
		delete(s.vals, key)
		return
	}
	s.vals[key] = value
	s.bytes += int64(len(value))
}

// pending is one key's state inside the open transaction.
type pending[S any] struct {
	state S
	found bool    // state is a real value (from the store or a Put), not the zero S
	op    StateOp // Keep: only read in this transaction; Put/Evict: write at commit
	enc   []byte  // encoded state for Put
	src   source  // the input that last changed the key
}

// source identifies an input record.
type source struct {
	topic     string
	partition int32
	offset    int64
}

// overlay holds the open transaction's state changes, per partition and key. It is applied to
// the stores only after the transaction commits and dropped otherwise.
type overlay[S any] struct {
	parts map[int32]map[string]*pending[S]
	order []overlayKey // first-touch order, so changelog records are produced deterministically
}

type overlayKey struct {
	partition int32
	key       string
}

func (o *overlay[S]) get(p int32, key string) (*pending[S], bool) {
	m := o.parts[p]
	if m == nil {
		return nil, false
	}
	e, ok := m[key]
	return e, ok
}

func (o *overlay[S]) add(p int32, key string, e *pending[S]) {
	m := o.parts[p]
	if m == nil {
		m = map[string]*pending[S]{}
		o.parts[p] = m
	}
	m[key] = e
	o.order = append(o.order, overlayKey{p, key})
}

func (o *overlay[S]) reset() {
	clear(o.parts)
	o.order = o.order[:0]
}
