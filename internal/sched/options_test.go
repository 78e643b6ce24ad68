package sched

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

func TestOptions(t *testing.T) {
	s := &Snapshot{
		Now: t0,
		Pools: []Pool{
			mkPool("rigs", func(p *Pool) { p.Prices.GPUHour = map[string]float64{"rtx3090": 0.3} }),
			mkPool("cloud", func(p *Pool) { p.Tier = core.TierCertified; p.Prices.GPUHour = map[string]float64{"a100": 3} }),
			mkPool("hpc", func(p *Pool) { p.Tier = core.TierPrivate; p.Prices.GPUHour = map[string]float64{"a100": 2.5} }),
			mkPool("old", func(p *Pool) { p.State = "draining" }),
		},
		Nodes: []Node{
			mkNode("r1", "rigs", 8, map[string]int{"rtx3090": 2}),
			mkNode("c1", "cloud", 8, map[string]int{"a100": 8}),
			busy(mkNode("h1", "hpc", 8, map[string]int{"a100": 8}), 8, 64*gib, map[string]int{"a100": 0}),
		},
	}
	j := mkJob("j", withGPUs(1), withEstimate(2*time.Hour), func(j *spec.Job) { j.Classification = core.ClassConfidential })
	got := Options(s, j)
	want := []Option{
		{Pool: "hpc", Feasible: true, Reason: "no node has 1 free GPU", GPUModel: "a100", PricePerHour: 2.5, EstHours: 2, EstCost: 5},
		{Pool: "cloud", Feasible: true, FitsNow: true, GPUModel: "a100", PricePerHour: 3, EstHours: 2, EstCost: 6},
		{Pool: "rigs", Reason: "trust tier community is below certified, which confidential data needs (policy)",
			GPUModel: "rtx3090", PricePerHour: 0.3, EstHours: 2 / 0.55, EstCost: 0.3 * 2 / 0.55},
		{Pool: "old", Reason: "pool is draining"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(approx)); diff != "" {
		t.Errorf("Options (-want +got):\n%s", diff)
	}

	// Objective time puts the fastest first.
	j.Spec.Objective = spec.ObjectiveTime
	s.Nodes[0] = mkNode("r1", "rigs", 8, map[string]int{"rtx3090": 2})
	s.Pools[0].Tier = core.TierPrivate
	s.Nodes = append(s.Nodes, mkNode("r2", "rigs", 8, map[string]int{"h100": 1}))
	s.Pools[0].Prices.GPUHour["h100"] = 9
	var order []string
	for _, o := range Options(s, j) {
		order = append(order, fmt.Sprintf("%s/%s", o.Pool, o.GPUModel))
	}
	if diff := cmp.Diff([]string{"rigs/h100", "hpc/a100", "cloud/a100", "old/"}, order); diff != "" {
		t.Errorf("order with objective time (-want +got):\n%s", diff)
	}
}

func ExampleOptions() {
	s := &Snapshot{
		Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Pools: []Pool{
			{ID: "p1", Name: "rigs", Region: "eu", Tier: core.TierCommunity, State: PoolActive,
				Prices: Prices{GPUHour: map[string]float64{"rtx4090": 0.35}}, LossRate: 0.02},
			{ID: "p2", Name: "cloud", Region: "eu", Tier: core.TierCertified, State: PoolActive,
				Prices: Prices{GPUHour: map[string]float64{"a100": 2.9}}},
		},
		Nodes: []Node{
			{ID: "n1", PoolID: "p1", Free: Capacity{MilliCPUs: 16000, MemoryBytes: 64 << 30, GPUs: map[string]int{"rtx4090": 2}}},
			{ID: "n2", PoolID: "p2", Free: Capacity{MilliCPUs: 32000, MemoryBytes: 256 << 30, GPUs: map[string]int{"a100": 8}}},
		},
	}
	job := Job{ID: "resnet", Project: "vision", CreatedAt: s.Now, Spec: &spec.Job{
		Nodes:          1,
		Resources:      core.Resources{MilliCPUs: 8000, MemoryBytes: 32 << 30, GPUs: 1},
		Estimate:       spec.Duration(4 * time.Hour),
		Checkpoint:     &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(10 * time.Minute)},
		Classification: core.ClassInternal,
	}}
	for _, o := range Options(s, job) {
		fmt.Printf("%-5s %-7s $%.2f/h %4.1fh rework $%.2f total $%.2f fits now: %v\n",
			o.Pool, o.GPUModel, o.PricePerHour, o.EstHours, o.ExpectedRework, o.EstCost, o.FitsNow)
	}
	// Output:
	// rigs  rtx4090 $0.35/h  5.0h rework $0.01 total $1.76 fits now: true
	// cloud a100    $2.90/h  4.0h rework $0.00 total $11.60 fits now: true
}
