package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// RunnerConfig configures RunTask.
type RunnerConfig struct {
	Server string
	// CA is the control plane's CA certificate (PEM) to trust; nil: the
	// system's roots.
	CA           []byte
	AttemptID    string
	Rank         int
	FencingToken string
	// Dir is where the task's directory is made; it must exist. On
	// Kubernetes it is a memory-backed emptyDir, so decrypted data never
	// reaches a disk.
	Dir string
	// MasterAddr and MasterPort, when set (MASTER_ADDR, MASTER_PORT in the
	// runner's environment), replace the assignment's rendezvous.
	MasterAddr string
	MasterPort int
	// Command, when not empty, runs instead of the job's own command.
	Command []string
	// Guard is the lode binary, used to run the command under
	// `lode exec-guard`; empty runs it directly.
	Guard string
	// SyncEvery is how often the checkpoint directory is looked at;
	// StopGrace is how long the command has between SIGTERM and SIGKILL.
	SyncEvery, StopGrace time.Duration
	// Stdout and Stderr get a copy of the command's output (nil: none).
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// ErrNotAssigned wraps the reasons a runner gets no task: the token is not
// the attempt's current one, the attempt is unknown, or its task has
// already started or been asked to stop.
var ErrNotAssigned = errors.New("no task to run")

// RunTask is `lode runner`: one task of an attempt, run with no agent
// around it. It presents the attempt's fencing token to fetch the task's
// assignment, then runs it with the very code an agent runs its tasks with:
// inputs decrypted into the task's directory, the command under exec-guard,
// output and metrics shipped, checkpoints committed, outputs uploaded, the
// end reported; every write fenced. The task's directory is removed before
// RunTask returns.
//
// When ctx ends the task is stopped as a drained agent stops its tasks:
// SIGTERM, StopGrace to write a last checkpoint, SIGKILL, the checkpoint
// committed and the stop reported. That is how a runner learns its attempt
// is over: on Kubernetes the driver deletes the pod.
//
// The error is nil once the task ran, however it ended (see TaskEnd); it
// wraps ErrNotAssigned when the server handed out no task.
func RunTask(ctx context.Context, cfg RunnerConfig) (TaskEnd, error) {
	c, err := client.New(cfg.Server, client.TrustCA(cfg.CA))
	if err != nil {
		return TaskEnd{}, err
	}
	if cfg.AttemptID == "" || cfg.FencingToken == "" || cfg.Rank < 0 || cfg.Dir == "" {
		return TaskEnd{}, errors.New("agent: a runner needs an attempt, its fencing token, a rank and a directory")
	}
	cfg.SyncEvery = cmp.Or(cfg.SyncEvery, time.Second)
	cfg.StopGrace = cmp.Or(cfg.StopGrace, 10*time.Second)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fence := store.Fence{AttemptID: cfg.AttemptID, Token: cfg.FencingToken}
	// Every request, the data it reads and writes included, authenticates
	// with the attempt's fencing token: a runner has no other credential.
	c = c.WithAttempt(cfg.AttemptID, cfg.FencingToken)
	as, err := fetchAssignment(ctx, c, fence, cfg.Rank, log)
	if err != nil {
		return TaskEnd{}, err
	}
	if as.Task.AttemptID != cfg.AttemptID || as.Task.Rank != cfg.Rank || as.Job == nil {
		return TaskEnd{}, fmt.Errorf("the server answered with task %s rank %d, not %s rank %d",
			as.Task.AttemptID, as.Task.Rank, cfg.AttemptID, cfg.Rank)
	}
	if len(cfg.Command) > 0 {
		as.Job.Spec.Command = cfg.Command
	}
	// Where ranks find rank 0 is the pod's to say (on Kubernetes, the
	// headless Service's name): the assignment knows only nodes.
	if cfg.MasterAddr != "" {
		as.MasterAddr = cfg.MasterAddr
	}
	if cfg.MasterPort != 0 {
		as.MasterPort = cfg.MasterPort
	}
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("%s-r%d", cfg.AttemptID, cfg.Rank))
	// A runner restarted in the same pod finds what its predecessor left:
	// decrypted data of a task it will prepare afresh.
	if err := os.RemoveAll(dir); err != nil {
		return TaskEnd{}, fmt.Errorf("task directory: %w", err)
	}
	t := newTaskOn(taskHost{
		dir: dir, guard: cfg.Guard, syncEvery: cfg.SyncEvery, stopGrace: cfg.StopGrace,
		stdout: cfg.Stdout, stderr: cfg.Stderr, log: log,
	}, c, *as, nil)
	// The task outlives ctx by its grace period, and by the time it takes
	// to commit its last checkpoint and report; a server that cannot be
	// reached then does not hold the runner up for ever.
	taskCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopWatch := context.AfterFunc(ctx, func() {
		// The task stops with its grace period and commits a last
		// checkpoint, but its end is not reported: the runner was stopped
		// from outside (a pod deleted, evicted, its node drained), and
		// whoever stopped it (the driver) says why the attempt ends,
		// where a killed report would cancel the job.
		t.stopUnreported("its runner was stopped (on Kubernetes: the pod was deleted)")
		time.AfterFunc(cfg.StopGrace+15*time.Second, cancel)
	})
	defer stopWatch()
	t.run(taskCtx)
	return t.end, nil
}

// fetchAssignment asks for the task until the server answers, waiting out
// a server that cannot be reached (starting, or restarting) until ctx ends.
func fetchAssignment(ctx context.Context, c *client.Client, f store.Fence, rank int, log *slog.Logger) (*wire.Assignment, error) {
	b := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for tries := 0; ; tries++ {
		as, err := c.Assignment(ctx, f, rank)
		switch {
		case err == nil:
			return as, nil
		case errors.Is(err, store.ErrFenced):
			return nil, fmt.Errorf("%w: the server refused the fencing token of attempt %s rank %d (%v)",
				ErrNotAssigned, f.AttemptID, rank, err)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), client.IsUnauthorized(err):
			return nil, fmt.Errorf("%w: attempt %s rank %d: %v", ErrNotAssigned, f.AttemptID, rank, err)
		case !errors.Is(err, client.ErrUnreachable):
			return nil, fmt.Errorf("fetching the assignment of attempt %s rank %d: %w", f.AttemptID, rank, err)
		}
		if tries == 0 {
			log.Warn("server unreachable; retrying", slog.Any("err", err))
		}
		if !wait.Sleep(ctx, b.next()) {
			return nil, fmt.Errorf("fetching the assignment of attempt %s rank %d: %w", f.AttemptID, rank, err)
		}
	}
}
