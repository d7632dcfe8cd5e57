#!/usr/bin/env bash
# The replicated local cluster (issue 21), beside the single-node pair of infra/local.sh: three
# Kafka brokers (KRaft, the same Maven jars), Debian's ZooKeeper and two ClickHouse servers (the
# same binary) that replicate through it, all as plain processes on loopback under
# $RF_RUN_DIR/cluster. Called through infra/local.sh cluster-<command>:
#
#   up | down | status        start (idempotent; waits until every service answers), stop, say what runs
#   env                       print the RETAILFLOW_* settings a process or test uses to reach the cluster
#                             (also written to $RF_RUN_DIR/cluster/cluster.env by up)
#   kafka-start|kafka-stop|kafka-kill N    broker N (1–3): start, SIGTERM, SIGKILL (fault tests)
#   ch-start|ch-stop|ch-kill N             ClickHouse replica N (1–2)
#   zk-start|zk-stop                       ZooKeeper
#   ch-user|ch-user-rm ...                 infra/local.sh ch-user on every replica
#
# Kafka: three combined broker+controller nodes (one JVM each; a 3-voter quorum tolerates one
# node down — the faults this cluster is for). Separate controllers would be three more JVMs on a
# 2-core box shared with other engineers. default.replication.factor=3, min.insync.replicas=2, the
# offsets and transaction state topics RF 3 / min ISR 2.
# Sized down for 2 cores / 24 GiB shared: Kafka -Xmx384m each (KAFKA_CLUSTER_HEAP), 2 network + 2
# I/O threads; ZooKeeper -Xmx128m; ClickHouse mark and uncompressed caches 64 MiB each, 2 GB per
# query, background pool 4 threads.
#
# Ports: CLUSTER_BASE (default 19100; an engineer sharing this box picks their own) + offsets:
#   brokers 1–3          +1 +2 +3       controllers  +11 +12 +13
#   ZooKeeper client     +81
#   ClickHouse 1, 2: TCP +201 +202, HTTP +211 +212, interserver HTTP +221 +222
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/kafka_log.sh
. "$here/kafka_log.sh"
repo=$(cd "$here/.." && pwd)
RF_RUN_DIR=${RF_RUN_DIR:-$repo/.run}
RF_CACHE_DIR=${RF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retailflow}
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
CLUSTER_BASE=${CLUSTER_BASE:-19100}
KAFKA_CLUSTER_HEAP=${KAFKA_CLUSTER_HEAP:--Xms128m -Xmx384m}
ZK_HEAP=${ZK_HEAP:--Xms64m -Xmx128m}
CH_CLUSTER_NAME=${CH_CLUSTER_NAME:-retailflow}

kafka_libs=$RF_CACHE_DIR/kafka-$KAFKA_VERSION/libs
cdir=$RF_RUN_DIR/cluster
brokers=(1 2 3)
replicas=(1 2)

broker_port() { echo $((CLUSTER_BASE + $1)); }
controller_port() { echo $((CLUSTER_BASE + 10 + $1)); }
zk_port() { echo $((CLUSTER_BASE + 81)); }
ch_tcp() { echo $((CLUSTER_BASE + 200 + $1)); }
ch_http() { echo $((CLUSTER_BASE + 210 + $1)); }
ch_inter() { echo $((CLUSTER_BASE + 220 + $1)); }

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_n() { # what n max
  [[ $2 =~ ^[0-9]+$ && $2 -ge 1 && $2 -le $3 ]] || die "$1 must be 1–$3, got '${2:-}'"
}

stop_pid() { # pidfile signal name timeout
  local pidf=$1 sig=$2 name=$3 t=${4:-60}
  if ! alive "$pidf"; then rm -f "$pidf"; return; fi
  local pid; pid=$(cat "$pidf")
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + t))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS > deadline )) && [[ $sig != KILL ]]; then
      log "$name did not stop in ${t}s, killing"; sig=KILL; kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.5
  done
  rm -f "$pidf"
  log "$name stopped ($sig)"
}

bootstrap() {
  local out="" n
  for n in "${brokers[@]}"; do out+="${out:+,}localhost:$(broker_port "$n")"; done
  echo "$out"
}

# ---------------------------------------------------------------- zookeeper

