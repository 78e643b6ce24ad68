package sched

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

// placedJobs lists the plan's placed jobs in the order the cycle placed them.
func placedJobs(p *Plan) []string {
	var ids []string
	for _, pl := range p.Placements {
		ids = append(ids, pl.JobID)
	}
	return ids
}

func at(j Job, d time.Duration) Job {
	j.CreatedAt = t0.Add(d)
	return j
}

// holding is a running attempt of project proj holding cpus CPUs on each
// of its nodes.
func holding(id, proj string, prio core.Priority, cpus int64, nodes ...string) Running {
	return Running{AttemptID: id, JobID: "job-" + id, Project: proj, Priority: prio, PoolID: "p", NodeIDs: nodes,
		Resources: core.Resources{MilliCPUs: cpus * 1000, MemoryBytes: gib}, StartedAt: t0.Add(-time.Hour)}
}

func TestFairShare(t *testing.T) {
	fourNodes := []Node{mkNode("n1", "p", 4, nil), mkNode("n2", "p", 4, nil), mkNode("n3", "p", 4, nil), mkNode("n4", "p", 4, nil)}
	tests := []struct {
		name     string
		nodes    []Node
		running  []Running
		projects map[string]Project
		queued   []Job
		want     []string
	}{
		{
			name: "the project holding less goes first, though its job is younger",
			// vision holds 8 of 24 CPUs; speech holds nothing.
			nodes:   append(slices.Clone(fourNodes), busy(mkNode("n5", "p", 8, nil), 0, 64*gib, nil)),
			running: []Running{holding("a1", "vision", core.PriorityNormal, 8, "n5")},
			queued: []Job{
				mkJob("v1", withCPUs(4)),
				at(mkJob("s1", withCPUs(4), withProject("speech")), time.Minute),
			},
			want: []string{"s1", "v1"},
		},
		{
			name: "shares update as the cycle places jobs",
			// All of vision's jobs are older, yet the two projects alternate.
			nodes: fourNodes,
			queued: []Job{
				mkJob("v1", withCPUs(4)), at(mkJob("v2", withCPUs(4)), time.Second), at(mkJob("v3", withCPUs(4)), 2*time.Second),
				at(mkJob("s1", withCPUs(4), withProject("speech")), time.Minute),
				at(mkJob("s2", withCPUs(4), withProject("speech")), 2*time.Minute),
			},
			want: []string{"v1", "s1", "v2", "s2"},
		},
		{
			name: "a heavier weight earns a larger share",
			// vision holds twice what speech holds but weighs four times as much.
			nodes: append(slices.Clone(fourNodes), busy(mkNode("n5", "p", 12, nil), 0, 64*gib, nil)),
			running: []Running{
				holding("a1", "vision", core.PriorityNormal, 8, "n5"),
				holding("a2", "speech", core.PriorityNormal, 4, "n5"),
			},
			projects: map[string]Project{"vision": {Weight: 4}},
			queued: []Job{
				at(mkJob("v1", withCPUs(4)), time.Minute),
				mkJob("s1", withCPUs(4), withProject("speech")),
			},
			want: []string{"v1", "s1"},
		},
		{
			name:    "priority comes before fair share",
			nodes:   append(slices.Clone(fourNodes), busy(mkNode("n5", "p", 8, nil), 0, 64*gib, nil)),
			running: []Running{holding("a1", "vision", core.PriorityLow, 8, "n5")},
			queued: []Job{
				mkJob("s1", withCPUs(4), withProject("speech")),
				at(mkJob("v1", withCPUs(4), withPrio(core.PriorityHigh)), time.Minute),
			},
			want: []string{"v1", "s1"},
		},
		{
			name: "GPUs are a resource of their own",
			// vision holds 1 of 2 GPUs (half the fleet's GPUs), speech 6 of
			// 16 CPUs (a little over a third): speech's dominant share is
			// smaller.
			nodes: []Node{
				busy(mkNode("g1", "p", 8, map[string]int{"a100": 2}), 6, 64*gib, map[string]int{"a100": 1}),
				busy(mkNode("c1", "p", 8, nil), 0, 64*gib, nil),
			},
			running: []Running{
				{AttemptID: "a1", Project: "vision", Priority: core.PriorityNormal, PoolID: "p", NodeIDs: []string{"g1"},
					Resources: core.Resources{MilliCPUs: 1000, MemoryBytes: gib, GPUs: 1}, GPUModel: "a100"},
				holding("a2", "speech", core.PriorityNormal, 6, "c1"),
			},
			queued: []Job{
				mkJob("v1", withCPUs(4)),
				at(mkJob("s1", withCPUs(4), withProject("speech")), time.Minute),
			},
			want: []string{"s1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: tt.nodes, Running: tt.running,
				Projects: tt.projects, Queued: tt.queued}
			got := placedJobs(Schedule(s))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("placed in order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPreemption(t *testing.T) {
	newer := func(r Running, d time.Duration) Running { r.StartedAt = r.StartedAt.Add(d); return r }
	tests := []struct {
		name        string
		nodes       []Node
		running     []Running
		queued      []Job
		wantPreempt []string // attempt IDs
		wantPlaced  []string
		wantPending map[string]string
	}{
		{
			name:        "a higher job preempts a lower one and waits",
			nodes:       []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil)},
			running:     []Running{holding("low", "speech", core.PriorityLow, 4, "n1")},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"low"},
			wantPending: map[string]string{"high": "p: waiting for 1 preempted attempt to stop"},
		},
		{
			name:        "never for a job of the same priority",
			nodes:       []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil)},
			running:     []Running{holding("same", "speech", core.PriorityNormal, 4, "n1")},
			queued:      []Job{mkJob("j", withCPUs(4))},
			wantPending: map[string]string{"j": "p: no node has 4 CPUs free"},
		},
		{
			name:        "never work of higher priority",
			nodes:       []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil)},
			running:     []Running{holding("high", "speech", core.PriorityHigh, 4, "n1")},
			queued:      []Job{mkJob("j", withCPUs(4))},
			wantPending: map[string]string{"j": "p: no node has 4 CPUs free"},
		},
		{
			name: "fewest attempts",
			nodes: []Node{
				busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil),
				busy(mkNode("n2", "p", 4, nil), 0, 32*gib, nil),
			},
			running: []Running{
				holding("small1", "speech", core.PriorityLow, 2, "n1"),
				holding("small2", "speech", core.PriorityLow, 2, "n1"),
				holding("big", "speech", core.PriorityNormal, 4, "n2"),
			},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"big"},
			wantPending: map[string]string{"high": "waiting for 1 preempted attempt to stop"},
		},
		{
			name: "then the lowest priority",
			nodes: []Node{
				busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil),
				busy(mkNode("n2", "p", 4, nil), 0, 32*gib, nil),
			},
			running: []Running{
				holding("p20", "speech", 20, 4, "n1"),
				holding("p10", "speech", 10, 4, "n2"),
			},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"p10"},
		},
		{
			name: "then the newest",
			nodes: []Node{
				busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil),
				busy(mkNode("n2", "p", 4, nil), 0, 32*gib, nil),
			},
			running: []Running{
				holding("old", "speech", core.PriorityLow, 4, "n1"),
				newer(holding("new", "speech", core.PriorityLow, 4, "n2"), 30*time.Minute),
			},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"new"},
		},
		{
			name: "only as many as needed",
			nodes: []Node{
				busy(mkNode("n1", "p", 6, nil), 0, 32*gib, nil),
			},
			running: []Running{
				holding("a", "speech", core.PriorityLow, 2, "n1"),
				holding("b", "speech", core.PriorityLow, 2, "n1"),
				holding("c", "speech", core.PriorityLow, 2, "n1"),
			},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"a", "b"},
			wantPending: map[string]string{"high": "waiting for 2 preempted attempts to stop"},
		},
		{
			name:  "preempted capacity is not reused in the same cycle",
			nodes: []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil)},
			running: []Running{
				holding("low", "speech", core.PriorityLow, 4, "n1"),
			},
			queued: []Job{
				mkJob("high", withCPUs(4), withPrio(core.PriorityHigh)),
				at(mkJob("high2", withCPUs(4), withPrio(core.PriorityHigh)), time.Minute),
				mkJob("low2", withCPUs(1), withPrio(core.PriorityLow)),
			},
			wantPreempt: []string{"low"},
			wantPending: map[string]string{
				"high":  "waiting for 1 preempted attempt to stop",
				"high2": "p: no node has 4 CPUs free",
				"low2":  "p: no node has 1 CPU free",
			},
		},
		{
			name: "the free part of the room is held for the preempting job",
			// n1 has 2 CPUs free beside the low attempt's 2: the high job
			// needs both, so the low job queued after it may not take them.
			nodes:   []Node{busy(mkNode("n1", "p", 4, nil), 2, 32*gib, nil)},
			running: []Running{holding("low", "speech", core.PriorityLow, 2, "n1")},
			queued: []Job{
				mkJob("high", withCPUs(4), withPrio(core.PriorityHigh)),
				mkJob("low2", withCPUs(2), withPrio(core.PriorityLow)),
			},
			wantPreempt: []string{"low"},
			wantPending: map[string]string{
				"high": "waiting for 1 preempted attempt to stop",
				"low2": "p: no node has 2 CPUs free",
			},
		},
		{
			name: "a gang preempts across nodes of its pool",
			nodes: []Node{
				busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil),
				busy(mkNode("n2", "p", 4, nil), 0, 32*gib, nil),
				busy(mkNode("n3", "p", 4, nil), 0, 32*gib, nil),
			},
			running: []Running{
				holding("x", "speech", core.PriorityLow, 4, "n1"),
				holding("y", "speech", core.PriorityLow, 4, "n2"),
				holding("z", "speech", core.PriorityHigh, 4, "n3"),
			},
			queued:      []Job{mkJob("gang", withRanks(2), withCPUs(4), withPrio(core.PriorityHigh))},
			wantPreempt: []string{"x", "y"},
			wantPending: map[string]string{"gang": "waiting for 2 preempted attempts to stop"},
		},
		{
			name:        "preemption does not pay when the job fits elsewhere",
			nodes:       []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil), mkNode("n2", "p", 4, nil)},
			running:     []Running{holding("low", "speech", core.PriorityLow, 4, "n1")},
			queued:      []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))},
			wantPlaced:  []string{"high"},
			wantPending: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: tt.nodes, Running: tt.running, Queued: tt.queued}
			got := Schedule(s)
			var preempted []string
			for _, p := range got.Preemptions {
				preempted = append(preempted, p.AttemptID)
				if !strings.Contains(p.Reason, "preempted for job") || p.For == "" {
					t.Errorf("preemption %+v lacks its job or reason", p)
				}
			}
			slices.Sort(preempted)
			if diff := cmp.Diff(tt.wantPreempt, preempted); diff != "" {
				t.Errorf("preempted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPlaced, placedJobs(got)); diff != "" {
				t.Errorf("placed (-want +got):\n%s", diff)
			}
			for id, want := range tt.wantPending {
				if all := reasonsOf(got, id); !strings.Contains(all, want) {
					t.Errorf("job %s: reasons %q lack %q", id, all, want)
				}
			}
		})
	}
}

