package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UIDRange is a range of user ids, both ends included. An agent running as
// root runs each task as a uid of the range (and the group of the same
// number) that no other task holds meanwhile.
type UIDRange struct{ First, Last uint32 }

// DefaultTaskUIDs is the range an agent takes its tasks' users from unless
// told otherwise: 65,536 ids above those of ordinary users and system
// services. Ids in it that name a user or group on the machine, or that lie
// in a subordinate range of /etc/subuid or /etc/subgid (rootless containers
// run as those), are never given to a task.
var DefaultTaskUIDs = UIDRange{First: 200000, Last: 265535}

// ParseUIDRange reads a range such as "200000-265535".
func ParseUIDRange(s string) (UIDRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return UIDRange{}, fmt.Errorf("agent: bad uid range %q: want FIRST-LAST, for example %s", s, DefaultTaskUIDs)
	}
	r := UIDRange{First: uint32(first), Last: uint32(last)}
	return r, r.validate()
}

func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

func (r UIDRange) validate() error {
	switch {
	case r.First > r.Last:
		return fmt.Errorf("agent: uid range %s is empty: its first id is above its last", r)
	case r.First < 1000:
		// Low ids belong to the system's own services; a task sharing one
		// could read or signal what that service runs.
		return fmt.Errorf("agent: uid range %s reaches below 1000, into the ids of system users", r)
	case r.Last >= 1<<31:
		// Some tools treat ids as signed 32-bit numbers; -1 means "no change".
		return fmt.Errorf("agent: uid range %s reaches 2^31 or above, which some tools misread", r)
	}
	return nil
}

// Contains says whether id lies in the range.
func (r UIDRange) Contains(id uint32) bool { return id >= r.First && id <= r.Last }

// uidPool hands out the uids of a range, one task at a time. Every agent on
// the machine (a rig may run several, and tests run many) shares the range:
// a uid is held through an open-file-description lock on one byte of a
// machine-wide lock file, at the offset of the uid. The kernel drops the lock
// when the holder dies, so a crashed agent's uids come back by themselves;
// whoever takes one next first kills what the crashed agent's task left
// running as it.
type uidPool struct {
	r    UIDRange
	lock *os.File
	// taken says whether a uid of the range is someone else's: a user or a
	// group of the machine, or a subordinate id of one.
	taken func(uint32) bool
	log   *slog.Logger

	mu   sync.Mutex
	held map[uint32]bool
	// next is where the search for a free uid starts: uids go round the
	// whole range, so one comes back to a task only after every other has
	// been used, which leaves a hostile task's leftovers (files in a
	// world-writable directory Lode does not sweep) the least chance to
	// meet a later holder of its uid.
	next uint32
}

func newUIDPool(r UIDRange, lockPath string, log *slog.Logger) (*uidPool, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: task uid lock file: %w", err)
	}
	taken, err := machineIDs()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &uidPool{r: r, lock: f, taken: taken, log: log, held: map[uint32]bool{}, next: r.First}
	free := 0
	for id := r.First; ; id++ {
		if !taken(id) {
			free++
		}
		if id == r.Last {
			break
		}
	}
	if free == 0 {
		f.Close()
		return nil, fmt.Errorf("agent: every id of the task uid range %s names a user or group of this machine or a subordinate id (/etc/subuid, /etc/subgid); give a range nobody uses with --task-uids", r)
	}
	if n := int(r.Last-r.First) + 1 - free; n > 0 {
		log.Warn("some ids of the task uid range belong to users or groups of this machine, or to subordinate ranges; tasks never get them",
			slog.String("range", r.String()), slog.Int("skipped", n))
	}
	return p, nil
}

// errNoUID says every uid of the range is held.
var errNoUID = errors.New("agent: no free task uid")

