package sched

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// refusal is why a pool does not take a job, in the order the checks run:
// first the pool's own feasibility filters, then the checks of each GPU
// model the job could use there, then room. Its String names the check;
// explain writes the sentence a user reads.
type refusal uint8

const (
	fine refusal = iota
	// Pool filters: the pool can never take the job as it is.
	refPoolState
	refNamedPools
	refJobRegion
	refJobTrust
	refPolicyNoRule
	refPolicyTier
	refPolicyRegion
	refNoNodes
	refNoGangs
	refGangGbps
	refCPUsPerNode
	refMemPerNode
	refPoolCPUs
	refPoolMem
	refNoGPUs
	// Model checks, for the model that got furthest.
	refGPUsPerNode
	refPoolGPUs
	refPriceCap
	refBudget
	refDeadline
	// Room: the pool could take the job, but not now.
	refNoRoom
	refPreempting
	refHeld
)

var refusalNames = [...]string{
	fine: "fine", refPoolState: "pool-state", refNamedPools: "named-pools", refJobRegion: "job-region",
	refJobTrust: "job-trust", refPolicyNoRule: "policy-no-rule", refPolicyTier: "policy-tier",
	refPolicyRegion: "policy-region", refNoNodes: "no-nodes", refNoGangs: "no-gangs", refGangGbps: "gang-gbps",
	refCPUsPerNode: "cpus-per-node", refMemPerNode: "memory-per-node", refPoolCPUs: "pool-cpus",
	refPoolMem: "pool-memory", refNoGPUs: "no-gpus", refGPUsPerNode: "gpus-per-node", refPoolGPUs: "pool-gpus",
	refPriceCap: "price-cap", refBudget: "budget", refDeadline: "deadline", refNoRoom: "no-room",
	refPreempting: "preempting", refHeld: "held",
}

func (r refusal) String() string {
	if int(r) < len(refusalNames) {
		return refusalNames[r]
	}
	return fmt.Sprintf("refusal(%d)", int(r))
}

// jobCtx is what the checks need of one job, worked out once per decision.
type jobCtx struct {
	job   *Job
	sp    *spec.Job
	proj  *projState
	ranks int
	cpu   int64
	mem   int64
	gpus  int32
	// accept[m] says whether the job takes GPUs of model id m.
	accept   []bool
	base     float64 // hours on the reference GPU
	ckpt     float64 // checkpoint interval, hours; 0 without
	objTime  bool
	deadline int64 // from Snapshot.Now; math.MaxInt64 without
	maxPrice float64
	needGbps float64
}

// verdict is one pool's outcome for a job, with what its sentence needs.
type verdict struct {
	code  refusal
	model int32   // the model concerned; -1 for none
	x     float64 // a price per hour, a cost, or hours late
	found int     // ranks that found room
	stage fitStage
	n     int   // attempts being preempted
	at    int64 // when held nodes free up, from Snapshot.Now
}

// poolFilters are the pool-level feasibility checks, in order; the first
// that refuses gives the pool's reason. Each reads only the job and the
// pool, so its sentence can be written later from the same two.
var poolFilters = [...]func(c *Cycle, j *jobCtx, p *fpool) refusal{
	filterState,
	filterNamedPools,
	filterJobRegion,
	filterJobTrust,
	filterPolicy,
	filterNodes,
	filterGang,
	filterCPUs,
	filterMemory,
}

func filterState(_ *Cycle, _ *jobCtx, p *fpool) refusal {
	if p.State != PoolActive {
		return refPoolState
	}
	return fine
}

func filterNamedPools(_ *Cycle, j *jobCtx, p *fpool) refusal {
	if ps := j.sp.Placement.Pools; len(ps) > 0 && !slices.Contains(ps, p.Name) {
		return refNamedPools
	}
	return fine
}

func filterJobRegion(_ *Cycle, j *jobCtx, p *fpool) refusal {
	if rs := j.sp.Placement.Regions; len(rs) > 0 && !slices.Contains(rs, p.Region) {
		return refJobRegion
	}
	return fine
}

func filterJobTrust(_ *Cycle, j *jobCtx, p *fpool) refusal {
	if p.Tier < j.sp.Placement.MinTrust {
		return refJobTrust
	}
	return fine
}

func filterPolicy(c *Cycle, j *jobCtx, p *fpool) refusal {
	r, _ := policyVerdict(&c.policy, j.sp.Classification, &p.Pool)
	return r
}

func filterNodes(_ *Cycle, _ *jobCtx, p *fpool) refusal {
	if len(p.nodes) == 0 {
		return refNoNodes
	}
	return fine
}

func filterGang(_ *Cycle, j *jobCtx, p *fpool) refusal {
	if j.ranks < 2 {
		return fine
	}
	if !p.Interconnect.MultiNode {
		return refNoGangs
	}
	if p.Interconnect.Gbps < j.needGbps {
		return refGangGbps
	}
	return fine
}

