package chaostest

// The cluster faults (issue 21): the same oracles, against the replicated cluster of
// infra/cluster.sh — three KRaft brokers (topics RF 3, min.insync.replicas 2), two ClickHouse
// replicas behind Distributed tables, ZooKeeper. They join the fault table only when the
// cluster is configured (RETAILFLOW_CLICKHOUSE_CLUSTER, set by `infra/cluster.sh env`, which
// `make chaos CLUSTER=1` exports); then the faults that stop the single node's services leave
// it, their cluster forms are here:
//
//	cluster-leader-sigkill     SIGKILL the broker leading the busiest partitions, under load
//	cluster-leader-sigterm     the same with SIGTERM (controlled shutdown)
//	cluster-kill-during-commit SIGKILL a processor's transaction coordinator while it commits
//	cluster-ch-replica-down    SIGKILL ClickHouse replica 2 mid-ingest and start it again: it
//	                           catches up, its tables and views equal replica 1's
//	cluster-zookeeper-down     ZooKeeper stopped (CLUSTER_ZK_OUTAGE, 1m): inserts back off
//	                           (reason=replication), nothing lost, nothing dead-lettered

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/retailflow/retailflow/connectors/clickhouse"
	"github.com/retailflow/retailflow/processors/oracle"
)

// clusterMode: the services are the replicated cluster (infra/cluster.sh env sets it).
func clusterMode() bool { return os.Getenv("RETAILFLOW_CLICKHOUSE_CLUSTER") != "" }

// singleNodeOnly are the faults that stop or alter the single node's services (infra/local.sh
// kafka-*, ch-stop, ch-readonly): in cluster mode they would hit services the pipeline does not use.
var singleNodeOnly = []string{"kafka-restart-sigterm", "kafka-restart-sigkill", "clickhouse-outage", "clickhouse-disk-readonly"}

func init() {
	if !clusterMode() {
		return
	}
	kept := faults[:0]
	for _, f := range faults {
		if !contains(singleNodeOnly, f.name) {
			kept = append(kept, f)
		}
	}
	faults = append(kept,
		fault{name: "cluster-leader-sigkill", long: true, ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
			return h.bounceLeader(seg, "kafka-kill")
		}},
		fault{name: "cluster-leader-sigterm", long: true, ordersX: 2, inject: func(h *harness, seg *segment) (string, error) {
			return h.bounceLeader(seg, "kafka-stop")
		}},
		fault{name: "cluster-kill-during-commit", long: true, ordersX: 2, inject: (*harness).killCoordinatorInCommit},
		fault{name: "cluster-ch-replica-down", long: true, ordersX: 3, inject: (*harness).replicaDown},
		fault{name: "cluster-zookeeper-down", long: true, ordersX: 2, inject: (*harness).zookeeperDown},
	)
}

// clusterSetup registers, once per harness, the drop of the test database on every replica (the
// harness's own DROP DATABASE reaches only the server it is connected to); kept after a failure.
var clusterSetup sync.Map // *harness → struct{}

func (h *harness) clusterOnce() {
	if _, done := clusterSetup.LoadOrStore(h, struct{}{}); done {
		return
	}
	h.t.Cleanup(func() {
		if !h.t.Failed() && h.ch != nil {
			_ = h.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+h.db+" ON CLUSTER "+os.Getenv("RETAILFLOW_CLICKHOUSE_CLUSTER"))
		}
	})
}

// cluster runs infra/local.sh cluster-<what> args….
func (h *harness) cluster(what string, args ...string) error {
	return h.infra(append([]string{"cluster-" + what}, args...)...)
}

// pipelineTopics are every topic of the pipeline (inputs and transactional outputs).
func (h *harness) pipelineTopics() []string { return append(h.Inputs(), h.Outputs()...) }

