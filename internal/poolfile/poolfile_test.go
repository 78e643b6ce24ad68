package poolfile

import (
	"strings"
	"testing"
)

const good = `pools:
  - name: rigs-eu
    region: eu-west
    tier: community
    interconnect: {domain: rigs, gbps: 1}
    prices: {gpu_hour: {RTX 3090: 0.30, rtx4090: 0.45}, cpu_hour: 0.01}
  - name: cloud-us
    region: us-east
    tier: certified
    interconnect: {domain: efa, gbps: 400, multi_node: true}
    prices: {gpu_hour: {a100: 3.20}}
`

func TestParse(t *testing.T) {
	pools, err := Parse("pools.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 2 {
		t.Fatalf("got %d pools, want 2", len(pools))
	}
	s := pools[0].Spec()
	if *s.Tier != "community" || *s.State != "active" || s.Prices.GPUHour["rtx3090"] != 0.30 || s.Prices.CPUHour != 0.01 {
		t.Errorf("rigs-eu = %+v %+v", s, s.Prices)
	}
	if c := pools[1].Spec(); !c.Interconnect.MultiNode || c.Interconnect.Gbps != 400 || *c.Tier != "certified" {
		t.Errorf("cloud-us interconnect = %+v", c.Interconnect)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown key", "pools:\n  - name: a\n    colour: red\n", []string{"line 3", "colour"}},
		{"bad values", "pools:\n  - name: a\n    tier: gold\n  - name: B!\n    prices: {cpu_hour: -1}\n",
			[]string{"pools.yaml:2: pools[0]", "gold", "pools.yaml:4: pools[1]", "bad name", "negative"}},
		{"twice", "pools:\n  - name: a\n  - name: a\n", []string{"pools.yaml:3", "named twice (first on line 2)"}},
		{"empty", "", []string{"empty pools file"}},
		{"wrong type", "pools: {name: a}\n", []string{"line 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("pools.yaml", []byte(tt.in))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("pools:\n  - name: a\n")
	f.Add("pools: [")
	f.Fuzz(func(t *testing.T, in string) {
		pools, err := Parse("f.yaml", []byte(in))
		if err != nil {
			return
		}
		for _, p := range pools {
			if _, err := p.spec(); err != nil {
				t.Errorf("accepted a pool whose spec fails: %v", err)
			}
		}
	})
}
