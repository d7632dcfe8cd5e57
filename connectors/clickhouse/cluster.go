package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// Cluster mode (clickhouse.cluster: <name>): the same migrations, rewritten statement by
// statement for a ClickHouse cluster of one shard with replicas (remote_servers <name>, macros
// {shard} and {replica}, ZooKeeper). The single-node schema is the default and is unchanged.
//
//   - every data table T becomes T_local, a ReplicatedReplacingMergeTree at
//     /clickhouse/tables/{shard}/<db>/T_local with replica {replica} and the same version
//     column, ORDER BY and PARTITION BY, and T a Distributed table in front of it
//     (Distributed(<name>, <db>, T_local, cityHash64(<ORDER BY>))): the sink writes T, the
//     views read T. The sharding key is the table's sorting key, so the rows a
//     ReplacingMergeTree must collapse always meet on one shard;
//   - the bookkeeping tables (schema_migrations, schema_features, schema_views) are replicated
//     but not distributed: migrate reads what it wrote on the server it is connected to;
//   - a materialized view reads and writes the local tables (it fires on the replica that
//     received the INSERT; replication carries its output to the others);
//   - every CREATE, ALTER, DROP and RENAME runs ON CLUSTER <name>; an ALTER of a column runs on
//     T_local, and T (the Distributed table, which holds nothing) is dropped and created again
//     with T_local's new columns (18.16 refuses ALTER ON CLUSTER of a table that is not
//     replicated); MODIFY COMMENT and MODIFY SETTING run on T_local only; non_replicated_deduplication_window is not set (a replicated
//     table deduplicates inserted blocks by replicated_deduplication_window already);
//   - INSERT … SELECT (the backfills of a migration) goes through the Distributed tables.
//
// The views join tables of one shard; a cluster of several shards would need GLOBAL joins,
// which the 18.16/current-server intersection the views are written in does not use.

// clusterNameRE is what a cluster name (a remote_servers element) may be.
var clusterNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// bookkeeping tables are replicated without a Distributed table in front.
var bookkeeping = map[string]bool{"schema_migrations": true, "schema_features": true, "schema_views": true}

// clusterDDL rewrites single-node statements for cluster mode (see above).
type clusterDDL struct {
	cluster string
	db      string
	data    map[string]bool   // tables that hold data (CREATE TABLE), as opposed to views
	keys    map[string]string // data table → its ORDER BY, the Distributed table's sharding key
}

func newClusterDDL(db, cluster string) (*clusterDDL, error) {
	if !clusterNameRE.MatchString(cluster) {
		return nil, fmt.Errorf("clickhouse: cluster name %q must match %s", cluster, clusterNameRE)
	}
	if !dbNameRE.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database name %q must match %s", db, dbNameRE)
	}
	c := &clusterDDL{cluster: cluster, db: db, data: map[string]bool{}, keys: map[string]string{}}
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	all := bootstrapStatements(db)
	for _, m := range ms {
		all = append(all, m.Statements(db)...)
	}
	for _, s := range all {
		body := stripComments(s)
		if m := createTableRE.FindStringSubmatch(body); m != nil && m[2] == db {
			c.data[m[3]] = true
			if om := orderByRE.FindStringSubmatch(body); om != nil {
				key := om[1]
				if !strings.HasPrefix(key, "(") {
					key = "(" + key + ")"
				}
				c.keys[m[3]] = key
			}
		}
		if m := renameRE.FindStringSubmatch(body); m != nil {
			before := map[string]string{}
			for k, v := range c.keys {
				before[k] = v
			}
			for _, pair := range renamePairs(m[1]) { // the pairs of one RENAME swap at once
				if c.data[pair[0]] {
					c.data[pair[1]] = true
					c.keys[pair[1]] = before[pair[0]]
				}
			}
		}
	}
	return c, nil
}

var (
	createTableRE = regexp.MustCompile(`^CREATE TABLE (IF NOT EXISTS )?(\w+)\.(\w+)\s`)
	createDBRE    = regexp.MustCompile(`^CREATE DATABASE (IF NOT EXISTS )?(\w+)$`)
	createViewRE2 = regexp.MustCompile(`^CREATE VIEW (IF NOT EXISTS )?(\w+)\.(\w+) AS`)
	createMVRE    = regexp.MustCompile(`(?s)^CREATE MATERIALIZED VIEW (IF NOT EXISTS )?(\w+)\.(\w+) TO (\w+)\.(\w+) AS SELECT \* FROM (\w+)\.(\w+)$`)
	alterRE       = regexp.MustCompile(`(?s)^ALTER TABLE (\w+)\.(\w+)\s+(.*)$`)
	dropRE        = regexp.MustCompile(`^DROP TABLE (IF EXISTS )?(\w+)\.(\w+)$`)
	renameRE      = regexp.MustCompile(`(?s)^RENAME TABLE (.*)$`)
	asTableRE     = regexp.MustCompile(`\sAS (\w+)\.(\w+)\s`)
	engineRE      = regexp.MustCompile(`ENGINE = ReplacingMergeTree(\(([^)]*)\))?`)
	orderByRE     = regexp.MustCompile(`ORDER BY (\([^)]*\)|\w+)`)
)