// busiestLeader is the broker that leads the partitions holding the most records of the
// pipeline's topics, with how many partitions it leads.
func (h *harness) busiestLeader(adm *kadm.Client) (int32, int, error) {
	md, err := adm.ListTopics(h.Ctx, h.pipelineTopics()...)
	if err != nil {
		return 0, 0, err
	}
	ends, err := adm.ListEndOffsets(h.Ctx, h.pipelineTopics()...)
	if err != nil {
		return 0, 0, err
	}
	records, led := map[int32]int64{}, map[int32]int{}
	for _, td := range md {
		for _, pd := range td.Partitions {
			if pd.Leader < 0 {
				continue
			}
			led[pd.Leader]++
			if o, ok := ends.Lookup(pd.Topic, pd.Partition); ok {
				records[pd.Leader] += o.Offset
			}
		}
	}
	best := int32(-1)
	for b := range led {
		if best < 0 || records[b] > records[best] || (records[b] == records[best] && b < best) {
			best = b
		}
	}
	if best < 0 {
		return 0, 0, errors.New("no partition of the pipeline has a leader")
	}
	return best, led[best], nil
}

// underReplicated counts the pipeline's partitions whose ISR is smaller than their replicas,
// and those led by broker b.
func (h *harness) underReplicated(adm *kadm.Client, b int32) (under, ledBy int, err error) {
	md, err := adm.ListTopics(h.Ctx, h.pipelineTopics()...)
	if err != nil {
		return 0, 0, err
	}
	for _, td := range md {
		for _, pd := range td.Partitions {
			if len(pd.ISR) < len(pd.Replicas) {
				under++
			}
			if pd.Leader == b {
				ledBy++
			}
		}
	}
	return under, ledBy, nil
}

// checkReplication fails unless the pipeline's topics have three replicas and
// min.insync.replicas=2: a cluster fault on RF 1 topics would test nothing.
func (h *harness) checkReplication(adm *kadm.Client) error {
	md, err := adm.ListTopics(h.Ctx, h.pipelineTopics()...)
	if err != nil {
		return err
	}
	for _, td := range md {
		for _, pd := range td.Partitions {
			if len(pd.Replicas) != 3 {
				return fmt.Errorf("%s[%d] has %d replicas, want 3 (RETAILFLOW_TOPICS_REPLICATION_FACTOR=3: infra/cluster.sh env)", pd.Topic, pd.Partition, len(pd.Replicas))
			}
		}
	}
	rc, err := adm.DescribeTopicConfigs(h.Ctx, h.Inputs()[0])
	if err != nil {
		return err
	}
	c, err := rc.On(h.Inputs()[0], nil)
	if err != nil {
		return err
	}
	for _, kv := range c.Configs {
		if kv.Key == "min.insync.replicas" && kv.MaybeValue() != "2" {
			return fmt.Errorf("%s has min.insync.replicas=%s, want 2", h.Inputs()[0], kv.MaybeValue())
		}
	}
	return nil
}

// bounceLeader stops (kafka-stop: SIGTERM, kafka-kill: SIGKILL) the broker that leads the
// busiest partitions a third into the segment, keeps it down 15 s while traffic flows (the other
// two brokers hold the ISR of 2 that acks=all needs), checks that its partitions found other
// leaders, starts it again and waits until every partition is fully replicated again.
func (h *harness) bounceLeader(seg *segment, how string) (string, error) {
	h.clusterOnce()
	adm := h.Admin()
	defer adm.Close()
	if err := h.checkReplication(adm); err != nil {
		return "", err
	}
	time.Sleep(seg.produceFor / 3)
	b, led, err := h.busiestLeader(adm)
	if err != nil {
		return "", err
	}
	if err := h.cluster(how, fmt.Sprint(b)); err != nil {
		return "", err
	}
	down := time.Now()
	time.Sleep(15 * time.Second)
	under, stillLed, err := h.underReplicated(adm, b)
	if err != nil {
		return "", err
	}
	if err := h.cluster("kafka-start", fmt.Sprint(b)); err != nil {
		return "", err
	}
	downFor := time.Since(down)
	var problems []error
	if stillLed > 0 {
		problems = append(problems, fmt.Errorf("15s after broker %d stopped it still led %d partitions of the pipeline", b, stillLed))
	}
	if under == 0 {
		problems = append(problems, fmt.Errorf("no partition was under-replicated while broker %d was down: the fault did not happen", b))
	}
	back := time.Now()
	for {
		n, _, err := h.underReplicated(adm, -1)
		if err == nil && n == 0 {
			break
		}
		if time.Since(back) > 2*time.Minute {
			problems = append(problems, fmt.Errorf("%d partitions still under-replicated 2m after broker %d restarted", n, b))
			break
		}
		time.Sleep(time.Second)
	}
	return fmt.Sprintf("broker %d (led %d partitions, the busiest) down %s (%s); %d partitions under-replicated meanwhile; ISR whole again %s after restart",
		b, led, downFor.Round(time.Second), how, under, time.Since(back).Round(time.Second)), errors.Join(problems...)
}

