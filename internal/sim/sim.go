// Package sim replays fleet-and-market traces through the real scheduler in
// virtual time: pools whose nodes come and go and fail, jobs that arrive,
// train at their GPUs' speed, checkpoint, lose work when a node dies and
// resume from their last checkpoint. A small control plane of its own
// applies each plan after re-checking it against rules that share no code
// with the scheduler, meters every attempt, and reports what the week cost,
// which deadlines were met and which constraints a plan broke. Where the
// real control plane has a pure rule it uses that rule: retries
// (core.JobAfterAttempt) and pool reliability and quarantine
// (internal/reliability).
//
// It owns the trace format (docs/trace.md), the replay, the baseline
// policies that Lode is compared with, and the lower bound on a trace's
// cost. Time is virtual throughout: a simulated week takes seconds.
package sim

import (
	"cmp"
	"container/heap"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/reliability"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
)

// Policy names who decides placements in a replay.
type Policy string

const (
	// PolicyLode is the real scheduler, sched.Schedule, on the whole fleet.
	PolicyLode Policy = "lode"
	// PolicyCloudOnly is the real scheduler on the on-demand cloud alone:
	// the fleet holds only the pools of kind on-demand or, when the trace
	// marks none, those of tier certified or private.
	PolicyCloudOnly Policy = "cloud-only"
	// PolicyCheapestFirst is a naive market placer: each job, highest
	// priority then oldest first, goes to the pool and GPU model with the
	// lowest price per hour that can hold it now, ignoring GPU speed,
	// reliability, rework and deadlines; no preemption. It keeps every hard
	// constraint (policy, placement, interconnect, max price, budget).
	PolicyCheapestFirst Policy = "cheapest-first"
)

// Policies lists the policies a replay can run under.
func Policies() []Policy { return []Policy{PolicyLode, PolicyCloudOnly, PolicyCheapestFirst} }

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range Policies() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("sim: unknown policy %q (one of lode, cloud-only, cheapest-first)", s)
}

// Options tune a replay.
type Options struct {
	// Policy is who places jobs; PolicyLode when empty.
	Policy Policy
	// Seed seeds the failure model; 0 takes the trace's seed. Each node
	// draws from a stream of its own, so every policy sees the same nodes
	// fail at the same times.
	Seed uint64
	// Placer, when set, replaces the policy's placer (the fleet is still
	// the policy's). The control plane re-checks whatever it returns.
	Placer func(*sched.Snapshot) *sched.Plan
}

// Run replays the trace and reports what happened. It is deterministic:
// the same trace, options and scheduler give the same report.
func Run(t *Trace, opt Options) (*Report, error) {
	opt.Policy = cmp.Or(opt.Policy, PolicyLode)
	if _, err := ParsePolicy(string(opt.Policy)); err != nil {
		return nil, err
	}
	opt.Seed = cmp.Or(opt.Seed, t.Seed, DefaultSeed)
	w := newWorld(t, opt)
	w.run()
	return w.report(), nil
}

type jobState int

const (
	jobWaiting jobState = iota // not arrived yet
	jobQueued
	jobRunning
	jobSucceeded
	jobFailed
)

func (s jobState) String() string {
	return [...]string{"not arrived", "queued", "running", "succeeded", "failed"}[s]
}

type world struct {
	t      *Trace
	opt    Options
	placer func(*sched.Snapshot) *sched.Plan
	now    time.Time
	until  time.Time
	events eventQueue
	seq    int

	pools      []*pool
	poolByName map[string]*pool
	nodes      map[string]*node
	jobs       []*job
	jobByID    map[string]*job
	queued     []*job
	running    []*attempt
	attempts   map[string]*attempt
	projects   map[string]*project
	arrivals   int // jobs not arrived yet
	attemptSeq int

	dirty     bool
	lastSched time.Time
	// committed is what the placements of the cycle being applied are
	// predicted to cost, by project.
	committed map[string]float64
	snap      sched.Snapshot
	// idle is how long the scheduler waits to run again while jobs wait
	// and nothing changes; coming counts the fleet events and repairs
	// still to come, which may bring room.
	idle   time.Duration
	coming int

	rep        Report
	violations map[string]int
}

