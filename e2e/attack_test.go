package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// TestAttack is the attack suite: every subtest is one attack a hostile rig
// or tenant would try against a real control plane, real agents and the
// real CLI. Each checks three things: the attack is refused or detected;
// the attacker got nothing (no bytes, no key, no file written, no state
// changed); and the attempt is in the audit log under the attacker's name.
// The subtests share one server and each brings its own users, projects,
// pools and jobs, so that what one leaves behind cannot help another.
func TestAttack(t *testing.T) {
	s := &attack{cl: startServer(t, "--no-local-pool")}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"AgentAsksForAnotherJobsData", s.agentAsksForAnotherJobsData},
		{"ReplayedGrant", s.replayedGrant},
		{"ForgedFencingToken", s.forgedFencingToken},
		{"StaleFencingToken", s.staleFencingToken},
		{"RevokedNodeReconnecting", s.revokedNodeReconnecting},
		{"MemberOfAnotherProjectReads", s.memberOfAnotherProjectReads},
		{"MemberOfAnotherProjectCancels", s.memberOfAnotherProjectCancels},
		{"MemberOfAnotherProjectDownloads", s.memberOfAnotherProjectDownloads},
		{"ConfidentialJobForcedOntoCommunityPool", s.confidentialJobForcedOntoCommunityPool},
		{"PathTraversalInWorkdir", s.pathTraversalInWorkdir},
		{"PathTraversalInDataset", s.pathTraversalInDataset},
		{"SymlinkEscapeInArtifacts", s.symlinkEscapeInArtifacts},
		{"OversizedUpload", s.oversizedUpload},
		{"MalformedUpload", s.malformedUpload},
		{"TamperedChunk", s.tamperedChunk},
		// After every attack that planted a marker, so it can look for all
		// of them in every process's output.
		{"NoPlaintextInLogs", s.noPlaintextInLogs},
		// Last: it restarts the server, so that a signed checkpoint covers
		// the entries every attack above left.
		{"TamperedAuditLog", s.tamperedAuditLog},
	} {
		t.Run(c.name, c.run)
	}
}

// attack is what the suite's subtests share.
type attack struct {
	cl *cluster

	mu sync.Mutex
	// markers are the plaintext strings the attacks planted in data; no
	// process may ever print one.
	markers []string
	// procs are the agents the attacks started, kept after they end so
	// that their output can be searched for the markers.
	procs []*proc
}

// on returns the suite's cluster bound to a subtest, so that the harness's
// helpers fail that subtest and the processes they start end with it.
func (s *attack) on(t *testing.T) *cluster {
	cl := *s.cl
	cl.t = t
	return &cl
}

// marker returns a fresh plaintext marker and remembers it.
func (s *attack) marker(what string) string {
	m := "LODE-ATTACK-" + what + "-" + rand.Text()
	s.mu.Lock()
	s.markers = append(s.markers, m)
	s.mu.Unlock()
	return m
}

// tenant is a user with the member role in one project, signed in.
type tenant struct {
	name, project, token string
	c                    *client.Client
}

// tenant makes a user, gives them the member role in project and an API
// token, and returns a client that acts as them.
func (s *attack) tenant(t *testing.T, name, project string) *tenant {
	t.Helper()
	ctx := t.Context()
	if _, err := s.cl.c.CreateUser(ctx, &wire.CreateUser{Name: name}); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	if _, err := s.cl.c.PutMember(ctx, project, name, &wire.MemberSpec{Role: core.RoleMember}); err != nil {
		t.Fatalf("make %s a member of %s: %v", name, project, err)
	}
	tok, err := s.cl.c.CreateToken(ctx, &wire.CreateToken{User: name})
	if err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return &tenant{name: name, project: project, token: tok.Secret, c: s.cl.c.WithToken(tok.Secret)}
}

// actor is how the audit log names the tenant.
func (tn *tenant) actor() string { return "user:" + tn.name }

// pool makes a pool of its own for a subtest, so that its jobs (placed
// there by name) meet only the nodes the subtest joins.
func (s *attack) pool(t *testing.T, name string) string {
	t.Helper()
	tier := core.TierPrivate.String()
	if _, err := s.cl.c.CreatePool(t.Context(), &wire.PoolSpec{Name: name, Tier: &tier}); err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	return name
}

// submit submits a job as the tenant through `lode run`, placed in pool by
// name; the job is cancelled when the subtest ends, if it still runs.
func (s *attack) submit(t *testing.T, tn *tenant, pool, extra, body string, files map[string]string) string {
	t.Helper()
	p := script(t, fmt.Sprintf("project: %s\nplacement: {pools: [%s]}\n%s", tn.project, pool, extra), body, files)
	code, stdout, stderr := s.on(t).run("run", "--detach", p, "--token", tn.token)
	if code != 0 {
		t.Fatalf("submit as %s: exit %d: %s", tn.name, code, stderr)
	}
	id := strings.TrimSpace(stdout)
	s.cancelAtEnd(t, id)
	return id
}

func (s *attack) cancelAtEnd(t *testing.T, id string) {
	t.Cleanup(func() { _, _ = s.cl.c.CancelJob(context.Background(), id) })
}

// agent starts a real `lode agent` in pool with its directory at dir.
func (s *attack) agent(t *testing.T, pool, name, dir string) *proc {
	t.Helper()
	tok, err := s.cl.c.JoinToken(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	a := s.on(t).startAgent(name, "--join-token", tok.Token, "--dir", dir)
	s.mu.Lock()
	s.procs = append(s.procs, a)
	s.mu.Unlock()
	return a
}

// pushed is a dataset a tenant pushed, and what an honest reader of it
// needs.
type pushed struct {
	obj, manifest string
	sealer        *data.Sealer
	// addr is the address of each file's chunk (the files are small).
	addr map[string]string
}

// pushDataset pushes files as a dataset of the tenant's project, as `lode
// data push` does.
func (tn *tenant) pushDataset(t *testing.T, name string, files map[string]string) *pushed {
	t.Helper()
	ctx := t.Context()
	key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: tn.project, Name: name})
	if err != nil {
		t.Fatalf("create dataset %s: %v", name, err)
	}
	sl, err := data.NewSealer(key.ObjectID, key.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, files)
	res, err := data.Push(ctx, tn.c, sl, key.ObjectID, dir, nil)
	if err != nil {
		t.Fatalf("push dataset %s: %v", name, err)
	}
	if _, err := tn.c.CommitDataset(ctx, &wire.CommitDataset{Project: tn.project, Name: name, ObjectID: key.ObjectID,
		Manifest: res.Manifest, Files: res.Files, Bytes: res.Bytes}); err != nil {
		t.Fatalf("commit dataset %s: %v", name, err)
	}
	p := &pushed{obj: key.ObjectID, manifest: res.Manifest, sealer: sl, addr: map[string]string{}}
	for f, content := range files {
		p.addr[f] = sl.Address([]byte(content))
	}
	return p
}

// A fake node speaks the agent API itself, as the owner of a hostile rig
// can: it keeps its lease with heartbeats that list the tasks it was
// given, and hands the test each task it is given, data keys and all.
type fakeNode struct {
	id string
	c  *client.Client // authenticates as the node

	starts chan wire.Assignment
	stop   func() // ends the heartbeats and waits for them

	mu    sync.Mutex
	tasks []wire.TaskRef
}