// killCoordinatorInCommit SIGKILLs the transaction coordinator of a processor while that
// processor's transaction is being committed (PrepareCommit or CompleteCommit seen by
// DescribeTransactions: the commit decision is logged, its markers are being written). A commit
// is a few milliseconds, so the state is polled for up to 30 s; if no commit was caught, the
// coordinator is killed while a transaction with writes is Ongoing (its commit imminent) and
// the note says so.
func (h *harness) killCoordinatorInCommit(seg *segment) (string, error) {
	h.clusterOnce()
	adm := h.Admin()
	defer adm.Close()
	time.Sleep(seg.produceFor / 4)
	var txnIDs []string
	for _, s := range h.processors() {
		txnIDs = append(txnIDs, h.Group+"-"+s.ID)
	}
	if len(txnIDs) == 0 {
		return "", errors.New("no processor is running")
	}
	var caught kadm.DescribedTransaction
	var fallback kadm.DescribedTransaction
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && caught.TxnID == ""; {
		d, err := adm.DescribeTransactions(h.Ctx, txnIDs...)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, x := range d {
			switch {
			case x.Err != nil:
			case x.State == "PrepareCommit" || x.State == "CompleteCommit":
				caught = x
			case x.State == "Ongoing" && len(x.Topics) > 0 && fallback.TxnID == "":
				fallback = x
			}
		}
	}
	state := "committing (" + caught.State + ")"
	if caught.TxnID == "" {
		if fallback.TxnID == "" {
			return "", fmt.Errorf("no transaction of %v was ongoing or committing within 30s", txnIDs)
		}
		caught, state = fallback, "ongoing with writes (no commit caught in 30s)"
	}
	b := caught.Coordinator
	if err := h.cluster("kafka-kill", fmt.Sprint(b)); err != nil {
		return "", err
	}
	time.Sleep(15 * time.Second)
	if err := h.cluster("kafka-start", fmt.Sprint(b)); err != nil {
		return "", err
	}
	seg.after = func(verdict) error {
		// the commit was completed by the coordinator that took over (or the restarted one):
		// the id is not stuck in a Prepare state
		adm := h.Admin() // inject's client is closed by now
		defer adm.Close()
		d, err := adm.DescribeTransactions(h.Ctx, caught.TxnID)
		if err != nil {
			return fmt.Errorf("describe %s after the fault: %w", caught.TxnID, err)
		}
		if x := d[caught.TxnID]; strings.HasPrefix(x.State, "Prepare") {
			return fmt.Errorf("%s is still %s after the coordinator came back", caught.TxnID, x.State)
		}
		return nil
	}
	return fmt.Sprintf("coordinator broker %d of %s SIGKILLed while %s, down 15s", b, caught.TxnID, state), nil
}

// replicaAddrs are the ClickHouse replicas (infra/cluster.sh env).
func replicaAddrs() []string {
	return strings.Split(os.Getenv("RETAILFLOW_CLUSTER_CLICKHOUSE_ADDRS"), ",")
}

