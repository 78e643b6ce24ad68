package sched

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"lode.dev/lode/internal/core"
)

// victimSet is a set of running attempts whose removal makes room for a job
// on one candidate.
type victimSet struct {
	cand    candidate
	runs    []int32
	sumPrio int64
	// ran is how long the victims have run, in hours, all together: the
	// work at risk of being redone if they checkpointed long ago.
	ran float64
}

// cheaper orders victim sets: fewest attempts, then lowest priorities,
// then newest (least run time).
func (a *victimSet) cheaper(b *victimSet) bool {
	if len(a.runs) != len(b.runs) {
		return len(a.runs) < len(b.runs)
	}
	if a.sumPrio != b.sumPrio {
		return a.sumPrio < b.sumPrio
	}
	return a.ran < b.ran
}

// phase3Preempt looks, when the job found no room, for running attempts of
// strictly lower priority whose removal would make it fit on one of its
// candidates, and asks them to stop. The job stays pending until they
// have: their capacity is not reused in this cycle, and the free capacity
// the job will need beside theirs is held for the rest of the cycle so
// that lower work does not take it meanwhile. Attempts asked to stop in an
// earlier cycle (Running.Stopping) come first: a job they would make room
// for claims them and waits, rather than preempting more.
func (c *Cycle) phase3Preempt(j *jobCtx, prio core.Priority) bool {
	if c.stopping > 0 && c.preempt(j, prio, true) {
		return true
	}
	return prio > c.lowestPrio && c.preempt(j, prio, false)
}

// preempt looks for the victims of phase 3 among attempts already stopping
// (claiming them: the job waits for them) or among the others (asking them
// to stop).
func (c *Cycle) preempt(j *jobCtx, prio core.Priority, stopping bool) bool {
	var best *victimSet
	for _, cd := range c.sortedCandidates(j) {
		p := &c.f.pools[cd.pool]
		var list []int32
		for _, ri := range p.running {
			r := &c.s.Running[ri]
			if !c.victim[ri] && r.Stopping == stopping && (stopping || r.Priority < prio) {
				list = append(list, ri)
			}
		}
		if len(list) == 0 {
			continue
		}
		c.sortVictims(list)
		q := c.request(j, &cd)
		var vs *victimSet
		if j.ranks == 1 {
			vs = c.victimsOnNode(p, &q, list)
		} else {
			vs = c.victimsInPool(p, &q, list)
		}
		if vs == nil {
			continue
		}
		vs.cand = cd
		if best == nil || vs.cheaper(best) {
			best = vs
		}
	}
	if best == nil {
		return false
	}

	p := &c.f.pools[best.cand.pool]
	x := newExtraRoom()
	for _, ri := range best.runs {
		c.victim[ri] = true
		r := &c.s.Running[ri]
		if !stopping {
			c.plan.Preemptions = append(c.plan.Preemptions, Preemption{
				AttemptID: r.AttemptID, JobID: r.JobID, For: j.job.ID,
				Reason: fmt.Sprintf("preempted for job %s (priority %d over %d)", j.job.ID, j.sp.Priority, r.Priority),
			})
		}
		x.add(&c.f.running[ri], best.cand.model, 1)
	}
	// Hold the free part of what the job will use.
	q := c.request(j, &best.cand)
	out, _ := c.f.fitWith(p, &q, x, false, nil)
	for _, a := range out {
		k := int64(a.ranks)
		c.f.takeAmount(a.node, max(k*q.cpu-x.cpu[a.node], 0), max(k*q.mem-x.mem[a.node], 0),
			q.model, max(int32(a.ranks)*q.gpus-x.gpus[a.node], 0))
	}
	c.verdicts[best.cand.pool] = verdict{code: refPreempting, model: best.cand.model, n: len(best.runs)}
	return true
}

// sortVictims orders attempts by how willingly they are preempted: lowest
// priority, then newest, then by ID.
func (c *Cycle) sortVictims(list []int32) {
	slices.SortFunc(list, func(a, b int32) int {
		ra, rb := &c.s.Running[a], &c.s.Running[b]
		return cmp.Or(cmp.Compare(ra.Priority, rb.Priority), rb.StartedAt.Compare(ra.StartedAt),
			cmp.Compare(ra.AttemptID, rb.AttemptID))
	})
}

