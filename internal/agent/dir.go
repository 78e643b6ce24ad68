package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// claimDir takes the agent's directory for this process, and removes the
// task directories a previous agent on it left behind: one that was killed
// could not remove them, and they hold decrypted data. A second agent on
// the same directory would remove the first one's tasks, so it is refused.
// release gives the directory up.
func claimDir(dir string, log *slog.Logger) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another lode agent is using %s; give each agent its own --dir", dir)
	}
	tasks := filepath.Join(dir, "tasks")
	entries, err := os.ReadDir(tasks)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(tasks, e.Name())
		if err := os.RemoveAll(p); err != nil {
			log.Error("could not remove a task directory left by an agent that did not stop cleanly", slog.String("dir", p), slog.Any("err", err))
			continue
		}
		log.Info("removed a task directory left by an agent that did not stop cleanly", slog.String("dir", p))
	}
	return func() { f.Close() }, nil
}
