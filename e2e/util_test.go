package e2e

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }

// waitFile waits until a file exists and is not empty.
func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, "file "+path+" to appear", func() bool {
		st, err := os.Stat(path)
		return err == nil && st.Size() > 0
	})
}

// waitGone waits until no process has the pid.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, fmt.Sprintf("process %d to exit", pid), func() bool { return !alive(pid) })
}

func containsState(stat string, state byte) bool {
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' && i+2 < len(stat) {
			return stat[i+2] == state
		}
	}
	return false
}

// alive reports whether a process runs (and is not a zombie waiting to be
// reaped).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !containsState(string(b), 'Z')
}

// poll checks cond every 50 ms until it holds or the timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