// victimsOnNode finds, for a single rank, the cheapest set of attempts on
// one node whose removal leaves room there: a single attempt when one
// suffices, else the fewest the greedy order needs, pruned.
func (c *Cycle) victimsOnNode(p *fpool, q *request, list []int32) *victimSet {
	byNode := map[int32][]int32{}
	var nodes []int32
	for _, ri := range list {
		for _, ni := range c.f.running[ri].nodes {
			if ni < 0 {
				continue
			}
			if l := byNode[ni]; len(l) == 0 || l[len(l)-1] != ri {
				if len(l) == 0 {
					nodes = append(nodes, ni)
				}
				byNode[ni] = append(l, ri)
			}
		}
	}
	slices.Sort(nodes)
	var best *victimSet
	for _, ni := range nodes {
		n := &c.f.nodes[ni]
		if q.end > n.resv {
			continue
		}
		var cpu, mem int64
		var gpus int32
		fits := func() bool {
			return n.freeGPUs(q.model)+gpus >= q.gpus && n.cpu+cpu >= q.cpu && n.mem+mem >= q.mem
		}
		add := func(ri int32, sign int64) {
			ra := &c.f.running[ri]
			r := ra.r.Resources
			for _, x := range ra.nodes {
				if x != ni {
					continue
				}
				cpu += sign * max(r.MilliCPUs, 0)
				mem += sign * max(r.MemoryBytes, 0)
				if q.gpus > 0 && ra.model == q.model {
					gpus += int32(sign) * int32(r.GPUs)
				}
			}
		}
		cands := byNode[ni]
		var chosen []int32
		for _, ri := range cands {
			add(ri, 1)
			ok := fits()
			add(ri, -1)
			if ok {
				chosen = []int32{ri}
				break
			}
		}
		if chosen == nil {
			for _, ri := range cands {
				add(ri, 1)
				chosen = append(chosen, ri)
				if fits() {
					break
				}
			}
			if !fits() {
				continue
			}
			for i := len(chosen) - 1; i >= 0; i-- {
				add(chosen[i], -1)
				if fits() {
					chosen = slices.Delete(chosen, i, i+1)
				} else {
					add(chosen[i], 1)
				}
			}
		}
		vs := c.newVictimSet(chosen)
		if best == nil || vs.cheaper(best) {
			best = vs
		}
	}
	return best
}

// victimsInPool finds a set of attempts in the pool whose removal leaves
// room for every rank of a gang: attempts in preemption order until the
// gang fits, then each dropped again if the gang still fits without it.
func (c *Cycle) victimsInPool(p *fpool, q *request, list []int32) *victimSet {
	x := newExtraRoom()
	var chosen []int32
	ok := false
	var scratch []alloc
	for _, ri := range list {
		x.add(&c.f.running[ri], q.model, 1)
		chosen = append(chosen, ri)
		if scratch, ok = c.f.fitWith(p, q, x, false, scratch[:0]); ok {
			break
		}
	}
	if !ok {
		return nil
	}
	for i := len(chosen) - 1; i >= 0; i-- {
		x.add(&c.f.running[chosen[i]], q.model, -1)
		if scratch, ok = c.f.fitWith(p, q, x, false, scratch[:0]); ok {
			chosen = slices.Delete(chosen, i, i+1)
		} else {
			x.add(&c.f.running[chosen[i]], q.model, 1)
		}
	}
	return c.newVictimSet(chosen)
}

func (c *Cycle) newVictimSet(runs []int32) *victimSet {
	vs := &victimSet{runs: runs}
	for _, ri := range runs {
		r := &c.s.Running[ri]
		vs.sumPrio += int64(r.Priority)
		if !r.StartedAt.IsZero() {
			vs.ran += max(c.s.Now.Sub(r.StartedAt).Hours(), 0)
		}
	}
	return vs
}

