package schemas

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// HeaderSize is the size of the Confluent wire-format header: magic byte 0 and a 4-byte
// big-endian schema id, followed by the Avro binary body.
const HeaderSize = 5

// ErrRegistryUnavailable is wrapped by errors caused by a schema registry that could not be
// asked (network, timeout, 5xx). Such errors are transient: retry, never dead-letter.
var ErrRegistryUnavailable = errors.New("schema registry unavailable")

// RecordRef says where a record came from, for errors and the DLQ.
type RecordRef struct {
	Topic     Topic
	Partition int32
	Offset    int64
}

func (r RecordRef) String() string { return fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset) }

// DecodeError is every error Serde's decode functions return: where the record is, the schema
// id when the header was readable (-1 otherwise), and the class the DLQ records. Class
// ClassRegistryUnavailable is transient (Transient reports true): retry, do not dead-letter.
type DecodeError struct {
	RecordRef
	SchemaID int
	EventID  string // when the value decoded far enough to have one
	Class    ErrorClass
	Err      error
}

func (e *DecodeError) Error() string {
	s := fmt.Sprintf("schemas: decode %s", e.RecordRef)
	if e.SchemaID >= 0 {
		s += fmt.Sprintf(" (schema id %d)", e.SchemaID)
	}
	if e.EventID != "" {
		s += " event " + e.EventID
	}
	return s + ": " + string(e.Class) + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Transient reports whether the same bytes may decode on retry (the registry was unreachable).
func (e *DecodeError) Transient() bool { return e.Class.Transient() }

// Subject is the Confluent subject of a physical topic's values (TopicNameStrategy).
func Subject(physicalTopic string) string { return physicalTopic + "-value" }

// Serde encodes and decodes the values of every retailflow topic in the Confluent wire format.
// It knows, per logical topic, the current schema (embedded) and its id, and it can decode any
// schema id: the current ones directly, older or newer ones by fetching the writer schema from
// the registry and resolving it into the current Go type (NewResolvingCodec).
//
// Offline (no registry) the ids are derived from the embedded schemas (OfflineSchemaID: the
// first four bytes of SHA-256 over the specification's Parsing Canonical Form, top bit clear),
// so every process, in any language, computes the same ids. Offline decoding knows the current
// schemas and every released version (avro/released), resolving older writers into the current
// types, and the legacy ids of earlier releases (LegacyOfflineSchemaID).
//
// A Serde is safe for concurrent use. It caches a codec per (schema id, topic, Go type).
type Serde struct {
	reg     *sr.Client
	current map[Topic]*topicSchema

	mu         sync.RWMutex
	texts      map[int]string    // schema id → schema text, for every id seen
	missing    map[int]time.Time // ids the registry answered 404 for → when to ask again; bounded, see markMissing
	missingTTL time.Duration
	codecs     sync.Map // codecKey → *Codec[T]
}

type topicSchema struct {
	name    SchemaName
	text    string
	id      int
	subject string
	// sizeHint is the largest framed value encoded so far (capped at maxSizeHint), so Encode
	// allocates its buffer once.
	sizeHint atomic.Int64
}

// maxSizeHint caps Encode's initial allocation: one huge value must not make every later
// buffer huge.
const maxSizeHint = 64 << 10

type codecKey struct {
	id    int
	topic Topic
	typ   reflect.Type
	mode  decodeMode
}

// decodeMode is the kind of codec a decode of a type asks for.
type decodeMode uint8

const (
	decodeFull    decodeMode = iota // Decode: the whole value
	decodeProject                   // Project: a projection, its strings copied
	decodeBorrow                    // ProjectInto: a borrowing projection (NewBorrowingProjectionCodec)
)

// maxMissing bounds the negative cache of unknown ids, so a stream of garbage ids cannot grow
// memory; when full it is cleared (the registry is asked again).
const maxMissing = 1024

// DefaultNegativeCacheTTL is how long an id the registry answered 404 for is not asked again:
// long enough that a stream of garbage ids does not hammer the registry, short enough that an
// id registered a moment late (the producer's deploy raced the registration) is found soon.
const DefaultNegativeCacheTTL = 30 * time.Second

// ErrRegistryAuth is wrapped by every error caused by the registry refusing the credentials.
var ErrRegistryAuth = errors.New("the schema registry refused the credentials (check registry.username, registry.password and the registry's ACLs)")

// SerdeOption configures NewSerde.
type SerdeOption func(*serdeConfig)

type serdeConfig struct {
	reg          *sr.Client
	physical     map[Topic]string
	autoRegister bool
	released     map[SchemaName][]string // extra released versions (tests of a future release)
	missingTTL   time.Duration
}

// WithNegativeCacheTTL sets how long an id the registry answered 404 for is not asked again
// (DefaultNegativeCacheTTL when not set or not positive).
func WithNegativeCacheTTL(d time.Duration) SerdeOption {
	return func(c *serdeConfig) { c.missingTTL = d }
}

// WithRegistry makes the Serde use a Confluent-compatible schema registry for ids.
// Without it the Serde is offline.
func WithRegistry(cl *sr.Client) SerdeOption { return func(c *serdeConfig) { c.reg = cl } }

// WithPhysicalTopics names the physical topic of each logical topic; the subject is
// Subject(physical). Topics not named use their logical name.
func WithPhysicalTopics(m map[Topic]string) SerdeOption {
	return func(c *serdeConfig) { c.physical = m }
}

// WithAutoRegister registers the embedded schemas that the registry lacks (with
// RegisterSchemas' compatibility setting) instead of failing. For tests and the demo; in
// production `retailflow topics create` registers them.
func WithAutoRegister() SerdeOption { return func(c *serdeConfig) { c.autoRegister = true } }

// NewSerde builds a Serde for every logical topic that has an embedded value schema. With a
// registry it looks up the id of each current schema under its subject; a schema that is not
// registered is an error naming the subject (unless WithAutoRegister).
func NewSerde(ctx context.Context, opts ...SerdeOption) (*Serde, error) {
	var cfg serdeConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.missingTTL <= 0 {
		cfg.missingTTL = DefaultNegativeCacheTTL
	}
	s := &Serde{reg: cfg.reg, current: map[Topic]*topicSchema{}, texts: map[int]string{}, missing: map[int]time.Time{}, missingTTL: cfg.missingTTL}
	schemas, err := embeddedTopicSchemas(cfg.physical)
	if err != nil {
		return nil, err
	}
	if cfg.reg != nil && cfg.autoRegister {
		if _, err := registerSchemas(ctx, cfg.reg, schemas); err != nil {
			return nil, err
		}
	}
	for _, topic := range sortedTopics(schemas) { // sorted: the same error first every time
		ts := schemas[topic]
		if cfg.reg == nil {
			if ts.id, err = OfflineSchemaID(ts.text); err != nil {
				return nil, fmt.Errorf("schemas: %s: %w", ts.name, err)
			}
		} else {
			ss, err := cfg.reg.LookupSchema(ctx, ts.subject, sr.Schema{Schema: ts.text, Type: sr.TypeAvro})
			if err != nil {
				if isNotFound(err) {
					return nil, fmt.Errorf("schemas: the %s schema is not registered under subject %q (run `retailflow topics create`): %w", ts.name, ts.subject, err)
				}
				if code, ok := authFailure(err); ok {
					return nil, fmt.Errorf("schemas: look up subject %q: %w (HTTP %d): %w", ts.subject, ErrRegistryAuth, code, err)
				}
				return nil, fmt.Errorf("schemas: look up subject %q: %w: %w", ts.subject, ErrRegistryUnavailable, err)
			}
			ts.id = ss.ID
		}
		if other, dup := s.texts[ts.id]; dup && other != ts.text {
			return nil, fmt.Errorf("schemas: schema id %d is shared by two different schemas (%s)", ts.id, ts.name)
		}
		s.texts[ts.id] = ts.text
		if cfg.reg == nil {
			if err := s.offlineIDs(ts, cfg.released[ts.name]); err != nil {
				return nil, err
			}
		}
		s.current[topic] = ts
	}
	return s, nil
}

func embeddedTopicSchemas(physical map[Topic]string) (map[Topic]*topicSchema, error) {
	out := map[Topic]*topicSchema{}
	for topic, name := range schemaNames {
		text, err := SchemaText(name)
		if err != nil {
			continue // not written yet (e.g. the ledger's changelog schema)
		}
		p := string(topic)
		if physical[topic] != "" {
			p = physical[topic]
		}
		out[topic] = &topicSchema{name: name, text: text, subject: Subject(p)}
	}
	if len(out) == 0 {
		return nil, errors.New("schemas: no embedded schemas")
	}
	return out, nil
}

// OfflineSchemaID is the schema id offline mode uses: the first four bytes of SHA-256 over
// the schema's Parsing Canonical Form as the Avro specification defines it, top bit clear (ids
// stay positive int32). A producer in any language computes the same id, e.g. in Python:
//
//	int.from_bytes(hashlib.sha256(fastavro.schema.to_parsing_canonical_form(s).encode()).digest()[:4], "big") & 0x7fffffff
func OfflineSchemaID(schema string) (int, error) {
	pcf, err := ParsingCanonicalForm(schema)
	if err != nil {
		return 0, err
	}
	return idOf(pcf), nil
}

// LegacyOfflineSchemaID is the id that releases before the specification's canonical form
// used (a hash of goavro's canonical form, which keeps logical types). Data written with it
// stays decodable offline; nothing encodes with it.
func LegacyOfflineSchemaID(schema string) (int, error) {
	c, err := goavro.NewCodec(schema)
	if err != nil {
		return 0, err
	}
	return idOf(c.CanonicalSchema()), nil
}

func idOf(canonical string) int {
	sum := sha256.Sum256([]byte(canonical))
	return int(binary.BigEndian.Uint32(sum[:4]) & 0x7fffffff)
}

// SchemaFingerprint is the SHA-256 of a schema's Parsing Canonical Form, hex: the fingerprint
// the Avro specification and single-object encoding name.
func SchemaFingerprint(schema string) (string, error) {
	pcf, err := ParsingCanonicalForm(schema)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(pcf))
	return hex.EncodeToString(sum[:]), nil
}