// replicaDown SIGKILLs ClickHouse replica 2 a third into the segment (the sink writes through
// replica 1, whose Distributed tables keep writing to the replica that is up), keeps it down 30 s
// while traffic flows and starts it again. After the oracles (which read replica 1): replica 2
// fetches what it missed (SYSTEM SYNC REPLICA), every replicated table holds the same rows after
// FINAL on both, and its views equal replica 1's — which equal the oracle's.
func (h *harness) replicaDown(seg *segment) (string, error) {
	h.clusterOnce()
	addrs := replicaAddrs()
	if len(addrs) < 2 {
		return "", errors.New("RETAILFLOW_CLUSTER_CLICKHOUSE_ADDRS names fewer than two replicas")
	}
	r2, err := clickhouse.Connect(clickhouse.Conn{Addr: addrs[1], Database: h.db, Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		return "", err
	}
	time.Sleep(seg.produceFor / 3)
	before, err := h.localRows(h.ch)
	if err != nil {
		r2.Close()
		return "", err
	}
	if err := h.cluster("ch-kill", "2"); err != nil {
		r2.Close()
		return "", err
	}
	down := time.Now()
	time.Sleep(30 * time.Second)
	during, err := h.localRows(h.ch)
	if err != nil {
		r2.Close()
		return "", err
	}
	if err := h.cluster("ch-start", "2"); err != nil {
		r2.Close()
		return "", err
	}
	downFor := time.Since(down)
	written := during.total() - before.total()
	// catching up: replica 2 has copied every entry of each table's replication log to its queue
	// (log_pointer past log_max_index) and executed them (queue empty: the parts it missed are
	// fetched from replica 1), with a live ZooKeeper session, while traffic still flows
	restarted := time.Now()
	catchUp := time.Duration(-1)
	for time.Since(restarted) < 3*time.Minute {
		var tables, behind, queue uint64
		// (a table whose log is still empty has log_pointer = log_max_index = 0: nothing to copy)
		if err := r2.QueryRow(h.Ctx, "SELECT count(), toUInt64(countIf((log_pointer <= log_max_index AND NOT (log_pointer = 0 AND log_max_index = 0)) OR is_session_expired)), "+
			"toUInt64(sum(queue_size)) FROM system.replicas WHERE database = ?", h.db).Scan(&tables, &behind, &queue); err == nil && tables > 0 && behind == 0 && queue == 0 {
			catchUp = time.Since(restarted)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if catchUp < 0 {
		r2.Close()
		return "", errors.New("replica 2's replication queue did not empty within 3m of its restart")
	}
	seg.after = func(verdict) error {
		defer r2.Close()
		began := time.Now()
		if err := syncReplica(h.Ctx, r2, h.db); err != nil {
			return err
		}
		caughtUp := time.Since(began)
		one, err := h.localRows(h.ch)
		if err != nil {
			return err
		}
		two, err := h.localRows(r2)
		if err != nil {
			return fmt.Errorf("replica 2: %w", err)
		}
		var errs []error
		for t, n := range one {
			if two[t] != n {
				errs = append(errs, fmt.Errorf("%s: replica 1 has %d rows after FINAL, replica 2 %d", t, n, two[t]))
			}
		}
		v1, err := h.viewRows()
		if err != nil {
			return err
		}
		v2, err := h.viewRowsOn(r2)
		if err != nil {
			return fmt.Errorf("replica 2 views: %w", err)
		}
		if a, b := viewText(v1), viewText(v2); a != b {
			errs = append(errs, fmt.Errorf("views differ between the replicas:\nreplica 1:\n%s\nreplica 2:\n%s", a, b))
		}
		if written == 0 {
			errs = append(errs, errors.New("no row was written while replica 2 was down: the fault tested nothing"))
		}
		seg.note = fmt.Sprintf("; after the oracles SYNC REPLICA took %s, %d tables and %d view rows equal on both", caughtUp.Round(time.Millisecond), len(one), strings.Count(viewText(v1), "\n"))
		return errors.Join(errs...)
	}
	return fmt.Sprintf("replica 2 SIGKILLed, down %s; %d rows written to replica 1 meanwhile; its replication queue empty %s after restart",
		downFor.Round(time.Second), written, catchUp.Round(100*time.Millisecond)), nil
}

// zookeeperDown stops ZooKeeper a quarter into the segment for CLUSTER_ZK_OUTAGE (1m): the
// replicated tables turn read-only once the servers' sessions expire, so the sink's inserts fail
// with reason=replication and it waits; when ZooKeeper is back the sink resumes on its own and
// the oracles find nothing lost, doubled or dead-lettered.
func (h *harness) zookeeperDown(seg *segment) (string, error) {
	h.clusterOnce()
	outage := time.Minute
	if s := os.Getenv("CLUSTER_ZK_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return "", fmt.Errorf("CLUSTER_ZK_OUTAGE=%q: %w", s, err)
		}
		outage = d
	}
	time.Sleep(seg.produceFor / 4)
	if err := h.cluster("zk-stop"); err != nil {
		return "", err
	}
	down := time.Now()
	time.Sleep(outage)
	if err := h.cluster("zk-start"); err != nil {
		return "", err
	}
	downFor := time.Since(down)
	seg.after = func(verdict) error {
		var errs []error
		waits := h.grepSince(seg.mark, "reason=replication")
		if len(waits) == 0 {
			errs = append(errs, errors.New("the sink never waited with reason=replication: its inserts did not meet the read-only tables"))
		}
		if len(h.grepSince(seg.mark, "accepts inserts again")) == 0 {
			errs = append(errs, errors.New("the sink never said it resumed"))
		}
		if dl := h.grepSince(seg.mark, "record dead-lettered"); len(dl) > 0 {
			errs = append(errs, fmt.Errorf("the sink dead-lettered records while ZooKeeper was away: %s", dl[0]))
		}
		seg.note = fmt.Sprintf("; %d sink log lines with reason=replication", len(waits))
		return errors.Join(errs...)
	}
	return fmt.Sprintf("ZooKeeper down %s", downFor.Round(time.Second)), nil
}

// tableRows are rows after FINAL per replicated table of the database.
type tableRows map[string]uint64

func (r tableRows) total() uint64 {
	var n uint64
	for _, v := range r {
		n += v
	}
	return n
}

// localRows counts, on the server of conn, the rows after FINAL of every replicated table of
// the test database (the replica's own data, not through a Distributed table).
func (h *harness) localRows(conn driver.Conn) (tableRows, error) {
	rows, err := conn.Query(h.Ctx, "SELECT name FROM system.tables WHERE database = ? AND engine = 'ReplicatedReplacingMergeTree' AND name NOT LIKE 'schema_%'", h.db)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	out := tableRows{}
	for _, n := range names {
		var c uint64
		if err := conn.QueryRow(h.Ctx, "SELECT count() FROM "+h.db+"."+n+" FINAL").Scan(&c); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out[n] = c
	}
	return out, nil
}

// syncReplica waits until the replica of conn has fetched every part of db's replicated tables
// that its peers have (SYSTEM SYNC REPLICA), reconnecting while the server starts.
func syncReplica(ctx context.Context, conn driver.Conn, db string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for conn.Ping(ctx) != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("replica did not come back: %w", ctx.Err())
		}
		time.Sleep(time.Second)
	}
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", db)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+n); err != nil {
			return fmt.Errorf("SYSTEM SYNC REPLICA %s.%s: %w", db, n, err)
		}
	}
	return nil
}

// viewRowsOn reads the views as viewRows does, on another server.
func (h *harness) viewRowsOn(conn driver.Conn) (map[string][]oracle.ViewRow, error) {
	saved := h.ch
	h.ch = conn
	defer func() { h.ch = saved }()
	return h.viewRows()
}

// viewText is the views' rows as sorted lines, for comparing two servers.
func viewText(views map[string][]oracle.ViewRow) string {
	var lines []string
	for _, rows := range views {
		for _, r := range rows {
			lines = append(lines, fmt.Sprintf("%s pts=%d amt=%s", r.Key(), r.Points, r.Amount.StringFixed(4)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
