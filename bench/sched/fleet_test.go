package schedbench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

var (
	epoch   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	regions = []string{"eu", "us", "asia"}
	models  = []string{"a100", "h100", "rtx3090", "rtx4090"}
	gib     = int64(1 << 30)
)

// poolKind is a kind of compute the fleets mix.
type poolKind struct {
	name      string
	tiers     []core.Tier
	models    []string
	gpus      []int // GPUs per node, one drawn per node
	cpus, mem int64 // per node: CPUs and GiB
	gpuPrice  [2]float64
	cpuPrice  float64
	loss      [2]float64
	gbps      float64
	multiNode bool
}

var (
	rigKind = poolKind{name: "rigs", tiers: []core.Tier{core.TierCommunity, core.TierVerified}, models: []string{"rtx3090", "rtx4090"},
		gpus: []int{1, 2, 2, 4, 4, 6}, cpus: 32, mem: 128, gpuPrice: [2]float64{0.2, 0.45}, cpuPrice: 0.01, loss: [2]float64{0.01, 0.05}, gbps: 10}
	cloudKind = poolKind{name: "cloud", tiers: []core.Tier{core.TierCertified}, models: []string{"a100", "h100"},
		gpus: []int{8}, cpus: 96, mem: 768, gpuPrice: [2]float64{1, 4}, cpuPrice: 0.04, loss: [2]float64{0, 0.002}, gbps: 100, multiNode: true}
	hpcKind = poolKind{name: "hpc", tiers: []core.Tier{core.TierPrivate}, models: []string{"a100", "h100"},
		gpus: []int{8}, cpus: 96, mem: 1024, gpuPrice: [2]float64{1.5, 3}, cpuPrice: 0.03, loss: [2]float64{0, 0.001}, gbps: 400, multiNode: true}
	cpuKind = poolKind{name: "cpu", tiers: []core.Tier{core.TierVerified, core.TierCertified},
		gpus: []int{0}, cpus: 64, mem: 256, cpuPrice: 0.02, loss: [2]float64{0, 0.005}, gbps: 25, multiNode: true}
)

// fleetSpec says how many pools and nodes of each kind a fleet has.
type fleetSpec struct {
	kinds []poolKind
	pools []int // per kind
	nodes []int // per kind, spread over its pools
}

// bigFleet is the throughput fleet: 10,000 nodes in 32 pools, four GPU
// models, every trust tier, three regions.
var bigFleet = fleetSpec{
	kinds: []poolKind{rigKind, cloudKind, hpcKind, cpuKind},
	pools: []int{16, 8, 4, 4},
	nodes: []int{5000, 3000, 1000, 1000},
}

// newFleet builds pools and idle nodes.
func newFleet(r *rand.Rand, fs fleetSpec) ([]sched.Pool, []sched.Node) {
	var pools []sched.Pool
	var nodes []sched.Node
	for k, kind := range fs.kinds {
		first := len(pools)
		for i := range fs.pools[k] {
			p := sched.Pool{
				ID: fmt.Sprintf("%s-%d", kind.name, i), Name: fmt.Sprintf("%s-%02d", kind.name, i),
				Region: regions[r.IntN(len(regions))], Tier: kind.tiers[r.IntN(len(kind.tiers))], State: sched.PoolActive,
				Interconnect: sched.Interconnect{Domain: fmt.Sprintf("%s-%d", kind.name, i), Gbps: kind.gbps, MultiNode: kind.multiNode},
				Prices:       sched.Prices{GPUHour: map[string]float64{}, CPUHour: kind.cpuPrice, MemGiBHour: 0.002},
				LossRate:     uniform(r, kind.loss),
			}
			for _, m := range kind.models {
				p.Prices.GPUHour[m] = uniform(r, kind.gpuPrice)
			}
			pools = append(pools, p)
		}
		for range fs.nodes[k] {
			p := pools[first+r.IntN(fs.pools[k])]
			c := sched.Capacity{MilliCPUs: kind.cpus * 1000, MemoryBytes: kind.mem * gib}
			if g := kind.gpus[r.IntN(len(kind.gpus))]; g > 0 {
				c.GPUs = map[string]int{kind.models[r.IntN(len(kind.models))]: g}
			}
			nodes = append(nodes, sched.Node{ID: fmt.Sprintf("node-%05d", len(nodes)), PoolID: p.ID, Free: clone(c), Total: clone(c)})
		}
	}
	return pools, nodes
}