// offlineIDs registers, for an offline Serde, every id a producer may have written a topic's
// values with: the specification-form and legacy ids of the current schema and of every released
// version. Writers of a released version are decoded by resolution into the current type.
func (s *Serde) offlineIDs(ts *topicSchema, extra []string) error {
	texts := []string{ts.text}
	released, err := ReleasedSchemas(ts.name)
	if err != nil {
		return err
	}
	for _, r := range released {
		texts = append(texts, r.Text)
	}
	texts = append(texts, extra...)
	for i, text := range texts {
		legacy, err := LegacyOfflineSchemaID(text)
		if err != nil {
			return fmt.Errorf("schemas: %s (released version %d): %w", ts.name, i, err)
		}
		spec, err := OfflineSchemaID(text)
		if err != nil {
			return fmt.Errorf("schemas: %s (released version %d): %w", ts.name, i, err)
		}
		for _, id := range []int{spec, legacy} {
			if other, dup := s.texts[id]; dup && other != text {
				if a, b := mustCanonical(other), mustCanonical(text); a == b {
					continue // the same schema, formatted differently
				}
				return fmt.Errorf("schemas: schema id %d is shared by two different schemas (%s)", id, ts.name)
			}
			s.texts[id] = text
		}
	}
	return nil
}

func mustCanonical(text string) string {
	c, err := ParsingCanonicalForm(text)
	if err != nil {
		return text
	}
	return c
}

