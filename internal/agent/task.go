package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// task runs one rank of an attempt on this node. An agent runs many, side
// by side; `lode runner` runs one with no agent around it (RunTask).
type task struct {
	host  taskHost
	c     *client.Client
	as    wire.Assignment
	fence store.Fence
	rank  int
	gpus  []int
	log   *slog.Logger

	dir, work, ckptDir, outDir, metricsFile string
	// cred is the task's own user, when it has one (see isolation); nil
	// runs it as the agent's user.
	cred *syscall.Credential
	// root is the task's directory, opened once it is made. What the agent
	// reads of the task's files for the server it reads through root: a
	// task may replace any of them with a symlink, and the agent, running as
	// root, must not follow one out of the task's own tree.
	root     *os.Root
	wipeOnce sync.Once
	// metricsPos is how far the metrics file has been shipped; only the
	// goroutine running execute touches it.
	metricsPos int64

	stopOnce   sync.Once
	stopCh     chan struct{}
	stopReason string
	report     bool
	// keepCheckpoint commits a last checkpoint after a stop whose end is
	// not reported (a runner stopped from outside).
	keepCheckpoint bool
	done           chan struct{}
	// end is how the task ended, set before done is closed; fenced is set
	// when the server refused a write because the attempt is no longer
	// current. Only the goroutine running run touches them.
	end    TaskEnd
	fenced bool
}

// taskHost is what a task needs from whatever runs it.
type taskHost struct {
	// dir is the task's own directory; it holds decrypted data and is
	// removed when the task ends.
	dir string
	// iso says as whom tasks run and how their directories are made.
	iso   *isolation
	guard string
	// pinGPUs sets CUDA_VISIBLE_DEVICES to the task's GPUs, which hides
	// the node's other GPUs (an agent shares its node between tasks). A
	// runner leaves the variable as its container was given it.
	pinGPUs              bool
	syncEvery, stopGrace time.Duration
	// stdout and stderr, when set, get a copy of the command's output as it
	// is shipped: a runner's own output is what `kubectl logs` shows.
	stdout, stderr io.Writer
	log            *slog.Logger
}

func newTask(a *Agent, c *client.Client, as wire.Assignment, gpus []int) *task {
	iso := a.iso
	if iso == nil {
		iso = &isolation{root: filepath.Join(a.cfg.Dir, "tasks")}
	}
	return newTaskOn(taskHost{
		dir: filepath.Join(iso.root, fmt.Sprintf("%s-r%d", as.Task.AttemptID, as.Task.Rank)), iso: iso,
		guard: a.cfg.Guard, pinGPUs: len(a.cfg.GPUs) > 0,
		syncEvery: a.cfg.SyncEvery, stopGrace: a.cfg.StopGrace, log: a.log,
	}, c, as, gpus)
}

func newTaskOn(h taskHost, c *client.Client, as wire.Assignment, gpus []int) *task {
	if h.iso == nil {
		h.iso = &isolation{}
	}
	return &task{
		host: h, c: c, as: as, gpus: gpus, rank: as.Task.Rank, dir: h.dir,
		fence:  store.Fence{AttemptID: as.Task.AttemptID, Token: as.FencingToken},
		log:    h.log.With(slog.String("job", as.Job.ID), slog.String("attempt", as.Task.AttemptID), slog.Int("rank", as.Task.Rank)),
		stopCh: make(chan struct{}), done: make(chan struct{}),
	}
}

// TaskEnd is how a task ended: its state, exit code and why. Reported says
// whether the server took the report; a task whose attempt is no longer
// current (Fenced) reports nothing.
type TaskEnd struct {
	State    core.TaskState
	ExitCode int
	Message  string
	Fenced   bool
	Reported bool
}

// stop asks the task to end; report says whether to tell the server it was
// killed (not when the server already considers it gone).
func (t *task) stop(reason string, report bool) {
	t.stopOnce.Do(func() {
		t.stopReason, t.report = reason, report
		close(t.stopCh)
	})
}

// stopUnreported stops the task with its grace period and commits its last
// checkpoint, but leaves reporting its end to whoever stopped it.
func (t *task) stopUnreported(reason string) {
	t.stopOnce.Do(func() {
		t.stopReason, t.keepCheckpoint = reason, true
		close(t.stopCh)
	})
}

