package sim

import (
	"encoding/json"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/sched"
)

func mustParse(t *testing.T, src string) *Trace {
	t.Helper()
	tr, err := ParseTrace(t.Name()+".yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustRun(t *testing.T, tr *Trace, opt Options) *Report {
	t.Helper()
	r, err := Run(tr, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func poolCost(r *Report, name string) float64 {
	for _, p := range r.Pools {
		if p.Name == name {
			return p.Cost
		}
	}
	return math.NaN()
}

// TestTinyCostByHand checks the tiny trace's figures against arithmetic:
// small runs 1.1 A100-hours on an RTX 3090 (0.55 of an A100) for 2 hours
// at $0.25; secret is confidential, so only the certified cloud may hold
// it, 2 hours at $3.00.
func TestTinyCostByHand(t *testing.T) {
	tr, err := LoadTrace(filepath.Join(traceDir, "tiny.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	if !near(r.Cost, 6.50) || !near(poolCost(r, "rig"), 0.50) || !near(poolCost(r, "cloud"), 6.00) {
		t.Errorf("cost: got $%.4f (rig $%.4f, cloud $%.4f), want $6.50 ($0.50 + $6.00)", r.Cost, poolCost(r, "rig"), poolCost(r, "cloud"))
	}
	if !near(r.LowerBound, 6.50) || math.Abs(r.CostOverLowerBoundPct) > 1e-6 {
		t.Errorf("lower bound: got $%.4f (%+.4f%%), want $6.50 (+0%%)", r.LowerBound, r.CostOverLowerBoundPct)
	}
	if r.Finished != 2 || r.DeadlineHitPct != 100 || r.Violations != 0 || !near(r.GPUHoursBusy, 4) {
		t.Errorf("got %d finished, %.1f%% deadlines, %d violations, %.2f GPU-hours busy; want 2, 100%%, 0, 4", r.Finished, r.DeadlineHitPct, r.Violations, r.GPUHoursBusy)
	}
	if want := tr.Start.Add(2 * time.Hour); !r.End.Round(time.Second).Equal(want) {
		t.Errorf("ended at %v, want %v", r.End, want)
	}
}

// TestLodeTiny runs the real scheduler on the tiny trace: the cheapest
// placement of each job is plain, so it must find the lower bound.
func TestLodeTiny(t *testing.T) {
	tr, err := LoadTrace(filepath.Join(traceDir, "tiny.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, tr, Options{})
	if r.Violations != 0 || r.Finished != 2 || r.DeadlineHitPct != 100 {
		t.Errorf("got %d violations %v, %d finished, %.1f%% deadlines; want 0, 2, 100%%", r.Violations, r.ViolationSamples, r.Finished, r.DeadlineHitPct)
	}
	if !near(r.Cost, 6.50) {
		t.Errorf("cost: got $%.4f (rig $%.4f, cloud $%.4f), want $6.50", r.Cost, poolCost(r, "rig"), poolCost(r, "cloud"))
	}
}

// flaky is a fleet whose rigs fail often, for tests of the failure model.
const flaky = `
name: flaky
seed: 3
pools:
  - name: rigs
    kind: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx4090: 0.40}}
    failures: {node_loss_per_hour: 0.2, repair: 30m}
    nodes:
      - {count: 6, cpus: 16, memory: 64GiB, gpus: 2xrtx4090}
  - name: cloud
    kind: on-demand
    region: eu
    tier: certified
    interconnect: {gbps: 200, multi_node: true}
    prices: {gpu_hour: {a100: 3.00}}
    failures: {node_loss_per_hour: 0.001}
    nodes:
      - {count: 4, cpus: 64, memory: 512GiB, gpus: 4xa100}
jobs:
  - {name: dev, at: 0, count: 30, every: 15m, work: 4, deadline: 24h, checkpoint: 10m, retries: 50}
  - {name: gang, at: 1h, count: 3, every: 3h, nodes: 2, gpus: 4, cpus: 16, memory: 64GiB, work: 32, min_gbps: 100, deadline: 24h}
  - {name: conf, at: 30m, count: 5, every: 1h, work: 2, classification: confidential, deadline: 12h}
`

func TestDeterministic(t *testing.T) {
	tr := mustParse(t, flaky)
	for _, p := range Policies() {
		t.Run(string(p), func(t *testing.T) {
			a := mustRun(t, tr, Options{Policy: p})
			b := mustRun(t, tr, Options{Policy: p})
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("two replays with one seed differ (-first +second):\n%s", diff)
			}
			if a.Violations != 0 {
				t.Errorf("got %d violations: %v", a.Violations, a.ViolationSamples)
			}
			if p == PolicyCloudOnly {
				return // the reliable cloud alone: nothing may fail
			}
			if a.NodeLosses == 0 {
				t.Errorf("no node was lost; the trace should exercise failures")
			}
			c := mustRun(t, tr, Options{Policy: p, Seed: 99})
			if c.NodeLosses == a.NodeLosses && c.Cost == a.Cost {
				t.Errorf("seed 99 replayed exactly as seed 3 (%d losses, $%.2f); the seed should matter", c.NodeLosses, c.Cost)
			}
		})
	}
}

// TestNodeLossResumesFromCheckpoint removes the only node 2h30m into a
// 4-hour job that checkpoints hourly; a node comes back at 3h. The job
// resumes from its 2h checkpoint: 0.5 GPU-hours ($1) are lost, and it
// finishes at 5h having cost 2.5h + 2h at $2.
func TestNodeLossResumesFromCheckpoint(t *testing.T) {
	tr := mustParse(t, `
pools:
  - name: cloud
    region: eu
    tier: certified
    prices: {gpu_hour: {a100: 2.00}}
    nodes:
      - {cpus: 8, memory: 32GiB, gpus: 1xa100}
events:
  - {at: 2h30m, pool: cloud, remove: 1}
  - {at: 3h, pool: cloud, add: {cpus: 8, memory: 32GiB, gpus: 1xa100}}
jobs:
  - {name: j, at: 0, work: 4, checkpoint: 1h, deadline: 8h}
`)
	for _, p := range []Policy{PolicyLode, PolicyCheapestFirst} {
		t.Run(string(p), func(t *testing.T) {
			r := mustRun(t, tr, Options{Policy: p})
			if r.Finished != 1 || r.Attempts != 2 || r.AttemptsLost != 1 || r.NodeLosses != 1 {
				t.Errorf("got %d finished, %d attempts, %d lost, %d node losses; want 1, 2, 1, 1", r.Finished, r.Attempts, r.AttemptsLost, r.NodeLosses)
			}
			if !near(r.GPUHoursLost, 0.5) || !near(r.CostLost, 1) || !near(r.Cost, 9) {
				t.Errorf("got %.4f GPU-hours lost ($%.4f), cost $%.4f; want 0.5 ($1), $9", r.GPUHoursLost, r.CostLost, r.Cost)
			}
			if got, want := r.End.Round(time.Second), tr.Start.Add(5*time.Hour); !got.Equal(want) {
				t.Errorf("ended at %v, want %v", got, want)
			}
			if r.DeadlinesMet != 1 {
				t.Errorf("the 8h deadline was missed: %v", r.MissedDeadlines)
			}
		})
	}
}

func TestRetriesUsedUp(t *testing.T) {
	tr := mustParse(t, `
pools:
  - name: cloud
    region: eu
    tier: certified
    prices: {gpu_hour: {a100: 2.00}}
    nodes:
      - {cpus: 8, memory: 32GiB, gpus: 1xa100}
events:
  - {at: 1h, pool: cloud, remove: 1}
  - {at: 2h, pool: cloud, add: {cpus: 8, memory: 32GiB, gpus: 1xa100}}
jobs:
  - {name: j, at: 0, work: 4, retries: 0}
  - {name: k, at: 3h, work: 1, checkpoint: none}
`)
	r := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	if r.Failed != 1 || r.Finished != 1 || r.UnfinishedJobs[0].ID != "j" {
		t.Errorf("got %d failed, %d finished, unfinished %v; want j failed, k finished", r.Failed, r.Finished, r.UnfinishedJobs)
	}
}

// TestRandomLossesLoseAtMostACheckpoint: on the flaky fleet no attempt may
// lose more than its checkpoint interval of work.
func TestRandomLossesLoseAtMostACheckpoint(t *testing.T) {
	tr := mustParse(t, flaky)
	r := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	if r.AttemptsLost == 0 {
		t.Fatal("no attempt was lost; the trace should lose some")
	}
	// dev jobs hold 1 GPU and checkpoint every 10 minutes; gangs hold 8
	// GPUs and checkpoint every 5 (the default).
	if max := float64(r.AttemptsLost) * 8 * (10.0 / 60); r.GPUHoursLost > max {
		t.Errorf("lost %.2f GPU-hours in %d lost attempts, more than a checkpoint interval each (%.2f)", r.GPUHoursLost, r.AttemptsLost, max)
	}
	if r.Finished != r.Jobs {
		t.Errorf("%d of %d jobs finished: %v", r.Finished, r.Jobs, r.UnfinishedJobs)
	}
}

func TestOperatorVanishes(t *testing.T) {
	tr := mustParse(t, `
pools:
  - name: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx4090: 0.40}}
    nodes:
      - {count: 2, cpus: 16, memory: 64GiB, gpus: 2xrtx4090}
  - name: cloud
    region: eu
    tier: certified
    prices: {gpu_hour: {a100: 2.00}}
    nodes:
      - {cpus: 8, memory: 32GiB, gpus: 1xa100}
events:
  - {at: 1h5m, pool: rig, vanish: true}
jobs:
  - {name: j, at: 0, work: 4, checkpoint: 10m}
`)
	r := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	if r.PoolsVanished != 1 || r.AttemptsLost != 1 || r.Finished != 1 || r.Violations != 0 {
		t.Fatalf("got %d vanished, %d lost, %d finished, %d violations; want 1, 1, 1, 0", r.PoolsVanished, r.AttemptsLost, r.Finished, r.Violations)
	}
	// 1h5m on the rig at 0.8 of an A100 with a checkpoint at 1h: 0.8 done,
	// 5 minutes lost, then 3.2 hours on the cloud's A100.
	if !near(r.GPUHoursLost, 5.0/60) || !near(poolCost(r, "cloud"), 3.2*2) || !near(poolCost(r, "rig"), 0.40*65/60) {
		t.Errorf("got %.4f GPU-hours lost, rig $%.4f, cloud $%.4f; want %.4f, $%.4f, $%.4f",
			r.GPUHoursLost, poolCost(r, "rig"), poolCost(r, "cloud"), 5.0/60, 0.40*65/60, 3.2*2)
	}
}

// TestViolationsChecker feeds the control plane a plan that breaks every
// rule once, then lets the cheapest-first placer take over.
func TestViolationsChecker(t *testing.T) {
	tr := mustParse(t, `
until: 1d
projects:
  poor: {budget: 1}
pools:
  - name: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx3090: 0.25}}
    nodes:
      - {count: 2, cpus: 8, memory: 32GiB, gpus: 1xrtx3090}
  - name: cloud
    region: eu
    tier: certified
    interconnect: {gbps: 100, multi_node: true}
    prices: {gpu_hour: {a100: 3.00}}
    nodes:
      - {count: 2, cpus: 8, memory: 32GiB, gpus: 1xa100}
jobs:
  - {name: secret, at: 0, work: 1, classification: confidential}
  - {name: a, at: 0, work: 1}
  - {name: b, at: 0, work: 1}
  - {name: gang, at: 0, work: 2, nodes: 2, gpus: 1, min_gbps: 10}
  - {name: capped, at: 0, work: 1, max_price: 1, pools: [cloud]}
  - {name: poor, at: 0, work: 1, project: poor}
  - {name: picky, at: 0, work: 1, gpu: [a100]}
`)
	bad := &sched.Plan{
		Placements: []sched.Placement{
			{JobID: "secret", PoolID: "rig", NodeIDs: []string{"rig-0000"}},                     // security
			{JobID: "a", PoolID: "cloud", NodeIDs: []string{"cloud-0000"}},                      // fine
			{JobID: "b", PoolID: "cloud", NodeIDs: []string{"cloud-0000"}},                      // capacity: a holds its only GPU
			{JobID: "gang", PoolID: "cloud", NodeIDs: []string{"cloud-0001", "rig-0001"}},       // gang across pools
			{JobID: "gang", PoolID: "rig", NodeIDs: []string{"rig-0000", "rig-0001"}},           // interconnect: rigs take no gangs
			{JobID: "capped", PoolID: "cloud", NodeIDs: []string{"cloud-0001"}},                 // price
			{JobID: "poor", PoolID: "cloud", NodeIDs: []string{"cloud-0001"}},                   // budget
			{JobID: "ghost", PoolID: "cloud", NodeIDs: []string{"cloud-0001"}},                  // plan: no such job
			{JobID: "secret", PoolID: "cloud", NodeIDs: []string{"cloud-0001", "cloud-0001"}},   // gang: 2 nodes for 1 rank
			{JobID: "a", PoolID: "cloud", NodeIDs: []string{"cloud-0001"}},                      // plan: a is running
			{JobID: "picky", PoolID: "rig", NodeIDs: []string{"rig-0000"}, GPUModel: "rtx3090"}, // gpu-model, and capacity: no a100 there
			{JobID: "b", PoolID: "nope", NodeIDs: []string{"x"}},                                // plan: no such pool
		},
		Preemptions: []sched.Preemption{{AttemptID: "att-999999", JobID: "a"}}, // plan: no such attempt
	}
	first := true
	placer := func(s *sched.Snapshot) *sched.Plan {
		if first {
			first = false
			return bad
		}
		return cheapestFirst(s)
	}
	r := mustRun(t, tr, Options{Policy: PolicyLode, Placer: placer})
	want := map[string]int{
		ViolSecurity: 1, ViolCapacity: 2, ViolGang: 2, ViolInterconnect: 1, ViolPrice: 1, ViolBudget: 1, ViolPlan: 4, ViolGPUModel: 1,
	}
	if diff := cmp.Diff(want, r.ViolationsByKind); diff != "" {
		t.Errorf("violations by kind (-want +got):\n%s\n%v", diff, r.ViolationSamples)
	}
	if r.Violations != 13 {
		t.Errorf("got %d violations, want 13", r.Violations)
	}
	// Refused placements take nothing: the cheapest-first placer runs the
	// rest (poor fits its budget on the rig), and capped can run nowhere.
	if r.Finished != 6 || r.Unfinished != 1 || r.UnfinishedJobs[0].ID != "capped" {
		t.Errorf("got %d finished, %d unfinished (%v); want 6 and capped", r.Finished, r.Unfinished, r.UnfinishedJobs)
	}
	if got := poolCost(r, "rig"); got > 0.25*4 {
		t.Errorf("rig cost $%.2f: secret or picky ran on the rig", got)
	}
}

func TestCloudOnly(t *testing.T) {
	tr, err := LoadTrace(filepath.Join(traceDir, "tiny.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cloud"}, CloudPools(tr)); diff != "" {
		t.Errorf("cloud pools (-want +got):\n%s", diff)
	}
	r := mustRun(t, tr, Options{Policy: PolicyCloudOnly})
	if len(r.Pools) != 1 || r.Pools[0].Name != "cloud" {
		t.Errorf("cloud-only fleet: got %v, want the cloud pool alone", r.Pools)
	}
	// 1.1 + 2 hours of A100 at $3.
	if !near(r.Cost, 9.30) || r.Finished != 2 || r.Violations != 0 {
		t.Errorf("got $%.4f, %d finished, %d violations; want $9.30, 2, 0", r.Cost, r.Finished, r.Violations)
	}

	// Without on-demand pools, cloud-only keeps the certified and private.
	tr2 := mustParse(t, `
pools:
  - {name: a, region: eu, tier: community, prices: {}}
  - {name: b, region: eu, tier: certified, kind: spot, prices: {}}
  - {name: c, region: eu, tier: private, prices: {}}
jobs:
  - {name: j, at: 0, gpus: 0, estimate: 1h}
`)
	if diff := cmp.Diff([]string{"b", "c"}, CloudPools(tr2)); diff != "" {
		t.Errorf("cloud pools without on-demand (-want +got):\n%s", diff)
	}
}

// TestCheapestFirstIgnoresSpeed: an RTX 3090 at $0.30 is cheaper per hour
// than an A100 at $0.40 but dearer per unit of work (0.55 of the speed).
func TestCheapestFirstIgnoresSpeed(t *testing.T) {
	tr := mustParse(t, `
pools:
  - {name: slow, region: eu, tier: community, prices: {gpu_hour: {rtx3090: 0.30}}, nodes: [{cpus: 8, memory: 32GiB, gpus: 1xrtx3090}]}
  - {name: fast, region: eu, tier: community, prices: {gpu_hour: {a100: 0.40}}, nodes: [{cpus: 8, memory: 32GiB, gpus: 1xa100}]}
jobs:
  - {name: j, at: 0, work: 1.1}
`)
	cf := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	if !near(poolCost(cf, "slow"), 0.60) || !near(cf.Cost, 0.60) {
		t.Errorf("cheapest-first: got slow $%.4f, total $%.4f; want the slow pool at $0.60", poolCost(cf, "slow"), cf.Cost)
	}
	if !near(cf.LowerBound, 0.44) {
		t.Errorf("lower bound: got $%.4f, want $0.44 (1.1 hours of A100 at $0.40)", cf.LowerBound)
	}
	lode := mustRun(t, tr, Options{})
	if !near(lode.Cost, 0.44) {
		t.Errorf("lode: got $%.4f (slow $%.4f, fast $%.4f), want the fast pool at $0.44", lode.Cost, poolCost(lode, "slow"), poolCost(lode, "fast"))
	}
}

// TestBudgetHolds: a $5 budget holds two of three $2 jobs that arrive one
// after the other; the third waits, and the control plane sees no
// placement over budget.
func TestBudgetHolds(t *testing.T) {
	tr := mustParse(t, `
until: 1d
projects:
  p: {budget: 5}
pools:
  - {name: cloud, region: eu, tier: certified, prices: {gpu_hour: {a100: 2.00}}, nodes: [{count: 3, cpus: 8, memory: 32GiB, gpus: 1xa100}]}
jobs:
  - {name: j, at: 0, count: 3, every: 2h, work: 1, project: p}
`)
	for _, p := range []Policy{PolicyLode, PolicyCheapestFirst} {
		t.Run(string(p), func(t *testing.T) {
			r := mustRun(t, tr, Options{Policy: p})
			if r.Violations != 0 || r.Finished != 2 || r.Unfinished != 1 {
				t.Errorf("got %d violations %v, %d finished, %d unfinished; want 0, 2, 1", r.Violations, r.ViolationSamples, r.Finished, r.Unfinished)
			}
			if pr := r.Projects[0]; pr.Spent > 5 || pr.OverBudget || r.ProjectsOverBudget != 0 {
				t.Errorf("project spent $%.2f of its $5 (over budget: %v, %d)", pr.Spent, pr.OverBudget, r.ProjectsOverBudget)
			}
		})
	}
}

func TestLowerBound(t *testing.T) {
	tr := mustParse(t, `
policy:
  - {classification: confidential, min_tier: certified, regions: [eu]}
pools:
  - {name: rig, region: eu, tier: community, prices: {gpu_hour: {rtx3090: 0.20}}, nodes: [{cpus: 32, memory: 128GiB, gpus: 4xrtx3090}]}
  - {name: us, region: us, tier: certified, interconnect: {gbps: 100, multi_node: true}, prices: {gpu_hour: {a100: 1.00}}, nodes: [{cpus: 32, memory: 128GiB, gpus: 8xa100}]}
  - {name: eu, region: eu, tier: certified, prices: {gpu_hour: {a100: 3.00}}, nodes: [{cpus: 32, memory: 128GiB, gpus: 8xa100}]}
events:
  - {at: 1h, pool: rig, add: {cpus: 32, memory: 128GiB, gpus: 8xrtx3090}}
jobs:
  - {name: one, at: 0, work: 1.1}
  - {name: conf, at: 0, work: 1, classification: confidential}
  - {name: packed, at: 0, work: 4.4, nodes: 2, gpus: 4}
  - {name: spread, at: 0, work: 8.8, nodes: 4, gpus: 4}
  - {name: secret, at: 0, work: 1, classification: restricted}
`)
	b := LowerBound(tr)
	want := map[string]float64{
		"one":    0.20 * 2,   // 2 hours of an RTX 3090
		"conf":   3.00 * 1,   // only eu may hold confidential data
		"packed": 0.20 * 8,   // both ranks on the 8-GPU rig that arrives at 1h: 8 GPUs for an hour
		"spread": 1.00 * 8.8, // 16 A100s linked at 100 Gbit/s (confidential data could not go there)
	}
	if diff := cmp.Diff(want, b.Jobs, cmp.Comparer(near)); diff != "" {
		t.Errorf("bounds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"secret"}, b.Infeasible); diff != "" {
		t.Errorf("infeasible (-want +got):\n%s", diff)
	}
}

func TestReportJSON(t *testing.T) {
	tr := mustParse(t, flaky)
	r := mustRun(t, tr, Options{Policy: PolicyCheapestFirst})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Cost != r.Cost || back.Policy != PolicyCheapestFirst || len(back.Pools) != 2 {
		t.Errorf("round trip lost figures: %s", data)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range Policies() {
		if got, err := ParsePolicy(string(p)); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %q, %v", p, got, err)
		}
	}
	if _, err := ParsePolicy("fifo"); err == nil {
		t.Error("ParsePolicy(fifo) succeeded")
	}
	if _, err := Run(&Trace{}, Options{Policy: "fifo"}); err == nil {
		t.Error("Run with an unknown policy succeeded")
	}
}

// TestDrainMovesWithoutLoss: a drained node's attempt checkpoints on its
// way out and moves at no cost to its retries; it is not a loss.
func TestDrainMovesWithoutLoss(t *testing.T) {
	tr := mustParse(t, `
pools:
  - {name: rig, region: eu, tier: community, prices: {gpu_hour: {rtx4090: 0.40}}, nodes: [{cpus: 16, memory: 64GiB, gpus: 1xrtx4090}]}
  - {name: cloud, region: eu, tier: certified, prices: {gpu_hour: {a100: 2.00}}, nodes: [{cpus: 8, memory: 32GiB, gpus: 1xa100}]}
events:
  - {at: 1h5m, pool: rig, drain: 1}
jobs:
  - {name: j, at: 0, work: 4, checkpoint: 10m, retries: 0}
`)
	for _, p := range []Policy{PolicyLode, PolicyCheapestFirst} {
		t.Run(string(p), func(t *testing.T) {
			r := mustRun(t, tr, Options{Policy: p})
			if r.Finished != 1 || r.NodeLosses != 0 || r.AttemptsLost != 0 || r.GPUHoursLost != 0 || r.Attempts != 2 {
				t.Errorf("got %d finished, %d losses, %d attempts lost, %.2f GPU-hours lost, %d attempts; want 1, 0, 0, 0, 2",
					r.Finished, r.NodeLosses, r.AttemptsLost, r.GPUHoursLost, r.Attempts)
			}
			// 65 minutes at 0.8 of an A100 on the rig, the rest on the cloud.
			if want := 0.40*65/60 + 2*(4-0.8*65/60); !near(r.Cost, want) {
				t.Errorf("cost: got $%.4f, want $%.4f", r.Cost, want)
			}
		})
	}
}

// TestQuarantine: a pool whose nodes fail every few minutes is quarantined
// by the control plane's reliability rules; nothing is placed there while
// it is.
func TestQuarantine(t *testing.T) {
	tr := mustParse(t, `
until: 2d
pools:
  - name: bad
    region: eu
    tier: community
    prices: {gpu_hour: {rtx3090: 0.10}}
    failures: {node_loss_per_hour: 3, repair: 5m}
    nodes: [{count: 4, cpus: 16, memory: 64GiB, gpus: 4xrtx3090}]
  - {name: good, region: eu, tier: certified, prices: {gpu_hour: {a100: 2.00}}, nodes: [{count: 2, cpus: 64, memory: 256GiB, gpus: 4xa100}]}
jobs:
  - {name: j, at: 30m, count: 20, every: 30m, work: 2, checkpoint: 5m, retries: 100}
`)
	for _, p := range Policies() {
		t.Run(string(p), func(t *testing.T) {
			r := mustRun(t, tr, Options{Policy: p})
			if p != PolicyCloudOnly && r.Quarantines == 0 {
				t.Errorf("the bad pool was never quarantined (loss rate %.2f/h)", r.Pools[0].LossRate)
			}
			if r.Violations != 0 || r.Finished != r.Jobs {
				t.Errorf("got %d violations %v, %d of %d finished", r.Violations, r.ViolationSamples, r.Finished, r.Jobs)
			}
		})
	}
}