// RegisterSchemas registers every embedded value schema under Subject(physical topic) with
// compatibility BACKWARD, and returns the ids. Registering an unchanged schema is a no-op
// that returns its existing id; an incompatible change is refused by the registry.
// `retailflow topics create` calls it.
func RegisterSchemas(ctx context.Context, cl *sr.Client, physical map[Topic]string) (map[Topic]int, error) {
	schemas, err := embeddedTopicSchemas(physical)
	if err != nil {
		return nil, err
	}
	return registerSchemas(ctx, cl, schemas)
}

func registerSchemas(ctx context.Context, cl *sr.Client, schemas map[Topic]*topicSchema) (map[Topic]int, error) {
	ids := map[Topic]int{}
	for _, topic := range sortedTopics(schemas) {
		ts := schemas[topic]
		for _, r := range cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, ts.subject) {
			if r.Err != nil {
				return nil, fmt.Errorf("schemas: set compatibility BACKWARD on %q: %w", ts.subject, r.Err)
			}
		}
		ss, err := cl.CreateSchema(ctx, ts.subject, sr.Schema{Schema: ts.text, Type: sr.TypeAvro})
		if err != nil {
			return nil, fmt.Errorf("schemas: register %s under %q: %w", ts.name, ts.subject, err)
		}
		ids[topic] = ss.ID
	}
	return ids, nil
}

