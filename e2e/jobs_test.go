package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
)

// script writes a spec running a shell script from its working directory
// and returns the spec's path.
func script(t *testing.T, specExtra, body string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{"wd/job.sh": body}
	for k, v := range files {
		all[k] = v
	}
	writeFiles(t, dir, all)
	spec := "name: e2e\nworkdir: wd\nrun: sh job.sh\n" + specExtra
	if !strings.Contains(specExtra, "resources:") {
		spec += "resources: {cpus: 0.5, memory: 64MiB}\n"
	}
	p := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var submittedRE = regexp.MustCompile(`job (job-[a-z0-9]+) `)

func TestLocalRunSucceedsAndFetchesOutputs(t *testing.T) {
	home := t.TempDir()
	spec := script(t, "outputs: out\n", `
echo "rank=$RANK world=$WORLD_SIZE attempt=$LODE_ATTEMPT"
echo "to stderr" >&2
echo '{"step":1,"loss":0.25}' >> "$LODE_METRICS_FILE"
printf 'weights' > out/model.bin
`, nil)
	work := t.TempDir()
	code, stdout, stderr := lodeIn(t, work, []string{"LODE_HOME=" + home}, "run", "--local", spec)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"rank=0 world=1 attempt=1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"to stderr", "succeeded", "model.bin"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	id := submittedRE.FindStringSubmatch(stderr)[1]
	got, err := os.ReadFile(filepath.Join(work, "lode-outputs", id, "model.bin"))
	if err != nil || string(got) != "weights" {
		t.Fatalf("fetched output = %q, %v; want \"weights\"", got, err)
	}
	// `lode artifacts get --local` fetches the same bytes later, from the
	// same data directory.
	again := filepath.Join(t.TempDir(), "again")
	if code, _, stderr := lode(t, []string{"LODE_HOME=" + home}, "artifacts", "get", "--local", id, again); code != 0 {
		t.Fatalf("artifacts get --local: %s", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(again, "model.bin")); err != nil || string(b) != "weights" {
		t.Errorf("artifacts get --local: %q, %v; want \"weights\"", b, err)
	}
	// The task's private directory, which held decrypted data, is gone:
	// under the agent's directory, or in the machine's task root (root).
	root, err := agent.TaskRoot(filepath.Join(home, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(home, "agent", "tasks"), root} {
		if tasks, err := os.ReadDir(dir); (err != nil && !os.IsNotExist(err)) || len(tasks) != 0 {
			t.Errorf("task directories left behind in %s: %v %v", dir, tasks, err)
		}
	}
}

func lodeIn(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	old, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(old)
	return lode(t, env, args...)
}

func TestBadSpecPrintsEveryErrorAndSubmitsNothing(t *testing.T) {
	cl := startServer(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte(`name: bad
run: python train.py
resources: {gpus: 1, memory: 12 parsecs}
nodes: 0
retries: {on_node_lost: 3, on_eror: 1}
`), 0o644)
	code, _, stderr := cl.run("run", p)
	if code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, p+":") || strings.Contains(l, "bad.yaml:") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("got %d errors, want 3:\n%s", len(lines), stderr)
	}
	for i, line := range []string{":3:", ":4:", ":5:"} {
		if !strings.Contains(lines[i], line) {
			t.Errorf("error %d = %q, want line %s", i+1, lines[i], line)
		}
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		t.Errorf("stack trace in output:\n%s", stderr)
	}
	jobs, err := cl.c.Jobs(context.Background(), "", 0)
	if err != nil || len(jobs) != 0 {
		t.Errorf("jobs after a bad spec: %v, %v; want none", jobs, err)
	}
}

func TestCommandNotFoundFailsTheJobWithAClearMessage(t *testing.T) {
	cl := startServer(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "job.yaml")
	os.WriteFile(p, []byte("name: nocmd\ncommand: [no-such-trainer, --lr, '0.1']\nresources: {memory: 64MiB}\n"), 0o644)
	code, _, stderr := cl.run("run", p)
	if code != 127 {
		t.Errorf("exit code = %d, want 127", code)
	}
	if !strings.Contains(stderr, "command not found: no-such-trainer") {
		t.Errorf("stderr does not say the command was not found:\n%s", stderr)
	}
	if !strings.Contains(stderr, "failed") {
		t.Errorf("stderr does not say the job failed:\n%s", stderr)
	}
}

func TestMissingDatasetIsRefusedAtSubmission(t *testing.T) {
	cl := startServer(t)
	spec := script(t, "datasets: [{name: imagenet, mount: data}]\n", "true\n", nil)
	code, _, stderr := cl.run("run", spec)
	if code != 1 || !strings.Contains(stderr, `dataset "imagenet"`) || !strings.Contains(stderr, "lode data push imagenet") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 naming the dataset and how to push it", code, stderr)
	}
	jobs, _ := cl.c.Jobs(context.Background(), "", 0)
	if len(jobs) != 0 {
		t.Errorf("a job was created: %v", jobs)
	}
}

