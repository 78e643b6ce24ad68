package sim

import (
	"math"
	"slices"

	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// Bound is a lower bound on what a trace's jobs can cost.
type Bound struct {
	// Cost is the sum over the jobs that can run somewhere of each job's
	// work at the cheapest price per unit of work its constraints allow:
	// one attempt, no failure, no wait, no capacity limit, no budget.
	Cost float64
	// Jobs holds each job's bound by ID; an infeasible job has none.
	Jobs map[string]float64
	// Infeasible lists the jobs no pool shape of the trace can ever hold.
	Infeasible []string
}

// LowerBound computes the trace's lower bound. A job may take any pool
// and node shape the trace ever offers (its nodes and the nodes events
// add) whose trust tier and region the policy and the job's placement
// allow, whose price is within the job's max price, and that either holds
// every rank on one node or links nodes fast enough for the gang.
func LowerBound(t *Trace) Bound {
	b := Bound{Jobs: map[string]float64{}}
	// Copies of one trace entry share a spec and have the same bound.
	type key struct {
		spec *spec.Job
		work float64
	}
	memo := map[key]float64{}
	for i := range t.Jobs {
		j := &t.Jobs[i]
		cost, seen := memo[key{j.Spec, j.Work}]
		if !seen {
			cost = jobBound(t, j)
			memo[key{j.Spec, j.Work}] = cost
		}
		if math.IsInf(cost, 1) {
			b.Infeasible = append(b.Infeasible, j.ID)
			continue
		}
		b.Jobs[j.ID] = cost
		b.Cost += cost
	}
	return b
}

func jobBound(t *Trace, j *Job) float64 {
	sp := j.Spec
	ranks := max(sp.Nodes, 1)
	hours := j.Work / float64(ranks*max(sp.Resources.GPUs, 1)) // per rank on the reference GPU
	best := math.Inf(1)
	for pi := range t.Pools {
		def := &t.Pools[pi]
		p := sched.Pool{Name: def.Name, Region: def.Region, Tier: def.Tier, Interconnect: def.Interconnect, Prices: def.Prices}
		if policyRefuses(t.Policy, sp.Classification, p.Tier, p.Region) != "" || placementRefuses(p, sp) != "" {
			continue
		}
		shapes := slices.Clone(def.Nodes)
		for _, ev := range t.Events {
			if ev.Pool == def.Name && ev.Add != nil {
				shapes = append(shapes, *ev.Add)
			}
		}
		linked := interconnectRefuses(p, sp, 2) == ""
		for _, g := range shapes {
			shape := sched.Capacity{MilliCPUs: g.MilliCPUs, MemoryBytes: g.MemoryBytes, GPUs: g.GPUs}
			models := []string{""}
			for m := range g.GPUs {
				models = append(models, m)
			}
			for _, m := range models {
				c := shape
				taken, why := takeRank(&c, sp.Resources, m)
				if why != "" {
					continue
				}
				if ranks > 1 && !linked {
					// Every rank must share this one node.
					fits := true
					for range ranks - 1 {
						if _, why := takeRank(&c, sp.Resources, m); why != "" {
							fits = false
							break
						}
					}
					if !fits {
						continue
					}
				}
				price := float64(ranks) * rankPrice(def.Prices, sp.Resources, taken)
				if maxPrice := sp.Placement.MaxPricePerHour; maxPrice > 0 && price > maxPrice*(1+1e-9) {
					continue
				}
				best = min(best, price*hours/speed(t.Throughput, taken))
			}
		}
	}
	return best
}