func filterCPUs(_ *Cycle, j *jobCtx, p *fpool) refusal {
	switch {
	case j.cpu > p.maxCPU:
		return refCPUsPerNode
	case j.cpu > 0 && int64(j.ranks) > p.sumCPU/j.cpu:
		return refPoolCPUs
	}
	return fine
}

func filterMemory(_ *Cycle, j *jobCtx, p *fpool) refusal {
	switch {
	case j.mem > p.maxMem:
		return refMemPerNode
	case j.mem > 0 && int64(j.ranks) > p.sumMem/j.mem:
		return refPoolMem
	}
	return fine
}

// policyVerdict says whether the policy lets data of class run on pool p:
// some rule for the class must admit the pool's tier and region. When none
// does, it returns the rule that came closest (one whose tier the pool
// meets, else the one asking the lowest tier).
func policyVerdict(pol *Policy, class core.Classification, p *Pool) (refusal, *PolicyRule) {
	var closest *PolicyRule
	code := refPolicyNoRule
	for i := range pol.Rules {
		r := &pol.Rules[i]
		if r.Classification != class {
			continue
		}
		tierOK := p.Tier >= r.MinTier
		if tierOK && (len(r.Regions) == 0 || slices.Contains(r.Regions, p.Region)) {
			return fine, r
		}
		switch {
		case tierOK && code != refPolicyRegion:
			closest, code = r, refPolicyRegion
		case !tierOK && code == refPolicyNoRule,
			!tierOK && code == refPolicyTier && r.MinTier < closest.MinTier:
			closest, code = r, refPolicyTier
		}
	}
	return code, closest
}

// modelCheck runs the checks of one GPU model on a pool (model -1: a job
// without GPUs) and returns the model's estimate, or why it cannot serve.
// budgetLeft is what the job's project may still spend (+Inf without a
// budget).
func (c *Cycle) modelCheck(j *jobCtx, p *fpool, model int32) (Estimate, verdict) {
	v := verdict{model: model}
	tp := 1.0
	gpuPrice := 0.0
	if model >= 0 {
		mi := &p.mods[p.byModel[model]]
		switch {
		case mi.maxPerNode < j.gpus:
			v.code = refGPUsPerNode
			return Estimate{}, v
		case mi.sum < int64(j.ranks)*int64(j.gpus):
			v.code = refPoolGPUs
			return Estimate{}, v
		}
		tp = c.throughput[model]
		gpuPrice = p.gpuPrice[model]
	}
	e := predict(j.ranks, perHour(j.cpu, j.mem, int(j.gpus), p.Prices.CPUHour, p.Prices.MemGiBHour, gpuPrice),
		j.base, tp, j.ckpt, p.LossRate)
	switch {
	case j.maxPrice > 0 && e.PricePerHour > j.maxPrice:
		v.code, v.x = refPriceCap, e.PricePerHour
	case j.proj != nil && j.proj.budget > 0 && j.proj.spent+e.EstCost > j.proj.budget:
		v.code, v.x = refBudget, e.EstCost
	case j.deadline != math.MaxInt64 && int64(hoursToDuration(e.Hours())) > j.deadline:
		v.code = refDeadline
		v.x = float64(int64(hoursToDuration(e.Hours()))-j.deadline) / float64(time.Hour)
	}
	return e, v
}

