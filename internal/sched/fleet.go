package sched

import (
	"cmp"
	"maps"
	"math"
	"math/bits"
	"slices"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// fleet is the cycle's working copy of the snapshot's capacity, indexed so
// that finding a node for a rank does not scan the fleet: per pool and GPU
// model, nodes are bucketed by how many GPUs of that model they have free;
// per pool, nodes are bucketed by free CPUs (a power of two per bucket).
// Capacity only shrinks during a cycle (placements and holds take it,
// preempted attempts do not give it back until the next snapshot, an
// exchange swaps jobs of one size between places, and a reservation only
// narrows who may use a node), which is what makes fitMemo sound.
type fleet struct {
	models  []string // GPU models by id, sorted
	modelID map[string]int32
	pools   []fpool
	poolIdx map[string]int32 // by pool ID
	nodes   []fnode
	nodeIdx map[string]int32 // by node ID
	running []frun
	// capacity is the fleet's total, for dominant resource fairness.
	capCPU, capMem, capGPU float64
}

// fnode is a node's free and total capacity.
type fnode struct {
	id         string
	pool       int32
	cpu, mem   int64 // free
	tcpu, tmem int64 // total
	slots      []gpuSlot
	// resv: the node is held for a blocked job from this time (from
	// Snapshot.Now); only work predicted to end by then may use it.
	// math.MaxInt64 when it is not held.
	resv int64
	// Position in the pool's CPU index: set (0 without GPUs, 1 with),
	// bucket and index within the bucket.
	cpuSet, cpuB int8
	cpuPos       int32
}

// gpuSlot is a node's GPUs of one model.
type gpuSlot struct {
	model       int32
	free, total int32
	pos         int32 // index in the pool's bucket for free (when free > 0)
}

// fpool is a pool with its nodes indexed.
type fpool struct {
	Pool
	nodes []int32
	// byModel maps a global model id to an index in mods, -1 when the
	// pool has no GPUs of that model.
	byModel []int32
	mods    []modelIndex
	// cpuIdx[set][bucket] lists nodes by free CPUs; cpuMask[set] has a bit
	// for every bucket that is not empty.
	cpuIdx  [2][64][]int32
	cpuMask [2]uint64
	// Largest node totals and pool totals, for the checks that a job can
	// never fit, however idle the pool.
	maxCPU, maxMem int64
	sumCPU, sumMem int64
	gpuPrice       []float64 // per model id
	running        []int32   // attempts on the pool
	cpuMemo        fitMemo   // single-rank failures of jobs without GPUs
}

// modelIndex buckets a pool's nodes by free GPUs of one model.
type modelIndex struct {
	model      int32
	maxPerNode int32
	sum        int64
	buckets    [][]int32 // buckets[k]: nodes with exactly k free
	memo       fitMemo
}

// frun is a running attempt.
type frun struct {
	r     *Running
	pool  int32   // -1 when its pool is not in the snapshot
	nodes []int32 // per rank; -1 for a node not in the snapshot
	model int32   // -1 without GPUs or when unknown
	end   int64   // predicted end, from Snapshot.Now, at least 0
}

func newFleet(s *Snapshot) *fleet {
	f := &fleet{
		modelID: map[string]int32{},
		poolIdx: make(map[string]int32, len(s.Pools)),
		nodeIdx: make(map[string]int32, len(s.Nodes)),
	}

	// Pools by name, for stable output; a repeated ID keeps its first.
	order := make([]int, 0, len(s.Pools))
	for i := range s.Pools {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(s.Pools[a].Name, s.Pools[b].Name), cmp.Compare(s.Pools[a].ID, s.Pools[b].ID))
	})
	for _, i := range order {
		if _, dup := f.poolIdx[s.Pools[i].ID]; dup {
			continue
		}
		f.poolIdx[s.Pools[i].ID] = int32(len(f.pools))
		f.pools = append(f.pools, fpool{Pool: s.Pools[i]})
	}

	// GPU models, by name.
	names := map[string]struct{}{}
	for i := range s.Nodes {
		for m := range s.Nodes[i].Free.GPUs {
			names[m] = struct{}{}
		}
		for m := range s.Nodes[i].Total.GPUs {
			names[m] = struct{}{}
		}
	}
	for i := range s.Running {
		if m := s.Running[i].GPUModel; m != "" && s.Running[i].Resources.GPUs > 0 {
			names[m] = struct{}{}
		}
	}
	f.models = slices.Sorted(maps.Keys(names))
	for i, m := range f.models {
		f.modelID[m] = int32(i)
	}
	nm := len(f.models)

	// Nodes, with GPUs per model in a dense scratch row while building.
	rows := make([]gpuRow, 0, len(s.Nodes))
	dense := make([]int32, 0, 2*nm*len(s.Nodes))
	knownTotal := make([]bool, 0, len(s.Nodes))
	for i := range s.Nodes {
		n := &s.Nodes[i]
		pi, ok := f.poolIdx[n.PoolID]
		if !ok {
			continue
		}
		if _, dup := f.nodeIdx[n.ID]; dup {
			continue
		}
		f.nodeIdx[n.ID] = int32(len(f.nodes))
		fn := fnode{id: n.ID, pool: pi, cpu: max(n.Free.MilliCPUs, 0), mem: max(n.Free.MemoryBytes, 0), resv: math.MaxInt64}
		start := len(dense)
		dense = append(dense, make([]int32, 2*nm)...)
		r := gpuRow{free: dense[start : start+nm : start+nm], total: dense[start+nm : start+2*nm : start+2*nm]}
		for m, c := range n.Free.GPUs {
			r.free[f.modelID[m]] = int32(max(min(c, math.MaxInt32), 0))
		}
		known := n.Total.MilliCPUs != 0 || n.Total.MemoryBytes != 0 || len(n.Total.GPUs) != 0
		if known {
			fn.tcpu, fn.tmem = max(n.Total.MilliCPUs, fn.cpu), max(n.Total.MemoryBytes, fn.mem)
			for m, c := range n.Total.GPUs {
				r.total[f.modelID[m]] = int32(max(min(c, math.MaxInt32), 0))
			}
		} else {
			fn.tcpu, fn.tmem = fn.cpu, fn.mem
		}
		f.nodes = append(f.nodes, fn)
		rows = append(rows, r)
		knownTotal = append(knownTotal, known)
	}

	// Running attempts; they make up the total of nodes that did not say.
	f.running = make([]frun, len(s.Running))
	rankNodes := make([]int32, 0, 64)
	for i := range s.Running {
		r := &s.Running[i]
		fr := frun{r: r, pool: -1, model: -1}
		if pi, ok := f.poolIdx[r.PoolID]; ok {
			fr.pool = pi
		}
		fr.end = runningEnd(r, s.Now)
		start := len(rankNodes)
		for _, id := range r.NodeIDs {
			ni, ok := f.nodeIdx[id]
			if !ok || (fr.pool >= 0 && f.nodes[ni].pool != fr.pool) {
				ni = -1
			}
			rankNodes = append(rankNodes, ni)
		}
		fr.nodes = rankNodes[start:len(rankNodes):len(rankNodes)]
		if r.Resources.GPUs > 0 {
			fr.model = f.runningModel(r, fr.nodes, rows)
		}
		f.running[i] = fr
		if fr.pool >= 0 {
			f.pools[fr.pool].running = append(f.pools[fr.pool].running, int32(i))
		}
		for _, ni := range fr.nodes {
			if ni < 0 || knownTotal[ni] {
				continue
			}
			n := &f.nodes[ni]
			n.tcpu += max(r.Resources.MilliCPUs, 0)
			n.tmem += max(r.Resources.MemoryBytes, 0)
			if fr.model >= 0 {
				rows[ni].total[fr.model] += int32(r.Resources.GPUs)
			}
		}
	}

	// GPU slots: one per model the node has.
	nslots := 0
	for ni := range f.nodes {
		for m := range nm {
			if knownTotal[ni] {
				rows[ni].total[m] = max(rows[ni].total[m], rows[ni].free[m])
			} else {
				// Unknown totals are what running attempts hold plus
				// what is free.
				rows[ni].total[m] += rows[ni].free[m]
			}
			if rows[ni].total[m] > 0 {
				nslots++
			}
		}
	}
	slots := make([]gpuSlot, 0, nslots)
	for ni := range f.nodes {
		start := len(slots)
		for m := range nm {
			if t := rows[ni].total[m]; t > 0 {
				slots = append(slots, gpuSlot{model: int32(m), free: min(rows[ni].free[m], t), total: t, pos: -1})
			}
		}
		f.nodes[ni].slots = slots[start:len(slots):len(slots)]
	}

	// Pool indexes.
	for ni := range f.nodes {
		n := &f.nodes[ni]
		p := &f.pools[n.pool]
		p.nodes = append(p.nodes, int32(ni))
		p.maxCPU, p.maxMem = max(p.maxCPU, n.tcpu), max(p.maxMem, n.tmem)
		p.sumCPU += n.tcpu
		p.sumMem += n.tmem
		f.capCPU += float64(n.tcpu)
		f.capMem += float64(n.tmem)
		for _, sl := range n.slots {
			f.capGPU += float64(sl.total)
		}
	}
	for pi := range f.pools {
		p := &f.pools[pi]
		p.byModel = make([]int32, nm)
		p.gpuPrice = make([]float64, nm)
		for m := range nm {
			p.byModel[m] = -1
			p.gpuPrice[m] = p.Prices.GPUHour[f.models[m]]
		}
	}
	for ni := range f.nodes {
		n := &f.nodes[ni]
		p := &f.pools[n.pool]
		for _, sl := range n.slots {
			mi := p.byModel[sl.model]
			if mi < 0 {
				mi = int32(len(p.mods))
				p.byModel[sl.model] = mi
				p.mods = append(p.mods, modelIndex{model: sl.model})
			}
			x := &p.mods[mi]
			x.maxPerNode = max(x.maxPerNode, sl.total)
			x.sum += int64(sl.total)
		}
	}
	for pi := range f.pools {
		p := &f.pools[pi]
		slices.SortFunc(p.mods, func(a, b modelIndex) int { return cmp.Compare(a.model, b.model) })
		for i := range p.mods {
			p.byModel[p.mods[i].model] = int32(i)
			p.mods[i].buckets = make([][]int32, p.mods[i].maxPerNode+1)
		}
	}
	for ni := range f.nodes {
		n := &f.nodes[ni]
		p := &f.pools[n.pool]
		for si := range n.slots {
			f.indexGPU(p, int32(ni), &n.slots[si])
		}
		if len(n.slots) > 0 {
			n.cpuSet = 1
		}
		f.indexCPU(p, int32(ni))
	}
	return f
}