// stripComments drops the leading comment lines of a statement (`-- requires: …`).
func stripComments(s string) string {
	lines := strings.Split(s, "\n")
	for len(lines) > 0 && (strings.HasPrefix(strings.TrimSpace(lines[0]), "--") || strings.TrimSpace(lines[0]) == "") {
		lines = lines[1:]
	}
	return strings.Join(lines, "\n")
}

// renamePairs splits "a.x TO a.y, a.z TO a.w" into table-name pairs.
func renamePairs(list string) [][2]string {
	var out [][2]string
	for _, p := range strings.Split(list, ",") {
		from, to, ok := strings.Cut(strings.TrimSpace(p), " TO ")
		if !ok {
			continue
		}
		out = append(out, [2]string{tableName(from), tableName(to)})
	}
	return out
}

func tableName(qualified string) string {
	_, t, _ := strings.Cut(strings.TrimSpace(qualified), ".")
	return t
}

func (c *clusterDDL) on() string { return " ON CLUSTER " + c.cluster }

// local is the name of the replicated table behind data table t.
func (c *clusterDDL) local(t string) string {
	if bookkeeping[t] {
		return t
	}
	return t + "_local"
}

// distributed is the statement that creates data table t's Distributed table.
func (c *clusterDDL) distributed(t, shardingKey string) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s AS %s.%s ENGINE = Distributed(%s, %s, %s, cityHash64%s)",
		c.db, t, c.on(), c.db, c.local(t), c.cluster, c.db, c.local(t), shardingKey)
}

