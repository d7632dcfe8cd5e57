package kafka

import "testing"

// Values from the Java client (org.apache.kafka.common.utils.Utils.murmur2 and
// toPositive(...) % n), as used by its DefaultPartitioner / BuiltInPartitioner for keyed records.
func TestKeyPartitionMatchesJava(t *testing.T) {
	for _, tc := range []struct {
		key  string
		n    int
		want int32
	}{
		// Utils.murmur2: "21" → -973932308, "foobar" → -790332482, "a-little-bit-long-string" → -985981536
		{"21", 1 << 30, javaPartition(-973932308, 1<<30)},
		{"foobar", 1 << 30, javaPartition(-790332482, 1<<30)},
		{"a-little-bit-long-string", 1 << 30, javaPartition(-985981536, 1<<30)},
	} {
		if got := KeyPartition([]byte(tc.key), tc.n); got != tc.want {
			t.Errorf("KeyPartition(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
	if KeyPartition(nil, 4) != -1 || KeyPartition([]byte("x"), 0) != -1 {
		t.Error("nil key or no partitions must give -1")
	}
}

// javaPartition is Utils.toPositive(murmur2) % n, from the Java client's signed int hash.
func javaPartition(murmur2 int32, n int) int32 { return int32(int(uint32(murmur2)&0x7fffffff) % n) }
