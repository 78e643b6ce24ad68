// Package wire holds the JSON messages of Lode's REST API, shared by the
// server, the Go client, the agent and the CLI. A message here is a promise
// to every client: change it only compatibly.
package wire

import (
	"encoding/json"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/meter"
	"lode.dev/lode/internal/reliability"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
)

// Headers the agent API uses.
const (
	// HeaderFence carries an attempt's fencing token on every write a
	// worker makes for it.
	HeaderFence = "Lode-Fencing-Token"
	// HeaderNode names the node a request comes from.
	HeaderNode = "Lode-Node"
	// HeaderAttempt names the attempt whose fencing token a runner
	// presents to read and write the attempt's data.
	HeaderAttempt = "Lode-Attempt"
	// HeaderIdempotencyKey makes a job submission safe to retry: a second
	// submission with the same key (in the same project) answers with the
	// job the first one created. HeaderReplayed marks such an answer.
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// LabelAddr is the node label holding the address other ranks of a gang
// reach the node at.
const LabelAddr = "lode.dev/addr"

// ErrorBody is every error response: {"error": {...}}.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Error says what went wrong and what to do about it.
type Error struct {
	// Code is stable and machine-readable: bad_request, not_found,
	// conflict, fenced, node_gone, unauthorized, too_large, no_space,
	// internal.
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// SubmitJob asks the server to queue a job.
type SubmitJob struct {
	Spec            spec.Job `json:"spec"`
	WorkdirObject   string   `json:"workdir_object,omitempty"`
	WorkdirManifest string   `json:"workdir_manifest,omitempty"`
}

// JobDetail is a job with its attempts and, while it waits, why.
type JobDetail struct {
	store.Job
	AttemptList []*store.Attempt `json:"attempt_list"`
	// Pending lists, for a queued job, why each pool did not take it in
	// the last scheduling cycle.
	Pending []sched.Rejection `json:"pending,omitempty"`
}

// JobList is a listing of jobs.
type JobList struct {
	Jobs []*store.Job `json:"jobs"`
}

// PoolInfo is a pool with its node counts and reliability.
type PoolInfo struct {
	store.Pool
	Nodes       int                    `json:"nodes"`
	ReadyNodes  int                    `json:"ready_nodes"`
	GPUs        int                    `json:"gpus"`
	Reliability reliability.Assessment `json:"reliability"`
}

// PoolList lists pools.
type PoolList struct {
	Pools []PoolInfo `json:"pools"`
}

// NewJoinToken asks for a join token of a pool.
type NewJoinToken struct {
	// ExpiresInS is the token's life in seconds; 0 means it never expires.
	ExpiresInS int64 `json:"expires_in_s,omitempty"`
}

// JoinToken is a join token just made, with its secret (shown this once)
// and the command that starts an agent with it.
type JoinToken struct {
	store.JoinToken
	Pool    string `json:"pool"`
	Token   string `json:"token"`
	Command string `json:"command"`
}

// JoinTokenList lists a pool's join tokens, without their secrets.
type JoinTokenList struct {
	Tokens []*store.JoinToken `json:"tokens"`
}

// NodeList lists nodes.
type NodeList struct {
	Nodes []*store.Node `json:"nodes"`
}

// CreateObject asks for a new encrypted object and its data key. For a
// dataset the server returns the dataset's existing object when there is
// one, so its versions share a key and unchanged chunks are stored once.
type CreateObject struct {
	Kind    string `json:"kind"`
	Project string `json:"project"`
	Name    string `json:"name,omitempty"`
}

// ObjectKey is an object and its data key in the clear: it is sent only to
// the party that will seal or open the object's data.
type ObjectKey struct {
	ObjectID string `json:"object_id"`
	DataKey  []byte `json:"data_key"`
}

// MissingChunks asks which of these chunk addresses the store lacks.
type MissingChunks struct {
	Addrs []string `json:"addrs"`
}

// CommitDataset records a pushed directory as a new dataset version.
type CommitDataset struct {
	Project        string              `json:"project"`
	Name           string              `json:"name"`
	ObjectID       string              `json:"object_id"`
	Manifest       string              `json:"manifest"`
	Classification core.Classification `json:"classification"`
	Files          int                 `json:"files"`
	Bytes          int64               `json:"bytes"`
}

// DatasetList lists datasets.
type DatasetList struct {
	Datasets []*store.Dataset `json:"datasets"`
}

// CheckpointList lists a job's checkpoint versions.
type CheckpointList struct {
	Checkpoints []*store.Checkpoint `json:"checkpoints"`
}

// ArtifactAccess is what a client needs to fetch and open a job's outputs.
type ArtifactAccess struct {
	Artifact *store.Artifact `json:"artifact"`
	ObjectKey
}

// LogEvent is one server-sent event of a log stream: output, or the end of
// the job.
type LogEvent struct {
	Chunk *store.LogChunk `json:"chunk,omitempty"`
	// End is set once the job has ended and all its output was sent.
	End   bool          `json:"end,omitempty"`
	State core.JobState `json:"state,omitempty"`
}

// MetricList lists a job's metric lines.
type MetricList struct {
	Metrics []*store.Metric `json:"metrics"`
}

// Join is an agent's first request: it trades a pool's join token for a
// node identity.
type Join struct {
	JoinToken    string            `json:"join_token"`
	Name         string            `json:"name"`
	MilliCPUs    int64             `json:"milli_cpus"`
	MemoryBytes  int64             `json:"memory_bytes"`
	GPUs         []core.GPU        `json:"gpus"`
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion string            `json:"agent_version"`
	// CSR is a certificate request for a key the node made (DER): the
	// control plane's CA signs the node's client certificate from it.
	CSR []byte `json:"csr,omitempty"`
}

// Joined is the server's answer to Join.
type Joined struct {
	NodeID     string `json:"node_id"`
	Credential string `json:"credential"`
	Pool       string `json:"pool"`
	// Certificate is the node's client certificate (PEM), for mutual TLS
	// with the agent API; empty when the join sent no CSR.
	Certificate string `json:"certificate,omitempty"`
	// HeartbeatInterval and LeaseTTL are in milliseconds.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	LeaseTTLMS          int64 `json:"lease_ttl_ms"`
}

// TaskRef names one rank of an attempt.
type TaskRef struct {
	AttemptID string `json:"attempt_id"`
	Rank      int    `json:"rank"`
}

// Heartbeat renews a node's lease and lists the tasks it runs.
type Heartbeat struct {
	Tasks []TaskRef `json:"tasks"`
	// Capacity, when set, is what the node offers now, replacing what it
	// declared at join: a Kubernetes node whose other pods come and go, a
	// rig whose owner took a GPU back. Tasks already placed keep running.
	Capacity *Capacity `json:"capacity,omitempty"`
}

// Capacity is what a node offers to Lode's tasks, all of them together.
type Capacity struct {
	MilliCPUs   int64      `json:"milli_cpus"`
	MemoryBytes int64      `json:"memory_bytes"`
	GPUs        []core.GPU `json:"gpus"`
}

// HeartbeatReply renews the lease and says what to start and what to stop.
type HeartbeatReply struct {
	LeaseExpiresAt time.Time    `json:"lease_expires_at"`
	Start          []Assignment `json:"start,omitempty"`
	Stop           []StopTask   `json:"stop,omitempty"`
}

// Assignment is a task to start, with the data keys it needs.
type Assignment struct {
	store.Assignment
	// Keys holds the data key of every object the task reads or writes.
	Keys map[string][]byte `json:"keys"`
	// Checkpoint is the job's newest checkpoint to restore, if any.
	Checkpoint *store.Checkpoint `json:"checkpoint,omitempty"`
	// MasterAddr and MasterPort are rank 0's address for gangs.
	MasterAddr string `json:"master_addr,omitempty"`
	MasterPort int    `json:"master_port,omitempty"`
}

// StopTask tells an agent to stop a task, and why.
type StopTask struct {
	TaskRef
	Reason string `json:"reason"`
}

// TaskStatus reports a task's new state.
type TaskStatus struct {
	State    core.TaskState `json:"state"`
	ExitCode int            `json:"exit_code"`
	Message  string         `json:"message,omitempty"`
}

// TaskLog is a piece of a task's output.
type TaskLog struct {
	Stream store.LogStream `json:"stream"`
	Data   []byte          `json:"data"`
}

// TaskMetrics carries metric lines a task appended to its metrics file.
type TaskMetrics struct {
	Lines []json.RawMessage `json:"lines"`
}

// Commit records a pushed checkpoint or output set.
type Commit struct {
	Manifest string `json:"manifest"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
}

// PoolSpec creates a pool, or (PATCH) changes the fields it sets.
type PoolSpec struct {
	Name         string             `json:"name,omitempty"`
	Driver       string             `json:"driver,omitempty"`
	Region       *string            `json:"region,omitempty"`
	Tier         *string            `json:"tier,omitempty"`
	State        *string            `json:"state,omitempty"`
	Interconnect *core.Interconnect `json:"interconnect,omitempty"`
	Prices       *core.Prices       `json:"prices,omitempty"`
}

// ProjectList lists projects.
type ProjectList struct {
	Projects []*store.Project `json:"projects"`
}

// ProjectSpec sets a project's budget and weight.
type ProjectSpec struct {
	Budget float64 `json:"budget"`
	Weight float64 `json:"weight"`
}

// DryRun asks where a spec would run, without submitting it.
type DryRun struct {
	Spec spec.Job `json:"spec"`
}

// Explanation says where a job can run and what each pool would cost,
// cheapest (or fastest, by the job's objective) first.
type Explanation struct {
	JobID string        `json:"job_id,omitempty"`
	State core.JobState `json:"state,omitempty"`
	// Placed names the pool of the job's current or last attempt.
	Placed  string         `json:"placed,omitempty"`
	Options []sched.Option `json:"options"`
}

// CostReport sums metered usage by job, project or pool.
type CostReport struct {
	By    string       `json:"by"`
	Lines []meter.Line `json:"lines"`
	Total float64      `json:"total"`
}

// JobCost is what a job cost, attempt by attempt, and what it would have
// cost on the other pools it could have run on.
type JobCost struct {
	JobID        string              `json:"job_id"`
	Usage        []*store.Usage      `json:"usage"`
	Total        float64             `json:"total"`
	Alternatives []meter.Alternative `json:"alternatives,omitempty"`
}

// DrainReply lists the attempts a drain asked to stop.
type DrainReply struct {
	Stopping []string `json:"stopping"`
}

// AuditLog is the audit log with its signed checkpoints and the public key
// that verifies them.
type AuditLog struct {
	Entries     []audit.Entry      `json:"entries"`
	Checkpoints []audit.Checkpoint `json:"checkpoints"`
	PublicKey   []byte             `json:"public_key"`
}

// CreateUser adds a user.
type CreateUser struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
}

// UserList lists users.
type UserList struct {
	Users []*store.User `json:"users"`
}

// CreateToken asks for an API token: the caller's own, or (administrators)
// another user's.
type CreateToken struct {
	User string `json:"user,omitempty"` // a user name; empty: the caller
	Name string `json:"name,omitempty"` // what the token is for
	// ExpiresInS is the token's life in seconds; 0 means it never expires.
	ExpiresInS int64 `json:"expires_in_s,omitempty"`
}

// NewToken is a token just made: its secret is shown this once.
type NewToken struct {
	store.Token
	User   string `json:"user"`
	Secret string `json:"secret"`
}

// TokenList lists tokens, without their secrets.
type TokenList struct {
	Tokens []*store.Token `json:"tokens"`
}

// MemberSpec gives a user a role in a project.
type MemberSpec struct {
	Role core.Role `json:"role"`
}

// MemberInfo is a user's role in a project.
type MemberInfo struct {
	store.Member
	User string `json:"user"`
}

// MemberList lists a project's members.
type MemberList struct {
	Members []*MemberInfo `json:"members"`
}

// WhoAmI is the caller: their user and roles.
type WhoAmI struct {
	User  store.User           `json:"user"`
	Roles map[string]core.Role `json:"roles"`
}

// RenewCertificate asks for a node certificate for a new key.
type RenewCertificate struct {
	CSR []byte `json:"csr"`
}

// NodeCertificate is a node's new certificate (PEM).
type NodeCertificate struct {
	Certificate string `json:"certificate"`
}
