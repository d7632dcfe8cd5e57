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
// Money is shopspring/decimal.Decimal at the scale the schema fixes (decimal(18,4) for amounts,
// decimal(12,3) for quantities, decimal(9,6) for rates, decimal(18,9) for fx); points are int64.
// Never float64. Codecs reject a decimal that does not fit its schema; they never round.
// Timestamps are UTC, microseconds (the Avro encoding truncates finer precision).
package schemas
