package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// A runner (`lode runner`, the main container of a Kubernetes pod) runs one
// task of an attempt with no agent around it, so it holds no node
// credential: the attempt's fencing token is all it has. The token is a
// 128-bit secret handed only to that attempt's workers, and every write it
// authorizes is re-checked against the attempt's current token in the same
// store transaction as the write, so it is credential enough for that
// attempt's own writes (and for nothing else).

// taskCaller authenticates a write for a task. A request that names a node
// or carries a bearer credential is an agent's and is checked exactly as
// before; one with neither must carry a fencing token, which the store then
// checks as it makes the write. Checking it here as well would cost a read
// per log line and decide nothing the store does not.
func (s *Server) taskCaller(r *http.Request) error {
	if r.Header.Get(wire.HeaderNode) != "" || r.Header.Get("Authorization") != "" {
		_, err := s.node(r)
		return err
	}
	if r.Header.Get(wire.HeaderFence) == "" {
		return errorf(http.StatusUnauthorized, "unauthorized",
			"an agent sends its node's credential; a runner sends the attempt's fencing token in the "+wire.HeaderFence+" header",
			"no credential: neither a node's nor an attempt's fencing token")
	}
	return nil
}

// runnerAssignment hands a task to the worker that presents its attempt's
// current fencing token: the same assignment an agent finds in a heartbeat
// reply's Start list (job, data keys, checkpoint to restore, rendezvous),
// with the key grant recorded in the audit log as for an agent. It is
// handed out while the task waits to start; a task that started, ended or
// was asked to stop is not handed out again, so a rank runs once per
// attempt.
func (s *Server) runnerAssignment(w http.ResponseWriter, r *http.Request) error {
	f, rank, err := s.fence(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	a, err := s.cfg.Store.AttemptGet(ctx, f.AttemptID)
	if err != nil {
		return err // an unknown attempt is 404: there is no current token to compare with
	}
	if subtle.ConstantTimeCompare([]byte(a.FencingToken), []byte(f.Token)) != 1 {
		return fmt.Errorf("attempt %s: wrong fencing token: %w", a.ID, store.ErrFenced)
	}
	if a.State.Terminal() {
		return fmt.Errorf("attempt %s has ended %s: %w", a.ID, a.State, store.ErrFenced)
	}
	var task *store.Task
	for _, t := range a.Tasks {
		if t.Rank == rank {
			task = t
		}
	}
	if task == nil {
		return errorf(http.StatusNotFound, "not_found", "", "attempt %s has no rank %d (it has %d)", a.ID, rank, len(a.Tasks))
	}
	// The node's list is where the store assembles what a worker needs
	// (job, token, every rank's node), and it holds only live tasks.
	live, err := s.cfg.Store.TaskListByNode(ctx, task.NodeID)
	if err != nil {
		return err
	}
	var as *store.Assignment
	for _, l := range live {
		if l.Task.AttemptID == a.ID && l.Task.Rank == rank {
			as = l
		}
	}
	switch {
	case as == nil || as.Job.CurrentAttempt != a.ID:
		return fmt.Errorf("attempt %s rank %d is no longer live: %w", a.ID, rank, store.ErrFenced)
	case as.Job.CancelRequested:
		return errorf(http.StatusConflict, "conflict", "do not start it", "job %s was cancelled", as.Job.ID)
	case as.Preempting:
		return errorf(http.StatusConflict, "conflict", "do not start it; the job resumes elsewhere from its checkpoint",
			"attempt %s was asked to stop (preemption or drain)", a.ID)
	case as.Task.State != core.TaskAssigned && as.Task.State != core.TaskRunning:
		// Running is fine: on Kubernetes the driver may report the pod
		// running before its runner asks. A pod is not restarted
		// (restartPolicy Never), so a rank still runs once per attempt.
		return errorf(http.StatusConflict, "conflict", "a rank runs once per attempt; a new attempt gets a new token",
			"attempt %s rank %d has already ended (it is %s)", a.ID, rank, as.Task.State)
	}
	out, err := s.assignment(ctx, as)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
