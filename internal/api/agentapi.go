package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/lease"
	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// truncate cuts what a caller sent to at most n bytes for the audit log,
// which anyone may otherwise fill with a long name.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// HashSecret is how the control plane keeps a secret it hands out (a join
// token, a node's credential, an API token): its SHA-256, never the secret.
func HashSecret(secret string) string { return credentialHash(secret) }

func credentialHash(c string) string {
	h := sha256.Sum256([]byte(c))
	return hex.EncodeToString(h[:])
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) error {
	var req wire.Join
	if err := decode(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	pool, why, err := s.poolOfJoinToken(ctx, req.JoinToken)
	if err != nil {
		return err
	}
	if pool == nil {
		s.record(ctx, audit.NodeJoinRefused, "agent:"+r.RemoteAddr, truncate(req.Name, 64), "", map[string]string{"reason": why})
		return errorf(http.StatusUnauthorized, "unauthorized",
			"ask the server's operator for a current token: `lode pools token POOL` makes one",
			"the join token %s", why)
	}
	if req.MilliCPUs <= 0 || req.MemoryBytes <= 0 {
		return badRequest("", "a node must offer some CPU and memory (got %d millicpus, %d bytes)", req.MilliCPUs, req.MemoryBytes)
	}
	if req.Name == "" {
		return badRequest("", "a node needs a name")
	}
	now := s.cfg.Now().UTC()
	nodeID := core.NewID("node")
	var certPEM []byte
	switch {
	case len(req.CSR) > 0 && s.cfg.Authority != nil:
		var err error
		if certPEM, err = s.cfg.Authority.SignNode(req.CSR, nodeID, now, s.cfg.NodeCertLife); err != nil {
			return badRequest("send a certificate request (DER) for a key the node made", "%v", err)
		}
	case s.cfg.Authority != nil:
		return badRequest("upgrade the agent: this server gives every node a certificate, and needs its certificate request",
			"the join sent no certificate request")
	}
	cred := core.NewSecret()
	n := &store.Node{
		ID: nodeID, PoolID: pool.ID, Name: req.Name, State: store.NodeReady,
		MilliCPUs: req.MilliCPUs, MemoryBytes: req.MemoryBytes, GPUs: req.GPUs, Labels: req.Labels,
		CredentialHash: credentialHash(cred), AgentVersion: req.AgentVersion,
		RegisteredAt: now, LastHeartbeatAt: now, LeaseExpiresAt: now.Add(s.cfg.LeaseTTL),
	}
	if err := s.cfg.Store.NodeCreate(ctx, n); err != nil {
		return err
	}
	s.leases.Add(n.ID, n.CredentialHash, now, n.LeaseExpiresAt)
	s.record(ctx, audit.NodeJoined, "agent:"+r.RemoteAddr, n.ID, "",
		map[string]string{"pool": pool.Name, "name": n.Name, "gpus": strconv.Itoa(len(n.GPUs))})
	s.cfg.Logger.Info("node joined", "node", n.ID, "name", n.Name, "pool", pool.Name, "gpus", len(n.GPUs))
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusCreated, wire.Joined{
		NodeID: n.ID, Credential: cred, Pool: pool.Name, Certificate: string(certPEM),
		HeartbeatIntervalMS: s.cfg.HeartbeatInterval.Milliseconds(), LeaseTTLMS: s.cfg.LeaseTTL.Milliseconds(),
	})
}

// node authenticates an agent request and returns its node's ID: the node
// named in the header must hold a lease and present the credential it was
// given at join. The lease book answers without touching the store; a node
// the book does not hold is gone (its lease ran out, or it left) if the
// store knows it, and unknown otherwise.
func (s *Server) node(r *http.Request) (string, error) {
	id := r.Header.Get(wire.HeaderNode)
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	unauthorized := errorf(http.StatusUnauthorized, "unauthorized", "join again with a join token", "unknown node or wrong credential")
	if id == "" || !ok {
		return "", unauthorized
	}
	if err := s.checkNodeCert(r, id); err != nil {
		return "", err
	}
	hash, live := s.leases.Credential(id)
	if !live {
		n, err := s.cfg.Store.NodeGet(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return "", unauthorized
		}
		if err != nil {
			return "", err
		}
		hash = n.CredentialHash
	}
	if subtle.ConstantTimeCompare([]byte(hash), []byte(credentialHash(cred))) != 1 {
		return "", unauthorized
	}
	if !live {
		return "", fmt.Errorf("node %s holds no lease: %w", id, store.ErrNodeGone)
	}
	return id, nil
}

