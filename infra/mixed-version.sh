#!/bin/bash
# A rolling upgrade, measured: the release before (OLD) and this release (NEW) in one group on
# the Kafka of `make up` (RETAILFLOW_KAFKA_BROKERS), memory mode, generated traffic with orphans
# (30 % out of order). The old instance runs alone, the new one joins writing layout L, the old one
# leaves and comes back (taking partitions whose states the new one wrote), the new one leaves,
# and every order is sent again (duplicates: each state must be decoded). It prints one line
# `xv: ... dlq=N classes=[...]`; an unknown-schema class means the old release met a state it
# cannot read. usage: OLD=bin-before NEW=bin/retailflow infra/mixed-version.sh v2|v3
# (README "Upgrading"; RELIABILITY.md, twelfth session)
set -u

OLD=${OLD:?the release before (a retailflow binary)}; NEW=${NEW:?this release}; L=${1:?layout v2|v3}; P=xv$L$(date +%s); B=${OUT:-$(mktemp -d)}
export RETAILFLOW_TOPICS_ORDERS=$P.orders RETAILFLOW_TOPICS_SHIPMENTS=$P.shipments RETAILFLOW_TOPICS_RETURNS=$P.returns \
  RETAILFLOW_TOPICS_LOYALTY=$P.loyalty RETAILFLOW_TOPICS_ERP=$P.erp RETAILFLOW_TOPICS_CHANGELOG=$P.changelog \
  RETAILFLOW_TOPICS_COMMANDS=$P.commands RETAILFLOW_TOPICS_DLQ=$P.dlq RETAILFLOW_RUNTIME_GROUP=$P-ledger \
  RETAILFLOW_HTTP_ADDR= RETAILFLOW_LOG_LEVEL=warn RETAILFLOW_RUNTIME_SESSION_TIMEOUT=6s
$NEW topics create >/dev/null || exit 1
gen() { $NEW generate --orders 1500 --seed $1 --produce --duplicate-rate 0 --malformed-rate 0 --late-rate 0 --out-of-order-rate 0.3 --faults 0 >/dev/null 2>&1; }
lag() { sleep 12; }
RETAILFLOW_RUNTIME_INSTANCE_ID=0 $OLD run >$B/xv-$L-old1.log 2>&1 & old=$!
sleep 5; gen 1; lag
# the new release joins (a rolling upgrade's first pod): partitions split between the two
RETAILFLOW_RUNTIME_INSTANCE_ID=1 RETAILFLOW_STATE_CHANGELOG_LAYOUT=$L $NEW run >$B/xv-$L-new.log 2>&1 & new=$!
sleep 10; gen 2; gen 1; lag
# the old instance leaves and comes back: it takes partitions whose states the new one wrote
kill -TERM $old; wait $old; sleep 3
RETAILFLOW_RUNTIME_INSTANCE_ID=0 $OLD run >$B/xv-$L-old2.log 2>&1 & old=$!
sleep 10; kill -TERM $new; wait $new; sleep 8
# every order again (duplicates: the ledger must decode each state to see that)
gen 1; gen 2; lag
kill -TERM $old; wait $old
dlq=$($NEW consume --topic $RETAILFLOW_TOPICS_DLQ --from-beginning --idle 3s 2>/dev/null | wc -l)
cls=$($NEW consume --topic $RETAILFLOW_TOPICS_DLQ --from-beginning --idle 3s 2>/dev/null | grep -o '"error_class":"[a-z_-]*"' | sort | uniq -c | tr '\n' ' ')
cmds=$($NEW consume --topic $RETAILFLOW_TOPICS_COMMANDS --from-beginning --idle 3s 2>/dev/null | wc -l)
cl=$($NEW consume --topic $RETAILFLOW_TOPICS_CHANGELOG --from-beginning --idle 3s 2>/dev/null | wc -l)
echo "xv: prefix=$P layout=$L commands=$cmds changelog_records=$cl dlq=$dlq classes=[$cls] old_log_errors=$(grep -c -i 'level=error\|"level":"ERROR"' $B/xv-$L-old2.log)"
