// Package sched decides where queued jobs run. It is pure: Schedule reads an
// immutable snapshot and returns a plan, with no I/O, no clock and no
// goroutines. The control loop builds the snapshot from the store and applies
// the plan, re-checking every placement in a transaction.
//
// This is the first-fit placer behind the seam: pools in a stable order, the
// first pool whose nodes can hold every rank of the gang wins. Every pool that
// could not take a job says why, so `lode explain` can tell the user.
package sched

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// Schedule places what it can of the snapshot's queued jobs: higher priority
// first, then oldest first. Capacity taken by one placement is not offered to
// the next.
func Schedule(s *Snapshot) *Plan {
	plan := &Plan{Pending: map[string][]Rejection{}}
	free := make(map[string]Capacity, len(s.Nodes))
	nodesByPool := map[string][]string{}
	for _, n := range s.Nodes {
		free[n.ID] = n.Free.clone()
		nodesByPool[n.PoolID] = append(nodesByPool[n.PoolID], n.ID)
	}
	pools := slices.Clone(s.Pools)
	slices.SortFunc(pools, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	jobs := slices.Clone(s.Queued)
	slices.SortStableFunc(jobs, func(a, b Job) int {
		return cmp.Or(
			cmp.Compare(b.Spec.Priority, a.Spec.Priority),
			a.CreatedAt.Compare(b.CreatedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	if len(pools) == 0 {
		for _, j := range jobs {
			plan.Pending[j.ID] = []Rejection{{Pool: "(none)", Reason: "no pools are registered; start `lode agent` or `lode server` with its local pool"}}
		}
		return plan
	}
	for _, j := range jobs {
		var rejections []Rejection
		placed := false
		for _, p := range pools {
			if reason := poolRefuses(p, j.Spec); reason != "" {
				rejections = append(rejections, Rejection{Pool: p.Name, Reason: reason})
				continue
			}
			nodeIDs, reason := fitGang(j.Spec, nodesByPool[p.ID], free)
			if reason != "" {
				rejections = append(rejections, Rejection{Pool: p.Name, Reason: reason})
				continue
			}
			plan.Placements = append(plan.Placements, Placement{JobID: j.ID, PoolID: p.ID, NodeIDs: nodeIDs})
			placed = true
			break
		}
		if !placed {
			plan.Pending[j.ID] = rejections
		}
	}
	return plan
}

// poolRefuses returns why a pool may not take a job at all, or "".
func poolRefuses(p Pool, j *spec.Job) string {
	switch {
	case p.State != PoolActive:
		return "pool is " + p.State
	case len(j.Placement.Pools) > 0 && !slices.Contains(j.Placement.Pools, p.Name):
		return fmt.Sprintf("not among the pools the job allows (%v)", j.Placement.Pools)
	case len(j.Placement.Regions) > 0 && !slices.Contains(j.Placement.Regions, p.Region):
		return fmt.Sprintf("region %q is not among %v", p.Region, j.Placement.Regions)
	case p.Tier < j.Placement.MinTrust:
		return fmt.Sprintf("trust tier %s is below the job's min_trust %s", p.Tier, j.Placement.MinTrust)
	}
	return ""
}

// fitGang finds a node for every rank of the job among the given nodes,
// taking the capacity from free only when all ranks fit (a gang is placed
// whole or not at all).
func fitGang(j *spec.Job, nodeIDs []string, free map[string]Capacity) ([]string, string) {
	if len(nodeIDs) == 0 {
		return nil, "no ready nodes"
	}
	trial := make(map[string]Capacity, len(nodeIDs))
	for _, id := range nodeIDs {
		trial[id] = free[id].clone()
	}
	ranks := max(j.Nodes, 1)
	var chosen []string
	var lastReason string
	for range ranks {
		found := false
		for _, id := range nodeIDs {
			c := trial[id]
			if reason := take(&c, j.Resources); reason != "" {
				lastReason = reason
				continue
			}
			trial[id] = c
			chosen = append(chosen, id)
			found = true
			break
		}
		if !found {
			if ranks > 1 {
				return nil, fmt.Sprintf("room for %d of %d ranks (%s)", len(chosen), ranks, lastReason)
			}
			return nil, lastReason
		}
	}
	for id, c := range trial {
		free[id] = c
	}
	return chosen, ""
}

// take subtracts one rank's resources from c, or says why they do not fit.
func take(c *Capacity, r core.Resources) string {
	if c.MilliCPUs < r.MilliCPUs {
		return fmt.Sprintf("no node has %s CPUs free", milli(r.MilliCPUs))
	}
	if c.MemoryBytes < r.MemoryBytes {
		return fmt.Sprintf("no node has %s of memory free", core.FormatBytes(r.MemoryBytes))
	}
	gpus := maps.Clone(c.GPUs)
	if !TakeGPUs(gpus, r) {
		if len(r.GPUModels) > 0 {
			return fmt.Sprintf("no node has %d free GPUs of %v", r.GPUs, r.GPUModels)
		}
		return fmt.Sprintf("no node has %d free GPUs", r.GPUs)
	}
	c.MilliCPUs -= r.MilliCPUs
	c.MemoryBytes -= r.MemoryBytes
	c.GPUs = gpus
	return ""
}

func milli(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprint(m / 1000)
	}
	return fmt.Sprintf("%.2f", float64(m)/1000)
}

// TakeGPUs takes r.GPUs GPUs of the models r accepts from free, models in
// name order, and reports whether there were enough. On false, free may be
// partly taken: callers pass a copy.
func TakeGPUs(free map[string]int, r core.Resources) bool {
	need := r.GPUs
	for _, model := range slices.Sorted(maps.Keys(free)) {
		if need == 0 {
			break
		}
		if len(r.GPUModels) > 0 && !slices.Contains(r.GPUModels, model) {
			continue
		}
		n := min(need, free[model])
		free[model] -= n
		need -= n
	}
	return need == 0
}