// joinFakeNode joins pool as a node with no agent behind it. It is the one
// place the suite makes a node identity: how a joined node authenticates
// (a credential today, a client certificate with mutual TLS) lives here.
func joinFakeNode(t *testing.T, cl *cluster, pool, name string) (*client.Client, *wire.Joined) {
	t.Helper()
	tok, err := cl.c.JoinToken(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	node, joined, err := cl.c.WithToken("").JoinAs(t.Context(), &wire.Join{JoinToken: tok.Token, Name: name,
		MilliCPUs: 4000, MemoryBytes: 4 << 30, GPUs: []core.GPU{}, Labels: map[string]string{wire.LabelAddr: "127.0.0.1"}})
	if err != nil {
		t.Fatalf("join %s: %v", pool, err)
	}
	return node, joined
}

// startFakeNode joins pool and heartbeats until the subtest ends or the
// server refuses the node.
func (s *attack) startFakeNode(t *testing.T, pool, name string) *fakeNode {
	t.Helper()
	c, joined := joinFakeNode(t, s.cl, pool, name)
	n := &fakeNode{id: joined.NodeID, c: c, starts: make(chan wire.Assignment, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Duration(joined.HeartbeatIntervalMS) * time.Millisecond)
		defer tick.Stop()
		for {
			reply, err := c.Heartbeat(ctx, &wire.Heartbeat{Tasks: n.running()})
			var refused *client.Error
			if errors.As(err, &refused) {
				return // the node is gone; the test asks again itself
			}
			if err == nil {
				for _, as := range reply.Start {
					if n.add(wire.TaskRef{AttemptID: as.Task.AttemptID, Rank: as.Task.Rank}) {
						select {
						case n.starts <- as:
						case <-ctx.Done():
							return
						}
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	n.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(n.stop)
	return n
}

func (n *fakeNode) running() []wire.TaskRef {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.tasks)
}

// add lists a task as running from the next heartbeat on, so the server
// does not take it for lost; it reports whether the task is new.
func (n *fakeNode) add(ref wire.TaskRef) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.Contains(n.tasks, ref) {
		return false
	}
	n.tasks = append(n.tasks, ref)
	return true
}

func (n *fakeNode) drop(ref wire.TaskRef) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tasks = slices.DeleteFunc(n.tasks, func(r wire.TaskRef) bool { return r == ref })
}

// next waits for the node to be given a task of job.
func (n *fakeNode) next(t *testing.T, job string) wire.Assignment {
	t.Helper()
	select {
	case as := <-n.starts:
		if as.Job.ID != job {
			t.Fatalf("node %s was given a task of job %s; want one of %s", n.id, as.Job.ID, job)
		}
		if as.FencingToken == "" || as.Keys[as.Job.DataObject] == nil {
			t.Fatalf("the task of job %s came without a fencing token or its data key: %+v", job, as)
		}
		return as
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s was given no task of job %s within 30s", n.id, job)
		return wire.Assignment{}
	}
}

func fenceOf(as wire.Assignment) store.Fence {
	return store.Fence{AttemptID: as.Task.AttemptID, Token: as.FencingToken}
}

// report reports the task's state with its true fencing token; a task that
// ended leaves the node's heartbeats afterwards (before, the server would
// take it for lost).
func (n *fakeNode) report(t *testing.T, as wire.Assignment, state core.TaskState) {
	t.Helper()
	if err := n.c.TaskStatus(t.Context(), fenceOf(as), as.Task.Rank, &wire.TaskStatus{State: state}); err != nil {
		t.Fatalf("report the task %s: %v", state, err)
	}
	if state.Terminal() {
		n.drop(wire.TaskRef{AttemptID: as.Task.AttemptID, Rank: as.Task.Rank})
	}
}

// push seals files into the job's data object as its worker would, while
// the task lives; it returns what Commit needs.
func (n *fakeNode) push(t *testing.T, as wire.Assignment, files map[string]string) *wire.Commit {
	t.Helper()
	sl, err := data.NewSealer(as.Job.DataObject, as.Keys[as.Job.DataObject])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, files)
	res, err := data.Push(t.Context(), n.c, sl, as.Job.DataObject, dir, nil)
	if err != nil {
		t.Fatalf("push into the job's data object: %v", err)
	}
	return &wire.Commit{Manifest: res.Manifest, Files: res.Files, Bytes: res.Bytes}
}

// isRefused checks that err is the server's refusal with code (and status,
// unless 0: a refusal in a heartbeat stream comes in a frame, not a status).
func isRefused(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Body.Code != code || (status != 0 && e.Status != status) {
		t.Errorf("%s: got %v (%#v); want the server to refuse it: %d %s", what, err, e, status, code)
	}
}

// auditMark returns the newest audit entry's sequence number, so that a
// check can look only at what an attack added.
func (s *attack) auditMark(t *testing.T) int64 {
	t.Helper()
	log, err := s.cl.c.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Entries) == 0 {
		return 0
	}
	return log.Entries[len(log.Entries)-1].Seq
}

// auditSince returns the entries after mark that match kind, actor and
// subject (an empty one matches anything).
func (s *attack) auditSince(t *testing.T, mark int64, kind, actor, subject string) (match, all []audit.Entry) {
	t.Helper()
	log, err := s.cl.c.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range log.Entries {
		if e.Seq <= mark {
			continue
		}
		all = append(all, e)
		if (kind == "" || e.Kind == kind) && (actor == "" || e.Actor == actor) && (subject == "" || e.Subject == subject) {
			match = append(match, e)
		}
	}
	return match, all
}

// audited checks that an entry of kind by actor about subject was added
// after mark, and returns the first.
func (s *attack) audited(t *testing.T, mark int64, kind, actor, subject string) audit.Entry {
	t.Helper()
	match, all := s.auditSince(t, mark, kind, actor, subject)
	if len(match) == 0 {
		t.Errorf("the audit log holds no %s by %s on %q after entry %d; it holds:\n%s", kind, actor, subject, mark, entryList(all))
		return audit.Entry{}
	}
	return match[0]
}

func entryList(es []audit.Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "  %d %s %s %q %v\n", e.Seq, e.Kind, e.Actor, e.Subject, e.Detail)
	}
	return b.String()
}

// AgentAsksForAnotherJobsData: a node holds a grant only for the objects of
// its own live tasks. With no task it reads nothing; given a task of its
// own job it reads that job's dataset (so the grant works) and still not
// another project's.
func (s *attack) agentAsksForAnotherJobsData(t *testing.T) {
	ctx := t.Context()
	victim := s.tenant(t, "vera", "secret-plans")
	own := s.tenant(t, "olga", "rig-owner")
	secret := s.marker("another-jobs-data")
	plans := victim.pushDataset(t, "plans", map[string]string{"plans.txt": secret})
	pool := s.pool(t, "atk-other-data")
	n := s.startFakeNode(t, pool, "hostile-1")
	actor := "node:" + n.id
	chunkPath := "/v1/objects/" + plans.obj + "/chunks/" + plans.addr["plans.txt"]
	manifestPath := "/v1/objects/" + plans.obj + "/manifests/" + plans.manifest

	tryAll := func(when string) {
		t.Helper()
		b, err := n.c.GetManifest(ctx, plans.obj, plans.manifest)
		isRefused(t, when+": the victim's manifest", err, http.StatusForbidden, "forbidden")
		if b != nil {
			t.Errorf("%s: got %d bytes of the victim's manifest", when, len(b))
		}
		b, err = n.c.GetChunk(ctx, plans.obj, plans.addr["plans.txt"])
		isRefused(t, when+": the victim's chunk", err, http.StatusForbidden, "forbidden")
		if b != nil {
			t.Errorf("%s: got %d bytes of the victim's chunk", when, len(b))
		}
		missing, err := n.c.MissingChunks(ctx, plans.obj, []string{plans.addr["plans.txt"]})
		isRefused(t, when+": which of the victim's chunks exist", err, http.StatusForbidden, "forbidden")
		if missing != nil {
			t.Errorf("%s: learned which chunks the victim's object holds: %v", when, missing)
		}
	}

	mark := s.auditMark(t)
	tryAll("a node with no task")
	s.audited(t, mark, audit.AccessDenied, actor, "GET "+manifestPath)
	s.audited(t, mark, audit.AccessDenied, actor, "GET "+chunkPath)

	// Given a task, the node reads its own job's dataset: the control that
	// shows the refusals above and below are about whose data it is.
	job := s.submit(t, own, pool, "datasets: [{name: mine, mount: data, from: ds}]\n", "true\n", map[string]string{"ds/x.txt": "own data"})
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	if _, ok := as.Keys[plans.obj]; ok {
		t.Errorf("the task of job %s came with the key of the victim's dataset %s", job, plans.obj)
	}
	mine := as.Job.Datasets[0]
	if _, err := n.c.GetManifest(ctx, mine.ObjectID, mine.Manifest); err != nil {
		t.Fatalf("control: the node cannot read its own task's dataset: %v", err)
	}

	mark = s.auditMark(t)
	tryAll("a node with a task of another job")
	// Nor may it write into the victim's object: a poisoned chunk there
	// would be the victim's next read.
	sl, err := data.NewSealer(plans.obj, as.Keys[as.Job.DataObject]) // the only keys it has are its own
	if err != nil {
		t.Fatal(err)
	}
	poison := []byte("poison")
	addr := sl.Address(poison)
	sealed, _ := sl.SealChunk(addr, poison)
	err = n.c.PutChunk(ctx, plans.obj, addr, sealed)
	isRefused(t, "writing into the victim's object", err, http.StatusForbidden, "forbidden")
	if missing, err := victim.c.MissingChunks(ctx, plans.obj, []string{addr}); err != nil || !slices.Equal(missing, []string{addr}) {
		t.Errorf("the victim's object after the refused write: missing %v, %v; want the chunk missing", missing, err)
	}
	s.audited(t, mark, audit.AccessDenied, actor, "GET "+manifestPath)
	s.audited(t, mark, audit.AccessDenied, actor, "PUT /v1/objects/"+plans.obj+"/chunks/"+addr)
	n.report(t, as, core.TaskExited)
}

