package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

// testLifecycle follows one job from submission to success.
func testLifecycle(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p)
	j := f.job()

	a := f.place(j, p, 1, n)
	task := &store.Task{AttemptID: a.ID, Rank: 0, NodeID: n.ID, State: core.TaskAssigned, Resources: j.Spec.Resources}
	wantA := &store.Attempt{ID: a.ID, JobID: j.ID, Seq: 1, PoolID: p.ID, State: core.AttemptPlaced,
		FencingToken: a.FencingToken, CreatedAt: at(1), Tasks: []*store.Task{task}}
	diff(t, "AttemptCreate", wantA, a, ignoreAttemptText, ignoreTaskMessage)
	diff(t, "AttemptGet after AttemptCreate", wantA, f.getAttempt(a.ID), ignoreAttemptText, ignoreTaskMessage)
	wantJ := *j
	wantJ.State, wantJ.CurrentAttempt, wantJ.Attempts, wantJ.UpdatedAt = core.JobPlaced, a.ID, 1, at(1)
	diff(t, "JobGet after AttemptCreate", &wantJ, f.getJob(j.ID), ignoreJobReason)

	// The node's agent learns of the task, with what it needs to run it.
	diff(t, "TaskListByNode", []*store.Assignment{{
		Task:         *task,
		AttemptState: core.AttemptPlaced,
		FencingToken: a.FencingToken,
		Job:          &wantJ,
		Ranks:        []string{n.ID},
	}}, f.assignments(n.ID), ignoreJobReason, ignoreTaskMessage)

	a = f.report(a, 0, core.TaskRunning, 0, 2)
	task.State, task.StartedAt = core.TaskRunning, at(2)
	wantA.State, wantA.StartedAt = core.AttemptRunning, at(2)
	diff(t, "TaskUpdate running", wantA, a, ignoreAttemptText, ignoreTaskMessage)
	wantJ.State, wantJ.UpdatedAt = core.JobRunning, at(2)
	diff(t, "JobGet after TaskUpdate running", &wantJ, f.getJob(j.ID), ignoreJobReason)

	a = f.report(a, 0, core.TaskExited, 0, 3)
	task.State, task.EndedAt = core.TaskExited, at(3)
	wantA.State, wantA.EndedAt = core.AttemptSucceeded, at(3)
	diff(t, "TaskUpdate exited", wantA, a, ignoreAttemptText, ignoreTaskMessage)
	if a.Reason == "" {
		t.Errorf("TaskUpdate exited: the attempt ended without a reason")
	}
	wantJ.State, wantJ.UpdatedAt, wantJ.FinishedAt = core.JobSucceeded, at(3), at(3)
	wantJ.Reason = reasonAfter(core.AttemptSucceeded, false, j.Spec.Retries, core.RetryCount{})
	diff(t, "JobGet after success", &wantJ, f.getJob(j.ID))
	diff(t, "AttemptListByJob", []*store.Attempt{wantA}, f.attempts(j.ID), ignoreAttemptText, ignoreTaskMessage)
	diff(t, "TaskListByNode after success", []*store.Assignment(nil), f.assignments(n.ID))

	_, err := f.s.AttemptGet(f.ctx, "att-nope")
	wantErr(t, "AttemptGet missing", err, store.ErrNotFound)
	_, err = f.s.AttemptListByJob(f.ctx, "job-nope")
	wantErr(t, "AttemptListByJob of a missing job", err, store.ErrNotFound)
	diff(t, "AttemptListByJob of a job never placed", []*store.Attempt(nil), f.attempts(f.job().ID))
}

