package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

// node joins the default pool as a node with no agent behind it, the way a
// pool whose tasks `lode runner` runs (Kubernetes) holds capacity, and
// keeps its lease with heartbeats that list the tasks it was given as
// running. It returns the first task it is given.
func (cl *cluster) runnerNode(ctx context.Context) <-chan wire.Assignment {
	cl.t.Helper()
	node, joined, err := cl.c.JoinAs(ctx, &wire.Join{
		JoinToken: cl.token("default"), Name: "pod-host", MilliCPUs: 2000, MemoryBytes: 1 << 30,
		GPUs: []core.GPU{}, Labels: map[string]string{wire.LabelAddr: "127.0.0.1"},
	})
	if err != nil {
		cl.t.Fatal(err)
	}
	given := make(chan wire.Assignment, 1)
	go func() {
		var tasks []wire.TaskRef
		tick := time.NewTicker(time.Duration(joined.HeartbeatIntervalMS) * time.Millisecond)
		defer tick.Stop()
		for {
			reply, err := node.Heartbeat(ctx, &wire.Heartbeat{Tasks: tasks})
			if err == nil && len(reply.Start) > 0 && tasks == nil {
				as := reply.Start[0]
				tasks = []wire.TaskRef{{AttemptID: as.Task.AttemptID, Rank: as.Task.Rank}}
				given <- as
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return given
}

// TestRunnerRunsATaskWithoutAnAgent: the task of a placed attempt is run
// by `lode runner` in a process of its own, configured only through the
// environment a Kubernetes pod gets. It reads the decrypted dataset,
// commits a checkpoint and an output, and its output reaches `lode logs`.
// A runner with a forged token, or with the token once the attempt has
// ended, is refused and writes nothing.
func TestRunnerRunsATaskWithoutAnAgent(t *testing.T) {
	const marker = "LODE-RUNNER-MARKER-4b1d9e"
	cl := startServer(t, "--no-local-pool")
	// The job's own command must not run: the runner is given its own.
	spec := script(t, "datasets: [{name: secrets, mount: data, from: ds}]\ncheckpoint: {path: ckpt, every: 1s}\noutputs: out\n",
		"echo the job's own command ran; exit 99\n", map[string]string{"ds/secret.txt": "the payload is " + marker + "\n"})
	id := detachedJob(t, cl, spec)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var as wire.Assignment
	select {
	case as = <-cl.runnerNode(ctx):
	case <-time.After(30 * time.Second):
		t.Fatalf("the job was not placed on the node within 30s: %+v", cl.job(id))
	}
	if as.Job.ID != id || as.FencingToken == "" {
		t.Fatalf("given task of job %s with token %q; want job %s with a token", as.Job.ID, as.FencingToken, id)
	}

	scratch := t.TempDir()
	ran := func(name string) string { return filepath.Join(scratch, name) }
	taskDir := filepath.Join(t.TempDir(), "task")
	env := func(token string) []string {
		return []string{"LODE_SERVER=" + cl.url, "LODE_CA=" + filepath.Join(cl.dataDir, "ca.crt"), "LODE_ATTEMPT=" + as.Task.AttemptID, "LODE_RANK=",
			"JOB_COMPLETION_INDEX=0", "LODE_FENCING_TOKEN=" + token, "LODE_TASK_DIR=" + taskDir}
	}
	// A runner holding a forged token gets nothing while the attempt is
	// live, and its command never runs.
	code, _, stderr := lode(t, env("forged-token"), "runner", "--", "sh", "-c", "touch "+ran("forged"))
	if code == 0 || !strings.Contains(stderr, "refused the fencing token") {
		t.Errorf("runner with a forged token: exit %d, stderr:\n%s\nwant a refusal of its token", code, stderr)
	}

	script := `set -e
echo "runner read: $(cat data/secret.txt)"
cp data/secret.txt "$LODE_CHECKPOINT_DIR/state.txt"
printf 'output of %s rank %s' "$LODE_JOB_ID" "$RANK" > "$LODE_OUTPUT_DIR/result.txt"
echo '{"step":1,"loss":0.5}' >> "$LODE_METRICS_FILE"
touch ` + ran("legit") + "\n"
	code, stdout, stderr := lode(t, env(as.FencingToken), "runner", "--sync-every", "200ms", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("runner: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "runner read: the payload is "+marker) {
		t.Errorf("runner's own output lacks the command's; stdout:\n%s", stdout)
	}
	d := cl.waitState(id, core.JobSucceeded, 30*time.Second)
	if len(d.AttemptList) != 1 || d.AttemptList[0].State != core.AttemptSucceeded {
		t.Errorf("attempts = %+v; want the one, succeeded", d.AttemptList)
	}
	if entries, err := os.ReadDir(taskDir); err != nil || len(entries) != 0 {
		t.Errorf("the task directory, which held decrypted data, holds %v (%v); want it emptied", entries, err)
	}

	cks, err := cl.c.Checkpoints(ctx, id)
	if err != nil || len(cks) != 1 || cks[0].Version != 1 || cks[0].AttemptID != as.Task.AttemptID {
		t.Fatalf("checkpoints = %+v, %v; want version 1, committed by the attempt", cks, err)
	}
	// Both commits are on record under the attempt that made them.
	if log, err := cl.c.Audit(ctx); err != nil {
		t.Error(err)
	} else {
		committed := map[string]bool{}
		for _, e := range log.Entries {
			if e.Subject == as.Task.AttemptID && e.Actor == "attempt:"+as.Task.AttemptID {
				committed[e.Kind] = true
			}
		}
		if !committed["checkpoint.committed"] || !committed["outputs.committed"] {
			t.Errorf("the audit log records %v for the runner's attempt; want its checkpoint and outputs committed", committed)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := cl.run("artifacts", "get", id, out); code != 0 {
		t.Fatalf("artifacts get: %s", stderr)
	}
	want := "output of " + id + " rank 0"
	if b, err := os.ReadFile(filepath.Join(out, "result.txt")); err != nil || string(b) != want {
		t.Errorf("fetched output = %q, %v; want %q", b, err, want)
	}
	code, logs, stderr := cl.run("logs", id)
	if code != 0 || !strings.Contains(logs, "runner read: the payload is "+marker) {
		t.Errorf("lode logs: exit %d, stdout:\n%s\nstderr:\n%s\nwant the command's output", code, logs, stderr)
	}
	if ms, err := cl.c.Metrics(ctx, id, 0); err != nil || len(ms) != 1 {
		t.Errorf("metrics = %v, %v; want the one line", ms, err)
	}

	// The attempt has ended: its token is stale, and a runner holding it
	// is refused too and writes nothing.
	code, _, stderr = lode(t, env(as.FencingToken), "runner", "--", "sh", "-c", "touch "+ran("stale"))
	if code == 0 || !strings.Contains(stderr, "refused the fencing token") {
		t.Errorf("runner with a stale token: exit %d, stderr:\n%s\nwant a refusal of its token", code, stderr)
	}
	for _, name := range []string{"forged", "stale"} {
		if _, err := os.Stat(ran(name)); err == nil {
			t.Errorf("the command of the runner with a %s token ran", name)
		}
	}
	if _, err := os.Stat(ran("legit")); err != nil {
		t.Errorf("control: the legitimate runner's command left no trace: %v", err)
	}
	if _, after, _ := cl.run("logs", id); after != logs {
		t.Errorf("the job's output changed after the refused runner:\nbefore:\n%s\nafter:\n%s", logs, after)
	}
	if again, err := cl.c.Checkpoints(ctx, id); err != nil || len(again) != 1 {
		t.Errorf("checkpoints after the refused runner = %+v, %v; want still the one", again, err)
	}
}

// TestRunnerRefusesBadConfiguration: the real binary, with no
// configuration, exits 2 and names every variable it needs.
func TestRunnerRefusesBadConfiguration(t *testing.T) {
	env := []string{"LODE_SERVER=", "LODE_ATTEMPT=", "LODE_RANK=", "JOB_COMPLETION_INDEX=", "LODE_FENCING_TOKEN=", "LODE_TASK_DIR="}
	code, _, stderr := lode(t, env, "runner", "--", "true")
	if code != 2 {
		t.Errorf("exit %d; want 2", code)
	}
	for _, v := range []string{"LODE_SERVER", "LODE_ATTEMPT", "LODE_RANK", "LODE_FENCING_TOKEN"} {
		if !strings.Contains(stderr, v+" is not set") {
			t.Errorf("stderr does not say %s is not set:\n%s", v, stderr)
		}
	}
	dir := t.TempDir()
	if code, _, stderr := lode(t, nil, "runner", "--install", dir); code != 0 {
		t.Fatalf("runner --install: exit %d: %s", code, stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, "lode")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("installed binary: %v, %v; want mode 0755", st, err)
	}
	// The copy is a working lode, as the pod's main container needs.
	if out, err := exec.Command(filepath.Join(dir, "lode"), "runner", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "LODE_FENCING_TOKEN") {
		t.Errorf("the installed binary: %v\n%s", err, out)
	}
}
