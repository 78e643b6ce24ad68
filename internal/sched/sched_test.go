package sched

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const gib = 1 << 30

// mkJob is a job of project vision asking one CPU and 1GiB on one node,
// submitted at t0; mods change its spec.
func mkJob(id string, mods ...func(*spec.Job)) Job {
	sp := &spec.Job{Name: id, Project: "vision", Nodes: 1, Priority: core.PriorityNormal,
		Resources: core.Resources{MilliCPUs: 1000, MemoryBytes: gib}, Classification: core.ClassPublic}
	for _, m := range mods {
		m(sp)
	}
	return Job{ID: id, Project: sp.Project, Spec: sp, CreatedAt: t0}
}

func withGPUs(n int, models ...string) func(*spec.Job) {
	return func(j *spec.Job) { j.Resources.GPUs, j.Resources.GPUModels = n, models }
}
func withCPUs(n int64) func(*spec.Job) { return func(j *spec.Job) { j.Resources.MilliCPUs = n * 1000 } }
func withMem(b int64) func(*spec.Job)  { return func(j *spec.Job) { j.Resources.MemoryBytes = b } }
func withRanks(n int) func(*spec.Job)  { return func(j *spec.Job) { j.Nodes = n } }
func withPrio(p core.Priority) func(*spec.Job) {
	return func(j *spec.Job) { j.Priority = p }
}
func withEstimate(d time.Duration) func(*spec.Job) {
	return func(j *spec.Job) { j.Estimate = spec.Duration(d) }
}
func withProject(p string) func(*spec.Job) { return func(j *spec.Job) { j.Project = p } }

// mkPool is an active community pool in eu whose gangs may span its nodes
// at 100 Gbit/s, with an a100 at $2/h and an rtx3090 at $0.40/h.
func mkPool(id string, mods ...func(*Pool)) Pool {
	p := Pool{ID: id, Name: id, Region: "eu", Tier: core.TierCommunity, State: PoolActive,
		Interconnect: Interconnect{Domain: id, Gbps: 100, MultiNode: true},
		Prices:       Prices{GPUHour: map[string]float64{"a100": 2, "rtx3090": 0.4, "h100": 4}}}
	for _, m := range mods {
		m(&p)
	}
	return p
}

// mkNode is an idle node with 64GiB of memory.
func mkNode(id, pool string, cpus int64, gpus map[string]int) Node {
	c := Capacity{MilliCPUs: cpus * 1000, MemoryBytes: 64 * gib, GPUs: gpus}
	return Node{ID: id, PoolID: pool, Free: c.clone(), Total: c.clone()}
}

// busy returns n with free capacity lowered to cpus, mem and gpus.
func busy(n Node, cpus int64, mem int64, gpus map[string]int) Node {
	n.Free = Capacity{MilliCPUs: cpus * 1000, MemoryBytes: mem, GPUs: gpus}
	return n
}

func reasonsOf(p *Plan, job string) string {
	var rs []string
	for _, r := range p.Pending[job] {
		rs = append(rs, r.String())
	}
	return strings.Join(rs, "; ")
}