// testGangRankFails fails one rank of three: the attempt fails, the other
// live rank is killed, and the job fails or goes back to the queue as its
// retries allow.
func testGangRankFails(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name      string
		onError   int
		wantState core.JobState
		wantUsed  core.RetryCount
	}{
		{"no retries", 0, core.JobFailed, core.RetryCount{}},
		{"one retry", 1, core.JobQueued, core.RetryCount{Error: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, open)
			p := f.pool()
			n0, n1, n2 := f.node(p), f.node(p), f.node(p)
			j := f.job(ranks(3), retries(0, tc.onError))
			a := f.place(j, p, 1, n0, n1, n2)
			a = f.runAll(a, 2)
			a = f.report(a, 0, core.TaskExited, 0, 3)
			if a.State != core.AttemptRunning {
				t.Fatalf("after rank 0 exited 0: attempt %s, want %s", a.State, core.AttemptRunning)
			}
			a = f.report(a, 1, core.TaskExited, 3, 4)

			res := j.Spec.Resources
			want := &store.Attempt{ID: a.ID, JobID: j.ID, Seq: 1, PoolID: p.ID, State: core.AttemptFailed,
				FencingToken: a.FencingToken, CreatedAt: at(1), StartedAt: at(2), EndedAt: at(4),
				Tasks: []*store.Task{
					{AttemptID: a.ID, Rank: 0, NodeID: n0.ID, State: core.TaskExited, Resources: res, StartedAt: at(2), EndedAt: at(3)},
					{AttemptID: a.ID, Rank: 1, NodeID: n1.ID, State: core.TaskExited, ExitCode: 3, Resources: res, StartedAt: at(2), EndedAt: at(4)},
					{AttemptID: a.ID, Rank: 2, NodeID: n2.ID, State: core.TaskKilled, Resources: res, StartedAt: at(2), EndedAt: at(4)},
				}}
			diff(t, "TaskUpdate failing rank 1", want, a, ignoreAttemptText, ignoreTaskMessage)
			diff(t, "AttemptGet", want, f.getAttempt(a.ID), ignoreAttemptText, ignoreTaskMessage)

			wantJ := *j
			wantJ.State, wantJ.Retries, wantJ.ExitCode, wantJ.Attempts, wantJ.UpdatedAt = tc.wantState, tc.wantUsed, 3, 1, at(4)
			wantJ.Reason = reasonAfter(core.AttemptFailed, false, j.Spec.Retries, core.RetryCount{})
			if tc.wantState.Terminal() {
				wantJ.CurrentAttempt, wantJ.FinishedAt = a.ID, at(4)
			}
			diff(t, "JobGet", &wantJ, f.getJob(j.ID))
			for _, n := range []*store.Node{n0, n1, n2} {
				diff(t, "TaskListByNode", []*store.Assignment(nil), f.assignments(n.ID))
			}

			if tc.wantState != core.JobQueued {
				return
			}
			// Placed again, on the same nodes, which the ended tasks no
			// longer hold; a success clears the exit code.
			a2 := f.place(j, p, 10, n2, n1, n0)
			if a2.Seq != 2 {
				t.Errorf("second AttemptCreate: Seq %d, want 2", a2.Seq)
			}
			a2 = f.runAll(a2, 11)
			for r := range 3 {
				a2 = f.report(a2, r, core.TaskExited, 0, 12)
			}
			wantJ.State, wantJ.CurrentAttempt, wantJ.Attempts, wantJ.ExitCode = core.JobSucceeded, a2.ID, 2, 0
			wantJ.UpdatedAt, wantJ.FinishedAt = at(12), at(12)
			wantJ.Reason = reasonAfter(core.AttemptSucceeded, false, j.Spec.Retries, tc.wantUsed)
			diff(t, "JobGet after the retry succeeded", &wantJ, f.getJob(j.ID))
			if as := f.attempts(j.ID); len(as) != 2 || as[0].ID != a.ID || as[1].ID != a2.ID {
				t.Errorf("AttemptListByJob: got %d attempts, want %s then %s", len(as), a.ID, a2.ID)
			}
		})
	}
}

// errAny stands for "some error" where the suite does not pin which.
var errAny = errors.New("any error")

