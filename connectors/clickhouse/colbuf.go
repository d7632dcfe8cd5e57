package clickhouse

import (
	"reflect"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The sink's buffer is column-wise: one tableBuf per table, one typed slice per column
// (colVals), kept across flushes (reset, not reallocated). A row's values are copied out of
// the mapper's []any into the typed slices as the record is taken, so no []any per row and no
// boxed value lives until the flush; the INSERT hands each column to clickhouse-go as one
// typed slice (batch.Column(i).Append) instead of converting every value of every row
// (Block.Append → AppendRow). The values the driver receives are the same Go values either
// way, so the bytes written are the same.

// valKind is the Go type a column's values have.
type valKind uint8

const (
	kindNone valKind = iota // no value yet
	kindString
	kindUInt8
	kindUInt32
	kindUInt64
	kindInt32
	kindInt64
	kindDecimal
	kindTime
	kindAny // any other type (arrays), or a column given values of more than one type
)

// colVals holds one column's values in the slice of their Go type. Strings are kept in a ch-go
// String column (their bytes in one buffer, their positions in another): no pointer per value
// for the GC to follow, no decoded record kept reachable by a substring of it until the flush,
// and the INSERT lends that column's buffers to clickhouse-go's (lendStrings) instead of
// copying every string into a column that grows from empty.
type colVals struct {
	kind valKind
	n    int
	s    proto.ColStr
	u8   []uint8
	u32  []uint32
	u64  []uint64
	i32  []int32
	i64  []int64
	d    []decimal.Decimal
	t    []time.Time
	a    []any
	// g holds the strings of the rows of a partial INSERT (gatherStrings)
	g proto.ColStr
	// lc boxes each distinct string once for a LowCardinality(String) column, whose
	// clickhouse-go Append takes the values one by one, boxed (internedString)
	lc map[string]any
}

// add appends v and returns its estimated size beyond its word or two (rowBytes' per value
// part: computed here so each value is switched on once). The first value after a reset fixes
// the column's type; a value of another type turns the column into a []any (the mappers give
// one type per column: this only keeps a mistake correct, not fast).
func (c *colVals) add(v any) (size int64) {
	if c.kind == kindNone {
		c.kind = kindOf(v)
	}
	ok := true
	switch c.kind {
	case kindString:
		var x string
		if x, ok = v.(string); ok {
			c.s.Append(x)
			size = int64(len(x))
		}
	case kindUInt8:
		var x uint8
		if x, ok = v.(uint8); ok {
			c.u8 = append(c.u8, x)
		}
	case kindUInt32:
		var x uint32
		if x, ok = v.(uint32); ok {
			c.u32 = append(c.u32, x)
		}
	case kindUInt64:
		var x uint64
		if x, ok = v.(uint64); ok {
			c.u64 = append(c.u64, x)
		}
	case kindInt32:
		var x int32
		if x, ok = v.(int32); ok {
			c.i32 = append(c.i32, x)
		}
	case kindInt64:
		var x int64
		if x, ok = v.(int64); ok {
			c.i64 = append(c.i64, x)
		}
	case kindDecimal:
		var x decimal.Decimal
		if x, ok = v.(decimal.Decimal); ok {
			c.d = append(c.d, x)
			size = 32
		}
	case kindTime:
		var x time.Time
		if x, ok = v.(time.Time); ok {
			c.t = append(c.t, x)
		}
	default:
		c.a = append(c.a, v)
		size = valueBytes(v)
	}
	if !ok {
		c.toAny()
		c.a = append(c.a, v)
		size = valueBytes(v)
	}
	c.n++
	return size
}

func kindOf(v any) valKind {
	switch v.(type) {
	case string:
		return kindString
	case uint8:
		return kindUInt8
	case uint32:
		return kindUInt32
	case uint64:
		return kindUInt64
	case int32:
		return kindInt32
	case int64:
		return kindInt64
	case decimal.Decimal:
		return kindDecimal
	case time.Time:
		return kindTime
	}
	return kindAny
}

// toAny moves the typed values into c.a (boxed).
func (c *colVals) toAny() {
	if c.kind == kindAny {
		return
	}
	a := make([]any, 0, c.n+1)
	for i := 0; i < c.n; i++ {
		a = append(a, c.get(i))
	}
	n := c.n
	c.reset()
	c.kind, c.a, c.n = kindAny, a, n
}

// get returns value i, boxed.
func (c *colVals) get(i int) any {
	switch c.kind {
	case kindString:
		return c.s.Row(i)
	case kindUInt8:
		return c.u8[i]
	case kindUInt32:
		return c.u32[i]
	case kindUInt64:
		return c.u64[i]
	case kindInt32:
		return c.i32[i]
	case kindInt64:
		return c.i64[i]
	case kindDecimal:
		return c.d[i]
	case kindTime:
		return c.t[i]
	}
	return c.a[i]
}

// reset empties the column, keeping the capacity of its slices and dropping the references
// they held (the byte bound counts what is buffered, so nothing may stay reachable after).
func (c *colVals) reset() {
	clear(c.d)
	clear(c.t)
	clear(c.a)
	c.u8, c.u32, c.u64, c.i32, c.i64, c.d, c.t, c.a = c.u8[:0], c.u32[:0], c.u64[:0], c.i32[:0], c.i64[:0], c.d[:0], c.t[:0], c.a[:0]
	c.s.Reset()
	c.g = proto.ColStr{} // a partial INSERT's copy is rare: not kept
	c.kind, c.n = kindNone, 0
}

// typed returns the column's values as the typed slice clickhouse-go's column Append takes for
// the ClickHouse type chType, or nil when the values must be appended one by one (arrays, a
// column of mixed types, or a Go type that is not the ClickHouse type's own).
func (c *colVals) typed(chType string) any {
	switch {
	case c.kind == kindString && chType == "String":
		return c.strings() // appendTo lends the buffers instead where it can
	case c.kind == kindUInt8 && chType == "UInt8":
		return c.u8
	case c.kind == kindUInt32 && chType == "UInt32":
		return c.u32
	case c.kind == kindUInt64 && chType == "UInt64":
		return c.u64
	case c.kind == kindInt32 && chType == "Int32":
		return c.i32
	case c.kind == kindInt64 && chType == "Int64":
		return c.i64
	case c.kind == kindDecimal && len(chType) > 8 && chType[:8] == "Decimal(":
		return c.d
	case c.kind == kindTime && chType == "DateTime":
		return c.t
	}
	return nil
}

// gather is typed for the rows idx only (a batch without the rows of dead-lettered records, or
// a part of a bisection).
func (c *colVals) gather(idx []int, chType string) any {
	switch t := c.typed(chType).(type) {
	case []string:
		return gatherOf(t, idx)
	case []uint8:
		return gatherOf(t, idx)
	case []uint32:
		return gatherOf(t, idx)
	case []uint64:
		return gatherOf(t, idx)
	case []int32:
		return gatherOf(t, idx)
	case []int64:
		return gatherOf(t, idx)
	case []decimal.Decimal:
		return gatherOf(t, idx)
	case []time.Time:
		return gatherOf(t, idx)
	}
	return nil
}

func gatherOf[T any](s []T, idx []int) []T {
	out := make([]T, len(idx))
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}

// tableBuf is the buffered rows of one table: its columns and, per row, the record it came from.
type tableBuf struct {
	t     Table
	rowID int // position of row_id in t.Columns
	cols  []colVals
	recs  []*kgo.Record
}

func newTableBuf(t Table) *tableBuf {
	b := &tableBuf{t: t, rowID: -1, cols: make([]colVals, len(t.Columns))}
	for i, c := range t.Columns {
		if c == "row_id" {
			b.rowID = i
		}
	}
	return b
}

func (b *tableBuf) len() int { return len(b.recs) }

// add appends one row, its values in the table's column order, and returns rowBytes(vals).
func (b *tableBuf) add(vals []any, rec *kgo.Record) int64 {
	n := int64(24 * len(vals))
	for i, v := range vals {
		n += b.cols[i].add(v)
	}
	b.recs = append(b.recs, rec)
	return n
}

// reset empties the buffer for the next flush, keeping its slices.
func (b *tableBuf) reset() {
	for i := range b.cols {
		b.cols[i].reset()
	}
	clear(b.recs)
	b.recs = b.recs[:0]
}

// row returns row i's values, boxed (row-wise appends, error messages).
func (b *tableBuf) row(i int) []any {
	out := make([]any, len(b.cols))
	for j := range b.cols {
		out[j] = b.cols[j].get(i)
	}
	return out
}

// rowIDOf is row i's row_id (for error messages).
func (b *tableBuf) rowIDOf(i int) any {
	if b.rowID < 0 {
		return nil
	}
	return b.cols[b.rowID].get(i)
}

// appendTo appends the rows idx (all rows when idx is nil) to batch column by column: a typed
// slice per column where the column's Go type is its ClickHouse type's own, the values one by
// one (AppendRow, as Block.Append does) otherwise.
func (b *tableBuf) appendTo(batch driver.Batch, idx []int) error {
	cols := batch.Columns()
	for j := range b.cols {
		c := &b.cols[j]
		chType := string(cols[j].Type())
		if c.kind == kindString && chType == "String" {
			strs := c.s
			if idx != nil {
				strs = c.gatherStrings(idx)
			}
			if lendStrings(cols[j], strs) {
				continue
			}
		}
		var typed any
		if idx == nil {
			typed = c.typed(chType)
		} else {
			typed = c.gather(idx, chType)
		}
		bc := batch.Column(j)
		if typed != nil {
			if err := bc.Append(typed); err != nil {
				return err
			}
			continue
		}
		box := c.get
		if c.kind == kindString && chType == "LowCardinality(String)" {
			box = c.internedString // its Append takes the values one by one, boxed
		}
		if idx == nil {
			for i := 0; i < c.n; i++ {
				if err := bc.AppendRow(box(i)); err != nil {
					return err
				}
			}
			continue
		}
		for _, i := range idx {
			if err := bc.AppendRow(box(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// strings returns the column's strings as a []string (the INSERT's path when lending is off).
func (c *colVals) strings() []string {
	out := make([]string, c.s.Rows())
	for i := range out {
		out[i] = c.s.Row(i)
	}
	return out
}

// internedString is string i boxed, one box per distinct string (a LowCardinality column has
// few: a currency, a topic); the table of boxes is dropped when it passes 4,096 strings.
func (c *colVals) internedString(i int) any {
	b := c.s.RowBytes(i)
	if v, ok := c.lc[string(b)]; ok { // the conversion in a map index does not allocate
		return v
	}
	if c.lc == nil || len(c.lc) >= 4096 {
		c.lc = make(map[string]any, 64)
	}
	s := string(b)
	v := any(s)
	c.lc[s] = v
	return v
}

// gatherStrings returns the strings of rows idx, in c.g.
func (c *colVals) gatherStrings(idx []int) proto.ColStr {
	c.g.Reset()
	for _, i := range idx {
		c.g.AppendBytes(c.s.RowBytes(i))
	}
	return c.g
}

// lendStrings makes the buffers of strs the contents of clickhouse-go's String column col and reports
// whether it could. clickhouse-go makes a new column for every INSERT (PrepareBatch), and its
// Append copied every string into byte and position slices grown from empty by doubling, in
// every flush: 9 % of the sink's CPU (bench/RESULTS.md, eighth session). The column's ch-go
// ColStr is reached at its field offset, found by reflection once (strColOffset); with a
// clickhouse-go whose String column holds no ColStr the column's own Append is used (false),
// and TestStringColumnLent fails. The buffers stay the colVals': the batch is sent or aborted
// before they change (the sink inserts one table at a time and changes its buffers only
// between flushes; Send has encoded the column when it returns).
func lendStrings(col column.Interface, strs proto.ColStr) bool {
	sc, ok := col.(*column.String)
	if !ok || strColOffset == ^uintptr(0) {
		return false
	}
	cs := (*proto.ColStr)(unsafe.Add(unsafe.Pointer(sc), strColOffset))
	if len(cs.Pos) != 0 {
		return false
	}
	*cs = strs
	return true
}

// strColOffset is the offset of the ch-go ColStr in clickhouse-go's column.String (all ones: none).
// Only a column.String whose one ColStr field is its only state besides its name qualifies: a
// second ColStr, or anything else (a cached row count), could disagree with the lent buffers.
var strColOffset = func() uintptr {
	t := reflect.TypeFor[column.String]()
	off, found := ^uintptr(0), 0
	for i := range t.NumField() {
		switch f := t.Field(i); {
		case f.Type == reflect.TypeFor[proto.ColStr]():
			off, found = f.Offset, found+1
		case f.Type.Kind() == reflect.String: // its name
		default:
			return ^uintptr(0)
		}
	}
	if found != 1 {
		return ^uintptr(0)
	}
	return off
}()