// gpuRow is a node's free and total GPUs by model id, while the fleet is
// built.
type gpuRow struct{ free, total []int32 }

// runningEnd is when a running attempt is predicted to end, from now and
// never before it; one that is stopping ends now.
func runningEnd(r *Running, now time.Time) int64 {
	if r.Stopping {
		return 0
	}
	end := r.EstEnd
	if end.IsZero() {
		if r.StartedAt.IsZero() {
			return 0
		}
		end = r.StartedAt.Add(spec.DefaultEstimate)
	}
	return max(int64(end.Sub(now)), 0)
}

// runningModel is the GPU model an attempt holds: the one it names, or,
// when it names none, the first model its first known node has that the
// attempt accepts.
func (f *fleet) runningModel(r *Running, nodes []int32, rows []gpuRow) int32 {
	if m, ok := f.modelID[r.GPUModel]; ok {
		return m
	}
	if len(r.Resources.GPUModels) == 1 {
		if m, ok := f.modelID[core.NormalizeGPUModel(r.Resources.GPUModels[0])]; ok {
			return m
		}
	}
	for _, ni := range nodes {
		if ni < 0 {
			continue
		}
		for m, name := range f.models {
			if rows[ni].free[m]+rows[ni].total[m] > 0 && accepts(r.Resources.GPUModels, name) {
				return int32(m)
			}
		}
	}
	return -1
}