// testCapacity checks that AttemptCreate re-checks a placement against the
// store's own view and changes nothing when it refuses.
func testCapacity(t *testing.T, open func(t *testing.T) store.Store) {
	type env struct {
		p, other, draining                         *store.Pool
		small, big, lost, left, foreign, drainingN *store.Node
	}
	for _, tc := range []struct {
		name  string
		job   []func(*store.Job)
		pool  func(e *env) string
		nodes func(e *env) []string
		want  error // nil: placed
	}{
		{"fits", nil, nil, func(e *env) []string { return nodeIDs(e.small) }, nil},
		{"two ranks on one node with room", []func(*store.Job){ranks(2)}, nil,
			func(e *env) []string { return nodeIDs(e.big, e.big) }, nil},
		{"two ranks on one node with room for one", []func(*store.Job){ranks(2)}, nil,
			func(e *env) []string { return nodeIDs(e.small, e.small) }, store.ErrConflict},
		{"too many CPUs", []func(*store.Job){asks(core.Resources{MilliCPUs: 4001})}, nil,
			func(e *env) []string { return nodeIDs(e.small) }, store.ErrConflict},
		{"too much memory", []func(*store.Job){asks(core.Resources{MemoryBytes: 8*gib + 1})}, nil,
			func(e *env) []string { return nodeIDs(e.small) }, store.ErrConflict},
		{"too many GPUs", []func(*store.Job){asks(core.Resources{GPUs: 2})}, nil,
			func(e *env) []string { return nodeIDs(e.small) }, store.ErrConflict},
		{"a node of another pool", nil, nil, func(e *env) []string { return nodeIDs(e.foreign) }, store.ErrConflict},
		{"one node of a gang in another pool", []func(*store.Job){ranks(2)}, nil,
			func(e *env) []string { return nodeIDs(e.big, e.foreign) }, store.ErrConflict},
		{"a lost node", nil, nil, func(e *env) []string { return nodeIDs(e.lost) }, store.ErrConflict},
		{"a node that left", nil, nil, func(e *env) []string { return nodeIDs(e.left) }, store.ErrConflict},
		{"a draining pool", nil, func(e *env) string { return e.draining.ID },
			func(e *env) []string { return nodeIDs(e.drainingN) }, store.ErrConflict},
		{"a missing node", nil, nil, func(e *env) []string { return []string{"node-nope"} }, store.ErrNotFound},
		{"a missing pool", nil, func(e *env) string { return "pool-nope" },
			func(e *env) []string { return nodeIDs(e.small) }, store.ErrNotFound},
		{"fewer nodes than ranks", []func(*store.Job){ranks(2)}, nil, func(e *env) []string { return nodeIDs(e.big) }, errAny},
		{"more nodes than ranks", nil, nil, func(e *env) []string { return nodeIDs(e.big, e.small) }, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, open)
			e := &env{p: f.pool(), other: f.pool(), draining: f.pool(func(p *store.Pool) { p.State = store.PoolDraining })}
			e.small = f.node(e.p, gpus("a100"), func(n *store.Node) { n.MilliCPUs, n.MemoryBytes = 4000, 8*gib })
			e.big = f.node(e.p)
			e.lost = f.node(e.p, func(n *store.Node) { n.State = store.NodeLost })
			e.left = f.node(e.p, func(n *store.Node) { n.State = store.NodeLeft })
			e.foreign = f.node(e.other)
			e.drainingN = f.node(e.draining)
			j := f.job(tc.job...)
			pool := e.p.ID
			if tc.pool != nil {
				pool = tc.pool(e)
			}

			a, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: pool, NodeIDs: tc.nodes(e), Now: at(1)})
			switch {
			case tc.want == nil:
				noErr(t, "AttemptCreate", err)
				diff(t, "JobGet", core.JobPlaced, f.getJob(j.ID).State)
				diff(t, "AttemptListByJob", []*store.Attempt{a}, f.attempts(j.ID))
				return
			case tc.want == errAny:
				if err == nil {
					t.Fatalf("AttemptCreate: no error")
				}
			default:
				wantErr(t, "AttemptCreate", err, tc.want)
			}
			diff(t, "JobGet after a refused AttemptCreate", j, f.getJob(j.ID))
			diff(t, "AttemptListByJob after a refused AttemptCreate", []*store.Attempt(nil), f.attempts(j.ID))
			for _, n := range []*store.Node{e.small, e.big, e.foreign} {
				diff(t, "TaskListByNode after a refused AttemptCreate", []*store.Assignment(nil), f.assignments(n.ID))
			}
		})
	}

	t.Run("job not queued", func(t *testing.T) {
		f := setup(t, open)
		p := f.pool()
		n := f.node(p)
		placed := f.job()
		a := f.place(placed, p, 1, n)
		_, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: placed.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(2)})
		wantErr(t, "AttemptCreate of a placed job", err, store.ErrConflict)
		diff(t, "AttemptListByJob", []*store.Attempt{a}, f.attempts(placed.ID))

		cancelled := f.job()
		_, err = f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: cancelled.ID, Now: at(3)})
		noErr(t, "JobCancel", err)
		_, err = f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: cancelled.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(4)})
		wantErr(t, "AttemptCreate of a cancelled job", err, store.ErrConflict)

		_, err = f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: "job-nope", PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(5)})
		wantErr(t, "AttemptCreate of a missing job", err, store.ErrNotFound)
	})
}

// testCapacityFreed checks that a node's resources are held while a task
// lives and free again when it ends.
func testCapacityFreed(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p, gpus("a100"))
	first, second := f.job(), f.job()
	a := f.place(first, p, 1, n)
	_, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: second.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(2)})
	wantErr(t, "AttemptCreate on a node whose GPU is taken", err, store.ErrConflict)
	a = f.report(a, 0, core.TaskRunning, 0, 3)
	_, err = f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: second.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(4)})
	wantErr(t, "AttemptCreate on a node whose GPU is taken by a running task", err, store.ErrConflict)
	f.report(a, 0, core.TaskExited, 0, 5)
	f.place(second, p, 6, n)
}