install_zookeeper() {
  [[ -f /usr/share/java/zookeeper.jar ]] && return
  command -v apt-get >/dev/null || die "ZooKeeper is not installed and apt-get is not available"
  log "installing zookeeper from Debian's packages"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq zookeeper >"$cdir/apt-zookeeper.log" 2>&1 \
    || { tail -20 "$cdir/apt-zookeeper.log" >&2; die "apt-get install zookeeper failed (log: $cdir/apt-zookeeper.log)"; }
}

zk_start() {
  install_zookeeper
  local d=$cdir/zookeeper
  if alive "$d/pid"; then log "zookeeper already running (pid $(cat "$d/pid"))"; return; fi
  port_open "$(zk_port)" && die "port $(zk_port) is taken by a process this script did not start"
  mkdir -p "$d/data" "$d/log"
  cat >"$d/zoo.cfg" <<CFG
# Written by infra/cluster.sh: one standalone ZooKeeper for the two ClickHouse replicas.
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$d/data
clientPort=$(zk_port)
clientPortAddress=127.0.0.1
maxClientCnxns=200
admin.enableServer=false
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
4lw.commands.whitelist=ruok,srvr,stat,mntr
CFG
  log "starting ZooKeeper on 127.0.0.1:$(zk_port)"
  setsid nohup java $ZK_HEAP -cp "/usr/share/java/zookeeper.jar" -Dzookeeper.log.dir="$d/log" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" >"$d/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
}

zk_wait() {
  local deadline=$((SECONDS + 60))
  until [[ $( (exec 3<>"/dev/tcp/127.0.0.1/$(zk_port)"; printf ruok >&3; timeout 2 cat <&3) 2>/dev/null) == imok ]]; do
    alive "$cdir/zookeeper/pid" || { tail -30 "$cdir/zookeeper/log/stdout.log" >&2; die "ZooKeeper exited during start-up"; }
    (( SECONDS > deadline )) && die "ZooKeeper did not answer ruok on 127.0.0.1:$(zk_port) within 60s"
    sleep 0.5
  done
  log "zookeeper is up"
}

# ---------------------------------------------------------------- kafka

kafka_java() { java -cp "$kafka_libs/*" "$@"; }

voters() {
  local out="" n
  for n in "${brokers[@]}"; do out+="${out:+,}$n@127.0.0.1:$(controller_port "$n")"; done
  echo "$out"
}

broker_config() { # n
  local n=$1 d=$cdir/kafka-$1
  mkdir -p "$d/data" "$d/log"
  cat >"$d/server.properties" <<PROPS
# Written by infra/cluster.sh. Node $n of three: broker and controller (combined), loopback only.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://localhost:$(broker_port "$n")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
num.partitions=6
auto.create.topics.enable=false
# what a retailer's cluster has: every partition on three brokers, a write needs two
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
group.consumer.session.timeout.ms=10000
group.consumer.min.session.timeout.ms=2000
group.min.session.timeout.ms=2000
transaction.max.timeout.ms=900000
# a restarted broker's replicas rejoin the ISR quickly; a dead one leaves it after 10 s
replica.lag.time.max.ms=10000
# sized down: 2 cores shared by three brokers and other engineers' services
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=30000
log.segment.bytes=67108864
PROPS
  kafka_log4j "$d" 20MB
}

kafka_start() { # n
  local n=$1 d=$cdir/kafka-$1
  if alive "$d/pid"; then log "broker $n already running (pid $(cat "$d/pid"))"; return; fi
  port_open "$(broker_port "$n")" && die "port $(broker_port "$n") is taken by a process this script did not start"
  [[ -f $kafka_libs/.complete ]] || "$here/local.sh" install
  broker_config "$n"
  if [[ ! -f $d/data/meta.properties ]]; then
    [[ -f $cdir/kafka-cluster-id ]] || kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 >"$cdir/kafka-cluster-id"
    kafka_java -Dlog4j2.configurationFile="$d/log4j2.properties" kafka.tools.StorageTool format \
      -t "$(cat "$cdir/kafka-cluster-id")" -c "$d/server.properties" >"$d/log/format.log" 2>&1 \
      || { cat "$d/log/format.log" >&2; die "formatting broker $n's storage failed"; }
  fi
  log "starting Kafka broker $n on localhost:$(broker_port "$n") (controller $(controller_port "$n"))"
  setsid nohup java $KAFKA_CLUSTER_HEAP -XX:+UseG1GC -XX:MaxDirectMemorySize=128m -cp "$kafka_libs/*" \
    -Dlog4j2.configurationFile="$d/log4j2.properties" \
    kafka.Kafka "$d/server.properties" >"$d/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
}

