package schedbench

import (
	"fmt"
	"slices"
	"time"

	"lode.dev/lode/internal/sched"
)

// violations re-checks placements against the snapshot without the
// scheduler's help: node capacity, pool state, the policy, the job's
// placement rules, GPU models, gang interconnect, price caps, deadlines
// and budgets. Each broken rule is one line.
func violations(s *sched.Snapshot, placements []sched.Placement) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	pools := map[string]sched.Pool{}
	for _, p := range s.Pools {
		pools[p.ID] = p
	}
	nodes := map[string]int{}
	for i, n := range s.Nodes {
		nodes[n.ID] = i
	}
	jobs := map[string]sched.Job{}
	for _, j := range s.Queued {
		jobs[j.ID] = j
	}
	policy := s.Policy
	if len(policy.Rules) == 0 {
		policy = sched.DefaultPolicy()
	}
	type use struct {
		cpu, mem int64
		gpus     map[string]int
	}
	used := make([]use, len(s.Nodes))
	spent := map[string]float64{}
	seen := map[string]bool{}
	for _, pl := range placements {
		j, ok := jobs[pl.JobID]
		if !ok || seen[pl.JobID] {
			fail("%s: unknown or placed twice", pl.JobID)
			continue
		}
		seen[pl.JobID] = true
		sp := j.Spec
		p, ok := pools[pl.PoolID]
		if !ok || !admits(&policy, p, j) {
			fail("%s: pool %s breaks the job's or the policy's rules", j.ID, pl.PoolID)
			continue
		}
		if len(pl.NodeIDs) != max(sp.Nodes, 1) {
			fail("%s: %d ranks placed of %d", j.ID, len(pl.NodeIDs), sp.Nodes)
		}
		if sp.Resources.GPUs > 0 && (pl.GPUModel == "" ||
			len(sp.Resources.GPUModels) > 0 && !slices.Contains(sp.Resources.GPUModels, pl.GPUModel)) {
			fail("%s: GPU model %q not among %v", j.ID, pl.GPUModel, sp.Resources.GPUModels)
		}
		for _, id := range pl.NodeIDs {
			ni, ok := nodes[id]
			if !ok || s.Nodes[ni].PoolID != p.ID {
				fail("%s: rank on %s, outside pool %s", j.ID, id, p.ID)
				continue
			}
			u := &used[ni]
			if u.gpus == nil {
				u.gpus = map[string]int{}
			}
			u.cpu += sp.Resources.MilliCPUs
			u.mem += sp.Resources.MemoryBytes
			u.gpus[pl.GPUModel] += sp.Resources.GPUs
		}
		e := sched.Predict(p, sp, pl.GPUModel, s.Throughput)
		if c := sp.Placement.MaxPricePerHour; c > 0 && e.PricePerHour > c {
			fail("%s: $%.2f/h over its cap of $%.2f/h", j.ID, e.PricePerHour, c)
		}
		if sp.Deadline > 0 && e.Finish(s.Now).After(j.CreatedAt.Add(time.Duration(sp.Deadline))) {
			fail("%s: predicted to miss its deadline", j.ID)
		}
		spent[j.Project] += e.EstCost
	}
	for ni, u := range used {
		f := s.Nodes[ni].Free
		if u.cpu > f.MilliCPUs || u.mem > f.MemoryBytes {
			fail("node %s over capacity", s.Nodes[ni].ID)
		}
		for m, g := range u.gpus {
			if m != "" && g > f.GPUs[m] {
				fail("node %s: %d %s GPUs used of %d", s.Nodes[ni].ID, g, m, f.GPUs[m])
			}
		}
	}
	for name, cost := range spent {
		if pr := s.Projects[name]; pr.Budget > 0 && pr.Spent+cost > pr.Budget*(1+1e-9) {
			fail("project %s over budget", name)
		}
	}
	return bad
}