// errFenced ends a task whose attempt is no longer current: it must write
// nothing more.
var errFenced = errors.New("attempt is no longer current")

// run prepares the task's directory, runs its command and reports how it
// ended. Whatever happens, the task's directory (which holds decrypted data)
// is wiped before run returns, and before the end is reported (see wipe).
func (t *task) run(ctx context.Context) {
	defer close(t.done)
	defer t.wipe()
	t.log.Info("task starting", slog.String("name", t.as.Job.Name))
	if err := t.makeDir(); err != nil {
		t.log.Error("task directory could not be made", slog.Any("err", err))
		t.shipLine(ctx, store.Stderr, fmt.Sprintf("lode: cannot make the task's directory on this node: %v\n", err))
		t.finish(ctx, core.TaskExited, 1, "prepare: "+err.Error())
		return
	}
	// A server that cannot be reached (restarting, or cut off for a
	// while) is no fault of the task's: the steps below that need it wait
	// for it rather than fail the task.
	err := t.untilReachable(ctx, "preparing the task", func() error { return t.fullHint(t.prepare(ctx)) })
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, errFenced) {
			t.end = TaskEnd{State: core.TaskKilled, ExitCode: -1, Message: "not started: " + err.Error(), Fenced: errors.Is(err, errFenced)}
			return
		}
		if t.stopping() {
			t.finish(ctx, core.TaskKilled, -1, t.stopReason)
			return
		}
		t.log.Error("task could not be prepared", slog.Any("err", err))
		t.shipLine(ctx, store.Stderr, fmt.Sprintf("lode: cannot prepare the task: %v\n", err))
		t.finish(ctx, core.TaskExited, 1, "prepare: "+err.Error())
		return
	}
	if t.stopping() {
		t.finish(ctx, core.TaskKilled, -1, t.stopReason)
		return
	}
	// The report may reach the server even when its answer is lost; it is
	// repeated until one comes back, as the server takes a repeat as a
	// no-op. Giving up after a lost answer would leave a task the server
	// believes running and no process behind it.
	err = t.untilReachable(ctx, "reporting the task running", func() error {
		return t.c.TaskStatus(ctx, t.fence, t.rank, &wire.TaskStatus{State: core.TaskRunning})
	})
	if err != nil {
		t.log.Warn("could not report the task running; not starting it", slog.Any("err", err))
		t.end = TaskEnd{State: core.TaskKilled, ExitCode: -1, Message: "not started: could not report it running: " + err.Error(),
			Fenced: errors.Is(err, store.ErrFenced)}
		return
	}
	code, msg, state := t.execute(ctx)
	t.finish(ctx, state, code, msg)
}

// stopping reports whether the task was asked to stop.
func (t *task) stopping() bool {
	select {
	case <-t.stopCh:
		return true
	default:
		return false
	}
}

// untilReachable calls fn until it returns anything but a failure to reach
// the server, backing off between calls, and returns its last error. It
// gives up when ctx ends or the task is asked to stop.
func (t *task) untilReachable(ctx context.Context, what string, fn func() error) error {
	b := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for tries := 0; ; tries++ {
		err := fn()
		if err == nil || !errors.Is(err, client.ErrUnreachable) {
			return err
		}
		if tries == 0 {
			t.log.Warn(what+": server unreachable; retrying", slog.Any("err", err))
		}
		wait := time.NewTimer(b.next())
		select {
		case <-ctx.Done():
			wait.Stop()
			return err
		case <-t.stopCh:
			wait.Stop()
			return err
		case <-wait.C:
		}
	}
}

// finish reports the task's end, retrying while the server is unreachable.
// The task's directory is wiped first: once the server has a task's end,
// nothing of it is left on the node.
func (t *task) finish(ctx context.Context, state core.TaskState, code int, msg string) {
	t.wipe()
	t.end = TaskEnd{State: state, ExitCode: code, Message: msg, Fenced: t.fenced}
	if state == core.TaskKilled && !t.report {
		return
	}
	st := &wire.TaskStatus{State: state, ExitCode: code, Message: msg}
	b := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		err := t.c.TaskStatus(ctx, t.fence, t.rank, st)
		if err == nil || !errors.Is(err, client.ErrUnreachable) {
			if err != nil && !errors.Is(err, store.ErrFenced) {
				t.log.Error("could not report the task's end", slog.Any("err", err))
			}
			t.end.Reported = err == nil
			t.end.Fenced = t.end.Fenced || errors.Is(err, store.ErrFenced)
			t.log.Info("task ended", slog.String("state", string(state)), slog.Int("exit_code", code))
			return
		}
		if !wait.Sleep(ctx, b.next()) {
			return
		}
	}
}