type pool struct {
	def      *Pool
	gone     bool
	nodes    []*node
	nextNode int
	// lives holds every stretch a node of the pool was up (a node that
	// comes back after a loss starts a new one), for the control plane's
	// reliability assessment; lives ended before its window are dropped.
	lives []reliability.Node
	// state is active or quarantined, as reliability.Decide says, since
	// the given time.
	state string
	since time.Time
	// lossRate is the pool's observed losses per node-hour, as last
	// assessed.
	lossRate float64
	// gpuHoursUp counts the GPU-hours of nodes that have gone down since;
	// nodes up now add theirs when read.
	gpuHoursUp float64
	rep        PoolReport
}

func (p *pool) sched() sched.Pool {
	return sched.Pool{ID: p.def.Name, Name: p.def.Name, Region: p.def.Region, Tier: p.def.Tier, State: p.state,
		Interconnect: p.def.Interconnect, Prices: p.def.Prices, LossRate: p.lossRate}
}

type node struct {
	id       string
	life     int // index of its current stretch in pool.lives
	pool     *pool
	total    sched.Capacity
	free     sched.Capacity
	gpus     int
	up       bool
	removed  bool
	upSince  time.Time
	gen      int
	rng      *rand.Rand
	attempts []*attempt
}

type job struct {
	def     *Job
	spec    *spec.Job // a copy whose Estimate is the work left
	created time.Time
	// total and done are the work per rank and the part of it saved in a
	// checkpoint, in hours on the reference GPU.
	total, done float64
	state       jobState
	retries     core.RetryCount
	ended       time.Time
	attempts    int
	cost        float64
	// reason says why the job ended or was queued again; pending is the
	// scheduler's last word on why it waits.
	reason  string
	pending []sched.Rejection
}

func (j *job) remaining() float64 { return max(j.total-j.done, 0) }

type attempt struct {
	id      string
	job     *job
	pool    *pool
	nodes   []*node
	nodeIDs []string
	taken   []map[string]int
	model   string
	gpus    int
	price   float64
	speed   float64
	start   time.Time
	from    float64
	ended   bool
}

type project struct {
	name    string
	budget  float64
	weight  float64
	settled float64
}

func newWorld(t *Trace, opt Options) *world {
	w := &world{
		t: t, opt: opt, now: t.Start, until: t.Start.Add(t.Until),
		poolByName: map[string]*pool{}, nodes: map[string]*node{}, jobByID: map[string]*job{},
		attempts: map[string]*attempt{}, projects: map[string]*project{}, violations: map[string]int{},
	}
	switch {
	case opt.Placer != nil:
		w.placer = opt.Placer
	case opt.Policy == PolicyCheapestFirst:
		w.placer = cheapestFirst
	default:
		w.placer = sched.Schedule
	}
	keep := fleetFilter(t, opt.Policy)
	for i := range t.Pools {
		if !keep(&t.Pools[i]) {
			continue
		}
		p := &pool{def: &t.Pools[i], state: reliability.Active, since: t.Start}
		p.rep = PoolReport{Name: p.def.Name, Kind: p.def.Kind, Region: p.def.Region, Tier: p.def.Tier.String()}
		w.pools = append(w.pools, p)
		w.poolByName[p.def.Name] = p
	}
	for name, pr := range t.Projects {
		w.projects[name] = &project{name: name, budget: pr.Budget, weight: pr.Weight}
	}
	for _, p := range w.pools {
		for _, g := range p.def.Nodes {
			w.addNodes(p, g)
		}
	}
	for i := range t.Events {
		ev := &t.Events[i]
		if w.poolByName[ev.Pool] != nil {
			w.push(&event{at: t.Start.Add(ev.At), kind: evFleet, fleet: ev})
		}
	}
	for i := range t.Jobs {
		d := &t.Jobs[i]
		sp := *d.Spec
		sp.Name = d.ID
		j := &job{def: d, spec: &sp, created: t.Start.Add(d.At), total: time.Duration(d.Spec.Estimate).Hours()}
		if j.total <= 0 {
			j.total = spec.DefaultEstimate.Hours()
			sp.Estimate = spec.Duration(spec.DefaultEstimate)
		}
		if w.projects[sp.Project] == nil {
			w.projects[sp.Project] = &project{name: sp.Project}
		}
		w.jobs = append(w.jobs, j)
		w.jobByID[d.ID] = j
		w.push(&event{at: j.created, kind: evArrive, job: j})
	}
	w.arrivals = len(w.jobs)
	return w
}

