// Package schemas holds retailflow's Avro contracts (the .avsc files under avro/, embedded in
// the binary), the typed Go values of every event, and the codecs between them.
//
// API summary (see each doc comment for the contract):
//
//	Contracts
//	  avro/<name>.avsc            one value schema per topic: orders, shipments, returns, loyalty,
//	                              erp, loyalty-commands, dlq (+ order_ledger, owned by the ledger)
//	  SchemaText(name), SchemaNames(), ValueSchema(topic) → SchemaName
//	  Event (Envelope + exactly one body), DeadLetter, LoyaltyCommand, CommandRequestID
//	  Every topic but dlq and the changelog carries an Event: the loyalty-commands value is
//	  Event{Envelope (event_type = command_type), LoyaltyCommand: &cmd}, not a bare LoyaltyCommand.
//	  TopicOf(EventType), EventTypes(), (*Event).BodyType(), (*Event).OrderID()
//
//	Codec (Avro body only, reflection over json tags, any Go type)
//	  NewCodec[T](name) / NewCodecFromSchema[T](text)     encode + decode
//	  NewResolvingCodec[T](writerText, readerText)         decode data of another schema version
//	  (*Codec[T]).Encode / AppendEncode / Decode / DecodeInto
//
//	Serde (Confluent wire format: 0x00, 4-byte id, body)
//	  NewSerde(ctx, WithRegistry(cl), WithPhysicalTopics(m), WithAutoRegister())  (offline without registry)
//	  Encode[T](s, topic, v), Decode[T](ctx, s, RecordRef, value)
//	  (*Serde).EncodeEvent, DecodeEvent (decode + ValidateFor), SchemaID(topic)
//	  RegisterSchemas(ctx, cl, physical) — subjects <physical-topic>-value, compatibility BACKWARD
//	  OfflineSchemaID(text), Subject(physicalTopic)
//	  *DecodeError{RecordRef, SchemaID, EventID, Class, Err}; Class ∈ bad-header, unknown-schema,
//	  incompatible-schema, avro, invalid (poison → DLQ) and registry-unavailable (Transient → retry)
//
//	Validation (the stateless processor)
//	  (*Event).Validate() / ValidateFor(topic) → *ValidationError{Problems: [{Path, Msg}]}
//
//	JSON form (retailflow produce / consume): one event per line, shaped by the json tags
//	  NewJSONReader(r).Next() (*Event, error) — errors "line 7: order_accepted.lines[0].quantity: …"
//	  EncodeJSON[T](*T) ([]byte, error), DecodeJSON[T]([]byte) (*T, error), DecodeEventJSON([]byte)
//
// How the codec works, and why (see BENCH.md for the figures):
//
// goavro (github.com/linkedin/goavro/v2) is the codec of record: it parses every schema, gives
// the canonical form (offline ids), and is the only path for data of another writer schema
// version (NewResolvingCodec) and for any type/schema pair the direct path does not cover.
// Its binary API goes through a "native form" — a map[string]any per record, a *big.Rat per
// decimal, an interface per value — which the reflective mapping (codec.go) then converted to
// the Go types. Profiles showed that form and its decimal↔big.Rat conversions to be most of the
// cost of encode and decode (schemas/BENCH.md has the figures).
// So each Codec also compiles, once, a direct binary plan (fastpath.go) from the parsed schema
// and the same field mapping: field offsets, one reader/writer per Avro type, decimals as
// int64 unscaled values. It covers records, arrays, ["null", T] unions, tagged union groups,
// boolean, int, long, string, enum, bytes, bytes decimal(p ≤ 18) and long timestamp-micros —
// everything retailflow's schemas and the ledger state use. The contract, enforced by
// FuzzFastDecode, FuzzFastEncode, FuzzFastLedgerState and TestFastPathAgreesWithGoavro with
// goavro as the reference: the direct path writes byte-identical output, and on arbitrary
// input decodes the identical value or fails where goavro fails. It never formats errors:
// on any failure the codec reruns the goavro path, so error texts and DecodeError classes are
// goavro's and the reflective mapping's, as before.
//
// A bounds guard runs in front of goavro: goavro allocates the capacity an array or map block
// claims before reading it, so a 7-byte value claiming 2^31-1 items made the process die of an
// unrecoverable out-of-memory error. Such input is now an ordinary avro-class decode error. The
// guard is the writer schema's skipper (fastPlanner.skipper), the walk a projection
// (NewProjectionCodec) takes over the fields it lacks.
//
// A projection reads its input in place and copies the strings it keeps. Its borrowing form
// (ProjectInto, NewBorrowingProjectionCodec) copies nothing: its strings are views of the input
// and it reuses what the destination holds from the previous decode (an optional's or a union
// branch's struct, an array's backing array), so a decode of the same shape into a grown
// destination allocates nothing (a union group's other branches are set to nil: a caller that
// alternates branches keeps their structs itself, as processors/accrual's Decode does). Its
// caller copies what it keeps before the input or the destination is reused, and clears the
// views it leaves there (they would keep the input's buffer alive).
//
// Validation builds field paths only when it reports a problem and checks decimal scales
// through a plan made once per type.
//
// Money is shopspring/decimal.Decimal at the scale the schema fixes (decimal(18,4) for amounts,
// decimal(12,3) for quantities, decimal(9,6) for rates, decimal(18,9) for fx); points are int64.
// Never float64. Codecs reject a decimal that does not fit its schema; they never round.
// Timestamps are UTC, microseconds (the Avro encoding truncates finer precision).
package schemas