func clone(c sched.Capacity) sched.Capacity {
	if c.GPUs != nil {
		g := make(map[string]int, len(c.GPUs))
		for k, v := range c.GPUs {
			g[k] = v
		}
		c.GPUs = g
	}
	return c
}

func uniform(r *rand.Rand, span [2]float64) float64 { return span[0] + r.Float64()*(span[1]-span[0]) }

// logUniform draws a duration between lo and hi, evenly on a log scale.
func logUniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return time.Duration(math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}

// jobMix says what the generated jobs ask for.
type jobMix struct {
	gpuShare   float64 // share of jobs that ask for GPUs
	ranks      [2]int  // gang size range; [1, 1] for single-node jobs
	gpusPerJob []int   // drawn per job that asks for GPUs
	projects   int
	// constraints: whether jobs name models, regions, trust, price caps,
	// deadlines, and how their data is classified.
	constrained bool
	priorities  bool
	objectives  bool
}

// newJobs builds n queued jobs.
func newJobs(r *rand.Rand, n int, mix jobMix) []sched.Job {
	jobs := make([]sched.Job, 0, n)
	for i := range n {
		sp := &spec.Job{
			Name: fmt.Sprintf("job-%06d", i), Project: fmt.Sprintf("project-%d", r.IntN(mix.projects)),
			Nodes:     mix.ranks[0] + r.IntN(mix.ranks[1]-mix.ranks[0]+1),
			Resources: core.Resources{MilliCPUs: int64(1+r.IntN(8)) * 1000, MemoryBytes: int64(1+r.IntN(16)) * gib},
			Estimate:  spec.Duration(logUniform(r, 10*time.Minute, 20*time.Hour)), Priority: core.PriorityNormal,
			Classification: core.ClassInternal,
		}
		if r.Float64() < mix.gpuShare {
			sp.Resources.GPUs = mix.gpusPerJob[r.IntN(len(mix.gpusPerJob))]
			sp.Resources.MilliCPUs = int64(sp.Resources.GPUs) * 4000
			sp.Resources.MemoryBytes = int64(sp.Resources.GPUs) * 16 * gib
		}
		if r.IntN(2) == 0 {
			sp.Checkpoint = &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(time.Duration(5+r.IntN(55)) * time.Minute)}
		}
		if mix.constrained {
			switch x := r.IntN(10); {
			case x < 2:
				sp.Classification = core.ClassConfidential
			case x < 3:
				sp.Classification = core.ClassRestricted
			case x < 6:
				sp.Classification = core.ClassPublic
			}
			if sp.Resources.GPUs > 0 && r.IntN(2) == 0 {
				sp.Resources.GPUModels = pickModels(r)
			}
			if r.IntN(5) == 0 {
				sp.Placement.Regions = []string{regions[r.IntN(len(regions))]}
			}
			if r.IntN(10) == 0 {
				sp.Placement.MinTrust = core.TierVerified
			}
			if r.IntN(5) == 0 {
				sp.Placement.MaxPricePerHour = float64(sp.Nodes) * float64(max(sp.Resources.GPUs, 1)) * (0.5 + 3*r.Float64())
			}
			if r.IntN(10) == 0 {
				sp.Deadline = spec.Duration(time.Duration(float64(sp.Estimate) * (1 + 4*r.Float64())))
			}
		}
		if mix.priorities {
			switch r.IntN(10) {
			case 0:
				sp.Priority = core.PriorityHigh
			case 1:
				sp.Priority = core.PriorityLow
			}
		}
		if mix.objectives && r.IntN(10) == 0 {
			sp.Objective = spec.ObjectiveTime
		}
		jobs = append(jobs, sched.Job{ID: sp.Name, Project: sp.Project, Spec: sp, CreatedAt: epoch.Add(-time.Duration(n-i) * time.Second)})
	}
	return jobs
}

func pickModels(r *rand.Rand) []string {
	var ms []string
	for _, m := range models {
		if r.IntN(2) == 0 {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		ms = append(ms, models[r.IntN(len(models))])
	}
	return ms
}