// take returns a uid no task holds, with nothing left running as it.
func (p *uidPool) take() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := uint64(p.r.Last-p.r.First) + 1
	for i := uint64(0); i < size; i++ {
		id := p.r.First + uint32((uint64(p.next-p.r.First)+i)%size)
		if p.held[id] || p.taken(id) {
			continue
		}
		ok, err := p.tryLock(id)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue // another agent's task holds it
		}
		// A task of a crashed agent may have left processes behind as
		// this uid; the new task must not share its user with them.
		if err := killUID(id); err != nil {
			p.log.Error("a task uid has processes that cannot be killed; it is not used", slog.Uint64("uid", uint64(id)), slog.Any("err", err))
			p.held[id] = true // held for good: never handed out by this agent
			continue
		}
		removeStrays(id, p.log)
		p.held[id] = true
		p.next = id + 1
		if p.next > p.r.Last || p.next < p.r.First {
			p.next = p.r.First
		}
		return id, nil
	}
	return 0, fmt.Errorf("%w in %s: every one is held by a running task", errNoUID, p.r)
}

// give returns a uid. Its processes must be gone (see killUID): if some are
// left, the uid stays held, so no later task shares a user with them.
func (p *uidPool) give(id uint32) {
	if err := killUID(id); err != nil {
		p.log.Error("processes of an ended task survive; its uid is not given to another task", slog.Uint64("uid", uint64(id)), slog.Any("err", err))
		return
	}
	removeStrays(id, p.log)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.setLock(id, unix.F_UNLCK); err != nil {
		p.log.Error("could not release a task uid", slog.Uint64("uid", uint64(id)), slog.Any("err", err))
		return
	}
	delete(p.held, id)
}

// reapOrphans kills what tasks of agents that are gone left running: any
// process whose uid lies in the range and is held by no live agent.
func (p *uidPool) reapOrphans() {
	ids, err := uidsRunning(p.r.Contains)
	if err != nil {
		p.log.Warn("could not look for processes left by the tasks of a crashed agent", slog.Any("err", err))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if p.held[id] || p.taken(id) {
			continue
		}
		ok, err := p.tryLock(id)
		if err != nil || !ok {
			continue // a live agent's task
		}
		if err := killUID(id); err != nil {
			p.log.Error("could not kill processes left by a task of a crashed agent", slog.Uint64("uid", uint64(id)), slog.Any("err", err))
			p.held[id] = true
			continue
		}
		p.log.Info("killed processes left by a task of an agent that did not stop cleanly", slog.Uint64("uid", uint64(id)))
		_ = p.setLock(id, unix.F_UNLCK)
	}
}

func (p *uidPool) close() { p.lock.Close() }

// tryLock takes the lock of uid id; false means another agent holds it.
func (p *uidPool) tryLock(id uint32) (bool, error) {
	err := p.setLock(id, unix.F_WRLCK)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("agent: locking task uid %d: %w", id, err)
	}
	return true, nil
}

func (p *uidPool) setLock(id uint32, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: int64(id), Len: 1}
	return unix.FcntlFlock(p.lock.Fd(), unix.F_OFD_SETLK, &lk)
}

