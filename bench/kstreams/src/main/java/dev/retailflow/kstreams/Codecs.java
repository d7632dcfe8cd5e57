package dev.retailflow.kstreams;

import dev.retailflow.kstreams.AccrualCore.Command;
import dev.retailflow.kstreams.AccrualCore.Event;
import dev.retailflow.kstreams.AccrualCore.Line;
import dev.retailflow.kstreams.AccrualCore.Move;
import dev.retailflow.kstreams.AccrualCore.MoveLine;
import dev.retailflow.kstreams.AccrualCore.Order;
import dev.retailflow.kstreams.AccrualCore.OrderFacts;
import dev.retailflow.kstreams.AccrualCore.OrderLine;
import dev.retailflow.kstreams.AccrualCore.State;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Avro for the core, with Apache Avro's generic API: the input values in the Confluent framing
 * (magic 0 + 4-byte schema id + Avro binary) with the schema ids retailflow uses offline
 * (SHA-256 of the Parsing Canonical Form, first 4 bytes, top bit cleared: schemas.OfflineSchemaID),
 * the state (processors/accrual/avro/accrual_state.avsc) and the commands
 * (accrual_command.avsc, framed). Readers, writers, decoders and encoders are reused: one
 * Codecs per stream thread (not thread-safe).
 */
public final class Codecs {
    public static final Schema COMMAND = parse("core/accrual_command.avsc");
    public static final Schema STATE = parse("core/accrual_state.avsc");
    public static final int COMMAND_ID = offlineId(COMMAND);

    /** An input the core cannot read: its DLQ class and reason. */
    public static final class BadInput extends Exception {
        public final String errorClass;
        public BadInput(String errorClass, String m) { super(m); this.errorClass = errorClass; }
    }

    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
    private BinaryDecoder decoder;
    private GenericRecord reuse;
    private final GenericDatumReader<GenericRecord> stateReader = new GenericDatumReader<>(STATE);
    private final GenericDatumWriter<GenericRecord> stateWriter = new GenericDatumWriter<>(STATE);
    private final GenericDatumWriter<GenericRecord> commandWriter = new GenericDatumWriter<>(COMMAND);
    private BinaryDecoder stateDecoder;
    private BinaryEncoder encoder;
    private final ByteArrayOutputStream buf = new ByteArrayOutputStream(256);
    private final Schema coreOrder = STATE.getField("order").schema().getTypes().get(1);
    private final Schema coreLine = coreOrder.getField("lines").schema().getElementType();
    private final Schema coreMove = STATE.getField("held").schema().getElementType();
    private final Schema coreMoveLine = coreMove.getField("lines").schema().getElementType();

    public Codecs() {
        // the input topics the core decodes: current schemas and every released version, each
        // read into the core's projection of the current schema
        for (String t : new String[] {"orders", "shipments", "returns"}) {
            Schema current = parse("avro/" + t + ".avsc");
            Schema read = project(current, new HashMap<>());
            readers.put(offlineId(current), new GenericDatumReader<>(current, read));
            Schema released = parse("avro/released/" + t + "/v1.avsc");
            readers.putIfAbsent(offlineId(released), new GenericDatumReader<>(released, read));
        }
    }

    /**
     * The fields the core reads, by record: the reader schema every input is decoded into is the
     * current schema with only these (Avro's schema resolution skips the writer's other fields
     * without building them). retailflow's core decodes the same projection
     * (processors/accrual/wire.go).
     */
    static final Map<String, Set<String>> READ = Map.ofEntries(
            Map.entry("OrdersEvent", Set.of("event_id", "occurred_at", "payload")),
            Map.entry("ShipmentsEvent", Set.of("event_id", "occurred_at", "payload")),
            Map.entry("ReturnsEvent", Set.of("event_id", "occurred_at", "payload")),
            Map.entry("OrderAccepted", Set.of("order_id", "loyalty_member_id", "loyalty_tier_at_order", "currency",
                    "loyalty_redemption", "lines", "earn_rate", "tier_multiplier")),
            Map.entry("LoyaltyRedemption", Set.of("accounting")),
            Map.entry("OrderLine", Set.of("order_line_id", "is_gift_card", "quantity", "line_net", "loyalty_redemption_allocation")),
            Map.entry("RedemptionAlloc", Set.of("value")),
            Map.entry("OrderLinesCancelled", Set.of("lines")),
            Map.entry("CancelledLine", Set.of("order_line_id", "quantity_cancelled")),
            Map.entry("ShipmentConfirmed", Set.of("is_reship", "lines")),
            Map.entry("ShipmentLine", Set.of("order_line_id", "quantity_shipped")),
            Map.entry("ReturnReceived", Set.of("lines")),
            Map.entry("ReturnLine", Set.of("order_line_id", "quantity_accepted")));

