package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/control"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

func (s *Server) listPools(w http.ResponseWriter, r *http.Request) error {
	pools, err := s.cfg.Store.PoolList(r.Context())
	if err != nil {
		return err
	}
	nodes, err := s.cfg.Store.NodeList(r.Context(), &store.NodeListParams{})
	if err != nil {
		return err
	}
	scores, err := control.Assess(r.Context(), s.cfg.Store, s.cfg.Now().UTC(), s.cfg.Reliability)
	if err != nil {
		return err
	}
	out := wire.PoolList{Pools: []wire.PoolInfo{}}
	for _, p := range pools {
		info := wire.PoolInfo{Pool: *p, Reliability: scores[p.ID]}
		for _, n := range nodes {
			if n.PoolID != p.ID {
				continue
			}
			info.Nodes++
			if n.State == store.NodeReady {
				info.ReadyNodes++
				info.GPUs += len(n.GPUs)
			}
		}
		out.Pools = append(out.Pools, info)
	}
	return writeJSON(w, http.StatusOK, out)
}

// newJoinToken makes a join token for a pool: its secret is in the answer
// only; the store keeps its hash.
func (s *Server) newJoinToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.NewJoinToken
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := s.cfg.Store.PoolGetByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if p.Driver != "agent" {
		return errorf(http.StatusConflict, "conflict", "", "pool %s is driven by the server (%s); it takes no agents", p.Name, p.Driver)
	}
	life := time.Duration(req.ExpiresInS) * time.Second
	if req.ExpiresInS < 0 || life > maxTokenLife {
		return badRequest("", "expires_in_s must be between 0 (never) and %d", int64(maxTokenLife.Seconds()))
	}
	secret := core.NewSecret()
	now := s.cfg.Now().UTC()
	t := &store.JoinToken{ID: core.NewID("jt"), PoolID: p.ID, Hash: credentialHash(secret), CreatedAt: now}
	if life > 0 {
		t.ExpiresAt = now.Add(life)
	}
	if err := s.cfg.Store.JoinTokenCreate(r.Context(), t); err != nil {
		return err
	}
	s.record(r.Context(), audit.JoinTokenCreated, actor(r.Context()), t.ID, "", map[string]string{"pool": p.Name})
	return writeJSON(w, http.StatusCreated, wire.JoinToken{JoinToken: *t, Pool: p.Name, Token: secret,
		Command: JoinCommand(s.cfg.PublicURL, secret, s.caHash())})
}

func (s *Server) listJoinTokens(w http.ResponseWriter, r *http.Request) error {
	p, err := s.cfg.Store.PoolGetByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	ts, err := s.cfg.Store.JoinTokenList(r.Context(), p.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.JoinTokenList{Tokens: nonNil(ts)})
}

func (s *Server) revokeJoinToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.cfg.Store.JoinTokenRevoke(r.Context(), id, s.cfg.Now().UTC()); err != nil {
		return err
	}
	s.record(r.Context(), audit.JoinTokenRevoked, actor(r.Context()), id, "", nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// poolOfJoinToken finds the pool a join token admits to: a token of the
// store's, or one the server made for an agent of its own process. When
// none admits, it says why.
func (s *Server) poolOfJoinToken(ctx context.Context, token string) (*store.Pool, string, error) {
	if token == "" {
		return nil, "is empty", nil
	}
	hash := credentialHash(token)
	s.internalMu.Lock()
	poolID, internal := s.internal[hash]
	s.internalMu.Unlock()
	if !internal {
		t, err := s.cfg.Store.JoinTokenByHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, "is not valid for any pool", nil
		}
		if err != nil {
			return nil, "", err
		}
		if !t.Valid(s.cfg.Now()) {
			return nil, fmt.Sprintf("%s has expired or was revoked", t.ID), nil
		}
		poolID = t.PoolID
	}
	p, err := s.cfg.Store.PoolGet(ctx, poolID)
	return p, "", err
}

// InternalJoinToken makes a join token for an agent that runs in the
// server's own process (the local pool's, a Kubernetes pool's virtual
// agents): it is kept in memory only and ends with the process.
func (s *Server) InternalJoinToken(poolID string) string {
	secret := core.NewSecret()
	s.internalMu.Lock()
	defer s.internalMu.Unlock()
	s.internal[credentialHash(secret)] = poolID
	return secret
}

// JoinCommand is the command that starts an agent for a pool; caHash, the
// fingerprint of the control plane's CA, lets the agent trust it.
func JoinCommand(serverURL, token, caHash string) string {
	cmd := fmt.Sprintf("lode agent --server %s --join-token %s", serverURL, token)
	if caHash != "" {
		cmd += " --ca-hash " + caHash
	}
	return cmd
}

func (s *Server) caHash() string {
	if s.cfg.Authority == nil {
		return ""
	}
	return s.cfg.Authority.Fingerprint()
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := &store.NodeListParams{State: store.NodeState(q.Get("state"))}
	if name := q.Get("pool"); name != "" {
		pool, err := s.cfg.Store.PoolGetByName(r.Context(), name)
		if err != nil {
			return err
		}
		p.PoolID = pool.ID
	}
	nodes, err := s.cfg.Store.NodeList(r.Context(), p)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		// Heartbeats renew leases in memory; the book knows the latest.
		if last, ok := s.leases.Last(n.ID); ok {
			n.LastHeartbeatAt = last
		}
	}
	return writeJSON(w, http.StatusOK, wire.NodeList{Nodes: nonNil(nodes)})
}
