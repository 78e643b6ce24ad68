package schedbench

import (
	"cmp"
	"slices"
	"time"

	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// firstFit is the baseline placer: jobs by priority then age, pools by
// name, nodes in the snapshot's order, the first that has room for every
// rank wins. It keeps the hard constraints (pool state, named pools,
// regions, trust, the policy, gang interconnect, GPU models, price caps,
// deadlines) but ranks nothing, explains nothing and knows no budgets,
// fair share, preemption or backfill: the scheduler the cost-aware one
// replaces.
func firstFit(s *sched.Snapshot) []sched.Placement {
	pools := slices.Clone(s.Pools)
	slices.SortFunc(pools, func(a, b sched.Pool) int { return cmp.Compare(a.Name, b.Name) })
	type free struct {
		cpu, mem int64
		gpus     map[string]int
	}
	frees := make([]free, len(s.Nodes))
	byPool := map[string][]int{}
	for i, n := range s.Nodes {
		frees[i] = free{n.Free.MilliCPUs, n.Free.MemoryBytes, clone(n.Free).GPUs}
		byPool[n.PoolID] = append(byPool[n.PoolID], i)
	}
	policy := s.Policy
	if len(policy.Rules) == 0 {
		policy = sched.DefaultPolicy()
	}
	jobs := slices.Clone(s.Queued)
	slices.SortStableFunc(jobs, func(a, b sched.Job) int {
		return cmp.Or(cmp.Compare(b.Spec.Priority, a.Spec.Priority), a.CreatedAt.Compare(b.CreatedAt))
	})
	var out []sched.Placement
	var chosen []int
	for _, j := range jobs {
		sp := j.Spec
		ranks := max(sp.Nodes, 1)
	pools:
		for _, p := range pools {
			if !admits(&policy, p, j) {
				continue
			}
			gpuModels := []string{""}
			if sp.Resources.GPUs > 0 {
				gpuModels = sp.Resources.GPUModels
				if len(gpuModels) == 0 {
					gpuModels = models
				}
			}
			for _, m := range gpuModels {
				e := sched.Predict(p, sp, m, s.Throughput)
				if c := sp.Placement.MaxPricePerHour; c > 0 && e.PricePerHour > c ||
					sp.Deadline > 0 && e.Finish(s.Now).After(j.CreatedAt.Add(time.Duration(sp.Deadline))) {
					continue
				}
				chosen = chosen[:0]
				taken := map[int]int{}
				for _, ni := range byPool[p.ID] {
					f := frees[ni]
					for len(chosen) < ranks {
						k := int64(taken[ni] + 1)
						if f.cpu < k*sp.Resources.MilliCPUs || f.mem < k*sp.Resources.MemoryBytes ||
							m != "" && f.gpus[m] < int(k)*sp.Resources.GPUs {
							break
						}
						taken[ni]++
						chosen = append(chosen, ni)
					}
					if len(chosen) == ranks {
						break
					}
				}
				if len(chosen) < ranks {
					continue
				}
				pl := sched.Placement{JobID: j.ID, PoolID: p.ID, GPUModel: m, PricePerHour: e.PricePerHour, EstHours: e.EstHours, EstCost: e.EstCost}
				for _, ni := range chosen {
					f := &frees[ni]
					f.cpu -= sp.Resources.MilliCPUs
					f.mem -= sp.Resources.MemoryBytes
					if m != "" {
						f.gpus[m] -= sp.Resources.GPUs
					}
					pl.NodeIDs = append(pl.NodeIDs, s.Nodes[ni].ID)
				}
				out = append(out, pl)
				break pools
			}
		}
	}
	return out
}

// admits checks the pool-level constraints of a job on a pool, from the
// snapshot's own fields.
func admits(policy *sched.Policy, p sched.Pool, j sched.Job) bool {
	sp := j.Spec
	if p.State != sched.PoolActive || p.Tier < sp.Placement.MinTrust ||
		len(sp.Placement.Regions) > 0 && !slices.Contains(sp.Placement.Regions, p.Region) ||
		len(sp.Placement.Pools) > 0 && !slices.Contains(sp.Placement.Pools, p.Name) {
		return false
	}
	if sp.Nodes > 1 {
		need := float64(spec.DefaultGangGbps)
		if sp.Interconnect != nil {
			need = sp.Interconnect.MinGbps
		}
		if !p.Interconnect.MultiNode || p.Interconnect.Gbps < need {
			return false
		}
	}
	for _, rule := range policy.Rules {
		if rule.Classification == sp.Classification && p.Tier >= rule.MinTier &&
			(len(rule.Regions) == 0 || slices.Contains(rule.Regions, p.Region)) {
			return true
		}
	}
	return false
}
