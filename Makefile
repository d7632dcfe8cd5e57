# retailflow — every entry point a person or CI needs.
#   make demo   install and start Kafka + ClickHouse, run the pipeline end to end on generated traffic
#   make test   the whole suite (starts its own Kafka and ClickHouse)
SHELL := /bin/bash
GO ?= go
BIN := bin/retailflow
export GOFLAGS ?= -mod=mod

.PHONY: build up secure down status test chdb pyproducer chromium test-unit test-helm demo eos chaos chaos-short bench bench-runtime bench-sink bench-ledger bench-state bench-kstreams kstreams-jar fmt vet clean

build:
	$(GO) build -o $(BIN) ./cmd/retailflow

# CLUSTER=1: the replicated cluster instead of the single node (infra/cluster.sh: three KRaft
# brokers, ZooKeeper, two ClickHouse replicas; ports from CLUSTER_BASE), for up/down/status and
# the eos and chaos runs. CLUSTER_ENV exports its RETAILFLOW_* settings into a recipe's shell.
ifeq ($(CLUSTER),1)
INFRA := cluster-
CLUSTER_ENV := export $$(infra/cluster.sh env | xargs);
endif

up:
	infra/local.sh $(INFRA)up

# Opt-in TLS listeners beside the plaintext ones: Kafka SSL (client certificates) and
# SASL_SSL/SCRAM, ClickHouse's TLS port; a local CA under .run/tls (README "TLS and SCRAM").
secure:
	infra/local.sh secure

down:
	infra/local.sh $(INFRA)down

status:
	infra/local.sh $(INFRA)status

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

# Unit and in-process tests (kfake, srfake): no services needed.
test-unit:
	$(GO) test -count=1 -short ./...

# Helm chart: lint, render, golden files, offline kubeconform, config check, guard rails.
# (installs helm and kubeconform with `go install` into ~/.cache/retailflow/bin the first time)
test-helm:
	helm/test.sh

# The whole suite: starts Kafka and ClickHouse (idempotent) with their TLS listeners (make
# secure; the SCRAM and mTLS tests use them) and runs every test against them.
# One package at a time (-p 1): the end-to-end packages each run processes against the same
# broker and server, and on two cores running them side by side only adds timing noise.
# chDB (current ClickHouse, embedded; from PyPI into .venv-chdb by infra/chdb.sh) is the second
# engine of the view check in connectors/clickhouse: the sink writes to 18.16, the views are compared
# on both. The chaos package runs last, as chaos-short, so that its seed and table are printed.
test: build up secure test-helm chdb pyproducer chromium kstreams-jar
	RETAILFLOW_E2E=1 RETAILFLOW_CHDB_PYTHON=$$(infra/chdb.sh python) $(GO) test -p 1 -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/topology/chaostest$$')
	$(MAKE) chaos-short

chdb:
	infra/chdb.sh install

# Headless Chromium (Debian's chromium) for the operations page's browser test
# (cmd/retailflow TestOperationsPageInChromium; screenshots of a failure in .artifacts/).
chromium:
	infra/chromium.sh >/dev/null

# The upstream producer example's packages (confluent-kafka, fastavro from PyPI) for the test
# that produces with librdkafka's default partitioner (cmd/retailflow TestForeignProducer...).
pyproducer:
	infra/python.sh >/dev/null

# The short chaos subset (6 faults that stop no service, ≈ 100 s here) with a fresh random seed
# (printed first: CHAOS_SEED=<seed> make chaos-short replays it), so the suite cannot rot.
chaos-short: up
	set -o pipefail; RETAILFLOW_E2E=1 $(GO) test -v -count=1 -timeout 15m -run TestChaos ./topology/chaostest/ | grep -E '^(chaos|\||---|ok|FAIL|PASS|    )'

# Exactly-once proof on the real broker: 1 → 3 → 1 instances, ≥ 10 SIGKILLs with restarts under
# the same transactional id, verified against the oracle. Ends with the `eos: ... lost=0` line.
# CLUSTER=1 runs it against the three brokers (topics RF 3, min ISR 2).
eos: build up
	set -o pipefail; $(CLUSTER_ENV) RETAILFLOW_E2E=1 EOS_LONG=1 RETAILFLOW_BIN=$(CURDIR)/$(BIN) $(GO) test -v -count=1 -timeout 30m -run TestEOS ./topology/eostest/ | grep -E '^(eos:|---|ok|FAIL|PASS|    )'

# Reliability suite: a seeded script of faults under generated load, with the oracles after each;
# ends with `chaos: faults=N passed=N lost=0 duplicated=0 dlq_unexplained=0`. It restarts the
# Kafka and ClickHouse that `make up` started: do not run it beside `make test`.
# The test builds its own binary with -tags chaoshooks (kills at exact protocol steps).
# CLUSTER=1: the cluster's fault table (topology/chaostest/cluster_test.go) on the replicated
# cluster (make up CLUSTER=1); CHAOS_FAULTS=a,b picks others.
CHAOS_CH_OUTAGE ?= 3m
ifeq ($(CLUSTER),1)
CHAOS_FAULTS ?= cluster-leader-sigkill,cluster-leader-sigterm,cluster-kill-during-commit,cluster-ch-replica-down,cluster-zookeeper-down
endif
chaos: up
	set -o pipefail; $(CLUSTER_ENV) RETAILFLOW_E2E=1 RETAILFLOW_CHAOS=1 CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_CH_OUTAGE=$(CHAOS_CH_OUTAGE) $(GO) test -v -count=1 -timeout 40m -run TestChaos ./topology/chaostest/ | grep -E '^(chaos|\||---|ok|FAIL|PASS|    )'

# Benchmarks; figures and commands are written down in bench/RESULTS.md.
bench: bench-ledger bench-runtime bench-sink

bench-ledger:
	$(GO) test -run '^$$' -bench . -benchtime 2000x -count 5 ./processors/ledger ./schemas

# Each prints a Markdown section for bench/RESULTS.md and ends with one summary line
# (`runtime: events_per_cpu_s=…`, `sink: rows_per_cpu_s=…`); BENCH_FLAGS adds flags, e.g.
# BENCH_FLAGS='-restore-orders 0' skips the restore run.
bench-runtime: build up
	$(GO) run ./bench/runtime -bin $(BIN) $(BENCH_FLAGS)

bench-sink: up
	$(GO) run ./bench/sink -orders 10000 -latency-events 300 -rate 20 $(BENCH_FLAGS)

# 2,000,000 orders of state (ORDERS=… for fewer); prints one `state: …` line (bench/RESULTS.md)
ORDERS ?= 2000000
bench-state: build up
	$(GO) run ./bench/state -bin $(BIN) -orders $(ORDERS)

# The accrual core as a Kafka Streams 4.1.1 app (bench/kstreams: Maven Central only, like the
# Kafka jars). `make test` builds it: bench/kstreams TestCoresAgree checks that it and the
# retailflow core emit the same commands.
kstreams-jar:
	cd bench/kstreams && mvn -q -B package -DskipTests

# Kafka Streams vs retailflow on the same broker and input (bench/RESULTS.md); ends with the
# `kstreams: ... identical=true` line.
bench-kstreams: build up kstreams-jar
	$(GO) run ./bench/kstreams -bin $(BIN) -jar bench/kstreams/target/kstreams-core.jar

demo: build up
	infra/demo.sh

clean:
	rm -rf bin .run .venv-chdb
