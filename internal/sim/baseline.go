package sim

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// cheapestFirst is the cheapest-first baseline's placer (PolicyCheapestFirst):
// what a naive market does. It reads the same snapshot as the scheduler but
// ignores GPU speed, pool reliability and deadlines: each job takes the
// pool and GPU model with the lowest price per hour that has room now. It
// keeps the hard constraints, checked with the simulator's own rules.
func cheapestFirst(s *sched.Snapshot) *sched.Plan {
	plan := &sched.Plan{Pending: map[string][]sched.Rejection{}}
	thr := s.Throughput
	if thr == nil {
		thr = sched.DefaultThroughput
	}
	free := make(map[string]sched.Capacity, len(s.Nodes))
	byPool := map[string][]string{}
	for _, n := range s.Nodes {
		free[n.ID] = n.Free
		byPool[n.PoolID] = append(byPool[n.PoolID], n.ID)
	}
	spent := map[string]float64{}
	for name, p := range s.Projects {
		spent[name] = p.Spent
	}
	jobs := slices.Clone(s.Queued)
	slices.SortStableFunc(jobs, func(a, b sched.Job) int {
		return cmp.Or(cmp.Compare(b.Spec.Priority, a.Spec.Priority), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	type option struct {
		pool  sched.Pool
		model string
		price float64 // all ranks, per hour
	}
	for _, j := range jobs {
		sp := j.Spec
		ranks := max(sp.Nodes, 1)
		var options []option
		var why []sched.Rejection
		for _, p := range s.Pools {
			reason := ""
			switch {
			case p.State != sched.PoolActive:
				reason = "pool is " + p.State
			default:
				reason = cmp.Or(policyRefuses(s.Policy, sp.Classification, p.Tier, p.Region), placementRefuses(p, sp))
			}
			if reason != "" {
				why = append(why, sched.Rejection{Pool: p.Name, Reason: reason})
				continue
			}
			models := []string{""}
			if sp.Resources.GPUs > 0 {
				models = nil
				for _, m := range slices.Sorted(maps.Keys(p.Prices.GPUHour)) {
					if len(sp.Resources.GPUModels) == 0 || slices.Contains(sp.Resources.GPUModels, m) {
						models = append(models, m)
					}
				}
			}
			for _, m := range models {
				var taken map[string]int
				if m != "" {
					taken = map[string]int{m: sp.Resources.GPUs}
				}
				price := float64(ranks) * rankPrice(p.Prices, sp.Resources, taken)
				if maxPrice := sp.Placement.MaxPricePerHour; maxPrice > 0 && price > maxPrice {
					continue
				}
				options = append(options, option{p, m, price})
			}
		}
		slices.SortStableFunc(options, func(a, b option) int {
			return cmp.Or(cmp.Compare(a.price, b.price), cmp.Compare(a.pool.Name, b.pool.Name), cmp.Compare(a.model, b.model))
		})
		placed := false
		for _, o := range options {
			nodes, trial, reason := fitGang(sp, o.pool, o.model, byPool[o.pool.ID], free)
			if reason != "" {
				why = append(why, sched.Rejection{Pool: o.pool.Name, Reason: reason})
				continue
			}
			var taken map[string]int
			if o.model != "" {
				taken = map[string]int{o.model: 1}
			}
			hours := time.Duration(sp.Estimate).Hours() / speed(thr, taken)
			cost := o.price * hours
			if pr, ok := s.Projects[j.Project]; ok && pr.Budget > 0 && spent[j.Project]+cost > pr.Budget {
				why = append(why, sched.Rejection{Pool: o.pool.Name, Reason: fmt.Sprintf("$%.2f more would take project %s over its budget", cost, j.Project)})
				continue
			}
			maps.Copy(free, trial)
			spent[j.Project] += cost
			plan.Placements = append(plan.Placements, sched.Placement{
				JobID: j.ID, PoolID: o.pool.ID, NodeIDs: nodes, GPUModel: o.model,
				PricePerHour: o.price, EstHours: hours, EstCost: cost,
			})
			placed = true
			break
		}
		if !placed {
			if len(why) == 0 {
				why = []sched.Rejection{{Pool: "(none)", Reason: "no pool offers what the job asks for"}}
			}
			plan.Pending[j.ID] = why
		}
	}
	return plan
}

// fitGang finds a node for every rank among nodeIDs, first fit, with GPUs
// of model. When the pool cannot link a gang's nodes, all ranks must share
// one node. It returns the nodes and their capacity after the take.
func fitGang(sp *spec.Job, p sched.Pool, model string, nodeIDs []string, free map[string]sched.Capacity) ([]string, map[string]sched.Capacity, string) {
	ranks := max(sp.Nodes, 1)
	if len(nodeIDs) == 0 {
		return nil, nil, "no ready nodes"
	}
	try := func(candidates []string) ([]string, map[string]sched.Capacity) {
		trial := map[string]sched.Capacity{}
		var chosen []string
		for range ranks {
			found := false
			for _, id := range candidates {
				c, ok := trial[id]
				if !ok {
					c = free[id]
				}
				if _, why := takeRank(&c, sp.Resources, model); why == "" {
					trial[id] = c
					chosen = append(chosen, id)
					found = true
					break
				}
			}
			if !found {
				return nil, nil
			}
		}
		return chosen, trial
	}
	if ranks == 1 || interconnectRefuses(p, sp, 2) == "" {
		if chosen, trial := try(nodeIDs); chosen != nil {
			return chosen, trial, ""
		}
		return nil, nil, fmt.Sprintf("no room for %d rank(s) with %s GPUs", ranks, cmp.Or(model, "no"))
	}
	for _, id := range nodeIDs {
		if chosen, trial := try([]string{id}); chosen != nil {
			return chosen, trial, ""
		}
	}
	return nil, nil, fmt.Sprintf("no single node holds all %d ranks, and %s", ranks, interconnectRefuses(p, sp, 2))
}
