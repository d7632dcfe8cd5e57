#!/usr/bin/env bash
# Local infrastructure for tests and the demo: an Apache Kafka 4.x broker (KRaft, one combined
# node, jars from Maven Central) and a ClickHouse server (Debian's clickhouse-server), both as
# plain processes on loopback with their data under $RF_RUN_DIR.
#
#   infra/local.sh install   fetch what is missing (Kafka jars via Maven, ClickHouse via apt-get)
#   infra/local.sh up        install if needed, start both (idempotent), wait until they answer
#   infra/local.sh down      stop both
#   infra/local.sh status    say what runs
#   infra/local.sh kafka-start|kafka-stop|kafka-kill|ch-start|ch-stop|ch-kill   one service (fault tests)
#   infra/local.sh ch-user NAME PASSWORD [DB,...|-] [PROFILE] | ch-user-rm NAME       a ClickHouse user in users.d
#                  (fault tests: rotate its password, limit it to another database, make it read-only)
#   infra/local.sh ch-readonly DB on|off       the database's data directories unwritable (a read-only disk)
#   infra/local.sh cluster-up|cluster-down|cluster-status|cluster-env|cluster-<fault> ...
#                  the replicated cluster beside the single node (three KRaft brokers, ZooKeeper, two
#                  ClickHouse replicas): infra/cluster.sh, which documents its ports (CLUSTER_BASE) and sizes
#   infra/local.sh secure    opt in to TLS: a local CA, broker and client certificates under $RF_RUN_DIR/tls,
#                  two more Kafka listeners (SSL with client certificates required on KAFKA_TLS_PORT,
#                  SASL_SSL/SCRAM on KAFKA_SASL_PORT; the broker is restarted once to add them), SCRAM
#                  users created at start, and ClickHouse's TLS port CH_TLS_PORT; writes
#                  $RF_RUN_DIR/tls/secure.env (ports, file paths) for tests and the README's example.
#                  The choice sticks (a marker in $RF_RUN_DIR) until `secure-off`; `up` with SECURE=1 is the same.
#
# Environment: RF_RUN_DIR (default <repo>/.run), RF_CACHE_DIR (default ~/.cache/retailflow),
# KAFKA_VERSION (default 4.1.1), KAFKA_PORT (9092), CH_TCP_PORT (9000), CH_HTTP_PORT (8123);
# with `secure`: KAFKA_TLS_PORT (KAFKA_PORT+10), KAFKA_SASL_PORT (KAFKA_PORT+20), CH_TLS_PORT (CH_TCP_PORT+40).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/kafka_log.sh
. "$here/kafka_log.sh"
repo=$(cd "$here/.." && pwd)
RF_RUN_DIR=${RF_RUN_DIR:-$repo/.run}
RF_CACHE_DIR=${RF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retailflow}
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
CH_TCP_PORT=${CH_TCP_PORT:-9000}
CH_HTTP_PORT=${CH_HTTP_PORT:-8123}
KAFKA_HEAP=${KAFKA_HEAP:--Xms256m -Xmx1g}
KAFKA_TLS_PORT=${KAFKA_TLS_PORT:-$((KAFKA_PORT + 10))}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-$((KAFKA_PORT + 20))}
CH_TLS_PORT=${CH_TLS_PORT:-$((CH_TCP_PORT + 40))}

kafka_libs=$RF_CACHE_DIR/kafka-$KAFKA_VERSION/libs
kafka_dir=$RF_RUN_DIR/kafka
ch_dir=${CH_DIR:-$RF_RUN_DIR/clickhouse} # CH_DIR: infra/cluster.sh ch-user, per replica
tls_dir=$RF_RUN_DIR/tls

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