// resolve maps a path of the spec to a path on this node: relative paths
// are inside the working directory, absolute ones inside the task's own
// filesystem root (the process runtime has no mount namespace).
func (t *task) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Join(t.dir, "fs", filepath.Clean(p))
	}
	return filepath.Join(t.work, filepath.Clean(p))
}

// sealer returns the sealer of an object the task was granted.
func (t *task) sealer(objectID string) (*data.Sealer, error) {
	key, ok := t.as.Keys[objectID]
	if !ok {
		return nil, fmt.Errorf("no key granted for object %s", objectID)
	}
	return data.NewSealer(objectID, key)
}

// makeDir gives the task its user, when the agent isolates its tasks, and
// makes its private directory.
func (t *task) makeDir() error {
	if uids := t.host.iso.uids; uids != nil {
		id, err := uids.take()
		if err != nil {
			return err
		}
		t.cred = &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}
	}
	if err := t.host.iso.makeDir(t.dir, t.cred, t.as.Task.Resources.MemoryBytes); err != nil {
		return err
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return err
	}
	t.root = root
	return nil
}

// wipe ends whatever the task left running as its user, removes its
// directory (unmounting its tmpfs) and gives its user back. It runs once.
func (t *task) wipe() {
	t.wipeOnce.Do(func() {
		if t.root != nil {
			t.root.Close()
		}
		if t.cred != nil {
			// A process still in the tmpfs would keep it mounted.
			if err := killUID(t.cred.Uid); err != nil {
				t.log.Error("could not kill what the task left running", slog.Any("err", err))
			}
		}
		if err := t.host.iso.wipeDir(t.dir); err != nil {
			// What is left may hold decrypted data and belongs to the
			// task's uid: the uid stays taken, so no later task gets it
			// (an agent's next start cleans it up).
			t.log.Error("could not remove task directory; its user is not given to another task", slog.String("dir", t.dir), slog.Any("err", err))
		} else if t.cred != nil {
			t.host.iso.uids.give(t.cred.Uid)
		}
	})
}

