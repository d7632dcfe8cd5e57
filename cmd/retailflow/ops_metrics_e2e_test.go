package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	chsink "github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
)

// withOps writes cfg plus an HTTP listener on addr and a 1 s lag poll into a new config file.
func withOps(t *testing.T, cfg, addr, name string) string {
	t.Helper()
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg + "." + name + ".yaml"
	extra := "http:\n  addr: " + addr + "\nmetrics:\n  lag_interval: 1s\n  backlog_interval: 1s\n"
	if err := os.WriteFile(f, append(body, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// hasSeries reports whether the scrape has a sample of the series name.
func hasSeries(body, name string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? `).MatchString(body)
}

// TestOpsMetricsOfALiveRunAndSink scrapes a live `retailflow run` and a live `retailflow sink`
// and finds every metric the shipped Grafana dashboard queries, with values that move: the
// processor group's lag rises by exactly the records produced while the processor is stopped
// (the sink's /metrics still reports it) and drains to 0 when it runs again, and the franz-go
// client counters (kprom) and the sink's row counters increase.
func TestOpsMetricsOfALiveRunAndSink(t *testing.T) {
	p := newPipeline(t, 2)
	cfg, c := p.File, p.C
	names := c.TopicNames()
	runAddr, sinkAddr := freeAddr(t), freeAddr(t)
	runCfg, sinkCfg := withOps(t, cfg, runAddr, "run"), withOps(t, cfg, sinkAddr, "sink")
	scrape := func(addr string) string {
		code, b := httpGet("http://" + addr + "/metrics")
		if code != 200 {
			return ""
		}
		return b
	}
	// inputLag is the processor group's lag summed over the five input topics, as the sink
	// reports it, and whether every input topic has a sample yet.
	inputLag := func(body string) (float64, bool) {
		var sum float64
		for _, tp := range schemas.InputTopics {
			g, tn := `group="`+c.Runtime.Group+`"`, `topic="`+names[tp]+`"`
			if !regexp.MustCompile(`(?m)^retailflow_consumer_lag\{[^}]*` + regexp.QuoteMeta(tn)).MatchString(body) {
				return 0, false
			}
			sum += metricSum(body, "retailflow_consumer_lag", g, tn)
		}
		return sum, true
	}
	produce := func(seed uint64, orders int) (records, malformed int) {
		tr := p.generate(generate.Options{Seed: seed, Orders: orders, MalformedRate: 0.2,
			Faults: generate.Faults{MissingErpOrder: 0.2, MissingInvoice: 0.2, WithheldAccrual: 0.2}})
		p.produce(nil, tr)
		for _, r := range tr.Records {
			if r.Malformed != "" {
				malformed++
			}
		}
		return len(tr.Records), malformed
	}

	background(t, "sink", "--config", sinkCfg)
	stopRun := background(t, "run", "--config", runCfg, "--instance-id", "0")
	first, malformed := produce(31, 40)
	if malformed == 0 {
		t.Fatal("the first traffic has no malformed record: the DLQ counter would not move")
	}
	var runBody, sinkBody string
	waitFor(t, 90*time.Second, "the processor and the sink to drain the first traffic", func() string {
		runBody, sinkBody = scrape(runAddr), scrape(sinkAddr)
		lag, ok := inputLag(sinkBody)
		switch {
		case !ok:
			return "no lag sample of every input topic yet"
		case lag != 0:
			return fmt.Sprintf("processor input lag %v", lag)
		case metricSum(runBody, "retailflow_records_consumed_total") < float64(first):
			return fmt.Sprintf("run consumed %v of %d", metricSum(runBody, "retailflow_records_consumed_total"), first)
		case metricSum(runBody, "retailflow_records_dead_lettered_total") != float64(malformed):
			return fmt.Sprintf("run dead-lettered %v of %d", metricSum(runBody, "retailflow_records_dead_lettered_total"), malformed)
		case metricSum(sinkBody, "retailflow_sink_rows_inserted_total") == 0:
			return "sink inserted nothing yet"
		}
		return ""
	})
	// Every metric the dashboard queries is served by run or by sink.
	for _, m := range dashboardMetrics(t) {
		if !hasSeries(runBody, m) && !hasSeries(sinkBody, m) {
			t.Errorf("dashboard metric %s is served by neither run nor sink", m)
		}
	}
	for _, client := range []struct{ body, name, metric string }{
		{runBody, "ledger", "retailflow_kafka_fetch_records_total"},
		{runBody, "ledger", "retailflow_kafka_produce_records_total"},
		{sinkBody, "sink", "retailflow_kafka_fetch_records_total"},
	} {
		if v := metricSum(client.body, client.metric, `client="`+client.name+`"`); v == 0 {
			t.Errorf("%s{client=%q} = 0 after the traffic", client.metric, client.name)
		}
	}
	sinkFetched := metricSum(sinkBody, "retailflow_kafka_fetch_records_total", `client="sink"`)
	sinkRows := metricSum(sinkBody, "retailflow_sink_rows_inserted_total")

	// The processor stops; what is produced now is its lag, exactly, and the sink says so.
	stopRun()
	second, _ := produce(32, 30)
	waitFor(t, 30*time.Second, fmt.Sprintf("the processor's input lag to rise to %d", second), func() string {
		sinkBody = scrape(sinkAddr)
		if lag, _ := inputLag(sinkBody); lag != float64(second) {
			return fmt.Sprintf("lag %v", lag)
		}
		return ""
	})
	if metricSum(sinkBody, "retailflow_consumer_lag_last_success_timestamp_seconds", `group="`+c.Runtime.Group+`"`) < float64(time.Now().Add(-10*time.Second).Unix()) {
		t.Error("lag poll timestamp is not recent")
	}

	// It runs again and drains the lag; the sink's counters move on.
	background(t, "run", "--config", runCfg, "--instance-id", "0")
	waitFor(t, 90*time.Second, "the processor's lag to drain", func() string {
		sinkBody = scrape(sinkAddr)
		if lag, _ := inputLag(sinkBody); lag != 0 {
			return fmt.Sprintf("lag %v", lag)
		}
		if metricSum(sinkBody, "retailflow_sink_rows_inserted_total") <= sinkRows {
			return "sink inserted no new row"
		}
		return ""
	})
	if v := metricSum(sinkBody, "retailflow_kafka_fetch_records_total", `client="sink"`); v <= sinkFetched {
		t.Errorf("sink fetched records %v, not more than %v before the second traffic", v, sinkFetched)
	}
	if v := metricSum(sinkBody, "retailflow_consumer_group_lag", `group="`+c.Sink.Group+`"`); !hasSeries(sinkBody, "retailflow_consumer_group_lag") {
		t.Errorf("no sink group lag (%v)", v)
	}

	// The backlog gauges equal the views: the report's rows and SLA breaches per view, at a
	// moment when both agree (the views age with now(), so compare polls until they meet).
	var open, breached uint64
	waitFor(t, 30*time.Second, "the backlog gauges to equal the views", func() string {
		rep, err := chsink.BuildReport(context.Background(), p.CH, p.DB, 1)
		if err != nil {
			return err.Error()
		}
		sinkBody = scrape(sinkAddr)
		open, breached = 0, 0
		for _, v := range rep.Views {
			var sla uint64
			for _, b := range v.Buckets {
				sla += b.SLABreached
			}
			id := `view="` + v.ID + `"`
			if !hasSeries(sinkBody, "retailflow_recon_backlog_rows") {
				return "no backlog gauge yet"
			}
			if got := metricSum(sinkBody, "retailflow_recon_backlog_rows", id); got != float64(v.Total) {
				return fmt.Sprintf("%s: gauge %v rows, view %d", v.ID, got, v.Total)
			}
			if got := metricSum(sinkBody, "retailflow_recon_sla_breached_rows", id); got != float64(sla) {
				return fmt.Sprintf("%s: gauge %v past SLA, view %d", v.ID, got, sla)
			}
			open, breached = open+v.Total, breached+sla
		}
		return ""
	})
	if open == 0 || breached == 0 {
		t.Errorf("the traffic left no backlog past SLA (%d open, %d breached): the gauge comparison proves little", open, breached)
	}
	t.Logf("backlog: %d open rows, %d past SLA, gauges equal the views", open, breached)
	t.Logf("records: first %d, second %d (lag rose to %d and drained to 0); sink fetched %v → %v",
		first, second, second, sinkFetched, metricSum(sinkBody, "retailflow_kafka_fetch_records_total", `client="sink"`))
}