// Rewrite returns the cluster statements for one single-node statement (usually one, two for a
// data table's CREATE, ALTER of a column and DROP; a RENAME becomes its renames plus the
// Distributed tables dropped and created again, since a Distributed table names its local
// table). A statement it does not know is refused rather than run on one server only.
func (c *clusterDDL) Rewrite(stmt string) ([]string, error) {
	s := stripComments(stmt)
	switch {
	case strings.HasPrefix(s, "SELECT "), strings.HasPrefix(s, "INSERT INTO "):
		return []string{stmt}, nil
	}
	if m := createDBRE.FindStringSubmatch(s); m != nil {
		return []string{s + c.on()}, nil
	}
	if m := createViewRE2.FindStringSubmatchIndex(s); m != nil {
		name := s[m[6]:m[7]]
		return []string{s[:m[7]] + c.on() + s[m[7]:]}, checkDB(c.db, s[m[4]:m[5]], name)
	}
	if m := createMVRE.FindStringSubmatch(s); m != nil {
		if !c.data[m[5]] || !c.data[m[7]] {
			return nil, fmt.Errorf("cluster DDL: materialized view %s reads or writes a table that is not a data table", m[3])
		}
		return []string{fmt.Sprintf("CREATE MATERIALIZED VIEW %s%s.%s%s TO %s.%s AS SELECT * FROM %s.%s",
			m[1], m[2], m[3], c.on(), m[4], c.local(m[5]), m[6], c.local(m[7]))}, nil
	}
	if m := createTableRE.FindStringSubmatchIndex(s); m != nil {
		t := s[m[6]:m[7]]
		rest := s[m[7]:]
		em := engineRE.FindStringSubmatch(rest)
		if em == nil {
			return nil, fmt.Errorf("cluster DDL: table %s: only ReplacingMergeTree tables can be replicated", t)
		}
		args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", c.db, c.local(t))
		if em[2] != "" {
			args += ", " + em[2]
		}
		rest = strings.Replace(rest, em[0], "ENGINE = ReplicatedReplacingMergeTree("+args+")", 1)
		if am := asTableRE.FindStringSubmatch(rest); am != nil { // CREATE TABLE x AS y: y's columns
			rest = strings.Replace(rest, am[0], " AS "+am[1]+"."+c.local(am[2])+" ", 1)
		}
		out := []string{s[:m[4]] + c.db + "." + c.local(t) + c.on() + rest}
		if !bookkeeping[t] {
			if c.keys[t] == "" {
				return nil, fmt.Errorf("cluster DDL: table %s has no ORDER BY to shard by", t)
			}
			out = append(out, c.distributed(t, c.keys[t]))
		}
		return out, nil
	}
	if m := alterRE.FindStringSubmatch(s); m != nil {
		t, change := m[2], m[3]
		if !c.data[t] {
			return nil, fmt.Errorf("cluster DDL: ALTER of %s, which is not a data table", t)
		}
		switch {
		case strings.Contains(change, "non_replicated_deduplication_window"):
			return nil, nil
		case strings.HasPrefix(change, "MODIFY COMMENT"), strings.HasPrefix(change, "MODIFY SETTING"), bookkeeping[t]:
			return []string{fmt.Sprintf("ALTER TABLE %s.%s%s %s", m[1], c.local(t), c.on(), change)}, nil
		}
		// 18.16 refuses ALTER … ON CLUSTER of a table that is not replicated (the Distributed
		// one) on a shard with internal_replication; a Distributed table holds no data (inserts
		// are synchronous, Conn.Cluster), so it is created again with the new columns
		return []string{
			fmt.Sprintf("ALTER TABLE %s.%s%s %s", m[1], c.local(t), c.on(), change),
			fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", c.db, t, c.on()),
			c.distributed(t, c.keys[t]),
		}, nil
	}
	if m := dropRE.FindStringSubmatch(s); m != nil {
		out := []string{s + c.on()}
		if c.data[m[3]] && !bookkeeping[m[3]] {
			out = append(out, fmt.Sprintf("DROP TABLE %s%s.%s%s", m[1], m[2], c.local(m[3]), c.on()))
		}
		return out, nil
	}
	if m := renameRE.FindStringSubmatch(s); m != nil {
		var locals []string
		var dists, creates []string
		for _, p := range renamePairs(m[1]) {
			if !c.data[p[0]] {
				return nil, fmt.Errorf("cluster DDL: RENAME of %s, which is not a data table", p[0])
			}
			locals = append(locals, fmt.Sprintf("%s.%s TO %s.%s", c.db, c.local(p[0]), c.db, c.local(p[1])))
			dists = append(dists, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", c.db, p[0], c.on()))
		}
		for _, p := range renamePairs(m[1]) {
			creates = append(creates, c.distributed(p[1], c.keys[p[1]]))
		}
		out := append(dists, "RENAME TABLE "+strings.Join(locals, ", ")+c.on())
		return append(out, creates...), nil
	}
	return nil, fmt.Errorf("cluster DDL: no cluster form for statement %q", headline(s))
}

func checkDB(want, got, name string) error {
	if want != got {
		return fmt.Errorf("cluster DDL: %s.%s is outside database %s", got, name, want)
	}
	return nil
}

// ClusterSession is s with every DDL statement rewritten for cluster mode (see the top of
// cluster.go) before it runs; queries and INSERTs pass unchanged. MigrateSession over it
// migrates a cluster from the server s is connected to.
func ClusterSession(s Session, db, cluster string) (Session, error) {
	c, err := newClusterDDL(db, cluster)
	if err != nil {
		return nil, err
	}
	return clusterSession{Session: s, ddl: c}, nil
}

type clusterSession struct {
	Session
	ddl *clusterDDL
}

func (cs clusterSession) Exec(ctx context.Context, sql string) error {
	stmts, err := cs.ddl.Rewrite(sql)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		if err := cs.Session.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", headline(st), err)
		}
	}
	return nil
}

// MigrateCluster is Migrate for cluster mode: the migrations run ON CLUSTER cluster from the
// server conn is connected to (every server of the cluster must be up: ON CLUSTER waits for
// each, distributed_ddl_task_timeout).
func MigrateCluster(ctx context.Context, s Session, db, cluster string, recon ReconSettings) (MigrateResult, error) {
	cs, err := ClusterSession(s, db, cluster)
	if err != nil {
		return MigrateResult{}, err
	}
	return MigrateSession(ctx, cs, db, recon)
}

// DDLCluster renders every statement MigrateCluster runs for database db on cluster, as DDL does
// for a single node (testdata/ddl_cluster.golden). Statements that need a feature of a current
// server are included, as in DDL.
func DDLCluster(db, cluster string) (string, error) {
	c, err := newClusterDDL(db, cluster)
	if err != nil {
		return "", err
	}
	single, err := DDL(db)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, part := range strings.Split(single, ";\n\n") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		// DDL writes a "-- migration" or "-- views" line before a migration's first statement
		var header []string
		lines := strings.Split(part, "\n")
		for len(lines) > 0 && (strings.HasPrefix(lines[0], "-- migration ") || strings.HasPrefix(lines[0], "-- views ")) {
			header = append(header, lines[0])
			lines = lines[1:]
		}
		for _, h := range header {
			b.WriteString(h + "\n")
		}
		stmts, err := c.Rewrite(strings.Join(lines, "\n"))
		if err != nil {
			return "", err
		}
		for _, st := range stmts {
			b.WriteString(st + ";\n\n")
		}
	}
	return b.String(), nil
}