// prepare fills the task's directories: working directory, datasets, and
// the newest checkpoint. It runs as the agent; at its end, a task with a
// user of its own is given everything in its directory.
func (t *task) prepare(ctx context.Context) error {
	t.work = filepath.Join(t.dir, "work")
	if err := os.MkdirAll(t.work, 0o700); err != nil {
		return err
	}
	job := t.as.Job
	if job.WorkdirObject != "" {
		s, err := t.sealer(job.WorkdirObject)
		if err != nil {
			return err
		}
		if _, err := data.Pull(ctx, t.c, s, job.WorkdirObject, job.WorkdirManifest, t.work, nil); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	for _, d := range job.Datasets {
		s, err := t.sealer(d.ObjectID)
		if err != nil {
			return err
		}
		dst := t.resolve(d.Mount)
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return err
		}
		if _, err := data.Pull(ctx, t.c, s, d.ObjectID, d.Manifest, dst, nil); err != nil {
			return fmt.Errorf("dataset %s v%d: %w", d.Name, d.Version, err)
		}
	}
	t.ckptDir = filepath.Join(t.dir, "ckpt")
	if job.Spec.Checkpoint != nil {
		t.ckptDir = t.resolve(job.Spec.Checkpoint.Path)
	}
	t.outDir = filepath.Join(t.dir, "out")
	if job.Spec.Outputs != "" {
		t.outDir = t.resolve(job.Spec.Outputs)
	}
	for _, d := range []string{t.ckptDir, t.outDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	t.metricsFile = filepath.Join(t.dir, "metrics.jsonl")
	if ck := t.as.Checkpoint; ck != nil {
		s, err := t.sealer(job.DataObject)
		if err != nil {
			return err
		}
		if _, err := data.Pull(ctx, t.c, s, job.DataObject, ck.Manifest, t.ckptDir, nil); err != nil {
			return fmt.Errorf("checkpoint v%d: %w", ck.Version, err)
		}
		t.log.Info("restored checkpoint", slog.Int("version", ck.Version), slog.Int("files", ck.Files))
	}
	if t.cred == nil {
		return nil
	}
	for _, d := range []string{filepath.Join(t.dir, "home"), filepath.Join(t.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return handOver(t.dir, t.cred)
}

// fullHint explains a full task directory: its tmpfs is bounded by the
// memory the task asked for.
func (t *task) fullHint(err error) error {
	if errors.Is(err, syscall.ENOSPC) && t.host.iso.tmpfs {
		return fmt.Errorf("%w (the task's directory is in memory, as large as the memory the job asks for: ask for more with resources.memory)", err)
	}
	return err
}

// env is the task's environment: the agent's own, then Lode's variables,
// then the spec's.
func (t *task) env() []string {
	job := t.as.Job
	nodes := max(job.Spec.Nodes, 1)
	vars := map[string]string{
		"LODE_JOB_ID":         job.ID,
		"LODE_JOB_NAME":       job.Name,
		"LODE_PROJECT":        job.Project,
		"LODE_ATTEMPT":        strconv.Itoa(t.as.Job.Attempts), // the current attempt's number
		"LODE_ATTEMPT_ID":     t.fence.AttemptID,
		"LODE_CHECKPOINT_DIR": t.ckptDir,
		"LODE_OUTPUT_DIR":     t.outDir,
		"LODE_METRICS_FILE":   t.metricsFile,
		"LODE_WORKDIR":        t.work,
		"WORLD_SIZE":          strconv.Itoa(nodes),
		"RANK":                strconv.Itoa(t.rank),
		"NODE_RANK":           strconv.Itoa(t.rank),
		"LOCAL_RANK":          "0",
		"LOCAL_WORLD_SIZE":    "1",
		"MASTER_ADDR":         t.as.MasterAddr,
		"MASTER_PORT":         strconv.Itoa(t.as.MasterPort),
		"PWD":                 t.work,
	}
	for _, d := range job.Datasets {
		vars["LODE_DATASET_"+envName(d.Name)] = t.resolve(d.Mount)
	}
	if t.cred != nil {
		t.privateHome(vars)
	}
	if t.host.pinGPUs {
		ids := make([]string, len(t.gpus))
		for i, g := range t.gpus {
			ids[i] = strconv.Itoa(g)
		}
		vars["CUDA_VISIBLE_DEVICES"] = strings.Join(ids, ",")
	}
	for k, v := range job.Spec.Env {
		vars[k] = v
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := vars[k]; !ours && !strings.HasPrefix(k, "LODE_") {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// privateHome points a task with a user of its own at a home, a temporary
// directory and caches inside its private directory: its user has no home,
// and the agent's are not the task's to read or to share with other tenants.
// Go's and other tools' caches follow HOME and XDG_CACHE_HOME; what the job's
// env sets is kept, and what follows from it follows.
func (t *task) privateHome(vars map[string]string) {
	spec := t.as.Job.Spec.Env
	set := func(k, v string) string {
		if s, ok := spec[k]; ok {
			return s
		}
		vars[k] = v
		return v
	}
	home := set("HOME", filepath.Join(t.dir, "home"))
	set("TMPDIR", filepath.Join(t.dir, "tmp"))
	cache := set("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	set("GOCACHE", filepath.Join(cache, "go-build"))
	gopath := set("GOPATH", filepath.Join(home, "go"))
	set("GOMODCACHE", filepath.Join(gopath, "pkg", "mod"))
	// The user has no name in /etc/passwd; tools that ask the environment
	// first (Python's getpass) get one instead of the agent's.
	name := fmt.Sprintf("lode-task-%d", t.cred.Uid)
	set("USER", name)
	set("LOGNAME", name)
}

// envName turns a dataset name into the tail of an environment variable.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// execute runs the command and watches it: output and metrics are shipped,
// the checkpoint directory is synced when it changes, and a stop request
// terminates it. It returns the exit code, a message and the task's end state.
func (t *task) execute(ctx context.Context) (int, string, core.TaskState) {
	job := t.as.Job
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return -1, err.Error(), core.TaskExited
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return -1, err.Error(), core.TaskExited
	}
	proc, err := startProcess(t.host.guard, job.Spec.Command, t.work, t.env(), stdoutW, stderrW, t.cred)
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdoutR.Close()
		stderrR.Close()
		msg := fmt.Sprintf("cannot start %s: %v", job.Spec.Command[0], err)
		t.shipLine(ctx, store.Stderr, "lode: "+msg+"\n")
		return 127, msg, core.TaskExited
	}
	// The shippers run until the pipes close, which is when the process
	// (and with the guard, every process it started) has exited.
	fenced := make(chan struct{})
	var fenceOnce sync.Once
	onFenced := func() { fenceOnce.Do(func() { close(fenced) }) }
	shipCtx, cancelShip := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelShip()
	var shipping sync.WaitGroup
	shipping.Add(2)
	go func() { defer shipping.Done(); t.shipOutput(shipCtx, store.Stdout, stdoutR, t.host.stdout, onFenced) }()
	go func() { defer shipping.Done(); t.shipOutput(shipCtx, store.Stderr, stderrR, t.host.stderr, onFenced) }()

	exited := make(chan struct{})
	var code int
	var waitErr error
	go func() {
		code, waitErr = proc.wait()
		close(exited)
	}()

	sync := newSyncer(t)
	tick := time.NewTicker(t.host.syncEvery)
	defer tick.Stop()
	state, msg := core.TaskExited, ""
	stopping := false
	for running := true; running; {
		select {
		case <-exited:
			running = false
		case <-tick.C:
			t.shipMetrics(ctx, onFenced)
			if t.rank == 0 {
				if err := sync.checkpoint(ctx); errors.Is(err, errFenced) {
					onFenced()
				} else if err != nil {
					t.log.Warn("checkpoint sync failed; will retry", slog.Any("err", err))
				}
			}
		case <-fenced:
			if !stopping {
				t.log.Warn("attempt is no longer current; killing the task")
				proc.kill()
				stopping, state, msg = true, core.TaskKilled, "fenced"
				t.report = false
			}
		case <-t.stopCh:
			if !stopping {
				t.log.Info("stopping task", slog.String("reason", t.stopReason))
				proc.terminate()
				stopping, state, msg = true, core.TaskKilled, t.stopReason
				go func() {
					select {
					case <-exited:
					case <-time.After(t.host.stopGrace):
						proc.kill()
					}
				}()
			}
		case <-ctx.Done():
			if !stopping {
				proc.kill()
				stopping, state, msg = true, core.TaskKilled, "agent stopped"
			}
		}
	}
	if t.cred != nil {
		// What the task started outside its process group (setsid, a
		// double fork) escaped the guard, and may hold the output pipes
		// open; it cannot escape its user.
		if err := killUID(t.cred.Uid); err != nil {
			t.log.Error("could not kill what the task left running", slog.Any("err", err))
		}
	}
	shipping.Wait()
	if waitErr != nil {
		msg = waitErr.Error()
	}
	select {
	case <-fenced:
		t.fenced = true
		return code, "fenced", core.TaskKilled
	default:
	}
	t.shipMetrics(ctx, onFenced)
	if state == core.TaskKilled && (t.report || t.keepCheckpoint) && t.rank == 0 {
		// A graceful stop (preemption, drain, cancel): the task had its
		// grace period to write a last checkpoint; keep it.
		if err := sync.checkpoint(ctx); err != nil {
			t.log.Warn("checkpoint sync after stop failed", slog.Any("err", err))
		}
	}
	if state == core.TaskExited && t.rank == 0 {
		// The last checkpoint and the outputs go up before the exit is
		// reported, so a succeeded job always has them. A server that is
		// down for a moment must not turn a finished task into a failed
		// one: they wait for it.
		if err := t.untilReachable(ctx, "final checkpoint sync", func() error { return sync.checkpoint(ctx) }); err != nil {
			t.log.Error("final checkpoint sync failed", slog.Any("err", err))
		}
		if err := t.untilReachable(ctx, "uploading outputs", func() error { return t.uploadOutputs(ctx) }); err != nil {
			t.log.Error("output upload failed", slog.Any("err", err))
			t.shipLine(ctx, store.Stderr, fmt.Sprintf("lode: uploading outputs failed: %v\n", err))
			if code == 0 {
				code, msg = 1, "outputs could not be uploaded: "+err.Error()
			}
		}
	}
	return code, msg, state
}

// shipOutput forwards one output stream in pieces of at most 64 KiB, sent
// at least every 200 ms while output flows, and copies it to echo (when
// not nil) as it comes.
func (t *task) shipOutput(ctx context.Context, stream store.LogStream, r io.ReadCloser, echo io.Writer, onFenced func()) {
	defer r.Close()
	lines := make(chan []byte, 64)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				if echo != nil {
					_, _ = echo.Write(line)
				}
				lines <- bytes.Clone(line)
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
	}()
	var buf []byte
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if err := t.sendLog(ctx, stream, buf); errors.Is(err, errFenced) {
			onFenced()
		}
		buf = nil
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				flush()
				return
			}
			buf = append(buf, line...)
			if len(buf) >= 64<<10 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// sendLog sends output, retrying while the server is unreachable.
func (t *task) sendLog(ctx context.Context, stream store.LogStream, b []byte) error {
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for attempt := 0; ; attempt++ {
		err := t.c.TaskLog(ctx, t.fence, t.rank, &wire.TaskLog{Stream: stream, Data: b})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrFenced):
			return errFenced
		case errors.Is(err, client.ErrUnreachable) && attempt < 20:
			if !wait.Sleep(ctx, bo.next()) {
				return ctx.Err()
			}
		default:
			t.log.Warn("task output dropped", slog.Int("bytes", len(b)), slog.Any("err", err))
			return err
		}
	}
}

// shipLine sends one line of Lode's own to the task's output.
func (t *task) shipLine(ctx context.Context, stream store.LogStream, line string) {
	_ = t.sendLog(ctx, stream, []byte(line))
}

// shipMetrics sends the complete lines appended to the metrics file since
// the last call. Lines that are not JSON objects are skipped with a warning
// in the task's output.
func (t *task) shipMetrics(ctx context.Context, onFenced func()) {
	if t.root == nil {
		return
	}
	f, err := t.root.Open(filepath.Base(t.metricsFile))
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(t.metricsPos, io.SeekStart); err != nil {
		return
	}
	b, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return
	}
	var lines []json.RawMessage
	for _, l := range bytes.Split(b[:end], []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		var obj map[string]any
		if json.Unmarshal(l, &obj) != nil {
			t.shipLine(ctx, store.Stderr, fmt.Sprintf("lode: skipped a metrics line that is not a JSON object: %.80q\n", l))
			continue
		}
		lines = append(lines, json.RawMessage(bytes.Clone(l)))
	}
	if len(lines) > 0 {
		err := t.c.TaskMetrics(ctx, t.fence, t.rank, &wire.TaskMetrics{Lines: lines})
		if errors.Is(err, store.ErrFenced) {
			onFenced()
			return
		}
		if err != nil {
			return // sent again next time
		}
	}
	t.metricsPos += int64(end + 1)
}

// uploadOutputs pushes the output directory and commits it, when it holds
// anything.
func (t *task) uploadOutputs(ctx context.Context) error {
	empty, err := dirEmpty(t.outDir)
	if err != nil || empty {
		return err
	}
	job := t.as.Job
	s, err := t.sealer(job.DataObject)
	if err != nil {
		return err
	}
	dir, closeDir, err := t.inside(t.outDir)
	if err != nil {
		return err
	}
	defer closeDir()
	res, err := data.Push(ctx, t.c, s, job.DataObject, dir, nil)
	if err != nil {
		return unalias(err, dir, t.outDir)
	}
	_, err = t.c.CommitArtifact(ctx, t.fence, &wire.Commit{Manifest: res.Manifest, Files: res.Files, Bytes: res.Bytes})
	if errors.Is(err, store.ErrFenced) {
		return errFenced
	}
	if err == nil {
		t.log.Info("outputs uploaded", slog.Int("files", res.Files), slog.Int64("bytes", res.Bytes))
	}
	return err
}

// inside opens dir, a directory of the task's tree, through the task's root,
// so that no symlink the task planted on the way leads out of its tree, and
// returns a name for the very directory opened, for code that takes a path.
// The name stays good until done is called.
func (t *task) inside(dir string) (name string, done func(), err error) {
	rel, err := filepath.Rel(t.dir, dir)
	if err != nil || !filepath.IsLocal(rel) {
		return "", nil, fmt.Errorf("%s is not inside the task's directory", dir)
	}
	if t.root == nil {
		return "", nil, errors.New("the task's directory is not open")
	}
	f, err := t.root.Open(rel)
	if err != nil {
		return "", nil, err
	}
	if info, err := f.Stat(); err != nil || !info.IsDir() {
		f.Close()
		return "", nil, fmt.Errorf("%s is not a directory", rel)
	}
	// The kernel resolves /proc/self/fd/N to the open directory itself,
	// without walking its path again.
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), func() { f.Close() }, nil
}

