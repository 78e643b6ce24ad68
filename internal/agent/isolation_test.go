package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/wire"
)

func TestParseUIDRange(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    UIDRange
		wantErr string
	}{
		{"200000-265535", UIDRange{200000, 265535}, ""},
		{" 5000 - 5000 ", UIDRange{5000, 5000}, ""},
		{"200000", UIDRange{}, "want FIRST-LAST"},
		{"a-b", UIDRange{}, "want FIRST-LAST"},
		{"9000-8000", UIDRange{}, "empty"},
		{"0-65535", UIDRange{}, "system users"},
		{"100000-4294967295", UIDRange{}, "2^31"},
	} {
		got, err := ParseUIDRange(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ParseUIDRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseUIDRange(%q): err = %v, want one saying %q", tc.in, err, tc.wantErr)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tasks get users of their own only under an agent running as root; run this test as root")
	}
}

// testUID takes a uid for a test from the machine's pool, shared with
// every agent running here, and gives it back when the test ends.
func testUID(t *testing.T) uint32 {
	t.Helper()
	if err := rootDir(runDir, 0o711); err != nil {
		t.Fatal(err)
	}
	p, err := newUIDPool(DefaultTaskUIDs, filepath.Join(runDir, "task-uids.lock"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.take()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.give(id); p.close() })
	return id
}

