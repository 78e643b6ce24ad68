package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

// mnistSpec writes a spec for the MNIST example trainer with the given
// trainer flags and returns its path.
func mnistSpec(t *testing.T, flags string) string {
	t.Helper()
	root, err := filepath.Abs("../examples/mnist")
	if err != nil {
		t.Fatal(err)
	}
	spec := `name: mnist
workdir: ` + filepath.Join(root, "trainer") + `
run: go build -o mnist . && exec ./mnist --data "$LODE_DATASET_MNIST" ` + flags + `
resources: {cpus: 1, memory: 512MiB}
datasets: [{name: mnist, mount: data/mnist, from: ` + filepath.Join(root, "data") + `}]
checkpoint: {path: ckpt, every: 1s}
outputs: out
retries: {on_node_lost: 3}
`
	p := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var resumedRE = regexp.MustCompile(`mnist: resuming from checkpoint at step (\d+)`)

// TestAgentKilledJobResumesFromCheckpoint: SIGKILL the agent while the MNIST
// trainer runs on it; a new agent takes the job over from its last committed
// checkpoint, not from step 0.
func TestAgentKilledJobResumesFromCheckpoint(t *testing.T) {
	cl := startServer(t, "--no-local-pool")
	first := cl.startAgent("rig-a")
	id := detachedJob(t, cl, mnistSpec(t, "--epochs 2 --checkpoint-every 100"))
	cl.waitState(id, core.JobRunning, 60*time.Second)
	poll(t, 120*time.Second, "a committed checkpoint", func() bool {
		cks, err := cl.c.Checkpoints(context.Background(), id)
		return err == nil && len(cks) > 0
	})
	first.signal(syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	cl.waitJob(id, 30*time.Second, "its first attempt is lost", func(d *wire.JobDetail) bool {
		return len(d.AttemptList) > 0 && d.AttemptList[0].State == core.AttemptLost
	})

	cl.startAgent("rig-b")
	d := cl.waitState(id, core.JobSucceeded, 180*time.Second)

	code, stdout, stderr := cl.run("logs", id)
	if code != 0 {
		t.Fatalf("lode logs: %s", stderr)
	}
	m := resumedRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("the second attempt did not resume from a checkpoint; output:\n%s", stdout)
	}
	if step, _ := strconv.Atoi(m[1]); step < 100 {
		t.Errorf("resumed from step %d, want a checkpoint at step 100 or later", step)
	}
	if n := strings.Count(stdout, "mnist: starting from step 0"); n != 1 {
		t.Errorf("the job started from step 0 %d times, want once", n)
	}
	if len(d.AttemptList) != 2 || d.AttemptList[1].State != core.AttemptSucceeded || d.Retries.NodeLost != 1 {
		t.Errorf("attempts = %+v, retries %+v; want lost then succeeded", d.AttemptList, d.Retries)
	}
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := cl.run("artifacts", "get", id, out); code != 0 {
		t.Fatalf("artifacts get: %s", stderr)
	}
	if st, err := os.Stat(filepath.Join(out, "model.bin")); err != nil || st.Size() == 0 {
		t.Errorf("model.bin not fetched: %v", err)
	}
}

// TestAgentShutdownMovesItsTasksWithoutLosingWork: SIGTERM to an agent
// drains its node: the trainer gets SIGTERM and its grace period, writes a
// last checkpoint, and the job resumes on another agent from that
// checkpoint, without spending a retry.
func TestAgentShutdownMovesItsTasksWithoutLosingWork(t *testing.T) {
	cl := startServer(t, "--no-local-pool")
	first := cl.startAgent("rig-a")
	id := detachedJob(t, cl, mnistSpec(t, "--epochs 2 --checkpoint-every 1000"))
	cl.waitState(id, core.JobRunning, 60*time.Second)
	poll(t, 120*time.Second, "the trainer to report progress", func() bool {
		ms, err := cl.c.Metrics(context.Background(), id, 0)
		return err == nil && len(ms) >= 2
	})
	first.signal(syscall.SIGTERM)
	if code := first.wait(t, 60*time.Second); code != 0 {
		t.Errorf("agent exited %d after SIGTERM, want 0", code)
	}
	d := cl.waitJob(id, 30*time.Second, "its first attempt is preempted", func(d *wire.JobDetail) bool {
		return len(d.AttemptList) > 0 && d.AttemptList[0].State == core.AttemptPreempted
	})
	if d.Retries.NodeLost != 0 || d.Retries.Error != 0 {
		t.Errorf("retries used = %+v; a drain must not spend any", d.Retries)
	}
	cks, err := cl.c.Checkpoints(context.Background(), id)
	if err != nil || len(cks) == 0 {
		t.Fatalf("no checkpoint after the drain (%v); the grace period's checkpoint was lost", err)
	}
	cl.startAgent("rig-b")
	cl.waitState(id, core.JobSucceeded, 180*time.Second)
	_, stdout, _ := cl.run("logs", id)
	m := resumedRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("the job did not resume from a checkpoint:\n%s", stdout)
	}
	if step, _ := strconv.Atoi(m[1]); step == 0 || step%1000 == 0 {
		t.Errorf("resumed from step %d; want the step the trainer checkpointed at SIGTERM, not a periodic one", step)
	}
}