func TestBackfill(t *testing.T) {
	// n1 is busy for two more hours; n2 and n3 are free. The gang needs
	// n1 and n2 (n3 is too small for it), so it is held from 02:00 on n1
	// and n2. Jobs that end by then may use n2; longer ones only n3.
	nodes := []Node{
		busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil),
		mkNode("n2", "p", 4, nil),
		mkNode("n3", "p", 2, nil),
	}
	running := []Running{{
		AttemptID: "a1", JobID: "old", Project: "speech", Priority: core.PriorityHigh, PoolID: "p", NodeIDs: []string{"n1"},
		Resources: core.Resources{MilliCPUs: 4000, MemoryBytes: gib}, StartedAt: t0.Add(-time.Hour), EstEnd: t0.Add(2 * time.Hour),
	}}
	queued := []Job{
		mkJob("gang", withRanks(2), withCPUs(4)),
		at(mkJob("long", withCPUs(4), withEstimate(3*time.Hour)), time.Minute),
		at(mkJob("short", withCPUs(4), withEstimate(90*time.Minute)), 2*time.Minute),
		at(mkJob("long-small", withCPUs(2), withEstimate(3*time.Hour)), 3*time.Minute),
	}
	got := Schedule(&Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: nodes, Running: running, Queued: queued})
	want := []Placement{
		{JobID: "short", PoolID: "p", NodeIDs: []string{"n2"}, EstHours: 1.5},
		{JobID: "long-small", PoolID: "p", NodeIDs: []string{"n3"}, EstHours: 3},
	}
	if diff := cmp.Diff(want, got.Placements); diff != "" {
		t.Errorf("placements (-want +got):\n%s", diff)
	}
	if r, want := reasonsOf(got, "gang"), "p: room for 1 of 2 ranks (no node has 4 CPUs free); nodes are held for this job from 2026-01-01 02:00 UTC (in 2h)"; !strings.Contains(r, want) {
		t.Errorf("gang: %q, want %q", r, want)
	}
	if r, want := reasonsOf(got, "long"), "p: the nodes with room are held for job gang from 2026-01-01 02:00 UTC, and this job would not end by then"; r != want {
		t.Errorf("long: %q, want %q", r, want)
	}
	if len(got.Preemptions) != 0 {
		t.Errorf("preemptions = %v, want none", got.Preemptions)
	}
}