func TestFilters(t *testing.T) {
	n1 := mkNode("n1", "p", 8, map[string]int{"a100": 2})
	tests := []struct {
		name     string
		pool     func(*Pool)
		nodes    []Node // n1 when nil
		job      []func(*spec.Job)
		policy   Policy
		projects map[string]Project
		want     string
	}{
		{name: "draining", pool: func(p *Pool) { p.State = "draining" }, want: "pool is draining"},
		{name: "quarantined", pool: func(p *Pool) { p.State = "quarantined" }, want: "pool is quarantined"},
		{name: "named pools", job: []func(*spec.Job){func(j *spec.Job) { j.Placement.Pools = []string{"other"} }},
			want: "not among the pools the job names [other]"},
		{name: "job regions", job: []func(*spec.Job){func(j *spec.Job) { j.Placement.Regions = []string{"us"} }},
			want: `region "eu" is not among the job's regions [us]`},
		{name: "job min_trust", job: []func(*spec.Job){func(j *spec.Job) { j.Placement.MinTrust = core.TierVerified }},
			want: "trust tier community is below the job's min_trust verified"},
		{name: "policy tier", job: []func(*spec.Job){func(j *spec.Job) { j.Classification = core.ClassConfidential }},
			want: "trust tier community is below certified, which confidential data needs (policy)"},
		{name: "policy region",
			policy: Policy{Rules: []PolicyRule{{Classification: core.ClassInternal, MinTier: core.TierCommunity, Regions: []string{"us"}}}},
			job:    []func(*spec.Job){func(j *spec.Job) { j.Classification = core.ClassInternal }},
			want:   `region "eu" is not among [us], where the policy lets internal data run`},
		{name: "policy without a rule",
			policy: Policy{Rules: []PolicyRule{{Classification: core.ClassPublic}}},
			job:    []func(*spec.Job){func(j *spec.Job) { j.Classification = core.ClassInternal }},
			want:   "the policy has no rule for internal data"},
		{name: "no nodes", nodes: []Node{}, want: "no ready nodes"},
		{name: "gangs may not span", pool: func(p *Pool) { p.Interconnect.MultiNode = false },
			job: []func(*spec.Job){withRanks(2)}, want: "gangs may not span this pool's nodes"},
		{name: "interconnect below the gang's need", pool: func(p *Pool) { p.Interconnect.Gbps = 10 },
			job:  []func(*spec.Job){withRanks(2), func(j *spec.Job) { j.Interconnect = &spec.Interconnect{MinGbps: 100} }},
			want: "interconnect 10 Gbit/s is below the gang's 100 Gbit/s"},
		{name: "interconnect below the default need", pool: func(p *Pool) { p.Interconnect.Gbps = 10 },
			job: []func(*spec.Job){withRanks(2)}, want: "interconnect 10 Gbit/s is below the gang's 25 Gbit/s"},
		{name: "CPUs per node", job: []func(*spec.Job){withCPUs(16)}, want: "no node has 16 CPUs even when idle"},
		{name: "memory per node", job: []func(*spec.Job){withMem(128 * gib)}, want: "no node has 128.0GiB of memory even when idle"},
		{name: "CPUs of the pool", nodes: []Node{n1, mkNode("n2", "p", 8, nil)}, job: []func(*spec.Job){withRanks(3), withCPUs(6)},
			want: "the gang needs 18 CPUs and the pool has 16 CPUs in all"},
		{name: "no GPUs", nodes: []Node{mkNode("n1", "p", 8, nil)}, job: []func(*spec.Job){withGPUs(1)}, want: "has no GPUs"},
		{name: "no GPUs of the model", job: []func(*spec.Job){withGPUs(1, "h100")}, want: "has no GPUs of [h100]"},
		{name: "GPUs per node", job: []func(*spec.Job){withGPUs(4, "a100")}, want: "no node has 4 GPUs of [a100] even when idle"},
		{name: "GPUs of the pool", job: []func(*spec.Job){withGPUs(2, "a100"), withRanks(2)},
			want: "the gang needs 4 GPUs of a100 and the pool has 2 in all"},
		{name: "price cap", pool: func(p *Pool) { p.Prices.GPUHour["a100"] = 3.2 },
			job:  []func(*spec.Job){withGPUs(1), func(j *spec.Job) { j.Placement.MaxPricePerHour = 2.5 }},
			want: "$3.20/h is over the job's cap of $2.50/h"},
		{name: "budget", pool: func(p *Pool) { p.Prices.GPUHour["a100"] = 24 },
			projects: map[string]Project{"vision": {Budget: 500, Spent: 412}},
			job:      []func(*spec.Job){withGPUs(1), withEstimate(4 * time.Hour)},
			want:     "would exceed project vision's budget: $412.00 spent of $500.00, this run ~$96.00"},
		{name: "deadline",
			job:  []func(*spec.Job){withGPUs(1), withEstimate(5*time.Hour + 12*time.Minute), func(j *spec.Job) { j.Deadline = spec.Duration(2 * time.Hour) }},
			want: "predicted to finish 3h12m after its deadline"},
		{name: "no CPUs free", nodes: []Node{busy(n1, 2, 64*gib, map[string]int{"a100": 2})}, job: []func(*spec.Job){withCPUs(4)},
			want: "no node has 4 CPUs free"},
		{name: "no GPUs free", nodes: []Node{busy(n1, 8, 64*gib, map[string]int{"a100": 0})}, job: []func(*spec.Job){withGPUs(1, "a100")},
			want: "no node has 1 free GPU of [a100]"},
		{name: "GPUs free but no CPUs", nodes: []Node{busy(n1, 0, 64*gib, map[string]int{"a100": 2})}, job: []func(*spec.Job){withGPUs(2)},
			want: "no node with 2 free GPUs has 1 CPU free"},
		{name: "CPUs free but no memory", nodes: []Node{busy(n1, 8, gib/2, nil)}, want: "no node with 1 CPU free has 1.0GiB of memory free"},
		{name: "room for part of a gang", nodes: []Node{n1, busy(mkNode("n2", "p", 8, nil), 2, 64*gib, nil)},
			job: []func(*spec.Job){withRanks(2), withCPUs(8)}, want: "room for 1 of 2 ranks (no node has 8 CPUs free)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mkPool("p")
			p.Prices.GPUHour = map[string]float64{"a100": 2}
			if tt.pool != nil {
				tt.pool(&p)
			}
			nodes := tt.nodes
			if nodes == nil {
				nodes = []Node{n1}
			}
			s := &Snapshot{Now: t0, Pools: []Pool{p}, Nodes: nodes, Queued: []Job{mkJob("j", tt.job...)},
				Policy: tt.policy, Projects: tt.projects}
			got := Schedule(s)
			if len(got.Placements) != 0 {
				t.Fatalf("placed %+v, want pending", got.Placements)
			}
			want := []Rejection{{Pool: "p", Reason: tt.want}}
			if diff := cmp.Diff(want, got.Pending["j"]); diff != "" {
				t.Errorf("rejections (-want +got):\n%s", diff)
			}
			opts := Options(s, s.Queued[0])
			if len(opts) != 1 || opts[0].Reason != tt.want {
				t.Errorf("Options = %+v, want the same reason", opts)
			}
		})
	}
}

