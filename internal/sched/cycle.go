package sched

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// Cycle is one scheduling cycle over one snapshot, decided a job at a time:
// NewCycle runs phase 1 (the order), each Step runs phases 2 to 4 for the
// next job, and Plan returns the outcome. Schedule is the whole loop; the
// stepwise form lets a simulator or a benchmark look between decisions. A
// Cycle reads its snapshot and never writes it; the snapshot must not
// change until the cycle is done.
//
// Inside a cycle, times are nanoseconds from Snapshot.Now as int64 (taken
// with time.Time.Sub, which saturates, so no time overflows).
type Cycle struct {
	s          *Snapshot
	f          *fleet
	policy     Policy
	throughput []float64 // by model id
	plan       Plan
	// reasons shares the rejections of pending jobs alike (pend).
	reasons map[uint64]pendMemo

	// Phase 1: queued jobs by priority, then project, then age; a level is
	// the runs of one priority, a run one project's jobs in a level. Within
	// a level, heap orders the runs by their project's weighted dominant
	// share.
	order  []qentry
	runs   []run
	levels []level
	lvl    int
	heap   []int32
	projs  []projState

	// Phases 3 and 4.
	victim     []bool        // by running attempt: preempted (or claimed, if stopping) this cycle
	lowestPrio core.Priority // of the attempts not stopping
	stopping   int           // attempts stopping
	resv       *reservation
	placed     []placedRec
	arena      []alloc

	// Exchanges among this priority level's placements (exchange.go).
	xclasses   map[xkey]*xclass
	fleetTypes int
	xjobs      []xjob
	xlive      []int32 // by xjob: its stamp while movable, -1 once pinned
	xcands     []xcand
	xheap      distHeap
	xroom      []alloc
	xbelow     []xcand
	xabove     []xcand
	xpath      []pathStep
	xbest      []pathStep
	xstamp     uint32

	// Scratch reused across decisions.
	idBlock  []string
	jc       jobCtx
	verdicts []verdict
	cands    []candidate
	allocs   []alloc
}

type qentry struct {
	idx     int32 // in Snapshot.Queued
	proj    int32
	prio    core.Priority
	created int64
}

type run struct{ proj, next, end int32 } // next..end in order

type level struct{ from, to int32 } // runs

// projState is a project's budget and fair-share usage during the cycle.
type projState struct {
	name          string
	weight        float64
	budget, spent float64 // spent grows with this cycle's placements
	cpu, mem, gpu float64 // held by running attempts and this cycle's placements
}

// candidate is a pool and GPU model on which a job passed every check.
type candidate struct {
	pool, model int32
	est         Estimate
	tried       bool
}

// placedRec is a placement of this cycle, kept to time reservations.
type placedRec struct {
	pool     int32
	q        request
	from, to int32 // in arena
}

// reservation holds nodes for the highest blocked job (phase 4).
type reservation struct {
	job  int32 // in Snapshot.Queued
	pool int32
	at   int64
}

// Schedule runs one cycle over the snapshot and returns its plan.
func Schedule(s *Snapshot) *Plan {
	c := NewCycle(s)
	for c.Step() {
	}
	return c.Plan()
}

// NewCycle starts a cycle: it indexes the snapshot's capacity and orders
// its queued jobs (phase 1).
func NewCycle(s *Snapshot) *Cycle {
	c := &Cycle{s: s, policy: s.Policy, lowestPrio: math.MaxInt}
	if len(c.policy.Rules) == 0 {
		c.policy = DefaultPolicy()
	}
	c.f = newFleet(s)
	c.throughput = make([]float64, len(c.f.models))
	for m, name := range c.f.models {
		c.throughput[m] = Throughput(s.Throughput, name)
	}
	c.plan.Pending = map[string][]Rejection{}
	c.plan.Placements = make([]Placement, 0, min(len(s.Queued), 1<<20))
	c.xclasses = map[xkey]*xclass{}
	for i := range c.f.pools {
		c.fleetTypes += max(len(c.f.pools[i].mods), 1)
	}
	c.reasons = map[uint64]pendMemo{}
	c.victim = make([]bool, len(s.Running))
	c.verdicts = make([]verdict, len(c.f.pools))
	c.jc.accept = make([]bool, len(c.f.models))
	for i := range s.Running {
		if s.Running[i].Stopping {
			c.stopping++
		} else {
			c.lowestPrio = min(c.lowestPrio, s.Running[i].Priority)
		}
	}
	c.phase1Order()
	return c
}