// ReplayedGrant: a node that ran a task and got its keys asks for the
// job's data again after the task ended, and asks for the assignment (the
// keys) again with the attempt's old token. The grant ended with the task.
func (s *attack) replayedGrant(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "rita", "replay")
	pool := s.pool(t, "atk-replay")
	n := s.startFakeNode(t, pool, "hostile-2")
	job := s.submit(t, tn, pool, "datasets: [{name: corpus, mount: data, from: ds}]\n", "true\n",
		map[string]string{"ds/corpus.txt": s.marker("replayed-grant")})
	as := n.next(t, job)
	f := fenceOf(as)
	ds := as.Job.Datasets[0]
	if _, err := n.c.GetManifest(ctx, ds.ObjectID, ds.Manifest); err != nil {
		t.Fatalf("control: while its task lives the node cannot read the job's dataset: %v", err)
	}
	n.report(t, as, core.TaskRunning)
	n.report(t, as, core.TaskExited)
	s.on(t).waitState(job, core.JobSucceeded, 30*time.Second)

	mark := s.auditMark(t)
	b, err := n.c.GetManifest(ctx, ds.ObjectID, ds.Manifest)
	isRefused(t, "the node's replayed read of the dataset", err, http.StatusForbidden, "forbidden")
	if b != nil {
		t.Errorf("the replayed read returned %d bytes", len(b))
	}
	// The attempt's token is what a runner holds; replayed, it is fenced,
	// both for the assignment and for the data.
	runner := s.cl.c.WithToken("").WithAttempt(f.AttemptID, f.Token)
	again, err := runner.Assignment(ctx, f, 0)
	isRefused(t, "the runner assignment asked again with the old token", err, http.StatusConflict, "fenced")
	if len(again.Keys) != 0 {
		t.Errorf("the replayed assignment carried %d keys", len(again.Keys))
	}
	b, err = runner.GetManifest(ctx, ds.ObjectID, ds.Manifest)
	// A stale token is no credential at all for data: whether the attempt
	// exists is not the caller's to learn.
	isRefused(t, "a read of the dataset with the old token", err, http.StatusUnauthorized, "unauthorized")
	if b != nil {
		t.Errorf("the read with the old token returned %d bytes", len(b))
	}
	// Nor does a heartbeat hand the ended task out again.
	reply, err := n.c.Heartbeat(ctx, &wire.Heartbeat{Tasks: []wire.TaskRef{}})
	if err != nil || len(reply.Start) != 0 {
		t.Errorf("a heartbeat after the task ended: %+v, %v; want nothing to start", reply, err)
	}

	s.audited(t, mark, audit.AccessDenied, "node:"+n.id, "GET /v1/objects/"+ds.ObjectID+"/manifests/"+ds.Manifest)
	s.audited(t, mark, audit.AccessDenied, "attempt:"+f.AttemptID, "GET /v1/objects/"+ds.ObjectID+"/manifests/"+ds.Manifest)
	fenced, all := s.auditSince(t, mark, audit.WriteFenced, "attempt:"+f.AttemptID, f.AttemptID)
	for _, path := range []string{
		"/v1/agent/attempts/" + f.AttemptID + "/ranks/0/assignment",
	} {
		if !slices.ContainsFunc(fenced, func(e audit.Entry) bool { return e.Detail["path"] == path }) {
			t.Errorf("the audit log holds no write.fenced by attempt:%s on %s; it holds:\n%s", f.AttemptID, path, entryList(all))
		}
	}
	if grants, _ := s.auditSince(t, 0, audit.KeyGranted, "", f.AttemptID); len(grants) != 1 {
		t.Errorf("the attempt's keys were granted %d times; want once:\n%s", len(grants), entryList(grants))
	}
}

// ForgedFencingToken: writes for a live attempt with a token it was never
// given are refused, from the node that runs it and from a runner alike,
// and store nothing; the same writes with the true token work.
func (s *attack) forgedFencingToken(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "fred", "forged")
	pool := s.pool(t, "atk-forged")
	n := s.startFakeNode(t, pool, "hostile-3")
	job := s.submit(t, tn, pool, "checkpoint: {path: ckpt, every: 1m}\n", "true\n", nil)
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	f := fenceOf(as)
	if err := n.c.TaskLog(ctx, f, 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte("legit line\n")}); err != nil {
		t.Fatalf("control: the true token's log write: %v", err)
	}
	legit := n.push(t, as, map[string]string{"state.txt": "legit"})
	if _, err := n.c.CommitCheckpoint(ctx, f, legit); err != nil {
		t.Fatalf("control: the true token's checkpoint: %v", err)
	}
	// The forger's checkpoint is pushed (the node may write the job's
	// object while its task lives); only its commit is what is fenced.
	forgedCkpt := n.push(t, as, map[string]string{"state.txt": "forged"})
	forged := store.Fence{AttemptID: f.AttemptID, Token: strings.ToLower(rand.Text())}

	mark := s.auditMark(t)
	runner := s.cl.c.WithToken("").WithAttempt(f.AttemptID, forged.Token)
	for _, w := range []struct {
		who string
		c   *client.Client
	}{{"the node", n.c}, {"a runner", runner}} {
		err := w.c.TaskLog(ctx, forged, 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte("forged line\n")})
		isRefused(t, w.who+": a log write with a forged token", err, http.StatusConflict, "fenced")
		err = w.c.TaskStatus(ctx, forged, 0, &wire.TaskStatus{State: core.TaskExited, ExitCode: 0})
		isRefused(t, w.who+": a status report with a forged token", err, http.StatusConflict, "fenced")
		_, err = w.c.CommitCheckpoint(ctx, forged, forgedCkpt)
		isRefused(t, w.who+": a checkpoint commit with a forged token", err, http.StatusConflict, "fenced")
		_, err = w.c.CommitArtifact(ctx, forged, forgedCkpt)
		isRefused(t, w.who+": an output commit with a forged token", err, http.StatusConflict, "fenced")
		as2, err := w.c.Assignment(ctx, forged, 0)
		isRefused(t, w.who+": the assignment with a forged token", err, http.StatusConflict, "fenced")
		if len(as2.Keys) != 0 {
			t.Errorf("%s: the forged assignment carried %d keys", w.who, len(as2.Keys))
		}
	}

	assertUnchanged(t, s.cl.c, job, "legit line\n", legit.Manifest)
	d := s.on(t).job(job)
	if d.State != core.JobRunning || len(d.AttemptList) != 1 || d.AttemptList[0].State != core.AttemptRunning {
		t.Errorf("after the forged writes the job is %s with attempts %+v; want it running its one attempt", d.State, d.AttemptList)
	}
	s.audited(t, mark, audit.WriteFenced, "node:"+n.id, f.AttemptID)
	s.audited(t, mark, audit.WriteFenced, "attempt:"+f.AttemptID, f.AttemptID)
	n.report(t, as, core.TaskExited)
}

// assertUnchanged checks that a job's output is exactly logs, that its one
// checkpoint is manifest, and that it has no outputs.
func assertUnchanged(t *testing.T, c *client.Client, job, logs, manifest string) {
	t.Helper()
	chunks, err := c.Logs(t.Context(), job, 0)
	var got []byte
	for _, ch := range chunks {
		got = append(got, ch.Data...)
	}
	if err != nil || string(got) != logs {
		t.Errorf("the job's output is %q, %v; want only %q", got, err, logs)
	}
	cks, err := c.Checkpoints(t.Context(), job)
	if err != nil || len(cks) != 1 || cks[0].Manifest != manifest {
		t.Errorf("the job's checkpoints are %+v, %v; want only version 1, %s", cks, err, manifest)
	}
	if _, err := c.Artifacts(t.Context(), job); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the job's outputs: %v; want none", err)
	}
}

// StaleFencingToken: once the attempt ended, its own true token writes
// nothing more, from its node or a runner.
func (s *attack) staleFencingToken(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "sam", "stale")
	pool := s.pool(t, "atk-stale")
	n := s.startFakeNode(t, pool, "hostile-4")
	job := s.submit(t, tn, pool, "checkpoint: {path: ckpt, every: 1m}\n", "true\n", nil)
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	f := fenceOf(as)
	if err := n.c.TaskLog(ctx, f, 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte("legit line\n")}); err != nil {
		t.Fatalf("control: the log write while the attempt lives: %v", err)
	}
	legit := n.push(t, as, map[string]string{"state.txt": "legit"})
	if _, err := n.c.CommitCheckpoint(ctx, f, legit); err != nil {
		t.Fatalf("control: the checkpoint while the attempt lives: %v", err)
	}
	late := n.push(t, as, map[string]string{"state.txt": "late"})
	n.report(t, as, core.TaskExited)
	s.on(t).waitState(job, core.JobSucceeded, 30*time.Second)

	mark := s.auditMark(t)
	runner := s.cl.c.WithToken("").WithAttempt(f.AttemptID, f.Token)
	for _, w := range []struct {
		who string
		c   *client.Client
	}{{"the node", n.c}, {"a runner", runner}} {
		err := w.c.TaskLog(ctx, f, 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte("late line\n")})
		isRefused(t, w.who+": a log write with a stale token", err, http.StatusConflict, "fenced")
		err = w.c.TaskStatus(ctx, f, 0, &wire.TaskStatus{State: core.TaskRunning})
		isRefused(t, w.who+": a status report with a stale token", err, http.StatusConflict, "fenced")
		_, err = w.c.CommitCheckpoint(ctx, f, late)
		isRefused(t, w.who+": a checkpoint commit with a stale token", err, http.StatusConflict, "fenced")
		_, err = w.c.CommitArtifact(ctx, f, late)
		isRefused(t, w.who+": an output commit with a stale token", err, http.StatusConflict, "fenced")
	}

	assertUnchanged(t, s.cl.c, job, "legit line\n", legit.Manifest)
	d := s.on(t).job(job)
	if d.State != core.JobSucceeded || len(d.AttemptList) != 1 || d.AttemptList[0].State != core.AttemptSucceeded {
		t.Errorf("after the stale writes the job is %s with attempts %+v; want it succeeded, as it was", d.State, d.AttemptList)
	}
	s.audited(t, mark, audit.WriteFenced, "node:"+n.id, f.AttemptID)
	s.audited(t, mark, audit.WriteFenced, "attempt:"+f.AttemptID, f.AttemptID)
}