func sortedTopics(m map[Topic]*topicSchema) []Topic {
	out := make([]Topic, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// SchemaID returns the id of the current schema of a topic.
func (s *Serde) SchemaID(t Topic) (int, error) {
	ts, ok := s.current[t]
	if !ok {
		return 0, fmt.Errorf("schemas: no value schema for topic %q", t)
	}
	return ts.id, nil
}

// Encode frames *v as the current schema of topic t: header with the schema id, then Avro.
func Encode[T any](s *Serde, t Topic, v *T) ([]byte, error) {
	ts, ok := s.current[t]
	if !ok {
		return nil, fmt.Errorf("schemas: no value schema for topic %q", t)
	}
	c, err := codecFor[T](s, ts.id, t)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w", t, err)
	}
	out := make([]byte, HeaderSize, max(256, ts.sizeHint.Load()))
	binary.BigEndian.PutUint32(out[1:], uint32(ts.id))
	out, err = c.AppendEncode(out, v)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w", t, err)
	}
	if n := int64(len(out)); n > ts.sizeHint.Load() && n <= maxSizeHint {
		ts.sizeHint.Store(n)
	}
	return out, nil
}

// Decode reads one framed value of ref.Topic into a T. Every error is a *DecodeError.
// It may call the registry (for an id it has not seen), bounded by ctx.
func Decode[T any](ctx context.Context, s *Serde, ref RecordRef, value []byte) (*T, error) {
	v := new(T)
	if err := decode(ctx, s, ref, value, decodeFull, v); err != nil {
		return nil, err
	}
	return v, nil
}

// decode reads one framed value of ref.Topic into *v with the codec of mode; *v must be the
// zero value unless mode is decodeBorrow.
func decode[T any](ctx context.Context, s *Serde, ref RecordRef, value []byte, mode decodeMode, v *T) error {
	fail := func(id int, class ErrorClass, err error) error {
		return &DecodeError{RecordRef: ref, SchemaID: id, Class: class, Err: err}
	}
	if len(value) < HeaderSize {
		return fail(-1, ClassBadHeader, fmt.Errorf("value of %d bytes is shorter than the %d-byte Confluent header", len(value), HeaderSize))
	}
	if value[0] != 0 {
		return fail(-1, ClassBadHeader, fmt.Errorf("magic byte is 0x%02x, want 0x00", value[0]))
	}
	id := int(binary.BigEndian.Uint32(value[1:HeaderSize]))
	if _, ok := s.current[ref.Topic]; !ok {
		return fail(id, ClassUnknownSchema, fmt.Errorf("no value schema for topic %q", ref.Topic))
	}
	c, err := codecForID[T](ctx, s, id, ref.Topic, mode)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			de.RecordRef, de.SchemaID = ref, id
			return de
		}
		return fail(id, ClassIncompatibleSchema, err)
	}
	if mode == decodeBorrow && (c.fast == nil || !c.fast.borrow) {
		// an older writer's schema (a resolving codec) or no direct plan: the goavro path
		// decodes into a zero value
		var zero T
		*v = zero
	}
	if err := c.DecodeInto(value[HeaderSize:], v); err != nil {
		return fail(id, ClassAvro, err)
	}
	return nil
}

// EncodeEvent frames an event for topic t. It does not validate (generators may produce
// invalid events on purpose); call e.Validate first where that matters.
func (s *Serde) EncodeEvent(t Topic, e *Event) ([]byte, error) { return Encode(s, t, e) }

// DecodeEvent decodes an event of ref.Topic and validates it (Event.ValidateFor): a value that
// decodes but breaks a rule is a *DecodeError of class ClassInvalid carrying the event id; one
// with a time outside MinEventTime–MaxEventTime is of class ClassTimeOutOfRange.
func (s *Serde) DecodeEvent(ctx context.Context, ref RecordRef, value []byte) (*Event, error) {
	return s.DecodeEventAt(ctx, ref, value, time.Time{}, 0)
}

