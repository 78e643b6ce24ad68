package sim

import (
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// Trace is a fleet-and-market scenario: the pools and their nodes, how the
// fleet changes over time, and the jobs that arrive. docs/trace.md
// documents the YAML it is read from; ParseTrace reads it.
//
// Every time in a trace is an offset from Start. A Trace is read-only once
// parsed: Run never changes it, so one Trace may be replayed many times,
// concurrently too.
type Trace struct {
	// File labels errors and reports.
	File string
	Name string
	// Start is the virtual time the replay begins at.
	Start time.Time
	// Cycle is the scheduling period: the scheduler runs at the first
	// cycle boundary after anything changed.
	Cycle time.Duration
	// Until is when the replay stops even if jobs remain.
	Until time.Duration
	// Seed seeds the failure model when the caller gives none.
	Seed uint64
	// Policy is the full classification table (the default with the
	// trace's rules replacing those of the classifications they name).
	Policy sched.Policy
	// Throughput is each GPU model's speed relative to an A100: the
	// default table with the trace's entries replacing those it names.
	Throughput map[string]float64
	Projects   map[string]sched.Project
	Pools      []Pool
	// Events are the fleet's changes, in time order.
	Events []Event
	// Jobs are the arrivals, in time order (trace order among equals),
	// with every count expanded.
	Jobs []Job
}

// Pool is a source of compute in a trace.
type Pool struct {
	Name string
	// Kind labels what the pool is: rig, spot, on-demand, cluster,
	// private or other. The cloud-only baseline keeps the on-demand pools.
	Kind         string
	Region       string
	Tier         core.Tier
	Interconnect sched.Interconnect
	Prices       sched.Prices
	// LossPerHour is how many times a node is lost per node-hour (an
	// exponential time to loss); Repair how long a lost node stays away.
	LossPerHour float64
	Repair      time.Duration
	Nodes       []NodeGroup
	Line        int
}

// Pool kinds.
const (
	KindRig      = "rig"
	KindSpot     = "spot"
	KindOnDemand = "on-demand"
	KindCluster  = "cluster"
	KindPrivate  = "private"
	KindOther    = "other"
)

var kinds = []string{KindRig, KindSpot, KindOnDemand, KindCluster, KindPrivate, KindOther}

// NodeGroup is Count nodes of one shape.
type NodeGroup struct {
	Count       int
	MilliCPUs   int64
	MemoryBytes int64
	// GPUs counts each node's GPUs by normalized model.
	GPUs map[string]int
}

// Event is one change of the fleet: exactly one of Add, Remove, Drain
// and Vanish.
type Event struct {
	At   time.Duration
	Pool string
	// Add brings new nodes up.
	Add *NodeGroup
	// Remove takes that many of the pool's nodes away at once, newest
	// first, without warning: what runs on them is lost.
	Remove int
	// Drain takes that many of the pool's nodes away cleanly, newest
	// first: what runs on them checkpoints and moves, as when an agent
	// shuts down.
	Drain int
	// Vanish takes the whole pool away: its operator is gone. A later Add
	// brings it back.
	Vanish bool
	Line   int
}

// Job is one job arrival.
type Job struct {
	// ID is the job's name, unique in the trace.
	ID string
	At time.Duration
	// Spec is what the scheduler sees. Its Estimate is the job's runtime
	// on A100s (per rank), derived from the work; copies of one trace
	// entry share it, so it must not be changed.
	Spec *spec.Job
	// Work is the job's work in GPU-hours on the reference A100, all ranks
	// together (for a CPU-only job: hours on the CPUs it asks for).
	Work float64
	Line int
}

// Defaults of a trace.
const (
	DefaultCycle = 30 * time.Second
	// DefaultDrain is how long the replay runs past the last arrival or
	// event when the trace gives no until.
	DefaultDrain = 30 * 24 * time.Hour
	DefaultSeed  = 1
	// DefaultRepair is how long a lost node stays away.
	DefaultRepair = time.Hour
	// DefaultJobCPUs and DefaultJobMemory are what a job's rank asks for
	// when the trace does not say.
	DefaultJobCPUs   = 4
	DefaultJobMemory = 16 << 30
)

// DefaultStart is the virtual time a trace without start begins at.
var DefaultStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// Limits keep a hostile or mistaken trace from exhausting memory.
const (
	MaxJobs  = 200_000
	MaxNodes = 100_000
)