// RevokedNodeReconnecting: an administrator revokes a node that runs a
// task; from then on its heartbeats, data reads and task writes are
// refused as a node that is gone, and its job moves on without it.
func (s *attack) revokedNodeReconnecting(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "rob", "revoked")
	pool := s.pool(t, "atk-revoked")
	n := s.startFakeNode(t, pool, "hostile-5")
	job := s.submit(t, tn, pool, "datasets: [{name: corpus, mount: data, from: ds}]\n", "true\n",
		map[string]string{"ds/corpus.txt": s.marker("revoked-node")})
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	ds := as.Job.Datasets[0]
	if _, err := n.c.GetManifest(ctx, ds.ObjectID, ds.Manifest); err != nil {
		t.Fatalf("control: before the revocation the node cannot read its task's dataset: %v", err)
	}

	mark := s.auditMark(t)
	if code, _, stderr := s.on(t).run("nodes", "revoke", n.id); code != 0 {
		t.Fatalf("lode nodes revoke: exit %d: %s", code, stderr)
	}
	n.stop()
	_, err := n.c.Heartbeat(ctx, &wire.Heartbeat{Tasks: []wire.TaskRef{{AttemptID: as.Task.AttemptID}}})
	isRefused(t, "the revoked node's heartbeat", err, 0, "node_gone")
	b, err := n.c.GetManifest(ctx, ds.ObjectID, ds.Manifest)
	isRefused(t, "the revoked node's data read", err, http.StatusGone, "node_gone")
	if b != nil {
		t.Errorf("the revoked node read %d bytes", len(b))
	}
	err = n.c.TaskLog(ctx, fenceOf(as), 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte("after revocation\n")})
	isRefused(t, "the revoked node's log write", err, http.StatusGone, "node_gone")
	err = n.c.TaskStatus(ctx, fenceOf(as), 0, &wire.TaskStatus{State: core.TaskExited})
	isRefused(t, "the revoked node's status report", err, http.StatusGone, "node_gone")

	d := s.on(t).job(job)
	if len(d.AttemptList) != 1 || !d.AttemptList[0].State.Terminal() || d.State.Terminal() {
		t.Errorf("after the revocation the job is %s with attempts %+v; want its attempt ended and the job waiting to run again", d.State, d.AttemptList)
	}
	if chunks, err := s.cl.c.Logs(ctx, job, 0); err != nil || len(chunks) != 0 {
		t.Errorf("the job's output after the revoked node wrote: %+v, %v; want none", chunks, err)
	}
	s.audited(t, mark, audit.NodeRevoked, "user:admin", n.id)
	s.audited(t, mark, audit.NodeRefused, "node:"+n.id, "POST /v1/agent/heartbeats")
	s.audited(t, mark, audit.NodeRefused, "node:"+n.id, "GET /v1/objects/"+ds.ObjectID+"/manifests/"+ds.Manifest)
}

// victim is a job of one project on a fake node, and a member of another
// project who wants it.
type victim struct {
	owner, mallory *tenant
	job            string
	n              *fakeNode
	as             wire.Assignment
	secret         string // in the job's output and its outputs
}

// victimJob starts a job of project "victim-NAME" on a node of its own,
// which writes a line of output holding a secret; when finish is set the
// job ends with outputs holding the secret too.
func (s *attack) victimJob(t *testing.T, name string, finish bool) *victim {
	t.Helper()
	v := &victim{
		owner:   s.tenant(t, "owner-"+name, "victim-"+name),
		mallory: s.tenant(t, "mallory-"+name, "mallory-"+name),
		secret:  s.marker("victim-" + name),
	}
	pool := s.pool(t, "atk-victim-"+name)
	v.n = s.startFakeNode(t, pool, "victim-rig-"+name)
	v.job = s.submit(t, v.owner, pool, "outputs: out\n", "true\n", nil)
	v.as = v.n.next(t, v.job)
	v.n.report(t, v.as, core.TaskRunning)
	f := fenceOf(v.as)
	if err := v.n.c.TaskLog(t.Context(), f, 0, &wire.TaskLog{Stream: store.Stdout, Data: []byte(v.secret + "\n")}); err != nil {
		t.Fatal(err)
	}
	if finish {
		if _, err := v.n.c.CommitArtifact(t.Context(), f, v.n.push(t, v.as, map[string]string{"model.bin": v.secret})); err != nil {
			t.Fatal(err)
		}
		v.n.report(t, v.as, core.TaskExited)
		s.on(t).waitState(v.job, core.JobSucceeded, 30*time.Second)
	}
	return v
}

// MemberOfAnotherProjectReads: a member of another project reads nothing
// of the job: not its status, output, metrics, checkpoints, placement or
// cost, nor finds it in a listing.
func (s *attack) memberOfAnotherProjectReads(t *testing.T) {
	ctx := t.Context()
	v := s.victimJob(t, "reads", false)
	m := v.mallory
	mark := s.auditMark(t)
	forbidden := func(what string, err error) {
		t.Helper()
		isRefused(t, "mallory: "+what, err, http.StatusForbidden, "forbidden")
	}
	d, err := m.c.Job(ctx, v.job)
	forbidden("the job", err)
	if d.ID != "" || d.Spec.Command != nil {
		t.Errorf("the refused read returned the job: %+v", d)
	}
	chunks, err := m.c.Logs(ctx, v.job, 0)
	forbidden("the job's output", err)
	if chunks != nil {
		t.Errorf("the refused read returned output: %+v", chunks)
	}
	err = m.c.FollowLogs(ctx, v.job, 0, func(ev wire.LogEvent) error {
		t.Errorf("the refused follow returned an event: %+v", ev)
		return nil
	})
	forbidden("following the job's output", err)
	_, err = m.c.Metrics(ctx, v.job, 0)
	forbidden("the job's metrics", err)
	_, err = m.c.Checkpoints(ctx, v.job)
	forbidden("the job's checkpoints", err)
	_, err = m.c.Explain(ctx, v.job)
	forbidden("where the job runs", err)
	_, err = m.c.JobCost(ctx, v.job)
	forbidden("the job's cost", err)
	_, err = m.c.Jobs(ctx, v.owner.project, 0)
	forbidden("the victim project's jobs", err)
	jobs, err := m.c.Jobs(ctx, "", 0)
	if err != nil || slices.ContainsFunc(jobs, func(j *store.Job) bool { return j.Project == v.owner.project }) {
		t.Errorf("mallory's listing of every job: %d jobs, %v; want none of project %s", len(jobs), err, v.owner.project)
	}
	code, stdout, stderr := s.on(t).run("logs", v.job, "--token", m.token)
	if code == 0 || strings.Contains(stdout+stderr, v.secret) {
		t.Errorf("lode logs as mallory: exit %d\nstdout:\n%s\nstderr:\n%s\nwant a refusal and no output", code, stdout, stderr)
	}
	// The control: the owner reads the secret line, so it was there to steal.
	if code, stdout, _ := s.on(t).run("logs", v.job, "--token", v.owner.token); code != 0 || !strings.Contains(stdout, v.secret) {
		t.Errorf("control: the owner's lode logs: exit %d, %q; want the secret line", code, stdout)
	}
	for _, p := range []string{"", "/logs", "/metrics", "/checkpoints", "/explain", "/cost"} {
		s.audited(t, mark, audit.AccessDenied, m.actor(), "GET /v1/jobs/"+v.job+p)
	}
	v.n.report(t, v.as, core.TaskExited)
}

// MemberOfAnotherProjectCancels: a member of another project cannot cancel
// the job; it runs on, and its node is told nothing.
func (s *attack) memberOfAnotherProjectCancels(t *testing.T) {
	ctx := t.Context()
	v := s.victimJob(t, "cancels", false)
	m := v.mallory
	mark := s.auditMark(t)
	d, err := m.c.CancelJob(ctx, v.job)
	isRefused(t, "mallory cancelling the job", err, http.StatusForbidden, "forbidden")
	if d.ID != "" {
		t.Errorf("the refused cancel returned the job: %+v", d)
	}
	if code, _, stderr := s.on(t).run("cancel", v.job, "--token", m.token); code == 0 {
		t.Errorf("lode cancel as mallory: exit 0; want a refusal: %s", stderr)
	}
	got := s.on(t).job(v.job)
	if got.State != core.JobRunning || got.CancelRequested {
		t.Errorf("after the refused cancels the job is %s, cancel requested %v; want it running as before", got.State, got.CancelRequested)
	}
	reply, err := v.n.c.Heartbeat(ctx, &wire.Heartbeat{Tasks: v.n.running()})
	if err != nil || len(reply.Stop) != 0 {
		t.Errorf("the job's node after the refused cancels: %+v, %v; want it told nothing", reply, err)
	}
	s.audited(t, mark, audit.AccessDenied, m.actor(), "POST /v1/jobs/"+v.job+"/cancel")
	if cancels, _ := s.auditSince(t, mark, audit.JobCancelled, "", v.job); len(cancels) != 0 {
		t.Errorf("the audit log records the job as cancelled:\n%s", entryList(cancels))
	}
	// The control: its owner may cancel it, and then the node is told to
	// stop it, so the heartbeat above would have shown a cancel.
	if _, err := v.owner.c.CancelJob(ctx, v.job); err != nil {
		t.Errorf("control: the owner cannot cancel the job: %v", err)
	}
	reply, err = v.n.c.Heartbeat(ctx, &wire.Heartbeat{Tasks: v.n.running()})
	if err != nil || len(reply.Stop) != 1 {
		t.Errorf("control: the job's node after the owner's cancel: %+v, %v; want it told to stop the task", reply, err)
	}
	s.audited(t, mark, audit.JobCancelled, v.owner.actor(), v.job)
}