    /** s with only the READ fields of each record it reaches (done: the records made so far). */
    static Schema project(Schema s, Map<String, Schema> done) {
        switch (s.getType()) {
            case RECORD -> {
                Schema p = done.get(s.getFullName());
                if (p != null) return p;
                Set<String> keep = READ.get(s.getName());
                if (keep == null) throw new IllegalStateException("the core's projection does not name record " + s.getFullName());
                p = Schema.createRecord(s.getName(), s.getDoc(), s.getNamespace(), false);
                done.put(s.getFullName(), p);
                List<Schema.Field> fields = new ArrayList<>();
                for (Schema.Field f : s.getFields()) {
                    if (keep.contains(f.name())) fields.add(new Schema.Field(f, project(f.schema(), done)));
                }
                if (fields.size() != keep.size()) throw new IllegalStateException("record " + s.getFullName() + " lacks some of " + keep);
                p.setFields(fields);
                return p;
            }
            case ARRAY -> {
                return Schema.createArray(project(s.getElementType(), done));
            }
            case UNION -> {
                List<Schema> branches = new ArrayList<>();
                for (Schema b : s.getTypes()) branches.add(project(b, done));
                return Schema.createUnion(branches);
            }
            default -> {
                return s;
            }
        }
    }

    static Schema parse(String resource) {
        try (InputStream in = Codecs.class.getClassLoader().getResourceAsStream(resource)) {
            if (in == null) throw new IllegalStateException("resource " + resource + " missing from the jar");
            return new Schema.Parser().parse(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static int offlineId(Schema s) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(SchemaNormalization.toParsingForm(s).getBytes(StandardCharsets.UTF_8));
            return ByteBuffer.wrap(h, 0, 4).getInt() & 0x7fffffff;
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The framing check, all that is done to a loyalty or ERP value (the core does not read them). */
    public static void checkFraming(byte[] v) throws BadInput {
        if (v == null || v.length < 5 || v[0] != 0) throw new BadInput("bad-header", "value is not in the Confluent framing");
    }

    /** Decodes an orders, shipments or returns value into the core's event. */
    public Event decode(byte[] v) throws BadInput {
        checkFraming(v);
        int id = ByteBuffer.wrap(v, 1, 4).getInt();
        GenericDatumReader<GenericRecord> r = readers.get(id);
        if (r == null) throw new BadInput("unknown-schema", "schema id " + id + " is not one of the input schemas");
        GenericRecord rec;
        try {
            decoder = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, decoder);
            rec = r.read(reuse != null && reuse.getSchema() == r.getExpected() ? reuse : null, decoder);
            reuse = rec;
        } catch (IOException | RuntimeException e) {
            throw new BadInput("avro", "schema " + id + ": " + e);
        }
        Event e = new Event();
        e.eventId = str(rec.get("event_id"));
        e.occurredAt = (Long) rec.get("occurred_at");
        GenericRecord p = (GenericRecord) rec.get("payload");
        switch (p.getSchema().getName()) {
            case "OrderAccepted" -> {
                e.kind = AccrualCore.ACCEPTED;
                OrderFacts o = new OrderFacts();
                o.orderId = str(p.get("order_id"));
                o.currency = str(p.get("currency"));
                Object m = p.get("loyalty_member_id");
                if (m != null) o.memberId = str(m);
                Object tier = p.get("loyalty_tier_at_order");
                if (tier != null) o.tier = str(tier);
                Object er = p.get("earn_rate");
                if (er != null) o.earnRate = units(er);
                Object tm = p.get("tier_multiplier");
                if (tm != null) o.multiplier = units(tm);
                GenericRecord red = (GenericRecord) p.get("loyalty_redemption");
                boolean tender = red != null && "TENDER".equals(str(red.get("accounting")));
                for (Object lo : (List<?>) p.get("lines")) {
                    GenericRecord l = (GenericRecord) lo;
                    long eligible = 0;
                    if (!(Boolean) l.get("is_gift_card")) {
                        eligible = units(l.get("line_net"));
                        GenericRecord alloc = (GenericRecord) l.get("loyalty_redemption_allocation");
                        if (tender && alloc != null) eligible -= units(alloc.get("value"));
                        eligible = Math.max(eligible, 0);
                    }
                    o.lines.add(new OrderLine(str(l.get("order_line_id")), units(l.get("quantity")), eligible));
                }
                e.order = o;
            }
            case "ShipmentConfirmed" -> e.move = move(e, AccrualCore.SHIPMENT, p, "quantity_shipped");
            case "ReturnReceived" -> e.move = move(e, AccrualCore.RETURN, p, "quantity_accepted");
            case "OrderLinesCancelled" -> e.move = move(e, AccrualCore.CANCELLATION, p, "quantity_cancelled");
            default -> e.kind = AccrualCore.OTHER;
        }
        return e;
    }

    private static Move move(Event e, int kind, GenericRecord p, String qtyField) {
        e.kind = kind;
        Move m = new Move();
        m.eventId = e.eventId;
        m.kind = kind;
        m.occurredAt = e.occurredAt;
        if (kind == AccrualCore.SHIPMENT) m.reship = (Boolean) p.get("is_reship");
        List<?> lines = (List<?>) p.get("lines");
        if (kind == AccrualCore.CANCELLATION) m.cancelAll = lines.isEmpty();
        for (Object lo : lines) {
            GenericRecord l = (GenericRecord) lo;
            m.lines.add(new MoveLine(str(l.get("order_line_id")), units(l.get(qtyField))));
        }
        return m;
    }

    private static String str(Object o) { return o.toString(); } // Utf8 or String

    /** An Avro decimal's unscaled value (big-endian two's complement): the value in the core's units. */
    private static long units(Object o) {
        ByteBuffer b = (ByteBuffer) o;
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return a.length == 0 ? 0 : new BigInteger(a).longValueExact();
    }

    // ------------------------------------------------------------------ state

    public byte[] encodeState(State s) {
        GenericRecord r = new GenericData.Record(STATE);
        r.put("order_id", s.orderId);
        if (s.order != null) {
            Order o = s.order;
            GenericRecord or = new GenericData.Record(coreOrder);
            or.put("member_id", o.memberId);
            or.put("earn_rate", o.earnRate);
            or.put("tier_multiplier", o.multiplier);
            or.put("cancel_all", o.cancelAll);
            List<GenericRecord> lines = new ArrayList<>(o.lines.size());
            for (Line l : o.lines) {
                GenericRecord lr = new GenericData.Record(coreLine);
                lr.put("order_line_id", l.id);
                lr.put("ordered", l.ordered);
                lr.put("eligible", l.eligible);
                lr.put("shipped", l.shipped);
                lr.put("returned", l.returned);
                lr.put("cancel_requested", l.cancelRequested);
                lines.add(lr);
            }
            or.put("lines", lines);
            r.put("order", or);
        }
        r.put("seen", s.seen);
        r.put("held", moves(s.held));
        r.put("waiting", moves(s.waiting));
        r.put("requested", s.requested);
        return write(stateWriter, r, false);
    }

    private List<GenericRecord> moves(List<Move> ms) {
        List<GenericRecord> out = new ArrayList<>(ms.size());
        for (Move m : ms) {
            GenericRecord mr = new GenericData.Record(coreMove);
            mr.put("event_id", m.eventId);
            mr.put("kind", m.kind);
            mr.put("occurred_at", m.occurredAt);
            mr.put("reship", m.reship);
            mr.put("cancel_all", m.cancelAll);
            List<GenericRecord> lines = new ArrayList<>(m.lines.size());
            for (MoveLine l : m.lines) {
                GenericRecord lr = new GenericData.Record(coreMoveLine);
                lr.put("order_line_id", l.lineId());
                lr.put("quantity", l.qty());
                lines.add(lr);
            }
            mr.put("lines", lines);
            out.add(mr);
        }
        return out;
    }

    public State decodeState(byte[] b) {
        GenericRecord r;
        try {
            stateDecoder = DecoderFactory.get().binaryDecoder(b, stateDecoder);
            r = stateReader.read(null, stateDecoder);
        } catch (IOException e) {
            throw new UncheckedIOException("corrupt accrual state", e);
        }
        State s = new State();
        s.orderId = str(r.get("order_id"));
        GenericRecord or = (GenericRecord) r.get("order");
        if (or != null) {
            Order o = new Order();
            o.memberId = str(or.get("member_id"));
            o.earnRate = (Long) or.get("earn_rate");
            o.multiplier = (Long) or.get("tier_multiplier");
            o.cancelAll = (Boolean) or.get("cancel_all");
            for (Object lo : (List<?>) or.get("lines")) {
                GenericRecord lr = (GenericRecord) lo;
                Line l = new Line();
                l.id = str(lr.get("order_line_id"));
                l.ordered = (Long) lr.get("ordered");
                l.eligible = (Long) lr.get("eligible");
                l.shipped = (Long) lr.get("shipped");
                l.returned = (Long) lr.get("returned");
                l.cancelRequested = (Long) lr.get("cancel_requested");
                o.lines.add(l);
            }
            s.order = o;
        }
        for (Object id : (List<?>) r.get("seen")) s.seen.add(str(id));
        s.held = readMoves((List<?>) r.get("held"));
        s.waiting = readMoves((List<?>) r.get("waiting"));
        s.requested = (Long) r.get("requested");
        return s;
    }

    private static List<Move> readMoves(List<?> ms) {
        List<Move> out = new ArrayList<>(ms.size());
        for (Object mo : ms) {
            GenericRecord mr = (GenericRecord) mo;
            Move m = new Move();
            m.eventId = str(mr.get("event_id"));
            m.kind = (Integer) mr.get("kind");
            m.occurredAt = (Long) mr.get("occurred_at");
            m.reship = (Boolean) mr.get("reship");
            m.cancelAll = (Boolean) mr.get("cancel_all");
            for (Object lo : (List<?>) mr.get("lines")) {
                GenericRecord lr = (GenericRecord) lo;
                m.lines.add(new MoveLine(str(lr.get("order_line_id")), (Long) lr.get("quantity")));
            }
            out.add(m);
        }
        return out;
    }

    // ------------------------------------------------------------------ commands

    /** The framed Avro of a command (byte for byte what retailflow's accrual.AppendCommand writes). */
    public byte[] encodeCommand(Command c) {
        GenericRecord r = new GenericData.Record(COMMAND);
        r.put("request_id", c.requestId());
        r.put("command_type", c.type());
        r.put("order_id", c.orderId());
        r.put("member_id", c.memberId());
        r.put("causing_event_id", c.causingEventId());
        r.put("points", c.points());
        r.put("entitled_points", c.entitledPoints());
        r.put("requested_at", c.requestedAt());
        return write(commandWriter, r, true);
    }

    private byte[] write(GenericDatumWriter<GenericRecord> w, GenericRecord r, boolean framed) {
        buf.reset();
        if (framed) {
            buf.write(0);
            buf.write(COMMAND_ID >>> 24);
            buf.write(COMMAND_ID >>> 16);
            buf.write(COMMAND_ID >>> 8);
            buf.write(COMMAND_ID);
        }
        try {
            encoder = EncoderFactory.get().binaryEncoder(buf, encoder);
            w.write(r, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return buf.toByteArray();
    }

    /** The state store's value serde: the Codecs of the thread that serializes. */
    public static Serde<State> stateSerde() {
        ThreadLocal<Codecs> local = ThreadLocal.withInitial(Codecs::new);
        Serializer<State> ser = (topic, s) -> s == null ? null : local.get().encodeState(s);
        Deserializer<State> de = (topic, b) -> b == null ? null : local.get().decodeState(b);
        return Serdes.serdeFrom(ser, de);
    }
}