// machineIDs reads which ids the machine gives to someone: users and
// groups of /etc/passwd and /etc/group, and the subordinate ranges of
// /etc/subuid and /etc/subgid. A missing file names nobody. (Users of a
// directory service are not seen: a range must be chosen clear of them.)
func machineIDs() (func(uint32) bool, error) {
	ids := map[uint32]bool{}
	var ranges []UIDRange
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		err := eachLine(f, func(fields []string) {
			if len(fields) > 2 {
				if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
					ids[uint32(id)] = true
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		err := eachLine(f, func(fields []string) {
			if len(fields) < 3 {
				return
			}
			start, err1 := strconv.ParseUint(fields[1], 10, 32)
			count, err2 := strconv.ParseUint(fields[2], 10, 32)
			if err1 == nil && err2 == nil && count > 0 && start+count-1 <= 1<<32-1 {
				ranges = append(ranges, UIDRange{First: uint32(start), Last: uint32(start + count - 1)})
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return func(id uint32) bool {
		if ids[id] {
			return true
		}
		for _, r := range ranges {
			if r.Contains(id) {
				return true
			}
		}
		return false
	}, nil
}

// eachLine calls fn with the colon-separated fields of each line of a file.
func eachLine(path string, fn func(fields []string)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("agent: reading %s: %w", path, err)
	}
	return nil
}

// uidProcs lists the live processes whose real, effective, saved or
// filesystem uid satisfies match, with the matching uid. Zombies are left
// out: they run nothing and hold nothing.
func uidProcs(match func(uint32) bool) (map[int]uint32, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]uint32{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if id, ok := procUID(pid, match); ok {
			procs[pid] = id
		}
	}
	return procs, nil
}

// procUID reads a process's uids from /proc; ok is false when none matches,
// when it is a zombie, or when it is gone.
func procUID(pid int, match func(uint32) bool) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	var found uint32
	ok := false
	for _, line := range strings.Split(string(b), "\n") {
		if v, isState := strings.CutPrefix(line, "State:"); isState {
			if s := strings.TrimSpace(v); strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X") {
				return 0, false
			}
		}
		if v, isUID := strings.CutPrefix(line, "Uid:"); isUID {
			for _, f := range strings.Fields(v) {
				if id, err := strconv.ParseUint(f, 10, 32); err == nil && match(uint32(id)) {
					found, ok = uint32(id), true
				}
			}
		}
	}
	return found, ok
}

func uidsRunning(match func(uint32) bool) ([]uint32, error) {
	procs, err := uidProcs(match)
	if err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	var ids []uint32
	for _, id := range procs {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// killUID kills every process running as uid id and waits until each has
// exited. A task's processes may have left its process group (setsid, a
// double fork), where the exec guard cannot reach them; its uid is what
// they cannot shed. A process that forks while this runs is caught by the
// next round.
func killUID(id uint32) error {
	match := func(u uint32) bool { return u == id }
	for range 100 {
		procs, err := uidProcs(match)
		if err != nil {
			return err
		}
		if len(procs) == 0 {
			return nil
		}
		for pid := range procs {
			if err := killAndWait(pid, match); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("processes of uid %d keep appearing after 100 rounds of killing", id)
}

// killAndWait kills one process and waits for it to exit, through a pidfd:
// once it is open the pid cannot name another process, and it becomes
// readable when the process exits.
func killAndWait(pid int, match func(uint32) bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// The pid may have been reused between the scan and the open.
	if _, ok := procUID(pid, match); !ok {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing %d: %w", pid, err)
	}
	// A process in uninterruptible sleep (stuck on I/O) dies when the I/O
	// ends; half a minute is far beyond anything healthy.
	deadline := time.Now().Add(30 * time.Second)
	for {
		wait := max(time.Until(deadline), 0)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(wait.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for %d to exit: %w", pid, err)
		}
		if n == 0 {
			return fmt.Errorf("process %d did not exit within 30s of SIGKILL", pid)
		}
		return nil
	}
}

// strayDirs are the world-writable directories where a task can leave
// files that outlive its own directory.
var strayDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// removeStrays removes what uid id left at the top of the world-writable
// directories, so a later holder of the uid does not find it. (Entries a
// task left deeper, in a world-writable directory of someone else's, stay:
// see docs/security.md.)
func removeStrays(id uint32, log *slog.Logger) {
	for _, dir := range strayDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			info, err := os.Lstat(p)
			if err != nil {
				continue
			}
			if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Uid != id {
				continue
			}
			// RemoveAll does not follow symlinks, and the sticky bit of
			// these directories keeps anyone else from swapping the entry.
			if err := os.RemoveAll(p); err != nil {
				log.Warn("could not remove a file an ended task left", slog.String("path", p), slog.Any("err", err))
			}
		}
	}
}