// MemberOfAnotherProjectDownloads: a member of another project gets
// neither the job's outputs nor the key that opens them, however asked.
func (s *attack) memberOfAnotherProjectDownloads(t *testing.T) {
	ctx := t.Context()
	v := s.victimJob(t, "downloads", true)
	m := v.mallory
	mark := s.auditMark(t)
	acc, err := m.c.Artifacts(ctx, v.job)
	isRefused(t, "mallory asking for the outputs and their key", err, http.StatusForbidden, "forbidden")
	if acc.DataKey != nil || acc.ObjectID != "" || acc.Artifact != nil {
		t.Errorf("the refused request returned %+v", acc)
	}
	dest := filepath.Join(t.TempDir(), "loot")
	code, stdout, stderr := s.on(t).run("artifacts", "get", v.job, dest, "--token", m.token)
	if code == 0 {
		t.Errorf("lode artifacts get as mallory: exit 0\n%s%s\nwant a refusal", stdout, stderr)
	}
	if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused download left %s: %v", dest, err)
	}
	// Knowing the object's ID (it may leak) does not help either.
	obj := v.as.Job.DataObject
	b, err := m.c.GetManifest(ctx, obj, "m-"+strings.Repeat("0", 64))
	isRefused(t, "mallory reading the job's data object", err, http.StatusForbidden, "forbidden")
	if b != nil {
		t.Errorf("mallory read %d bytes of the job's data object", len(b))
	}
	// Nor does asking for a dataset's key by name, the way a push does.
	v.owner.pushDataset(t, "weights", map[string]string{"w.txt": v.secret})
	k, err := m.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: v.owner.project, Name: "weights"})
	isRefused(t, "mallory asking for the victim dataset's key by name", err, http.StatusForbidden, "forbidden")
	if k.DataKey != nil {
		t.Errorf("mallory got a data key: %+v", k)
	}
	// The control: the owner downloads the secret.
	own := filepath.Join(t.TempDir(), "own")
	if code, _, stderr := s.on(t).run("artifacts", "get", v.job, own, "--token", v.owner.token); code != 0 {
		t.Fatalf("control: the owner's download: %s", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(own, "model.bin")); err != nil || string(b) != v.secret {
		t.Errorf("control: the owner's download holds %q, %v; want the secret", b, err)
	}
	s.audited(t, mark, audit.AccessDenied, m.actor(), "GET /v1/jobs/"+v.job+"/artifacts")
	s.audited(t, mark, audit.AccessDenied, m.actor(), "GET /v1/objects/"+obj+"/manifests/m-"+strings.Repeat("0", 64))
	s.audited(t, mark, audit.AccessDenied, m.actor(), "POST /v1/objects")
	if got, _ := s.auditSince(t, mark, audit.ArtifactDownloaded, m.actor(), ""); len(got) != 0 {
		t.Errorf("the audit log records a download by mallory:\n%s", entryList(got))
	}
	s.audited(t, mark, audit.ArtifactDownloaded, v.owner.actor(), v.job)
}

// ConfidentialJobForcedOntoCommunityPool: a confidential job that names
// the community pool as the only place it may run is never placed there,
// though a node waits idle in it; it waits, saying why. The second check,
// where keys leave the control plane, is the unit test
// TestKeysAreRefusedWhereThePolicyForbids (internal/api): no placement a
// user can ask for reaches it.
func (s *attack) confidentialJobForcedOntoCommunityPool(t *testing.T) {
	tn := s.tenant(t, "cora", "confidential")
	n := s.startFakeNode(t, "default", "community-rig")
	mark := s.auditMark(t)
	job := s.submit(t, tn, "default", "classification: confidential\n", "true\n", nil)
	policy := "trust tier community is below certified, which confidential data needs (policy)"
	d := s.on(t).waitJob(job, 30*time.Second, "the scheduler says why it waits", func(d *wire.JobDetail) bool {
		return len(d.Pending) > 0
	})
	if d.State != core.JobQueued || len(d.AttemptList) != 0 ||
		!slices.ContainsFunc(d.Pending, func(r sched.Rejection) bool { return r.Pool == "default" && r.Reason == policy }) {
		t.Errorf("the job is %s with attempts %+v, pending %v; want it queued, never placed, the default pool refused: %q",
			d.State, d.AttemptList, d.Pending, policy)
	}
	code, stdout, stderr := s.on(t).run("explain", job, "--token", tn.token)
	if code != 0 || !strings.Contains(stdout, policy) {
		t.Errorf("lode explain: exit %d\nstdout:\n%s\nstderr:\n%s\nwant the policy's reason", code, stdout, stderr)
	}
	if d.Spec.Classification != core.ClassConfidential {
		t.Errorf("the job's classification is %s; want confidential", d.Spec.Classification)
	}
	// The control: the node takes a public job at once, so nothing but the
	// policy kept the confidential one off it. By then the scheduler has
	// judged the confidential job again, and gave the node only the other.
	public := s.submit(t, tn, "default", "", "true\n", nil)
	as := n.next(t, public)
	n.report(t, as, core.TaskRunning)
	n.report(t, as, core.TaskExited)
	s.on(t).waitState(public, core.JobSucceeded, 30*time.Second)
	select {
	case as := <-n.starts:
		t.Errorf("the community node was given a task of job %s", as.Job.ID)
	default:
	}
	if d := s.on(t).job(job); d.State != core.JobQueued || len(d.AttemptList) != 0 {
		t.Errorf("in the end the confidential job is %s with attempts %+v; want it queued, never placed", d.State, d.AttemptList)
	}
	s.audited(t, mark, audit.JobSubmitted, tn.actor(), job)
	_, all := s.auditSince(t, mark, "", "", "")
	for _, e := range all {
		if (e.Kind == audit.KeyGranted || e.Kind == audit.JobPlaced) && (e.Subject == job || e.Detail["job"] == job) {
			t.Errorf("the audit log records the job placed or its keys granted: %d %s %s %q %v", e.Seq, e.Kind, e.Actor, e.Subject, e.Detail)
		}
	}
}