alive() { # pidfile
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- install

install_kafka() {
  if [[ -f $kafka_libs/.complete ]]; then return; fi
  command -v java >/dev/null || die "java not found: Kafka $KAFKA_VERSION needs Java 17 (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: needed once to fetch the Kafka jars from Maven Central (apt-get install maven)"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $kafka_libs"
  rm -rf "$kafka_libs"; mkdir -p "$kafka_libs"
  if ! mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$kafka_libs" -DincludeScope=runtime \
      >"$RF_CACHE_DIR/mvn-kafka.log" 2>&1; then
    tail -30 "$RF_CACHE_DIR/mvn-kafka.log" >&2
    die "maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (log: $RF_CACHE_DIR/mvn-kafka.log)"
  fi
  touch "$kafka_libs/.complete"
}

install_clickhouse() {
  if command -v clickhouse-server >/dev/null || [[ -x /usr/sbin/clickhouse-server ]]; then return; fi
  command -v apt-get >/dev/null || die "clickhouse-server is not installed and apt-get is not available"
  log "installing clickhouse-server from Debian's packages"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null \
    || die "apt-get install clickhouse-server failed"
}

ch_bin() {
  if command -v clickhouse-server >/dev/null; then command -v clickhouse-server; else echo /usr/sbin/clickhouse-server; fi
}

# ---------------------------------------------------------------- tls (opt-in: `secure`)

# secure: whether the services start with their TLS listeners (SECURE=1, or `secure` ran before)
secure() { [[ ${SECURE:-} == 1 || -f $RF_RUN_DIR/secure ]]; }

# tls_material: a local CA, a server certificate for localhost/127.0.0.1 (the broker's and
# ClickHouse's), a client certificate for mTLS, and the SCRAM user's password; made once, kept
# under $tls_dir (private keys mode 600). openssl only, so a fresh machine needs nothing more.
tls_material() {
  command -v openssl >/dev/null || die "openssl not found: needed to make the local CA for the TLS listeners"
  mkdir -p "$tls_dir"; chmod 700 "$tls_dir"
  if [[ ! -f $tls_dir/.complete ]]; then
    log "making a local CA and certificates in $tls_dir"
    ( cd "$tls_dir" && umask 077
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=retailflow local CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout ca.key -out ca.pem
      for who in server client; do
        local cn=localhost eku=serverAuth
        [[ $who == client ]] && cn=retailflow eku=clientAuth
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$who.key" -out "$who.csr"
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$eku" >"$who.ext"
        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
          -extfile "$who.ext" -out "$who.pem"
        rm -f "$who.csr" "$who.ext"
      done
      cat server.key server.pem >broker-keystore.pem # Kafka's PEM keystore: PKCS#8 key + chain
      openssl rand -hex 16 >scram.password
      chmod 644 ca.pem server.pem client.pem
    ) >"$tls_dir/openssl.log" 2>&1 || { cat "$tls_dir/openssl.log" >&2; die "openssl failed (log: $tls_dir/openssl.log)"; }
    touch "$tls_dir/.complete"
  fi
  cat >"$tls_dir/secure.env" <<ENV
# Written by infra/local.sh secure: what a client needs to reach the TLS listeners.
KAFKA_TLS_BROKERS=localhost:$KAFKA_TLS_PORT
KAFKA_SASL_BROKERS=localhost:$KAFKA_SASL_PORT
KAFKA_SCRAM_USER=retailflow
KAFKA_SCRAM_PASSWORD_FILE=$tls_dir/scram.password
CH_TLS_ADDR=localhost:$CH_TLS_PORT
TLS_CA_FILE=$tls_dir/ca.pem
TLS_CLIENT_CERT_FILE=$tls_dir/client.pem
TLS_CLIENT_KEY_FILE=$tls_dir/client.key
ENV
}

# kafka_scram_users: (re)creates the SCRAM user for both mechanisms; idempotent, run at each start.
kafka_scram_users() {
  local pw mech; pw=$(cat "$tls_dir/scram.password")
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do # one credential per request, or the broker refuses
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "localhost:$KAFKA_PORT" --alter \
      --add-config "$mech=[password=$pw]" --entity-type users --entity-name retailflow >"$kafka_dir/log/scram.log" 2>&1 \
      || { cat "$kafka_dir/log/scram.log" >&2; die "creating the $mech credential of user retailflow failed"; }
  done
  log "kafka: SCRAM user retailflow on localhost:$KAFKA_SASL_PORT, TLS with client certificates on localhost:$KAFKA_TLS_PORT"
}

# secure_on: remembers the choice, makes the material, and restarts whichever service runs
# without its TLS listener (once; later starts read the marker).
secure_on() {
  mkdir -p "$RF_RUN_DIR"; touch "$RF_RUN_DIR/secure"
  tls_material
  if alive "$kafka_dir/pid" && ! grep -q "^listeners=.*SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT" "$kafka_dir/server.properties"; then
    log "restarting Kafka to add its TLS listeners"
    stop_pid "$kafka_dir/pid" TERM kafka 90
  fi
  if alive "$ch_dir/pid" && [[ ! -f $ch_dir/config.d/tls.xml ]]; then
    log "restarting ClickHouse to add its TLS port"
    stop_pid "$ch_dir/pid" TERM clickhouse 60
  fi
  kafka_start; ch_start; ch_wait; kafka_wait
}

# ---------------------------------------------------------------- kafka

kafka_config() {
  mkdir -p "$kafka_dir/data" "$kafka_dir/log"
  cat >"$kafka_dir/server.properties" <<PROPS
# Written by infra/local.sh. One KRaft node acting as broker and controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$(secure && echo ",SSL://127.0.0.1:$KAFKA_TLS_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT")
advertised.listeners=PLAINTEXT://localhost:$KAFKA_PORT$(secure && echo ",SSL://localhost:$KAFKA_TLS_PORT,SASL_SSL://localhost:$KAFKA_SASL_PORT")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$(secure && echo ",SSL:SSL,SASL_SSL:SASL_SSL")
inter.broker.listener.name=PLAINTEXT
log.dirs=$kafka_dir/data
num.partitions=6
auto.create.topics.enable=false
# single node: every internal topic has one replica, or transactions fail with
# COORDINATOR_NOT_AVAILABLE / NotEnoughReplicas on __transaction_state
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
min.insync.replicas=1
default.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# short enough that a crashed instance's group membership expires quickly in fault tests
group.consumer.session.timeout.ms=10000
group.consumer.min.session.timeout.ms=2000
group.min.session.timeout.ms=2000
transaction.max.timeout.ms=900000
# lets the compaction tests see the cleaner work within seconds
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=30000
PROPS
  if secure; then
    cat >>"$kafka_dir/server.properties" <<PROPS
# infra/local.sh secure: TLS from the local CA in $tls_dir. SSL requires a client certificate
# (mTLS); SASL_SSL authenticates with SCRAM (users created by kafka_scram_users at start).
ssl.keystore.type=PEM
ssl.keystore.location=$tls_dir/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  fi
  kafka_log4j "$kafka_dir" 50MB
}

kafka_java() {
  java -cp "$kafka_libs/*" -Dlog4j2.configurationFile="$kafka_dir/log4j2.properties" "$@"
}

kafka_start() {
  install_kafka
  if alive "$kafka_dir/pid"; then log "kafka already running (pid $(cat "$kafka_dir/pid"))"; return; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by a process this script did not start"; fi
  if secure; then tls_material; fi
  kafka_config
  if [[ ! -f $kafka_dir/data/meta.properties ]]; then
    log "formatting Kafka storage in $kafka_dir/data"
    kafka_java kafka.tools.StorageTool format -t "$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
      -c "$kafka_dir/server.properties" >"$kafka_dir/log/format.log" 2>&1 \
      || { cat "$kafka_dir/log/format.log" >&2; die "kafka storage format failed"; }
  fi
  log "starting Kafka $KAFKA_VERSION on localhost:$KAFKA_PORT"
  # setsid: the broker outlives the calling shell (make up; the tests run later)
  setsid nohup java $KAFKA_HEAP -XX:+UseG1GC -cp "$kafka_libs/*" \
    -Dlog4j2.configurationFile="$kafka_dir/log4j2.properties" \
    kafka.Kafka "$kafka_dir/server.properties" >"$kafka_dir/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$kafka_dir/pid"
}

kafka_wait() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  # a metadata request through Kafka's own admin client
  until kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "localhost:$KAFKA_PORT" --list >/dev/null 2>&1; do
    if ! alive "$kafka_dir/pid"; then
      tail -40 "$kafka_dir/log/server.log" "$kafka_dir/log/stdout.log" >&2 2>/dev/null || true
      die "Kafka exited during start-up; the log tail is above ($kafka_dir/log)"
    fi
    if (( SECONDS > deadline )); then
      tail -40 "$kafka_dir/log/server.log" >&2 2>/dev/null || true
      die "Kafka did not answer a metadata request on localhost:$KAFKA_PORT within ${KAFKA_START_TIMEOUT:-120}s"
    fi
    sleep 1
  done
  log "kafka is up"
  if secure; then kafka_scram_users; fi
}