// DecodeEventAt is DecodeEvent that also bounds the event's times against the Kafka record's
// timestamp (Event.CheckTimes with maxSkew): an event dated further ahead is a *DecodeError of
// class ClassTimeOutOfRange. A zero recordTime or maxSkew checks the absolute range only.
func (s *Serde) DecodeEventAt(ctx context.Context, ref RecordRef, value []byte, recordTime time.Time, maxSkew time.Duration) (*Event, error) {
	e, err := Decode[Event](ctx, s, ref, value)
	if err != nil {
		return nil, err
	}
	if err := e.ValidateFor(ref.Topic); err != nil {
		return nil, &DecodeError{RecordRef: ref, SchemaID: int(binary.BigEndian.Uint32(value[1:HeaderSize])),
			EventID: e.EventID, Class: ClassInvalid, Err: err}
	}
	if err := e.CheckTimes(recordTime, maxSkew); err != nil {
		return nil, &DecodeError{RecordRef: ref, SchemaID: int(binary.BigEndian.Uint32(value[1:HeaderSize])),
			EventID: e.EventID, Class: ClassTimeOutOfRange, Err: err}
	}
	return e, nil
}

// codecFor returns the cached codec for a known id (current schemas).
func codecFor[T any](s *Serde, id int, t Topic) (*Codec[T], error) {
	return codecForID[T](context.Background(), s, id, t, decodeFull)
}

func codecForID[T any](ctx context.Context, s *Serde, id int, t Topic, mode decodeMode) (*Codec[T], error) {
	key := codecKey{id: id, topic: t, typ: reflect.TypeFor[T](), mode: mode}
	if c, ok := s.codecs.Load(key); ok {
		return c.(*Codec[T]), nil
	}
	text, err := s.schemaText(ctx, id)
	if err != nil {
		return nil, err
	}
	cur := s.current[t]
	var c *Codec[T]
	switch {
	case mode != decodeFull && (id == cur.id || text == cur.text):
		c, err = newProjectionCodec[T](text, mode == decodeBorrow)
	case id == cur.id || text == cur.text:
		c, err = NewCodecFromSchema[T](text)
	default:
		c, err = NewResolvingCodec[T](text, cur.text)
	}
	if err != nil {
		return nil, &DecodeError{Class: ClassIncompatibleSchema, Err: fmt.Errorf("writer schema %d cannot be read as %s (%s): %w", id, reflect.TypeFor[T](), cur.name, err)}
	}
	actual, _ := s.codecs.LoadOrStore(key, c)
	return actual.(*Codec[T]), nil
}

// schemaText returns the text of a schema id, asking the registry when it is not known yet.
func (s *Serde) schemaText(ctx context.Context, id int) (string, error) {
	s.mu.RLock()
	text, ok := s.texts[id]
	retryAt, missing := s.missing[id]
	s.mu.RUnlock()
	missing = missing && time.Now().Before(retryAt)
	if ok {
		return text, nil
	}
	if s.reg == nil || missing {
		return "", &DecodeError{Class: ClassUnknownSchema, Err: fmt.Errorf("schema id %d is not known%s", id, map[bool]string{true: "", false: " (offline: only the embedded schemas are)"}[s.reg != nil])}
	}
	sc, err := s.reg.SchemaByID(ctx, id)
	if err != nil {
		if isNotFound(err) {
			s.markMissing(id)
			return "", &DecodeError{Class: ClassUnknownSchema, Err: fmt.Errorf("schema id %d is not registered: %w", id, err)}
		}
		if code, ok := authFailure(err); ok {
			return "", &DecodeError{Class: ClassRegistryAuth, Err: fmt.Errorf("schema id %d: %w (HTTP %d): %w", id, ErrRegistryAuth, code, err)}
		}
		return "", &DecodeError{Class: ClassRegistryUnavailable, Err: fmt.Errorf("%w: schema id %d: %w", ErrRegistryUnavailable, id, err)}
	}
	if sc.Type != sr.TypeAvro {
		return "", &DecodeError{Class: ClassUnknownSchema, Err: fmt.Errorf("schema id %d is %s, not Avro", id, sc.Type)}
	}
	if len(sc.References) > 0 {
		return "", &DecodeError{Class: ClassUnknownSchema, Err: fmt.Errorf("schema id %d uses references, which retailflow does not resolve", id)}
	}
	s.mu.Lock()
	s.texts[id] = sc.Schema
	s.mu.Unlock()
	return sc.Schema, nil
}

func (s *Serde) markMissing(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.missing) >= maxMissing {
		clear(s.missing)
	}
	s.missing[id] = time.Now().Add(s.missingTTL)
}

// authFailure reports a registry answer that the credentials are refused (401, 403).
func authFailure(err error) (int, bool) {
	var re *sr.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden) {
		return re.StatusCode, true
	}
	return 0, false
}

// isNotFound reports a registry answer that the thing does not exist (poison, not transient).
func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}