// unalias names dir where err names alias, the name inside gave for it: a
// message about /proc/self/fd/N would tell a reader nothing.
func unalias(err error, alias, dir string) error {
	return &aliasError{err: err, alias: alias, dir: dir}
}

type aliasError struct {
	err        error
	alias, dir string
}

func (e *aliasError) Error() string { return strings.ReplaceAll(e.err.Error(), e.alias, e.dir) }
func (e *aliasError) Unwrap() error { return e.err }

func dirEmpty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return len(entries) == 0, err
}

// syncer uploads the checkpoint directory as a new version when it changed.
// A trainer may be writing a checkpoint at any moment, so a version is only
// taken of a directory that did not change while it was read: a file caught
// half-written is never committed. (A trainer that writes each checkpoint to
// a temporary name and renames it, as it should, then never shows a torn
// file; one it had not renamed yet is ignored when it resumes.)
type syncer struct {
	t *task
	// pushed is the directory as last committed.
	pushed       string
	lastManifest string
}

func newSyncer(t *task) *syncer {
	s := &syncer{t: t}
	if ck := t.as.Checkpoint; ck != nil {
		s.lastManifest = ck.Manifest
		s.pushed, _ = fingerprint(t.ckptDir)
	}
	return s
}

// fingerprint summarizes a directory by names, sizes and modification times:
// cheap to compute, and it changes whenever a trainer writes a checkpoint.
func fingerprint(dir string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\x00%v\n", p, info.Size(), info.ModTime().UnixNano(), info.Mode())
		return nil
	})
	return b.String(), err
}

