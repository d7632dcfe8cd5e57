package clickhouse

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/schemas"
	"github.com/retailflow/retailflow/schemas/ledgerstate"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A column keeps its values in their Go type; a value of another type turns it into a []any
// without losing or reordering a value; reset drops every row.
func TestColValsKeepsEveryValue(t *testing.T) {
	var c colVals
	c.add("a")
	c.add("b")
	if c.kind != kindString || c.typed("String") == nil || c.typed("UInt8") != nil {
		t.Fatalf("kind %d", c.kind)
	}
	c.add(uint8(3)) // a mapping mistake: kept, column-wise append off
	if c.kind != kindAny || c.typed("String") != nil || c.n != 3 {
		t.Fatalf("after a mixed value: kind %d, n %d", c.kind, c.n)
	}
	if got := []any{c.get(0), c.get(1), c.get(2)}; !reflect.DeepEqual(got, []any{"a", "b", uint8(3)}) {
		t.Fatalf("values %v", got)
	}
	c.reset()
	d := decimal.RequireFromString("1.25")
	c.add(d)
	if c.kind != kindDecimal || c.typed("Decimal(18, 4)") == nil || !c.get(0).(decimal.Decimal).Equal(d) {
		t.Fatalf("after reset: kind %d", c.kind)
	}
	if g := c.gather([]int{0, 0}, "Decimal(18, 4)").([]decimal.Decimal); len(g) != 2 {
		t.Fatalf("gather %v", g)
	}
}

