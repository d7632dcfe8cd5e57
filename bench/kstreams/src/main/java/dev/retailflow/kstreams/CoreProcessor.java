package dev.retailflow.kstreams;

import dev.retailflow.kstreams.AccrualCore.Command;
import dev.retailflow.kstreams.AccrualCore.Event;
import dev.retailflow.kstreams.AccrualCore.State;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The one keyed processor over the five input topics (co-partitioned by order id): decode,
 * {@link AccrualCore#apply}, store, forward the commands; what cannot be processed goes to the
 * DLQ sink with its reason in headers, in the same exactly-once transaction as its offset.
 * Loyalty and ERP values are not decoded: the core does not read them (framing check only).
 */
final class CoreProcessor implements Processor<String, byte[], String, byte[]> {
    static final String COMMANDS_SINK = "commands", DLQ_SINK = "dlq";

    private final String store;
    private final Set<String> ignored; // the loyalty and ERP topics
    private final AccrualCore.Policy policy;
    private final Codecs codecs = new Codecs();
    private final List<Command> out = new ArrayList<>();
    private ProcessorContext<String, byte[]> ctx;
    private KeyValueStore<String, State> states;

    CoreProcessor(String store, Set<String> ignored, AccrualCore.Policy policy) {
        this.store = store;
        this.ignored = ignored;
        this.policy = policy;
    }

    @Override
    public void init(ProcessorContext<String, byte[]> ctx) {
        this.ctx = ctx;
        this.states = ctx.getStateStore(store);
    }

    @Override
    public void process(Record<String, byte[]> rec) {
        String topic = ctx.recordMetadata().map(RecordMetadata::topic).orElse("");
        try {
            if (ignored.contains(topic)) {
                Codecs.checkFraming(rec.value());
                return;
            }
            if (rec.key() == null) throw new Codecs.BadInput("no-key", "record has no key");
            Event e = codecs.decode(rec.value());
            if (e.kind == AccrualCore.OTHER) return; // changes nothing: no store lookup (as retailflow's Ignore)
            out.clear();
            State s = AccrualCore.apply(rec.key(), states.get(rec.key()), e, policy, out);
            if (s == null) return;
            states.put(rec.key(), s);
            for (Command c : out) {
                // lineage, as retailflow's runner writes it: the input's coordinates
                RecordHeaders h = new RecordHeaders();
                source(h, topic);
                ctx.forward(new Record<>(rec.key(), codecs.encodeCommand(c), rec.timestamp(), h), COMMANDS_SINK);
            }
        } catch (Codecs.BadInput ex) {
            deadLetter(rec, topic, ex.errorClass, ex.getMessage());
        } catch (AccrualCore.Rejected ex) {
            deadLetter(rec, topic, "process", ex.getMessage());
        }
    }

    private void deadLetter(Record<String, byte[]> rec, String topic, String cls, String msg) {
        RecordHeaders h = new RecordHeaders(rec.headers().toArray());
        h.add("rf.error.class", cls.getBytes(StandardCharsets.UTF_8));
        h.add("rf.error.message", msg.getBytes(StandardCharsets.UTF_8));
        source(h, topic);
        ctx.forward(new Record<>(rec.key(), rec.value(), rec.timestamp(), h), DLQ_SINK);
    }

    private void source(RecordHeaders h, String topic) {
        h.add("rf.source.topic", topic.getBytes(StandardCharsets.UTF_8));
        ctx.recordMetadata().ifPresent(m -> {
            h.add("rf.source.partition", Integer.toString(m.partition()).getBytes(StandardCharsets.UTF_8));
            h.add("rf.source.offset", Long.toString(m.offset()).getBytes(StandardCharsets.UTF_8));
        });
    }
}