// testGPUModels places jobs one after another on one node of an A100 and
// an RTX 4090, each step asking GPUs of some models.
func testGPUModels(t *testing.T, open func(t *testing.T) store.Store) {
	type step struct {
		gpus   int
		models []string
		fits   bool
	}
	for _, tc := range []struct {
		name  string
		node  []string
		steps []step
	}{
		{"a model written another way", []string{"NVIDIA A100", "rtx4090"}, []step{{1, []string{"a100"}, true}}},
		{"a model the node lacks", []string{"a100", "rtx4090"}, []step{{1, []string{"h100"}, false}}},
		{"any model", []string{"a100", "rtx4090"}, []step{{2, nil, true}, {1, nil, false}}},
		{"more of a model than the node has", []string{"a100", "rtx4090"}, []step{{2, []string{"a100"}, false}}},
		{"one of several models", []string{"a100", "rtx4090"}, []step{{2, []string{"rtx4090", "a100"}, true}}},
		{"flexible first, then strict", []string{"a100", "rtx4090"},
			[]step{{1, []string{"a100", "rtx4090"}, true}, {1, []string{"a100"}, true}, {1, nil, false}}},
		{"strict first, then flexible", []string{"a100", "rtx4090"},
			[]step{{1, []string{"a100"}, true}, {1, []string{"a100", "rtx4090"}, true}, {1, []string{"rtx4090"}, false}}},
		{"strict first, then the same model", []string{"a100", "rtx4090"},
			[]step{{1, []string{"a100"}, true}, {1, []string{"a100"}, false}, {1, []string{"RTX 4090"}, true}}},
		{"no GPUs asked of a node without any", nil, []step{{0, nil, true}, {0, []string{"a100"}, true}}},
		{"a GPU asked of a node without any", nil, []step{{1, nil, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, open)
			p := f.pool()
			n := f.node(p, gpus(tc.node...))
			for i, s := range tc.steps {
				j := f.job(asks(core.Resources{MilliCPUs: 1000, MemoryBytes: gib, GPUs: s.gpus, GPUModels: s.models}))
				_, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(i)})
				what := fmt.Sprintf("step %d: AttemptCreate of %d GPU(s) of %q on %q", i, s.gpus, s.models, tc.node)
				if s.fits {
					noErr(t, what, err)
				} else {
					wantErr(t, what, err, store.ErrConflict)
				}
			}
		})
	}
}

// race runs fn n times at once and returns the errors.
func race(n int, fn func(i int) error) []error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner reports unless exactly one error is nil and the others are
// ErrConflict.
func oneWinner(t *testing.T, what string, errs []error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("%s: both %d and %d won", what, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("%s: %d lost with %v, want %v", what, i, err, store.ErrConflict)
		}
	}
	if winner < 0 {
		t.Errorf("%s: nobody won", what)
	}
	return winner
}

func testRacePlaceSameJob(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	nodes := []*store.Node{f.node(p), f.node(p)}
	j := f.job()
	errs := race(16, func(i int) error {
		_, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: p.ID,
			NodeIDs: nodeIDs(nodes[i%2]), Now: at(1)})
		return err
	})
	oneWinner(t, "AttemptCreate of one job", errs)
	got := f.getJob(j.ID)
	if got.State != core.JobPlaced || got.Attempts != 1 {
		t.Errorf("JobGet: state %s with %d attempts, want %s with 1", got.State, got.Attempts, core.JobPlaced)
	}
	if as := f.attempts(j.ID); len(as) != 1 || as[0].ID != got.CurrentAttempt {
		t.Errorf("AttemptListByJob: %d attempts, want the one current attempt %s", len(as), got.CurrentAttempt)
	}
}

func testRaceLastGPU(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p, gpus("a100", "a100"))
	f.place(f.job(), p, 1, n) // takes one of the two
	const racers = 12
	jobs := make([]*store.Job, racers)
	for i := range jobs {
		jobs[i] = f.job()
	}
	errs := race(racers, func(i int) error {
		_, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: jobs[i].ID, PoolID: p.ID, NodeIDs: nodeIDs(n), Now: at(2)})
		return err
	})
	winner := oneWinner(t, "AttemptCreate for the last GPU", errs)
	if as := f.assignments(n.ID); len(as) != 2 {
		t.Errorf("TaskListByNode: %d tasks, want 2", len(as))
	}
	for i, j := range jobs {
		want := core.JobQueued
		if i == winner {
			want = core.JobPlaced
		}
		if got := f.getJob(j.ID).State; got != want {
			t.Errorf("job %d: state %s, want %s", i, got, want)
		}
	}
}

