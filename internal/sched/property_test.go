package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

var (
	propModels  = []string{"a100", "rtx3090", "h100", "t4"}
	propRegions = []string{"eu", "us", "asia"}
	propPrios   = []core.Priority{core.PriorityLow, 10, core.PriorityNormal, core.PriorityHigh}
	propProjs   = []string{"vision", "speech", "nlp"}
)

// randomSnapshot builds a small, consistent snapshot: running attempts fit
// the nodes they hold, and Free is Total minus what they hold. It has
// minPools to maxPools pools; many pools make a fleet of more slot types
// than maxEagerTypes, whose exchanges are lazy.
func randomSnapshot(r *rand.Rand, minPools, maxPools int) *Snapshot {
	s := &Snapshot{Now: t0, Projects: map[string]Project{}}
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	for i := range minPools + r.IntN(maxPools-minPools+1) {
		p := Pool{ID: fmt.Sprintf("pool-%d", i), Name: fmt.Sprintf("p%d", i), Region: pick(propRegions),
			Tier: core.Tier(r.IntN(4)), State: PoolActive, LossRate: []float64{0, 0, 0.01, 0.2}[r.IntN(4)],
			Interconnect: Interconnect{Gbps: []float64{10, 25, 100, 400}[r.IntN(4)], MultiNode: r.IntN(2) == 0},
			Prices:       Prices{GPUHour: map[string]float64{}, CPUHour: r.Float64() * 0.05, MemGiBHour: r.Float64() * 0.01}}
		switch r.IntN(16) {
		case 0:
			p.State = "draining"
		case 1:
			p.State = "quarantined"
		}
		for _, m := range propModels {
			if r.IntN(5) > 0 {
				p.Prices.GPUHour[m] = 0.1 + r.Float64()*4
			}
		}
		s.Pools = append(s.Pools, p)
	}
	if len(s.Pools) > 0 {
		unknownTotal := map[string]bool{}
		for i := range 2 + r.IntN(8*len(s.Pools)+12) {
			n := Node{ID: fmt.Sprintf("node-%d", i), PoolID: s.Pools[r.IntN(len(s.Pools))].ID}
			n.Total = Capacity{MilliCPUs: []int64{2000, 4000, 8000, 16000, 2500}[r.IntN(5)], MemoryBytes: []int64{8, 16, 64}[r.IntN(3)] * gib}
			if r.IntN(2) == 0 {
				n.Total.GPUs = map[string]int{pick(propModels): 1 + r.IntN(8)}
				if r.IntN(5) == 0 {
					n.Total.GPUs[pick(propModels)] = 1 + r.IntN(2)
				}
			}
			n.Free = n.Total.clone()
			unknownTotal[n.ID] = r.IntN(10) == 0
			s.Nodes = append(s.Nodes, n)
		}
		for i := range r.IntN(10) {
			p := s.Pools[r.IntN(len(s.Pools))]
			ru := Running{AttemptID: fmt.Sprintf("att-%d", i), JobID: fmt.Sprintf("run-%d", i), Project: pick(propProjs),
				Priority: propPrios[r.IntN(len(propPrios))], PoolID: p.ID, StartedAt: t0.Add(-time.Duration(r.IntN(600)) * time.Minute),
				Resources: core.Resources{MilliCPUs: int64(500 * (1 + r.IntN(8))), MemoryBytes: int64(1+r.IntN(16)) * gib}}
			if r.IntN(3) > 0 {
				ru.EstEnd = t0.Add(time.Duration(r.IntN(600)-60) * time.Minute)
			}
			ru.Stopping = r.IntN(8) == 0
			if r.IntN(2) == 0 {
				ru.Resources.GPUs = 1 + r.IntN(2)
				ru.GPUModel = pick(propModels)
			}
			for range 1 + r.IntN(2) {
				for k := range s.Nodes {
					n := &s.Nodes[(k+i)%len(s.Nodes)]
					if n.PoolID == p.ID && n.Free.MilliCPUs >= ru.Resources.MilliCPUs && n.Free.MemoryBytes >= ru.Resources.MemoryBytes &&
						n.Free.GPUs[ru.GPUModel] >= ru.Resources.GPUs {
						n.Free.MilliCPUs -= ru.Resources.MilliCPUs
						n.Free.MemoryBytes -= ru.Resources.MemoryBytes
						if ru.Resources.GPUs > 0 {
							n.Free.GPUs[ru.GPUModel] -= ru.Resources.GPUs
						}
						ru.NodeIDs = append(ru.NodeIDs, n.ID)
						break
					}
				}
			}
			if len(ru.NodeIDs) > 0 {
				s.Running = append(s.Running, ru)
			}
		}
		for i := range s.Nodes {
			if unknownTotal[s.Nodes[i].ID] {
				s.Nodes[i].Total = Capacity{}
			}
		}
	}
	for _, name := range propProjs {
		switch r.IntN(3) {
		case 0:
			s.Projects[name] = Project{Budget: 5 + r.Float64()*200, Spent: r.Float64() * 50, Weight: r.Float64() * 3}
		case 1:
			s.Projects[name] = Project{Weight: 1 + r.Float64()}
		}
	}
	if r.IntN(4) == 0 {
		for range 1 + r.IntN(5) {
			rule := PolicyRule{Classification: core.Classification(r.IntN(4)), MinTier: core.Tier(r.IntN(4))}
			if r.IntN(2) == 0 {
				rule.Regions = []string{pick(propRegions)}
			}
			s.Policy.Rules = append(s.Policy.Rules, rule)
		}
	}
	if r.IntN(3) == 0 {
		s.Throughput = map[string]float64{"a100": 1, "h100": 2.5, "t4": 0.2}
	}
	for i := range r.IntN(4 * (len(s.Nodes)/len(propModels) + 4)) {
		sp := &spec.Job{Name: fmt.Sprintf("job-%d", i), Project: pick(propProjs), Nodes: 1,
			Resources:      core.Resources{MilliCPUs: int64(500 * (1 + r.IntN(12))), MemoryBytes: int64(1+r.IntN(12)) * gib},
			Classification: []core.Classification{0, 0, 0, 1, 1, 2, 3}[r.IntN(7)], Priority: propPrios[r.IntN(len(propPrios))],
			Estimate: spec.Duration(time.Duration(r.IntN(1200)) * time.Minute)}
		if r.IntN(4) == 0 {
			sp.Nodes = 2 + r.IntN(3)
		}
		if r.IntN(5) < 3 {
			sp.Resources.GPUs = 1 + r.IntN(4)
			for _, m := range propModels {
				if r.IntN(3) == 0 {
					sp.Resources.GPUModels = append(sp.Resources.GPUModels, m)
				}
			}
		}
		if r.IntN(5) == 0 {
			sp.Placement.Regions = []string{pick(propRegions)}
		}
		if r.IntN(5) == 0 {
			sp.Placement.MinTrust = core.Tier(r.IntN(4))
		}
		if r.IntN(3) == 0 {
			sp.Placement.MaxPricePerHour = 0.5 + r.Float64()*20
		}
		if r.IntN(20) == 0 && len(s.Pools) > 0 {
			sp.Placement.Pools = []string{s.Pools[r.IntN(len(s.Pools))].Name}
		}
		if r.IntN(3) == 0 {
			sp.Deadline = spec.Duration(time.Duration(1+r.IntN(24)) * time.Hour)
		}
		if r.IntN(2) == 0 {
			sp.Checkpoint = &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(time.Duration(1+r.IntN(60)) * time.Minute)}
		}
		if r.IntN(3) == 0 {
			sp.Interconnect = &spec.Interconnect{MinGbps: []float64{10, 50, 200}[r.IntN(3)]}
		}
		if r.IntN(2) == 0 {
			sp.Objective = spec.ObjectiveTime
		}
		s.Queued = append(s.Queued, Job{ID: fmt.Sprintf("job-%d", i), Project: sp.Project, Spec: sp,
			CreatedAt: t0.Add(-time.Duration(r.IntN(300)) * time.Minute)})
	}
	return s
}

