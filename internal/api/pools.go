package api

import (
	"fmt"
	"net/http"

	"lode.dev/lode/internal/control"
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

func (s *Server) joinToken(w http.ResponseWriter, r *http.Request) error {
	p, err := s.cfg.Store.PoolGetByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if p.JoinToken == "" {
		return errorf(http.StatusConflict, "conflict", "", "pool %s takes no agents", p.Name)
	}
	return writeJSON(w, http.StatusOK, wire.JoinToken{Pool: p.Name, Token: p.JoinToken, Command: JoinCommand(s.cfg.PublicURL, p.JoinToken, s.caHash())})
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