stop_pid() { # pidfile signal name timeout
  local pidf=$1 sig=$2 name=$3 t=${4:-60}
  if ! alive "$pidf"; then rm -f "$pidf"; return; fi
  local pid; pid=$(cat "$pidf")
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + t))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS > deadline )); then log "$name did not stop in ${t}s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.5
  done
  rm -f "$pidf"
  log "$name stopped"
}

# ---------------------------------------------------------------- clickhouse

ch_start() {
  install_clickhouse
  if alive "$ch_dir/pid"; then log "clickhouse already running (pid $(cat "$ch_dir/pid"))"; return; fi
  if port_open "$CH_TCP_PORT"; then die "port $CH_TCP_PORT is taken by a process this script did not start"; fi
  mkdir -p "$ch_dir"/{data,tmp,user_files,format_schemas,log}
  sed -e "s|@DIR@|$ch_dir|g" -e "s|@TCP_PORT@|$CH_TCP_PORT|g" -e "s|@HTTP_PORT@|$CH_HTTP_PORT|g" \
    "$here/clickhouse/config.xml.tmpl" >"$ch_dir/config.xml"
  cp "$here/clickhouse/users.xml" "$ch_dir/users.xml"
  rm -f "$ch_dir/config.d/tls.xml"
  if secure; then
    tls_material; mkdir -p "$ch_dir/config.d"
    # 18.16 reads config.d beside config.xml; the native protocol over TLS on CH_TLS_PORT
    cat >"$ch_dir/config.d/tls.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <tcp_port_secure>$CH_TLS_PORT</tcp_port_secure>
  <openSSL><server>
    <certificateFile>$tls_dir/server.pem</certificateFile>
    <privateKeyFile>$tls_dir/server.key</privateKeyFile>
    <verificationMode>none</verificationMode>
    <loadDefaultCAFile>false</loadDefaultCAFile>
    <cacheSessions>true</cacheSessions>
    <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
    <preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>
</yandex>
XML
  fi
  rm -f "$ch_dir/data/status" # a stale lock left by a SIGKILLed server
  log "starting ClickHouse on localhost:$CH_TCP_PORT (http $CH_HTTP_PORT)"
  # the server itself is the background job (not a subshell around it), so $! is its pid
  ( cd "$ch_dir" || exit 1
    setsid nohup "$(ch_bin)" --config-file="$ch_dir/config.xml" >"$ch_dir/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$ch_dir/pid" )
}