// fleetFilter says which pools a policy's fleet holds.
func fleetFilter(t *Trace, p Policy) func(*Pool) bool {
	if p != PolicyCloudOnly {
		return func(*Pool) bool { return true }
	}
	if slices.ContainsFunc(t.Pools, func(p Pool) bool { return p.Kind == KindOnDemand }) {
		return func(p *Pool) bool { return p.Kind == KindOnDemand }
	}
	return func(p *Pool) bool { return p.Tier >= core.TierCertified }
}

// CloudPools names the pools the cloud-only baseline keeps.
func CloudPools(t *Trace) []string {
	keep := fleetFilter(t, PolicyCloudOnly)
	var out []string
	for i := range t.Pools {
		if keep(&t.Pools[i]) {
			out = append(out, t.Pools[i].Name)
		}
	}
	return out
}

func (w *world) addNodes(p *pool, g NodeGroup) {
	total := sched.Capacity{MilliCPUs: g.MilliCPUs, MemoryBytes: g.MemoryBytes, GPUs: g.GPUs}
	gpus := 0
	for _, n := range g.GPUs {
		gpus += n
	}
	for range g.Count {
		id := fmt.Sprintf("%s-%04d", p.def.Name, p.nextNode)
		p.nextNode++
		h := fnv.New64a()
		h.Write([]byte(id))
		n := &node{id: id, pool: p, total: total, free: total, gpus: gpus, rng: rand.New(rand.NewPCG(w.opt.Seed, h.Sum64()))}
		p.nodes = append(p.nodes, n)
		w.nodes[id] = n
		w.nodeUp(n)
	}
}

// nodeUp brings a node up with all its capacity free and draws when it
// will next be lost.
func (w *world) nodeUp(n *node) {
	n.up, n.upSince, n.free = true, w.now, n.total
	n.gen++
	n.life = len(n.pool.lives)
	n.pool.lives = append(n.pool.lives, reliability.Node{Registered: w.now})
	if rate := n.pool.def.LossPerHour; rate > 0 {
		hours := n.rng.ExpFloat64() / rate
		if at := w.now.Add(hoursDur(hours)); hours < 24*365*100 && !at.After(w.until) {
			w.push(&event{at: at, kind: evLoss, node: n, gen: n.gen})
		}
	}
	w.dirty = true
}

// How a node goes down.
type downCause int

const (
	// downLost: the node failed or its operator took it away without
	// warning; what runs on it is lost.
	downLost downCause = iota
	// downRemoved: as downLost, and the node never comes back.
	downRemoved
	// downDrained: the node left cleanly; its attempts got their grace
	// period to checkpoint and move, and it never comes back.
	downDrained
)

// nodeDown takes a node down. A lost node comes back after the pool's
// repair time; a removed or drained one does not.
func (w *world) nodeDown(n *node, cause downCause) {
	if n.removed {
		return
	}
	n.removed = cause != downLost
	if !n.up {
		return
	}
	n.up = false
	n.gen++
	up := w.now.Sub(n.upSince).Hours()
	n.pool.gpuHoursUp += up * float64(n.gpus)
	if n.life < len(n.pool.lives) {
		n.pool.lives[n.life].End, n.pool.lives[n.life].Lost = w.now, cause != downDrained
	}
	how := core.AttemptPreempted
	if cause != downDrained {
		how = core.AttemptLost
		w.rep.NodeLosses++
		n.pool.rep.Losses++
	}
	for _, a := range slices.Clone(n.attempts) {
		w.endAttempt(a, how)
	}
	if cause == downLost {
		w.push(&event{at: w.now.Add(n.pool.def.Repair), kind: evRepair, node: n, gen: n.gen})
	}
	w.dirty = true
}