// explain writes a verdict as the sentence `lode explain` prints.
func (c *Cycle) explain(j *jobCtx, p *fpool, v verdict) string {
	sp := j.sp
	switch v.code {
	case refPoolState:
		if p.State == "" {
			return "pool is not active"
		}
		return "pool is " + p.State
	case refNamedPools:
		return fmt.Sprintf("not among the pools the job names %v", sp.Placement.Pools)
	case refJobRegion:
		return fmt.Sprintf("region %q is not among the job's regions %v", p.Region, sp.Placement.Regions)
	case refJobTrust:
		return fmt.Sprintf("trust tier %s is below the job's min_trust %s", p.Tier, sp.Placement.MinTrust)
	case refPolicyNoRule, refPolicyTier, refPolicyRegion:
		_, r := policyVerdict(&c.policy, sp.Classification, &p.Pool)
		switch {
		case v.code == refPolicyTier && r != nil:
			return fmt.Sprintf("trust tier %s is below %s, which %s data needs (policy)", p.Tier, r.MinTier, sp.Classification)
		case v.code == refPolicyRegion && r != nil:
			return fmt.Sprintf("region %q is not among %v, where the policy lets %s data run", p.Region, r.Regions, sp.Classification)
		}
		return fmt.Sprintf("the policy has no rule for %s data", sp.Classification)
	case refNoNodes:
		return "no ready nodes"
	case refNoGangs:
		return "gangs may not span this pool's nodes"
	case refGangGbps:
		return fmt.Sprintf("interconnect %g Gbit/s is below the gang's %g Gbit/s", p.Interconnect.Gbps, j.needGbps)
	case refCPUsPerNode:
		return fmt.Sprintf("no node has %s even when idle", cpus(j.cpu))
	case refMemPerNode:
		return fmt.Sprintf("no node has %s of memory even when idle", core.FormatBytes(j.mem))
	case refPoolCPUs:
		return fmt.Sprintf("the gang needs %s and the pool has %s in all", cpus(j.cpu*int64(j.ranks)), cpus(p.sumCPU))
	case refPoolMem:
		return fmt.Sprintf("the gang needs %s of memory and the pool has %s in all",
			core.FormatBytes(j.mem*int64(j.ranks)), core.FormatBytes(p.sumMem))
	case refNoGPUs:
		return "has no GPUs" + c.ofModels(j)
	case refGPUsPerNode:
		return fmt.Sprintf("no node has %s%s even when idle", gpuCount(int64(j.gpus)), c.ofModels(j))
	case refPoolGPUs:
		return fmt.Sprintf("the gang needs %s of %s and the pool has %d in all",
			gpuCount(int64(j.gpus)*int64(j.ranks)), c.f.models[v.model], p.mods[p.byModel[v.model]].sum)
	case refPriceCap:
		return fmt.Sprintf("%s/h is over the job's cap of %s/h", dollars(v.x), dollars(sp.Placement.MaxPricePerHour))
	case refBudget:
		return fmt.Sprintf("would exceed project %s's budget: %s spent of %s, this run ~%s",
			j.proj.name, dollars(j.proj.spent), dollars(j.proj.budget), dollars(v.x))
	case refDeadline:
		return fmt.Sprintf("predicted to finish %s after its deadline", hoursText(v.x))
	case refNoRoom, refHeld:
		why := c.roomText(j, v)
		if j.ranks > 1 {
			why = fmt.Sprintf("room for %d of %d ranks (%s)", v.found, j.ranks, why)
		}
		if v.code == refHeld {
			in := "any moment now"
			if v.at >= int64(time.Minute) {
				in = "in " + hoursText(float64(v.at)/float64(time.Hour))
			}
			why += fmt.Sprintf("; nodes are held for this job from %s (%s), and only work that ends by then may use them",
				c.clock(v.at), in)
		}
		return why
	case refPreempting:
		if v.n == 1 {
			return "waiting for 1 preempted attempt to stop"
		}
		return fmt.Sprintf("waiting for %d preempted attempts to stop", v.n)
	}
	return v.code.String()
}

// roomText says why no node had room for the next rank.
func (c *Cycle) roomText(j *jobCtx, v verdict) string {
	gpus := ""
	if j.gpus > 0 {
		gpus = fmt.Sprintf("%d free %s%s", j.gpus, plural(int64(j.gpus), "GPU"), c.ofModels(j))
	}
	switch {
	case v.stage == stageGPUs && j.gpus > 0:
		return "no node has " + gpus
	case v.stage <= stageCPUs && j.gpus == 0:
		return fmt.Sprintf("no node has %s free", cpus(j.cpu))
	case v.stage == stageCPUs:
		return fmt.Sprintf("no node with %s has %s free", gpus, cpus(j.cpu))
	case v.stage == stageMem:
		if j.gpus > 0 {
			return fmt.Sprintf("no node with %s and %s has %s of memory free", gpus, cpus(j.cpu), core.FormatBytes(j.mem))
		}
		return fmt.Sprintf("no node with %s free has %s of memory free", cpus(j.cpu), core.FormatBytes(j.mem))
	case v.stage == stageReserved && c.resv != nil:
		r := c.resv
		return fmt.Sprintf("the nodes with room are held for job %s from %s, and this job would not end by then",
			c.s.Queued[r.job].ID, c.clock(r.at))
	}
	return "no room"
}

// ofModels is " of [a100 rtx4090]" for a job that names its GPU models.
func (c *Cycle) ofModels(j *jobCtx) string {
	if ms := j.sp.Resources.GPUModels; len(ms) > 0 {
		return fmt.Sprintf(" of %v", ms)
	}
	return ""
}

// cpus writes millicores as "1 CPU", "3 CPUs" or "0.50 CPUs".
func cpus(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprintf("%d %s", m/1000, plural(m/1000, "CPU"))
	}
	return fmt.Sprintf("%.2f CPUs", float64(m)/1000)
}

func gpuCount(n int64) string { return fmt.Sprintf("%d %s", n, plural(n, "GPU")) }

func plural(n int64, unit string) string {
	if n == 1 {
		return unit
	}
	return unit + "s"
}

func dollars(x float64) string { return fmt.Sprintf("$%.2f", x) }

// hoursText writes hours as "3h12m" (at least a minute; seconds dropped).
func hoursText(h float64) string {
	d := max(hoursToDuration(h).Round(time.Minute), time.Minute)
	s := strings.TrimSuffix(d.String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// clock writes a cycle time (nanoseconds from Snapshot.Now) for people.
func (c *Cycle) clock(t int64) string {
	return c.s.Now.Add(time.Duration(t)).UTC().Format("2006-01-02 15:04 UTC")
}