func TestNoPools(t *testing.T) {
	got := Schedule(&Snapshot{Now: t0, Queued: []Job{mkJob("j")}})
	if r := reasonsOf(got, "j"); !strings.Contains(r, "no pools are registered") {
		t.Errorf("reasons = %q", r)
	}
}

func TestPredict(t *testing.T) {
	p := mkPool("p", func(p *Pool) {
		p.Prices = Prices{GPUHour: map[string]float64{"rtx3090": 0.5}, CPUHour: 0.01, MemGiBHour: 0.002}
		p.LossRate = 0.05
	})
	j := mkJob("j", withGPUs(2, "rtx3090"), withCPUs(4), withMem(8*gib), withRanks(2), withEstimate(11*time.Hour)).Spec
	// Per rank: 4×0.01 + 8×0.002 + 2×0.5 = 1.056; two ranks: 2.112/h.
	// Hours: 11h / 0.55 = 20h. Without checkpoints a loss costs half the
	// run, 10h: rework = 0.05 × 2 × 20 × 10 = 20h, $42.24.
	got := Predict(p, j, "rtx3090", nil)
	want := Estimate{PricePerHour: 2.112, EstHours: 20, ReworkHours: 20, ExpectedRework: 42.24, EstCost: 2.112*20 + 42.24}
	if diff := cmp.Diff(want, got, cmp.Comparer(approx)); diff != "" {
		t.Errorf("Predict without checkpoints (-want +got):\n%s", diff)
	}
	// With a checkpoint every 30m, a loss costs 30m: 0.05 × 2 × 20 × 0.5 = 1h.
	j.Checkpoint = &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(30 * time.Minute)}
	got = Predict(p, j, "rtx3090", nil)
	want = Estimate{PricePerHour: 2.112, EstHours: 20, ReworkHours: 1, ExpectedRework: 2.112, EstCost: 2.112 * 21}
	if diff := cmp.Diff(want, got, cmp.Comparer(approx)); diff != "" {
		t.Errorf("Predict with checkpoints (-want +got):\n%s", diff)
	}
	if got, want := got.Finish(t0), t0.Add(21*time.Hour); !got.Equal(want) {
		t.Errorf("Finish = %v, want %v", got, want)
	}
	// No estimate: spec.DefaultEstimate on the reference GPU; a job
	// without GPUs runs as long everywhere.
	cpu := mkJob("cpu").Spec
	if got := Predict(p, cpu, "", map[string]float64{"a100": 3}); got.EstHours != spec.DefaultEstimate.Hours() {
		t.Errorf("EstHours of a CPU job = %v", got.EstHours)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b)) }