// judge assesses every pool as the control plane does (internal/
// reliability): its loss rate over the last day feeds the scheduler, and
// a pool that loses nodes too often is quarantined until a probation
// without losses has passed.
func (w *world) judge() {
	for _, p := range w.pools {
		w.prune(p)
		a := reliability.Assess(p.lives, w.now, reliability.Policy{})
		p.lossRate = a.LossRate
		if next, _ := reliability.Decide(p.state, p.since, a, w.now, reliability.Policy{}); next != p.state {
			p.state, p.since = next, w.now
			if next == reliability.Quarantined {
				w.rep.Quarantines++
				p.rep.Quarantines++
			}
		}
	}
}

// prune drops the lives that ended before the assessment window; the
// nodes up now keep track of theirs.
func (w *world) prune(p *pool) {
	from := w.now.Add(-reliabilityWindow)
	old := func(l reliability.Node) bool { return !l.End.IsZero() && l.End.Before(from) }
	if !slices.ContainsFunc(p.lives, old) {
		return
	}
	moved := make([]int, len(p.lives))
	kept := 0
	for i, l := range p.lives {
		if !old(l) {
			p.lives[kept] = l
			moved[i] = kept
			kept++
		}
	}
	p.lives = p.lives[:kept]
	for _, n := range p.nodes {
		if n.up {
			n.life = moved[n.life]
		}
	}
}

// reliabilityWindow is how far back reliability.Assess looks by default.
const reliabilityWindow = 24 * time.Hour

func hoursDur(h float64) time.Duration {
	return time.Duration(math.Ceil(h * float64(time.Hour)))
}

// Idle retries: while jobs wait and nothing changes, the scheduler runs
// again after idleCycles cycles, then twice as long each time it places
// nothing, up to maxIdleCycles; a budget or the clock may change its mind.
const (
	idleCycles    = 10
	maxIdleCycles = 120
)

func (w *world) run() {
	cycle := w.t.Cycle
	w.idle = idleCycles * cycle
	for !w.finished() {
		next := w.until
		if len(w.events) > 0 {
			at := w.events[0].at
			if k := at.Sub(w.t.Start); k > 0 {
				at = w.t.Start.Add((k + cycle - 1) / cycle * cycle)
			}
			next = minTime(next, at)
		}
		if len(w.queued) > 0 {
			next = minTime(next, w.lastSched.Add(w.idle))
		}
		if !next.After(w.lastSched) && w.rep.Cycles > 0 {
			next = w.lastSched.Add(cycle)
		}
		if next.After(w.until) {
			w.advance(w.until)
			break
		}
		w.advance(next)
		if changed := w.dirty; changed || (len(w.queued) > 0 && !w.now.Before(w.lastSched.Add(w.idle))) {
			if w.schedule() || changed {
				w.idle = idleCycles * cycle
			} else {
				w.idle = min(2*w.idle, maxIdleCycles*cycle)
			}
			if w.stalled() {
				break
			}
		}
		if !w.now.Before(w.until) {
			break
		}
	}
	w.finish()
}

