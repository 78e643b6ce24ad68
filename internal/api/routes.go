package api

import (
	"net/http"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// register lists every endpoint once: the mux and the OpenAPI document are
// both built from this table, so they cannot disagree.
func (s *Server) register() {
	s.handle(route{method: "GET", path: "/v1/openapi.json", access: public, tag: "meta", summary: "This OpenAPI document."}, s.openAPI)
	s.handle(route{method: "GET", path: "/v1/health", access: public, tag: "meta", summary: "Liveness and version.",
		response: map[string]string{}}, s.health)

	s.handle(route{method: "POST", path: "/v1/jobs", tag: "jobs", summary: "Submit a job.",
		request: wire.SubmitJob{}, response: wire.JobDetail{}}, s.submitJob)
	s.handle(route{method: "GET", path: "/v1/jobs", tag: "jobs", summary: "List jobs, newest first (?project=, ?state=, ?limit=).",
		response: wire.JobList{}}, s.listJobs)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}", tag: "jobs", summary: "A job, its attempts, and why it waits.",
		response: wire.JobDetail{}}, s.getJob)
	s.handle(route{method: "POST", path: "/v1/jobs/{id}/cancel", tag: "jobs", summary: "Cancel a job.",
		response: wire.JobDetail{}}, s.cancelJob)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/logs", tag: "jobs",
		summary:  "A job's output (?after=SEQ). With ?follow=true, a text/event-stream of LogEvent until the job ends.",
		response: wire.LogEvent{}, media: "text/event-stream"}, s.jobLogs)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/metrics", tag: "jobs", summary: "A job's metric lines (?after=SEQ).",
		response: wire.MetricList{}}, s.jobMetrics)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/checkpoints", tag: "jobs", summary: "A job's committed checkpoint versions, oldest first.",
		response: wire.CheckpointList{}}, s.jobCheckpoints)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/artifacts", tag: "jobs",
		summary: "Where a job's outputs are and the key that opens them.", response: wire.ArtifactAccess{}}, s.jobArtifacts)

	s.handle(route{method: "GET", path: "/v1/pools", tag: "pools", summary: "List pools.", response: wire.PoolList{}}, s.listPools)
	s.handle(route{method: "POST", path: "/v1/pools", access: admin, tag: "pools", summary: "Create a pool.",
		request: wire.PoolSpec{}, response: wire.PoolInfo{}}, s.createPool)
	s.handle(route{method: "PATCH", path: "/v1/pools/{name}", access: admin, tag: "pools", summary: "Change a pool's region, trust, state, interconnect or prices.",
		request: wire.PoolSpec{}, response: wire.PoolInfo{}}, s.updatePool)
	s.handle(route{method: "DELETE", path: "/v1/pools/{name}", access: admin, tag: "pools", summary: "Delete a pool that never had a node."}, s.deletePool)
	s.handle(route{method: "GET", path: "/v1/projects", tag: "projects", summary: "List projects with their budgets.",
		response: wire.ProjectList{}}, s.listProjects)
	s.handle(route{method: "PUT", path: "/v1/projects/{name}", access: admin, tag: "projects", summary: "Set a project's budget and fair-share weight.",
		request: wire.ProjectSpec{}, response: store.Project{}}, s.putProject)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/explain", tag: "jobs",
		summary: "Why a job waits, or why it runs where it does: every pool's verdict and cost.", response: wire.Explanation{}}, s.explainJob)
	s.handle(route{method: "POST", path: "/v1/dry-run", tag: "jobs",
		summary: "Where a spec would run and what it would cost, without submitting it.", request: wire.DryRun{}, response: wire.Explanation{}}, s.dryRun)
	s.handle(route{method: "GET", path: "/v1/cost", tag: "cost", summary: "Metered cost by job, project or pool (?by=, ?project=).",
		response: wire.CostReport{}}, s.costReport)
	s.handle(route{method: "GET", path: "/v1/jobs/{id}/cost", tag: "cost",
		summary: "What a job cost, attempt by attempt, and what it would have cost elsewhere.", response: wire.JobCost{}}, s.jobCost)
	s.handle(route{method: "POST", path: "/v1/pools/{name}/drain", access: admin, tag: "pools",
		summary:  "Stop a pool taking work and move its running jobs elsewhere (SIGTERM, grace, resume from checkpoint).",
		response: wire.DrainReply{}}, s.drainPool)
	s.handle(route{method: "POST", path: "/v1/nodes/{id}/drain", access: admin, tag: "pools",
		summary: "Stop a node taking work and move its running jobs elsewhere.", response: wire.DrainReply{}}, s.drainNode)
	s.handle(route{method: "POST", path: "/v1/nodes/{id}/revoke", access: admin, tag: "pools",
		summary: "Revoke a node: its credential is refused at once and its jobs move elsewhere."}, s.revokeNode)
	s.handle(route{method: "POST", path: "/v1/nodes/{id}/undrain", access: admin, tag: "pools",
		summary: "Let a drained node take work again.", response: wire.DrainReply{}}, s.undrainNode)
	s.handle(route{method: "POST", path: "/v1/pools/{name}/join-tokens", access: admin, tag: "pools",
		summary: "Make a join token for a pool (its secret is shown once) and the command that starts an agent with it.",
		request: wire.NewJoinToken{}, response: wire.JoinToken{}}, s.newJoinToken)
	s.handle(route{method: "GET", path: "/v1/pools/{name}/join-tokens", access: admin, tag: "pools",
		summary: "A pool's join tokens, without their secrets.", response: wire.JoinTokenList{}}, s.listJoinTokens)
	s.handle(route{method: "DELETE", path: "/v1/join-tokens/{id}", access: admin, tag: "pools",
		summary: "Revoke a join token: no agent joins with it from now on."}, s.revokeJoinToken)
	s.handle(route{method: "GET", path: "/v1/nodes", tag: "pools", summary: "List nodes (?pool=, ?state=).",
		response: wire.NodeList{}}, s.listNodes)

	s.handle(route{method: "POST", path: "/v1/objects", tag: "data",
		summary: "Create an encrypted object (or find a dataset's) and get its data key.",
		request: wire.CreateObject{}, response: wire.ObjectKey{}}, s.createObject)
	s.handle(route{method: "POST", path: "/v1/objects/{id}/missing", access: objectData, tag: "data",
		summary: "Which of these chunk addresses are not stored yet.", request: wire.MissingChunks{}, response: wire.MissingChunks{}}, s.missingChunks)
	s.handle(route{method: "PUT", path: "/v1/objects/{id}/chunks/{addr}", access: objectData, tag: "data",
		summary: "Store a sealed chunk (application/octet-stream)."}, s.putChunk)
	s.handle(route{method: "GET", path: "/v1/objects/{id}/chunks/{addr}", access: objectData, tag: "data",
		summary: "Fetch a sealed chunk (application/octet-stream)."}, s.getChunk)
	s.handle(route{method: "PUT", path: "/v1/objects/{id}/manifests/{name}", access: objectData, tag: "data",
		summary: "Store a sealed manifest (application/octet-stream)."}, s.putManifest)
	s.handle(route{method: "GET", path: "/v1/objects/{id}/manifests/{name}", access: objectData, tag: "data",
		summary: "Fetch a sealed manifest (application/octet-stream)."}, s.getManifest)
	s.handle(route{method: "POST", path: "/v1/datasets", tag: "data", summary: "Commit a pushed directory as a new dataset version.",
		request: wire.CommitDataset{}, response: wire.DatasetList{}}, s.commitDataset)
	s.handle(route{method: "GET", path: "/v1/datasets", tag: "data", summary: "List datasets, newest version of each (?project=).",
		response: wire.DatasetList{}}, s.listDatasets)
	s.handle(route{method: "DELETE", path: "/v1/datasets/{project}/{name}", tag: "data", summary: "Delete every version of a dataset."}, s.deleteDataset)

	s.handle(route{method: "GET", path: "/v1/audit", access: admin, tag: "audit",
		summary:  "The hash-chained audit log (?after=SEQ), its signed checkpoints and the key that verifies them.",
		response: wire.AuditLog{}}, s.auditLog)
	s.handle(route{method: "GET", path: "/v1/whoami", tag: "users", summary: "The caller: their user and roles.",
		response: wire.WhoAmI{}}, s.whoAmI)
	s.handle(route{method: "POST", path: "/v1/users", access: admin, tag: "users", summary: "Add a user.",
		request: wire.CreateUser{}, response: store.User{}}, s.createUser)
	s.handle(route{method: "GET", path: "/v1/users", access: admin, tag: "users", summary: "List users.",
		response: wire.UserList{}}, s.listUsers)
	s.handle(route{method: "POST", path: "/v1/tokens", tag: "users",
		summary: "Make an API token (the caller's, or an administrator's for any user); its secret is shown once.",
		request: wire.CreateToken{}, response: wire.NewToken{}}, s.createToken)
	s.handle(route{method: "GET", path: "/v1/tokens", tag: "users", summary: "List the caller's tokens (?user= for administrators).",
		response: wire.TokenList{}}, s.listTokens)
	s.handle(route{method: "DELETE", path: "/v1/tokens/{id}", tag: "users", summary: "Revoke a token: useless from now on."}, s.revokeToken)
	s.handle(route{method: "GET", path: "/v1/projects/{name}/members", tag: "projects", summary: "A project's members and their roles.",
		response: wire.MemberList{}}, s.listMembers)
	s.handle(route{method: "PUT", path: "/v1/projects/{name}/members/{user}", tag: "projects",
		summary: "Give a user a role in a project (project admins).", request: wire.MemberSpec{}, response: wire.MemberInfo{}}, s.putMember)
	s.handle(route{method: "DELETE", path: "/v1/projects/{name}/members/{user}", tag: "projects",
		summary: "Take a user's role in a project away (project admins)."}, s.deleteMember)
	s.handle(route{method: "GET", path: "/v1/ca", access: public, tag: "agent",
		summary: "The control plane's CA certificate (PEM); agents check it against the fingerprint they were given."}, s.caCert)
	s.handle(route{method: "POST", path: "/v1/agent/certificate", access: worker, tag: "agent",
		summary: "Renew the node's certificate: the CA signs one for a new key (mutual TLS with the current one).",
		request: wire.RenewCertificate{}, response: wire.NodeCertificate{}}, s.renewCertificate)
	s.handle(route{method: "POST", path: "/v1/agent/join", access: public, tag: "agent", summary: "Trade a pool's join token for a node identity.",
		request: wire.Join{}, response: wire.Joined{}}, s.join)
	s.handle(route{method: "POST", path: "/v1/agent/heartbeats", access: worker, tag: "agent", media: wire.MediaLines,
		summary: "A stream of heartbeats, one per line, each renewing the node's lease; each is answered by a line " +
			"saying what to start and stop, until an error frame ends the stream.",
		request: wire.Heartbeat{}, response: wire.BeatFrame{}}, s.heartbeats)
	s.handle(route{method: "POST", path: "/v1/agent/drain", access: worker, tag: "agent",
		summary:  "Drain the node before a clean shutdown: its tasks stop with a grace period and move elsewhere.",
		response: wire.DrainReply{}}, s.drainSelf)
	s.handle(route{method: "POST", path: "/v1/agent/leave", access: worker, tag: "agent", summary: "Leave the pool (clean shutdown)."}, s.leave)
	s.handle(route{method: "POST", path: "/v1/agent/attempts/{attempt}/ranks/{rank}/status", access: worker, tag: "agent",
		summary: "Report a task's state (fenced).", request: wire.TaskStatus{}}, s.taskStatus)
	s.handle(route{method: "POST", path: "/v1/agent/attempts/{attempt}/ranks/{rank}/logs", access: worker, tag: "agent",
		summary: "Append task output (fenced).", request: wire.TaskLog{}}, s.taskLog)
	s.handle(route{method: "POST", path: "/v1/agent/attempts/{attempt}/ranks/{rank}/metrics", access: worker, tag: "agent",
		summary: "Append metric lines (fenced).", request: wire.TaskMetrics{}}, s.taskMetrics)
	s.handle(route{method: "POST", path: "/v1/agent/attempts/{attempt}/checkpoints", access: worker, tag: "agent",
		summary: "Commit a new checkpoint version (fenced).", request: wire.Commit{}}, s.commitCheckpoint)
	s.handle(route{method: "POST", path: "/v1/agent/attempts/{attempt}/artifacts", access: worker, tag: "agent",
		summary: "Commit the attempt's outputs (fenced).", request: wire.Commit{}}, s.commitArtifact)
	s.handle(route{method: "GET", path: "/v1/agent/attempts/{attempt}/ranks/{rank}/assignment", access: worker, tag: "agent",
		summary: "A task waiting to start, for the worker holding its attempt's fencing token (lode runner): " +
			"the job, its data keys, the checkpoint to restore (fenced; no node credential needed).",
		response: wire.Assignment{}}, s.runnerAssignment)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}