func TestBackfillCountsThisCyclesPlacements(t *testing.T) {
	// The first job takes n1 for an hour; the gang after it then waits for
	// that hour, not forever.
	nodes := []Node{mkNode("n1", "p", 4, nil), mkNode("n2", "p", 4, nil)}
	queued := []Job{
		mkJob("first", withCPUs(4), withPrio(core.PriorityHigh)),
		mkJob("gang", withRanks(2), withCPUs(4)),
		at(mkJob("late", withCPUs(4), withEstimate(2*time.Hour)), time.Minute),
	}
	got := Schedule(&Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: nodes, Queued: queued})
	if diff := cmp.Diff([]string{"first"}, placedJobs(got)); diff != "" {
		t.Errorf("placed (-want +got):\n%s", diff)
	}
	if r := reasonsOf(got, "gang"); !strings.Contains(r, "held for this job from 2026-01-01 01:00 UTC") {
		t.Errorf("gang: %q", r)
	}
	if r := reasonsOf(got, "late"); !strings.Contains(r, "held for job gang") {
		t.Errorf("late: %q", r)
	}
}

func TestDeadlineCountsFromSubmission(t *testing.T) {
	// Submitted two hours ago with a three-hour deadline, a two-hour job
	// can no longer make it.
	j := mkJob("j", withEstimate(2*time.Hour), func(j *spec.Job) { j.Deadline = spec.Duration(3 * time.Hour) })
	j.CreatedAt = t0.Add(-2 * time.Hour)
	got := Schedule(&Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil)}, Queued: []Job{j}})
	if r, want := reasonsOf(got, "j"), "p: predicted to finish 1h after its deadline"; r != want {
		t.Errorf("reasons = %q, want %q", r, want)
	}
}

