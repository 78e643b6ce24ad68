package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
)

// TestTasksOfDifferentProjectsCannotReadEachOther runs a task of project
// alpha that writes a secret into its directory and waits, and then, on the
// same agent, a task of project beta that tries to get at it: read it, list
// alpha's directories, write into them, read alpha's environment, signal its
// process, and look into the agent's own directory. Every try must be
// refused by the kernel. The tasks' files must belong to two different
// users, their directories be private tmpfs mounts, and once both tasks end
// their directories and mounts must be gone.
func TestTasksOfDifferentProjectsCannotReadEachOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("an agent gives each task a user of its own only when it runs as root; run this test as root")
	}
	const secret = "the-secret-of-project-alpha-5c1d"
	cl := startServer(t, "--no-local-pool")
	agentDir := filepath.Join(t.TempDir(), "agent")
	cl.startAgent("rig-1", "--dir", agentDir)
	taskRoot, err := agent.TaskRoot(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	gates := newGates(t, "a", "b")

	a := detachedJob(t, cl, script(t, "project: alpha\n", fmt.Sprintf(`
echo %s > secret
echo "A_WORK=$LODE_WORKDIR A_PID=$$"
cat %s > /dev/null
`, secret, gates.path("a")), nil))
	m := waitLog(t, cl, a, regexp.MustCompile(`A_WORK=(\S+) A_PID=(\d+)`), 60*time.Second)
	aWork, aPID := m[1], m[2]
	aDir := filepath.Dir(aWork)

	// The control: the secret is where beta will look for it, so a read
	// that the kernel allowed would find it.
	if b, err := os.ReadFile(filepath.Join(aWork, "secret")); err != nil || !strings.Contains(string(b), secret) {
		t.Fatalf("control: alpha's secret is not at %s: %q, %v", aWork, b, err)
	}

	probes := []struct{ name, cmd, want string }{
		{"read-secret", "cat '" + aWork + "/secret'", "Permission denied"},
		{"list-task-dir", "ls -a '" + aDir + "'", "Permission denied"},
		{"list-workdir", "ls -a '" + aWork + "'", "Permission denied"},
		{"write-workdir", "touch '" + aWork + "/planted'", "Permission denied"},
		{"read-environ", "cat /proc/" + aPID + "/environ", "Permission denied"},
		{"signal", "kill -0 " + aPID, "not permitted"},
		{"list-agent-dir", "ls -a '" + agentDir + "'", "Permission denied"},
		{"read-agent-lock", "cat '" + agentDir + "/lock'", "Permission denied"},
		{"list-task-root", "ls -a '" + taskRoot + "'", "Permission denied"},
	}
	var body strings.Builder
	body.WriteString(`probe() {
  name=$1; shift
  out=$(sh -c "$1" 2>&1); code=$?
  printf 'PROBE %s exit=%d %s\n' "$name" "$code" "$(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"
}
`)
	for _, p := range probes {
		fmt.Fprintf(&body, "probe %s %q\n", p.name, p.cmd)
	}
	fmt.Fprintf(&body, "echo mine > own\necho \"B_WORK=$LODE_WORKDIR\"\ncat %s > /dev/null\n", gates.path("b"))
	b := detachedJob(t, cl, script(t, "project: beta\n", body.String(), nil))
	bWork := waitLog(t, cl, b, regexp.MustCompile(`B_WORK=(\S+)`), 60*time.Second)[1]
	bDir := filepath.Dir(bWork)

	logB := jobLog(t, cl, b)
	if strings.Contains(logB, secret) {
		t.Errorf("beta's output holds alpha's secret:\n%s", logB)
	}
	for _, p := range probes {
		m := regexp.MustCompile(`(?m)^PROBE ` + p.name + ` exit=(\d+) (.*)$`).FindStringSubmatch(logB)
		switch {
		case m == nil:
			t.Errorf("%s: no result in beta's output:\n%s", p.name, logB)
		case m[1] == "0" || !strings.Contains(m[2], p.want):
			t.Errorf("%s (%s): exit %s, %q; want it refused with %q", p.name, p.cmd, m[1], m[2], p.want)
		}
	}

	// Two users, neither root nor the other's, each owning a private
	// memory-backed directory.
	uidA := ownerOf(t, filepath.Join(aWork, "secret"))
	uidB := ownerOf(t, filepath.Join(bWork, "own"))
	if uidA == uidB || !agent.DefaultTaskUIDs.Contains(uidA) || !agent.DefaultTaskUIDs.Contains(uidB) {
		t.Errorf("alpha's files belong to uid %d and beta's to uid %d; want two different uids of %s", uidA, uidB, agent.DefaultTaskUIDs)
	}
	for dir, uid := range map[string]uint32{aDir: uidA, bDir: uidB} {
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != 0o700 || info.Sys().(*syscall.Stat_t).Uid != uid {
			t.Errorf("%s: mode %v owned by %d; want 0700 owned by the task's uid %d", dir, got, info.Sys().(*syscall.Stat_t).Uid, uid)
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(dir, &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
			t.Errorf("%s is not a tmpfs of its own (statfs type %#x, %v)", dir, fs.Type, err)
		}
	}
	// The agent's own files are root's alone.
	for p, want := range map[string]os.FileMode{agentDir: 0o700, filepath.Join(agentDir, "lock"): 0o600} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != want || info.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: %v, %v; want mode %v owned by root", p, info.Mode().Perm(), err, want)
		}
	}

	gates.open("a")
	gates.open("b")
	for _, id := range []string{a, b} {
		if d := cl.waitState(id, core.JobSucceeded, 60*time.Second); d.State != core.JobSucceeded {
			t.Fatalf("job %s: %s (%s)", id, d.State, d.Reason)
		}
	}
	// A task's end reaches the server only once its directory is wiped.
	for _, dir := range []string{aDir, bDir} {
		if _, err := os.Lstat(dir); !os.IsNotExist(err) {
			t.Errorf("%s is still there after its task ended (%v)", dir, err)
		}
	}
	if mounts := mountsUnder(t, taskRoot); len(mounts) > 0 {
		t.Errorf("tmpfs mounts left after the tasks ended: %v", mounts)
	}
	if entries, err := os.ReadDir(taskRoot); err != nil || len(entries) > 0 {
		t.Errorf("%s after the tasks ended: %v, %v; want it empty", taskRoot, entries, err)
	}
}