// violations checks a plan against its snapshot without the scheduler's
// help: everything here is recomputed from the snapshot's own fields.
func violations(s *Snapshot, p *Plan) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	pools := map[string]Pool{}
	names := map[string]bool{}
	for _, pl := range s.Pools {
		pools[pl.ID] = pl
		names[pl.Name] = true
	}
	nodes := map[string]Node{}
	for _, n := range s.Nodes {
		nodes[n.ID] = n
	}
	jobs := map[string]Job{}
	for _, j := range s.Queued {
		jobs[j.ID] = j
	}
	policy := s.Policy
	if len(policy.Rules) == 0 {
		policy = DefaultPolicy()
	}
	type use struct {
		cpu, mem int64
		gpus     map[string]int
	}
	used := map[string]*use{}
	spent := map[string]float64{}
	placed := map[string]bool{}
	for _, pl := range p.Placements {
		j, ok := jobs[pl.JobID]
		if !ok || placed[pl.JobID] {
			fail("placement of unknown or twice-placed job %s", pl.JobID)
			continue
		}
		placed[pl.JobID] = true
		sp := j.Spec
		pool, ok := pools[pl.PoolID]
		if !ok || pool.State != PoolActive {
			fail("%s: placed on pool %s, which is unknown or not active", j.ID, pl.PoolID)
			continue
		}
		if len(pl.NodeIDs) != max(sp.Nodes, 1) {
			fail("%s: %d ranks placed of %d", j.ID, len(pl.NodeIDs), sp.Nodes)
		}
		if sp.Nodes > 1 {
			need := float64(spec.DefaultGangGbps)
			if sp.Interconnect != nil {
				need = sp.Interconnect.MinGbps
			}
			if !pool.Interconnect.MultiNode || pool.Interconnect.Gbps < need {
				fail("%s: gang on pool %s (%+v)", j.ID, pool.Name, pool.Interconnect)
			}
		}
		allowed := false
		for _, rule := range policy.Rules {
			if rule.Classification == sp.Classification && pool.Tier >= rule.MinTier &&
				(len(rule.Regions) == 0 || slices.Contains(rule.Regions, pool.Region)) {
				allowed = true
			}
		}
		if !allowed {
			fail("%s: %s data on pool %s (tier %s, region %s), which the policy forbids", j.ID, sp.Classification, pool.Name, pool.Tier, pool.Region)
		}
		if pool.Tier < sp.Placement.MinTrust || len(sp.Placement.Regions) > 0 && !slices.Contains(sp.Placement.Regions, pool.Region) ||
			len(sp.Placement.Pools) > 0 && !slices.Contains(sp.Placement.Pools, pool.Name) {
			fail("%s: pool %s is outside the job's placement %+v", j.ID, pool.Name, sp.Placement)
		}
		if sp.Resources.GPUs > 0 {
			if pl.GPUModel == "" || len(sp.Resources.GPUModels) > 0 && !slices.Contains(sp.Resources.GPUModels, pl.GPUModel) {
				fail("%s: GPU model %q is not among %v", j.ID, pl.GPUModel, sp.Resources.GPUModels)
			}
		} else if pl.GPUModel != "" {
			fail("%s: a job without GPUs holds %s", j.ID, pl.GPUModel)
		}
		for _, id := range pl.NodeIDs {
			n, ok := nodes[id]
			if !ok || n.PoolID != pool.ID {
				fail("%s: rank on node %s outside pool %s", j.ID, id, pool.Name)
				continue
			}
			u := used[id]
			if u == nil {
				u = &use{gpus: map[string]int{}}
				used[id] = u
			}
			u.cpu += sp.Resources.MilliCPUs
			u.mem += sp.Resources.MemoryBytes
			u.gpus[pl.GPUModel] += sp.Resources.GPUs
		}
		e := Predict(pool, sp, pl.GPUModel, s.Throughput)
		if !approx(e.EstCost, pl.EstCost) || !approx(e.PricePerHour, pl.PricePerHour) || !approx(e.EstHours, pl.EstHours) {
			fail("%s: placement %+v, Predict says %+v", j.ID, pl, e)
		}
		if c := sp.Placement.MaxPricePerHour; c > 0 && e.PricePerHour > c {
			fail("%s: $%.2f/h over its cap $%.2f/h", j.ID, e.PricePerHour, c)
		}
		if sp.Deadline > 0 && e.Finish(s.Now).After(j.CreatedAt.Add(time.Duration(sp.Deadline))) {
			fail("%s: finishes at %v, after its deadline", j.ID, e.Finish(s.Now))
		}
		spent[j.Project] += e.EstCost
	}
	for id, u := range used {
		n := nodes[id]
		if u.cpu > n.Free.MilliCPUs || u.mem > n.Free.MemoryBytes {
			fail("node %s over capacity: %d CPU, %d memory used of %+v", id, u.cpu, u.mem, n.Free)
		}
		for m, g := range u.gpus {
			if m != "" && g > n.Free.GPUs[m] {
				fail("node %s: %d %s GPUs used of %d free", id, g, m, n.Free.GPUs[m])
			}
		}
	}
	for name, cost := range spent {
		if pr := s.Projects[name]; pr.Budget > 0 && pr.Spent+cost > pr.Budget*(1+1e-9) {
			fail("project %s over budget: %.2f spent + %.2f placed > %.2f", name, pr.Spent, cost, pr.Budget)
		}
	}
	for _, j := range s.Queued {
		rs, pending := p.Pending[j.ID]
		switch {
		case placed[j.ID] && pending:
			fail("%s both placed and pending", j.ID)
		case !placed[j.ID] && !pending:
			fail("%s neither placed nor pending", j.ID)
		case pending && len(s.Pools) > 0 && j.Spec != nil:
			seen := map[string]bool{}
			for _, r := range rs {
				if r.Reason == "" || !names[r.Pool] || seen[r.Pool] {
					fail("%s: bad rejection %+v", j.ID, r)
				}
				seen[r.Pool] = true
			}
			if len(seen) != len(names) {
				fail("%s: reasons for %d of %d pools: %v", j.ID, len(seen), len(names), rs)
			}
		}
	}
	running := map[string]Running{}
	for _, r := range s.Running {
		running[r.AttemptID] = r
	}
	preempted := map[string]bool{}
	for _, pe := range p.Preemptions {
		r, ok := running[pe.AttemptID]
		j, okj := jobs[pe.For]
		switch {
		case !ok || preempted[pe.AttemptID] || r.Stopping:
			fail("preemption of an unknown, twice-preempted or already stopping attempt %s", pe.AttemptID)
		case !okj || r.Priority >= j.Spec.Priority:
			fail("attempt %s (priority %d) preempted for %s", pe.AttemptID, r.Priority, pe.For)
		case placed[pe.For] || !strings.Contains(fmt.Sprint(p.Pending[pe.For]), "preempted attempt"):
			fail("%s preempted for, but not waiting for it: %v", pe.For, p.Pending[pe.For])
		}
		preempted[pe.AttemptID] = true
	}
	return bad
}