func TestCycleSteps(t *testing.T) {
	s := &Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: []Node{mkNode("n1", "p", 4, nil)},
		Queued: []Job{mkJob("a"), at(mkJob("b"), time.Second)}}
	c := NewCycle(s)
	steps := 0
	for c.Step() {
		steps++
	}
	if steps != 2 {
		t.Errorf("steps = %d, want one per queued job", steps)
	}
	if diff := cmp.Diff(Schedule(s), c.Plan()); diff != "" {
		t.Errorf("stepped plan differs from Schedule's (-want +got):\n%s", diff)
	}
}

func TestExchange(t *testing.T) {
	// One cheap rtx3090 slot and one dear a100 slot.
	pools := []Pool{
		mkPool("cheap", func(p *Pool) { p.Prices.GPUHour = map[string]float64{"rtx3090": 0.4} }),
		mkPool("dear", func(p *Pool) { p.Prices.GPUHour = map[string]float64{"a100": 5} }),
	}
	nodes := []Node{mkNode("c1", "cheap", 8, map[string]int{"rtx3090": 1}), mkNode("d1", "dear", 8, map[string]int{"a100": 1})}
	where := func(p *Plan) map[string]string {
		m := map[string]string{}
		for _, pl := range p.Placements {
			m[pl.JobID] = pl.PoolID
		}
		return m
	}
	tests := []struct {
		name     string
		projects map[string]Project
		queued   []Job
		want     map[string]string
	}{
		{
			name: "a later job that may only run on the cheap slot takes it; the earlier moves",
			queued: []Job{
				mkJob("any", withGPUs(1)),
				at(mkJob("picky", withGPUs(1, "rtx3090")), time.Second),
			},
			want: map[string]string{"any": "dear", "picky": "cheap"},
		},
		{
			// Both jobs fit either slot; the long one saves more on the
			// cheap one: 10h there and 1h on the a100 beats the reverse.
			name: "the longer job gets the cheaper slot",
			queued: []Job{
				mkJob("short", withGPUs(1), withEstimate(time.Hour)),
				at(mkJob("long", withGPUs(1), withEstimate(10*time.Hour)), time.Second),
			},
			want: map[string]string{"short": "dear", "long": "cheap"},
		},
		{
			name:     "a job of a project with a budget does not move where it costs more",
			projects: map[string]Project{"speech": {Budget: 1000}},
			queued: []Job{
				mkJob("short", withGPUs(1), withEstimate(time.Hour), withProject("speech")),
				at(mkJob("long", withGPUs(1), withEstimate(10*time.Hour)), time.Second),
			},
			want: map[string]string{"short": "cheap", "long": "dear"},
		},
		{
			name: "a job with objective time is not moved",
			queued: []Job{
				mkJob("short", withGPUs(1), withEstimate(time.Hour), func(j *spec.Job) { j.Objective = spec.ObjectiveTime }),
				at(mkJob("long", withGPUs(1), withEstimate(10*time.Hour)), time.Second),
			},
			// The time objective takes the a100 (faster) to begin with.
			want: map[string]string{"short": "dear", "long": "cheap"},
		},
		{
			name: "no exchange across priorities",
			queued: []Job{
				mkJob("high", withGPUs(1), withEstimate(time.Hour), withPrio(core.PriorityHigh)),
				at(mkJob("picky", withGPUs(1, "rtx3090")), time.Second),
			},
			want: map[string]string{"high": "cheap"},
		},
		{
			name: "jobs of other shapes are not interchangeable",
			queued: []Job{
				mkJob("any", withGPUs(1), withCPUs(2)),
				at(mkJob("picky", withGPUs(1, "rtx3090")), time.Second),
			},
			want: map[string]string{"any": "cheap"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Snapshot{Now: t0, Pools: pools, Nodes: nodes, Queued: tt.queued, Projects: tt.projects}
			got := Schedule(s)
			if diff := cmp.Diff(tt.want, where(got)); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
			for _, v := range violations(s, got) {
				t.Error(v)
			}
		})
	}
}

