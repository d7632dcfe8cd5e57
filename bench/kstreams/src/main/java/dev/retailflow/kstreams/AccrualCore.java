package dev.retailflow.kstreams;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * The accrual core, the same rules as retailflow's processors/accrual (Go), line for line; the
 * rules are written down there and in DESIGN.md "Accrual core". Pure: no Kafka, no I/O.
 *
 * <p>Units: quantities in thousandths, money in ten-thousandths, rates in millionths (the
 * Avro decimal scales 3, 4 and 6, so an Avro decimal's unscaled value is the unit value). The
 * only rounding is the floor of P on the exact rational B (BigInteger).
 */
public final class AccrualCore {
    private AccrualCore() {}

    public static final long ONE = 1_000_000L;
    public static final int OTHER = 0, ACCEPTED = 1, SHIPMENT = 2, RETURN = 3, CANCELLATION = 4;
    public static final String ACCRUAL = "AccrualRequested", REVERSAL = "ReversalRequested";
    private static final BigInteger POW10_16 = BigInteger.TEN.pow(16);

    /** The earn rule read when an order carries no snapshot (the ledger's default policy). */
    public record Policy(Map<String, Long> earnRates, Map<String, Long> tierMultipliers, int maxEvents) {}

    public static final class OrderLine {
        public final String id;
        public final long ordered, eligible;
        public OrderLine(String id, long ordered, long eligible) { this.id = id; this.ordered = ordered; this.eligible = eligible; }
    }

    public static final class OrderFacts {
        public String orderId, memberId = "", currency, tier = "";
        public Long earnRate, multiplier; // the order's own snapshot, or null
        public final List<OrderLine> lines = new ArrayList<>();
    }

    public record MoveLine(String lineId, long qty) {}

    public static final class Move {
        public String eventId;
        public int kind;
        public long occurredAt;
        public boolean reship, cancelAll;
        public final List<MoveLine> lines = new ArrayList<>();
    }

    /** An input event reduced to what the core reads. */
    public static final class Event {
        public String eventId;
        public int kind;
        public long occurredAt;
        public OrderFacts order; // ACCEPTED
        public Move move; // SHIPMENT, RETURN, CANCELLATION
    }

    public static final class Line {
        public String id;
        public long ordered, eligible, shipped, returned, cancelRequested;
    }

    public static final class Order {
        public String memberId;
        public long earnRate, multiplier;
        public boolean cancelAll;
        public final List<Line> lines = new ArrayList<>();

        Line line(String id) {
            for (Line l : lines) if (l.id.equals(id)) return l;
            return null;
        }
    }

    /** One order's state. The processor owns it: it is decoded fresh from the store per get. */
    public static final class State {
        public String orderId = "";
        public Order order;
        public final List<String> seen = new ArrayList<>(); // sorted
        public List<Move> held = new ArrayList<>();
        public List<Move> waiting = new ArrayList<>();
        public long requested;
    }

    public record Command(String requestId, String type, String orderId, String memberId, String causingEventId,
                          long points, long entitledPoints, long requestedAt) {}

    public static final class Rejected extends Exception {
        public Rejected(String m) { super(m); }
    }

    /**
     * Folds e into s (which it mutates; s is null for a key without state) and appends the
     * commands e caused to out. Returns the new state, or null when nothing changed (a
     * duplicate event id, an event the core does not read).
     */
    public static State apply(String orderId, State s, Event e, Policy p, List<Command> out) throws Rejected {
        if (e.kind == OTHER) return null;
        if (s == null) {
            s = new State();
            s.orderId = orderId;
        }
        int i = Collections.binarySearch(s.seen, e.eventId);
        if (i >= 0) return null;
        if (s.seen.size() >= p.maxEvents()) throw new Rejected("too many events for one order (" + p.maxEvents() + "): event " + e.eventId);
        if (e.kind == ACCEPTED && s.order != null) throw new Rejected("order already accepted: event " + e.eventId);
        if (e.kind == ACCEPTED && !e.order.orderId.equals(orderId))
            throw new Rejected("OrderAccepted names another order: key " + orderId + ", body " + e.order.orderId);
        s.seen.add(-i - 1, e.eventId);
        if (e.kind == ACCEPTED) {
            s.order = accept(e.order, p);
            List<Move> held = s.held;
            s.held = new ArrayList<>();
            for (Move m : held) move(s, m, out);
        } else if (s.order == null) {
            s.held.add(e.move);
        } else {
            move(s, e.move, out);
        }
        return s;
    }

    static Order accept(OrderFacts o, Policy p) {
        Order ord = new Order();
        ord.memberId = o.memberId;
        ord.earnRate = 0;
        ord.multiplier = ONE;
        if (!o.memberId.isEmpty()) {
            Long m = p.tierMultipliers().get(o.tier);
            if (o.multiplier != null) ord.multiplier = o.multiplier;
            else if (m != null) ord.multiplier = m;
            Long r = p.earnRates().get(o.currency);
            if (o.earnRate != null) ord.earnRate = o.earnRate;
            else if (r != null) ord.earnRate = r;
        }
        for (OrderLine l : o.lines) {
            Line ln = new Line();
            ln.id = l.id;
            ln.ordered = l.ordered;
            ln.eligible = l.eligible;
            ord.lines.add(ln);
        }
        return ord;
    }

    static void move(State n, Move m, List<Command> out) {
        switch (m.kind) {
            case SHIPMENT -> {
                if (!m.reship) {
                    for (MoveLine ml : m.lines) {
                        Line ln = n.order.line(ml.lineId());
                        if (ln != null) ln.shipped = Math.min(ln.shipped + ml.qty(), ln.ordered);
                    }
                }
            }
            case RETURN -> {
                if (!fulfilled(n.order)) {
                    n.waiting.add(m);
                    return;
                }
                applyReturn(n.order, m);
            }
            case CANCELLATION -> {
                if (m.cancelAll) n.order.cancelAll = true;
                for (MoveLine ml : m.lines) {
                    Line ln = n.order.line(ml.lineId());
                    if (ln != null) ln.cancelRequested += ml.qty();
                }
            }
            default -> throw new IllegalArgumentException("not a move: " + m.kind);
        }
        request(n, m, out);
        if (!n.waiting.isEmpty() && fulfilled(n.order)) {
            List<Move> waiting = n.waiting;
            n.waiting = new ArrayList<>();
            for (Move w : waiting) {
                applyReturn(n.order, w);
                request(n, w, out);
            }
        }
    }

    static void applyReturn(Order o, Move m) {
        for (MoveLine ml : m.lines) {
            Line ln = o.line(ml.lineId());
            if (ln != null) ln.returned += Math.min(ml.qty(), ln.shipped - ln.returned);
        }
    }

    static boolean fulfilled(Order o) {
        if (o.cancelAll) return true;
        for (Line ln : o.lines) if (ln.shipped + ln.cancelRequested < ln.ordered) return false;
        return true;
    }

    static void request(State n, Move m, List<Command> out) {
        Order o = n.order;
        if (o.memberId.isEmpty()) return;
        long p = entitled(o);
        long d = p - n.requested;
        if (d == 0) return;
        String typ = d > 0 ? ACCRUAL : REVERSAL;
        n.requested = p;
        out.add(new Command(requestId(n.orderId, m.eventId, typ), typ, n.orderId, o.memberId, m.eventId, Math.abs(d), p, m.occurredAt));
    }

    /** P = floor(Σ E·(shipped − returned)/ordered × rate × multiplier), exact. */
    static long entitled(Order o) {
        BigInteger num = BigInteger.ZERO, den = BigInteger.ONE;
        for (Line ln : o.lines) {
            long f = ln.shipped - ln.returned;
            if (ln.eligible <= 0 || f <= 0 || ln.ordered <= 0) continue;
            BigInteger q = BigInteger.valueOf(ln.ordered);
            num = num.multiply(q).add(BigInteger.valueOf(ln.eligible).multiply(BigInteger.valueOf(f)).multiply(den));
            den = den.multiply(q);
        }
        if (num.signum() == 0) return 0;
        num = num.multiply(BigInteger.valueOf(o.earnRate)).multiply(BigInteger.valueOf(o.multiplier));
        return num.divide(den.multiply(POW10_16)).longValueExact();
    }

    private static final ThreadLocal<MessageDigest> SHA256 = ThreadLocal.withInitial(() -> {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    });

    /** retailflow's schemas.CommandRequestID: the first 32 hex digits of SHA-256("order|event|type"). */
    static String requestId(String orderId, String eventId, String type) {
        byte[] h = SHA256.get().digest((orderId + "|" + eventId + "|" + type).getBytes(StandardCharsets.UTF_8));
        return HexFormat.of().formatHex(h, 0, 16);
    }
}
