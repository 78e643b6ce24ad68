package sim

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// The rules here are the simulator's own reading of the constraints a
// placement must meet. They share no code with the scheduler, so a
// scheduler bug shows up as a violation instead of being agreed with.

// Violation kinds.
const (
	// ViolSecurity: a classification on a tier or in a region the policy
	// forbids.
	ViolSecurity = "security"
	// ViolPlacement: a pool the job's own placement (min_trust, regions,
	// pools) rules out.
	ViolPlacement = "placement"
	// ViolCapacity: more than a node has free, or a node that is not ready.
	ViolCapacity = "capacity"
	// ViolGPUModel: GPUs of a model the job does not accept.
	ViolGPUModel = "gpu-model"
	// ViolGang: a gang not placed whole, or spanning pools.
	ViolGang = "gang"
	// ViolInterconnect: a gang across nodes of a pool that may not hold
	// gangs or whose bandwidth is below the job's need.
	ViolInterconnect = "interconnect"
	// ViolBudget: a placement whose predicted cost takes its project over
	// budget.
	ViolBudget = "budget"
	// ViolPrice: a placement above the job's max price per hour.
	ViolPrice = "price"
	// ViolPlan: a plan that names what does not exist or may not be used:
	// an unknown or running job, an unknown or quarantined pool, an
	// unknown attempt.
	ViolPlan = "plan"
)