func (f *fixture) expire(sec int) []*store.Node {
	f.t.Helper()
	ns, err := f.s.NodeExpireLeases(f.ctx, &store.NodeExpireLeasesParams{Now: at(sec)})
	if err != nil {
		f.t.Fatalf("NodeExpireLeases(%v): %v", at(sec), err)
	}
	return ns
}

// testLeaseExpiry loses a job's node twice: the first loss requeues the job
// and counts a retry, the second finds the budget used up.
func testLeaseExpiry(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n1, n2 := f.node(p, lease(30)), f.node(p, lease(1000))
	j := f.job(retries(1, 0))
	a1 := f.runAll(f.place(j, p, 1, n1), 2)

	diff(t, "NodeExpireLeases as the lease ends", []*store.Node(nil), f.expire(30))
	lostN1 := *n1
	lostN1.State = store.NodeLost
	diff(t, "NodeExpireLeases after the lease ended", []*store.Node{&lostN1}, f.expire(31))
	diff(t, "NodeGet of the lost node", &lostN1, f.getNode(n1.ID))

	got := f.getAttempt(a1.ID)
	res := j.Spec.Resources
	wantA1 := &store.Attempt{ID: a1.ID, JobID: j.ID, Seq: 1, PoolID: p.ID, State: core.AttemptLost, FencingToken: a1.FencingToken,
		CreatedAt: at(1), StartedAt: at(2), EndedAt: at(31), Tasks: []*store.Task{
			{AttemptID: a1.ID, Rank: 0, NodeID: n1.ID, State: core.TaskLost, Resources: res, StartedAt: at(2), EndedAt: at(31)},
		}}
	diff(t, "AttemptGet of the lost attempt", wantA1, got, ignoreAttemptText, ignoreTaskMessage)
	wantJ := *j
	wantJ.State, wantJ.Retries, wantJ.Attempts, wantJ.UpdatedAt = core.JobQueued, core.RetryCount{NodeLost: 1}, 1, at(31)
	wantJ.Reason = reasonAfter(core.AttemptLost, false, j.Spec.Retries, core.RetryCount{})
	diff(t, "JobGet after the node was lost", &wantJ, f.getJob(j.ID))

	_, err := f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: n1.ID, Now: at(32), LeaseExpiresAt: at(62)})
	wantErr(t, "NodeHeartbeat of the lost node", err, store.ErrNodeGone)
	diff(t, "TaskListByNode of the lost node", []*store.Assignment(nil), f.assignments(n1.ID))
	diff(t, "NodeExpireLeases again", []*store.Node(nil), f.expire(32))

	a2 := f.runAll(f.place(j, p, 40, n2), 41)
	if a2.Seq != 2 {
		t.Errorf("AttemptCreate after the loss: Seq %d, want 2", a2.Seq)
	}
	lostN2 := *n2
	lostN2.State = store.NodeLost
	diff(t, "NodeExpireLeases of the second node", []*store.Node{&lostN2}, f.expire(1001))
	wantJ.State, wantJ.CurrentAttempt, wantJ.Attempts, wantJ.UpdatedAt, wantJ.FinishedAt = core.JobFailed, a2.ID, 2, at(1001), at(1001)
	wantJ.Reason = reasonAfter(core.AttemptLost, false, j.Spec.Retries, core.RetryCount{NodeLost: 1})
	diff(t, "JobGet after the retries were used up", &wantJ, f.getJob(j.ID))
	as := f.attempts(j.ID)
	if len(as) != 2 || as[0].State != core.AttemptLost || as[1].State != core.AttemptLost {
		t.Errorf("AttemptListByJob: want two lost attempts, got %d", len(as))
	}
}

// testLeaseExpiryGang loses two of a gang's three nodes at once: both of
// their tasks are lost, and the rank on the healthy node is killed.
func testLeaseExpiryGang(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	nA, nB, nC := f.node(p, lease(30)), f.node(p, lease(30)), f.node(p, lease(1000))
	j := f.job(ranks(3), retries(2, 0))
	a := f.runAll(f.place(j, p, 1, nA, nC, nB), 2)

	byID := func(id string) string { return id }
	diff(t, "NodeExpireLeases", sortedBy(nodeIDs(nA, nB), byID), sortedBy(nodeIDs(f.expire(31)...), byID))
	got := f.getAttempt(a.ID)
	if got.State != core.AttemptLost || !got.EndedAt.Equal(at(31)) {
		t.Errorf("AttemptGet: %s ended at %v, want %s at %v", got.State, got.EndedAt, core.AttemptLost, at(31))
	}
	for rank, want := range []core.TaskState{core.TaskLost, core.TaskKilled, core.TaskLost} {
		if tk := got.Tasks[rank]; tk.State != want || !tk.EndedAt.Equal(at(31)) {
			t.Errorf("rank %d: %s ended at %v, want %s at %v", rank, tk.State, tk.EndedAt, want, at(31))
		}
	}
	if n := f.getNode(nC.ID); n.State != store.NodeReady {
		t.Errorf("the healthy node: state %s, want %s", n.State, store.NodeReady)
	}
	diff(t, "TaskListByNode of the healthy node", []*store.Assignment(nil), f.assignments(nC.ID))
	gotJ := f.getJob(j.ID)
	diff(t, "JobGet", core.RetryCount{NodeLost: 1}, gotJ.Retries)
	diff(t, "JobGet", core.JobQueued, gotJ.State)
}