func TestRanking(t *testing.T) {
	node := func(id, pool, model string) Node { return mkNode(id, pool, 8, map[string]int{model: 1}) }
	tests := []struct {
		name     string
		pools    []Pool
		nodes    []Node
		job      Job
		wantPool string
		wantGPU  string
	}{
		{
			name: "cheapest pool",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["a100"] = 3 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["a100"] = 1 }),
			},
			nodes:    []Node{node("c1", "cloud", "a100"), node("r1", "rigs", "a100")},
			job:      mkJob("j", withGPUs(1), withEstimate(4*time.Hour)),
			wantPool: "rigs", wantGPU: "a100",
		},
		{
			// Rigs lose a node every 2 node-hours: without checkpoints
			// each loss costs half the run, $4 of rework on $4 of work,
			// more than the cloud's $6.
			name: "rework makes unreliable rigs dearer without checkpoints",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["a100"] = 1.5 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["a100"] = 1; p.LossRate = 0.5 }),
			},
			nodes:    []Node{node("c1", "cloud", "a100"), node("r1", "rigs", "a100")},
			job:      mkJob("j", withGPUs(1), withEstimate(4*time.Hour)),
			wantPool: "cloud", wantGPU: "a100",
		},
		{
			name: "checkpoints make them cheap again",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["a100"] = 1.5 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["a100"] = 1; p.LossRate = 0.5 }),
			},
			nodes: []Node{node("c1", "cloud", "a100"), node("r1", "rigs", "a100")},
			job: mkJob("j", withGPUs(1), withEstimate(4*time.Hour), func(j *spec.Job) {
				j.Checkpoint = &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(6 * time.Minute)}
			}),
			wantPool: "rigs", wantGPU: "a100",
		},
		{
			name: "objective cost takes the slow cheap GPU",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["h100"] = 4 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["rtx3090"] = 0.4 }),
			},
			nodes:    []Node{node("c1", "cloud", "h100"), node("r1", "rigs", "rtx3090")},
			job:      mkJob("j", withGPUs(1), withEstimate(4*time.Hour)),
			wantPool: "rigs", wantGPU: "rtx3090",
		},
		{
			name: "objective time takes the fast GPU",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["h100"] = 4 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["rtx3090"] = 0.4 }),
			},
			nodes:    []Node{node("c1", "cloud", "h100"), node("r1", "rigs", "rtx3090")},
			job:      mkJob("j", withGPUs(1), withEstimate(4*time.Hour), func(j *spec.Job) { j.Objective = spec.ObjectiveTime }),
			wantPool: "cloud", wantGPU: "h100",
		},
		{
			name: "time ties go to the cheaper",
			pools: []Pool{
				mkPool("a", func(p *Pool) { p.Prices.GPUHour["a100"] = 3 }),
				mkPool("b", func(p *Pool) { p.Prices.GPUHour["a100"] = 2 }),
			},
			nodes:    []Node{node("a1", "a", "a100"), node("b1", "b", "a100")},
			job:      mkJob("j", withGPUs(1), func(j *spec.Job) { j.Objective = spec.ObjectiveTime }),
			wantPool: "b", wantGPU: "a100",
		},
		{
			// On one pool with both models, the a100 does the work for
			// $2 × 1h and the rtx3090 for $0.40 × 1.82h.
			name:     "best model within a pool",
			pools:    []Pool{mkPool("p")},
			nodes:    []Node{mkNode("n1", "p", 8, map[string]int{"a100": 1, "rtx3090": 1})},
			job:      mkJob("j", withGPUs(1)),
			wantPool: "p", wantGPU: "rtx3090",
		},
		{
			name:     "the model the job names",
			pools:    []Pool{mkPool("p")},
			nodes:    []Node{mkNode("n1", "p", 8, map[string]int{"a100": 1, "rtx3090": 1})},
			job:      mkJob("j", withGPUs(1, "a100")),
			wantPool: "p", wantGPU: "a100",
		},
		{
			name: "a deadline rules out the slow pool",
			pools: []Pool{
				mkPool("cloud", func(p *Pool) { p.Prices.GPUHour["h100"] = 4 }),
				mkPool("rigs", func(p *Pool) { p.Prices.GPUHour["rtx3090"] = 0.4 }),
			},
			nodes: []Node{node("c1", "cloud", "h100"), node("r1", "rigs", "rtx3090")},
			job: mkJob("j", withGPUs(1), withEstimate(4*time.Hour), func(j *spec.Job) {
				j.Deadline = spec.Duration(6 * time.Hour)
			}),
			wantPool: "cloud", wantGPU: "h100",
		},
		{
			name:     "ties go to the pool first by name",
			pools:    []Pool{mkPool("b"), mkPool("a")},
			nodes:    []Node{mkNode("b1", "b", 4, nil), mkNode("a1", "a", 4, nil)},
			job:      mkJob("j"),
			wantPool: "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Schedule(&Snapshot{Now: t0, Pools: tt.pools, Nodes: tt.nodes, Queued: []Job{tt.job}})
			if len(got.Placements) != 1 {
				t.Fatalf("placements = %+v; pending %s", got.Placements, reasonsOf(got, "j"))
			}
			pl := got.Placements[0]
			if pl.PoolID != tt.wantPool || pl.GPUModel != tt.wantGPU {
				t.Errorf("placed on %s with %q, want %s with %q", pl.PoolID, pl.GPUModel, tt.wantPool, tt.wantGPU)
			}
			var pool Pool
			for _, p := range tt.pools {
				if p.ID == pl.PoolID {
					pool = p
				}
			}
			e := Predict(pool, tt.job.Spec, pl.GPUModel, nil)
			if pl.PricePerHour != e.PricePerHour || pl.EstHours != e.EstHours || pl.EstCost != e.EstCost {
				t.Errorf("placement %+v disagrees with Predict %+v", pl, e)
			}
		})
	}
}

