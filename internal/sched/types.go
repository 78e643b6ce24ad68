package sched

import (
	"fmt"
	"maps"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// Snapshot is the state one scheduling cycle reads. Schedule does not modify
// it, and keeps no reference to it after it returns.
type Snapshot struct {
	Now   time.Time
	Pools []Pool
	// Nodes are the ready nodes, with what they have free now.
	Nodes []Node
	// Queued are the jobs waiting for a place, in any order.
	Queued []Job
	// Running are the live attempts: they hold capacity, count towards
	// their project's fair share, and may be preempted.
	Running []Running
	// Projects holds budgets and fair-share weights by project name; a
	// project not listed has weight 1 and no budget.
	Projects map[string]Project
	// Policy says which classification may run on which trust tier and in
	// which regions; the zero value means DefaultPolicy().
	Policy Policy
	// Throughput is each GPU model's training speed relative to an A100;
	// nil means DefaultThroughput. Models not listed count as 1.
	Throughput map[string]float64
}

// Pool is a source of compute as the scheduler sees it.
type Pool struct {
	ID     string
	Name   string
	Region string
	Tier   core.Tier
	// State is "active", "draining" or "quarantined"; only active pools
	// take new work.
	State        string
	Interconnect Interconnect
	Prices       Prices
	// LossRate is how many node losses the pool has shown per node-hour;
	// it prices the rework a job expects there.
	LossRate float64
}

// Active pools take new work.
const PoolActive = "active"

// Interconnect is what links a pool's nodes.
type Interconnect struct {
	// Domain names the network the pool's nodes share; pools with the same
	// domain are one network (a gang may still not span pools).
	Domain string
	// Gbps is the bandwidth between two nodes of the pool.
	Gbps float64
	// MultiNode says whether gangs may span the pool's nodes at all.
	MultiNode bool
}

// Prices are what a pool charges per hour, in dollars.
type Prices struct {
	// GPUHour is the price of one GPU-hour by normalized model.
	GPUHour    map[string]float64
	CPUHour    float64 // per CPU-hour
	MemGiBHour float64 // per GiB-hour of memory
}

// PerHour is the hourly price of resources r holding GPUs of the model.
func (p Prices) PerHour(r core.Resources, gpuModel string) float64 {
	price := float64(r.MilliCPUs)/1000*p.CPUHour + float64(r.MemoryBytes)/(1<<30)*p.MemGiBHour
	if r.GPUs > 0 {
		price += float64(r.GPUs) * p.GPUHour[gpuModel]
	}
	return price
}

// Node is a ready node.
type Node struct {
	ID     string
	PoolID string
	// Free is what the node has free now; Total what it has in all. A
	// zero Total means unknown: Free plus what the Running ranks on the
	// node hold is taken instead.
	Free  Capacity
	Total Capacity
}

// Capacity is an amount of a node's resources.
type Capacity struct {
	MilliCPUs   int64
	MemoryBytes int64
	// GPUs counts GPUs by normalized model.
	GPUs map[string]int
}

func (c Capacity) clone() Capacity {
	c.GPUs = maps.Clone(c.GPUs)
	return c
}

// Job is a queued job as the scheduler sees it.
type Job struct {
	ID      string
	Project string
	Spec    *spec.Job
	// CreatedAt is when it was submitted: deadlines count from it, and
	// older jobs go first among equals.
	CreatedAt time.Time
}

// Running is a live attempt.
type Running struct {
	AttemptID string
	JobID     string
	Project   string
	Priority  core.Priority
	PoolID    string
	// NodeIDs holds the node of every rank.
	NodeIDs []string
	// Resources is what each rank holds; GPUModel the model of its GPUs.
	Resources core.Resources
	GPUModel  string
	StartedAt time.Time
	// PricePerHour is what the attempt costs per hour, all ranks together.
	PricePerHour float64
	// EstEnd is when the attempt is predicted to end: StartedAt plus its
	// predicted runtime on its pool and GPU model, expected rework included
	// (Predict(...).Finish(StartedAt)). Backfill reservations are timed by
	// it. Zero means unknown: StartedAt + spec.DefaultEstimate is assumed,
	// and an end already past counts as now.
	EstEnd time.Time
	// Stopping says the attempt was already asked to stop (a preemption
	// of an earlier cycle) and still holds its capacity. It is never
	// preempted again, and a job it would make room for waits for it
	// instead of preempting more.
	Stopping bool
}

// Project is what the scheduler knows of a tenant.
type Project struct {
	// Weight is the project's share in fair sharing (1 when 0).
	Weight float64
	// Budget caps what the project may spend, in dollars; 0 means none.
	Budget float64
	// Spent is what it has spent or committed (running attempts' cost so far).
	Spent float64
}

// Plan is the outcome of one cycle.
type Plan struct {
	Placements []Placement
	// Preemptions are running attempts to stop (with a grace period to
	// checkpoint) so that higher-priority work can run.
	Preemptions []Preemption
	// Pending explains, for every queued job left waiting, why each pool
	// did not take it.
	Pending map[string][]Rejection
}

// Placement puts one job's gang on nodes: rank i runs on NodeIDs[i].
type Placement struct {
	JobID   string
	PoolID  string
	NodeIDs []string
	// GPUModel is the model of the GPUs the ranks hold ("" without GPUs).
	GPUModel string
	// PricePerHour is the price of all ranks together; EstHours the
	// predicted runtime; EstCost the expected cost, rework included.
	PricePerHour float64
	EstHours     float64
	EstCost      float64
}

// Preemption stops a running attempt for a queued job.
type Preemption struct {
	AttemptID string
	JobID     string
	// For is the queued job that needs the room.
	For    string
	Reason string
}

// Rejection is one pool's reason for not taking a job.
type Rejection struct {
	Pool   string
	Reason string
}

func (r Rejection) String() string { return r.Pool + ": " + r.Reason }

// Option is one pool's verdict on a job, with its predicted cost: what
// `lode explain` and `lode run --dry-run` show.
type Option struct {
	Pool string
	// Feasible says whether the pool satisfies every constraint of the job
	// (it may still have no room right now: see FitsNow).
	Feasible bool
	FitsNow  bool
	// Reason says why the pool is not feasible, or why it has no room now.
	Reason         string
	GPUModel       string
	PricePerHour   float64
	EstHours       float64
	ExpectedRework float64
	EstCost        float64
}

// Policy is the table of which data classification may run on which trust
// tier and in which regions.
type Policy struct {
	Rules []PolicyRule
}

// PolicyRule admits a classification to pools of at least a tier, in the
// listed regions (any region when empty).
type PolicyRule struct {
	Classification core.Classification
	MinTier        core.Tier
	Regions        []string
}

// DefaultPolicy is the policy of an installation that set none:
// public and internal data may run anywhere, confidential data only on
// certified or private pools, restricted data only on private pools.
func DefaultPolicy() Policy {
	return Policy{Rules: []PolicyRule{
		{Classification: core.ClassPublic, MinTier: core.TierCommunity},
		{Classification: core.ClassInternal, MinTier: core.TierCommunity},
		{Classification: core.ClassConfidential, MinTier: core.TierCertified},
		{Classification: core.ClassRestricted, MinTier: core.TierPrivate},
	}}
}

// DefaultThroughput is each GPU model's training throughput relative to an
// A100, from public mixed-precision training benchmarks of convolutional
// and transformer models; measured figures replace it per installation.
var DefaultThroughput = map[string]float64{
	"h100":    2.0,
	"a100":    1.0,
	"l40s":    0.9,
	"rtx4090": 0.8,
	"a6000":   0.6,
	"rtx3090": 0.55,
	"v100":    0.5,
	"a10":     0.4,
	"rtx3080": 0.4,
	"t4":      0.15,
}

// Admits checks, outside any scheduling cycle, that the policy lets data of
// class run on a pool of tier in region, and that the tier meets the job's
// own minimum; the error says why not. The control plane asks it again
// when a node asks for a job's data keys, so a placement bug cannot leak
// data where the policy forbids it. The zero policy is DefaultPolicy().
func (pol Policy) Admits(class core.Classification, minTrust, tier core.Tier, region string) error {
	if len(pol.Rules) == 0 {
		pol = DefaultPolicy()
	}
	if tier < minTrust {
		return fmt.Errorf("trust tier %s is below the job's min_trust %s", tier, minTrust)
	}
	code, r := policyVerdict(&pol, class, &Pool{Tier: tier, Region: region})
	switch code {
	case fine:
		return nil
	case refPolicyTier:
		return fmt.Errorf("trust tier %s is below %s, which %s data needs", tier, r.MinTier, class)
	case refPolicyRegion:
		return fmt.Errorf("region %q is not among %v, where the policy lets %s data run", region, r.Regions, class)
	}
	return fmt.Errorf("the policy has no rule for %s data", class)
}