ch_wait() {
  local deadline=$((SECONDS + ${CH_START_TIMEOUT:-180}))
  until [[ $(curl -sf "http://127.0.0.1:$CH_HTTP_PORT/?query=SELECT%201" 2>/dev/null) == 1 ]]; do
    if ! alive "$ch_dir/pid"; then
      tail -40 "$ch_dir/log/clickhouse-server.err.log" "$ch_dir/log/stdout.log" >&2 2>/dev/null || true
      die "ClickHouse exited during start-up; the log tail is above ($ch_dir/log)"
    fi
    if (( SECONDS > deadline )); then
      tail -40 "$ch_dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
      die "ClickHouse did not answer SELECT 1 on 127.0.0.1:$CH_HTTP_PORT within ${CH_START_TIMEOUT:-180}s"
    fi
    sleep 0.5
  done
  log "clickhouse is up"
}

# ch_user NAME PASSWORD [DATABASES|-] [PROFILE]: writes users.d/NAME.xml (a user on loopback, limited
# to the comma-separated DATABASES when given, with PROFILE, default "default") and waits until the server has
# reloaded it (fault tests: rotate a password, revoke a database, make a user read-only).
# ch_user_rm NAME removes it.
ch_user() {
  local name=$1 password=$2 db=${3:--} profile=${4:-default} allow=""
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "ch-user: bad user name '$name'"
  if [[ $db != - ]]; then
    allow="<allow_databases>"
    for d in ${db//,/ }; do allow+="<database>$d</database>"; done
    allow+="</allow_databases>"
  fi
  mkdir -p "$ch_dir/users.d"
  cat >"$ch_dir/users.d/$name.xml.tmp" <<XML
<?xml version="1.0"?>
<yandex><users><$name>
  <password>$password</password>
  <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
  <profile>$profile</profile><quota>default</quota>$allow
</$name></users></yandex>
XML
  mv "$ch_dir/users.d/$name.xml.tmp" "$ch_dir/users.d/$name.xml"
  ch_reloaded "$name" "$password"
}

ch_user_rm() { rm -f "$ch_dir/users.d/$1.xml"; }

# the server re-reads users.xml and users.d every 2 s: wait until NAME logs in with PASSWORD,
# then one more period so that database and profile changes are in too
ch_reloaded() {
  local deadline=$((SECONDS + 20))
  until curl -sf -u "$1:$2" "http://127.0.0.1:$CH_HTTP_PORT/?query=SELECT%201" >/dev/null 2>&1; do
    (( SECONDS > deadline )) && die "ClickHouse did not reload users.d/$1.xml within 20s"
    sleep 0.5
  done
  sleep 2.5
}

# ch_readonly DB on|off: makes the data directories of database DB unwritable for the server
# (inserts fail with "Access to file denied", as on a read-only or failing disk) and writable
# again. The server runs as root, so permissions alone would not stop it: the directories are
# made immutable (chattr +i, ext4/xfs), or, where that is not supported, bind-mounted read-only.
ch_readonly() {
  local db=$1 mode=$2 dir=$ch_dir/data/data/$1
  [[ $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ && -d $dir ]] || die "ch-readonly: no database directory $dir"
  local d
  for d in "$dir"/*/; do
    d=${d%/}
    case $mode in
      on) chattr +i "$d" 2>/dev/null || { mount --bind "$d" "$d" && mount -o remount,bind,ro "$d"; } \
            || die "ch-readonly: cannot make $d read-only (needs chattr on ext4/xfs, or mount)" ;;
      off) if mountpoint -q "$d"; then umount "$d"; fi; chattr -i "$d" 2>/dev/null || true ;;
      *) die "ch-readonly: mode must be on or off" ;;
    esac
  done
}

# ---------------------------------------------------------------- commands

status() {
  if alive "$kafka_dir/pid"; then echo "kafka: running (pid $(cat "$kafka_dir/pid"), localhost:$KAFKA_PORT)"; else echo "kafka: stopped"; fi
  if alive "$ch_dir/pid"; then echo "clickhouse: running (pid $(cat "$ch_dir/pid"), localhost:$CH_TCP_PORT)"; else echo "clickhouse: stopped"; fi
}

case ${1:-} in
  install) mkdir -p "$RF_CACHE_DIR"; install_kafka; install_clickhouse ;;
  up) mkdir -p "$RF_CACHE_DIR" "$RF_RUN_DIR"; install_kafka; install_clickhouse
      if [[ ${SECURE:-} == 1 ]]; then secure_on; else kafka_start; ch_start; ch_wait; kafka_wait; fi ;;
  secure) mkdir -p "$RF_CACHE_DIR" "$RF_RUN_DIR"; install_kafka; install_clickhouse; secure_on ;;
  secure-off) rm -f "$RF_RUN_DIR/secure"; log "the next start of each service has no TLS listener" ;;
  down) stop_pid "$kafka_dir/pid" TERM kafka 90; stop_pid "$ch_dir/pid" TERM clickhouse 60 ;;
  status) status ;;
  kafka-start) kafka_start; kafka_wait ;;
  kafka-stop) stop_pid "$kafka_dir/pid" TERM kafka 90 ;;
  kafka-kill) stop_pid "$kafka_dir/pid" KILL kafka 10 ;;
  ch-start) ch_start; ch_wait ;;
  ch-stop) stop_pid "$ch_dir/pid" TERM clickhouse 60 ;;
  ch-kill) stop_pid "$ch_dir/pid" KILL clickhouse 10 ;;
  ch-user) shift; ch_user "$@" ;;
  ch-user-rm) ch_user_rm "$2" ;;
  ch-readonly) ch_readonly "$2" "$3" ;;
  cluster-*) cmd=${1#cluster-}; shift; exec "$here/cluster.sh" "$cmd" "$@" ;;
  *) echo "usage: infra/local.sh install|up|down|status|secure|secure-off|kafka-start|kafka-stop|kafka-kill|ch-start|ch-stop|ch-kill|ch-user NAME PASSWORD [DB,...|-] [PROFILE]|ch-user-rm NAME|ch-readonly DB on|off|cluster-up|cluster-down|cluster-status (infra/cluster.sh)" >&2; exit 2 ;;
esac