// hostileChunk stores a sealed chunk of plain in an object as its writer
// would, so that a hostile manifest's only fault is its paths.
func hostileChunk(t *testing.T, c *client.Client, obj string, key []byte, plain string) string {
	t.Helper()
	sl, err := data.NewSealer(obj, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := sl.Address([]byte(plain))
	sealed, err := sl.SealChunk(addr, []byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutChunk(t.Context(), obj, addr, sealed); err != nil {
		t.Fatalf("store a chunk: %v", err)
	}
	return addr
}

// noneNamed fails if any file, directory or link under dir is called name,
// or is a symlink (no tree the path attacks look into holds one).
func noneNamed(t *testing.T, dir, name string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if d.Name() == name {
			t.Errorf("the attack wrote %s", p)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("the attack left a symlink %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// witness makes a directory anyone may write to: a task, which may run as
// a user of its own, leaves a file there if its command runs, and a path
// attack aims there so that a hit would outlive the task's directory.
func witness(t *testing.T) string { return reachableDir(t, 0o777) }

// climbTo is a relative path that, from any directory, climbs to the root
// and descends to abs.
func climbTo(abs string) string {
	return strings.Repeat("../", 64) + strings.TrimPrefix(filepath.Clean(abs), "/")
}

// PathTraversalInWorkdir: a member uploads a working directory whose
// (authentic, sealed) manifest names a file outside the task's directory.
// The server cannot see inside, so it takes it; the agent that pulls it
// refuses it with a clear error, writes nothing there, and never runs the
// job's command. The same agent runs a job with a harmless working
// directory, which leaves its mark: the control.
func (s *attack) pathTraversalInWorkdir(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "pat", "paths-workdir")
	pool := s.pool(t, "atk-workdir")
	s.agent(t, pool, "honest-workdir", filepath.Join(t.TempDir(), "agent"))
	w := witness(t)
	escape := "escaped-" + strings.ToLower(rand.Text())

	submit := func(files []data.File, body, run string) string {
		t.Helper()
		key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectWorkdir, Project: tn.project})
		if err != nil {
			t.Fatal(err)
		}
		addr := hostileChunk(t, tn.c, key.ObjectID, key.DataKey, body)
		for i := range files {
			files[i].Chunks = []string{addr}
		}
		name, sealed := sealHostileManifest(t, key.ObjectID, key.DataKey, files)
		if err := tn.c.PutManifest(ctx, key.ObjectID, name, sealed); err != nil {
			t.Fatalf("the server refused to store the sealed manifest, which it cannot read: %v", err)
		}
		sp, err := spec.Parse("job.yaml", []byte(fmt.Sprintf("name: climb\nproject: %s\nrun: %s\nplacement: {pools: [%s]}\n"+
			"resources: {cpus: 0.5, memory: 64MiB}\n", tn.project, run, pool)))
		if err != nil {
			t.Fatal(err)
		}
		d, err := tn.c.SubmitJob(ctx, &wire.SubmitJob{Spec: *sp, WorkdirObject: key.ObjectID, WorkdirManifest: name})
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		s.cancelAtEnd(t, d.ID)
		s.audited(t, 0, audit.KeyGranted, tn.actor(), key.ObjectID)
		s.audited(t, 0, audit.JobSubmitted, tn.actor(), d.ID)
		return d.ID
	}

	body := "pwned\n"
	job := submit([]data.File{{Path: climbTo(filepath.Join(w, escape)), Mode: 0o644, Size: int64(len(body))}},
		body, "touch "+filepath.Join(w, "ran"))
	assertRefusedPull(t, s.on(t), tn, job, "path climbs out with ..")
	noneNamed(t, w, escape)
	noneNamed(t, w, "ran")

	control := submit([]data.File{{Path: "job.sh", Mode: 0o644, Size: int64(len(body))}},
		body, "touch "+filepath.Join(w, "control-ran"))
	s.on(t).waitState(control, core.JobSucceeded, 60*time.Second)
	if _, err := os.Stat(filepath.Join(w, "control-ran")); err != nil {
		t.Errorf("control: the job with a harmless working directory left no mark: %v", err)
	}
}

// assertRefusedPull waits for a job to end and checks that it failed
// because its agent refused to pull what it was given, naming why, in its
// attempt and its output.
func assertRefusedPull(t *testing.T, cl *cluster, tn *tenant, job, why string) {
	t.Helper()
	d := cl.waitJob(job, 60*time.Second, "it ends", func(d *wire.JobDetail) bool { return d.State.Terminal() })
	if len(d.AttemptList) != 1 || len(d.AttemptList[0].Tasks) != 1 {
		t.Fatalf("the job ended %s (%s) with attempts %+v; want one attempt of one task", d.State, d.Reason, d.AttemptList)
	}
	if d.State != core.JobFailed {
		t.Errorf("the job ended %s (%s); want it failed", d.State, d.Reason)
	}
	task := d.AttemptList[0].Tasks[0]
	if !strings.Contains(task.Message, data.ErrTampered.Error()) || !strings.Contains(task.Message, why) {
		t.Errorf("the task ended %q; want the pull refused (%v): %s", task.Message, data.ErrTampered, why)
	}
	code, stdout, stderr := cl.run("logs", d.ID, "--token", tn.token)
	if code != 0 || !strings.Contains(stdout+stderr, "cannot prepare the task") || !strings.Contains(stdout+stderr, why) {
		t.Errorf("lode logs: exit %d\nstdout:\n%s\nstderr:\n%s\nwant the agent's refusal, saying %s", code, stdout, stderr, why)
	}
}

// PathTraversalInDataset: a member commits a dataset whose manifest holds
// a symlink leading out of the tree. The agent refuses the dataset and the
// job fails, saying why, before its command runs. A dataset mounted above
// the task's directory is refused at submission.
func (s *attack) pathTraversalInDataset(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "dana", "paths-dataset")
	pool := s.pool(t, "atk-dataset")
	s.agent(t, pool, "honest-dataset", filepath.Join(t.TempDir(), "agent"))
	w := witness(t)
	escape := "escaped-" + strings.ToLower(rand.Text())

	mark := s.auditMark(t)
	key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: tn.project, Name: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	body := "harmless\n"
	addr := hostileChunk(t, tn.c, key.ObjectID, key.DataKey, body)
	// A link to the witness directory: anything the job (or a later pull)
	// wrote through data/d/out would land there.
	name, sealed := sealHostileManifest(t, key.ObjectID, key.DataKey, []data.File{
		{Path: "d", Mode: 0o755, Dir: true},
		{Path: "d/out", Symlink: climbTo(w)},
		{Path: "readme.txt", Mode: 0o644, Size: int64(len(body)), Chunks: []string{addr}},
	})
	if err := tn.c.PutManifest(ctx, key.ObjectID, name, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.c.CommitDataset(ctx, &wire.CommitDataset{Project: tn.project, Name: "evil", ObjectID: key.ObjectID,
		Manifest: name, Files: 2, Bytes: int64(len(body))}); err != nil {
		t.Fatalf("the server refused to commit the dataset, whose manifest it cannot read: %v", err)
	}
	job := s.submit(t, tn, pool, "datasets: [{name: evil, mount: data}]\n",
		"echo pwned > data/d/out/"+escape+"\ntouch "+filepath.Join(w, "ran")+"\n", nil)
	assertRefusedPull(t, s.on(t), tn, job, "leaves the tree")
	noneNamed(t, w, escape)
	noneNamed(t, w, "ran")
	s.audited(t, mark, audit.KeyGranted, tn.actor(), key.ObjectID)
	s.audited(t, mark, audit.DatasetCommitted, tn.actor(), "evil")

	// A spec may not mount a dataset above the task's directory; the
	// server checks what a hostile client sends, not only what `lode run`
	// would.
	sp, err := spec.Parse("job.yaml", []byte(fmt.Sprintf("name: climb\nproject: %s\nrun: 'true'\nplacement: {pools: [%s]}\n"+
		"datasets: [{name: evil, mount: data}]\n", tn.project, pool)))
	if err != nil {
		t.Fatal(err)
	}
	sp.Datasets[0].Mount = climbTo(w)
	before, _ := tn.c.Jobs(ctx, tn.project, 0)
	_, err = tn.c.SubmitJob(ctx, &wire.SubmitJob{Spec: *sp})
	isRefused(t, "a dataset mounted above the task's directory", err, http.StatusBadRequest, "bad_request")
	if after, _ := tn.c.Jobs(ctx, tn.project, 0); len(after) != len(before) {
		t.Errorf("the refused submission queued a job: %d jobs before, %d after", len(before), len(after))
	}
}

// SymlinkEscapeInArtifacts: a hostile rig running a job commits outputs of
// its own making, a symlink out of the download directory among them. The
// owner's `lode artifacts get` refuses them, saying why, and writes
// nothing: no link, no file beside it.
func (s *attack) symlinkEscapeInArtifacts(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "ada", "paths-artifacts")
	pool := s.pool(t, "atk-artifacts")
	n := s.startFakeNode(t, pool, "hostile-7")
	job := s.submit(t, tn, pool, "outputs: out\n", "true\n", nil)
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	base := t.TempDir()
	precious := filepath.Join(base, "precious.txt")
	writeFiles(t, base, map[string]string{"precious.txt": "the owner's own file\n"})

	obj, key := as.Job.DataObject, as.Keys[as.Job.DataObject]
	body := "weights\n"
	addr := hostileChunk(t, n.c, obj, key, body)
	// Downloaded into base/downloads/out, "../../precious.txt" is the
	// owner's file: a link to it among the outputs is the attack, as
	// whatever later writes out/link writes the owner's file.
	name, sealed := sealHostileManifest(t, obj, key, []data.File{
		{Path: "link", Symlink: "../../precious.txt"},
		{Path: "model.bin", Mode: 0o644, Size: int64(len(body)), Chunks: []string{addr}},
	})
	if err := n.c.PutManifest(ctx, obj, name, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.CommitArtifact(ctx, fenceOf(as), &wire.Commit{Manifest: name, Files: 2, Bytes: int64(len(body))}); err != nil {
		t.Fatalf("the server refused outputs it cannot read: %v", err)
	}
	n.report(t, as, core.TaskExited)
	s.on(t).waitState(job, core.JobSucceeded, 30*time.Second)

	mark := s.auditMark(t)
	dest := filepath.Join(base, "downloads", "out")
	code, stdout, stderr := s.on(t).run("artifacts", "get", job, dest, "--token", tn.token)
	if code == 0 || !strings.Contains(stderr, "leaves the tree") {
		t.Errorf("lode artifacts get: exit %d\nstdout:\n%s\nstderr:\n%s\nwant a refusal saying the link leaves the tree", code, stdout, stderr)
	}
	noneNamed(t, base, "link")
	noneNamed(t, base, "model.bin")
	if b, err := os.ReadFile(precious); err != nil || string(b) != "the owner's own file\n" {
		t.Errorf("the owner's file now holds %q, %v", b, err)
	}
	// On record: the rig held the job's keys (so it could write the
	// outputs), and the owner's download names the manifest it fetched.
	if grants, _ := s.auditSince(t, 0, audit.KeyGranted, "node:"+n.id, as.Task.AttemptID); len(grants) != 1 {
		t.Errorf("the rig's key grants: %s; want one", entryList(grants))
	}
	if e := s.audited(t, mark, audit.ArtifactDownloaded, tn.actor(), job); e.Detail["manifest"] != name {
		t.Errorf("the download's entry names manifest %q; want the rig's %s", e.Detail["manifest"], name)
	}
}

// blobPath is where the server's default blob store keeps an object's
// chunk.
func (s *attack) blobPath(obj, addr string) string {
	return filepath.Join(s.cl.dataDir, "blobs", "objects", obj, "chunks", addr)
}

// chunkFiles lists the chunks stored for an object.
func (s *attack) chunkFiles(t *testing.T, obj string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Dir(s.blobPath(obj, "x")))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// OversizedUpload: a chunk over the size limit and a JSON body over its
// limit are refused with 413, and nothing is stored.
func (s *attack) oversizedUpload(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "omar", "uploads-big")
	key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: tn.project, Name: "big"})
	if err != nil {
		t.Fatal(err)
	}
	sl, err := data.NewSealer(key.ObjectID, key.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	// A well-formed sealed chunk, only too big: a chunk holds at most
	// data.ChunkSize bytes of data.
	big := make([]byte, data.ChunkSize+1024)
	rand.Read(big)
	addr := sl.Address(big)
	sealed, err := sl.SealChunk(addr, big)
	if err != nil {
		t.Fatal(err)
	}
	mark := s.auditMark(t)
	err = tn.c.PutChunk(ctx, key.ObjectID, addr, sealed)
	isRefused(t, "a chunk over the limit", err, http.StatusRequestEntityTooLarge, "too_large")
	if missing, err := tn.c.MissingChunks(ctx, key.ObjectID, []string{addr}); err != nil || !slices.Equal(missing, []string{addr}) {
		t.Errorf("after the refused chunk the object lacks %v, %v; want the chunk missing", missing, err)
	}
	if files := s.chunkFiles(t, key.ObjectID); len(files) != 0 {
		t.Errorf("the blob store holds %v for the object; want nothing", files)
	}
	_, err = tn.c.CommitDataset(ctx, &wire.CommitDataset{Project: tn.project, Name: "big", ObjectID: key.ObjectID,
		Manifest: strings.Repeat("m", 9<<20)})
	isRefused(t, "a commit over the JSON limit", err, http.StatusRequestEntityTooLarge, "too_large")
	if ds, err := tn.c.Datasets(ctx, tn.project); err != nil || len(ds) != 0 {
		t.Errorf("datasets after the refused commit: %+v, %v; want none", ds, err)
	}
	e := s.audited(t, mark, audit.UploadRejected, tn.actor(), "PUT /v1/objects/"+key.ObjectID+"/chunks/"+addr)
	if e.Detail["code"] != "too_large" {
		t.Errorf("the entry's detail is %v; want code too_large", e.Detail)
	}
	s.audited(t, mark, audit.UploadRejected, tn.actor(), "POST /v1/datasets")
}