// checkNodeCert requires, when the server has a CA, that a node's request
// come over mutual TLS with a certificate the CA signed for that very node:
// a stolen credential is useless without the node's key, and a certificate
// of one node cannot speak for another. Revoking or removing a node needs
// no certificate revocation list: the node's state, checked on every
// request, refuses it at once.
func (s *Server) checkNodeCert(r *http.Request, nodeID string) error {
	if s.cfg.Authority == nil {
		return nil
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return errorf(http.StatusUnauthorized, "unauthorized", "the agent presents the certificate it got at join; join again if it has none",
			"node %s: no client certificate from the control plane's CA", nodeID)
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if id, ok := pki.NodeID(leaf); !ok || id != nodeID {
		return errorf(http.StatusUnauthorized, "unauthorized", "", "the client certificate is node %q's, not node %s's", id, nodeID)
	}
	// A connection outlives the handshake that checked the certificate:
	// one made with a certificate that has since expired is refused.
	if s.cfg.Now().After(leaf.NotAfter) {
		return errorf(http.StatusUnauthorized, "unauthorized", "the agent renews its certificate before it expires; join again",
			"node %s: its certificate expired at %s", nodeID, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// certExpired reports whether the client certificate of a mutual-TLS
// request has expired by now.
func (s *Server) certExpired(r *http.Request) bool {
	if s.cfg.Authority == nil || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	return s.cfg.Now().After(r.TLS.VerifiedChains[0][0].NotAfter)
}

// renewCertificate signs a certificate for a new key of a node that holds
// a valid one: agents renew before their certificate expires.
func (s *Server) renewCertificate(w http.ResponseWriter, r *http.Request) error {
	nodeID, err := s.node(r)
	if err != nil {
		return err
	}
	if s.cfg.Authority == nil {
		return errorf(http.StatusNotFound, "not_found", "", "this server issues no certificates")
	}
	var req wire.RenewCertificate
	if err := decode(r, &req); err != nil {
		return err
	}
	certPEM, err := s.cfg.Authority.SignNode(req.CSR, nodeID, s.cfg.Now().UTC(), s.cfg.NodeCertLife)
	if err != nil {
		return badRequest("send a certificate request (DER) for a key the node made", "%v", err)
	}
	s.record(r.Context(), audit.NodeCertified, "node:"+nodeID, nodeID, "", nil)
	return writeJSON(w, http.StatusOK, wire.NodeCertificate{Certificate: string(certPEM)})
}

// caCert serves the control plane's CA certificate, for agents that check
// it against the fingerprint they were given.
func (s *Server) caCert(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Authority == nil {
		return errorf(http.StatusNotFound, "not_found", "", "this server has no CA of its own")
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(s.cfg.Authority.CertPEM())
	return err
}

// readEvery bounds how long a node's heartbeats may go without reading the
// store, should a change not have been announced to the lease book. Every
// change is announced, so this is a safety net, spread thin: at 10,000
// nodes it costs a few hundred reads a second.
const readEvery = 30 * time.Second

// heartbeats serves a node's heartbeat stream: one request, held open for
// as long as the agent lives, carrying one heartbeat per line and answered
// line by line. Full duplex lets the answers flow while the request body
// still arrives. The stream ends when the agent closes it, when it falls
// silent for longer than a lease (the lease has run out by then anyway),
// when the server shuts down, or with an error frame (a bad frame, the node
// gone).
func (s *Server) heartbeats(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	nodeID, err := s.node(r)
	if err != nil {
		if r.ContentLength < 0 {
			// A stream's body never ends: the refusal must not wait for
			// it, as the server otherwise would before answering.
			rc.EnableFullDuplex()
		}
		return err
	}
	if err := rc.EnableFullDuplex(); err != nil {
		return err
	}
	// A server shutting down ends the streams, which would otherwise hold
	// it up: the read in progress returns at once.
	stop := context.AfterFunc(r.Context(), func() { rc.SetReadDeadline(time.Now()) })
	defer stop()
	w.Header().Set("Content-Type", wire.MediaLines)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	silence := max(2*s.cfg.LeaseTTL, 5*time.Second)
	frames := wire.NewFrameReader(r.Body)
	enc := json.NewEncoder(w)
	for {
		rc.SetReadDeadline(time.Now().Add(silence))
		var req wire.Heartbeat
		err := frames.Read(&req)
		var fe *wire.FrameError
		switch {
		case errors.As(err, &fe):
			err = badRequest("send one JSON heartbeat per line", "heartbeat stream: %v", err)
		case err != nil:
			return nil // the agent closed the stream, went silent or away
		case s.certExpired(r):
			// The stream outlives the handshake that checked the
			// certificate; it does not outlive the certificate.
			err = errorf(http.StatusUnauthorized, "unauthorized", "the agent renews its certificate before it expires; join again",
				"node %s: its certificate has expired", nodeID)
		default:
			var reply *wire.HeartbeatReply
			if reply, err = s.heartbeat(r.Context(), nodeID, &req); err == nil {
				if enc.Encode(wire.BeatFrame{Reply: reply}) != nil || rc.Flush() != nil {
					return nil
				}
				continue
			}
		}
		if _, body, ok := s.problem(r, err); ok {
			enc.Encode(wire.BeatFrame{Error: &body})
			rc.Flush()
		}
		return nil
	}
}

// heartbeat renews a node's lease and says what it should start and stop.
func (s *Server) heartbeat(ctx context.Context, nodeID string, req *wire.Heartbeat) (*wire.HeartbeatReply, error) {
	now := s.cfg.Now().UTC()
	reply := wire.HeartbeatReply{LeaseExpiresAt: now.Add(s.cfg.LeaseTTL)}
	names := make([]string, len(req.Tasks), len(req.Tasks)+1)
	for i, t := range req.Tasks {
		names[i] = t.AttemptID + "/" + strconv.Itoa(t.Rank)
	}
	if c := req.Capacity; c != nil {
		if c.MilliCPUs < 0 || c.MemoryBytes < 0 {
			return nil, badRequest("", "capacity: %d millicpus and %d bytes of memory; neither may be negative", c.MilliCPUs, c.MemoryBytes)
		}
		// A changed offer is news like a changed task list: the
		// heartbeat reads the store and records it.
		b, _ := json.Marshal(c)
		names = append(names, "capacity:"+string(b))
	}
	live, read := s.leases.Renew(nodeID, now, reply.LeaseExpiresAt, lease.TaskSum(names), readEvery)
	if !live {
		return nil, fmt.Errorf("node %s holds no lease: %w", nodeID, store.ErrNodeGone)
	}
	s.metrics.beats.Inc()
	if !read {
		// Nothing changed for this node since it last read: the hot path.
		return &reply, nil
	}
	if err := s.updateCapacity(ctx, nodeID, req.Capacity); err != nil {
		return nil, err
	}
	tasks, err := s.cfg.Store.TaskListByNode(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	running := map[wire.TaskRef]bool{}
	for _, t := range req.Tasks {
		running[t] = true
	}
	known := map[wire.TaskRef]bool{}
	for _, a := range tasks {
		ref := wire.TaskRef{AttemptID: a.Task.AttemptID, Rank: a.Task.Rank}
		known[ref] = true
		switch {
		case a.AttemptState.Terminal():
			// The attempt ended (another rank failed, a node was lost):
			// the task must stop whether or not it started.
			if running[ref] || !a.Task.State.Terminal() {
				reply.Stop = append(reply.Stop, wire.StopTask{TaskRef: ref, Reason: "attempt " + string(a.AttemptState)})
			}
		case a.Job.CancelRequested:
			reply.Stop = append(reply.Stop, wire.StopTask{TaskRef: ref, Reason: "job cancelled"})
		case a.Preempting:
			reply.Stop = append(reply.Stop, wire.StopTask{TaskRef: ref, Reason: "asked to stop (preemption or drain); the job resumes elsewhere from its checkpoint"})
		case a.Task.State == core.TaskAssigned && !running[ref]:
			as, err := s.assignment(ctx, a)
			if errors.Is(err, errGrantRefused) {
				// The task never starts, and its attempt fails: the keys
				// stay where the policy keeps them.
				_, err = s.cfg.Store.TaskUpdate(ctx, &store.TaskUpdateParams{
					Fence: store.Fence{AttemptID: a.Task.AttemptID, Token: a.FencingToken}, Rank: a.Task.Rank,
					State: core.TaskExited, ExitCode: -1, Message: err.Error(), Now: now})
				if err != nil && !errors.Is(err, store.ErrFenced) {
					return nil, err
				}
				s.leases.Notify(a.Ranks...)
				s.cfg.Scheduler.Wake()
				continue
			}
			if err != nil {
				return nil, err
			}
			reply.Start = append(reply.Start, *as)
		case a.Task.State == core.TaskRunning && !running[ref]:
			// The node no longer runs a task it reported running, and no
			// end was reported: it lost it. The attempt ends lost, and the
			// job moves on from its checkpoint.
			_, err := s.cfg.Store.TaskUpdate(ctx, &store.TaskUpdateParams{
				Fence: store.Fence{AttemptID: a.Task.AttemptID, Token: a.FencingToken}, Rank: a.Task.Rank,
				State: core.TaskLost, Message: "its node no longer runs it", Now: now})
			if err != nil && !errors.Is(err, store.ErrFenced) {
				return nil, err
			}
			s.leases.Notify(a.Ranks...)
			s.cfg.Scheduler.Wake()
		}
	}
	for ref := range running {
		if known[ref] {
			continue
		}
		// Tasks of an attempt that ended (a rank failed, the job was
		// cancelled, a node was lost), or that never were this node's,
		// leave its list at once. What became of the attempt is not said:
		// it may not be this node's to know.
		reply.Stop = append(reply.Stop, wire.StopTask{TaskRef: ref, Reason: "not a task of this node's (its attempt has ended, or it never was)"})
	}
	return &reply, nil
}

// updateCapacity records a node's new offer, if it changed, and lets the
// scheduler know.
func (s *Server) updateCapacity(ctx context.Context, nodeID string, c *wire.Capacity) error {
	if c == nil {
		return nil
	}
	n, err := s.cfg.Store.NodeGet(ctx, nodeID)
	if err != nil {
		return err
	}
	if n.MilliCPUs == c.MilliCPUs && n.MemoryBytes == c.MemoryBytes && slices.Equal(n.GPUs, c.GPUs) {
		return nil
	}
	err = s.cfg.Store.NodeSetCapacity(ctx, &store.NodeSetCapacityParams{
		NodeID: nodeID, MilliCPUs: c.MilliCPUs, MemoryBytes: c.MemoryBytes, GPUs: c.GPUs})
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("node capacity changed", "node", nodeID, "millicpus", c.MilliCPUs, "memory", c.MemoryBytes, "gpus", len(c.GPUs))
	s.cfg.Scheduler.Wake()
	return nil
}

// errGrantRefused is a node refused a job's keys by the data policy.
var errGrantRefused = errors.New("grant refused")

// checkGrant enforces the data policy a second time, where keys leave the
// control plane: the node's pool must be one the policy lets the job's data
// run on, whatever placed the task there. A refusal is recorded in the
// audit log; it is forbidden (403) and matches errGrantRefused.
func (s *Server) checkGrant(ctx context.Context, a *store.Assignment) error {
	n, err := s.cfg.Store.NodeGet(ctx, a.Task.NodeID)
	if err != nil {
		return err
	}
	// A node revoked or lost since its request was authenticated gets
	// nothing: the check is made again where the keys leave.
	if _, live := s.leases.Credential(n.ID); !live || (n.State != store.NodeReady && n.State != store.NodeDraining) {
		return fmt.Errorf("node %s holds no lease: %w", n.ID, store.ErrNodeGone)
	}
	p, err := s.cfg.Store.PoolGet(ctx, n.PoolID)
	if err != nil {
		return err
	}
	sp := a.Job.Spec
	verdict := s.cfg.Policy.Admits(sp.Classification, sp.Placement.MinTrust, p.Tier, p.Region)
	if verdict == nil {
		return nil
	}
	s.record(ctx, audit.GrantRefused, "node:"+n.ID, a.Task.AttemptID, a.Job.Project,
		map[string]string{"job": a.Job.ID, "pool": p.Name, "reason": verdict.Error()})
	s.cfg.Logger.Error("refused a job's keys to a node the data policy excludes; the placement was wrong",
		"job", a.Job.ID, "node", n.ID, "pool", p.Name, "reason", verdict)
	return &apiError{status: http.StatusForbidden, body: wire.Error{Code: "forbidden",
		Message: fmt.Sprintf("%s: pool %s may not hold job %s's data: %v", errGrantRefused, p.Name, a.Job.ID, verdict)},
		cause: errGrantRefused}
}

// assignment completes a task for its agent: the data keys it needs, the
// checkpoint to restore and the gang's rendezvous address.
func (s *Server) assignment(ctx context.Context, a *store.Assignment) (*wire.Assignment, error) {
	if err := s.checkGrant(ctx, a); err != nil {
		return nil, err
	}
	out := &wire.Assignment{Assignment: *a, Keys: map[string][]byte{}}
	objects := []string{a.Job.DataObject}
	if a.Job.WorkdirObject != "" {
		objects = append(objects, a.Job.WorkdirObject)
	}
	for _, d := range a.Job.Datasets {
		objects = append(objects, d.ObjectID)
	}
	for _, id := range objects {
		if _, ok := out.Keys[id]; ok {
			continue
		}
		key, err := s.objectKey(ctx, id)
		if err != nil {
			return nil, err
		}
		out.Keys[id] = key
	}
	s.record(ctx, audit.KeyGranted, "node:"+a.Task.NodeID, a.Task.AttemptID, a.Job.Project,
		map[string]string{"job": a.Job.ID, "objects": strings.Join(objects, ","), "rank": strconv.Itoa(a.Task.Rank)})
	ck, err := s.cfg.Store.CheckpointLatest(ctx, a.Job.ID)
	switch {
	case err == nil:
		out.Checkpoint = ck
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if len(a.Ranks) > 0 {
		master, err := s.cfg.Store.NodeGet(ctx, a.Ranks[0])
		if err != nil {
			return nil, err
		}
		out.MasterAddr = master.Labels[wire.LabelAddr]
		if out.MasterAddr == "" {
			out.MasterAddr = "127.0.0.1"
		}
		h := fnv.New32a()
		h.Write([]byte(a.Task.AttemptID))
		out.MasterPort = 29500 + int(h.Sum32()%500)
	}
	return out, nil
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) error {
	nodeID, err := s.node(r)
	if err != nil {
		return err
	}
	s.leases.Remove(nodeID)
	if err := s.cfg.Store.NodeLeave(r.Context(), &store.NodeLeaveParams{NodeID: nodeID, Now: s.cfg.Now().UTC()}); err != nil {
		return err
	}
	s.cfg.Logger.Info("node left", "node", nodeID)
	s.record(r.Context(), audit.NodeLeft, "node:"+nodeID, nodeID, "", nil)
	// Other ranks of its gangs must stop.
	s.leases.Notify()
	s.changes.broadcast()
	s.cfg.Scheduler.Wake()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fence reads the attempt, rank and fencing token of a worker's write, after
// authenticating its caller: an agent's node, or a runner (taskCaller).
func (s *Server) fence(r *http.Request) (store.Fence, int, error) {
	if err := s.taskCaller(r); err != nil {
		return store.Fence{}, 0, err
	}
	f := store.Fence{AttemptID: r.PathValue("attempt"), Token: r.Header.Get(wire.HeaderFence)}
	if f.Token == "" {
		return f, 0, badRequest("", "missing %s header", wire.HeaderFence)
	}
	rank := 0
	if v := r.PathValue("rank"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, 0, badRequest("", "bad rank %q", v)
		}
		rank = n
	}
	return f, rank, nil
}

func (s *Server) taskStatus(w http.ResponseWriter, r *http.Request) error {
	f, rank, err := s.fence(r)
	if err != nil {
		return err
	}
	var req wire.TaskStatus
	if err := decode(r, &req); err != nil {
		return err
	}
	switch req.State {
	case core.TaskRunning, core.TaskExited, core.TaskKilled:
	case core.TaskLost:
		// A worker that could not run its task through no fault of the
		// job's (a Kubernetes pod that never started) says so: the job
		// moves elsewhere without spending an error retry.
	default:
		return badRequest("report running, exited, killed or lost", "agents cannot report state %q", req.State)
	}
	a, err := s.cfg.Store.TaskUpdate(r.Context(), &store.TaskUpdateParams{
		Fence: f, Rank: rank, State: req.State, ExitCode: req.ExitCode, Message: req.Message, Now: s.cfg.Now().UTC(),
	})
	if err != nil {
		return err
	}
	s.metrics.reports.WithLabelValues(string(req.State)).Inc()
	// The node's next heartbeat reconciles what it runs with what it said.
	s.leases.Notify(r.Header.Get(wire.HeaderNode))
	if a.State.Terminal() {
		// The attempt's other ranks must stop.
		s.leases.Notify(attemptNodes(a)...)
		s.cfg.Scheduler.Wake()
	}
	s.changes.broadcast()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) taskLog(w http.ResponseWriter, r *http.Request) error {
	f, rank, err := s.fence(r)
	if err != nil {
		return err
	}
	var req wire.TaskLog
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Stream != store.Stdout && req.Stream != store.Stderr {
		return badRequest("", "stream must be stdout or stderr, not %q", req.Stream)
	}
	if err := s.cfg.Store.LogAppend(r.Context(), &store.LogAppendParams{Fence: f, Rank: rank, Stream: req.Stream, Data: req.Data, Now: s.cfg.Now().UTC()}); err != nil {
		return err
	}
	s.changes.broadcast()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) taskMetrics(w http.ResponseWriter, r *http.Request) error {
	f, rank, err := s.fence(r)
	if err != nil {
		return err
	}
	var req wire.TaskMetrics
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := s.cfg.Store.MetricAppend(r.Context(), &store.MetricAppendParams{Fence: f, Rank: rank, Lines: req.Lines, Now: s.cfg.Now().UTC()}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) commitCheckpoint(w http.ResponseWriter, r *http.Request) error {
	return s.commit(w, r, audit.CheckpointCommitted, func(f store.Fence, c wire.Commit, now time.Time) (any, error) {
		return s.cfg.Store.CheckpointCommit(r.Context(), &store.CheckpointCommitParams{
			Fence: f, Manifest: c.Manifest, Files: c.Files, Bytes: c.Bytes, Now: now})
	})
}

func (s *Server) commitArtifact(w http.ResponseWriter, r *http.Request) error {
	return s.commit(w, r, audit.OutputsCommitted, func(f store.Fence, c wire.Commit, now time.Time) (any, error) {
		return s.cfg.Store.ArtifactCommit(r.Context(), &store.ArtifactCommitParams{
			Fence: f, Manifest: c.Manifest, Files: c.Files, Bytes: c.Bytes, Now: now})
	})
}

// commit records a manifest an attempt pushed into its job's data object,
// once the manifest is known to be stored there.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, kind string, record func(store.Fence, wire.Commit, time.Time) (any, error)) error {
	f, _, err := s.fence(r)
	if err != nil {
		return err
	}
	var req wire.Commit
	if err := decode(r, &req); err != nil {
		return err
	}
	a, err := s.cfg.Store.AttemptGet(r.Context(), f.AttemptID)
	if errors.Is(err, store.ErrNotFound) {
		return store.ErrFenced
	}
	if err != nil {
		return err
	}
	j, err := s.cfg.Store.JobGet(r.Context(), a.JobID)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Chunks.GetManifest(r.Context(), j.DataObject, req.Manifest); err != nil {
		return badRequest("push the directory before committing it", "manifest %q is not stored for job %s: %v", req.Manifest, j.ID, err)
	}
	out, err := record(f, req, s.cfg.Now().UTC())
	if err != nil {
		return err
	}
	// Who wrote what into a job's data is on record: a hostile worker's
	// commit is traceable to its node or attempt.
	s.record(r.Context(), kind, claimant(r), a.ID, j.Project,
		map[string]string{"job": j.ID, "manifest": req.Manifest, "files": strconv.Itoa(req.Files)})
	return writeJSON(w, http.StatusCreated, out)
}

// attemptNodes lists the nodes an attempt's ranks run on.
func attemptNodes(a *store.Attempt) []string {
	ids := make([]string, len(a.Tasks))
	for i, t := range a.Tasks {
		ids[i] = t.NodeID
	}
	return ids
}