// Plan returns the cycle's plan; call it when Step has returned false.
func (c *Cycle) Plan() *Plan {
	if len(c.plan.Placements) == 0 {
		c.plan.Placements = nil
	}
	return &c.plan
}

// phase1Order sorts the queue and sets up fair sharing: usage starts as
// what each project's running attempts hold.
func (c *Cycle) phase1Order() {
	s := c.s
	names := map[string]struct{}{}
	for i := range s.Queued {
		names[s.Queued[i].Project] = struct{}{}
	}
	for i := range s.Running {
		names[s.Running[i].Project] = struct{}{}
	}
	for name := range s.Projects {
		names[name] = struct{}{}
	}
	sorted := slices.Sorted(maps.Keys(names))
	idx := make(map[string]int32, len(sorted))
	c.projs = make([]projState, len(sorted))
	for i, name := range sorted {
		idx[name] = int32(i)
		p := s.Projects[name]
		c.projs[i] = projState{name: name, weight: p.Weight, budget: p.Budget, spent: p.Spent}
		if !(c.projs[i].weight > 0) {
			c.projs[i].weight = 1
		}
	}
	for i := range s.Running {
		r := &s.Running[i]
		p := &c.projs[idx[r.Project]]
		k := float64(len(r.NodeIDs))
		p.cpu += k * float64(max(r.Resources.MilliCPUs, 0))
		p.mem += k * float64(max(r.Resources.MemoryBytes, 0))
		p.gpu += k * float64(max(r.Resources.GPUs, 0))
	}

	c.order = make([]qentry, 0, len(s.Queued))
	for i := range s.Queued {
		j := &s.Queued[i]
		if j.Spec == nil {
			c.plan.Pending[j.ID] = []Rejection{{Pool: "(none)", Reason: "the job has no spec"}}
			continue
		}
		c.order = append(c.order, qentry{idx: int32(i), proj: idx[j.Project], prio: j.Spec.Priority, created: int64(j.CreatedAt.Sub(s.Now))})
	}
	slices.SortFunc(c.order, func(a, b qentry) int {
		if a.prio != b.prio {
			return cmp.Compare(b.prio, a.prio)
		}
		if a.proj != b.proj {
			return cmp.Compare(a.proj, b.proj)
		}
		if a.created != b.created {
			return cmp.Compare(a.created, b.created)
		}
		return cmp.Compare(s.Queued[a.idx].ID, s.Queued[b.idx].ID)
	})
	for i := 0; i < len(c.order); {
		lv := level{from: int32(len(c.runs))}
		prio := c.order[i].prio
		for i < len(c.order) && c.order[i].prio == prio {
			r := run{proj: c.order[i].proj, next: int32(i)}
			for i < len(c.order) && c.order[i].prio == prio && c.order[i].proj == r.proj {
				i++
			}
			r.end = int32(i)
			c.runs = append(c.runs, r)
		}
		lv.to = int32(len(c.runs))
		c.levels = append(c.levels, lv)
	}
}

// share is a project's dominant share of the fleet over its weight.
func (c *Cycle) share(p *projState) float64 {
	d := 0.0
	if c.f.capCPU > 0 {
		d = p.cpu / c.f.capCPU
	}
	if c.f.capMem > 0 {
		d = max(d, p.mem/c.f.capMem)
	}
	if c.f.capGPU > 0 {
		d = max(d, p.gpu/c.f.capGPU)
	}
	return d / p.weight
}

// before orders two runs of a level: the smaller weighted dominant share
// first, then the older head job.
func (c *Cycle) before(a, b int32) bool {
	ra, rb := &c.runs[a], &c.runs[b]
	sa, sb := c.share(&c.projs[ra.proj]), c.share(&c.projs[rb.proj])
	if sa != sb {
		return sa < sb
	}
	ha, hb := &c.order[ra.next], &c.order[rb.next]
	if ha.created != hb.created {
		return ha.created < hb.created
	}
	return ra.proj < rb.proj
}