// waitLog waits until a job's output matches re and returns the submatches.
func waitLog(t *testing.T, cl *cluster, id string, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var out string
	poll(t, timeout, fmt.Sprintf("job %s to print %q", id, re), func() bool {
		out = jobLog(t, cl, id)
		return re.MatchString(out)
	})
	return re.FindStringSubmatch(out)
}

// jobLog is a job's output so far, both streams.
func jobLog(t *testing.T, cl *cluster, id string) string {
	t.Helper()
	chunks, err := cl.c.Logs(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range chunks {
		b.Write(c.Data)
	}
	return b.String()
}

func ownerOf(t *testing.T, path string) uint32 {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Uid
}

// mountsUnder lists the mount points under dir, as this process sees them
// (the agent shares its mount namespace).
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	return mounts
}

// gates are named pipes a task blocks on until the test lets it go: the
// test's open for writing returns only once the task has opened its end,
// so a task is never let go before it waits.
type gates struct {
	t   *testing.T
	dir string
}

func newGates(t *testing.T, names ...string) *gates {
	t.Helper()
	g := &gates{t: t, dir: reachableDir(t, 0o755)}
	for _, n := range names {
		if err := unix.Mkfifo(g.path(n), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(g.path(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func (g *gates) path(name string) string { return filepath.Join(g.dir, name) }

// open lets the task waiting on gate name go on.
func (g *gates) open(name string) {
	g.t.Helper()
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(g.path(name), os.O_WRONLY, 0)
		if err == nil {
			err = f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			g.t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		g.t.Fatalf("no task waits on gate %s", name)
	}
}