func TestPlacement(t *testing.T) {
	tests := []struct {
		name        string
		snap        Snapshot
		want        []Placement
		wantPending map[string]string // job -> substring of its reasons
	}{
		{
			name: "capacity taken by one job is not offered to the next",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil)},
				Queued: []Job{mkJob("j1", withCPUs(3)), mkJob("j2", withCPUs(3))}},
			want:        []Placement{{JobID: "j1", PoolID: "p", NodeIDs: []string{"n1"}, EstHours: 1}},
			wantPending: map[string]string{"j2": "p: no node has 3 CPUs free"},
		},
		{
			name: "higher priority first",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil)},
				Queued: []Job{mkJob("low", withCPUs(3)), mkJob("high", withCPUs(3), withPrio(core.PriorityHigh))}},
			want:        []Placement{{JobID: "high", PoolID: "p", NodeIDs: []string{"n1"}, EstHours: 1}},
			wantPending: map[string]string{"low": "no node has 3 CPUs free"},
		},
		{
			name: "older first among equals",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil)},
				Queued: []Job{
					func() Job { j := mkJob("young", withCPUs(3)); j.CreatedAt = t0.Add(time.Second); return j }(),
					mkJob("old", withCPUs(3)),
				}},
			want:        []Placement{{JobID: "old", PoolID: "p", NodeIDs: []string{"n1"}, EstHours: 1}},
			wantPending: map[string]string{"young": "no node has 3 CPUs free"},
		},
		{
			name: "a single rank takes the node with the fewest free GPUs that fit",
			snap: Snapshot{Pools: []Pool{mkPool("p")},
				Nodes:  []Node{mkNode("big", "p", 8, map[string]int{"a100": 8}), mkNode("small", "p", 8, map[string]int{"a100": 2})},
				Queued: []Job{mkJob("j", withGPUs(2))}},
			want: []Placement{{JobID: "j", PoolID: "p", NodeIDs: []string{"small"}, GPUModel: "a100", PricePerHour: 4, EstHours: 1, EstCost: 4}},
		},
		{
			name: "a job without GPUs keeps off GPU nodes when it can",
			snap: Snapshot{Pools: []Pool{mkPool("p")},
				Nodes:  []Node{mkNode("gpu", "p", 4, map[string]int{"a100": 1}), mkNode("cpu", "p", 16, nil)},
				Queued: []Job{mkJob("j", withCPUs(2))}},
			want: []Placement{{JobID: "j", PoolID: "p", NodeIDs: []string{"cpu"}, EstHours: 1}},
		},
		{
			name: "gang all or nothing",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 2, nil), mkNode("n2", "p", 2, nil), mkNode("n3", "p", 2, nil)},
				Queued: []Job{
					mkJob("small", withCPUs(2)),
					func() Job { j := mkJob("gang", withRanks(3), withCPUs(2)); j.CreatedAt = t0.Add(time.Second); return j }(),
				}},
			want:        []Placement{{JobID: "small", PoolID: "p", NodeIDs: []string{"n1"}, EstHours: 1}},
			wantPending: map[string]string{"gang": "room for 2 of 3 ranks (no node has 2 CPUs free)"},
		},
		{
			name: "gang ranks share a node with room",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil), mkNode("n2", "p", 2, nil)},
				Queued: []Job{mkJob("gang", withRanks(3), withCPUs(2))}},
			want: []Placement{{JobID: "gang", PoolID: "p", NodeIDs: []string{"n1", "n1", "n2"}, EstHours: 1}},
		},
		{
			name: "a gang never spans pools",
			snap: Snapshot{Pools: []Pool{mkPool("a"), mkPool("b")}, Nodes: []Node{mkNode("a1", "a", 2, nil), mkNode("b1", "b", 2, nil)},
				Queued: []Job{mkJob("gang", withRanks(2), withCPUs(2))}},
			wantPending: map[string]string{"gang": "a: the gang needs 4 CPUs and the pool has 2 CPUs in all; b: the gang needs 4 CPUs"},
		},
		{
			name: "two gangs: one runs whole, the other holds nothing",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, map[string]int{"a100": 4}), mkNode("n2", "p", 4, map[string]int{"a100": 4})},
				Queued: []Job{
					mkJob("g1", withRanks(2), withGPUs(4)),
					func() Job { j := mkJob("g2", withRanks(2), withGPUs(4)); j.CreatedAt = t0.Add(time.Second); return j }(),
					func() Job {
						j := mkJob("g3", withRanks(4), withGPUs(2))
						j.CreatedAt = t0.Add(2 * time.Second)
						return j
					}(),
				}},
			want: []Placement{{JobID: "g1", PoolID: "p", NodeIDs: []string{"n1", "n2"}, GPUModel: "a100",
				PricePerHour: 16, EstHours: 1, EstCost: 16}},
			wantPending: map[string]string{"g2": "room for 0 of 2 ranks", "g3": "room for 0 of 4 ranks"},
		},
		{
			name: "budget counts what the cycle already placed",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 8, map[string]int{"a100": 8})},
				Projects: map[string]Project{"vision": {Budget: 10}},
				Queued: []Job{
					mkJob("j1", withGPUs(1), withEstimate(3*time.Hour)),
					func() Job {
						j := mkJob("j2", withGPUs(1), withEstimate(3*time.Hour))
						j.CreatedAt = t0.Add(time.Second)
						return j
					}(),
				}},
			want: []Placement{{JobID: "j1", PoolID: "p", NodeIDs: []string{"n1"}, GPUModel: "a100", PricePerHour: 2, EstHours: 3, EstCost: 6}},
			wantPending: map[string]string{
				"j2": "would exceed project vision's budget: $6.00 spent of $10.00, this run ~$6.00",
			},
		},
		{
			name: "a job without a spec",
			snap: Snapshot{Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 8, nil)},
				Queued: []Job{{ID: "broken"}}},
			wantPending: map[string]string{"broken": "the job has no spec"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.snap.Now = t0
			got := Schedule(&tt.snap)
			if diff := cmp.Diff(tt.want, got.Placements); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
			if len(got.Pending) != len(tt.wantPending) {
				t.Errorf("pending = %v, want %d jobs", got.Pending, len(tt.wantPending))
			}
			for id, want := range tt.wantPending {
				if all := reasonsOf(got, id); !strings.Contains(all, want) {
					t.Errorf("job %s: reasons %q lack %q", id, all, want)
				}
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

func TestPolicyAdmits(t *testing.T) {
	regional := Policy{Rules: []PolicyRule{{Classification: core.ClassConfidential, MinTier: core.TierCertified, Regions: []string{"eu"}}}}
	tests := []struct {
		name      string
		pol       Policy
		class     core.Classification
		minTrust  core.Tier
		tier      core.Tier
		region    string
		wantError string // "" when admitted
	}{
		{"public on community", Policy{}, core.ClassPublic, core.TierCommunity, core.TierCommunity, "", ""},
		{"confidential on community", Policy{}, core.ClassConfidential, core.TierCommunity, core.TierCommunity, "", "below certified"},
		{"confidential on certified", Policy{}, core.ClassConfidential, core.TierCommunity, core.TierCertified, "us", ""},
		{"restricted on certified", Policy{}, core.ClassRestricted, core.TierCommunity, core.TierCertified, "", "below private"},
		{"public under the job's own min_trust", Policy{}, core.ClassPublic, core.TierPrivate, core.TierCertified, "", "min_trust"},
		{"confidential in the wrong region", regional, core.ClassConfidential, core.TierCommunity, core.TierPrivate, "us", "region"},
		{"confidential in the right region", regional, core.ClassConfidential, core.TierCommunity, core.TierCertified, "eu", ""},
		{"a class without a rule", regional, core.ClassPublic, core.TierCommunity, core.TierPrivate, "eu", "no rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pol.Admits(tt.class, tt.minTrust, tt.tier, tt.region)
			switch {
			case tt.wantError == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantError != "" && (err == nil || !strings.Contains(err.Error(), tt.wantError)):
				t.Errorf("err = %v, want one mentioning %q", err, tt.wantError)
			}
		})
	}
}