func TestPreemptionWaitsForStoppingAttempts(t *testing.T) {
	// "old" was asked to stop last cycle for the high job; it still holds
	// n1. The high job waits for it instead of preempting "low" on n2 too,
	// and a second high job, finding the stopping attempt claimed, preempts
	// "low".
	nodes := []Node{busy(mkNode("n1", "p", 4, nil), 0, 32*gib, nil), busy(mkNode("n2", "p", 4, nil), 0, 32*gib, nil)}
	stopping := holding("old", "speech", core.PriorityLow, 4, "n1")
	stopping.Stopping = true
	running := []Running{stopping, holding("low", "speech", core.PriorityLow, 4, "n2")}
	queued := []Job{mkJob("high", withCPUs(4), withPrio(core.PriorityHigh))}
	got := Schedule(&Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: nodes, Running: running, Queued: queued})
	if len(got.Preemptions) != 0 || !strings.Contains(reasonsOf(got, "high"), "waiting for 1 preempted attempt to stop") {
		t.Errorf("preemptions %v, reasons %q; want the job to wait for the stopping attempt", got.Preemptions, reasonsOf(got, "high"))
	}
	queued = append(queued, at(mkJob("high2", withCPUs(4), withPrio(core.PriorityHigh)), time.Second))
	got = Schedule(&Snapshot{Now: t0, Pools: []Pool{mkPool("p")}, Nodes: nodes, Running: running, Queued: queued})
	if len(got.Preemptions) != 1 || got.Preemptions[0].AttemptID != "low" || got.Preemptions[0].For != "high2" {
		t.Errorf("preemptions = %+v; want low, for high2", got.Preemptions)
	}
}