func TestServerDownGivesAClearError(t *testing.T) {
	code, _, stderr := lode(t, nil, "ps", "--server", "https://127.0.0.1:1")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	for _, want := range []string{"server unreachable", "connection refused", "lode server"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 2 {
		t.Errorf("error is %d lines; want a short one:\n%s", n+1, stderr)
	}
}

func TestAgentWithWrongTokenRetriesWithAClearMessage(t *testing.T) {
	cl := startServer(t, "--no-local-pool")
	a := start(t, cl.env(), "agent", "--server", cl.url, "--join-token", "not-a-token", "--dir", t.TempDir(), "--gpus", "none")
	a.out.waitMatch(t, regexp.MustCompile(`refused the join token`), 20*time.Second)
	// Still alive (not exited, not a zombie) after refusing: it retries.
	if !alive(a.cmd.Process.Pid) {
		t.Fatal("the agent exited; it should keep retrying")
	}
	a.out.waitMatch(t, regexp.MustCompile(`(?s)refused the join token.*refused the join token`), 20*time.Second)
	nodes, err := cl.c.Nodes(context.Background(), "")
	if err != nil || len(nodes) != 0 {
		t.Errorf("nodes = %v, %v; want none", nodes, err)
	}
}

func TestCancelStopsTheRunningProcess(t *testing.T) {
	cl := startServer(t)
	pidFile := filepath.Join(reachableDir(t, 0o777), "pid")
	spec := script(t, "env: {PID_FILE: "+pidFile+"}\n", "echo $$ > \"$PID_FILE\"\necho started\nexec sleep 600\n", nil)
	code, stdout, stderr := cl.run("run", "--detach", spec)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	cl.waitState(id, core.JobRunning, 30*time.Second)
	waitFile(t, pidFile, 30*time.Second)
	b, _ := os.ReadFile(pidFile)
	var pid int
	if _, err := fmtSscan(strings.TrimSpace(string(b)), &pid); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cl.run("cancel", id); code != 0 {
		t.Fatalf("cancel: exit %d: %s", code, stderr)
	}
	d := cl.waitState(id, core.JobCancelled, 30*time.Second)
	if d.AttemptList[0].State != core.AttemptCancelled {
		t.Errorf("attempt state = %s, want cancelled", d.AttemptList[0].State)
	}
	waitGone(t, pid, 10*time.Second)
}

func TestServerRestartKeepsAgentsAndJobs(t *testing.T) {
	cl := startServer(t, "--no-local-pool")
	agent := cl.startAgent("rig-1")
	spec := script(t, "", "echo ok\n", nil)
	code, stdout, _ := cl.run("run", "--detach", spec)
	if code != 0 {
		t.Fatal("submit failed")
	}
	cl.waitState(strings.TrimSpace(stdout), core.JobSucceeded, 30*time.Second)
	nodesBefore, _ := cl.c.Nodes(context.Background(), "")

	restarted := time.Now()
	cl.restartServer(syscall.SIGTERM)
	poll(t, 20*time.Second, "the agent to heartbeat to the new server", func() bool {
		nodes, err := cl.c.Nodes(context.Background(), "")
		return err == nil && len(nodes) == 1 && nodes[0].LastHeartbeatAt.After(restarted)
	})
	code, stdout, stderr := cl.run("run", "--detach", spec)
	if code != 0 {
		t.Fatalf("submit after restart: %s", stderr)
	}
	d := cl.waitState(strings.TrimSpace(stdout), core.JobSucceeded, 30*time.Second)
	if got, want := d.AttemptList[0].Tasks[0].NodeID, nodesBefore[0].ID; got != want {
		t.Errorf("job ran on node %s; want the agent's node from before the restart, %s", got, want)
	}
	if strings.Contains(agent.out.String(), "joining again") {
		t.Errorf("the agent had to join again after a server restart:\n%s", agent.out.String())
	}
}

// detachedJob submits a spec without following it and returns the job's ID.
func detachedJob(t *testing.T, cl *cluster, spec string) string {
	t.Helper()
	code, stdout, stderr := cl.run("run", "--detach", spec)
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, stderr)
	}
	return strings.TrimSpace(stdout)
}

func TestOneControlPlanePerDataDirectory(t *testing.T) {
	cl := startServer(t, "--no-local-pool")
	code, _, stderr := lode(t, []string{"LODE_HOME=" + cl.dataDir}, "ps", "--local")
	if code != 1 || !strings.Contains(stderr, "another lode process") {
		t.Errorf("exit %d, stderr:\n%s\nwant a refusal naming the other process", code, stderr)
	}
}
