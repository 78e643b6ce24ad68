package storetest

import (
	"crypto/ed25519"
	"fmt"
	"math"
	"testing"
	"time"

	"lode.dev/lode/internal/audit"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

func testPoolUpdateDelete(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	p.Region, p.Tier, p.State = "us-east", core.TierCertified, store.PoolDraining
	p.StateReason, p.StateChangedAt = "maintenance", at(9)
	p.Interconnect = core.Interconnect{Domain: "ib-1", Gbps: 200, MultiNode: true}
	p.Prices = core.Prices{GPUHour: map[string]float64{"a100": 2.5}, CPUHour: 0.04, MemGiBHour: 0.005}
	if err := f.s.PoolUpdate(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.PoolGet(f.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "pool after update", p, got)
	p.State = "sleeping"
	if err := f.s.PoolUpdate(f.ctx, p); err == nil {
		t.Error("PoolUpdate with an unknown state: want an error")
	}
	wantErr(t, "PoolUpdate of a missing pool", f.s.PoolUpdate(f.ctx, &store.Pool{ID: "pool-none", Name: "x", State: store.PoolActive}), store.ErrNotFound)

	used := f.pool()
	f.node(used)
	wantErr(t, "PoolDelete of a pool with nodes", f.s.PoolDelete(f.ctx, used.ID), store.ErrConflict)
	empty := f.pool()
	if err := f.s.PoolDelete(f.ctx, empty.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.PoolGet(f.ctx, empty.ID)
	wantErr(t, "PoolGet after delete", err, store.ErrNotFound)
	wantErr(t, "PoolDelete again", f.s.PoolDelete(f.ctx, empty.ID), store.ErrNotFound)
}

func testProjects(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	_, err := f.s.ProjectGet(f.ctx, "vision")
	wantErr(t, "ProjectGet before put", err, store.ErrNotFound)
	p := &store.Project{Name: "vision", Budget: 500, UpdatedAt: at(1)}
	if err := f.s.ProjectPut(f.ctx, p); err != nil {
		t.Fatal(err)
	}
	if p.Weight != 1 {
		t.Errorf("weight = %g, want the default 1", p.Weight)
	}
	if err := f.s.ProjectPut(f.ctx, &store.Project{Name: "vision", Budget: 800, Weight: 2, UpdatedAt: at(5)}); err != nil {
		t.Fatal(err)
	}
	got, err := f.s.ProjectGet(f.ctx, "vision")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "project after update", &store.Project{Name: "vision", Budget: 800, Weight: 2, CreatedAt: at(1), UpdatedAt: at(5)}, got)
	if err := f.s.ProjectPut(f.ctx, &store.Project{Name: "nlp", Budget: -1}); err == nil {
		t.Error("a negative budget: want an error")
	}
	list, err := f.s.ProjectList(f.ctx)
	if err != nil || len(list) != 1 {
		t.Errorf("ProjectList = %v, %v; want one project", list, err)
	}
}

// testUsage: every ended attempt is metered at the price it was placed at,
// for the time it ran, whatever its end; one that never started is free.
func testUsage(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n1, n2 := f.node(p), f.node(p, lease(7200))
	j := f.job(retries(1, 0))

	a, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: p.ID, NodeIDs: nodeIDs(n1),
		GPUModel: "a100", PricePerHour: 3.6, Now: at(10)})
	if err != nil {
		t.Fatal(err)
	}
	if a.PricePerHour != 3.6 || a.GPUModel != "a100" {
		t.Errorf("attempt price %g model %q; want 3.6 a100", a.PricePerHour, a.GPUModel)
	}
	f.runAll(a, 100)
	f.expire(3601) // n1's lease ends at 3600: the attempt is lost after 3501 s of running
	b, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: p.ID, NodeIDs: nodeIDs(n2),
		GPUModel: "a100", PricePerHour: 1.8, Now: at(3700)})
	if err != nil {
		t.Fatal(err)
	}
	f.runAll(b, 3700)
	f.report(b, 0, core.TaskExited, 0, 3700+1800)

	us, err := f.s.UsageList(f.ctx, &store.UsageListParams{JobID: j.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 {
		t.Fatalf("usage records = %d, want 2 (the lost attempt is metered too)", len(us))
	}
	want := []struct {
		state   core.AttemptState
		seconds float64
		cost    float64
	}{
		{core.AttemptLost, 3501, 3501.0 / 3600 * 3.6},
		{core.AttemptSucceeded, 1800, 0.9},
	}
	for i, w := range want {
		u := us[i]
		if u.State != w.state || math.Abs(u.Seconds-w.seconds) > 1e-6 || math.Abs(u.Cost-w.cost) > 1e-9 || u.Project != "vision" || u.Ranks != 1 {
			t.Errorf("usage %d = %+v; want %s, %g s, $%g", i, u, w.state, w.seconds, w.cost)
		}
	}
	byProject, _ := f.s.UsageList(f.ctx, &store.UsageListParams{Project: "vision", PoolID: p.ID})
	other, _ := f.s.UsageList(f.ctx, &store.UsageListParams{Project: "nlp"})
	if len(byProject) != 2 || len(other) != 0 {
		t.Errorf("filters: %d for vision on the pool, %d for nlp; want 2 and 0", len(byProject), len(other))
	}

	// Cancelled before it started: metered at zero.
	c := f.job()
	ca := f.place(c, p, 6000, n2)
	if _, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: c.ID, Now: at(6001)}); err != nil {
		t.Fatal(err)
	}
	f.report(ca, 0, core.TaskKilled, 0, 6002)
	us, _ = f.s.UsageList(f.ctx, &store.UsageListParams{JobID: c.ID})
	if len(us) != 1 || us[0].Cost != 0 || us[0].State != core.AttemptCancelled {
		t.Errorf("usage of a job cancelled before it ran = %+v; want one free cancelled record", us)
	}
}

