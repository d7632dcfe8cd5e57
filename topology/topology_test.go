package topology

import (
	"strings"
	"testing"
)

func validTopology() Topology {
	return Topology{
		Sources: []Stream{"orders", "shipments"},
		Stages: []StageSpec{{
			Name: "ledger", Inputs: []Stream{"orders", "shipments"}, Store: "ledger-changelog",
			Writes: []Stream{"commands"},
		}},
		Outputs: []Stream{"commands"},
		DLQ:     "dlq",
	}
}

func TestValidate(t *testing.T) {
	if err := validTopology().Validate(); err != nil {
		t.Fatalf("valid topology: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Topology)
		want   []string
	}{
		{"consumed twice", func(t *Topology) {
			t.Stages = append(t.Stages, StageSpec{Name: "other", Inputs: []Stream{"orders"}, Store: "other-changelog"})
		}, []string{"topic orders is consumed twice (stages ledger and other)"}},
		{"consumed twice by one stage", func(t *Topology) { t.Stages[0].Inputs = append(t.Stages[0].Inputs, "orders") },
			[]string{"stage ledger consumes orders twice"}},
		{"unknown input", func(t *Topology) { t.Stages[0].Inputs = append(t.Stages[0].Inputs, "returns") },
			[]string{"stage ledger consumes unknown topic returns"}},
		{"output nobody writes", func(t *Topology) { t.Outputs = append(t.Outputs, "audit") },
			[]string{"output audit is written by no stage"}},
		{"undeclared write", func(t *Topology) { t.Stages[0].Writes = append(t.Stages[0].Writes, "audit") },
			[]string{"stage ledger writes audit, which is neither a declared output nor consumed by a stage"}},
		{"source nobody reads", func(t *Topology) { t.Sources = append(t.Sources, "erp") },
			[]string{"source erp is consumed by no stage"}},
		{"store used as stream", func(t *Topology) { t.Stages[0].Store = "commands" },
			[]string{"store changelog commands is also used as a stream"}},
		{"no DLQ", func(t *Topology) { t.DLQ = "" }, []string{"no DLQ topic"}},
		{"DLQ doubles as output", func(t *Topology) { t.DLQ = "commands" }, []string{"DLQ commands is also used"}},
		{"no store, no name, several problems at once", func(t *Topology) {
			t.Stages[0].Store = ""
			t.Stages[0].Name = ""
			t.Outputs = append(t.Outputs, "audit")
		}, []string{"a stage has no name", "has no store changelog", "output audit is written by no stage"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top := validTopology()
			c.mutate(&top)
			err := top.Validate()
			if err == nil {
				t.Fatal("Validate accepted a broken topology")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestTopicSpecsCoPartitionEverything(t *testing.T) {
	top := validTopology()
	specs := top.Stages[0].TopicSpecs(top.DLQ)
	var names []string
	for _, s := range specs {
		if !s.CoPartitioned {
			t.Errorf("%s is not co-partitioned: outputs go to the input's partition number", s.Name)
		}
		if s.Compacted != (s.Name == "ledger-changelog") {
			t.Errorf("%s compacted=%v", s.Name, s.Compacted)
		}
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "orders,shipments,ledger-changelog,commands,dlq" {
		t.Errorf("specs = %s", got)
	}
}