// TestGuardRunsTheCommandAsTheTaskUser: the guard stays root, so the task
// cannot signal it, and its command runs as the task's user and group with
// no supplementary groups (root's would otherwise be inherited).
func TestGuardRunsTheCommandAsTheTaskUser(t *testing.T) {
	needRoot(t)
	id := testUID(t)
	self, _ := os.Executable()
	guard := func(args ...string) (int, string) {
		cmd := exec.Command(self, append([]string{"exec-guard"}, args...)...)
		cmd.Env = append(os.Environ(), "LODE_TEST_GUARD=1")
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	n := strconv.Itoa(int(id))
	code, out := guard("--uid="+n, "--gid="+n, "--", "/bin/sh", "-c", "id -u; id -g; id -G")
	if want := n + "\n" + n + "\n" + n + "\n"; code != 0 || out != want {
		t.Errorf("the command ran as %q (exit %d); want uid, gid and groups %s alone", out, code, n)
	}
	for _, bad := range [][]string{{"--uid=0", "--gid=5", "--", "true"}, {"--uid=" + n, "--", "true"}, {"--uid=x", "--gid=1", "--", "true"}} {
		if code, out := guard(bad...); code != 2 {
			t.Errorf("exec-guard %v: exit %d (%s), want 2", bad, code, out)
		}
	}
}

// TestUIDPoolHandsEachUIDToOneTaskAtATime: two agents (two pools on one
// lock file) never hand out the same uid, a full range says so, and a uid
// given back is taken again.
func TestUIDPoolHandsEachUIDToOneTaskAtATime(t *testing.T) {
	needRoot(t)
	lock := filepath.Join(t.TempDir(), "uids.lock")
	r := UIDRange{First: 2000000000, Last: 2000000001}
	log := slog.New(slog.DiscardHandler)
	p1, err := newUIDPool(r, lock, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p1.close()
	p2, err := newUIDPool(r, lock, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.close()
	a, err := p1.take()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p2.take()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || !r.Contains(a) || !r.Contains(b) {
		t.Fatalf("the two agents took uids %d and %d; want two different uids of %s", a, b, r)
	}
	if c, err := p2.take(); !errors.Is(err, errNoUID) {
		t.Fatalf("a third take from a range of two gave %d, %v; want errNoUID", c, err)
	}
	p1.give(a)
	if c, err := p2.take(); err != nil || c != a {
		t.Fatalf("after %d was given back, take = %d, %v; want %d", a, c, err, a)
	}
}

// TestKillUIDKillsWhatLeftItsProcessGroup: a task's daemon (setsid, so out
// of the guard's reach) dies with its uid.
func TestKillUIDKillsWhatLeftItsProcessGroup(t *testing.T) {
	needRoot(t)
	id := testUID(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("/bin/sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("no pid: %q", out)
	}
	_ = os.WriteFile(pidFile, out, 0o600)
	if _, ok := procUID(pid, func(u uint32) bool { return u == id }); !ok {
		t.Fatalf("control: the daemon %d does not run as uid %d", pid, id)
	}
	if err := killUID(id); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the daemon %d outlived killUID(%d)", pid, id)
	}
}

// isolatedAgent is an agent as `lode agent` makes one when it runs as root,
// with its directory claimed.
func isolatedAgent(t *testing.T) *Agent {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tasks"), 0o700); err != nil {
		t.Fatal(err)
	}
	iso, err := newIsolation(dir, UIDRange{}, 1<<30, log)
	if err != nil {
		t.Fatal(err)
	}
	if iso.uids == nil || !iso.tmpfs {
		t.Fatalf("running as root, the agent isolates nothing: %+v", iso)
	}
	release, err := claimDir(dir, iso, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return &Agent{
		cfg: Config{Dir: dir, SyncEvery: 50 * time.Millisecond, StopGrace: time.Second},
		log: log, iso: iso, tasks: map[wire.TaskRef]*task{},
	}
}

// results is a directory a task user may write into, for a task to tell
// the test what it saw.
func results(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lode-results-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestIsolatedTaskRunsAsItsOwnUserInAPrivateTmpfs: under an agent running
// as root a task runs as a uid of the range, in a tmpfs of its own with a
// home, temporary directory and Go caches inside it; what it leaves
// running, even holding its output open, dies with it; and its directory,
// mount and uid are gone when it ends.
func TestIsolatedTaskRunsAsItsOwnUserInAPrivateTmpfs(t *testing.T) {
	needRoot(t)
	a := isolatedAgent(t)
	res := results(t)
	f := newFakeServer(t)
	runTaskOn(t, f, a, fmt.Sprintf(`
R=%s
id -u > $R/uid
stat -f -c %%T . > $R/fstype
stat -c %%a "$LODE_WORKDIR/.." > $R/mode
echo "$HOME $TMPDIR $GOCACHE $GOMODCACHE" > $R/env
touch "$HOME/h" "$TMPDIR/t" && echo yes > $R/writable
(setsid sleep 600 & echo $! > $R/escaped)
`, res))
	if end := f.statuses[len(f.statuses)-1]; end.State != "exited" || end.ExitCode != 0 {
		t.Fatalf("the task ended %s with code %d (%s); want exited 0", end.State, end.ExitCode, end.Message)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(res, name))
		if err != nil {
			t.Fatalf("the task did not write %s: %v", name, err)
		}
		return strings.TrimSpace(string(b))
	}
	uid, _ := strconv.ParseUint(read("uid"), 10, 32)
	if !DefaultTaskUIDs.Contains(uint32(uid)) {
		t.Errorf("the task ran as uid %d, want one of %s", uid, DefaultTaskUIDs)
	}
	if got := read("fstype"); got != "tmpfs" {
		t.Errorf("the task's directory is on %s, want tmpfs", got)
	}
	if got := read("mode"); got != "700" {
		t.Errorf("the task's directory has mode %s, want 700", got)
	}
	taskDir := filepath.Join(a.iso.root, "att-test-r0")
	for _, p := range strings.Fields(read("env")) {
		if !strings.HasPrefix(p, taskDir+"/") {
			t.Errorf("%s is outside the task's directory %s", p, taskDir)
		}
	}
	if read("writable") != "yes" {
		t.Error("the task cannot write into its home and temporary directory")
	}
	if pid, _ := strconv.Atoi(read("escaped")); pid == 0 || alive(pid) {
		t.Errorf("the task's daemon (pid %d) outlived it", pid)
	}
	if _, err := os.Lstat(taskDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the task's directory is still there: %v", err)
	}
	if m, err := mountsUnder(a.iso.root); err != nil || len(m) > 0 {
		t.Errorf("mounts left under %s: %v, %v", a.iso.root, m, err)
	}
	a.iso.uids.mu.Lock()
	held := len(a.iso.uids.held)
	a.iso.uids.mu.Unlock()
	if held != 0 {
		t.Errorf("the agent still holds %d task uids after its only task ended", held)
	}
}

// TestTaskCannotLeadTheAgentOutOfItsTree: the agent reads a task's metrics,
// checkpoints and outputs with more rights than the task has. A task that
// turns them into symlinks to what it may not read must get none of it: not
// in its output, its metrics or its uploads.
func TestTaskCannotLeadTheAgentOutOfItsTree(t *testing.T) {
	const marker = "AGENT-SECRET-0d9e2b"
	secretDir := t.TempDir()
	secretFile := filepath.Join(secretDir, "secret.jsonl")
	if err := os.WriteFile(secretFile, []byte(`{"leak":"`+marker+`"}`+"\n"+marker+" in plain text\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Agent{
		cfg: Config{Dir: t.TempDir(), SyncEvery: 50 * time.Millisecond, StopGrace: time.Second},
		log: slog.New(slog.DiscardHandler), tasks: map[wire.TaskRef]*task{},
	}
	if os.Geteuid() == 0 {
		a = isolatedAgent(t)
	}
	f := newFakeServer(t)
	runTaskOn(t, f, a, fmt.Sprintf(`
rm -rf "$LODE_OUTPUT_DIR" "$LODE_CHECKPOINT_DIR"
ln -s %[1]s "$LODE_OUTPUT_DIR"
ln -s %[1]s "$LODE_CHECKPOINT_DIR"
ln -s %[2]s "$LODE_METRICS_FILE"
`, secretDir, secretFile))
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(string(f.shipped), marker) {
		t.Errorf("the agent shipped what the task's symlinks pointed at:\n%s", f.shipped)
	}
	if slices.Contains(f.commits, "artifacts") || slices.Contains(f.commits, "checkpoints") {
		t.Errorf("commits = %v; want nothing committed from outside the task's tree", f.commits)
	}
	end := f.statuses[len(f.statuses)-1]
	if end.ExitCode == 0 || !strings.Contains(end.Message, "outputs could not be uploaded") {
		t.Errorf("the task ended with code %d (%s); want the outputs refused", end.ExitCode, end.Message)
	}
}
