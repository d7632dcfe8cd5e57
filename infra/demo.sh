#!/usr/bin/env bash
# The demo: the whole path on generated traffic. Creates fresh topics (a per-run prefix) and a
# fresh ClickHouse database, generates a few hundred orders with some downstream faults,
# duplicates, out-of-order and malformed records, runs the exactly-once processor and the sink,
# waits until everything is in ClickHouse, and prints what landed: row counts, the
# reconciliation report and one order's story; then leaves `retailflow ui` (the read-only
# operations page) serving the demo database and prints its address last. Called by `make demo`
# after `make build up`.
set -euo pipefail
cd "$(dirname "$0")/.."
B=bin/retailflow
ORDERS=${DEMO_ORDERS:-300}
RF_RUN_DIR=${RF_RUN_DIR:-$PWD/.run}
CH_HTTP=${CH_HTTP_PORT:-8123}
run_id=demo$(date +%s)
logs=$RF_RUN_DIR/demo/$run_id
mkdir -p "$logs"

export RETAILFLOW_TOPICS_ORDERS=$run_id.orders RETAILFLOW_TOPICS_SHIPMENTS=$run_id.shipments \
  RETAILFLOW_TOPICS_RETURNS=$run_id.returns RETAILFLOW_TOPICS_LOYALTY=$run_id.loyalty \
  RETAILFLOW_TOPICS_ERP=$run_id.erp RETAILFLOW_TOPICS_COMMANDS=$run_id.loyalty-commands \
  RETAILFLOW_TOPICS_CHANGELOG=$run_id.order-ledger.changelog RETAILFLOW_TOPICS_DLQ=$run_id.dlq \
  RETAILFLOW_TOPICS_PARTITIONS=3 \
  RETAILFLOW_RUNTIME_GROUP=$run_id-ledger RETAILFLOW_SINK_GROUP=$run_id-sink \
  RETAILFLOW_CLICKHOUSE_DATABASE=retailflow_demo RETAILFLOW_LOG_LEVEL=warn

ch() { curl -sf "http://127.0.0.1:$CH_HTTP/" --data-binary "$1"; }
say() { printf '\n== %s\n' "$*"; }

pids=()
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT

say "topics ($run_id.*) and a fresh ClickHouse database retailflow_demo"
$B topics create
ch "DROP DATABASE IF EXISTS retailflow_demo" >/dev/null
$B migrate

say "generating $ORDERS orders (seed 42, 5% of each downstream fault, duplicates, out-of-order, malformed records)"
$B generate --orders "$ORDERS" --seed 42 --faults 0.05 --duplicate-rate 0.02 --out-of-order-rate 0.1 \
  --late-rate 0.05 --malformed-rate 0.02 --produce

say "running the processor and the sink (logs in $logs)"
$B run --instance-id 0 >"$logs/run.log" 2>&1 & pids+=($!)
# the sink serves metrics on a free port so it counts the views every 2 s and records the
# day's counts (the operations page's trend)
RETAILFLOW_HTTP_ADDR=127.0.0.1:0 RETAILFLOW_METRICS_BACKLOG_INTERVAL=2s $B sink >"$logs/sink.log" 2>&1 & pids+=($!)

# Caught up = the sink's tables stop growing and every order and command is there.
prev="" stable=0
for i in $(seq 1 180); do
  sleep 1
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { tail -20 "$logs"/*.log >&2; echo "demo: a pipeline process exited early (logs above)" >&2; exit 1; }
  done
  now=$(ch "SELECT (SELECT count() FROM retailflow_demo.orders FINAL), (SELECT count() FROM retailflow_demo.loyalty_commands FINAL), (SELECT count() FROM retailflow_demo.order_state FINAL), (SELECT count() FROM retailflow_demo.dead_letters FINAL)" 2>/dev/null || echo "")
  if [[ -n $now && $now == "$prev" && ${now%%$'\t'*} -ge $ORDERS ]]; then
    stable=$((stable + 1)); [[ $stable -ge 3 ]] && break
  else
    stable=0
  fi
  prev=$now
done
[[ $stable -ge 3 ]] || { echo "demo: the sink did not catch up within 180 s (last counts: $prev)" >&2; exit 1; }

say "rows in ClickHouse (after FINAL)"
for t in orders order_lines shipment_lines return_lines loyalty_postings billing_documents loyalty_commands order_state order_line_state audit_ledger dead_letters; do
  printf '  %-22s %s\n' "$t" "$(ch "SELECT count() FROM retailflow_demo.$t FINAL")"
done

say "loyalty commands by type (points)"
ch "SELECT command_type, count(), sum(points) FROM retailflow_demo.loyalty_commands FINAL GROUP BY command_type ORDER BY command_type FORMAT PrettyCompactNoEscapes"

say "reconciliation report"
$B reconcile --top 3

order=$(ch "SELECT order_id FROM retailflow_demo.recon_accrual_vs_fulfilment LIMIT 1" | head -1)
if [[ -n $order ]]; then
  say "one order's story: $order"
  $B reconcile --order "$order"
fi
# The operations page stays up after the demo (the processor and sink stop): it only reads.
ui_addr=${RETAILFLOW_UI_ADDR:-127.0.0.1:8088}
ui_pid=${RF_RUN_DIR:-.run}/demo-ui.pid
mkdir -p "$(dirname "$ui_pid")"
if [[ -f $ui_pid ]] && kill -0 "$(cat "$ui_pid")" 2>/dev/null; then kill "$(cat "$ui_pid")"; sleep 1; fi
RETAILFLOW_UI_ADDR=$ui_addr nohup $B ui >"$logs/ui.log" 2>&1 &
echo $! >"$ui_pid"
for i in $(seq 1 50); do
  curl -fsS -o /dev/null "http://$ui_addr/" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://$ui_addr/" || { cat "$logs/ui.log" >&2; echo "demo: the operations page did not start on $ui_addr" >&2; exit 1; }
say "done: processor and sink stop now (SIGTERM); topics $run_id.* and database retailflow_demo stay for exploring"
echo "operations page (read-only, stop it with: kill \$(cat $ui_pid)): http://$ui_addr/"
