package sched

import (
	"math"
	"slices"
)

// Exchange lets a job take a slot an earlier job of the same priority holds
// when that earlier job can move somewhere else and the total expected cost
// falls, or the new job finds room at all. Without it, the first job to
// arrive takes the cheapest slot even when a later job needs it more (a
// long run that would save more there, or a confidential one that may run
// nowhere else), and a greedy cycle ends far from the cheapest assignment.
//
// It is the shortest-augmenting-path step of min-cost flow (as in Quincy
// and Firmament), over a small graph: nodes are slot types (a pool and a
// GPU model) and an edge s→t costs the cheapest move of one placed job
// from s to t. A path from the new job through moved jobs to a type with
// room changes the total cost by its length. Only jobs that are
// interchangeable take part: single-rank placements of this cycle with the
// objective cost, the same priority and the same resources per rank, so a
// job moving into another's place fits there exactly. Jobs of a project
// with a budget only move where they cost no more, jobs on nodes held for a
// blocked job do not move, and every move keeps the job's own constraints
// (only its feasible candidates are edges).

// maxMovesDown and maxMovesUp bound the moves each placed job offers: to
// its cheapest candidates below its cost, and above.
const (
	maxMovesDown = 4
	maxMovesUp   = 8
)

// maxEagerTypes is the most slot types (pools times their GPU models) a
// fleet may have for its exchange classes to be eager.
const maxEagerTypes = 32

// An eager class's search looks at relaxPasses times as many moves as
// the graph has edges (a label may improve more than once), at least
// minRelax and at most maxRelax, and placeFactor times more to place a job
// that found no room at all; a lazy class's search for that looks at up to
// lazyPlaceRelax.
const (
	relaxPasses    = 4
	minRelax       = 256
	maxRelax       = 4096
	placeFactor    = 4
	lazyPlaceRelax = 1024
)

// cheapest keeps the k cheapest candidates offered, sorted.
type cheapest struct {
	list []xcand
	k    int
}

func keepCheapest(buf []xcand, k int) cheapest { return cheapest{list: buf, k: k} }

func (c cheapest) add(x xcand) cheapest {
	if len(c.list) == c.k && x.cost >= c.list[len(c.list)-1].cost {
		return c
	}
	if len(c.list) < c.k {
		c.list = append(c.list, x)
	}
	i := len(c.list) - 1
	for ; i > 0 && c.list[i-1].cost > x.cost; i-- {
		c.list[i] = c.list[i-1]
	}
	c.list[i] = x
	return c
}

// xkey groups interchangeable jobs.
type xkey struct {
	cpu, mem int64
	gpus     int32
}

// xtype is a slot type: a pool and a GPU model (-1 without GPUs).
type xtype struct{ pool, model int32 }

type xclass struct {
	// eidx[s*ecap+t] is 1 + the index of the edge s→t in out[s], 0 when
	// there is none.
	eidx  []int32
	ecap  int
	types []xtype
	idx   []int32 // type by pool*(models+1) + model+1; -1 when none
	out   [][]xedge
	count []int32 // movable jobs by type
	// jobsIn lists the jobs in each type (some since moved or pinned).
	jobsIn [][]int32
	// eager classes hold every move as an edge and are searched whole;
	// lazy ones (in a fleet of many pools and models) build an edge when a
	// search first asks for it.
	eager bool
	edges int
	// Search scratch, by type; seen holds the search that set dist.
	dist     []float64
	pred     []xpred
	seen     []uint32
	room     []bool
	roomSeen []uint32
}

// xedge is the moves from one type to another, with the cheapest one
// cached for the search that looked last.
type xedge struct {
	to    int32
	h     edgeHeap
	stamp uint32
	best  edgeEntry
	ok    bool
}

// xpred is how a search reached a type: from type from, moving job (from
// -1: the new job enters directly, job is its candidate).
type xpred struct{ from, job int32 }

// xjob is a placed job that may move.
type xjob struct {
	class   *xclass
	plan    int32 // in Plan.Placements
	placed  int32 // in Cycle.placed
	typ     int32
	node    int32
	cost    float64
	proj    *projState
	budget  bool // its project has a budget: it only moves where it costs no more
	movable bool
	stamp   int32 // bumped on every move; older edge entries are stale
	index   int32 // in Cycle.xjobs
	base    float64
	ckpt    float64
	cands   []xcand
}