// The column-wise INSERT writes exactly what the row-wise one (Block.Append of each row's []any,
// the sink before issue 16) writes: every mapped row of every table, generated traffic with
// faults plus commands, states, tombstones and dead letters, inserted both ways into two
// databases, reads back identical, column by column.
func TestColumnWiseInsertMatchesRowWise(t *testing.T) {
	needsServices(t)
	ctx := context.Background()
	conn := testConn(t)
	rowDB, colDB := testDB(t, conn), testDB(t, conn)
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	f := generate.Faults{}
	for _, name := range generate.AllFaults() {
		f.Set(name, 0.2)
	}
	tr, err := generate.Generate(generate.Options{Seed: 16, Orders: 60, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	for i, r := range tr.Records {
		if r.Event == nil || r.Raw != nil {
			continue
		}
		rs, err := EventRows(r.Event, Source{Topic: string(r.Topic), Partition: int32(i % 3), Offset: int64(i)})
		if err != nil {
			continue
		}
		rows = append(rows, rs...)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	mult := decimal.RequireFromString("1.5")
	rows = append(rows, CommandRows(&schemas.LoyaltyCommand{RequestID: "R-1", CommandType: schemas.TypeReversalRequested, OrderID: "O-1",
		MemberID: "M-1", Points: 7, BasisAmount: decimal.RequireFromString("12.34"), TierMultiplier: mult, RequestedAt: at}, Source{Topic: "c", Offset: 3})...)
	st := ledgerstate.State{OrderID: "O-1", Clock: at, Order: &ledgerstate.OrderSnapshot{MemberID: "M-1", Currency: "EUR", TierMultiplier: mult},
		Lines: []ledgerstate.LineState{{OrderLineID: "L-1", Ordered: decimal.NewFromInt(2), LineNet: decimal.RequireFromString("9.99")}}}
	rows = append(rows, StateRows("O-1", &st, Source{Topic: "cl", Offset: 5})...)
	rows = append(rows, StateRows("O-2", nil, Source{Topic: "cl", Offset: 6})...)
	rows = append(rows, DeadLetterRows(&schemas.DeadLetter{SourceTopic: "x", SourceOffset: 9, ErrorClass: schemas.ClassAvro, Value: []byte{0, 1}},
		Source{Topic: "dlq", Offset: 4}, []string{"rf.origin"}, []string{"runtime"})...)
	rows = append(rows, FailureRow("sink-decode", schemas.ClassAvro, fmt.Errorf("bad"), Source{Topic: "x", Offset: 7}, []byte("k"), []byte{1}, at))

	byTable := map[string][][]any{}
	bufs := map[string]*tableBuf{}
	rec := &kgo.Record{Topic: "t"}
	for _, r := range rows {
		vals, err := r.Ordered(tables[r.Table])
		if err != nil {
			t.Fatal(err)
		}
		byTable[r.Table] = append(byTable[r.Table], vals)
		if bufs[r.Table] == nil {
			bufs[r.Table] = newTableBuf(tables[r.Table])
		}
		bufs[r.Table].add(vals, rec)
	}
	if len(byTable) < 15 {
		t.Fatalf("only %d tables covered", len(byTable))
	}
	for table, vals := range byTable {
		cols := joinCols(tables[table].Columns)
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+rowDB+"."+table+" ("+cols+")")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := b.Append(v...); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
		b, err = conn.PrepareBatch(ctx, "INSERT INTO "+colDB+"."+table+" ("+cols+")")
		if err != nil {
			t.Fatal(err)
		}
		if err := bufs[table].appendTo(b, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
		want, got := dumpTable(t, conn, rowDB, table, cols), dumpTable(t, conn, colDB, table, cols)
		if len(want) != len(vals) {
			t.Fatalf("%s: %d rows stored row-wise, %d inserted", table, len(want), len(vals))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: column-wise rows differ from row-wise:\n got %q\nwant %q", table, got, want)
		}
	}
	t.Logf("%d rows of %d tables identical", len(rows), len(byTable))
}

// dumpTable reads every row of db.table as text (ClickHouse's own formatting of each value,
// in insertion-independent order).
func dumpTable(t *testing.T, conn driver.Conn, db, table, cols string) []string {
	t.Helper()
	return stringRows(t, conn, "SELECT toString(tuple("+cols+")) AS r FROM "+db+"."+table+" ORDER BY r")
}

// tableBuf.add estimates a row as rowBytes does (the byte bound of the buffer).
func TestTableBufAddEstimatesAsRowBytes(t *testing.T) {
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	rows := StateRows("O-1", &ledgerstate.State{OrderID: "O-1", Clock: at, Order: &ledgerstate.OrderSnapshot{MemberID: "M-1"},
		Lines: []ledgerstate.LineState{{OrderLineID: "L-1"}}}, Source{Topic: "cl", Offset: 5})
	rows = append(rows, DeadLetterRows(&schemas.DeadLetter{SourceTopic: "x", Value: []byte("vv")}, Source{Topic: "d"}, []string{"k1", "k2"}, []string{"a", "b"})...)
	for _, r := range rows {
		vals, err := r.Ordered(tables[r.Table])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := newTableBuf(tables[r.Table]).add(vals, nil), rowBytes(vals); got != want || want <= int64(24*len(vals)) {
			t.Errorf("%s: add estimates %d, rowBytes %d", r.Table, got, want)
		}
	}
}

// TestStringColumnLent: a String column's values reach clickhouse-go's column in the colVals'
// own buffers (lendStrings), encoded byte for byte as the column's own Append encodes them;
// the next flush writes into the same buffers; a partial INSERT (gatherStrings) and the boxed
// reads (get, internedString) see the same strings. With a clickhouse-go whose
// String column no longer holds a ch-go ColStr, lending is off (the sink still works, slower):
// this test says so.
func TestStringColumnLent(t *testing.T) {
	newCol := func() column.Interface {
		col, err := column.Type("String").Column("s", nil)
		if err != nil {
			t.Fatal(err)
		}
		return col
	}
	encoded := func(col column.Interface) []byte {
		var b proto.Buffer
		col.Encode(&b)
		return b.Buf
	}
	check := func(what string, col column.Interface, want []string) {
		t.Helper()
		own := newCol()
		if _, err := own.Append(want); err != nil {
			t.Fatal(err)
		}
		if col.Rows() != len(want) {
			t.Fatalf("%s: %d rows, want %d", what, col.Rows(), len(want))
		}
		for i, s := range want {
			if got := col.Row(i, false); got != s {
				t.Errorf("%s: row %d = %q, want %q", what, i, got, s)
			}
		}
		if got, want := encoded(col), encoded(own); string(got) != string(want) {
			t.Errorf("%s: encoded %x, want %x", what, got, want)
		}
	}
	var c colVals
	var first *byte
	for round, ss := range [][]string{
		{"order-1", "", "ÄÖÜ line", strings.Repeat("x", 300), "order-1"},
		{"a", "bb"},
	} {
		c.reset()
		for _, s := range ss {
			if size := c.add(s); size != int64(len(s)) {
				t.Fatalf("add(%q) = %d", s, size)
			}
		}
		if c.kind != kindString || len(c.strings()) != len(ss) {
			t.Fatalf("round %d: kind %d, %d strings", round, c.kind, len(c.strings()))
		}
		for i, s := range ss {
			if c.get(i) != s || c.internedString(i) != s {
				t.Errorf("round %d: get(%d) = %q, interned %q, want %q", round, i, c.get(i), c.internedString(i), s)
			}
		}
		lent := newCol()
		if !lendStrings(lent, c.s) {
			t.Fatalf("round %d: clickhouse-go's String column holds no ch-go ColStr (offset %d): lending is off", round, strColOffset)
		}
		check(fmt.Sprintf("round %d", round), lent, ss)
		if round == 0 {
			first = &c.s.Buf[:1][0]
		} else if &c.s.Buf[:1][0] != first {
			t.Error("second flush: the strings went to a new buffer, the first flush's was not kept")
		}
	}
	// rows 1 and 0 of the second round, as a partial INSERT sends them
	part := newCol()
	if !lendStrings(part, c.gatherStrings([]int{1, 0})) {
		t.Fatal("gathered rows not lent")
	}
	check("gathered", part, []string{"bb", "a"})
	// a LowCardinality(String) column takes the values one by one (appendTo): boxed once per
	// distinct string, it encodes as the column's own Append of the strings does
	c.reset()
	c.lc = nil // the boxes are kept across flushes; count this column's only
	lcs := []string{"EUR", "EUR", "GBP", "", "EUR"}
	for _, s := range lcs {
		c.add(s)
	}
	lc := func() column.Interface {
		col, err := column.Type("LowCardinality(String)").Column("lc", nil)
		if err != nil {
			t.Fatal(err)
		}
		return col
	}
	byRow, own := lc(), lc()
	for i := range lcs {
		if err := byRow.AppendRow(c.internedString(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := own.Append(lcs); err != nil {
		t.Fatal(err)
	}
	if got, want := encoded(byRow), encoded(own); string(got) != string(want) || byRow.Rows() != len(lcs) {
		t.Errorf("LowCardinality: %d rows encoded %x, want %x", byRow.Rows(), got, want)
	}
	if len(c.lc) != 3 {
		t.Errorf("LowCardinality: %d boxes for 3 distinct strings", len(c.lc))
	}
	// a column that already holds rows is not lent (its rows would be lost)
	col := newCol()
	if _, err := col.Append([]string{"kept"}); err != nil {
		t.Fatal(err)
	}
	if lendStrings(col, c.s) {
		t.Error("lent buffers to a column that already held a row")
	}
}