func testNodeLeave(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	nA, nB := f.node(p, lease(30)), f.node(p)
	j := f.job(ranks(2), retries(1, 0))
	a := f.runAll(f.place(j, p, 1, nA, nB), 2)

	noErr(t, "NodeLeave", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: nA.ID, Now: at(5)}))
	if n := f.getNode(nA.ID); n.State != store.NodeLeft {
		t.Errorf("NodeGet after NodeLeave: state %s, want %s", n.State, store.NodeLeft)
	}
	got := f.getAttempt(a.ID)
	if got.State != core.AttemptLost || !got.EndedAt.Equal(at(5)) {
		t.Errorf("AttemptGet: %s ended at %v, want %s at %v", got.State, got.EndedAt, core.AttemptLost, at(5))
	}
	for rank, want := range []core.TaskState{core.TaskLost, core.TaskKilled} {
		if tk := got.Tasks[rank]; tk.State != want || !tk.EndedAt.Equal(at(5)) {
			t.Errorf("rank %d: %s ended at %v, want %s at %v", rank, tk.State, tk.EndedAt, want, at(5))
		}
	}
	wantJ := *j
	wantJ.State, wantJ.Retries, wantJ.Attempts, wantJ.UpdatedAt = core.JobQueued, core.RetryCount{NodeLost: 1}, 1, at(5)
	wantJ.Reason = reasonAfter(core.AttemptLost, false, j.Spec.Retries, core.RetryCount{})
	diff(t, "JobGet after NodeLeave", &wantJ, f.getJob(j.ID))
	// A node that left is not declared lost later on.
	diff(t, "NodeExpireLeases after NodeLeave", []*store.Node(nil), f.expire(100))
}