type xcand struct {
	typ  int32
	cost float64
}

type edgeEntry struct {
	delta float64
	job   int32
	stamp int32
}

// edgeHeap is a min-heap of moves by cost change.
type edgeHeap []edgeEntry

func (h *edgeHeap) push(e edgeEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].delta <= s[i].delta {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *edgeHeap) pop() {
	s := *h
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(s) && s[l].delta < s[small].delta {
			small = l
		}
		if r := l + 1; r < len(s) && s[r].delta < s[small].delta {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	*h = s
}

// top is the cheapest live move of an edge, dropping stale ones; a search
// computes it once.
func (c *Cycle) top(e *xedge) (edgeEntry, bool) {
	if e.stamp == c.xstamp {
		return e.best, e.ok
	}
	e.stamp, e.ok = c.xstamp, false
	for len(e.h) > 0 {
		top := e.h[0]
		if c.xlive[top.job] == top.stamp {
			e.best, e.ok = top, true
			break
		}
		e.h.pop()
	}
	return e.best, e.ok
}

// exchangeable says whether a job takes part in exchanges.
func exchangeable(j *jobCtx) bool { return j.ranks == 1 && !j.objTime }

func (c *Cycle) class(j *jobCtx) *xclass {
	k := xkey{cpu: j.cpu, mem: j.mem, gpus: j.gpus}
	cl := c.xclasses[k]
	if cl == nil {
		cl = &xclass{idx: make([]int32, len(c.f.pools)*(len(c.f.models)+1)), eager: c.fleetTypes <= maxEagerTypes}
		for i := range cl.idx {
			cl.idx[i] = -1
		}
		c.xclasses[k] = cl
	}
	return cl
}

func (c *Cycle) typeOf(cl *xclass, pool, model int32) int32 {
	k := int(pool)*(len(c.f.models)+1) + int(model) + 1
	if i := cl.idx[k]; i >= 0 {
		return i
	}
	i := int32(len(cl.types))
	cl.idx[k] = i
	cl.types = append(cl.types, xtype{pool, model})
	cl.out = append(cl.out, nil)
	cl.count = append(cl.count, 0)
	cl.jobsIn = append(cl.jobsIn, nil)
	cl.dist = append(cl.dist, 0)
	cl.pred = append(cl.pred, xpred{})
	cl.seen = append(cl.seen, 0)
	cl.room = append(cl.room, false)
	cl.roomSeen = append(cl.roomSeen, 0)
	return i
}

// find returns the edge from s to t, or nil.
func (cl *xclass) find(s, t int32) *xedge {
	if int(s) >= cl.ecap || int(t) >= cl.ecap {
		return nil
	}
	if k := cl.eidx[int(s)*cl.ecap+int(t)]; k > 0 {
		return &cl.out[s][k-1]
	}
	return nil
}

func (cl *xclass) edge(s, t int32) *xedge {
	if e := cl.find(s, t); e != nil {
		return e
	}
	if n := len(cl.types); n > cl.ecap {
		// Grow the index, keeping what it holds.
		ecap := max(2*cl.ecap, n, 16)
		eidx := make([]int32, ecap*ecap)
		for a := range cl.ecap {
			copy(eidx[a*ecap:a*ecap+cl.ecap], cl.eidx[a*cl.ecap:(a+1)*cl.ecap])
		}
		cl.eidx, cl.ecap = eidx, ecap
	}
	cl.out[s] = append(cl.out[s], xedge{to: t})
	cl.eidx[int(s)*cl.ecap+int(t)] = int32(len(cl.out[s]))
	cl.edges++
	return &cl.out[s][len(cl.out[s])-1]
}

// register makes a job placed this cycle movable: it keeps its cheapest
// candidates, and every move from where it is joins the graph.
func (c *Cycle) register(j *jobCtx, cd *candidate, plan, placed, node int32) {
	if c.f.nodes[node].resv != math.MaxInt64 {
		return
	}
	cl := c.class(j)
	x := xjob{class: cl, plan: plan, placed: placed, node: node, cost: cd.est.EstCost, proj: j.proj,
		budget: j.proj.budget > 0, movable: true, base: j.base, ckpt: j.ckpt}
	x.typ = c.typeOf(cl, cd.pool, cd.model)
	// The moves it keeps: to its cheapest candidates below where it is
	// (a chain of exchanges may free one) and to the cheapest above (where
	// it can make room by paying a little more).
	from := len(c.xcands)
	below := keepCheapest(c.xbelow[:0], maxMovesDown)
	above := keepCheapest(c.xabove[:0], maxMovesUp)
	for i := range c.cands {
		cost := c.cands[i].est.EstCost
		if &c.cands[i] == cd || c.cands[i].pool == cd.pool && c.cands[i].model == cd.model {
			continue
		}
		if cost < cd.est.EstCost {
			below = below.add(xcand{typ: int32(i), cost: cost})
		} else {
			above = above.add(xcand{typ: int32(i), cost: cost})
		}
	}
	c.xbelow, c.xabove = below.list, above.list
	for _, l := range [][]xcand{below.list, above.list} {
		for _, xc := range l {
			cand := &c.cands[xc.typ]
			c.xcands = append(c.xcands, xcand{typ: c.typeOf(cl, cand.pool, cand.model), cost: xc.cost})
		}
	}
	x.cands = c.xcands[from:len(c.xcands):len(c.xcands)]
	x.index = int32(len(c.xjobs))
	c.xjobs = append(c.xjobs, x)
	c.xlive = append(c.xlive, 0)
	cl.count[x.typ]++
	c.addEdges(int32(len(c.xjobs) - 1))
}

// addEdges puts a movable job's moves from where it is into the graph: all
// of them in an eager class, in a lazy one only into edges a search has
// asked for (materialize builds the others when asked).
func (c *Cycle) addEdges(xi int32) {
	x := &c.xjobs[xi]
	cl := x.class
	cl.jobsIn[x.typ] = append(cl.jobsIn[x.typ], xi)
	for _, cand := range x.cands {
		if cand.typ == x.typ {
			continue
		}
		delta := cand.cost - x.cost
		if x.budget && delta > 0 {
			continue
		}
		var e *xedge
		if cl.eager {
			e = cl.edge(x.typ, cand.typ)
		} else if e = cl.find(x.typ, cand.typ); e == nil {
			continue
		}
		e.h.push(edgeEntry{delta: delta, job: xi, stamp: x.stamp})
	}
}

// materialize returns the edge s→t of a lazy class, building it from the
// jobs in s the first time.
func (c *Cycle) materialize(cl *xclass, s, t int32) *xedge {
	if e := cl.find(s, t); e != nil {
		return e
	}
	e := cl.edge(s, t)
	live := cl.jobsIn[s][:0]
	for _, xi := range cl.jobsIn[s] {
		x := &c.xjobs[xi]
		if !x.movable || x.typ != s {
			continue // moved away or pinned since
		}
		live = append(live, xi)
		for _, cand := range x.cands {
			if cand.typ != t {
				continue
			}
			if delta := cand.cost - x.cost; !x.budget || delta <= 0 {
				e.h.push(edgeEntry{delta: delta, job: xi, stamp: x.stamp})
			}
			break
		}
	}
	cl.jobsIn[s] = live
	return e
}

// pin makes a placed job stay where it is.
func (c *Cycle) pin(x *xjob) {
	if x.movable {
		x.movable = false
		c.xlive[x.index] = -1
		x.class.count[x.typ]--
	}
}

// exchange looks for a path that places job j more cheaply than limit, its
// cost on its greedy choice c.cands[greedy] (+Inf and -1 when it found no
// room), and applies it.
func (c *Cycle) exchange(j *jobCtx, limit float64, greedy int) bool {
	cl := c.class(j)
	if len(c.xjobs) == 0 {
		return false
	}
	if !math.IsInf(limit, 1) {
		// Only a clear gain is worth the moves.
		limit -= 1e-9 * max(1, math.Abs(limit))
	}
	c.xstamp++
	stamp := c.xstamp
	h := c.xheap[:0]
	// The new job enters one of its candidates where a job could make
	// room by moving on.
	for i := range c.cands {
		cd := &c.cands[i]
		t := c.typeOf(cl, cd.pool, cd.model)
		if cd.est.EstCost >= limit || cl.count[t] == 0 || cl.seen[t] == stamp && cl.dist[t] <= cd.est.EstCost {
			continue
		}
		cl.dist[t], cl.pred[t], cl.seen[t] = cd.est.EstCost, xpred{from: -1, job: int32(i)}, stamp
		h = append(h, distEntry{cd.est.EstCost, t})
	}
	// Cheapest paths first (Dijkstra's order; a label that improves later,
	// through a move that lowers a job's cost, is queued again), until no
	// queued label can beat the cheapest path already found to a type with
	// room for the job that would arrive there.
	best := limit
	end, endNode, entry := int32(-1), int32(-1), int32(-1)
	var endQ request
	// An eager class is searched whole, within a bound. In a lazy one, a
	// search probes the one-move exchanges into the job's own choice, and
	// looks further (over the edges built so far) only to place a job that
	// found no room at all.
	var budget int
	if cl.eager {
		budget = min(max(relaxPasses*cl.edges, minRelax), maxRelax)
		if math.IsInf(limit, 1) {
			budget *= placeFactor
		}
	} else {
		if math.IsInf(limit, 1) {
			budget = lazyPlaceRelax
		}
		if greedy >= 0 {
			// Probe: one job moves from where the new one enters to the new
			// one's own choice.
			b := c.typeOf(cl, c.cands[greedy].pool, c.cands[greedy].model)
			for _, it := range h {
				e := c.materialize(cl, it.t, b)
				mv, ok := c.top(e)
				if !ok || it.d+mv.delta >= best {
					continue
				}
				if q, node, ok := c.roomFor(j, cl, b, mv.job); ok {
					best, end, endNode, endQ = it.d+mv.delta, b, node, q
					c.xbest = append(c.xbest[:0], pathStep{from: it.t, job: mv.job})
					entry = cl.pred[it.t].job
				}
			}
		}
	}
	if budget > 0 {
		h.init()
	}
	for len(h) > 0 && h[0].d < best && budget > 0 {
		top := h[0]
		h.pop()
		s := top.t
		if top.d > cl.dist[s] {
			continue // stale
		}
		for k := range cl.out[s] {
			budget--
			e := &cl.out[s][k]
			mv, ok := c.top(e)
			if !ok {
				continue
			}
			u := e.to
			nd := top.d + mv.delta
			if nd >= best || cl.seen[u] == stamp && nd >= cl.dist[u]-1e-9 {
				continue
			}
			cl.dist[u], cl.pred[u], cl.seen[u] = nd, xpred{from: s, job: mv.job}, stamp
			h.push(distEntry{nd, u})
			if q, node, ok := c.roomFor(j, cl, u, mv.job); ok {
				if path, simple := c.path(cl, u); simple {
					best, end, endNode, endQ = nd, u, node, q
					c.xbest = append(c.xbest[:0], path...)
					entry = cl.pred[path[0].from].job
				}
			}
		}
	}
	c.xheap = h
	if end < 0 {
		return false
	}
	c.applyPath(j, &c.cands[entry], c.xbest, end, endNode, &endQ)
	return true
}

// roomFor finds a node of type t for placed job xi to move to.
func (c *Cycle) roomFor(j *jobCtx, cl *xclass, t, xi int32) (request, int32, bool) {
	if !c.roomIn(cl, t) {
		return request{}, 0, false
	}
	tt := cl.types[t]
	est := c.moveEstimate(j, &c.xjobs[xi], tt)
	q := request{cpu: j.cpu, mem: j.mem, gpus: j.gpus, model: tt.model, ranks: 1, end: int64(hoursToDuration(est.Hours()))}
	out, found, _ := c.f.fit(&c.f.pools[tt.pool], &q, c.xroom[:0])
	c.xroom = out[:0]
	if found != 1 {
		return request{}, 0, false
	}
	return q, out[0].node, true
}

// roomIn says whether a type has a node that fits the class's shape, held
// nodes included; a search asks once per type.
func (c *Cycle) roomIn(cl *xclass, t int32) bool {
	if cl.roomSeen[t] == c.xstamp {
		return cl.room[t]
	}
	tt := cl.types[t]
	q := request{cpu: c.jc.cpu, mem: c.jc.mem, gpus: c.jc.gpus, model: tt.model, ranks: 1, end: math.MinInt64}
	_, found, _ := c.f.fit(&c.f.pools[tt.pool], &q, c.xroom[:0])
	cl.roomSeen[t], cl.room[t] = c.xstamp, found == 1
	return found == 1
}

type distEntry struct {
	d float64
	t int32
}

// distHeap is the search's queue of types by distance.
type distHeap []distEntry

func (h *distHeap) push(e distEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].d <= s[i].d {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *distHeap) init() {
	for i := len(*h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *distHeap) pop() {
	s := *h
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	h.down(0)
}

func (h *distHeap) down(i int) {
	s := *h
	for {
		l, small := 2*i+1, i
		if l < len(s) && s[l].d < s[small].d {
			small = l
		}
		if r := l + 1; r < len(s) && s[r].d < s[small].d {
			small = r
		}
		if small == i {
			return
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
}

// pathStep is one move of a path: job leaves type from for the next step's
// type (or the end).
type pathStep struct {
	from int32 // the type the job leaves
	job  int32 // xjob index
}

// path lists the moves that end at type t, first move first, and whether
// they form a simple path.
func (c *Cycle) path(cl *xclass, t int32) ([]pathStep, bool) {
	steps := c.xpath[:0]
	for cur := t; ; {
		p := cl.pred[cur]
		if p.from < 0 {
			break
		}
		if len(steps) > len(cl.types) {
			return nil, false
		}
		for _, s := range steps {
			if s.from == p.from || s.job == p.job {
				return nil, false
			}
		}
		steps = append(steps, pathStep(p))
		cur = p.from
	}
	slices.Reverse(steps)
	c.xpath = steps
	return steps, len(steps) > 0
}

// moveEstimate prices a placed job on another type.
func (c *Cycle) moveEstimate(j *jobCtx, x *xjob, t xtype) Estimate {
	p := &c.f.pools[t.pool]
	tp, gpuPrice := 1.0, 0.0
	if t.model >= 0 {
		tp, gpuPrice = c.throughput[t.model], p.gpuPrice[t.model]
	}
	return predict(1, perHour(j.cpu, j.mem, int(j.gpus), p.Prices.CPUHour, p.Prices.MemGiBHour, gpuPrice), x.base, tp, x.ckpt, p.LossRate)
}

// applyPath moves the path's jobs, last first: the last takes the room
// found at node end in type t, each other the place the next one left, and
// the new job (as candidate entry) the place the first one left.
func (c *Cycle) applyPath(j *jobCtx, entry *candidate, path []pathStep, t int32, end int32, q *request) {
	c.f.take(end, 1, q)
	node, typ := end, t
	for i := len(path) - 1; i >= 0; i-- {
		x := &c.xjobs[path[i].job]
		left := x.node
		c.move(j, path[i].job, typ, node)
		node, typ = left, path[i].from
	}
	c.commitAt(j, entry, node)
}

// move puts a placed job on node in type t and updates its placement.
func (c *Cycle) move(j *jobCtx, xi, t, node int32) {
	x := &c.xjobs[xi]
	tt := x.class.types[t]
	est := c.moveEstimate(j, x, tt)
	x.proj.spent += est.EstCost - x.cost
	x.class.count[x.typ]--
	x.class.count[t]++
	x.typ, x.node, x.cost = t, node, est.EstCost
	x.stamp++
	c.xlive[xi] = x.stamp
	pl := &c.plan.Placements[x.plan]
	p := &c.f.pools[tt.pool]
	pl.PoolID, pl.NodeIDs[0] = p.ID, c.f.nodes[node].id
	pl.GPUModel = ""
	if tt.model >= 0 {
		pl.GPUModel = c.f.models[tt.model]
	}
	pl.PricePerHour, pl.EstHours, pl.EstCost = est.PricePerHour, est.EstHours, est.EstCost
	pr := &c.placed[x.placed]
	pr.pool, pr.q.model, pr.q.end = tt.pool, tt.model, int64(hoursToDuration(est.Hours()))
	c.arena[pr.from].node = node
	if c.f.nodes[node].resv != math.MaxInt64 {
		c.pin(x)
		return
	}
	c.addEdges(xi)
}