func accepts(models []string, m string) bool {
	if len(models) == 0 {
		return true
	}
	for _, x := range models {
		if x == m || core.NormalizeGPUModel(x) == m {
			return true
		}
	}
	return false
}

func cpuBucket(cpu int64) int8 {
	return int8(min(bits.Len64(uint64(max(cpu, 0))), 63))
}

func (f *fleet) indexCPU(p *fpool, ni int32) {
	n := &f.nodes[ni]
	n.cpuB = cpuBucket(n.cpu)
	b := &p.cpuIdx[n.cpuSet][n.cpuB]
	n.cpuPos = int32(len(*b))
	*b = append(*b, ni)
	p.cpuMask[n.cpuSet] |= 1 << n.cpuB
}

func (f *fleet) unindexCPU(p *fpool, ni int32) {
	n := &f.nodes[ni]
	b := &p.cpuIdx[n.cpuSet][n.cpuB]
	last := len(*b) - 1
	moved := (*b)[last]
	(*b)[n.cpuPos] = moved
	f.nodes[moved].cpuPos = n.cpuPos
	*b = (*b)[:last]
	if last == 0 {
		p.cpuMask[n.cpuSet] &^= 1 << n.cpuB
	}
}

func (f *fleet) indexGPU(p *fpool, ni int32, sl *gpuSlot) {
	if sl.free <= 0 {
		sl.pos = -1
		return
	}
	b := &p.mods[p.byModel[sl.model]].buckets[sl.free]
	sl.pos = int32(len(*b))
	*b = append(*b, ni)
}