// testPreemption: a preempted attempt's tasks are told to stop; when they
// have, the attempt ends preempted and the job is queued again without
// spending a retry.
func testPreemption(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p)
	j := f.job(retries(0, 0))
	a := f.runAll(f.place(j, p, 1, n), 2)
	if err := f.s.AttemptPreempt(f.ctx, &store.AttemptPreemptParams{AttemptID: a.ID, Reason: "for job-x", Now: at(3)}); err != nil {
		t.Fatal(err)
	}
	as := f.assignments(n.ID)
	if len(as) != 1 || !as[0].Preempting {
		t.Fatalf("assignments = %+v; want the task marked preempting", as)
	}
	f.report(a, 0, core.TaskKilled, 0, 10)
	if got := f.getAttempt(a.ID); got.State != core.AttemptPreempted {
		t.Errorf("attempt %s, want preempted", got.State)
	}
	got := f.getJob(j.ID)
	if got.State != core.JobQueued || got.Retries != (core.RetryCount{}) {
		t.Errorf("job %s with retries %+v; want queued, no retry spent", got.State, got.Retries)
	}
	wantErr(t, "AttemptPreempt of an ended attempt", f.s.AttemptPreempt(f.ctx, &store.AttemptPreemptParams{AttemptID: a.ID, Now: at(11)}), store.ErrConflict)
}

// testNodeDrain: a drained node keeps its lease, takes no new work, and its
// attempts are asked to stop; once they have, their jobs are queued again at
// no cost to their retries.
func testNodeDrain(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n, other := f.node(p), f.node(p)
	j := f.job(retries(0, 0))
	a := f.runAll(f.place(j, p, 1, n), 2)
	asked, err := f.s.NodeDrain(f.ctx, &store.NodeDrainParams{NodeID: n.ID, Reason: "maintenance", Now: at(3)})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "attempts asked to stop", []string{a.ID}, asked)
	if got := f.getNode(n.ID); got.State != store.NodeDraining {
		t.Errorf("node %s, want draining", got.State)
	}
	if _, err := f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: n.ID, Now: at(4), LeaseExpiresAt: at(5000)}); err != nil {
		t.Errorf("a draining node's heartbeat: %v", err)
	}
	if as := f.assignments(n.ID); len(as) != 1 || !as[0].Preempting {
		t.Errorf("assignments = %+v; want the task asked to stop", as)
	}
	// No new work lands on it.
	j2 := f.job()
	_, err = f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j2.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(5)})
	wantErr(t, "placing on a draining node", err, store.ErrConflict)
	f.report(a, 0, core.TaskKilled, 0, 6)
	if got := f.getJob(j.ID); got.State != core.JobQueued || got.Retries != (core.RetryCount{}) {
		t.Errorf("job %s with retries %+v; want queued at no cost", got.State, got.Retries)
	}
	f.place(j, p, 7, other)
	if _, err := f.s.NodeDrain(f.ctx, &store.NodeDrainParams{NodeID: n.ID, Undo: true, Now: at(8)}); err != nil {
		t.Fatal(err)
	}
	if got := f.getNode(n.ID); got.State != store.NodeReady {
		t.Errorf("node %s after undo, want ready", got.State)
	}
	f.expire(6000)
	_, err = f.s.NodeDrain(f.ctx, &store.NodeDrainParams{NodeID: n.ID, Now: at(6001)})
	wantErr(t, "draining a lost node", err, store.ErrNodeGone)
}

