package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
)

// The test binary doubles as the exec guard: run with LODE_TEST_GUARD=1 it
// behaves as `lode exec-guard`.
func TestMain(m *testing.M) {
	if os.Getenv("LODE_TEST_GUARD") == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "exec-guard" {
			args = args[1:]
		}
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		os.Exit(Guard(args))
	}
	os.Exit(m.Run())
}

func TestParseNvidiaSMI(t *testing.T) {
	got, err := parseNvidiaSMI("NVIDIA GeForce RTX 3090, 24576\nNVIDIA A100-SXM4-80GB, 81920\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []core.GPU{{Model: "rtx3090", MemoryBytes: 24576 << 20}, {Model: "a100sxm480gb", MemoryBytes: 81920 << 20}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"RTX 3090", "RTX 3090, lots", "A100, -1"} {
		if _, err := parseNvidiaSMI(bad); err == nil {
			t.Errorf("parseNvidiaSMI(%q): want an error", bad)
		}
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add("NVIDIA GeForce RTX 3090, 24576\n")
	f.Add("")
	f.Add(",,,\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		gpus, err := parseNvidiaSMI(s)
		if err == nil {
			for _, g := range gpus {
				if g.MemoryBytes < 0 {
					t.Errorf("negative memory from %q", s)
				}
			}
		}
	})
}

func TestTakeGPUs(t *testing.T) {
	a := &Agent{cfg: Config{GPUs: []core.GPU{{Model: "rtx3090"}, {Model: "a100"}, {Model: "rtx3090"}}}}
	a.gpus = make([]bool, 3)
	idx, ok := a.takeGPUs(core.Resources{GPUs: 2, GPUModels: []string{"rtx3090"}})
	if !ok || !cmp.Equal(idx, []int{0, 2}) {
		t.Fatalf("took %v, %v; want [0 2]", idx, ok)
	}
	if _, ok := a.takeGPUs(core.Resources{GPUs: 1, GPUModels: []string{"rtx3090"}}); ok {
		t.Error("took a third rtx3090 from a node with two")
	}
	a.releaseGPUs(idx)
	if idx, ok := a.takeGPUs(core.Resources{GPUs: 3}); !ok || len(idx) != 3 {
		t.Errorf("after release: took %v, %v; want all three", idx, ok)
	}
}

func TestEnvName(t *testing.T) {
	if got := envName("coco-2017.v2"); got != "COCO_2017_V2" {
		t.Errorf("envName = %q", got)
	}
}

// TestGuardKillsGrandchildrenWhenTheAgentDies starts the guard from a
// helper shell (standing in for the agent), kills the shell with SIGKILL,
// and checks that the task's own child, a backgrounded sleep, dies too.
func TestGuardKillsGrandchildrenWhenTheAgentDies(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The "agent": starts the guard through startProcess, then blocks.
	agent := exec.Command(self, "-test.run=^TestHelperAgent$")
	agent.Env = append(os.Environ(), "LODE_TEST_HELPER_AGENT=1", "LODE_TEST_PIDFILE="+pidFile, "LODE_TEST_GUARD_BIN="+self)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitPID(t, pidFile)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("grandchild %d not running before the agent died: %v", pid, err)
	}
	_ = agent.Process.Kill()
	_ = agent.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d outlived the agent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHelperAgent is not a test: TestGuardKillsGrandchildrenWhenTheAgentDies
// runs it in a child process as a stand-in agent.
func TestHelperAgent(t *testing.T) {
	if os.Getenv("LODE_TEST_HELPER_AGENT") != "1" {
		t.Skip("helper process for TestGuardKillsGrandchildrenWhenTheAgentDies")
	}
	os.Setenv("LODE_TEST_GUARD", "1")
	script := fmt.Sprintf("sleep 600 & echo $! > %s.tmp && mv %s.tmp %s; wait", os.Getenv("LODE_TEST_PIDFILE"), os.Getenv("LODE_TEST_PIDFILE"), os.Getenv("LODE_TEST_PIDFILE"))
	p, err := startProcess(os.Getenv("LODE_TEST_GUARD_BIN"), []string{"/bin/sh", "-c", script}, t.TempDir(), os.Environ(), os.Stdout, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.wait()
}

func TestGuardExitCodes(t *testing.T) {
	self, _ := os.Executable()
	run := func(argv ...string) (int, string) {
		cmd := exec.Command(self, append([]string{"exec-guard", "--"}, argv...)...)
		cmd.Env = append(os.Environ(), "LODE_TEST_GUARD=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, _ := run("/bin/sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exit 7: guard exited %d", code)
	}
	if code, out := run("no-such-command-anywhere"); code != 127 || !strings.Contains(out, "command not found: no-such-command-anywhere") {
		t.Errorf("missing command: exit %d, output %q; want 127 and a clear message", code, out)
	}
	if code, _ := run("/bin/sh", "-c", "kill -TERM $$"); code != 128+int(syscall.SIGTERM) {
		t.Errorf("killed by SIGTERM: guard exited %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

func waitPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