// MalformedUpload: chunk addresses, manifest names and object IDs that are
// not what Lode makes (some climbing out of the blob store), and requests
// that do not hold together, are refused with 400, and nothing is stored.
func (s *attack) malformedUpload(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "mona", "uploads-bad")
	key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: tn.project, Name: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	obj := key.ObjectID
	sl, err := data.NewSealer(obj, key.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	addr := sl.Address([]byte("hello"))
	sealed, _ := sl.SealChunk(addr, []byte("hello"))
	escape := "escaped-" + strings.ToLower(rand.Text())
	tooMany := make([]string, 10001)
	for i := range tooMany {
		tooMany[i] = addr
	}

	mark := s.auditMark(t)
	for _, c := range []struct {
		name    string
		subject string
		do      func() error
	}{
		{"a chunk address climbing out of the store", "PUT /v1/objects/" + obj + "/chunks/../../../../" + escape,
			func() error { return tn.c.PutChunk(ctx, obj, "../../../../"+escape, sealed) }},
		{"an upper-case chunk address", "PUT /v1/objects/" + obj + "/chunks/" + strings.ToUpper(addr),
			func() error { return tn.c.PutChunk(ctx, obj, strings.ToUpper(addr), sealed) }},
		{"a short chunk address", "PUT /v1/objects/" + obj + "/chunks/" + addr[:63],
			func() error { return tn.c.PutChunk(ctx, obj, addr[:63], sealed) }},
		{"an object ID climbing out of the store", "PUT /v1/objects/../" + escape + "/chunks/" + addr,
			func() error { return tn.c.PutChunk(ctx, "../"+escape, addr, sealed) }},
		{"a manifest name climbing out of the store", "PUT /v1/objects/" + obj + "/manifests/../../" + escape,
			func() error { return tn.c.PutManifest(ctx, obj, "../../"+escape, sealed) }},
		{"a manifest name that is no address", "PUT /v1/objects/" + obj + "/manifests/m-" + escape,
			func() error { return tn.c.PutManifest(ctx, obj, "m-"+escape, sealed) }},
		{"too many addresses at once", "POST /v1/objects/" + obj + "/missing",
			func() error { _, err := tn.c.MissingChunks(ctx, obj, tooMany); return err }},
		{"a commit of a manifest never stored", "POST /v1/datasets", func() error {
			_, err := tn.c.CommitDataset(ctx, &wire.CommitDataset{Project: tn.project, Name: "bad", ObjectID: obj,
				Manifest: "m-" + addr})
			return err
		}},
		{"an object of a kind only the server makes", "POST /v1/objects", func() error {
			_, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectJobData, Project: tn.project})
			return err
		}},
	} {
		err := c.do()
		isRefused(t, c.name, err, http.StatusBadRequest, "bad_request")
		s.audited(t, mark, audit.UploadRejected, tn.actor(), c.subject)
	}
	if files := s.chunkFiles(t, obj); len(files) != 0 {
		t.Errorf("the blob store holds %v for the object; want nothing", files)
	}
	noneNamed(t, filepath.Dir(s.cl.dataDir), escape)
	if ds, err := tn.c.Datasets(ctx, tn.project); err != nil || len(ds) != 0 {
		t.Errorf("datasets after the refused uploads: %+v, %v; want none", ds, err)
	}
	// The control: the same chunk at its true address is stored.
	if err := tn.c.PutChunk(ctx, obj, addr, sealed); err != nil {
		t.Errorf("control: the well-formed chunk: %v", err)
	}
	if files := s.chunkFiles(t, obj); !slices.Contains(files, addr) {
		t.Errorf("control: the blob store holds %v; want the chunk", files)
	}
}

