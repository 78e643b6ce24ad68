package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// place submits a job of spec sp as the administrator and places it on a
// node, as the scheduler would; it returns the attempt.
func (e *env) place(sp spec.Job, nodeID string) *store.Attempt {
	e.t.Helper()
	status, body := e.do("POST", "/v1/jobs", wire.SubmitJob{Spec: sp}, nil)
	if status != 201 {
		e.t.Fatalf("submit: %d %s", status, body)
	}
	var d wire.JobDetail
	json.Unmarshal(body, &d)
	a, err := e.store.AttemptCreate(context.Background(), &store.AttemptCreateParams{JobID: d.ID, PoolID: e.pool.ID, NodeIDs: []string{nodeID}, Now: time.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// placed submits a job and places it on a freshly joined node, as the
// scheduler would; it returns the attempt (with its fencing token), the
// job and the node's credentials.
func (e *env) placed() (*store.Attempt, *store.Job, map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	nodeID, auth := e.join()
	a := e.place(validSpec(), nodeID)
	if a.FencingToken == "" {
		e.t.Fatal("the new attempt has no fencing token")
	}
	j, err := e.store.JobGet(ctx, a.JobID)
	if err != nil {
		e.t.Fatal(err)
	}
	return a, j, auth
}

// keyGrants counts the audit log's key grants for an attempt.
func (e *env) keyGrants(attemptID string) int {
	e.t.Helper()
	entries, err := e.store.AuditList(context.Background(), &store.AuditListParams{})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, en := range entries {
		if en.Kind == audit.KeyGranted && en.Subject == attemptID {
			n++
		}
	}
	return n
}

func fenceOnly(token string) map[string]string { return map[string]string{wire.HeaderFence: token} }

// TestRunnerGetsItsAssignmentWithTheFencingTokenAlone: the holder of an
// attempt's current token gets the task an agent would get in a heartbeat
// (keys included), and the grant is audited; anyone else gets nothing, and
// nothing is recorded as granted.
func TestRunnerGetsItsAssignmentWithTheFencingTokenAlone(t *testing.T) {
	e := newEnv(t)
	a, j, _ := e.placed()
	path := "/v1/agent/attempts/" + a.ID + "/ranks/0/assignment"

	refusals := []struct {
		name, path string
		header     map[string]string
		status     int
		code       string
	}{
		{"forged token", path, fenceOnly("forged"), 409, "fenced"},
		{"a token one character off", path, fenceOnly(a.FencingToken[:len(a.FencingToken)-1] + "x"), 409, "fenced"},
		{"no token", path, nil, 401, "unauthorized"},
		{"unknown attempt", "/v1/agent/attempts/att-nope/ranks/0/assignment", fenceOnly(a.FencingToken), 404, "not_found"},
		{"no such rank", "/v1/agent/attempts/" + a.ID + "/ranks/1/assignment", fenceOnly(a.FencingToken), 404, "not_found"},
		{"bad rank", "/v1/agent/attempts/" + a.ID + "/ranks/-1/assignment", fenceOnly(a.FencingToken), 400, "bad_request"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do("GET", tt.path, nil, tt.header)
			if status != tt.status || errorCode(t, body) != tt.code {
				t.Errorf("got %d %s; want %d %s", status, body, tt.status, tt.code)
			}
		})
	}
	if n := e.keyGrants(a.ID); n != 0 {
		t.Fatalf("%d key grants recorded for refused requests; want none", n)
	}

	status, body := e.do("GET", path, nil, fenceOnly(a.FencingToken))
	if status != 200 {
		t.Fatalf("assignment with the current token: %d %s", status, body)
	}
	var as wire.Assignment
	if err := json.Unmarshal(body, &as); err != nil {
		t.Fatal(err)
	}
	if as.Task.AttemptID != a.ID || as.Task.Rank != 0 || as.FencingToken != a.FencingToken || as.Job == nil || as.Job.ID != j.ID {
		t.Errorf("assignment = task %s/%d token-match %v job %v; want attempt %s rank 0, its token, job %s",
			as.Task.AttemptID, as.Task.Rank, as.FencingToken == a.FencingToken, as.Job, a.ID, j.ID)
	}
	if key := as.Keys[j.DataObject]; len(key) == 0 {
		t.Errorf("no data key for the job's data object %s; keys for %v", j.DataObject, keysOf(as.Keys))
	}
	if n := e.keyGrants(a.ID); n != 1 {
		t.Errorf("%d key grants recorded; want 1", n)
	}

	// A task reported running (on Kubernetes the driver may see the pod
	// run before its runner asks) is still handed to its token's holder.
	if status, body := e.do("POST", "/v1/agent/attempts/"+a.ID+"/ranks/0/status", wire.TaskStatus{State: core.TaskRunning}, fenceOnly(a.FencingToken)); status != 204 {
		t.Fatalf("report running: %d %s", status, body)
	}
	if status, body := e.do("GET", path, nil, fenceOnly(a.FencingToken)); status != 200 {
		t.Errorf("assignment of a running task: %d %s; want 200", status, body)
	}
	// When the attempt has ended its token is stale.
	if status, body := e.do("POST", "/v1/agent/attempts/"+a.ID+"/ranks/0/status", wire.TaskStatus{State: core.TaskExited}, fenceOnly(a.FencingToken)); status != 204 {
		t.Fatalf("report exited: %d %s", status, body)
	}
	if status, body := e.do("GET", path, nil, fenceOnly(a.FencingToken)); status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("assignment with a stale token: %d %s; want 409 fenced", status, body)
	}
	if n := e.keyGrants(a.ID); n != 2 {
		t.Errorf("%d key grants recorded after the refusals; want still 2 (one per assignment handed out)", n)
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTaskWritesWithTheFencingTokenAlone: a runner has no node credential;
// its writes are accepted on the attempt's current token and refused on
// any other, and a node credential that does not hold is not rescued by a
// good token.
func TestTaskWritesWithTheFencingTokenAlone(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, j, auth := e.placed()
	path := "/v1/agent/attempts/" + a.ID + "/ranks/0/"
	good := fenceOnly(a.FencingToken)

	if status, body := e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("forged\n")}, fenceOnly("forged")); status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("log with a forged token: %d %s; want 409 fenced", status, body)
	}
	if status, body := e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("none\n")}, nil); status != 401 || errorCode(t, body) != "unauthorized" {
		t.Errorf("log with no credential at all: %d %s; want 401 unauthorized", status, body)
	}
	badNode := map[string]string{wire.HeaderNode: auth[wire.HeaderNode], "Authorization": "Bearer forged", wire.HeaderFence: a.FencingToken}
	if status, body := e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("bad node\n")}, badNode); status != 401 {
		t.Errorf("log with a forged node credential and a good token: %d %s; want 401", status, body)
	}
	if status, body := e.do("POST", path+"status", wire.TaskStatus{State: core.TaskRunning}, fenceOnly("forged")); status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("status with a forged token: %d %s; want 409 fenced", status, body)
	}

	if status, body := e.do("POST", path+"status", wire.TaskStatus{State: core.TaskRunning}, good); status != 204 {
		t.Fatalf("status running with the current token: %d %s", status, body)
	}
	if status, body := e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("hello\n")}, good); status != 204 {
		t.Fatalf("log with the current token: %d %s", status, body)
	}
	if status, body := e.do("POST", path+"status", wire.TaskStatus{State: core.TaskExited}, good); status != 204 {
		t.Fatalf("status exited with the current token: %d %s", status, body)
	}
	if job, _ := e.store.JobGet(ctx, j.ID); job.State != core.JobSucceeded {
		t.Errorf("job %s after its only task exited 0; want succeeded", job.State)
	}
	// The attempt has ended: the same token is stale now.
	if status, body := e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("late\n")}, good); status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("log with a stale token: %d %s; want 409 fenced", status, body)
	}
	if status, body := e.do("POST", path+"status", wire.TaskStatus{State: core.TaskExited, ExitCode: 3}, good); status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("status with a stale token: %d %s; want 409 fenced", status, body)
	}
	logs, err := e.store.LogList(ctx, &store.LogListParams{JobID: j.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, l := range logs {
		got += string(l.Data)
	}
	if got != "hello\n" {
		t.Errorf("stored output = %q; want only the current token's \"hello\\n\"", got)
	}
	if job, _ := e.store.JobGet(ctx, j.ID); job.State != core.JobSucceeded || job.ExitCode != 0 {
		t.Errorf("job %s exit %d after a stale report; want still succeeded 0", job.State, job.ExitCode)
	}
}