func (c *Cycle) siftDown(i int) {
	h := c.heap
	for {
		l, small := 2*i+1, i
		if l < len(h) && c.before(h[l], h[small]) {
			small = l
		}
		if r := l + 1; r < len(h) && c.before(h[r], h[small]) {
			small = r
		}
		if small == i {
			return
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}

// Step decides the next queued job and reports whether there was one.
func (c *Cycle) Step() bool {
	for len(c.heap) == 0 {
		if c.lvl == len(c.levels) {
			return false
		}
		lv := c.levels[c.lvl]
		c.lvl++
		// Exchanges stay within a priority.
		clear(c.xclasses)
		c.xjobs, c.xcands, c.xlive = c.xjobs[:0], c.xcands[:0], c.xlive[:0]
		for r := lv.from; r < lv.to; r++ {
			c.heap = append(c.heap, r)
		}
		for i := len(c.heap)/2 - 1; i >= 0; i-- {
			c.siftDown(i)
		}
	}
	r := &c.runs[c.heap[0]]
	e := c.order[r.next]
	r.next++
	c.decide(e)
	if r.next == r.end {
		last := len(c.heap) - 1
		c.heap[0] = c.heap[last]
		c.heap = c.heap[:last]
	}
	c.siftDown(0)
	return true
}

// decide runs phases 2 to 4 for one job.
func (c *Cycle) decide(e qentry) {
	j := c.prepare(&c.s.Queued[e.idx], &c.projs[e.proj])
	c.cands = c.cands[:0]
	for pi := range c.f.pools {
		c.verdicts[pi] = c.evaluate(j, int32(pi))
	}
	if len(c.cands) == 0 {
		c.pend(j)
		return
	}
	if c.phase2Place(j) {
		return
	}
	if !c.phase3Preempt(j, e.prio) && c.resv == nil {
		c.phase4Reserve(j, e.idx)
	}
	c.pend(j)
}

// prepare works out what the checks need of a job.
func (c *Cycle) prepare(qj *Job, proj *projState) *jobCtx {
	sp := qj.Spec
	j := &c.jc
	j.job, j.sp, j.proj = qj, sp, proj
	j.ranks = max(sp.Nodes, 1)
	j.cpu = max(sp.Resources.MilliCPUs, 0)
	j.mem = max(sp.Resources.MemoryBytes, 0)
	j.gpus = int32(min(max(sp.Resources.GPUs, 0), math.MaxInt32))
	clear(j.accept)
	if j.gpus > 0 {
		if len(sp.Resources.GPUModels) == 0 {
			for m := range j.accept {
				j.accept[m] = true
			}
		}
		for _, name := range sp.Resources.GPUModels {
			m, ok := c.f.modelID[name]
			if !ok {
				m, ok = c.f.modelID[core.NormalizeGPUModel(name)]
			}
			if ok {
				j.accept[m] = true
			}
		}
	}
	j.base = baseHours(sp)
	j.ckpt = checkpointHours(sp)
	j.objTime = sp.Objective == spec.ObjectiveTime
	j.deadline = math.MaxInt64
	if sp.Deadline > 0 {
		j.deadline = int64(qj.CreatedAt.Add(time.Duration(sp.Deadline)).Sub(c.s.Now))
	}
	j.maxPrice = sp.Placement.MaxPricePerHour
	j.needGbps = spec.DefaultGangGbps
	if sp.Interconnect != nil && sp.Interconnect.MinGbps > 0 {
		j.needGbps = sp.Interconnect.MinGbps
	}
	return j
}

// evaluate runs the pool filters and the model checks of one pool, adding a
// candidate for every model that passes. When none does it returns the
// pool's reason: the first pool filter that refused, or the model that got
// furthest through the checks.
func (c *Cycle) evaluate(j *jobCtx, pi int32) verdict {
	p := &c.f.pools[pi]
	for _, filter := range poolFilters {
		if r := filter(c, j, p); r != fine {
			return verdict{code: r, model: -1}
		}
	}
	if j.gpus == 0 {
		est, v := c.modelCheck(j, p, -1)
		if v.code == fine {
			c.cands = append(c.cands, candidate{pool: pi, model: -1, est: est})
		}
		return v
	}
	best := verdict{code: refNoGPUs, model: -1}
	ok := false
	for mi := range p.mods {
		m := p.mods[mi].model
		if !j.accept[m] {
			continue
		}
		est, v := c.modelCheck(j, p, m)
		if v.code == fine {
			c.cands = append(c.cands, candidate{pool: pi, model: m, est: est})
			ok = true
			continue
		}
		if best.code == refNoGPUs || v.code > best.code || v.code == best.code && v.x < best.x {
			best = v
		}
	}
	if ok {
		return verdict{model: -1}
	}
	return best
}

// better orders candidates by the job's objective: cost, then time, or time,
// then cost; then pool name and model name.
func better(a, b *candidate, objTime bool) bool {
	ac, bc, ah, bh := a.est.EstCost, b.est.EstCost, a.est.Hours(), b.est.Hours()
	if objTime {
		ac, bc, ah, bh = ah, bh, ac, bc
	}
	if ac != bc {
		return ac < bc
	}
	if ah != bh {
		return ah < bh
	}
	if a.pool != b.pool {
		return a.pool < b.pool
	}
	return a.model < b.model
}

// nextCandidate is the best candidate not tried yet, or -1.
func (c *Cycle) nextCandidate(j *jobCtx) int {
	best := -1
	for i := range c.cands {
		if !c.cands[i].tried && (best < 0 || better(&c.cands[i], &c.cands[best], j.objTime)) {
			best = i
		}
	}
	return best
}

func (c *Cycle) request(j *jobCtx, cd *candidate) request {
	return request{cpu: j.cpu, mem: j.mem, gpus: j.gpus, model: cd.model, ranks: j.ranks,
		end: int64(hoursToDuration(cd.est.Hours()))}
}

// phase2Place puts the job on its best candidate with room, all ranks in
// one pool or none. A job that could not have its cheapest candidate (or
// any) first tries an exchange with the level's earlier placements.
func (c *Cycle) phase2Place(j *jobCtx) bool {
	xable := exchangeable(j)
	cheapest := -1
	for {
		ci := c.nextCandidate(j)
		if ci < 0 {
			return xable && c.exchange(j, math.Inf(1), -1)
		}
		if cheapest < 0 {
			cheapest = ci
		}
		cd := &c.cands[ci]
		cd.tried = true
		q := c.request(j, cd)
		out, found, stage := c.f.fit(&c.f.pools[cd.pool], &q, c.allocs[:0])
		c.allocs = out[:0]
		if found == j.ranks {
			if xable && ci != cheapest {
				a := out[0]
				if c.exchange(j, cd.est.EstCost, ci) {
					return true
				}
				out = append(c.allocs[:0], a)
			}
			for _, a := range out {
				c.f.take(a.node, a.ranks, &q)
			}
			c.record(j, cd, &q, out)
			return true
		}
		v := &c.verdicts[cd.pool]
		if v.code == fine || found > v.found || found == v.found && stage > v.stage {
			*v = verdict{code: refNoRoom, model: cd.model, found: found, stage: stage}
		}
	}
}

// commitAt places a single-rank job on a node whose room it inherits from
// a job that moved away.
func (c *Cycle) commitAt(j *jobCtx, cd *candidate, node int32) {
	q := c.request(j, cd)
	c.allocs = append(c.allocs[:0], alloc{node: node, ranks: 1})
	c.record(j, cd, &q, c.allocs)
}

// record adds a placement whose capacity is already taken.
func (c *Cycle) record(j *jobCtx, cd *candidate, q *request, out []alloc) {
	p := &c.f.pools[cd.pool]
	ids := c.nodeIDs(j.ranks)
	from := int32(len(c.arena))
	for _, a := range out {
		for range a.ranks {
			ids = append(ids, c.f.nodes[a.node].id)
		}
	}
	c.arena = append(c.arena, out...)
	c.placed = append(c.placed, placedRec{pool: cd.pool, q: *q, from: from, to: int32(len(c.arena))})
	model := ""
	if cd.model >= 0 {
		model = c.f.models[cd.model]
	}
	c.plan.Placements = append(c.plan.Placements, Placement{
		JobID: j.job.ID, PoolID: p.ID, NodeIDs: ids, GPUModel: model,
		PricePerHour: cd.est.PricePerHour, EstHours: cd.est.EstHours, EstCost: cd.est.EstCost,
	})
	k := float64(j.ranks)
	j.proj.cpu += k * float64(j.cpu)
	j.proj.mem += k * float64(j.mem)
	j.proj.gpu += k * float64(j.gpus)
	j.proj.spent += cd.est.EstCost
	if exchangeable(j) {
		c.register(j, cd, int32(len(c.plan.Placements)-1), int32(len(c.placed)-1), out[0].node)
	}
}

// nodeIDs returns an empty slice with room for n node IDs, carved from a
// shared block so that a large cycle does not allocate once per placement.
// Its capacity is exactly n: appending to it never reaches a neighbour.
func (c *Cycle) nodeIDs(n int) []string {
	if n > 64 {
		return make([]string, 0, n)
	}
	if len(c.idBlock)+n > cap(c.idBlock) {
		c.idBlock = make([]string, 0, 4096)
	}
	start := len(c.idBlock)
	c.idBlock = c.idBlock[:start+n]
	return c.idBlock[start : start : start+n]
}

// pend records why every pool left the job waiting.
func (c *Cycle) pend(j *jobCtx) {
	if len(c.f.pools) == 0 {
		c.plan.Pending[j.job.ID] = []Rejection{{Pool: "(none)", Reason: "no pools are registered; start `lode agent` or `lode server` with its local pool"}}
		return
	}
	// Jobs alike, turned away alike, share their sentences: many pending
	// jobs of a large queue do, and writing them is most of the cost of a
	// pending job.
	sig := jobSig{cpu: j.cpu, mem: j.mem, gpus: j.gpus, ranks: j.ranks, need: j.needGbps, maxPrice: j.maxPrice,
		class: j.sp.Classification, minTrust: j.sp.Placement.MinTrust, proj: j.proj, spent: j.proj.spent,
		lists: hashLists(j.sp.Resources.GPUModels, j.sp.Placement.Regions, j.sp.Placement.Pools)}
	key := sig.hash(c.verdicts)
	if m, ok := c.reasons[key]; ok && m.sig == sig && slices.Equal(m.verdicts, c.verdicts) && sameLists(m.job, j.sp) {
		c.plan.Pending[j.job.ID] = slices.Clone(m.rejections)
		return
	}
	rs := make([]Rejection, len(c.f.pools))
	for pi := range c.f.pools {
		p := &c.f.pools[pi]
		rs[pi] = Rejection{Pool: p.Name, Reason: c.explain(j, p, c.verdicts[pi])}
	}
	c.reasons[key] = pendMemo{sig: sig, job: j.sp, verdicts: slices.Clone(c.verdicts), rejections: rs}
	c.plan.Pending[j.job.ID] = slices.Clone(rs)
}

// jobSig is what a job's rejections depend on beside its verdicts.
type jobSig struct {
	cpu, mem int64
	gpus     int32
	ranks    int
	need     float64
	maxPrice float64
	class    core.Classification
	minTrust core.Tier
	proj     *projState
	spent    float64 // budget sentences quote it
	lists    uint64
}

type pendMemo struct {
	sig        jobSig
	job        *spec.Job // its lists, hashed in sig, compared in full
	verdicts   []verdict
	rejections []Rejection
}

// sameLists says whether two specs name the same GPU models, regions and
// pools.
func sameLists(a, b *spec.Job) bool {
	return slices.Equal(a.Resources.GPUModels, b.Resources.GPUModels) &&
		slices.Equal(a.Placement.Regions, b.Placement.Regions) && slices.Equal(a.Placement.Pools, b.Placement.Pools)
}

func (s *jobSig) hash(vs []verdict) uint64 {
	h := s.lists
	mix := func(x uint64) { h = (h ^ x) * 0x100000001b3; h ^= h >> 29 }
	mix(uint64(s.cpu))
	mix(uint64(s.mem))
	mix(uint64(s.gpus)<<32 | uint64(s.ranks))
	mix(math.Float64bits(s.need))
	mix(math.Float64bits(s.maxPrice))
	mix(uint64(s.class)<<32 | uint64(s.minTrust))
	mix(math.Float64bits(s.spent))
	for i := range vs {
		v := &vs[i]
		mix(uint64(v.code)<<48 | uint64(uint32(v.model))<<16 | uint64(uint8(v.stage)))
		mix(math.Float64bits(v.x))
		mix(uint64(v.found)<<32 | uint64(v.n))
		mix(uint64(v.at))
	}
	return h
}

// hashLists hashes string lists (FNV-1a), each list and item delimited.
func hashLists(lists ...[]string) uint64 {
	h := uint64(14695981039346656037)
	for _, l := range lists {
		for _, s := range l {
			for i := 0; i < len(s); i++ {
				h = (h ^ uint64(s[i])) * 1099511628211
			}
			h = (h ^ 0xff) * 1099511628211
		}
		h = (h ^ 0xfe) * 1099511628211
	}
	return h
}

// sortedCandidates returns the job's candidates in the order of its
// objective.
func (c *Cycle) sortedCandidates(j *jobCtx) []candidate {
	cs := slices.Clone(c.cands)
	slices.SortFunc(cs, func(a, b candidate) int {
		switch {
		case better(&a, &b, j.objTime):
			return -1
		case better(&b, &a, j.objTime):
			return 1
		}
		return 0
	})
	return cs
}