func TestScheduleProperties(t *testing.T) {
	t.Run("small fleets", func(t *testing.T) { testProperties(t, 2500, 0, 6) })
	t.Run("many pools", func(t *testing.T) { testProperties(t, 200, 12, 20) })
}

func testProperties(t *testing.T, cases, minPools, maxPools int) {
	placements, preemptions, pending := 0, 0, 0
	for seed := range uint64(cases) {
		s := randomSnapshot(rand.New(rand.NewPCG(seed, 1)), minPools, maxPools)
		plan := Schedule(s)
		for _, v := range violations(s, plan) {
			t.Errorf("seed %d: %s", seed, v)
		}
		if diff := cmp.Diff(randomSnapshot(rand.New(rand.NewPCG(seed, 1)), minPools, maxPools), s); diff != "" {
			t.Fatalf("seed %d: Schedule modified its snapshot (-before +after):\n%s", seed, diff)
		}
		if diff := cmp.Diff(plan, Schedule(s)); diff != "" {
			t.Fatalf("seed %d: a second run differs (-first +second):\n%s", seed, diff)
		}
		for _, j := range s.Queued[:min(len(s.Queued), 2)] {
			if opts := Options(s, j); len(opts) != len(s.Pools) {
				t.Fatalf("seed %d: %d options for %d pools", seed, len(opts), len(s.Pools))
			}
		}
		placements += len(plan.Placements)
		preemptions += len(plan.Preemptions)
		pending += len(plan.Pending)
	}
	// The generator must exercise every outcome, or the properties prove
	// little.
	t.Logf("over %d snapshots: %d placements, %d preemptions, %d pending jobs", cases, placements, preemptions, pending)
	if placements < cases || preemptions < cases/50 || pending < cases {
		t.Errorf("over %d snapshots: %d placements, %d preemptions, %d pending jobs; the generator is too tame",
			cases, placements, preemptions, pending)
	}
}

// FuzzSchedule checks the same properties on snapshots grown from the
// fuzzer's seeds.
func FuzzSchedule(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed, uint64(7))
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		s := randomSnapshot(rand.New(rand.NewPCG(a, b)), 0, 16)
		for _, v := range violations(s, Schedule(s)) {
			t.Error(v)
		}
	})
}

func TestViolationsCatchesBreakage(t *testing.T) {
	// The checker must see a broken plan; a checker that passes anything
	// would make the property test vacuous.
	s := &Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 2, nil)},
		Queued: []Job{mkJob("j", withCPUs(4), func(j *spec.Job) { j.Classification = core.ClassRestricted })}}
	bad := &Plan{Placements: []Placement{{JobID: "j", PoolID: "p", NodeIDs: []string{"n1"}, EstHours: 1}}}
	got := violations(s, bad)
	for _, want := range []string{"over capacity", "the policy forbids"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("violations %q lack %q", got, want)
		}
	}
}
