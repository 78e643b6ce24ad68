// Package storetest is the conformance suite of store.Store: every backend
// runs it from its own tests, against a real database, and must pass all
// of it. What the suite pins is the contract; what it leaves open (the order
// of PoolList, say) a backend may choose.
package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
)

// Run runs the suite. open returns a new, empty store for one test, which
// the suite closes when the test ends; tests run in parallel, each on a
// store of its own.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) store.Store)
	}{
		{"Pools", testPools},
		{"Nodes", testNodes},
		{"NodeHeartbeat", testNodeHeartbeat},
		{"Jobs", testJobs},
		{"JobList", testJobList},
		{"Objects", testObjects},
		{"Datasets", testDatasets},
		{"Times", testTimes},
		{"Lifecycle", testLifecycle},
		{"GangRankFails", testGangRankFails},
		{"Capacity", testCapacity},
		{"CapacityFreedWhenAttemptEnds", testCapacityFreed},
		{"GPUModels", testGPUModels},
		{"RacePlaceSameJob", testRacePlaceSameJob},
		{"RaceLastGPU", testRaceLastGPU},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseExpiryGang", testLeaseExpiryGang},
		{"NodeLeave", testNodeLeave},
		{"Fencing", testFencing},
		{"Cancel", testCancel},
		{"Checkpoints", testCheckpoints},
		{"Artifacts", testArtifacts},
		{"Logs", testLogs},
		{"Metrics", testMetrics},
		{"TaskTransitions", testTaskTransitions},
		{"TaskListByNode", testTaskListByNode},
		{"PoolUpdateDelete", testPoolUpdateDelete},
		{"Projects", testProjects},
		{"Usage", testUsage},
		{"Preemption", testPreemption},
		{"NodeDrain", testNodeDrain},
		{"NodeSetCapacity", testNodeSetCapacity},
		{"JobIdempotencyKey", testJobIdempotencyKey},
		{"Users", testUsers},
		{"Tokens", testTokens},
		{"JoinTokens", testJoinTokens},
		{"Members", testMembers},
		{"NodeMarkLost", testNodeMarkLost},
		{"Audit", testAudit},
		{"TaskListUnfinished", testTaskListUnfinished},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open)
		})
	}
}

// t0 is the suite's epoch; at(s) is s seconds after it. Times are whole
// milliseconds in UTC, as every backend stores them.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

const gib = 1 << 30

// fixture is one test's store and the helpers that fill it. Its helpers
// fail the test that made it, so a table test makes one per case.
type fixture struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
}

func setup(t *testing.T, open func(t *testing.T) store.Store) *fixture {
	t.Helper()
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &fixture{t: t, ctx: context.Background(), s: s}
}

func (f *fixture) pool(mods ...func(*store.Pool)) *store.Pool {
	f.t.Helper()
	p := &store.Pool{
		ID:        core.NewID("pool"),
		Name:      core.NewID("rigs"),
		Driver:    "agent",
		Region:    "eu-west",
		Tier:      core.TierVerified,
		State:     store.PoolActive,
		CreatedAt: at(0),
	}
	for _, m := range mods {
		m(p)
	}
	if err := f.s.PoolCreate(f.ctx, p); err != nil {
		f.t.Fatalf("PoolCreate: %v", err)
	}
	return p
}

// node registers a node of 16 CPUs, 64 GiB and two A100s whose lease runs
// an hour.
func (f *fixture) node(p *store.Pool, mods ...func(*store.Node)) *store.Node {
	f.t.Helper()
	n := &store.Node{
		ID:              core.NewID("node"),
		PoolID:          p.ID,
		Name:            "rig-1",
		State:           store.NodeReady,
		MilliCPUs:       16000,
		MemoryBytes:     64 * gib,
		GPUs:            []core.GPU{{Model: "a100", MemoryBytes: 80 * gib}, {Model: "a100", MemoryBytes: 80 * gib}},
		Labels:          map[string]string{"rack": "r1"},
		CredentialHash:  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		AgentVersion:    "0.1.0",
		RegisteredAt:    at(0),
		LastHeartbeatAt: at(0),
		LeaseExpiresAt:  at(3600),
	}
	for _, m := range mods {
		m(n)
	}
	if err := f.s.NodeCreate(f.ctx, n); err != nil {
		f.t.Fatalf("NodeCreate: %v", err)
	}
	return n
}

func gpus(models ...string) func(*store.Node) {
	return func(n *store.Node) {
		n.GPUs = nil
		for _, m := range models {
			n.GPUs = append(n.GPUs, core.GPU{Model: m})
		}
	}
}

func lease(sec int) func(*store.Node) {
	return func(n *store.Node) { n.LeaseExpiresAt = at(sec) }
}

// job submits a one-rank job asking 4 CPUs, 8 GiB and one GPU of any model,
// with no retries.
func (f *fixture) job(mods ...func(*store.Job)) *store.Job {
	f.t.Helper()
	j := &store.Job{
		ID:         core.NewID("job"),
		Name:       "resnet",
		Project:    "vision",
		State:      core.JobQueued,
		Priority:   core.PriorityNormal,
		DataObject: core.NewID("obj"),
		CreatedAt:  at(0),
		UpdatedAt:  at(0),
		Spec: spec.Job{
			Name:      "resnet",
			Project:   "vision",
			Command:   []string{"/bin/sh", "-c", "python train.py"},
			Resources: core.Resources{MilliCPUs: 4000, MemoryBytes: 8 * gib, GPUs: 1},
			Nodes:     1,
			Priority:  core.PriorityNormal,
		},
	}
	for _, m := range mods {
		m(j)
	}
	if err := f.s.JobCreate(f.ctx, j); err != nil {
		f.t.Fatalf("JobCreate: %v", err)
	}
	return j
}