# kafka_wait: every running broker is registered with the controller quorum (a metadata request
# lists it), so that a topic created next gets three replicas.
kafka_wait() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-180})) want=0 n
  for n in "${brokers[@]}"; do alive "$cdir/kafka-$n/pid" && want=$((want + 1)); done
  while :; do
    local got
    got=$(kafka_java -Dlog4j2.configurationFile="$cdir/kafka-1/log4j2.properties" \
      org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$(bootstrap)" 2>/dev/null | grep -c '^localhost:.*(id: ' || true)
    (( got >= want )) && break
    for n in "${brokers[@]}"; do
      [[ -f $cdir/kafka-$n/pid ]] && ! alive "$cdir/kafka-$n/pid" && { tail -30 "$cdir/kafka-$n/log/server.log" >&2 2>/dev/null; die "broker $n exited during start-up ($cdir/kafka-$n/log)"; }
    done
    (( SECONDS > deadline )) && die "only $got of $want brokers answered within ${KAFKA_START_TIMEOUT:-180}s"
    sleep 1
  done
  log "kafka: $want brokers up ($(bootstrap))"
}

# ---------------------------------------------------------------- clickhouse

ch_bin() { if command -v clickhouse-server >/dev/null; then command -v clickhouse-server; else echo /usr/sbin/clickhouse-server; fi; }

ch_config() { # n
  local n=$1 d=$cdir/clickhouse-$1
  mkdir -p "$d"/{data,tmp,user_files,format_schemas,log,config.d}
  sed -e "s|@DIR@|$d|g" -e "s|@TCP_PORT@|$(ch_tcp "$n")|g" -e "s|@HTTP_PORT@|$(ch_http "$n")|g" \
    "$here/clickhouse/config.xml.tmpl" >"$d/config.xml"
  sed -e 's|<max_memory_usage>4000000000</max_memory_usage>|<max_memory_usage>2000000000</max_memory_usage>|' \
    "$here/clickhouse/users.xml" >"$d/users.xml"
  local r shards=""
  for r in "${replicas[@]}"; do
    shards+="<replica><host>127.0.0.1</host><port>$(ch_tcp "$r")</port></replica>"
  done
  # 18.16 merges config.d/*.xml into config.xml (a later element replaces the template's)
  cat >"$d/config.d/cluster.xml" <<XML
<?xml version="1.0"?>
<!-- Written by infra/cluster.sh: replica $n of shard 01 of cluster $CH_CLUSTER_NAME. -->
<yandex>
  <interserver_http_port>$(ch_inter "$n")</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <remote_servers>
    <$CH_CLUSTER_NAME>
      <shard><internal_replication>true</internal_replication>$shards</shard>
    </$CH_CLUSTER_NAME>
  </remote_servers>
  <zookeeper>
    <node><host>127.0.0.1</host><port>$(zk_port)</port></node>
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros><cluster>$CH_CLUSTER_NAME</cluster><shard>01</shard><replica>r$n</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <!-- sized down: two servers on a shared 2-core box -->
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mark_cache_size>67108864</mark_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <background_pool_size>4</background_pool_size>
  <background_schedule_pool_size>4</background_schedule_pool_size>
</yandex>
XML
}

ch_start() { # n
  local n=$1 d=$cdir/clickhouse-$1
  if alive "$d/pid"; then log "clickhouse $n already running (pid $(cat "$d/pid"))"; return; fi
  port_open "$(ch_tcp "$n")" && die "port $(ch_tcp "$n") is taken by a process this script did not start"
  ch_config "$n"
  rm -f "$d/data/status"
  log "starting ClickHouse replica $n on localhost:$(ch_tcp "$n") (http $(ch_http "$n"), interserver $(ch_inter "$n"))"
  ( cd "$d" || exit 1
    setsid nohup "$(ch_bin)" --config-file="$d/config.xml" >"$d/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid" )
}

ch_wait() { # n
  local n=$1 d=$cdir/clickhouse-$1 deadline=$((SECONDS + 180))
  until [[ $(curl -sf "http://127.0.0.1:$(ch_http "$n")/?query=SELECT%201" 2>/dev/null) == 1 ]]; do
    alive "$d/pid" || { tail -30 "$d/log/clickhouse-server.err.log" "$d/log/stdout.log" >&2 2>/dev/null; die "ClickHouse $n exited during start-up ($d/log)"; }
    (( SECONDS > deadline )) && die "ClickHouse $n did not answer on 127.0.0.1:$(ch_http "$n") within 180s"
    sleep 0.5
  done
  log "clickhouse $n is up"
}