func testCancel(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("queued", func(t *testing.T) {
		f := setup(t, open)
		j := f.job()
		got, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(5)})
		noErr(t, "JobCancel", err)
		want := *j
		want.State, want.CancelRequested, want.UpdatedAt, want.FinishedAt = core.JobCancelled, true, at(5), at(5)
		diff(t, "JobCancel", &want, got, ignoreJobReason)
		diff(t, "JobGet after JobCancel", &want, f.getJob(j.ID), ignoreJobReason)
		_, err = f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(6)})
		wantErr(t, "JobCancel again", err, store.ErrConflict)
		_, err = f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: "job-nope", Now: at(6)})
		wantErr(t, "JobCancel of a missing job", err, store.ErrNotFound)
	})

	t.Run("running", func(t *testing.T) {
		f := setup(t, open)
		p := f.pool()
		nA, nB := f.node(p), f.node(p)
		j := f.job(ranks(2), retries(3, 3))
		a := f.runAll(f.place(j, p, 1, nA, nB), 2)

		got, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(5)})
		noErr(t, "JobCancel", err)
		want := *j
		want.State, want.CurrentAttempt, want.Attempts, want.CancelRequested, want.UpdatedAt = core.JobRunning, a.ID, 1, true, at(5)
		diff(t, "JobCancel", &want, got, ignoreJobReason)
		got, err = f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(6)})
		noErr(t, "JobCancel again", err)
		diff(t, "JobCancel again", &want, got, ignoreJobReason)
		// The agents learn of the request from their assignments.
		for _, n := range []*store.Node{nA, nB} {
			as := f.assignments(n.ID)
			if len(as) != 1 || !as[0].Job.CancelRequested || as[0].AttemptState != core.AttemptRunning {
				t.Errorf("TaskListByNode(%s): want one running task whose job asks to cancel", n.ID)
			}
		}

		a = f.report(a, 0, core.TaskKilled, 137, 7)
		if a.State != core.AttemptCancelled || a.Tasks[1].State != core.TaskKilled {
			t.Errorf("TaskUpdate killed: attempt %s with rank 1 %s, want %s with %s",
				a.State, a.Tasks[1].State, core.AttemptCancelled, core.TaskKilled)
		}
		want.State, want.UpdatedAt, want.FinishedAt = core.JobCancelled, at(7), at(7)
		want.Reason = reasonAfter(core.AttemptCancelled, true, j.Spec.Retries, core.RetryCount{})
		diff(t, "JobGet after the tasks were killed", &want, f.getJob(j.ID))
		_, err = f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(8)})
		wantErr(t, "JobCancel of a cancelled job", err, store.ErrConflict)
	})

	t.Run("rank fails after the request", func(t *testing.T) {
		f := setup(t, open)
		p := f.pool()
		n := f.node(p)
		j := f.job(retries(3, 3))
		a := f.runAll(f.place(j, p, 1, n), 2)
		_, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(5)})
		noErr(t, "JobCancel", err)
		f.report(a, 0, core.TaskExited, 1, 6)
		got := f.getJob(j.ID)
		if got.State != core.JobCancelled || got.Retries != (core.RetryCount{}) {
			t.Errorf("JobGet: %s with retries %+v, want %s with none used", got.State, got.Retries, core.JobCancelled)
		}
	})

	t.Run("placed, then its node is lost", func(t *testing.T) {
		f := setup(t, open)
		p := f.pool()
		n := f.node(p, lease(30))
		j := f.job(retries(3, 0))
		a := f.place(j, p, 1, n)
		_, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(5)})
		noErr(t, "JobCancel", err)
		f.expire(31)
		want := *j
		want.State, want.CurrentAttempt, want.Attempts, want.CancelRequested = core.JobCancelled, a.ID, 1, true
		want.UpdatedAt, want.FinishedAt = at(31), at(31)
		want.Reason = reasonAfter(core.AttemptLost, true, j.Spec.Retries, core.RetryCount{})
		diff(t, "JobGet after the node was lost", &want, f.getJob(j.ID))
		if got := f.getAttempt(a.ID); got.State != core.AttemptLost {
			t.Errorf("AttemptGet: state %s, want %s", got.State, core.AttemptLost)
		}
	})

	t.Run("finished", func(t *testing.T) {
		f := setup(t, open)
		p := f.pool()
		n := f.node(p)
		j := f.job()
		f.report(f.place(j, p, 1, n), 0, core.TaskExited, 0, 2)
		before := f.getJob(j.ID)
		_, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: j.ID, Now: at(3)})
		wantErr(t, "JobCancel of a finished job", err, store.ErrConflict)
		diff(t, "JobGet after a refused JobCancel", before, f.getJob(j.ID))
	})
}

// testTaskTransitions checks that impossible task changes fail with
// core.ErrTransition and change nothing, and that repeated reports are
// harmless.
func testTaskTransitions(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	j := f.job(ranks(2))
	a := f.runAll(f.place(j, p, 1, f.node(p), f.node(p)), 2)
	a = f.report(a, 0, core.TaskExited, 0, 3)

	snapshot := func() (*store.Job, []*store.Attempt) { return f.getJob(j.ID), f.attempts(j.ID) }
	for _, tc := range []struct {
		name     string
		rank     int
		state    core.TaskState
		exitCode int
		want     error
	}{
		{"exited to running", 0, core.TaskRunning, 0, core.ErrTransition},
		{"exited to killed", 0, core.TaskKilled, 0, core.ErrTransition},
		{"exited 0 to exited 1", 0, core.TaskExited, 1, core.ErrTransition},
		{"exited to assigned", 0, core.TaskAssigned, 0, core.ErrTransition},
		{"running to assigned", 1, core.TaskAssigned, 0, core.ErrTransition},
		{"running to an unknown state", 1, core.TaskState("paused"), 0, core.ErrTransition},
		{"a rank past the last", 2, core.TaskRunning, 0, store.ErrNotFound},
		{"a negative rank", -1, core.TaskRunning, 0, store.ErrNotFound},
	} {
		jobBefore, attemptsBefore := snapshot()
		_, err := f.s.TaskUpdate(f.ctx, &store.TaskUpdateParams{Fence: fence(a), Rank: tc.rank, State: tc.state, ExitCode: tc.exitCode, Now: at(9)})
		wantErr(t, "TaskUpdate "+tc.name, err, tc.want)
		jobAfter, attemptsAfter := snapshot()
		diff(t, "JobGet after TaskUpdate "+tc.name, jobBefore, jobAfter)
		diff(t, "AttemptListByJob after TaskUpdate "+tc.name, attemptsBefore, attemptsAfter)
	}

	// A report sent again (an agent retrying) changes nothing.
	jobBefore, attemptsBefore := snapshot()
	f.report(a, 0, core.TaskExited, 0, 10)
	f.report(a, 1, core.TaskRunning, 0, 10)
	jobAfter, attemptsAfter := snapshot()
	diff(t, "JobGet after repeated reports", jobBefore, jobAfter)
	diff(t, "AttemptListByJob after repeated reports", attemptsBefore, attemptsAfter)

	if a = f.report(a, 1, core.TaskExited, 0, 11); a.State != core.AttemptSucceeded {
		t.Errorf("TaskUpdate of the last rank: attempt %s, want %s", a.State, core.AttemptSucceeded)
	}
}

