package agent

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// runDir holds what the agents running as root on a machine share: the
// lock file of the task uids, and a directory per agent for its tasks'
// directories. Task users must be able to pass through it to their own
// directories, so it is mode 0711: only root can list it.
const runDir = "/run/lode"

// taskMountSource names the tmpfs of a task in /proc/self/mountinfo.
const taskMountSource = "lode-task"

// isolation is how an agent keeps its tasks apart on its node: as whom a
// task runs, and where and on what its directory lives.
type isolation struct {
	// uids gives each task a user of its own; nil runs tasks as the
	// agent's own user, where nothing keeps one from reading another's
	// files.
	uids *uidPool
	// root holds the tasks' directories, one per task.
	root string
	// rootLock, held while the agent runs, tells the other agents on the
	// machine that root is in use (see lockRoot).
	rootLock *os.File
	// tmpfs says each task directory is a tmpfs mount of its own.
	tmpfs bool
	// memory bounds the tmpfs of a task that asked for no memory.
	memory int64
}

// newIsolation decides how the tasks of an agent on agentDir are kept
// apart, and says so in the log. Running as root, each task gets a uid of
// uids (DefaultTaskUIDs when zero) and a private tmpfs; otherwise tasks run
// as the agent's user with directories under agentDir.
func newIsolation(agentDir string, uids UIDRange, memory int64, log *slog.Logger) (*isolation, error) {
	if os.Geteuid() != 0 {
		log.Warn("the agent does not run as root, so its tasks run as its own user and are NOT isolated from each other: " +
			"a task can read the files of every other task on this node, and the agent's. " +
			"Run the agent as root to give each task a user and a memory-backed directory of its own")
		return &isolation{root: filepath.Join(agentDir, "tasks")}, nil
	}
	if uids == (UIDRange{}) {
		uids = DefaultTaskUIDs
	}
	if err := uids.validate(); err != nil {
		return nil, err
	}
	if err := ownedByRoot(agentDir); err != nil {
		return nil, err
	}
	root, err := TaskRoot(agentDir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{runDir, filepath.Dir(root)} {
		if err := rootDir(d, 0o711); err != nil {
			return nil, err
		}
	}
	pool, err := newUIDPool(uids, filepath.Join(runDir, "task-uids.lock"), log)
	if err != nil {
		return nil, err
	}
	iso := &isolation{uids: pool, root: root, memory: memory}
	if err := probeTmpfs(); err != nil {
		log.Warn("cannot mount a tmpfs for each task (the agent lacks CAP_SYS_ADMIN?): task directories hold decrypted data on the disk under "+root+
			" until their task ends", slog.Any("err", err))
	} else {
		iso.tmpfs = true
	}
	log.Info("each task runs as a user of its own, in a private directory",
		slog.String("uids", uids.String()), slog.String("dir", root), slog.Bool("memory_backed", iso.tmpfs))
	return iso, nil
}

// TaskRoot is where an agent on agentDir keeps its tasks' directories.
// Running as root, it is a directory of /run/lode named after agentDir: the
// tasks' users must reach their directories, and agentDir, like anything
// under a home directory, may be out of their reach. Otherwise it is
// agentDir/tasks.
func TaskRoot(agentDir string) (string, error) {
	if os.Geteuid() != 0 {
		return filepath.Join(agentDir, "tasks"), nil
	}
	abs, err := filepath.Abs(agentDir)
	if err != nil {
		return "", fmt.Errorf("agent directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(runDir, "tasks", "agent-"+hex.EncodeToString(sum[:8])), nil
}

// ownedByRoot refuses an agent directory someone else owns: they could
// read or change what an agent running as root keeps there.
func ownedByRoot(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("agent directory: %w", err)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return fmt.Errorf("agent directory %s belongs to uid %d, but an agent running as root keeps its files to root alone: chown it to root or give another --dir", dir, st.Uid)
	}
	return nil
}

// rootDir makes dir, or checks the one there, as a directory owned by root
// with mode perm: not a symlink someone planted, nor anyone else's.
func rootDir(dir string, perm os.FileMode) error {
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("agent: %w", err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !info.IsDir() || !ok || st.Uid != 0 {
		return fmt.Errorf("agent: %s must be a directory owned by root; remove what is there", dir)
	}
	if info.Mode().Perm() != perm {
		return os.Chmod(dir, perm)
	}
	return nil
}

// probeTmpfs checks that this process can mount a tmpfs.
func probeTmpfs() error {
	p := filepath.Join(runDir, "probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	defer os.Remove(p)
	if err := unix.Mount(taskMountSource, p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0700"); err != nil {
		return err
	}
	return unix.Unmount(p, 0)
}

// lockRoot makes the agent's task root and locks it for as long as the
// agent runs. Agents come and go on a machine, and one that was killed
// leaves its root behind, maybe with tmpfs mounts full of decrypted data;
// if its directory is gone (a test's, say) no agent ever starts on it again
// to clean up. So every agent, at start, removes the roots nobody holds
// (sweepRoots), which is why a root is made and locked under a loop: a
// sweeping agent may remove it between the two.
func (iso *isolation) lockRoot() error {
	for range 10 {
		if err := rootDir(iso.root, 0o711); err != nil {
			return err
		}
		f, err := os.OpenFile(iso.root, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		// Another agent holds it only while it sweeps it away.
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("agent: locking %s: %w", iso.root, err)
		}
		if sameFile(f, iso.root) {
			iso.rootLock = f
			return nil
		}
		f.Close()
	}
	return fmt.Errorf("agent: %s keeps being removed while this agent locks it", iso.root)
}

// unlockRoot removes the agent's task root, empty by now, and lets it go.
func (iso *isolation) unlockRoot() {
	if iso.rootLock == nil {
		return
	}
	_ = os.Remove(iso.root)
	iso.rootLock.Close()
	iso.rootLock = nil
}

// sweepRoots removes the task roots of agents that are gone: those no
// live agent holds a lock on.
func (iso *isolation) sweepRoots(log *slog.Logger) {
	parent := filepath.Dir(iso.root)
	entries, err := os.ReadDir(parent)
	if err != nil {
		log.Warn("could not look for task directories of agents that are gone", slog.Any("err", err))
		return
	}
	for _, e := range entries {
		p := filepath.Join(parent, e.Name())
		if !strings.HasPrefix(e.Name(), "agent-") || p == iso.root {
			continue
		}
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := cleanRoot(p, log); err == nil {
				_ = os.Remove(p)
			}
		}
		f.Close()
	}
}

// sameFile says whether f is the file now at path.
func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// makeDir makes a task's directory, mode 0700. A task with a user of its
// own (cred) gets it as a tmpfs, where the machine allows, of at most size
// bytes (0: the node's memory), owned by that user.
func (iso *isolation) makeDir(dir string, cred *syscall.Credential, size int64) error {
	if cred == nil {
		return os.MkdirAll(dir, 0o700)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if !iso.tmpfs {
		return os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if size <= 0 {
		size = iso.memory
	}
	opts := fmt.Sprintf("mode=0700,uid=%d,gid=%d", cred.Uid, cred.Gid)
	if size > 0 {
		opts += fmt.Sprintf(",size=%d", size)
	}
	// nosuid and nodev: nothing a task puts there can gain privileges;
	// exec stays allowed, as trainers build and run programs there.
	if err := unix.Mount(taskMountSource, dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		os.Remove(dir)
		return fmt.Errorf("mounting the task's memory-backed directory: %w", err)
	}
	return nil
}

// wipeDir removes a task's directory and unmounts its tmpfs. The task's
// processes must be gone: one still in it keeps the tmpfs busy, and then it
// is detached from the tree, its memory freed when the last one lets go.
func (iso *isolation) wipeDir(dir string) error {
	if iso.tmpfs {
		if err := unmount(dir); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the task directory: %w", err)
	}
	return nil
}

// unmount unmounts the file system at dir, if one is mounted there.
func unmount(dir string) error {
	err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return nil // unmounted, or nothing was mounted there
	case errors.Is(err, unix.EBUSY):
		if err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			return fmt.Errorf("detaching the task's tmpfs %s: %w", dir, err)
		}
		return nil
	default:
		return fmt.Errorf("unmounting the task's tmpfs %s: %w", dir, err)
	}
}

// handOver gives a prepared task directory to the task's user. What is in
// it was written by the agent, before anything of the task ran, so there is
// nothing a task could have swapped for a symlink.
func handOver(dir string, cred *syscall.Credential) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// cleanRoot removes what an agent that did not stop cleanly left in a task
// root: tmpfs mounts first (the deepest first), then the directories, which
// hold decrypted data.
func cleanRoot(root string, log *slog.Logger) error {
	mounts, err := mountsUnder(root)
	if err != nil {
		log.Warn("could not look for task mounts left by an agent that did not stop cleanly", slog.Any("err", err))
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			log.Error("could not unmount a task directory left by an agent that did not stop cleanly", slog.String("dir", m), slog.Any("err", err))
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("agent directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		if err := os.RemoveAll(p); err != nil {
			log.Error("could not remove a task directory left by an agent that did not stop cleanly", slog.String("dir", p), slog.Any("err", err))
			continue
		}
		log.Info("removed a task directory left by an agent that did not stop cleanly", slog.String("dir", p))
	}
	return nil
}

// mountsUnder lists the mount points strictly under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if p := unescapeMount(fields[4]); strings.HasPrefix(p, dir+"/") {
			mounts = append(mounts, p)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return mounts, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of a path in
// /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
