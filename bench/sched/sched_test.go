// Package schedbench benchmarks the scheduler (internal/sched): how fast it
// places work on a large fleet and how close its placements come to the
// cheapest possible, each figure against a baseline measured in the same
// run (a first-fit placer, firstFit).
//
//	go test -run '^$' -bench . ./bench/sched/
//
// Figures, each a benchmark metric:
//
//   - BenchmarkThroughput: 100,000 queued single-node jobs onto a
//     10,000-node fleet (4 GPU models, every trust tier, 3 regions, 32
//     pools) in one cycle on one core: placements/s (target ≥ 100,000),
//     p99-µs per decision (≤ 200), and x-first-fit, the rate over the
//     first-fit placer's on the same snapshot.
//   - BenchmarkGangs: gangs of 8 to 64 ranks onto the same fleet: gangs/s
//     (≥ 5,000).
//   - BenchmarkQuality: 8 random instances of at most 500 nodes, where the
//     cheapest assignment is computed exactly by a min-cost flow
//     (flow_test.go, itself checked against brute force):
//     cost-over-optimum-% (≤ 2), violations found by an independent
//     re-check (must be 0), unplaced (jobs the optimum places that the
//     scheduler left waiting), and first-fit-over-optimum-% for comparison.
//
// Times are taken on one core (GOMAXPROCS=1 inside the throughput
// benchmarks); ns/op is the time of one scheduling cycle over the whole
// queue (BenchmarkQuality: over all its instances).
package schedbench

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"lode.dev/lode/internal/sched"
)