// testTaskListByNode checks what an agent sees: the tasks of live attempts
// on its node, with their gang's wiring, and nothing left of an attempt
// that ended. A task that an ended attempt left unfinished is killed in the
// same transaction, so every one of them is gone from the list: an agent
// stops any task it runs that the list no longer shows.
func testTaskListByNode(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	nA, nB := f.node(p), f.node(p)
	solo := f.job()
	gang := f.job(ranks(2))
	aSolo := f.place(solo, p, 1, nA)
	aGang := f.runAll(f.place(gang, p, 2, nB, nA), 3)

	listA := f.assignments(nA.ID)
	if len(listA) != 2 {
		t.Fatalf("TaskListByNode(A): %d tasks, want 2", len(listA))
	}
	byAttempt := map[string]*store.Assignment{}
	for _, as := range listA {
		byAttempt[as.Task.AttemptID] = as
	}
	for _, c := range []struct {
		a     *store.Attempt
		job   *store.Job
		rank  int
		state core.AttemptState
		ranks []string
	}{
		{aSolo, solo, 0, core.AttemptPlaced, nodeIDs(nA)},
		{aGang, gang, 1, core.AttemptRunning, nodeIDs(nB, nA)},
	} {
		as := byAttempt[c.a.ID]
		if as == nil {
			t.Errorf("TaskListByNode(A): no task of attempt %s", c.a.ID)
			continue
		}
		diff(t, "TaskListByNode(A) task", *c.a.Tasks[c.rank], as.Task, ignoreTaskMessage)
		diff(t, "TaskListByNode(A) attempt state", c.state, as.AttemptState)
		diff(t, "TaskListByNode(A) ranks", c.ranks, as.Ranks)
		diff(t, "TaskListByNode(A) job", f.getJob(c.job.ID), as.Job)
		if as.FencingToken != c.a.FencingToken {
			t.Errorf("TaskListByNode(A): attempt %s's fencing token differs", c.a.ID)
		}
	}

	// Rank 0 of the gang ends well; its attempt lives on, and so does the
	// task in B's list, ended.
	aGang = f.report(aGang, 0, core.TaskExited, 0, 4)
	listB := f.assignments(nB.ID)
	if len(listB) != 1 || listB[0].Task.State != core.TaskExited || listB[0].AttemptState != core.AttemptRunning {
		t.Errorf("TaskListByNode(B) after rank 0 exited: want its exited task of a running attempt, got %d tasks", len(listB))
	}

	// Rank 1 fails: the attempt ends, and A's list keeps only the solo job.
	f.report(aGang, 1, core.TaskExited, 2, 5)
	listA = f.assignments(nA.ID)
	if len(listA) != 1 || listA[0].Task.AttemptID != aSolo.ID {
		t.Errorf("TaskListByNode(A) after the gang failed: want only attempt %s, got %d tasks", aSolo.ID, len(listA))
	}
	diff(t, "TaskListByNode(B) after the gang failed", []*store.Assignment(nil), f.assignments(nB.ID))

	// Lost with a rank still running on a healthy node: that rank is killed
	// and leaves its node's list at once.
	nC, nD := f.node(p, lease(30)), f.node(p)
	lossy := f.job(ranks(2))
	aLossy := f.runAll(f.place(lossy, p, 6, nC, nD), 7)
	f.expire(31)
	got := f.getAttempt(aLossy.ID)
	for _, tk := range got.Tasks {
		if !tk.State.Terminal() {
			t.Errorf("rank %d of the lost attempt is still %s", tk.Rank, tk.State)
		}
	}
	diff(t, "TaskListByNode(D) after its gang's other node was lost", []*store.Assignment(nil), f.assignments(nD.ID))

	_, err := f.s.TaskListByNode(f.ctx, "node-nope")
	wantErr(t, "TaskListByNode of a missing node", err, store.ErrNotFound)
}
