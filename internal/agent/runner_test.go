package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// lockedBuffer is an io.Writer the task's shippers may write from two
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// offer makes the fake server hand out a task for attempt att-test rank 0,
// as the real one does to the holder of the attempt's token.
func offer(t *testing.T, f *fakeServer, command string) {
	t.Helper()
	as := wire.Assignment{
		Assignment: store.Assignment{
			Task:         store.Task{AttemptID: "att-test", Rank: 0, State: core.TaskAssigned},
			AttemptState: core.AttemptPlaced, FencingToken: "token",
			Job: &store.Job{ID: "job-test", Name: "test", DataObject: "obj-test",
				Spec: spec.Job{Command: []string{"/bin/sh", "-c", command}, Outputs: "out", Checkpoint: &spec.Checkpoint{Path: "ckpt"}}},
		},
		Keys: map[string][]byte{"obj-test": make([]byte, data.DataKeySize)},
	}
	b, err := json.Marshal(as)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.objects["/v1/agent/attempts/att-test/ranks/0/assignment"] = b
	f.mu.Unlock()
}

func runnerConfig(f *fakeServer, dir string, out *lockedBuffer) RunnerConfig {
	return RunnerConfig{
		Server: f.URL, AttemptID: "att-test", Rank: 0, FencingToken: "token", Dir: dir,
		SyncEvery: 50 * time.Millisecond, StopGrace: 5 * time.Second, Stdout: out, Stderr: out,
	}
}

// TestRunTaskRunsTheOfferedTask: the runner fetches its task with the
// token, runs the given command in place of the job's, echoes its output,
// commits what it wrote, reports its end and leaves no task directory.
func TestRunTaskRunsTheOfferedTask(t *testing.T) {
	f := newFakeServer(t)
	offer(t, f, "echo the job's own command; exit 9")
	dir := t.TempDir()
	var out lockedBuffer
	cfg := runnerConfig(f, dir, &out)
	cfg.Command = []string{"/bin/sh", "-c", `echo from-the-runner; echo 1 > "$LODE_CHECKPOINT_DIR/state"; echo 2 > "$LODE_OUTPUT_DIR/result"`}
	end, err := RunTask(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if end.State != core.TaskExited || end.ExitCode != 0 || !end.Reported || end.Fenced {
		t.Errorf("end = %+v; want exited 0, reported", end)
	}
	if got := out.String(); !strings.Contains(got, "from-the-runner") || strings.Contains(got, "own command") {
		t.Errorf("echoed output %q; want the runner's command's, not the job's", got)
	}
	f.mu.Lock()
	commits := strings.Join(f.commits, " ")
	f.mu.Unlock()
	if !strings.Contains(commits, "checkpoints") || !strings.Contains(commits, "artifacts") {
		t.Errorf("commits = %q; want a checkpoint and the outputs", commits)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind in the task directory: %v", entries)
	}
}

// TestRunTaskStopsGracefullyWhenItsContextEnds: a runner told to stop (its
// pod deleted or evicted) gives the command SIGTERM and its grace period,
// commits the checkpoint written in it, and reports no end: whoever stopped
// it says why the attempt ends (a killed report would cancel the job).
func TestRunTaskStopsGracefullyWhenItsContextEnds(t *testing.T) {
	f := newFakeServer(t)
	offer(t, f, `trap 'echo 7 > "$LODE_CHECKPOINT_DIR/state"; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	type result struct {
		end TaskEnd
		err error
	}
	done := make(chan result, 1)
	go func() {
		end, err := RunTask(ctx, runnerConfig(f, t.TempDir(), &out))
		done <- result{end, err}
	}()
	// Stop once the command has said it is ready, so its trap is set.
	timeout := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "ready") {
		select {
		case <-f.changed:
		case <-timeout:
			t.Fatalf("the command never started; output %q", out.String())
		}
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the runner did not stop within 30s")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.end.State != core.TaskKilled || r.end.Reported {
		t.Errorf("end = %+v; want killed and not reported", r.end)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.Contains(strings.Join(f.commits, " "), "checkpoints") {
		t.Errorf("commits = %v; want the checkpoint written in the grace period", f.commits)
	}
	if last := f.statuses[len(f.statuses)-1]; last.State != core.TaskRunning {
		t.Errorf("last report %+v; want running (no end reported)", last)
	}
}

// TestRunTaskWithoutAnOfferRunsNothing: when the server hands out no task
// the runner says so and writes nothing.
func TestRunTaskWithoutAnOfferRunsNothing(t *testing.T) {
	f := newFakeServer(t)
	var out lockedBuffer
	_, err := RunTask(context.Background(), runnerConfig(f, t.TempDir(), &out))
	if !errors.Is(err, ErrNotAssigned) {
		t.Fatalf("err = %v; want ErrNotAssigned", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for req := range f.seen {
		if !strings.HasPrefix(req, "GET ") {
			t.Errorf("the refused runner sent %s", req)
		}
	}
	if !strings.Contains(err.Error(), "att-test") {
		t.Errorf("error %q does not name the attempt", err)
	}
}