func (f *fleet) unindexGPU(p *fpool, sl *gpuSlot) {
	if sl.pos < 0 {
		return
	}
	b := &p.mods[p.byModel[sl.model]].buckets[sl.free]
	last := len(*b) - 1
	moved := (*b)[last]
	(*b)[sl.pos] = moved
	for i := range f.nodes[moved].slots {
		if s := &f.nodes[moved].slots[i]; s.model == sl.model {
			s.pos = sl.pos
			break
		}
	}
	*b = (*b)[:last]
	sl.pos = -1
}

// slot returns the node's GPUs of a model, or nil.
func (n *fnode) slot(model int32) *gpuSlot {
	for i := range n.slots {
		if n.slots[i].model == model {
			return &n.slots[i]
		}
	}
	return nil
}

// freeGPUs is how many GPUs of the model the node has free.
func (n *fnode) freeGPUs(model int32) int32 {
	if s := n.slot(model); s != nil {
		return s.free
	}
	return 0
}

// take removes what count ranks of req hold (GPUs of model) from node ni.
func (f *fleet) take(ni int32, count int, q *request) {
	n := &f.nodes[ni]
	p := &f.pools[n.pool]
	k := int64(count)
	if q.cpu > 0 {
		f.unindexCPU(p, ni)
		n.cpu = max(n.cpu-k*q.cpu, 0)
		f.indexCPU(p, ni)
	}
	n.mem = max(n.mem-k*q.mem, 0)
	if q.gpus > 0 && q.model >= 0 {
		sl := n.slot(q.model)
		f.unindexGPU(p, sl)
		sl.free = max(sl.free-int32(count)*q.gpus, 0)
		f.indexGPU(p, ni, sl)
	}
}

// request is one rank's needs on one GPU model, and when the rank would
// end (a reserved node takes only work that ends by its reservation).
type request struct {
	cpu, mem int64
	gpus     int32
	model    int32 // -1 without GPUs
	ranks    int
	end      int64
}

// alloc is how many ranks go on one node.
type alloc struct {
	node  int32
	ranks int
}