// oneCore runs the benchmark's body on one core, as the targets are stated.
func oneCore(b *testing.B) {
	prev := runtime.GOMAXPROCS(1)
	b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

func throughputSnapshot() *sched.Snapshot {
	r := rand.New(rand.NewPCG(1, 1))
	pools, nodes := newFleet(r, bigFleet)
	jobs := newJobs(r, 100_000, jobMix{gpuShare: 0.35, ranks: [2]int{1, 1}, gpusPerJob: []int{1, 1, 1, 1, 2},
		projects: 8, constrained: true, priorities: true, objectives: true})
	return &sched.Snapshot{Now: epoch, Pools: pools, Nodes: nodes, Queued: jobs, Projects: map[string]sched.Project{
		"project-0": {Weight: 2}, "project-1": {Weight: 0.5},
	}}
}

func BenchmarkThroughput(b *testing.B) {
	oneCore(b)
	s := throughputSnapshot()
	var plan *sched.Plan
	for b.Loop() {
		plan = sched.Schedule(s)
	}
	perCycle := b.Elapsed() / time.Duration(b.N)
	rate := float64(len(plan.Placements)) / perCycle.Seconds()

	lat, setup := decisionLatencies(s)
	start := time.Now()
	ff := firstFit(s)
	ffRate := float64(len(ff)) / time.Since(start).Seconds()

	b.ReportMetric(rate, "placements/s")
	b.ReportMetric(percentile(lat, 0.99), "p99-µs")
	b.ReportMetric(rate/ffRate, "x-first-fit")
	b.ReportMetric(float64(len(violations(s, plan.Placements))), "violations")
	b.Logf("%d of %d jobs placed (%d pending), %.0f placements/s; decisions p50 %.1fµs p99 %.1fµs max %.0fµs; setup %v",
		len(plan.Placements), len(s.Queued), len(plan.Pending), rate, percentile(lat, 0.5), percentile(lat, 0.99),
		percentile(lat, 1), setup.Round(time.Millisecond))
	b.Logf("first fit: %d placed, %.0f placements/s; expected cost $%.0f per 1,000 placed jobs against first fit's $%.0f",
		len(ff), ffRate, 1000*totalCost(plan.Placements)/float64(len(plan.Placements)), 1000*totalCost(ff)/float64(len(ff)))
}

func totalCost(ps []sched.Placement) float64 {
	sum := 0.0
	for _, p := range ps {
		sum += p.EstCost
	}
	return sum
}

// decisionLatencies times each decision of one cycle, in microseconds, and
// the cycle's setup (indexing the fleet and ordering the queue).
func decisionLatencies(s *sched.Snapshot) ([]float64, time.Duration) {
	start := time.Now()
	c := sched.NewCycle(s)
	setup := time.Since(start)
	lat := make([]float64, 0, len(s.Queued))
	for {
		t := time.Now()
		more := c.Step()
		if !more {
			break
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1000)
	}
	return lat, setup
}

func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func BenchmarkGangs(b *testing.B) {
	oneCore(b)
	r := rand.New(rand.NewPCG(2, 2))
	pools, nodes := newFleet(r, bigFleet)
	jobs := newJobs(r, 300, jobMix{gpuShare: 1, ranks: [2]int{8, 64}, gpusPerJob: []int{1, 2, 4, 8}, projects: 4})
	s := &sched.Snapshot{Now: epoch, Pools: pools, Nodes: nodes, Queued: jobs}
	var plan *sched.Plan
	for b.Loop() {
		plan = sched.Schedule(s)
	}
	perCycle := b.Elapsed() / time.Duration(b.N)
	rate := float64(len(plan.Placements)) / perCycle.Seconds()
	start := time.Now()
	ff := firstFit(s)
	ffRate := float64(len(ff)) / time.Since(start).Seconds()
	ranks := 0
	for _, p := range plan.Placements {
		ranks += len(p.NodeIDs)
	}
	b.ReportMetric(rate, "gangs/s")
	b.ReportMetric(rate/ffRate, "x-first-fit")
	b.ReportMetric(float64(len(violations(s, plan.Placements))), "violations")
	b.Logf("%d of %d gangs placed (%d ranks), %.0f gangs/s; first fit: %d placed, %.0f gangs/s",
		len(plan.Placements), len(jobs), ranks, rate, len(ff), ffRate)
}

// qualityInstance is a random instance small enough to solve exactly:
// every job asks one GPU (and CPUs and memory that never run out first),
// so the cheapest placement is a transportation problem from jobs to the
// fleet's (pool, GPU model) slots.
type qualityInstance struct {
	s       *sched.Snapshot
	optimum float64
}

func newQualityInstance(seed uint64) qualityInstance {
	r := rand.New(rand.NewPCG(seed, 3))
	n := 100 + r.IntN(401)
	fs := fleetSpec{
		kinds: []poolKind{rigKind, cloudKind, hpcKind},
		pools: []int{2 + r.IntN(3), 1 + r.IntN(2), 1},
		nodes: []int{n / 2, n * 7 / 20, n - n/2 - n*7/20},
	}
	pools, nodes := newFleet(r, fs)
	slots := 0
	for _, nd := range nodes {
		for _, g := range nd.Total.GPUs {
			slots += g
		}
	}
	load := 0.6 + 0.35*r.Float64()
	jobs := newJobs(r, int(load*float64(slots)), jobMix{gpuShare: 1, ranks: [2]int{1, 1}, gpusPerJob: []int{1}, projects: 3, constrained: true})
	for _, j := range jobs {
		j.Spec.Resources.MilliCPUs, j.Spec.Resources.MemoryBytes = 2000, 8*gib
	}
	s := &sched.Snapshot{Now: epoch, Pools: pools, Nodes: nodes, Queued: jobs}

	// Slot types and their capacity.
	type slot struct{ pool, model string }
	var types []slot
	capacity := []int{}
	index := map[slot]int{}
	byID := map[string]sched.Pool{}
	for _, p := range pools {
		byID[p.ID] = p
	}
	for _, nd := range nodes {
		for m, g := range nd.Free.GPUs {
			k, ok := index[slot{nd.PoolID, m}]
			if !ok {
				k = len(types)
				index[slot{nd.PoolID, m}] = k
				types = append(types, slot{nd.PoolID, m})
				capacity = append(capacity, 0)
			}
			capacity[k] += g
		}
	}
	policy := sched.DefaultPolicy()
	cost := make([][]float64, len(jobs))
	for i, j := range jobs {
		cost[i] = make([]float64, len(types))
		for k, t := range types {
			cost[i][k] = nan
			p := byID[t.pool]
			if !admits(&policy, p, j) || len(j.Spec.Resources.GPUModels) > 0 && !slices.Contains(j.Spec.Resources.GPUModels, t.model) {
				continue
			}
			e := sched.Predict(p, j.Spec, t.model, nil)
			if c := j.Spec.Placement.MaxPricePerHour; c > 0 && e.PricePerHour > c ||
				j.Spec.Deadline > 0 && e.Finish(s.Now).After(j.CreatedAt.Add(time.Duration(j.Spec.Deadline))) {
				continue
			}
			cost[i][k] = e.EstCost
		}
	}
	assigned, _ := assignment(cost, capacity)
	// Keep the jobs the optimum places, so that both sides place the same
	// work and the optimum's cost is the cheapest for exactly that work.
	var kept []sched.Job
	total := 0.0
	for i, k := range assigned {
		if k >= 0 {
			kept = append(kept, jobs[i])
			total += cost[i][k]
		}
	}
	s.Queued = kept
	return qualityInstance{s: s, optimum: total}
}

var nan = math.NaN()

func BenchmarkQuality(b *testing.B) {
	var instances []qualityInstance
	for seed := range uint64(8) {
		instances = append(instances, newQualityInstance(seed+1))
	}
	plans := make([]*sched.Plan, len(instances))
	for b.Loop() {
		for i, in := range instances {
			plans[i] = sched.Schedule(in.s)
		}
	}
	var cost, ffCost, optimum float64
	bad, unplaced, jobs, nodes := 0, 0, 0, 0
	for i, in := range instances {
		p := plans[i]
		bad += len(violations(in.s, p.Placements))
		unplaced += len(in.s.Queued) - len(p.Placements)
		jobs += len(in.s.Queued)
		nodes = max(nodes, len(in.s.Nodes))
		if len(p.Placements) < len(in.s.Queued) {
			continue // compared below only where every job was placed
		}
		optimum += in.optimum
		for _, pl := range p.Placements {
			cost += pl.EstCost
		}
		for _, pl := range firstFit(in.s) {
			ffCost += pl.EstCost
		}
	}
	over := 100 * (cost - optimum) / optimum
	ffOver := 100 * (ffCost - optimum) / optimum
	b.ReportMetric(over, "cost-over-optimum-%")
	b.ReportMetric(float64(bad), "violations")
	b.ReportMetric(float64(unplaced), "unplaced")
	b.ReportMetric(ffOver, "first-fit-over-optimum-%")
	b.Logf("%d instances (up to %d nodes, %d jobs): $%.2f against the optimum's $%.2f (+%.2f%%); first fit +%.1f%%; %d jobs the optimum places left unplaced; %d violations",
		len(instances), nodes, jobs, cost, optimum, over, ffOver, unplaced, bad)
}

// TestQualityInstancesAreFeasible checks that the benchmark's optimum
// places work: an instance the flow cannot fill would make the comparison
// empty.
func TestQualityInstancesAreFeasible(t *testing.T) {
	in := newQualityInstance(1)
	if len(in.s.Queued) == 0 || in.optimum <= 0 {
		t.Fatalf("instance of %d jobs, optimum $%.2f", len(in.s.Queued), in.optimum)
	}
	if v := violations(in.s, firstFit(in.s)); len(v) > 0 {
		t.Errorf("first fit breaks rules: %v", v)
	}
}
