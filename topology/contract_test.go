package topology

import (
	"testing"

	"github.com/retailflow/retailflow/schemas/headers"
)

// TestDeprecatedNamesMatchTheContract: the runtime's old exported class and header names are
// the contract's (schemas/headers), so records written through either name are the same.
func TestDeprecatedNamesMatchTheContract(t *testing.T) {
	for old, want := range map[string]headers.ErrorClass{
		ClassDecode: headers.ClassDecode, ClassInvalid: headers.ClassInvalid, ClassProcess: headers.ClassProcess,
		ClassEncode: headers.ClassEncode, ClassNoKey: headers.ClassNoKey, ClassOutputRejected: headers.ClassOutputRejected,
		ClassMisrouted: headers.ClassMisrouted,
	} {
		if old != string(want) {
			t.Errorf("topology class %q is %q in schemas/headers", old, want)
		}
	}
	for _, h := range []string{HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset, HeaderOutputSeq, HeaderErrorClass,
		HeaderErrorMessage, HeaderSchemaID, HeaderFirstSeen, HeaderSourceTimestamp, HeaderValueDropped, HeaderDLQEncodeError} {
		if !headers.IsHop(h) {
			t.Errorf("%s is not a hop header of schemas/headers", h)
		}
	}
}
