package agent

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestClaimDirRemovesWhatAKilledAgentLeft: task directories hold decrypted
// data; an agent killed with SIGKILL cannot remove its own, so the next
// agent on the directory must. A second agent on a claimed directory is
// refused.
func TestClaimDirRemovesWhatAKilledAgentLeft(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "tasks", "att-old-r0", "work")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "secret"), []byte("plaintext"), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := claimDir(dir, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tasks"))
	if len(entries) != 0 {
		t.Errorf("tasks/ still holds %d entries after the claim", len(entries))
	}
	if _, err := claimDir(dir, nil, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another lode agent") {
		t.Errorf("second claim: err = %v, want a refusal", err)
	}
	release()
	again, err := claimDir(dir, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again()
}

// TestClaimDirCleansUpAfterAKilledAgentRunningAsRoot: an agent killed with
// SIGKILL leaves its tasks' tmpfs mounts, full of decrypted data, and maybe
// processes of their users. The next agent on its directory must unmount
// and remove them and kill the processes; so must any agent on the machine,
// for an agent whose directory no agent will ever use again.
func TestClaimDirCleansUpAfterAKilledAgentRunningAsRoot(t *testing.T) {
	needRoot(t)
	log := slog.New(slog.DiscardHandler)
	// leave makes an agent on a fresh directory that "dies" with a task
	// directory mounted and a process of the task's user running.
	leave := func() (agentDir, taskDir string, pid int) {
		agentDir = t.TempDir()
		if err := os.Mkdir(filepath.Join(agentDir, "tasks"), 0o700); err != nil {
			t.Fatal(err)
		}
		iso, err := newIsolation(agentDir, UIDRange{}, 1<<30, log)
		if err != nil {
			t.Fatal(err)
		}
		release, err := claimDir(agentDir, iso, log)
		if err != nil {
			t.Fatal(err)
		}
		id, err := iso.uids.take()
		if err != nil {
			t.Fatal(err)
		}
		cred := &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}
		taskDir = filepath.Join(iso.root, "att-old-r0")
		if err := iso.makeDir(taskDir, cred, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(taskDir, "secret"), []byte("plaintext"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
		cmd.Dir = taskDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		// The kernel drops a dead agent's locks, as these do; the task root
		// is not empty, so release cannot remove it.
		iso.uids.close()
		release()
		return agentDir, taskDir, pid
	}
	check := func(what, taskDir string, pid int) {
		t.Helper()
		if alive(pid) {
			t.Errorf("%s: the dead agent's task process %d still runs", what, pid)
		}
		if _, err := os.Lstat(taskDir); !os.IsNotExist(err) {
			t.Errorf("%s: %s is still there (%v)", what, taskDir, err)
		}
		if m, err := mountsUnder(filepath.Dir(taskDir)); err != nil || len(m) > 0 {
			t.Errorf("%s: mounts left: %v, %v", what, m, err)
		}
	}

	// The next agent on the same directory.
	dir, taskDir, pid := leave()
	iso, err := newIsolation(dir, UIDRange{}, 1<<30, log)
	if err != nil {
		t.Fatal(err)
	}
	release, err := claimDir(dir, iso, log)
	if err != nil {
		t.Fatal(err)
	}
	check("same directory", taskDir, pid)
	release()

	// An agent on another directory.
	_, taskDir, pid = leave()
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(other, "tasks"), 0o700); err != nil {
		t.Fatal(err)
	}
	iso, err = newIsolation(other, UIDRange{}, 1<<30, log)
	if err != nil {
		t.Fatal(err)
	}
	release, err = claimDir(other, iso, log)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	check("another directory", taskDir, pid)
	if _, err := os.Lstat(filepath.Dir(taskDir)); !os.IsNotExist(err) {
		t.Errorf("the dead agent's task root %s is still there (%v)", filepath.Dir(taskDir), err)
	}
}