func ranks(n int) func(*store.Job) { return func(j *store.Job) { j.Spec.Nodes = n } }

func asks(r core.Resources) func(*store.Job) { return func(j *store.Job) { j.Spec.Resources = r } }

func retries(onNodeLost, onError int) func(*store.Job) {
	return func(j *store.Job) { j.Spec.Retries = core.RetryBudget{OnNodeLost: onNodeLost, OnError: onError} }
}

func nodeIDs(ns ...*store.Node) []string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return ids
}

// place places j, one rank per node given, and fails the test unless it can.
func (f *fixture) place(j *store.Job, p *store.Pool, sec int, ns ...*store.Node) *store.Attempt {
	f.t.Helper()
	a, err := f.s.AttemptCreate(f.ctx, &store.AttemptCreateParams{JobID: j.ID, PoolID: p.ID, NodeIDs: nodeIDs(ns...), Now: at(sec)})
	if err != nil {
		f.t.Fatalf("AttemptCreate(%s on %v): %v", j.ID, nodeIDs(ns...), err)
	}
	if a.FencingToken == "" {
		f.t.Fatalf("AttemptCreate: attempt %s has no fencing token", a.ID)
	}
	return a
}

func fence(a *store.Attempt) store.Fence { return store.Fence{AttemptID: a.ID, Token: a.FencingToken} }

// report records a task's new state and fails the test unless it can.
func (f *fixture) report(a *store.Attempt, rank int, state core.TaskState, exitCode, sec int) *store.Attempt {
	f.t.Helper()
	got, err := f.s.TaskUpdate(f.ctx, &store.TaskUpdateParams{Fence: fence(a), Rank: rank, State: state, ExitCode: exitCode, Now: at(sec)})
	if err != nil {
		f.t.Fatalf("TaskUpdate(%s rank %d -> %s): %v", a.ID, rank, state, err)
	}
	return got
}

// runAll reports every rank of a running.
func (f *fixture) runAll(a *store.Attempt, sec int) *store.Attempt {
	f.t.Helper()
	for r := range a.Tasks {
		a = f.report(a, r, core.TaskRunning, 0, sec)
	}
	return a
}

func (f *fixture) getJob(id string) *store.Job {
	f.t.Helper()
	j, err := f.s.JobGet(f.ctx, id)
	if err != nil {
		f.t.Fatalf("JobGet(%s): %v", id, err)
	}
	return j
}

func (f *fixture) getAttempt(id string) *store.Attempt {
	f.t.Helper()
	a, err := f.s.AttemptGet(f.ctx, id)
	if err != nil {
		f.t.Fatalf("AttemptGet(%s): %v", id, err)
	}
	return a
}

func (f *fixture) getNode(id string) *store.Node {
	f.t.Helper()
	n, err := f.s.NodeGet(f.ctx, id)
	if err != nil {
		f.t.Fatalf("NodeGet(%s): %v", id, err)
	}
	return n
}

func (f *fixture) attempts(jobID string) []*store.Attempt {
	f.t.Helper()
	as, err := f.s.AttemptListByJob(f.ctx, jobID)
	if err != nil {
		f.t.Fatalf("AttemptListByJob(%s): %v", jobID, err)
	}
	return as
}

func (f *fixture) assignments(nodeID string) []*store.Assignment {
	f.t.Helper()
	as, err := f.s.TaskListByNode(f.ctx, nodeID)
	if err != nil {
		f.t.Fatalf("TaskListByNode(%s): %v", nodeID, err)
	}
	slices.SortFunc(as, func(a, b *store.Assignment) int {
		if c := strings.Compare(a.Task.AttemptID, b.Task.AttemptID); c != 0 {
			return c
		}
		return a.Task.Rank - b.Task.Rank
	})
	return as
}

// reasonAfter is the reason core gives a job whose attempt ended so.
func reasonAfter(ended core.AttemptState, cancelRequested bool, budget core.RetryBudget, used core.RetryCount) string {
	_, _, why := core.JobAfterAttempt(ended, cancelRequested, budget, used)
	return why
}

// Free-text fields a backend words as it likes; tests that care check them
// on their own.
var (
	ignoreJobReason   = cmpopts.IgnoreFields(store.Job{}, "Reason")
	ignoreTaskMessage = cmpopts.IgnoreFields(store.Task{}, "Message")
	ignoreAttemptText = cmpopts.IgnoreFields(store.Attempt{}, "Reason")
)

// diff reports a mismatch between want and got, treating nil and empty
// slices and maps alike.
func diff(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, append(opts, cmpopts.EquateEmpty())...); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// wantErr reports unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func sortedBy[T any](xs []T, key func(T) string) []T {
	xs = slices.Clone(xs)
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return xs
}
