package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Conn says how to reach ClickHouse over the native protocol. The password is never logged.
type Conn struct {
	Addr     string // host:port of the native protocol (9000)
	Database string // the database retailflow owns; created by Migrate
	Username string
	Password string
	// InDatabase starts each session in Database instead of "default": needed by a user whose
	// <allow_databases> leaves "default" out (the analyst, the sink), impossible for migrate
	// before the database exists.
	InDatabase bool
	// TLS, when set, is the client configuration for the server's tcp_port_secure (9440); its
	// RootCAs verify the server (nil: the system's roots). nil means plaintext.
	TLS         *tls.Config
	DialTimeout time.Duration
	// Cluster is the remote_servers cluster the database was migrated on (MigrateCluster), or
	// "" for one server. With a cluster, an INSERT into a Distributed table returns only when the
	// rows are in a replica's table (insert_distributed_sync), not in the receiving server's
	// spool: the sink commits offsets only for rows a replica holds.
	Cluster string
}

var dbNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports what is wrong with c, naming the field.
func (c Conn) Validate() error {
	if c.Addr == "" {
		return errors.New("clickhouse: Addr is empty")
	}
	if !dbNameRE.MatchString(c.Database) {
		return fmt.Errorf("clickhouse: database name %q must match %s", c.Database, dbNameRE)
	}
	return nil
}

// Open connects to the server (not to c.Database, which may not exist yet) and checks that it
// answers within DialTimeout. The caller closes the connection.
func Open(ctx context.Context, c Conn) (driver.Conn, error) {
	conn, err := Connect(c)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s unreachable within %s: %w", c.Addr, c.timeout(), err)
	}
	return conn, nil
}

func (c Conn) sessionDatabase() string {
	if c.InDatabase {
		return c.Database
	}
	return "default"
}

func (c Conn) timeout() time.Duration {
	if c.DialTimeout <= 0 {
		return 5 * time.Second
	}
	return c.DialTimeout
}

// Connect returns a connection pool without talking to the server: connections are dialled on
// use and re-dialled after failures. The sink uses it so that starting while ClickHouse is down
// means waiting (its inserts retry), not exiting.
func Connect(c Conn) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	timeout := c.timeout()
	opts := &ch.Options{
		Addr:        []string{c.Addr},
		Auth:        ch.Auth{Database: c.sessionDatabase(), Username: c.Username, Password: c.Password},
		DialTimeout: timeout,
		// One INSERT in flight per table plus the report's queries: a handful of connections.
		MaxOpenConns: 8,
		MaxIdleConns: 4,
		ReadTimeout:  60 * time.Second,
	}
	if c.TLS != nil {
		opts.TLS = c.TLS.Clone()
	}
	if c.Cluster != "" {
		opts.Settings = ch.Settings{"insert_distributed_sync": 1}
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}