// testNodeMarkLost: leases kept outside the store end by name; the node's
// attempt is lost, its job requeued, and the node remembers when it was
// last heard from.
func testNodeMarkLost(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n, left := f.node(p), f.node(p)
	j := f.job(retries(1, 0))
	f.runAll(f.place(j, p, 1, n), 2)
	if err := f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: left.ID, Now: at(3)}); err != nil {
		t.Fatal(err)
	}
	lost, err := f.s.NodeMarkLost(f.ctx, &store.NodeMarkLostParams{
		LastSeen: map[string]time.Time{n.ID: at(40), left.ID: at(41), "node-unknown": at(42)}, Now: at(43)})
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || lost[0].ID != n.ID {
		t.Fatalf("lost = %v; want only the live node", lost)
	}
	got := f.getNode(n.ID)
	if got.State != store.NodeLost || !got.LastHeartbeatAt.Equal(at(40)) {
		t.Errorf("node %s last heard %v; want lost, last heard at 40 s", got.State, got.LastHeartbeatAt)
	}
	if gone := f.getNode(left.ID); gone.State != store.NodeLeft || !gone.LastHeartbeatAt.Equal(at(3)) {
		t.Errorf("the node that left: %s at %v; want left at 3 s", gone.State, gone.LastHeartbeatAt)
	}
	if jj := f.getJob(j.ID); jj.State != core.JobQueued || jj.Retries.NodeLost != 1 {
		t.Errorf("job %s retries %+v; want queued after one node-loss retry", jj.State, jj.Retries)
	}
}

// testAudit: appends form one chain, even when they race, and the chain
// verifies with its checkpoints.
func testAudit(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	pub, priv, _ := ed25519.GenerateKey(nil)
	errs := race(20, func(i int) error {
		_, err := f.s.AuditAppend(f.ctx, &audit.Event{Time: at(i), Kind: audit.JobSubmitted, Actor: "user",
			Subject: fmt.Sprintf("job-%d", i), Project: "vision", Detail: map[string]string{"i": fmt.Sprint(i)}})
		return err
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := f.s.AuditList(f.ctx, &store.AuditListParams{})
	if err != nil || len(entries) != 20 {
		t.Fatalf("AuditList = %d entries, %v; want 20", len(entries), err)
	}
	cp := audit.Seal(priv, entries[19], at(30))
	if err := f.s.AuditCheckpointAdd(f.ctx, &cp); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a second checkpoint of one entry", f.s.AuditCheckpointAdd(f.ctx, &cp), store.ErrConflict)
	cps, err := f.s.AuditCheckpointList(f.ctx)
	if err != nil || len(cps) != 1 {
		t.Fatalf("checkpoints = %v, %v", cps, err)
	}
	if p := audit.Verify(entries, cps, pub); p != nil {
		t.Errorf("the stored chain does not verify: %v", p)
	}
	tail, _ := f.s.AuditList(f.ctx, &store.AuditListParams{AfterSeq: 18, Limit: 1})
	if len(tail) != 1 || tail[0].Seq != 19 {
		t.Errorf("AuditList after 18, limit 1 = %v", tail)
	}
}

// testTaskListUnfinished lists exactly the tasks that hold capacity.
func testTaskListUnfinished(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n1, n2 := f.node(p), f.node(p)
	done := f.runAll(f.place(f.job(), p, 1, n1), 2)
	f.report(done, 0, core.TaskExited, 0, 3)
	live := f.runAll(f.place(f.job(ranks(2)), p, 4, n1, n2), 5)
	waiting := f.place(f.job(), p, 6, n2)
	got, err := f.s.TaskListUnfinished(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{live.ID + "/0": true, live.ID + "/1": true, waiting.ID + "/0": true}
	if len(got) != len(want) {
		t.Fatalf("unfinished tasks = %d, want %d", len(got), len(want))
	}
	for _, tk := range got {
		if !want[fmt.Sprintf("%s/%d", tk.AttemptID, tk.Rank)] || tk.Resources.MilliCPUs == 0 {
			t.Errorf("unexpected task %+v", tk)
		}
	}
}
