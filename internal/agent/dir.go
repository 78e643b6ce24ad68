package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// claimDir takes the agent's directory for this process, and cleans up what
// a previous agent on it left behind: one that was killed could not, and its
// task directories (and their tmpfs mounts) hold decrypted data, and its
// tasks may have left processes running as their users. A second agent on
// the same directory would remove the first one's tasks, so it is refused.
// release gives the directory up.
func claimDir(dir string, iso *isolation, log *slog.Logger) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another lode agent is using %s; give each agent its own --dir", dir)
	}
	if iso == nil {
		iso = &isolation{root: filepath.Join(dir, "tasks")}
	}
	if iso.uids != nil {
		if err := iso.lockRoot(); err != nil {
			f.Close()
			return nil, err
		}
		// Leftover processes first: one of them may hold a leftover
		// mount.
		iso.uids.reapOrphans()
		iso.sweepRoots(log)
	}
	roots := []string{filepath.Join(dir, "tasks")}
	if iso.root != roots[0] {
		// An agent that ran here without root kept its tasks in dir.
		roots = append(roots, iso.root)
	}
	for _, r := range roots {
		if err := cleanRoot(r, log); err != nil {
			iso.unlockRoot()
			f.Close()
			return nil, err
		}
	}
	return func() {
		iso.unlockRoot()
		f.Close()
	}, nil
}
