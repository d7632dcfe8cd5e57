package dev.retailflow.kstreams;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.Stores;

/**
 * The accrual core as a Kafka Streams application (retailflow's DESIGN.md "Accrual core"; the
 * Go twin is topology/accrualcore). One JVM serves several runs, driven by lines on stdin, so
 * that bench/kstreams can measure a cold JVM (its first run) and a warm one (a later run):
 *
 * <pre>
 *   start &lt;application.id&gt; &lt;input prefix&gt; &lt;output prefix&gt;
 *         (inputs &lt;input prefix&gt;.orders … .erp; outputs &lt;output prefix&gt;.commands, .dlq)
 *   stop
 * </pre>
 *
 * Each command is answered with one line ("running …", "stopped …"); EOF exits.
 * Usage: java -jar kstreams-core.jar --bootstrap host:port --state-dir DIR
 *        [--earn-rates EUR=1000000,…] [--tier-multipliers GOLD=1500000,…]   (millionths)
 *        [--config streams.property=value,…]   (over the settings of {@link #config})
 */
public final class CoreApp {
    public static void main(String[] args) throws Exception {
        // warnings and errors only, to stderr: the benchmark measures processing, not logging
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"));
        Map<String, String> a = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) a.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        String bootstrap = a.getOrDefault("bootstrap", "localhost:9092");
        String stateDir = a.getOrDefault("state-dir", System.getProperty("java.io.tmpdir") + "/kstreams-core");
        AccrualCore.Policy policy = new AccrualCore.Policy(
                table(a.getOrDefault("earn-rates", "EUR=1000000,GBP=1000000,USD=1000000")),
                table(a.getOrDefault("tier-multipliers", "BASE=1000000,SILVER=1250000,GOLD=1500000,PLATINUM=2000000")),
                Integer.parseInt(a.getOrDefault("max-events", "4096")));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        KafkaStreams running = null;
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            switch (w[0]) {
                case "start" -> {
                    if (running != null) throw new IllegalStateException("start while a run is running");
                    running = start(bootstrap, stateDir, w[1], w[2], w[3], policy, table(a.getOrDefault("config", ""), v -> v));
                    say("running " + w[1]);
                }
                case "stop" -> {
                    if (running != null) running.close(Duration.ofSeconds(60));
                    running = null;
                    say("stopped");
                }
                case "" -> {}
                default -> throw new IllegalArgumentException("unknown command " + line);
            }
        }
        if (running != null) running.close(Duration.ofSeconds(60));
    }

    private static void say(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static Map<String, Long> table(String s) { return table(s, Long::parseLong); }

    static <V> Map<String, V> table(String s, java.util.function.Function<String, V> value) {
        Map<String, V> m = new HashMap<>();
        for (String kv : s.split(",")) {
            if (kv.isBlank()) continue;
            String[] p = kv.split("=", 2);
            m.put(p[0], value.apply(p[1]));
        }
        return m;
    }

    /** The topology: one source over the five co-partitioned inputs → the core → commands, DLQ. */
    static Topology topology(String in, String out, AccrualCore.Policy policy) {
        String[] inputs = {in + ".orders", in + ".shipments", in + ".returns", in + ".loyalty", in + ".erp"};
        Set<String> ignored = Set.of(in + ".loyalty", in + ".erp");
        Topology t = new Topology();
        t.addSource("inputs", new StringDeserializer(), new ByteArrayDeserializer(), inputs);
        t.addProcessor("accrual-core", () -> new CoreProcessor("accrual-state", ignored, policy), "inputs");
        // RocksDB with its changelog (logging is on by default: a compacted <app>-accrual-state-changelog)
        // and the record cache in front of it.
        t.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("accrual-state"), Serdes.String(), Codecs.stateSerde())
                .withCachingEnabled(), "accrual-core");
        t.addSink(CoreProcessor.COMMANDS_SINK, out + ".commands", new StringSerializer(), new ByteArraySerializer(), "accrual-core");
        t.addSink(CoreProcessor.DLQ_SINK, out + ".dlq", new StringSerializer(), new ByteArraySerializer(), "accrual-core");
        return t;
    }

    /** The settings, each as a Kafka Streams engineer would choose it for this comparison. */
    static Properties config(String bootstrap, String stateDir, String appId) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        // the same guarantee as retailflow's runner: transactions over outputs, changelog and offsets
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // 100 ms is already the default under exactly_once_v2; stated so nobody wonders
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        // one stream thread: the comparison is per CPU-second, retailflow runs one loop
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        // the record cache in front of RocksDB (default 10 MB): room for every order touched
        // between two commits, so repeated updates of a key within a commit reach RocksDB and
        // the changelog once
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 64L * 1024 * 1024);
        p.put(StreamsConfig.ROCKSDB_CONFIG_SETTER_CLASS_CONFIG, CoreRocksDBConfig.class);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        // do not hold a task back to align timestamps across its five input partitions: the
        // core's commands do not depend on how the topics interleave (retailflow's
        // TestCommandsIndependentOfInterleaving), so waiting for an empty partition only adds
        // latency (with the default, 0, paced traffic waited seconds in our first runs)
        p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, -1L);
        // a bigger poll than the default 1000 records: fewer, fuller batches per commit
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 2000);
        // the producer's default, stated: outputs and changelog uncompressed (the retailflow core
        // is set alike, bench/kstreams RunCore; both read the inputs as their producer wrote them)
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "none");
        return p;
    }

    static KafkaStreams start(String bootstrap, String stateDir, String appId, String in, String out, AccrualCore.Policy policy,
                              Map<String, String> overrides) throws InterruptedException {
        Properties props = config(bootstrap, stateDir, appId);
        props.putAll(overrides);
        KafkaStreams ks = new KafkaStreams(topology(in, out, policy), props);
        CountDownLatch up = new CountDownLatch(1);
        ks.setStateListener((now, old) -> {
            if (now == KafkaStreams.State.RUNNING || now == KafkaStreams.State.ERROR) up.countDown();
        });
        ks.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams-core: stream thread failed: " + e);
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        ks.start();
        if (!up.await(2, TimeUnit.MINUTES) || ks.state() == KafkaStreams.State.ERROR) throw new IllegalStateException("Kafka Streams did not start: " + ks.state());
        return ks;
    }
}
