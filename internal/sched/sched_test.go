package sched

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

func job(id string, nodes int, r core.Resources, mod func(*spec.Job)) Job {
	j := &spec.Job{Name: id, Nodes: nodes, Resources: r, Priority: core.PriorityNormal}
	if mod != nil {
		mod(j)
	}
	return Job{ID: id, Spec: j, CreatedAt: time.Unix(0, 0)}
}

func node(id, pool string, cpus int64, gpus map[string]int) Node {
	return Node{ID: id, PoolID: pool, Free: Capacity{MilliCPUs: cpus * 1000, MemoryBytes: 64 << 30, GPUs: gpus}}
}

var (
	rigs  = Pool{ID: "p-rigs", Name: "rigs", Region: "eu", Tier: core.TierCommunity, State: PoolActive}
	cloud = Pool{ID: "p-cloud", Name: "cloud", Region: "us", Tier: core.TierCertified, State: PoolActive}
)

func TestSchedule(t *testing.T) {
	cpu := func(n int64) core.Resources { return core.Resources{MilliCPUs: n * 1000, MemoryBytes: 1 << 30} }
	gpu := func(n int, models ...string) core.Resources {
		return core.Resources{MilliCPUs: 1000, MemoryBytes: 1 << 30, GPUs: n, GPUModels: models}
	}
	tests := []struct {
		name        string
		snap        Snapshot
		want        []Placement
		wantPending map[string]string // job -> substring of its rejections
	}{
		{
			name: "first fit in pool name order",
			snap: Snapshot{Pools: []Pool{rigs, cloud}, Nodes: []Node{node("n1", "p-rigs", 4, nil), node("n2", "p-cloud", 4, nil)},
				Queued: []Job{job("j1", 1, cpu(2), nil)}},
			want: []Placement{{JobID: "j1", PoolID: "p-cloud", NodeIDs: []string{"n2"}}},
		},
		{
			name: "capacity taken by one job is not offered to the next",
			snap: Snapshot{Pools: []Pool{rigs}, Nodes: []Node{node("n1", "p-rigs", 4, nil)},
				Queued: []Job{job("j1", 1, cpu(3), nil), job("j2", 1, cpu(3), nil)}},
			want:        []Placement{{JobID: "j1", PoolID: "p-rigs", NodeIDs: []string{"n1"}}},
			wantPending: map[string]string{"j2": "rigs: no node has 3 CPUs free"},
		},
		{
			name: "higher priority first",
			snap: Snapshot{Pools: []Pool{rigs}, Nodes: []Node{node("n1", "p-rigs", 4, nil)},
				Queued: []Job{job("low", 1, cpu(3), nil), job("high", 1, cpu(3), func(j *spec.Job) { j.Priority = core.PriorityHigh })}},
			want:        []Placement{{JobID: "high", PoolID: "p-rigs", NodeIDs: []string{"n1"}}},
			wantPending: map[string]string{"low": "no node has 3 CPUs free"},
		},
		{
			name: "GPU model must match",
			snap: Snapshot{Pools: []Pool{rigs}, Nodes: []Node{node("n1", "p-rigs", 8, map[string]int{"rtx3090": 2}), node("n2", "p-rigs", 8, map[string]int{"a100": 1})},
				Queued: []Job{job("j1", 1, gpu(1, "a100"), nil), job("j2", 1, gpu(2, "a100"), nil)}},
			want:        []Placement{{JobID: "j1", PoolID: "p-rigs", NodeIDs: []string{"n2"}}},
			wantPending: map[string]string{"j2": "no node has 2 free GPUs of [a100]"},
		},
		{
			name: "gang all or nothing",
			snap: Snapshot{Pools: []Pool{rigs}, Nodes: []Node{node("n1", "p-rigs", 2, nil), node("n2", "p-rigs", 2, nil)},
				Queued: []Job{job("gang", 3, cpu(2), nil), job("small", 1, cpu(2), nil)}},
			want:        []Placement{{JobID: "small", PoolID: "p-rigs", NodeIDs: []string{"n1"}}},
			wantPending: map[string]string{"gang": "room for 2 of 3 ranks"},
		},
		{
			name: "gang ranks may share a node with room",
			snap: Snapshot{Pools: []Pool{rigs}, Nodes: []Node{node("n1", "p-rigs", 4, nil), node("n2", "p-rigs", 2, nil)},
				Queued: []Job{job("gang", 3, cpu(2), nil)}},
			want: []Placement{{JobID: "gang", PoolID: "p-rigs", NodeIDs: []string{"n1", "n1", "n2"}}},
		},
		{
			name: "trust, region, named pools and pool state",
			snap: Snapshot{Pools: []Pool{rigs, {ID: "p-old", Name: "old", State: "draining"}},
				Nodes: []Node{node("n1", "p-rigs", 4, nil), node("n2", "p-old", 4, nil)},
				Queued: []Job{
					job("trust", 1, cpu(1), func(j *spec.Job) { j.Placement.MinTrust = core.TierVerified }),
					job("region", 1, cpu(1), func(j *spec.Job) { j.Placement.Regions = []string{"us"} }),
					job("named", 1, cpu(1), func(j *spec.Job) { j.Placement.Pools = []string{"old"} }),
				}},
			wantPending: map[string]string{
				"trust":  "rigs: trust tier community is below the job's min_trust verified",
				"region": `rigs: region "eu" is not among [us]`,
				"named":  "old: pool is draining",
			},
		},
		{
			name:        "no pools",
			snap:        Snapshot{Queued: []Job{job("j1", 1, cpu(1), nil)}},
			wantPending: map[string]string{"j1": "no pools are registered"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cmp.Diff(nil, tt.snap.Nodes)
			got := Schedule(&tt.snap)
			if diff := cmp.Diff(tt.want, got.Placements); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
			if len(got.Pending) != len(tt.wantPending) {
				t.Errorf("pending = %v, want %d jobs", got.Pending, len(tt.wantPending))
			}
			for id, want := range tt.wantPending {
				var reasons []string
				for _, r := range got.Pending[id] {
					reasons = append(reasons, r.String())
				}
				if all := strings.Join(reasons, "; "); !strings.Contains(all, want) {
					t.Errorf("job %s: reasons %q lack %q", id, all, want)
				}
			}
			if after := cmp.Diff(nil, tt.snap.Nodes); after != before {
				t.Errorf("Schedule modified its snapshot")
			}
		})
	}
}

func TestTakeGPUs(t *testing.T) {
	free := map[string]int{"a100": 1, "rtx3090": 2}
	if !TakeGPUs(free, core.Resources{GPUs: 3}) {
		t.Fatal("3 of 3 free GPUs of any model: want true")
	}
	if diff := cmp.Diff(map[string]int{"a100": 0, "rtx3090": 0}, free); diff != "" {
		t.Errorf("free after take (-want +got):\n%s", diff)
	}
	if TakeGPUs(map[string]int{"a100": 1}, core.Resources{GPUs: 1, GPUModels: []string{"h100"}}) {
		t.Error("h100 from a node of a100s: want false")
	}
}