// takeAmount removes amounts from node ni's free capacity (GPUs of model).
func (f *fleet) takeAmount(ni int32, cpu, mem int64, model, gpus int32) {
	n := &f.nodes[ni]
	p := &f.pools[n.pool]
	if cpu > 0 {
		f.unindexCPU(p, ni)
		n.cpu = max(n.cpu-cpu, 0)
		f.indexCPU(p, ni)
	}
	n.mem = max(n.mem-mem, 0)
	if gpus > 0 && model >= 0 {
		if sl := n.slot(model); sl != nil {
			f.unindexGPU(p, sl)
			sl.free = max(sl.free-gpus, 0)
			f.indexGPU(p, ni, sl)
		}
	}
}

// release is capacity that comes back at a predicted time: a running
// attempt ending, or one of this cycle's placements ending.
type release struct {
	end    int64
	run    int32 // running attempt, or -1
	placed int32 // this cycle's placement, or -1
}

// phase4Reserve gives the highest blocked job (the first in the order that
// found no room and preempted nothing) a reservation: on the candidate
// where it could start soonest, as running work ends, the nodes it would
// then use are held from that time. Later jobs may still use them if they
// are predicted to end by then (backfill), so small work fills the gap
// without delaying the blocked one. Nothing is held partially: the job
// holds no capacity now, so two gangs can never deadlock each other.
func (c *Cycle) phase4Reserve(j *jobCtx, job int32) {
	bestAt := int64(math.MaxInt64)
	var bestCand candidate
	var bestRels []release
	for _, cd := range c.sortedCandidates(j) {
		q := c.request(j, &cd)
		rels := c.releases(cd.pool)
		k, ok := c.shadow(&c.f.pools[cd.pool], &q, rels)
		if !ok {
			continue
		}
		if at := max(rels[k-1].end, 0); at < bestAt {
			bestAt, bestCand, bestRels = at, cd, rels[:k]
		}
	}
	if bestAt == math.MaxInt64 {
		return
	}
	p := &c.f.pools[bestCand.pool]
	q := c.request(j, &bestCand)
	out, _ := c.f.fitWith(p, &q, c.releaseRoom(bestRels, q.model), true, nil)
	for _, a := range out {
		n := &c.f.nodes[a.node]
		n.resv = min(n.resv, bestAt)
	}
	c.resv = &reservation{job: job, pool: bestCand.pool, at: bestAt}
	for i := range c.xjobs {
		if x := &c.xjobs[i]; c.f.nodes[x.node].resv != math.MaxInt64 {
			c.pin(x)
		}
	}
	v := &c.verdicts[bestCand.pool]
	v.code, v.at = refHeld, bestAt
}

// releases lists what comes back in a pool, soonest first: running
// attempts not being preempted, and this cycle's placements.
func (c *Cycle) releases(pi int32) []release {
	var rels []release
	for _, ri := range c.f.pools[pi].running {
		if !c.victim[ri] {
			rels = append(rels, release{end: c.f.running[ri].end, run: ri, placed: -1})
		}
	}
	for i := range c.placed {
		if c.placed[i].pool == pi {
			rels = append(rels, release{end: c.placed[i].q.end, run: -1, placed: int32(i)})
		}
	}
	slices.SortStableFunc(rels, func(a, b release) int { return cmp.Compare(a.end, b.end) })
	return rels
}

func (c *Cycle) releaseRoom(rels []release, model int32) *extraRoom {
	x := newExtraRoom()
	for _, r := range rels {
		if r.run >= 0 {
			x.add(&c.f.running[r.run], model, 1)
			continue
		}
		pr := &c.placed[r.placed]
		for _, a := range c.arena[pr.from:pr.to] {
			k := int64(a.ranks)
			x.cpu[a.node] += k * pr.q.cpu
			x.mem[a.node] += k * pr.q.mem
			if pr.q.model == model && model >= 0 {
				x.gpus[a.node] += int32(a.ranks) * pr.q.gpus
			}
		}
	}
	return x
}

// shadow is the fewest releases after which the job fits (binary search:
// more releases never make it fit less).
func (c *Cycle) shadow(p *fpool, q *request, rels []release) (int, bool) {
	fits := func(k int) bool {
		_, ok := c.f.fitWith(p, q, c.releaseRoom(rels[:k], q.model), true, nil)
		return ok
	}
	if len(rels) == 0 || !fits(len(rels)) {
		return 0, false
	}
	lo, hi := 1, len(rels)
	for lo < hi {
		mid := (lo + hi) / 2
		if fits(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, true
}
