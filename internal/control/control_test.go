package control

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/store/sqlite"
)

// clock is a test clock the loop reads.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type fixture struct {
	t     *testing.T
	st    store.Store
	clock *clock
	loop  *Loop
	pool  *store.Pool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "lode.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := &fixture{t: t, st: st, clock: c}
	f.loop = New(Config{Store: st, Now: c.Now})
	f.pool = &store.Pool{ID: core.NewID("pool"), Name: "rigs", Driver: "agent", State: store.PoolActive, CreatedAt: c.now}
	if err := st.PoolCreate(context.Background(), f.pool); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) node(name string, cpus int64, gpus ...core.GPU) *store.Node {
	f.t.Helper()
	n := &store.Node{ID: core.NewID("node"), PoolID: f.pool.ID, Name: name, State: store.NodeReady,
		MilliCPUs: cpus * 1000, MemoryBytes: 16 << 30, GPUs: gpus,
		RegisteredAt: f.clock.now, LastHeartbeatAt: f.clock.now, LeaseExpiresAt: f.clock.now.Add(5 * time.Second)}
	if err := f.st.NodeCreate(context.Background(), n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) job(name string, cpus int64, nodes int) *store.Job {
	f.t.Helper()
	sp := spec.Job{Name: name, Project: "default", Command: []string{"true"}, Nodes: nodes,
		Resources: core.Resources{MilliCPUs: cpus * 1000, MemoryBytes: 1 << 30}, Priority: core.PriorityNormal,
		Retries: core.RetryBudget{OnNodeLost: 1}}
	j := &store.Job{ID: core.NewID("job"), Name: name, Project: "default", Spec: sp, State: core.JobQueued,
		Priority: sp.Priority, DataObject: "obj-x", CreatedAt: f.clock.now, UpdatedAt: f.clock.now}
	if err := f.st.JobCreate(context.Background(), j); err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) cycle() {
	f.t.Helper()
	if err := f.loop.Cycle(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) state(id string) core.JobState {
	f.t.Helper()
	j, err := f.st.JobGet(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return j.State
}

func TestCyclePlacesWhatFitsAndExplainsTheRest(t *testing.T) {
	f := newFixture(t)
	f.node("n1", 4)
	a := f.job("a", 3, 1)
	f.clock.now = f.clock.now.Add(time.Millisecond) // b is younger, so it waits
	b := f.job("b", 3, 1)
	f.cycle()
	if got := f.state(a.ID); got != core.JobPlaced {
		t.Errorf("job a: %s, want placed", got)
	}
	if got := f.state(b.ID); got != core.JobQueued {
		t.Errorf("job b: %s, want queued", got)
	}
	reasons := f.loop.Pending(b.ID)
	if len(reasons) != 1 || !strings.Contains(reasons[0].String(), "rigs: no node has 3 CPUs free") {
		t.Errorf("pending reasons for b = %v", reasons)
	}
	// The next cycle sees a's task holding the node and does not double-book it.
	f.cycle()
	if got := f.state(b.ID); got != core.JobQueued {
		t.Errorf("job b after a second cycle: %s, want queued", got)
	}
}

func TestCycleExpiresLeasesAndPlacesTheJobAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	n1 := f.node("n1", 2)
	j := f.job("a", 1, 1)
	f.cycle()
	first, _ := f.st.AttemptListByJob(ctx, j.ID)
	if len(first) != 1 || first[0].Tasks[0].NodeID != n1.ID {
		t.Fatalf("attempts = %+v; want one on n1", first)
	}
	// n2 keeps heartbeating; n1 falls silent past its lease.
	f.clock.now = f.clock.now.Add(4 * time.Second)
	n2 := f.node("n2", 2)
	f.clock.now = f.clock.now.Add(2 * time.Second)
	f.cycle()
	attempts, _ := f.st.AttemptListByJob(ctx, j.ID)
	if len(attempts) != 2 || attempts[0].State != core.AttemptLost || attempts[1].Tasks[0].NodeID != n2.ID {
		t.Fatalf("attempts = %+v; want the first lost and a second on n2", attempts)
	}
	got, _ := f.st.JobGet(ctx, j.ID)
	if got.State != core.JobPlaced || got.Retries.NodeLost != 1 {
		t.Errorf("job: %s with retries %+v; want placed after one node-loss retry", got.State, got.Retries)
	}
	lost, _ := f.st.NodeGet(ctx, n1.ID)
	if lost.State != store.NodeLost {
		t.Errorf("n1 is %s, want lost", lost.State)
	}
}

func TestFreeCapacityCountsUnfinishedTasks(t *testing.T) {
	n := &store.Node{MilliCPUs: 8000, MemoryBytes: 32 << 30, GPUs: []core.GPU{{Model: "rtx3090"}, {Model: "rtx3090"}, {Model: "a100"}}}
	tasks := []*store.Task{
		{State: core.TaskRunning, Resources: core.Resources{MilliCPUs: 2000, MemoryBytes: 4 << 30, GPUs: 1, GPUModels: []string{"a100"}}},
		{State: core.TaskAssigned, Resources: core.Resources{MilliCPUs: 1000, MemoryBytes: 1 << 30, GPUs: 1}},
		{State: core.TaskExited, Resources: core.Resources{MilliCPUs: 4000, MemoryBytes: 8 << 30, GPUs: 1}},
	}
	c := FreeCapacity(n, tasks)
	if c.MilliCPUs != 5000 || c.MemoryBytes != 27<<30 || c.GPUs["a100"] != 0 || c.GPUs["rtx3090"] != 1 {
		t.Errorf("free = %+v; want 5 CPUs, 27GiB, one rtx3090 and no a100", c)
	}
}

// TestPoolWhoseNodesAreAllLostIsQuarantined: both nodes of a pool go
// silent; the pool is quarantined with its reason, its job runs on the other
// pool, and after a probation with a node up again the pool is let back in.
func TestPoolWhoseNodesAreAllLostIsQuarantined(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.node("rig-1", 2)
	f.node("rig-2", 2)
	j := f.job("a", 1, 1)
	f.cycle()
	if got := f.state(j.ID); got != core.JobPlaced {
		t.Fatalf("job %s, want placed", got)
	}
	// A second pool whose node keeps heartbeating.
	cloud := &store.Pool{ID: core.NewID("pool"), Name: "zcloud", Driver: "agent", State: store.PoolActive, CreatedAt: f.clock.now}
	if err := f.st.PoolCreate(ctx, cloud); err != nil {
		t.Fatal(err)
	}
	f.clock.now = f.clock.now.Add(4 * time.Second)
	c := &store.Node{ID: core.NewID("node"), PoolID: cloud.ID, Name: "c1", State: store.NodeReady, MilliCPUs: 4000, MemoryBytes: 8 << 30,
		RegisteredAt: f.clock.now, LastHeartbeatAt: f.clock.now, LeaseExpiresAt: f.clock.now.Add(time.Hour)}
	if err := f.st.NodeCreate(ctx, c); err != nil {
		t.Fatal(err)
	}
	f.clock.now = f.clock.now.Add(2 * time.Second) // the rigs' leases have run out
	f.cycle()                                      // loses them
	f.cycle()                                      // judges the pool
	rigs, _ := f.st.PoolGet(ctx, f.pool.ID)
	if rigs.State != store.PoolQuarantined || !strings.Contains(rigs.StateReason, "lost 2 nodes") {
		t.Fatalf("rigs: %s (%s); want quarantined for losing its nodes", rigs.State, rigs.StateReason)
	}
	attempts, _ := f.st.AttemptListByJob(ctx, j.ID)
	if n := len(attempts); n != 2 || attempts[1].PoolID != cloud.ID {
		t.Fatalf("attempts = %+v; want the job placed again on the cloud", attempts)
	}

	// A rig comes back and stays up through the probation.
	f.node("rig-3", 2)
	f.clock.now = f.clock.now.Add(11 * time.Minute)
	if _, err := f.st.NodeHeartbeat(ctx, &store.NodeHeartbeatParams{NodeID: c.ID, Now: f.clock.now, LeaseExpiresAt: f.clock.now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	nodes, _ := f.st.NodeList(ctx, &store.NodeListParams{PoolID: f.pool.ID, State: store.NodeReady})
	for _, n := range nodes {
		f.st.NodeHeartbeat(ctx, &store.NodeHeartbeatParams{NodeID: n.ID, Now: f.clock.now, LeaseExpiresAt: f.clock.now.Add(time.Hour)})
	}
	f.cycle()
	rigs, _ = f.st.PoolGet(ctx, f.pool.ID)
	if rigs.State != store.PoolActive || !strings.Contains(rigs.StateReason, "probation") {
		t.Errorf("rigs after probation: %s (%s); want active again", rigs.State, rigs.StateReason)
	}
}