// checkpoint commits the directory as a new version if it changed since the
// last one.
func (s *syncer) checkpoint(ctx context.Context) error {
	t := s.t
	before, err := fingerprint(t.ckptDir)
	if err != nil || before == s.pushed {
		return nil // unchanged, or changing under us: look again next time
	}
	if empty, _ := dirEmpty(t.ckptDir); empty {
		return nil
	}
	job := t.as.Job
	sealer, err := t.sealer(job.DataObject)
	if err != nil {
		return err
	}
	dir, closeDir, err := t.inside(t.ckptDir)
	if err != nil {
		return err
	}
	defer closeDir()
	res, err := data.Push(ctx, t.c, sealer, job.DataObject, dir, nil)
	if err != nil {
		return unalias(err, dir, t.ckptDir)
	}
	if after, err := fingerprint(t.ckptDir); err != nil || after != before {
		return nil // written to while it was read: not a version; next time
	}
	s.pushed = before
	if res.Manifest == s.lastManifest {
		return nil
	}
	ck, err := t.c.CommitCheckpoint(ctx, t.fence, &wire.Commit{Manifest: res.Manifest, Files: res.Files, Bytes: res.Bytes})
	if errors.Is(err, store.ErrFenced) {
		return errFenced
	}
	if err != nil {
		return err
	}
	s.lastManifest = res.Manifest
	t.log.Info("checkpoint committed", slog.Int("version", ck.Version), slog.Int("files", res.Files),
		slog.Int64("bytes", res.Bytes), slog.Int64("uploaded", res.Uploaded))
	return nil
}
