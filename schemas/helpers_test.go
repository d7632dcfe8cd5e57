package schemas

import "reflect"

var reflectTypeOfEvent = reflect.TypeFor[Event]()

func reflectValueOf(e *Event) reflect.Value { return reflect.ValueOf(e).Elem() }