// Violation is one constraint a plan broke; the control plane refused
// the placement that broke it.
type Violation struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Job    string    `json:"job,omitempty"`
	Pool   string    `json:"pool,omitempty"`
	Detail string    `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s job %s pool %s: %s", v.At.Format(time.RFC3339), v.Kind, v.Job, v.Pool, v.Detail)
}

// policyRefuses says why the policy forbids data of class c on a pool of
// the tier in the region, or "". A classification without a rule may run
// nowhere.
func policyRefuses(pol sched.Policy, c core.Classification, tier core.Tier, region string) string {
	if len(pol.Rules) == 0 {
		pol = sched.DefaultPolicy()
	}
	for _, r := range pol.Rules {
		if r.Classification != c {
			continue
		}
		if tier < r.MinTier {
			return fmt.Sprintf("%s data needs a %s pool or better, this one is %s", c, r.MinTier, tier)
		}
		if len(r.Regions) > 0 && !slices.Contains(r.Regions, region) {
			return fmt.Sprintf("%s data may run only in %v, not %s", c, r.Regions, region)
		}
		return ""
	}
	return fmt.Sprintf("the policy has no rule for %s data", c)
}

// placementRefuses says why the job's own placement rules out the pool.
func placementRefuses(p sched.Pool, j *spec.Job) string {
	switch pl := j.Placement; {
	case p.Tier < pl.MinTrust:
		return fmt.Sprintf("tier %s is below the job's min_trust %s", p.Tier, pl.MinTrust)
	case len(pl.Regions) > 0 && !slices.Contains(pl.Regions, p.Region):
		return fmt.Sprintf("region %s is not among the job's %v", p.Region, pl.Regions)
	case len(pl.Pools) > 0 && !slices.Contains(pl.Pools, p.Name):
		return fmt.Sprintf("the job allows only pools %v", pl.Pools)
	}
	return ""
}

// gangGbps is the bandwidth a gang needs between its nodes.
func gangGbps(j *spec.Job) float64 {
	if j.Interconnect != nil && j.Interconnect.MinGbps > 0 {
		return j.Interconnect.MinGbps
	}
	return spec.DefaultGangGbps
}

// interconnectRefuses says why a gang may not span distinct nodes of the
// pool. Ranks sharing one node need no network.
func interconnectRefuses(p sched.Pool, j *spec.Job, distinct int) string {
	if j.Nodes <= 1 || distinct <= 1 {
		return ""
	}
	if !p.Interconnect.MultiNode {
		return fmt.Sprintf("a gang spans %d nodes of a pool that takes no multi-node jobs", distinct)
	}
	if need := gangGbps(j); p.Interconnect.Gbps < need {
		return fmt.Sprintf("a gang spans %d nodes linked at %g Gbit/s, below its need of %g", distinct, p.Interconnect.Gbps, need)
	}
	return ""
}

// takeRank takes one rank's resources from c: GPUs of model when it is
// set, else of the models the rank accepts in name order. It returns the
// GPUs taken by model, or why the rank does not fit.
func takeRank(c *sched.Capacity, r core.Resources, model string) (map[string]int, string) {
	if c.MilliCPUs < r.MilliCPUs {
		return nil, fmt.Sprintf("needs %d mCPU, %d free", r.MilliCPUs, c.MilliCPUs)
	}
	if c.MemoryBytes < r.MemoryBytes {
		return nil, fmt.Sprintf("needs %s of memory, %s free", core.FormatBytes(r.MemoryBytes), core.FormatBytes(c.MemoryBytes))
	}
	var taken map[string]int
	if r.GPUs > 0 {
		taken = map[string]int{}
		models := []string{model}
		if model == "" {
			models = slices.Sorted(maps.Keys(c.GPUs))
		}
		need := r.GPUs
		for _, m := range models {
			if len(r.GPUModels) > 0 && !slices.Contains(r.GPUModels, m) {
				continue
			}
			n := min(need, c.GPUs[m])
			if n > 0 {
				taken[m] = n
				need -= n
			}
		}
		if need > 0 {
			if model != "" {
				return nil, fmt.Sprintf("needs %d %s GPUs, %d free", r.GPUs, model, c.GPUs[model])
			}
			return nil, fmt.Sprintf("needs %d GPUs of %v, fewer free", r.GPUs, r.GPUModels)
		}
		c.GPUs = maps.Clone(c.GPUs)
		for m, n := range taken {
			c.GPUs[m] -= n
		}
	}
	c.MilliCPUs -= r.MilliCPUs
	c.MemoryBytes -= r.MemoryBytes
	return taken, ""
}

// giveRank returns what takeRank took.
func giveRank(c *sched.Capacity, r core.Resources, taken map[string]int) {
	c.MilliCPUs += r.MilliCPUs
	c.MemoryBytes += r.MemoryBytes
	if len(taken) > 0 {
		c.GPUs = maps.Clone(c.GPUs)
		for m, n := range taken {
			c.GPUs[m] += n
		}
	}
}

// rankPrice is what one rank holding the taken GPUs costs per hour.
func rankPrice(p sched.Prices, r core.Resources, taken map[string]int) float64 {
	price := float64(r.MilliCPUs)/1000*p.CPUHour + float64(r.MemoryBytes)/(1<<30)*p.MemGiBHour
	for _, m := range sortedKeys(taken) { // in one order, for the same rounding every run
		price += float64(taken[m]) * p.GPUHour[m]
	}
	return price
}

// speed is how fast a rank holding the taken GPUs trains relative to an
// A100: a rank (and a gang) moves at its slowest GPU. Without GPUs, 1.
func speed(thr map[string]float64, taken map[string]int) float64 {
	s := 0.0
	for m, n := range taken {
		if n == 0 {
			continue
		}
		v, ok := thr[m]
		if !ok || v <= 0 {
			v = 1
		}
		if s == 0 || v < s {
			s = v
		}
	}
	if s == 0 {
		return 1
	}
	return s
}

// check is the control plane's re-check of one placement against the
// world as it is now, placements earlier in the plan applied. It returns
// every rule the placement breaks and, when it breaks none, what each rank
// takes.
func (w *world) check(pl sched.Placement) ([]Violation, *grant) {
	var out []Violation
	bad := func(kind, format string, args ...any) {
		out = append(out, Violation{At: w.now, Kind: kind, Job: pl.JobID, Pool: pl.PoolID, Detail: fmt.Sprintf(format, args...)})
	}
	j := w.jobByID[pl.JobID]
	if j == nil {
		bad(ViolPlan, "no such job")
		return out, nil
	}
	if j.state != jobQueued {
		bad(ViolPlan, "the job is %s, not waiting", j.state)
		return out, nil
	}
	p := w.poolByName[pl.PoolID]
	switch {
	case p == nil:
		bad(ViolPlan, "no such pool")
		return out, nil
	case p.state != sched.PoolActive:
		bad(ViolPlan, "the pool is %s", p.state)
		return out, nil
	}
	sp := j.spec
	pool := p.sched()
	if why := policyRefuses(w.t.Policy, sp.Classification, pool.Tier, pool.Region); why != "" {
		bad(ViolSecurity, "%s", why)
	}
	if why := placementRefuses(pool, sp); why != "" {
		bad(ViolPlacement, "%s", why)
	}
	ranks := max(sp.Nodes, 1)
	if len(pl.NodeIDs) != ranks {
		bad(ViolGang, "%d nodes for a job of %d ranks", len(pl.NodeIDs), ranks)
		return out, nil
	}
	if pl.GPUModel != "" && len(sp.Resources.GPUModels) > 0 && !slices.Contains(sp.Resources.GPUModels, pl.GPUModel) {
		bad(ViolGPUModel, "%s GPUs for a job that accepts %v", pl.GPUModel, sp.Resources.GPUModels)
	}
	g := &grant{job: j, pool: p, nodes: make([]*node, ranks), taken: make([]map[string]int, ranks)}
	trial := map[*node]sched.Capacity{}
	distinct := 0
	for i, id := range pl.NodeIDs {
		n := w.nodes[id]
		switch {
		case n == nil:
			bad(ViolCapacity, "rank %d on unknown node %s", i, id)
			continue
		case n.pool != p:
			bad(ViolGang, "rank %d on node %s of pool %s", i, id, n.pool.def.Name)
			continue
		case !n.up:
			bad(ViolCapacity, "rank %d on node %s, which is down", i, id)
			continue
		}
		c, seen := trial[n]
		if !seen {
			c = n.free
			distinct++
		}
		taken, why := takeRank(&c, sp.Resources, pl.GPUModel)
		if why != "" {
			bad(ViolCapacity, "rank %d on node %s: %s", i, id, why)
			continue
		}
		trial[n] = c
		g.nodes[i], g.taken[i] = n, taken
	}
	if why := interconnectRefuses(pool, sp, distinct); why != "" {
		bad(ViolInterconnect, "%s", why)
	}
	if len(out) > 0 {
		return out, nil
	}
	for i := range g.taken {
		g.price += rankPrice(p.def.Prices, sp.Resources, g.taken[i])
		if s := speed(w.t.Throughput, g.taken[i]); i == 0 || s < g.speed {
			g.speed = s
		}
	}
	if maxPrice := sp.Placement.MaxPricePerHour; maxPrice > 0 && g.price > maxPrice*(1+1e-9) {
		bad(ViolPrice, "$%.4f/h is above the job's max of $%.4f/h", g.price, maxPrice)
	}
	g.predicted = g.price * j.remaining() / g.speed
	if pr := w.projects[sp.Project]; pr != nil && pr.budget > 0 {
		// What the project has spent, what this cycle's earlier placements
		// are predicted to cost, and this one must fit the budget.
		spent := w.spent(pr) + w.committed[sp.Project]
		if spent+g.predicted > pr.budget*(1+1e-9)+1e-9 {
			bad(ViolBudget, "project %s has spent or committed $%.2f of $%.2f and this attempt is predicted at $%.2f", sp.Project, spent, pr.budget, g.predicted)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, g
}

// grant is a placement that passed the check: the node and GPUs of every
// rank, the price of them all and the gang's speed.
type grant struct {
	job   *job
	pool  *pool
	nodes []*node
	taken []map[string]int
	price float64
	speed float64
	// predicted is the attempt's cost if nothing fails: price × the work
	// left at the gang's speed.
	predicted float64
}