// stalled says whether the replay can stop early: jobs wait, but nothing
// runs and no job, node or repair is still to come, so nothing but the
// clock can change, and the clock only brings deadlines closer.
func (w *world) stalled() bool {
	return w.arrivals == 0 && len(w.running) == 0 && w.coming == 0 && !w.dirty
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (w *world) finished() bool {
	return w.arrivals == 0 && len(w.queued) == 0 && len(w.running) == 0
}

// advance handles every event up to and at t, then sets the clock to t.
func (w *world) advance(t time.Time) {
	for len(w.events) > 0 && !w.events[0].at.After(t) {
		ev := heap.Pop(&w.events).(*event)
		if ev.kind == evFleet || ev.kind == evRepair {
			w.coming--
		}
		w.now = ev.at
		w.handle(ev)
	}
	w.now = t
}

func (w *world) handle(ev *event) {
	switch ev.kind {
	case evArrive:
		ev.job.state = jobQueued
		w.queued = append(w.queued, ev.job)
		w.arrivals--
		w.dirty = true
	case evFleet:
		w.fleet(ev.fleet)
	case evLoss:
		if ev.node.gen == ev.gen && ev.node.up {
			w.nodeDown(ev.node, downLost)
		}
	case evRepair:
		if n := ev.node; n.gen == ev.gen && !n.up && !n.removed && !n.pool.gone {
			w.nodeUp(n)
		}
	case evFinish:
		if !ev.att.ended {
			w.endAttempt(ev.att, core.AttemptSucceeded)
		}
	}
}

func (w *world) fleet(ev *Event) {
	p := w.poolByName[ev.Pool]
	switch {
	case ev.Add != nil:
		p.gone = false
		w.addNodes(p, *ev.Add)
	case ev.Remove > 0 || ev.Drain > 0:
		left, cause := ev.Remove, downRemoved
		if ev.Drain > 0 {
			left, cause = ev.Drain, downDrained
		}
		for i := len(p.nodes) - 1; i >= 0 && left > 0; i-- {
			if n := p.nodes[i]; !n.removed {
				w.nodeDown(n, cause)
				left--
			}
		}
	case ev.Vanish:
		for _, n := range p.nodes {
			w.nodeDown(n, downRemoved)
		}
		p.gone = true
		w.rep.PoolsVanished++
	}
	w.dirty = true
}

// schedule runs one cycle: snapshot, plan, re-check, apply. It reports
// whether anything was placed or preempted.
func (w *world) schedule() bool {
	w.dirty = false
	w.lastSched = w.now
	w.rep.Cycles++
	w.judge()
	plan := w.placer(w.snapshot())
	if plan == nil {
		return false
	}
	attempts := w.rep.Attempts + w.rep.Preemptions
	for _, pr := range plan.Preemptions {
		a := w.attempts[pr.AttemptID]
		if a == nil || a.ended {
			w.violate(Violation{At: w.now, Kind: ViolPlan, Job: pr.JobID, Detail: "preempts unknown attempt " + pr.AttemptID})
			continue
		}
		w.rep.Preemptions++
		w.endAttempt(a, core.AttemptPreempted)
	}
	w.committed = map[string]float64{}
	for _, pl := range plan.Placements {
		vs, g := w.check(pl)
		for _, v := range vs {
			w.violate(v)
		}
		if g != nil {
			w.start(g)
			w.committed[g.job.spec.Project] += g.predicted
		}
	}
	for id, rs := range plan.Pending {
		if j := w.jobByID[id]; j != nil && j.state == jobQueued && len(rs) > 0 {
			j.pending = rs
		}
	}
	w.queued = slices.DeleteFunc(w.queued, func(j *job) bool { return j.state != jobQueued })
	// Applying the plan marked the world changed; that is this cycle's
	// doing, not news for the next, except that preempted jobs wait for
	// a place again.
	w.dirty = len(plan.Preemptions) > 0
	return w.rep.Attempts+w.rep.Preemptions > attempts
}

func summarize(rs []sched.Rejection) string {
	parts := make([]string, 0, min(len(rs), 4))
	for _, r := range rs[:min(len(rs), 4)] {
		parts = append(parts, r.String())
	}
	if len(rs) > 4 {
		parts = append(parts, fmt.Sprintf("and %d more", len(rs)-4))
	}
	return strings.Join(parts, "; ")
}

func (w *world) violate(v Violation) {
	w.violations[v.Kind]++
	w.rep.Violations++
	if len(w.rep.ViolationSamples) < 20 {
		w.rep.ViolationSamples = append(w.rep.ViolationSamples, v)
	}
}

// snapshot is what the scheduler sees now. Its slices are reused from
// cycle to cycle (the scheduler keeps nothing of a snapshot), and its
// capacity maps are the nodes' own: the simulator never changes a map in
// place, it replaces it, so a snapshot stays as it was.
func (w *world) snapshot() *sched.Snapshot {
	s := &w.snap
	*s = sched.Snapshot{Now: w.now, Policy: w.t.Policy, Throughput: w.t.Throughput, Projects: s.Projects,
		Pools: s.Pools[:0], Nodes: s.Nodes[:0], Queued: s.Queued[:0], Running: s.Running[:0]}
	if s.Projects == nil {
		s.Projects = map[string]sched.Project{}
	}
	clear(s.Projects)
	for _, p := range w.pools {
		// A vanished pool stays, with no ready nodes, as it stays in the
		// store when its agents stop calling in.
		s.Pools = append(s.Pools, p.sched())
		for _, n := range p.nodes {
			if n.up {
				s.Nodes = append(s.Nodes, sched.Node{ID: n.id, PoolID: p.def.Name, Free: n.free, Total: n.total})
			}
		}
	}
	for _, j := range w.queued {
		if j.state == jobQueued {
			s.Queued = append(s.Queued, sched.Job{ID: j.def.ID, Project: j.spec.Project, Spec: j.spec, CreatedAt: j.created})
		}
	}
	for _, a := range w.running {
		s.Running = append(s.Running, sched.Running{
			AttemptID: a.id, JobID: a.job.def.ID, Project: a.job.spec.Project, Priority: a.job.spec.Priority,
			PoolID: a.pool.def.Name, NodeIDs: a.nodeIDs, Resources: a.job.spec.Resources, GPUModel: a.model,
			StartedAt: a.start, PricePerHour: a.price,
			// The end the attempt is heading for if nothing fails.
			EstEnd: a.start.Add(hoursDur((a.job.total - a.from) / a.speed)),
		})
	}
	for name, pr := range w.projects {
		if pr.budget > 0 || pr.weight > 0 {
			s.Projects[name] = sched.Project{Weight: pr.weight, Budget: pr.budget, Spent: w.spent(pr)}
		}
	}
	return s
}

func cloneCap(c sched.Capacity) sched.Capacity {
	if c.GPUs != nil {
		m := make(map[string]int, len(c.GPUs))
		for k, v := range c.GPUs {
			m[k] = v
		}
		c.GPUs = m
	}
	return c
}

// spent is what a project has paid for ended attempts plus what its
// running attempts have cost so far.
func (w *world) spent(pr *project) float64 {
	s := pr.settled
	for _, a := range w.running {
		if a.job.spec.Project == pr.name {
			s += a.price * w.now.Sub(a.start).Hours()
		}
	}
	return s
}

// start applies a checked placement.
func (w *world) start(g *grant) {
	j := g.job
	w.attemptSeq++
	a := &attempt{
		id: fmt.Sprintf("att-%06d", w.attemptSeq), job: j, pool: g.pool, nodes: g.nodes, taken: g.taken,
		price: g.price, speed: g.speed, start: w.now, from: j.done,
	}
	for i, n := range g.nodes {
		a.nodeIDs = append(a.nodeIDs, n.id)
		// Take exactly what the check granted.
		n.free.MilliCPUs -= j.spec.Resources.MilliCPUs
		n.free.MemoryBytes -= j.spec.Resources.MemoryBytes
		if len(g.taken[i]) > 0 {
			n.free = cloneCap(n.free)
			for m, c := range g.taken[i] {
				n.free.GPUs[m] -= c
				a.gpus += c
			}
		}
		if !slices.Contains(n.attempts, a) {
			n.attempts = append(n.attempts, a)
		}
	}
	a.model = slowestModel(w.t.Throughput, g.taken)
	j.state = jobRunning
	j.attempts++
	w.running = append(w.running, a)
	w.attempts[a.id] = a
	w.rep.Attempts++
	g.pool.rep.Attempts++
	w.push(&event{at: w.now.Add(hoursDur(j.remaining() / a.speed)), kind: evFinish, att: a})
}

// slowestModel names the GPU model that sets a gang's pace.
func slowestModel(thr map[string]float64, taken []map[string]int) string {
	best, bestSpeed := "", math.Inf(1)
	for _, t := range taken {
		for _, m := range sortedKeys(t) {
			if s := speed(thr, map[string]int{m: 1}); s < bestSpeed {
				best, bestSpeed = m, s
			}
		}
	}
	return best
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// endAttempt ends an attempt in the given state: it is metered, its
// capacity freed, and its job moves on as the control plane's retry rules
// say (core.JobAfterAttempt).
func (w *world) endAttempt(a *attempt, how core.AttemptState) {
	if a.ended {
		return
	}
	a.ended = true
	j := a.job
	elapsed := w.now.Sub(a.start).Hours()
	cost := a.price * elapsed
	w.rep.Cost += cost
	j.cost += cost
	a.pool.rep.Cost += cost
	a.pool.rep.GPUHoursBusy += elapsed * float64(a.gpus)
	w.rep.GPUHoursBusy += elapsed * float64(a.gpus)
	if pr := w.projects[j.spec.Project]; pr != nil {
		pr.settled += cost
	}
	for i, n := range a.nodes {
		giveRank(&n.free, j.spec.Resources, a.taken[i])
		n.attempts = slices.DeleteFunc(n.attempts, func(x *attempt) bool { return x == a })
	}
	w.running = slices.DeleteFunc(w.running, func(x *attempt) bool { return x == a })
	delete(w.attempts, a.id)

	var every float64
	if j.spec.Checkpoint != nil {
		every = time.Duration(j.spec.Checkpoint.Every).Hours()
	}
	switch how {
	case core.AttemptSucceeded:
		j.done = j.total
	case core.AttemptPreempted:
		// SIGTERM and a grace period: the job checkpoints on its way out,
		// if it checkpoints at all.
		if every > 0 {
			j.done = min(a.from+a.speed*elapsed, j.total)
		} else {
			j.done = 0
			w.rep.GPUHoursLostPreempted += elapsed * float64(a.gpus)
		}
	case core.AttemptLost:
		saved := 0.0 // hours into the attempt of its last checkpoint
		if every > 0 {
			saved = math.Floor(elapsed/every) * every
			j.done = min(a.from+a.speed*saved, j.total)
		} else {
			j.done = 0
		}
		lost := elapsed - saved
		w.rep.GPUHoursLost += lost * float64(a.gpus)
		w.rep.CostLost += lost * a.price
		w.rep.AttemptsLost++
		a.pool.rep.AttemptsLost++
	}
	state, used, reason := core.JobAfterAttempt(how, false, j.spec.Retries, j.retries)
	j.retries = used
	switch state {
	case core.JobQueued:
		j.state = jobQueued
		j.reason = reason
		j.spec.Estimate = spec.Duration(hoursDur(j.remaining()))
		w.queued = append(w.queued, j)
	case core.JobSucceeded:
		j.state, j.ended = jobSucceeded, w.now
	default:
		j.state, j.ended, j.reason = jobFailed, w.now, reason
	}
	w.dirty = true
}

// finish stops the replay: running attempts are metered up to now.
func (w *world) finish() {
	for _, a := range slices.Clone(w.running) {
		// Meter without ending the job: it is unfinished.
		elapsed := w.now.Sub(a.start).Hours()
		cost := a.price * elapsed
		w.rep.Cost += cost
		a.job.cost += cost
		a.pool.rep.Cost += cost
		a.pool.rep.GPUHoursBusy += elapsed * float64(a.gpus)
		w.rep.GPUHoursBusy += elapsed * float64(a.gpus)
		if pr := w.projects[a.job.spec.Project]; pr != nil {
			pr.settled += cost
		}
		a.ended = true
	}
	w.running = nil
}

// Events.

type evKind int

const (
	evArrive evKind = iota
	evFleet
	evLoss
	evRepair
	evFinish
)

type event struct {
	at    time.Time
	seq   int
	kind  evKind
	job   *job
	fleet *Event
	node  *node
	gen   int
	att   *attempt
}

func (w *world) push(ev *event) {
	if ev.kind == evFleet || ev.kind == evRepair {
		w.coming++
	}
	w.seq++
	ev.seq = w.seq
	heap.Push(&w.events, ev)
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if c := q[i].at.Compare(q[j].at); c != 0 {
		return c < 0
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return ev
}
