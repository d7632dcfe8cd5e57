package clickhouse

import (
	"errors"
	"fmt"
	"io"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// TestClassify: only value errors start isolation; every environment error (the codes ClickHouse
// 18.16 and later return for auth, rights, read-only, disk, schema, load, timeouts), unknown
// codes and network errors are waited out, never dead-lettered.
func TestClassify(t *testing.T) {
	exc := func(code int32) error {
		return fmt.Errorf("insert 10 rows into orders: %w", &ch.Exception{Code: code, Message: "x"})
	}
	cases := []struct {
		err    error
		rows   bool
		reason string
	}{
		{exc(395), true, "rows"}, // throwIf
		{exc(53), true, "rows"},  // type mismatch
		{exc(6), true, "rows"},   // cannot parse text
		{&appendError{errors.New("converting string to UInt8")}, true, "rows"},
		{exc(193), false, "auth"},     // wrong password
		{exc(192), false, "auth"},     // unknown user
		{exc(516), false, "auth"},     // authentication failed (newer servers)
		{exc(291), false, "access"},   // database access denied
		{exc(497), false, "access"},   // access denied (grants, newer servers)
		{exc(164), false, "readonly"}, // readonly
		{exc(243), false, "disk"},     // not enough space
		{exc(1000), false, "disk"},    // Poco: access to file denied (read-only data directory)
		{exc(60), false, "schema"},    // unknown table
		{exc(16), false, "schema"},    // no such column
		{exc(252), false, "overload"}, // too many parts
		{exc(241), false, "overload"}, // memory limit
		{exc(159), false, "network"},  // timeout
		{exc(12345), false, "server"}, // unknown: never dead-letter on a guess
		{fmt.Errorf("prepare: %w", io.EOF), false, "network"},
		{&unprovenError{exc(53)}, false, "unproven"},
	}
	for _, c := range cases {
		got := classify(c.err)
		if got.rows != c.rows || got.reason != c.reason {
			t.Errorf("classify(%v) = %+v, want rows=%v reason=%s", c.err, got, c.rows, c.reason)
		}
		if got.hint() == "" {
			t.Errorf("no hint for %s", got.reason)
		}
	}
}
