package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// keyHasher is franz-go's implementation of the Java client's default partitioner for keyed
// records: murmur2 of the key bytes, positive, modulo the partition count. Stateless for keyed
// records (the sticky part only serves records without a key, which KeyPartition refuses).
var keyHasher = kgo.StickyKeyPartitioner(nil).ForTopic("")

// KeyPartition is the partition the topics' producers are expected to choose for a key, the
// one Kafka's Java client, Kafka Streams, franz-go and `retailflow produce` choose by default:
// murmur2(key) & 0x7fffffff % n. librdkafka's default (CRC32) differs for most keys. It returns
// -1 for a nil key or n < 1.
func KeyPartition(key []byte, n int) int32 {
	return RecordPartition(&kgo.Record{Key: key}, n)
}

// RecordPartition is KeyPartition of r's key, without building a record (the runner checks
// every input record with it).
func RecordPartition(r *kgo.Record, n int) int32 {
	if r.Key == nil || n < 1 {
		return -1
	}
	return int32(keyHasher.Partition(r, n))
}
