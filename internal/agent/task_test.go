package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// fakeServer is the part of the control plane a task talks to: status
// reports, output, and an object store. drop, when set, decides which
// requests are cut off as by a network failure (the connection closed
// without an answer), after the request was read and recorded.
type fakeServer struct {
	*httptest.Server

	mu       sync.Mutex
	statuses []wire.TaskStatus
	objects  map[string][]byte
	commits  []string // "artifacts" or "checkpoints", as committed
	// shipped is what the task's output and metrics carried to the server.
	shipped []byte
	drop    func(r *http.Request, n int) bool
	seen    map[string]int // requests per "METHOD kind"
	changed chan struct{}
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{objects: map[string][]byte{}, seen: map[string]int{}, changed: make(chan struct{}, 100)}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// kind names a request by what it does: "status", "logs", "chunks",
// "manifests", "missing", "artifacts", ...
func kind(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) >= 4 && parts[1] == "objects" {
		return parts[3]
	}
	return parts[len(parts)-1]
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	k := kind(r)
	var status wire.TaskStatus
	var shipped []byte
	switch k {
	case "status":
		_ = json.NewDecoder(r.Body).Decode(&status)
	case "logs":
		var l wire.TaskLog
		_ = json.NewDecoder(r.Body).Decode(&l)
		shipped = l.Data
	case "metrics":
		shipped, _ = io.ReadAll(r.Body)
	}
	f.mu.Lock()
	f.shipped = append(f.shipped, shipped...)
	f.seen[r.Method+" "+k]++
	n := f.seen[r.Method+" "+k]
	if k == "status" {
		f.statuses = append(f.statuses, status)
	}
	drop := f.drop != nil && f.drop(r, n)
	f.mu.Unlock()
	defer func() {
		select {
		case f.changed <- struct{}{}:
		default:
		}
	}()
	if drop {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	switch {
	case k == "missing":
		var req wire.MissingChunks
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		var missing []string
		for _, a := range req.Addrs {
			if _, ok := f.objects[r.URL.Path[:strings.LastIndex(r.URL.Path, "/")]+"/chunks/"+a]; !ok {
				missing = append(missing, a)
			}
		}
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(wire.MissingChunks{Addrs: missing})
	case r.Method == "PUT":
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.objects[r.URL.Path] = b
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "GET":
		f.mu.Lock()
		b, ok := f.objects[r.URL.Path]
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":{"code":"not_found","message":"no such thing"}}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write(b)
	case k == "artifacts" || k == "checkpoints":
		f.mu.Lock()
		f.commits = append(f.commits, k)
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{}`))
	default: // logs, metrics, status
		w.WriteHeader(http.StatusNoContent)
	}
}

// waitEnd waits until the task reported an end (exited or killed).
func (f *fakeServer) waitEnd(t *testing.T, done <-chan struct{}) wire.TaskStatus {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case <-done:
			f.mu.Lock()
			defer f.mu.Unlock()
			for i := len(f.statuses) - 1; i >= 0; i-- {
				if s := f.statuses[i]; s.State.Terminal() {
					return s
				}
			}
			t.Fatalf("the task ended without reporting its end; reports: %+v", f.statuses)
		case <-f.changed:
		case <-timeout:
			t.Fatal("the task did not end within 30s")
		}
	}
}

// runTask runs one task of command on a fresh agent against f and returns
// once the task is done.
func runTask(t *testing.T, f *fakeServer, command string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	a := &Agent{
		cfg: Config{Dir: dir, SyncEvery: 50 * time.Millisecond, StopGrace: time.Second},
		log: slog.New(slog.DiscardHandler), tasks: map[wire.TaskRef]*task{},
	}
	runTaskOn(t, f, a, command)
	return dir
}

// runTaskOn runs one task of command on agent a against f and returns once
// the task is done.
func runTaskOn(t *testing.T, f *fakeServer, a *Agent, command string) {
	t.Helper()
	c, err := client.New(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	const object = "obj-test"
	as := wire.Assignment{
		Assignment: store.Assignment{
			Task:         store.Task{AttemptID: "att-test", Rank: 0, State: core.TaskAssigned},
			AttemptState: core.AttemptPlaced, FencingToken: "token",
			Job: &store.Job{ID: "job-test", Name: "test", DataObject: object,
				Spec: spec.Job{Command: []string{"/bin/sh", "-c", command}, Outputs: "out", Checkpoint: &spec.Checkpoint{Path: "ckpt"}}},
		},
		Keys: map[string][]byte{object: make([]byte, data.DataKeySize)},
	}
	tk := newTask(a, c.WithNode("node-test", "secret"), as, nil)
	done := make(chan struct{})
	go func() { tk.run(context.Background()); close(done) }()
	f.waitEnd(t, done)
}

// TestTaskStartsWhenTheAnswerToItsRunningReportIsLost: the server records
// the task as running, but its answer never reaches the agent. The agent
// must report again rather than give the task up, or the server would wait
// forever for a task nothing runs.
func TestTaskStartsWhenTheAnswerToItsRunningReportIsLost(t *testing.T) {
	f := newFakeServer(t)
	f.drop = func(r *http.Request, n int) bool { return kind(r) == "status" && n == 1 }
	marker := filepath.Join(t.TempDir(), "ran")
	end := func() wire.TaskStatus {
		runTask(t, f, "touch "+marker)
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.statuses[len(f.statuses)-1]
	}()
	if end.State != core.TaskExited || end.ExitCode != 0 {
		t.Errorf("the task ended %s with code %d, want exited 0", end.State, end.ExitCode)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command never ran: %v", err)
	}
}

// TestFinishedTaskWaitsForTheServerToTakeItsOutputs: the command succeeds
// while the server cannot be reached (restarting, or cut off): the agent
// must upload the outputs once it is back, not fail a finished task.
func TestFinishedTaskWaitsForTheServerToTakeItsOutputs(t *testing.T) {
	f := newFakeServer(t)
	// The first three uploads are cut off (one try of the checkpoint
	// sync, or of the outputs, may need several requests).
	dropped := 0
	f.drop = func(r *http.Request, _ int) bool {
		if kind(r) == "status" || kind(r) == "logs" {
			return false
		}
		dropped++
		return dropped <= 3
	}
	runTask(t, f, `echo 42 > "$LODE_OUTPUT_DIR/result" && echo 1 > "$LODE_CHECKPOINT_DIR/state"`)
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.statuses[len(f.statuses)-1]
	if end.State != core.TaskExited || end.ExitCode != 0 {
		t.Errorf("the task ended %s with code %d (%s), want exited 0", end.State, end.ExitCode, end.Message)
	}
	if !strings.Contains(strings.Join(f.commits, " "), "artifacts") {
		t.Errorf("commits = %v, want the outputs committed", f.commits)
	}
}

// TestTaskWaitsForTheServerToPrepare: a resumed attempt restores its
// checkpoint from the server; a server down for a moment must not fail it.
func TestTaskWaitsForTheServerToPrepare(t *testing.T) {
	f := newFakeServer(t)
	// Push a checkpoint through the fake, then cut the first fetches off.
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "state"), []byte("7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(f.URL)
	s, err := data.NewSealer("obj-test", make([]byte, data.DataKeySize))
	if err != nil {
		t.Fatal(err)
	}
	res, err := data.Push(context.Background(), c, s, "obj-test", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.seen = map[string]int{}
	f.drop = func(r *http.Request, n int) bool { return r.Method == "GET" && n <= 2 }
	f.mu.Unlock()

	dir := t.TempDir()
	a := &Agent{cfg: Config{Dir: dir, SyncEvery: 50 * time.Millisecond, StopGrace: time.Second},
		log: slog.New(slog.DiscardHandler), tasks: map[wire.TaskRef]*task{}}
	as := wire.Assignment{
		Assignment: store.Assignment{
			Task:         store.Task{AttemptID: "att-test", Rank: 0, State: core.TaskAssigned},
			AttemptState: core.AttemptPlaced, FencingToken: "token",
			Job: &store.Job{ID: "job-test", Name: "test", DataObject: "obj-test",
				Spec: spec.Job{Command: []string{"/bin/sh", "-c", `test "$(cat "$LODE_CHECKPOINT_DIR/state")" = 7`}, Checkpoint: &spec.Checkpoint{Path: "ckpt"}}},
		},
		Keys:       map[string][]byte{"obj-test": make([]byte, data.DataKeySize)},
		Checkpoint: &store.Checkpoint{Version: 1, Manifest: res.Manifest},
	}
	tk := newTask(a, c.WithNode("node-test", "secret"), as, nil)
	done := make(chan struct{})
	go func() { tk.run(context.Background()); close(done) }()
	end := f.waitEnd(t, done)
	if end.State != core.TaskExited || end.ExitCode != 0 {
		t.Errorf("the task ended %s with code %d (%s), want exited 0 after restoring its checkpoint", end.State, end.ExitCode, end.Message)
	}
}