// fitStage says how far the search for a rank's node got, for the reason:
// no node had the GPUs (or, without GPUs, the CPUs); some had the GPUs but
// not the CPUs; some had both but not the memory; some had room but are
// held for a blocked job.
type fitStage int8

const (
	stageGPUs fitStage = iota
	stageCPUs
	stageMem
	stageReserved
	stageFits
)

// fit finds nodes for all of q's ranks in pool p, appending them to out,
// or reports how many it found and how far the search for the next one
// got. It reads the index only; take commits.
func (f *fleet) fit(p *fpool, q *request, out []alloc) ([]alloc, int, fitStage) {
	if q.ranks == 1 {
		var memo *fitMemo
		if q.gpus > 0 {
			memo = &p.mods[p.byModel[q.model]].memo
		} else {
			memo = &p.cpuMemo
		}
		if stage, failed := memo.lookup(q); failed {
			return out, 0, stage
		}
		ni, stage := f.fitOne(p, q)
		if ni < 0 {
			memo.add(q, stage)
			return out, 0, stage
		}
		return append(out, alloc{node: ni, ranks: 1}), 1, stageFits
	}
	return f.fitGang(p, q, out)
}

// rankRoom is how many of q's ranks node n can take, and the stage a
// search stops at when it is none.
func rankRoom(n *fnode, q *request, gpuFree int32) (int, fitStage) {
	room := math.MaxInt
	if q.gpus > 0 {
		if gpuFree < q.gpus {
			return 0, stageGPUs
		}
		room = int(gpuFree / q.gpus)
	}
	if q.cpu > 0 {
		if n.cpu < q.cpu {
			return 0, stageCPUs
		}
		room = min(room, int(n.cpu/q.cpu))
	}
	if q.mem > 0 {
		if n.mem < q.mem {
			return 0, stageMem
		}
		room = min(room, int(n.mem/q.mem))
	}
	if q.end > n.resv {
		return 0, stageReserved
	}
	return room, stageFits
}

// fitOne finds a node for a single rank: the node with the fewest free
// GPUs of the model that fit (or, without GPUs, preferring nodes without
// GPUs and the fewest free CPUs), so large holes stay for large jobs.
func (f *fleet) fitOne(p *fpool, q *request) (int32, fitStage) {
	best := stageGPUs
	if q.gpus > 0 {
		mi := &p.mods[p.byModel[q.model]]
		for k := q.gpus; k <= mi.maxPerNode; k++ {
			for _, ni := range mi.buckets[k] {
				n := &f.nodes[ni]
				if _, st := rankRoom(n, q, k); st == stageFits {
					return ni, stageFits
				} else if st > best {
					best = st
				}
			}
		}
		return -1, best
	}
	for set := range 2 {
		// Buckets below the one q.cpu falls in hold too few CPUs.
		mask := p.cpuMask[set] &^ (1<<cpuBucket(q.cpu) - 1)
		for mask != 0 {
			b := bits.TrailingZeros64(mask)
			mask &^= 1 << b
			for _, ni := range p.cpuIdx[set][b] {
				n := &f.nodes[ni]
				if _, st := rankRoom(n, q, 0); st == stageFits {
					return ni, stageFits
				} else if st > best {
					best = st
				}
			}
		}
	}
	return -1, best
}

