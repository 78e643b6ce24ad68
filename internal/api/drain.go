package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

func (s *Server) drainNode(w http.ResponseWriter, r *http.Request) error {
	return s.drain(w, r, r.PathValue("id"), false, "node drained by an operator")
}

func (s *Server) undrainNode(w http.ResponseWriter, r *http.Request) error {
	return s.drain(w, r, r.PathValue("id"), true, "")
}

// revokeNode makes a node useless at once: its lease is gone, its
// credential refused from the next request on, its tasks' attempts end and
// their jobs move elsewhere. Its agent can come back only by joining again
// with a pool's join token, as a new node.
func (s *Server) revokeNode(w http.ResponseWriter, r *http.Request) error {
	nodeID := r.PathValue("id")
	s.leases.Remove(nodeID)
	if err := s.cfg.Store.NodeLeave(r.Context(), &store.NodeLeaveParams{NodeID: nodeID, Now: s.cfg.Now().UTC()}); err != nil {
		if errors.Is(err, store.ErrNodeGone) {
			return errorf(http.StatusConflict, "conflict", "", "node %s is no longer up", nodeID)
		}
		return err
	}
	s.cfg.Logger.Warn("node revoked", "node", nodeID, "by", actor(r.Context()))
	s.record(r.Context(), audit.NodeRevoked, actor(r.Context()), nodeID, "", nil)
	s.leases.Notify()
	s.changes.broadcast()
	s.cfg.Scheduler.Wake()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// drainSelf is an agent draining its own node before it shuts down: its
// tasks stop with their grace period and move elsewhere.
func (s *Server) drainSelf(w http.ResponseWriter, r *http.Request) error {
	nodeID, err := s.node(r)
	if err != nil {
		return err
	}
	return s.drain(w, r, nodeID, false, "its agent is shutting down")
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request, nodeID string, undo bool, reason string) error {
	asked, err := s.cfg.Store.NodeDrain(r.Context(), &store.NodeDrainParams{NodeID: nodeID, Undo: undo, Reason: reason, Now: s.cfg.Now().UTC()})
	if errors.Is(err, store.ErrNodeGone) {
		return errorf(http.StatusConflict, "conflict", "", "node %s is no longer up", nodeID)
	}
	if err != nil {
		return err
	}
	s.leases.Notify(nodeID)
	s.record(r.Context(), audit.NodeDrained, actor(r.Context()), nodeID, "", map[string]string{"undo": strconv.FormatBool(undo), "reason": reason})
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusOK, wire.DrainReply{Stopping: nonNil(asked)})
}

// drainPool stops a pool taking work and asks every live attempt on it to
// stop, so its jobs move elsewhere from their last checkpoints.
func (s *Server) drainPool(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := s.cfg.Store.PoolGetByName(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	p.State, p.StateReason, p.StateChangedAt = store.PoolDraining, "drained by an operator", now
	if err := s.cfg.Store.PoolUpdate(ctx, p); err != nil {
		return err
	}
	asked, err := s.preemptPool(ctx, p.ID, "pool "+p.Name+" drained by an operator")
	if err != nil {
		return err
	}
	s.leases.Notify()
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusOK, wire.DrainReply{Stopping: nonNil(asked)})
}

// preemptPool asks every live attempt placed on a pool to stop.
func (s *Server) preemptPool(ctx context.Context, poolID, reason string) ([]string, error) {
	jobs, err := s.cfg.Store.JobList(ctx, &store.JobListParams{States: []core.JobState{core.JobPlaced, core.JobRunning}})
	if err != nil {
		return nil, err
	}
	var asked []string
	for _, j := range jobs {
		if j.CurrentAttempt == "" {
			continue
		}
		a, err := s.cfg.Store.AttemptGet(ctx, j.CurrentAttempt)
		if err != nil || a.PoolID != poolID || a.State.Terminal() {
			continue
		}
		err = s.cfg.Store.AttemptPreempt(ctx, &store.AttemptPreemptParams{AttemptID: a.ID, Reason: reason, Now: s.cfg.Now().UTC()})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		asked = append(asked, a.ID)
	}
	return asked, nil
}