# ---------------------------------------------------------------- commands

env_file() {
  mkdir -p "$cdir"
  cat <<ENV | tee "$cdir/cluster.env"
RETAILFLOW_KAFKA_BROKERS=$(bootstrap)
RETAILFLOW_TOPICS_REPLICATION_FACTOR=3
RETAILFLOW_TOPICS_MIN_INSYNC_REPLICAS=2
RETAILFLOW_CLICKHOUSE_ADDR=127.0.0.1:$(ch_tcp 1)
RETAILFLOW_CLICKHOUSE_CLUSTER=$CH_CLUSTER_NAME
RETAILFLOW_CLUSTER_CLICKHOUSE_ADDRS=127.0.0.1:$(ch_tcp 1),127.0.0.1:$(ch_tcp 2)
ENV
}

up() {
  mkdir -p "$RF_CACHE_DIR" "$cdir"
  [[ -f $kafka_libs/.complete ]] || "$here/local.sh" install
  zk_start
  local n
  for n in "${brokers[@]}"; do kafka_start "$n"; done
  zk_wait
  for n in "${replicas[@]}"; do ch_start "$n"; done
  for n in "${replicas[@]}"; do ch_wait "$n"; done
  kafka_wait
  env_file >/dev/null
  log "settings in $cdir/cluster.env"
}

down() {
  local n
  # All brokers at once: stopped one by one, the last controller waits out its controlled
  # shutdown with no quorum left until it is killed.
  for n in "${brokers[@]}"; do stop_pid "$cdir/kafka-$n/pid" TERM "broker $n" 90 & done
  wait
  for n in "${replicas[@]}"; do stop_pid "$cdir/clickhouse-$n/pid" TERM "clickhouse $n" 60; done
  stop_pid "$cdir/zookeeper/pid" TERM zookeeper 30
}

status() {
  local n
  for n in "${brokers[@]}"; do
    if alive "$cdir/kafka-$n/pid"; then echo "kafka $n: running (pid $(cat "$cdir/kafka-$n/pid"), localhost:$(broker_port "$n"))"; else echo "kafka $n: stopped"; fi
  done
  if alive "$cdir/zookeeper/pid"; then echo "zookeeper: running (pid $(cat "$cdir/zookeeper/pid"), 127.0.0.1:$(zk_port))"; else echo "zookeeper: stopped"; fi
  for n in "${replicas[@]}"; do
    if alive "$cdir/clickhouse-$n/pid"; then echo "clickhouse $n: running (pid $(cat "$cdir/clickhouse-$n/pid"), localhost:$(ch_tcp "$n"))"; else echo "clickhouse $n: stopped"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_file ;;
  kafka-start) check_n broker "${2:-}" 3; kafka_start "$2"; kafka_wait ;;
  kafka-stop) check_n broker "${2:-}" 3; stop_pid "$cdir/kafka-$2/pid" TERM "broker $2" 90 ;;
  kafka-kill) check_n broker "${2:-}" 3; stop_pid "$cdir/kafka-$2/pid" KILL "broker $2" 10 ;;
  ch-start) check_n replica "${2:-}" 2; ch_start "$2"; ch_wait "$2" ;;
  ch-stop) check_n replica "${2:-}" 2; stop_pid "$cdir/clickhouse-$2/pid" TERM "clickhouse $2" 60 ;;
  ch-kill) check_n replica "${2:-}" 2; stop_pid "$cdir/clickhouse-$2/pid" KILL "clickhouse $2" 10 ;;
  # the user on every replica (each reads its own users.d), as infra/local.sh ch-user does on one
  ch-user|ch-user-rm) cmd=$1; shift
    for n in "${replicas[@]}"; do CH_DIR=$cdir/clickhouse-$n CH_HTTP_PORT=$(ch_http "$n") "$here/local.sh" "$cmd" "$@"; done ;;
  zk-start) zk_start; zk_wait ;;
  zk-stop) stop_pid "$cdir/zookeeper/pid" TERM zookeeper 30 ;;
  *) echo "usage: infra/local.sh cluster-up|cluster-down|cluster-status|cluster-env|cluster-kafka-start|cluster-kafka-stop|cluster-kafka-kill N|cluster-ch-start|cluster-ch-stop|cluster-ch-kill N|cluster-zk-start|cluster-zk-stop" >&2; exit 2 ;;
esac