// fitGang finds nodes for all ranks of a gang, emptiest nodes first so the
// gang spans as few nodes as it can; several ranks share a node with room.
func (f *fleet) fitGang(p *fpool, q *request, out []alloc) ([]alloc, int, fitStage) {
	found, best := 0, stageGPUs
	visit := func(ni int32, gpuFree int32) bool {
		n := &f.nodes[ni]
		room, st := rankRoom(n, q, gpuFree)
		if room == 0 {
			best = max(best, st)
			return false
		}
		take := min(room, q.ranks-found)
		out = append(out, alloc{node: ni, ranks: take})
		found += take
		return found == q.ranks
	}
	if q.gpus > 0 {
		mi := &p.mods[p.byModel[q.model]]
		for k := mi.maxPerNode; k >= q.gpus; k-- {
			for _, ni := range mi.buckets[k] {
				if visit(ni, k) {
					return out, found, stageFits
				}
			}
		}
		return out, found, best
	}
	for set := range 2 {
		for b := 63; b >= 0; b-- {
			if p.cpuMask[set]&(1<<b) == 0 {
				continue
			}
			for _, ni := range p.cpuIdx[set][b] {
				if visit(ni, 0) {
					return out, found, stageFits
				}
			}
		}
	}
	return out, found, best
}

// fitMemo remembers single-rank requests that found no node in a pool (for
// one GPU model). Capacity only shrinks within a cycle, so a request that
// asks at least as much and ends no sooner cannot fit either.
type fitMemo struct {
	entries [4]memoEntry
	n, next int
}

type memoEntry struct {
	cpu, mem, end int64
	gpus          int32
	stage         fitStage
}

func (m *fitMemo) lookup(q *request) (fitStage, bool) {
	for i := range m.n {
		e := &m.entries[i]
		if q.gpus >= e.gpus && q.cpu >= e.cpu && q.mem >= e.mem && q.end >= e.end {
			return e.stage, true
		}
	}
	return 0, false
}

func (m *fitMemo) add(q *request, stage fitStage) {
	m.entries[m.next] = memoEntry{cpu: q.cpu, mem: q.mem, end: q.end, gpus: q.gpus, stage: stage}
	m.next = (m.next + 1) % len(m.entries)
	m.n = min(m.n+1, len(m.entries))
}

// extraRoom is capacity a what-if fit may count on beside what is free:
// what attempts to be preempted, or attempts ending by some time, give
// back. It is indexed by node.
type extraRoom struct {
	cpu, mem map[int32]int64
	gpus     map[int32]int32 // of the request's model
}

func newExtraRoom() *extraRoom {
	return &extraRoom{cpu: map[int32]int64{}, mem: map[int32]int64{}, gpus: map[int32]int32{}}
}

// add counts what attempt ra holds on its nodes (only its GPUs of model).
func (x *extraRoom) add(ra *frun, model int32, sign int) {
	r := ra.r.Resources
	for _, ni := range ra.nodes {
		if ni < 0 {
			continue
		}
		x.cpu[ni] += int64(sign) * max(r.MilliCPUs, 0)
		x.mem[ni] += int64(sign) * max(r.MemoryBytes, 0)
		if r.GPUs > 0 && ra.model == model && model >= 0 {
			x.gpus[ni] += int32(sign * r.GPUs)
		}
	}
}

// fitWith is fit with extra room counted in, scanning the pool's nodes
// (nodes with extra room first, then the others, each in pool order). It is
// the slow path of preemption and reservations. ignoreResv makes held nodes
// count as free (for the job that holds them).
func (f *fleet) fitWith(p *fpool, q *request, x *extraRoom, ignoreResv bool, out []alloc) ([]alloc, bool) {
	found := 0
	for pass := range 2 {
		for _, ni := range p.nodes {
			_, has := x.cpu[ni]
			if has != (pass == 0) {
				continue
			}
			n := &f.nodes[ni]
			if !ignoreResv && q.end > n.resv {
				continue
			}
			cpu, mem := n.cpu+x.cpu[ni], n.mem+x.mem[ni]
			room := q.ranks - found
			if q.gpus > 0 {
				room = min(room, int((n.freeGPUs(q.model)+x.gpus[ni])/q.gpus))
			}
			if q.cpu > 0 {
				room = min(room, int(cpu/q.cpu))
			}
			if q.mem > 0 {
				room = min(room, int(mem/q.mem))
			}
			if room <= 0 {
				continue
			}
			out = append(out, alloc{node: ni, ranks: room})
			found += room
			if found == q.ranks {
				return out, true
			}
		}
	}
	return out, false
}
