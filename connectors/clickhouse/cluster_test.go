package clickhouse

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

func TestClusterDDLRefusesWhatItCannotReplicate(t *testing.T) {
	c, err := newClusterDDL("db", "rf")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"OPTIMIZE TABLE db.orders FINAL",
		"CREATE TABLE IF NOT EXISTS db.x (a UInt8) ENGINE = MergeTree ORDER BY a",
		"ALTER TABLE db.v_line_facts ADD COLUMN a UInt8",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS db.m TO db.nowhere AS SELECT * FROM db.orders",
	} {
		if got, err := c.Rewrite(bad); err == nil {
			t.Errorf("%q: rewritten to %q, want an error (it would run on one server only)", bad, got)
		}
	}
	if _, err := newClusterDDL("db", "bad-name"); err == nil {
		t.Error("cluster name bad-name accepted")
	}
	// a column change reaches the Distributed table too: dropped and created from the new local table
	got, err := c.Rewrite("-- a comment\nALTER TABLE db.orders ADD COLUMN x String")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ALTER TABLE db.orders_local ON CLUSTER rf ADD COLUMN x String",
		"DROP TABLE IF EXISTS db.orders ON CLUSTER rf",
		"CREATE TABLE IF NOT EXISTS db.orders ON CLUSTER rf AS db.orders_local ENGINE = Distributed(rf, db, orders_local, cityHash64(order_id))",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// clusterAddrs are the ClickHouse replicas of the cluster (infra/local.sh cluster-up writes
// them to .run/cluster/cluster.env); the test is skipped without them.
func clusterAddrs(t *testing.T) (cluster string, addrs []string) {
	t.Helper()
	needsServices(t)
	cluster, list := os.Getenv("RETAILFLOW_CLICKHOUSE_CLUSTER"), os.Getenv("RETAILFLOW_CLUSTER_CLICKHOUSE_ADDRS")
	if cluster == "" || list == "" {
		t.Skip("needs the replicated cluster: infra/local.sh cluster-up, then export $(infra/cluster.sh env | xargs)")
	}
	return cluster, strings.Split(list, ",")
}

// syncReplica waits until the replica of conn has fetched every part its peers have of db's
// replicated tables (SYSTEM SYNC REPLICA), so that it can be compared.
func syncReplica(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", db)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+n); err != nil {
			t.Fatalf("SYSTEM SYNC REPLICA %s.%s: %v", db, n, err)
		}
	}
}

// TestClusterSinkViewsMatchOracle: the schema migrated ON CLUSTER (twice: the second run does
// nothing), the sink writing through the Distributed tables of replica 1, and the views read on
// each replica equal to the oracle's, with no row doubled; the engines are what cluster mode
// promises on both.
func TestClusterSinkViewsMatchOracle(t *testing.T) {
	cluster, addrs := clusterAddrs(t)
	ctx := context.Background()
	var conns []driver.Conn
	for _, a := range addrs {
		c, err := Open(ctx, Conn{Addr: a, Database: "default", Username: "default", Cluster: cluster})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	db := "rf_cluster_" + randomID()
	began := time.Now()
	if _, err := MigrateCluster(ctx, NativeSession(conns[0]), db, cluster, testRecon()); err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated ON CLUSTER in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if os.Getenv("RETAILFLOW_KEEP_DB") == "" {
			_ = conns[0].Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cluster)
		}
	})
	if res, err := MigrateCluster(ctx, NativeSession(conns[1]), db, cluster, testRecon()); err != nil || !res.AlreadyLatest {
		t.Fatalf("second migrate from replica 2: %+v, %v (want nothing to do)", res, err)
	}
	for i, c := range conns {
		var engine, distEngine string
		if err := c.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'orders_local'", db).Scan(&engine); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'orders'", db).Scan(&distEngine); err != nil {
			t.Fatal(err)
		}
		if engine != "ReplicatedReplacingMergeTree" || distEngine != "Distributed" {
			t.Errorf("replica %d: orders_local is %s, orders is %s", i+1, engine, distEngine)
		}
	}

	e := newTopicsEnv(t, "rf-chcluster", 3, -1)
	e.conn, e.db = conns[0], db

	tr := faultyTraffic(t, 11, 120, 0.03)
	exp := tr.Expected(time.Now())
	n := e.produceTraffic(t, tr, exp)
	_, took := e.drain(t, e.sinkOptions(), 3*time.Minute)
	t.Logf("sink caught up on %d records in %s", n, took.Round(time.Millisecond))
	// retention: the month of an old dead letter is dropped on both replicas, the sink's kept
	if err := conns[0].Exec(ctx, "INSERT INTO "+db+".dead_letters (source_topic, source_partition, source_offset, row_id, version, seen_at) "+
		"SELECT 'old-topic', 0, 1, 'old-row', 1, toDateTime('2020-01-15 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	months, err := PurgeDeadLetters(ctx, conns[0], db, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), false)
	if err != nil {
		t.Fatalf("purge in cluster mode: %v", err)
	}
	if len(months) == 0 || months[0].Month != "202001" || !months[0].Dropped {
		t.Errorf("purge: %+v, want month 202001 dropped", months)
	}
	for i, c := range conns {
		syncReplica(t, c, db)
		var old uint64
		if err := c.QueryRow(ctx, "SELECT count() FROM "+db+".dead_letters_local WHERE source_topic = 'old-topic'").Scan(&old); err != nil {
			t.Fatal(err)
		}
		if old != 0 {
			t.Errorf("replica %d still has the purged month's dead letter", i+1)
		}
		var local uint64
		if err := c.QueryRow(ctx, "SELECT count() FROM "+db+".loyalty_commands_local").Scan(&local); err != nil {
			t.Fatal(err)
		}
		if local == 0 {
			t.Errorf("replica %d holds no loyalty_commands rows of its own: the data did not replicate", i+1)
		}
		t.Run(fmt.Sprintf("replica-%d", i+1), func(t *testing.T) {
			compareViews(t, viewRowsFrom(t, NativeSession(c), db), exp.Views)
			re := *e
			re.conn = c
			re.checkTotals(t, exp.Totals)
			re.noDuplicates(t)
		})
	}
}

// TestClassifyReplicationErrors: what a replicated table answers while ZooKeeper is away (the
// table turns read-only, the keeper call fails, the insert's status is unknown) or while no
// replica is reachable from a Distributed table is the environment: the sink waits, under its
// own reason, and never bisects or dead-letters a record for it.
func TestClassifyReplicationErrors(t *testing.T) {
	for _, code := range []int32{242, 999, 225, 319, 279, 286} {
		c := classify(fmt.Errorf("insert 10 rows into orders: %w", &ch.Exception{Code: code, Message: "x"}))
		if c.rows || c.reason != "replication" {
			t.Errorf("code %d: %+v, want reason replication", code, c)
		}
		if !strings.Contains(errClass{reason: "replication"}.hint(), "ZooKeeper") {
			t.Errorf("the replication hint does not name ZooKeeper")
		}
	}
}