// TamperedChunk: a byte flipped in a stored chunk (by whoever holds the
// blob store) makes its reader fail authentication rather than decrypt to
// garbage, and leaves no file behind: a dataset pulled as an agent pulls
// it, and outputs fetched with `lode artifacts get`. The server cannot see
// the change; what the audit log holds is the reader's fetch.
func (s *attack) tamperedChunk(t *testing.T) {
	ctx := t.Context()
	tn := s.tenant(t, "tina", "tampered")
	secret := s.marker("tampered-chunk")
	ds := tn.pushDataset(t, "corpus", map[string]string{"corpus.txt": secret})
	ok := filepath.Join(t.TempDir(), "ok")
	if _, err := data.Pull(ctx, tn.c, ds.sealer, ds.obj, ds.manifest, ok, nil); err != nil {
		t.Fatalf("control: the untouched dataset does not pull: %v", err)
	}
	flip := func(obj, addr string) {
		t.Helper()
		p := s.blobPath(obj, addr)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("the stored chunk: %v", err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flip(ds.obj, ds.addr["corpus.txt"])

	mark := s.auditMark(t)
	// A reader finds the dataset's key as `lode` does.
	key, err := tn.c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: tn.project, Name: "corpus"})
	if err != nil || key.ObjectID != ds.obj {
		t.Fatalf("the dataset's key: %+v, %v", key, err)
	}
	sl, err := data.NewSealer(key.ObjectID, key.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := tn.c.GetChunk(ctx, ds.obj, ds.addr["corpus.txt"])
	if err != nil {
		t.Fatalf("the server no longer serves the chunk: %v", err)
	}
	if plain, err := sl.OpenChunk(ds.addr["corpus.txt"], sealed); !errors.Is(err, data.ErrTampered) || plain != nil {
		t.Errorf("opening the tampered chunk: %q, %v; want nothing and %v", plain, err, data.ErrTampered)
	}
	dir := filepath.Join(t.TempDir(), "pulled")
	_, err = data.Pull(ctx, tn.c, sl, ds.obj, ds.manifest, dir, nil)
	if !errors.Is(err, data.ErrTampered) {
		t.Errorf("pulling the tampered dataset: %v; want %v", err, data.ErrTampered)
	}
	if es, err := os.ReadDir(dir); err != nil || len(es) != 0 {
		t.Errorf("the failed pull left %v (%v); want nothing", es, err)
	}
	s.audited(t, mark, audit.KeyGranted, tn.actor(), ds.obj)

	// Outputs, as their owner fetches them.
	pool := s.pool(t, "atk-tampered")
	n := s.startFakeNode(t, pool, "rig-tampered")
	job := s.submit(t, tn, pool, "outputs: out\n", "true\n", nil)
	as := n.next(t, job)
	n.report(t, as, core.TaskRunning)
	out := map[string]string{"model.bin": secret}
	if _, err := n.c.CommitArtifact(ctx, fenceOf(as), n.push(t, as, out)); err != nil {
		t.Fatal(err)
	}
	n.report(t, as, core.TaskExited)
	s.on(t).waitState(job, core.JobSucceeded, 30*time.Second)
	osl, err := data.NewSealer(as.Job.DataObject, as.Keys[as.Job.DataObject])
	if err != nil {
		t.Fatal(err)
	}
	flip(as.Job.DataObject, osl.Address([]byte(secret)))
	mark = s.auditMark(t)
	dest := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := s.on(t).run("artifacts", "get", job, dest, "--token", tn.token)
	if code == 0 || !strings.Contains(stderr, "failed authentication") || strings.Contains(stdout+stderr, secret) {
		t.Errorf("lode artifacts get of tampered outputs: exit %d\nstdout:\n%s\nstderr:\n%s\nwant a failed authentication", code, stdout, stderr)
	}
	if es, err := os.ReadDir(dest); err == nil && len(es) != 0 {
		t.Errorf("the failed download left %v", es)
	}
	s.audited(t, mark, audit.ArtifactDownloaded, tn.actor(), job)
}

// NoPlaintextInLogs: a marker planted in a dataset, which the job copies
// into a checkpoint and an output, appears in no process's output: not
// the server's (at debug level), not the agent's. Every marker the other
// attacks planted is looked for too. TestNoPlaintextAtRest checks the blob
// store, the database and the agent's disk.
func (s *attack) noPlaintextInLogs(t *testing.T) {
	tn := s.tenant(t, "lena", "logs")
	pool := s.pool(t, "atk-logs")
	secret := s.marker("logs")
	s.agent(t, pool, "honest-logs", filepath.Join(t.TempDir(), "agent"))
	job := s.submit(t, tn, pool, "datasets: [{name: secrets, mount: data, from: ds}]\ncheckpoint: {path: ckpt, every: 1s}\noutputs: out\n", `
cp data/secret.txt ckpt/state.txt
cp data/secret.txt out/result.txt
echo done
`, map[string]string{"ds/secret.txt": "the payload is " + secret + "\n"})
	s.on(t).waitState(job, core.JobSucceeded, 60*time.Second)
	// The control: the marker went through the job into its outputs and a
	// checkpoint, so the processes handled it.
	dest := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := s.on(t).run("artifacts", "get", job, dest, "--token", tn.token)
	if b, err := os.ReadFile(filepath.Join(dest, "result.txt")); code != 0 || err != nil || !bytes.Contains(b, []byte(secret)) {
		t.Fatalf("control: the job's output: exit %d, %q, %v: %s", code, b, err, stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Errorf("lode artifacts get printed the marker:\n%s%s", stdout, stderr)
	}
	if cks, err := tn.c.Checkpoints(t.Context(), job); err != nil || len(cks) == 0 {
		t.Fatalf("control: checkpoints %v, %v; want at least one", cks, err)
	}

	s.mu.Lock()
	markers, procs := slices.Clone(s.markers), slices.Clone(s.procs)
	s.mu.Unlock()
	outputs := map[string]string{"the server": s.cl.server.out.String()}
	for _, p := range procs {
		name := p.cmd.Args[slices.Index(p.cmd.Args, "--name")+1]
		outputs["agent "+name] = p.out.String()
	}
	for who, out := range outputs {
		if out == "" {
			t.Errorf("control: %s printed nothing", who)
		}
		for _, m := range markers {
			if strings.Contains(out, m) {
				t.Errorf("%s printed the plaintext marker %s", who, m)
			}
		}
	}
}

// TamperedAuditLog: the audit log, exported, verifies; edited, with an
// entry deleted, inserted or moved, or rewritten with every hash
// recomputed, `lode audit verify` names the first bad entry. The log is
// verified against the key printed before the tampering, not one the
// tampered source could offer. TestAuditLogDetectsTampering does the same
// to the database of a local control plane.
func (s *attack) tamperedAuditLog(t *testing.T) {
	cl := s.on(t)
	// The evidence an attacker would remove: their own attempt to read the
	// log. Something else happens after it, so it is not the log's last
	// entry (which a tail cut would take).
	eve := s.tenant(t, "eve", "audit")
	if _, err := eve.c.Audit(t.Context()); err == nil {
		t.Fatal("a member read the audit log")
	}
	s.tenant(t, "eve-later", "audit")
	// The server seals the chain's head as it stops, so after a restart a
	// signed checkpoint covers that entry and every attack above.
	cl.restartServer(syscall.SIGTERM)
	code, export, stderr := cl.run("audit", "export")
	if code != 0 {
		t.Fatalf("lode audit export: %s", stderr)
	}
	code, key, stderr := cl.run("audit", "key")
	if code != 0 {
		t.Fatalf("lode audit key: %s", stderr)
	}
	key = strings.TrimSpace(key)
	entries, cps, err := audit.ReadExport(strings.NewReader(export))
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) == 0 {
		t.Fatalf("the log has no signed checkpoint after a restart")
	}
	verify := func(es []audit.Entry, cs []audit.Checkpoint) (int, string) {
		t.Helper()
		var b bytes.Buffer
		if err := audit.WriteExport(&b, es, cs); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := cl.run("audit", "verify", "--file", p, "--key", key)
		return code, stdout + stderr
	}
	if code, out := verify(entries, cps); code != 0 || !strings.Contains(out, "audit log intact") {
		t.Fatalf("the untouched export does not verify: exit %d\n%s", code, out)
	}
	if code, stdout, stderr := cl.run("audit", "verify"); code != 0 {
		t.Errorf("the server's log, after every attack, does not verify: exit %d\n%s%s", code, stdout, stderr)
	}

	k := slices.IndexFunc(entries, func(e audit.Entry) bool {
		return e.Kind == audit.AccessDenied && e.Actor == eve.actor() && e.Subject == "GET /v1/audit"
	})
	if k < 1 || k+1 >= len(entries) {
		t.Fatalf("no access.denied by %s with entries around it in the log:\n%s", eve.actor(), entryList(entries))
	}
	seq := entries[k].Seq
	sealing := cps[slices.IndexFunc(cps, func(c audit.Checkpoint) bool { return c.Seq >= seq })].Seq
	// A chain one entry shorter may end before the entry that seals it.
	shortened := fmt.Sprintf("entry %d: does not match the hash its checkpoint sealed", sealing)
	if sealing == entries[len(entries)-1].Seq {
		shortened = fmt.Sprintf("entry %d: sealed by a checkpoint but missing", sealing)
	}
	rehash := func(es []audit.Entry, from int) {
		for i := from; i < len(es); i++ {
			es[i].Prev = es[i-1].Hash
			es[i].Hash = audit.Hash(es[i].Seq, es[i].Prev, es[i].Event)
		}
	}
	for _, c := range []struct {
		name   string
		tamper func(es []audit.Entry) []audit.Entry
		want   string
	}{
		{"edited", func(es []audit.Entry) []audit.Entry {
			es[k].Actor = "user:admin"
			return es
		}, fmt.Sprintf("entry %d: its contents do not match its hash", seq)},
		{"deleted", func(es []audit.Entry) []audit.Entry {
			return slices.Delete(es, k, k+1)
		}, fmt.Sprintf("entry %d: missing", seq)},
		{"inserted", func(es []audit.Entry) []audit.Entry {
			forged := es[k]
			forged.Subject = "GET /v1/health"
			return slices.Insert(es, k, forged)
		}, fmt.Sprintf("entry %d: its contents do not match its hash", seq)},
		{"reordered", func(es []audit.Entry) []audit.Entry {
			es[k], es[k+1] = es[k+1], es[k]
			return es
		}, fmt.Sprintf("entry %d: out of place", seq)},
		{"rewritten", func(es []audit.Entry) []audit.Entry {
			es[k].Actor = "user:admin"
			rehash(es, k)
			return es
		}, fmt.Sprintf("entry %d: does not match the hash its checkpoint sealed", sealing)},
		{"rewritten without it", func(es []audit.Entry) []audit.Entry {
			es = slices.Delete(es, k, k+1)
			for i := k; i < len(es); i++ {
				es[i].Seq--
			}
			rehash(es, k)
			return es
		}, shortened},
	} {
		es := c.tamper(slices.Clone(entries))
		if reflect.DeepEqual(es, entries) {
			t.Fatalf("%s: the tampering changed nothing", c.name)
		}
		code, out := verify(es, cps)
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("verify after the log was %s: exit %d\n%s\nwant exit 1 naming %q", c.name, code, out, c.want)
		}
	}
}

// sealHostileManifest seals files as a manifest of object obj under key,
// byte for byte as data.Sealer does, but without the checks SealManifest
// makes: the tool an attacker holding a data key writes from the format
// alone (internal/data/manifest.go and sealer.go). Its output is an
// authentic manifest, so a reader that refuses it does so for what it
// says. TestHostileSealerSealsAsLodeDoes checks it against the real one.
func sealHostileManifest(t *testing.T, obj string, key []byte, files []data.File) (name string, sealed []byte) {
	t.Helper()
	enc := []byte("LDM1")
	enc = binary.AppendUvarint(enc, uint64(len(files)))
	for _, f := range files {
		enc = binary.AppendUvarint(enc, uint64(len(f.Path)))
		enc = append(enc, f.Path...)
		switch {
		case f.Dir:
			enc = append(enc, 1)
			enc = binary.AppendUvarint(enc, uint64(f.Mode))
		case f.Symlink != "":
			enc = append(enc, 2)
			enc = binary.AppendUvarint(enc, uint64(f.Mode))
			enc = binary.AppendUvarint(enc, uint64(len(f.Symlink)))
			enc = append(enc, f.Symlink...)
		default:
			enc = append(enc, 0)
			enc = binary.AppendUvarint(enc, uint64(f.Mode))
			enc = binary.AppendUvarint(enc, uint64(f.Size))
			for _, a := range f.Chunks {
				raw, err := hex.DecodeString(a)
				if err != nil {
					t.Fatal(err)
				}
				enc = append(enc, raw...)
			}
		}
	}
	sub := func(label string) []byte {
		k, err := hkdf.Key(sha256.New, key, nil, label, 32)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	mac := hmac.New(sha256.New, sub("lode.dev/data v1 manifest name"))
	mac.Write(enc)
	name = "m-" + hex.EncodeToString(mac.Sum(nil))
	block, err := aes.NewCipher(sub("lode.dev/data v1 encrypt"))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ad := append([]byte("lode.dev/data v1"), 'm')
	ad = binary.AppendUvarint(ad, uint64(len(obj)))
	ad = append(ad, obj...)
	ad = binary.AppendUvarint(ad, uint64(len(name)))
	ad = append(ad, name...)
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return name, gcm.Seal(nonce, nonce, enc, ad)
}

// TestHostileSealerSealsAsLodeDoes: for a manifest Lode would seal itself,
// the attack suite's sealer gives the same name, and Lode opens what it
// sealed to the same manifest. So when Lode refuses a hostile manifest it
// sealed, the refusal is about the paths, not the seal.
func TestHostileSealerSealsAsLodeDoes(t *testing.T) {
	key := make([]byte, data.DataKeySize)
	rand.Read(key)
	const obj = "obj-hostile0test"
	real, err := data.NewSealer(obj, key)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), data.ChunkSize+1)
	m := &data.Manifest{Files: []data.File{
		{Path: "a", Mode: 0o750, Dir: true},
		{Path: "a/big.bin", Mode: 0o640, Size: int64(len(big)),
			Chunks: []string{real.Address(big[:data.ChunkSize]), real.Address(big[data.ChunkSize:])}},
		{Path: "a/link", Symlink: "big.bin"},
		{Path: "empty", Mode: 0o600},
	}}
	want, _, err := real.SealManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	name, sealed := sealHostileManifest(t, obj, key, m.Files)
	if name != want {
		t.Fatalf("the hostile sealer names the manifest %s; Lode names it %s", name, want)
	}
	got, err := real.OpenManifest(name, sealed)
	if err != nil {
		t.Fatalf("Lode cannot open what the hostile sealer sealed: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Lode opened %+v; want %+v", got, m)
	}
}
