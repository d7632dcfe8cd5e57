package schemas

import (
	"reflect"
	"strings"
	"testing"
)

// Event.bodySet's cases follow bodies' order: with only the body field whose JSON key is
// bodies[i].key set, exactly body i is set; and every pointer field of Event is a body.
func TestBodiesInOrder(t *testing.T) {
	et := reflect.TypeFor[Event]()
	fields := map[string]int{}
	for i := range et.NumField() {
		f := et.Field(i)
		if f.Type.Kind() == reflect.Pointer {
			fields[strings.Split(f.Tag.Get("json"), ",")[0]] = i
		}
	}
	if len(fields) != len(bodies) {
		t.Fatalf("Event has %d body fields, bodies lists %d", len(fields), len(bodies))
	}
	for i, b := range bodies {
		fi, ok := fields[b.key]
		if !ok {
			t.Fatalf("bodies[%d] %q: no Event field with that JSON key", i, b.key)
		}
		var e Event
		f := reflect.ValueOf(&e).Elem().Field(fi)
		f.Set(reflect.New(f.Type().Elem()))
		for j := range bodies {
			if got := e.bodySet(j); got != (j == i) {
				t.Errorf("with only %s set, bodySet(%d) (%s) = %v", b.key, j, bodies[j].key, got)
			}
		}
		if got, n := e.setBody(); n != 1 || got != &bodies[i] {
			t.Errorf("with only %s set, setBody = %v, %d", b.key, got, n)
		}
	}
}
