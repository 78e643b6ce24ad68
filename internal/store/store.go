// Package store owns Lode's durable state behind one interface. Every method
// is one transaction: a state change and everything it implies (an attempt
// ending, its job requeued, its retry counted) commit together or not at all.
//
// Backends live in sub-packages (sqlite, later postgres) and must pass the
// conformance suite in storetest. Backend errors become the errors below at
// the edge; callers test them with errors.Is.
//
// All methods are safe for concurrent use. Times are stored with millisecond
// precision or better and come back in UTC.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
)

var (
	// ErrNotFound: the entity does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the entity exists already, or the change lost a race
	// (the job was no longer queued, a node had no room left, ...).
	ErrConflict = errors.New("store: conflict")
	// ErrFenced: a write from an attempt that is not the job's current,
	// live attempt, or whose fencing token does not match. The writer must
	// stop its task.
	ErrFenced = errors.New("store: fenced: attempt is no longer current")
	// ErrNodeGone: the node's lease expired and it was declared lost; it
	// must join again.
	ErrNodeGone = errors.New("store: node is gone")
)

// Store is Lode's durable state.
type Store interface {
	PoolCreate(ctx context.Context, p *Pool) error
	PoolGet(ctx context.Context, id string) (*Pool, error)
	PoolGetByName(ctx context.Context, name string) (*Pool, error)
	PoolList(ctx context.Context) ([]*Pool, error)
	// PoolUpdate stores a pool's name, region, tier, state (with its reason
	// and time), interconnect and prices; ErrNotFound when it does not exist.
	PoolUpdate(ctx context.Context, p *Pool) error
	// PoolDelete removes a pool that never had a node; ErrConflict for one
	// that did (drain it instead).
	PoolDelete(ctx context.Context, id string) error

	// ProjectPut creates or updates a project's budget and weight.
	ProjectPut(ctx context.Context, p *Project) error
	// ProjectGet returns a project; ErrNotFound for one never put.
	ProjectGet(ctx context.Context, name string) (*Project, error)
	ProjectList(ctx context.Context) ([]*Project, error)

	// UsageList returns the usage records of ended attempts, oldest first,
	// filtered by job, project or pool (empty fields match all).
	UsageList(ctx context.Context, p *UsageListParams) ([]*Usage, error)

	// NodeCreate registers a node that joined; its lease starts as given.
	NodeCreate(ctx context.Context, n *Node) error
	NodeGet(ctx context.Context, id string) (*Node, error)
	NodeList(ctx context.Context, p *NodeListParams) ([]*Node, error)
	// NodeHeartbeat extends a ready node's lease. ErrNodeGone when the node
	// was declared lost or left; ErrNotFound when it never existed.
	NodeHeartbeat(ctx context.Context, p *NodeHeartbeatParams) (*Node, error)
	// NodeExpireLeases declares lost every ready node whose lease ended
	// before p.Now, marks its unfinished tasks lost, ends their attempts as
	// lost and requeues or fails their jobs (core.JobAfterAttempt). It
	// returns the nodes it declared lost.
	NodeExpireLeases(ctx context.Context, p *NodeExpireLeasesParams) ([]*Node, error)
	// NodeMarkLost declares lost the live nodes whose leases ran out (kept
	// by the control plane in memory), recording when each was last heard
	// from, and ends their attempts as NodeExpireLeases does. Nodes already
	// gone are skipped. It returns the nodes it declared lost.
	NodeMarkLost(ctx context.Context, p *NodeMarkLostParams) ([]*Node, error)
	// NodeLeave marks a node as gone on its own word (a clean shutdown),
	// last heard from now:
	// like a lease expiry, at once.
	NodeLeave(ctx context.Context, p *NodeLeaveParams) error
	// NodeDrain stops a live node from taking new work and asks every live
	// attempt with a task on it to stop (as AttemptPreempt does), so the
	// work moves elsewhere from its last checkpoint; with Undo it takes work
	// again. It returns the attempts asked to stop. ErrNodeGone for a node
	// that is lost or left.
	NodeDrain(ctx context.Context, p *NodeDrainParams) ([]string, error)
	// NodeSetCapacity records what a live node offers now (a Kubernetes
	// node whose other pods come and go; a rig whose owner took a GPU
	// back). ErrNodeGone for a node that is lost or left.
	NodeSetCapacity(ctx context.Context, p *NodeSetCapacityParams) error

	// JobCreate records a new job. A job whose idempotency key another job
	// of its project already holds is ErrConflict.
	JobCreate(ctx context.Context, j *Job) error
	JobGet(ctx context.Context, id string) (*Job, error)
	// JobGetByIdempotencyKey finds the job of a project submitted with key.
	JobGetByIdempotencyKey(ctx context.Context, project, key string) (*Job, error)
	// JobList lists jobs newest first.
	JobList(ctx context.Context, p *JobListParams) ([]*Job, error)
	// JobCancel cancels a queued job at once; for a placed or running job it
	// records the request, and the job ends cancelled when its attempt's
	// tasks have been stopped (TaskUpdate) or their node is lost. Cancelling
	// a finished job is ErrConflict.
	JobCancel(ctx context.Context, p *JobCancelParams) (*Job, error)

	// AttemptCreate places a queued job: it creates the attempt and one task
	// per rank, and moves the job to placed. ErrConflict when the job is no
	// longer queued, a node is not ready, or a node lacks the free resources
	// the job asks (re-checked against the tasks already on it).
	AttemptCreate(ctx context.Context, p *AttemptCreateParams) (*Attempt, error)
	// AttemptGet returns an attempt with its tasks.
	AttemptGet(ctx context.Context, id string) (*Attempt, error)
	// AttemptListByJob returns a job's attempts, oldest first, with tasks;
	// ErrNotFound for an unknown job (so do the other list-by-job methods).
	AttemptListByJob(ctx context.Context, jobID string) ([]*Attempt, error)
	// TaskListByNode returns the unfinished tasks placed on a node (their
	// attempts are live: when an attempt ends, its unfinished tasks are
	// killed in the same transaction and leave this list), with what the
	// node needs to run them. ErrNotFound for an unknown node.
	TaskListByNode(ctx context.Context, nodeID string) ([]*Assignment, error)
	// AttemptPreempt asks a live attempt to stop so that higher-priority
	// work can run: its tasks are told to stop with a grace period, and when
	// they have, the attempt ends preempted and its job is queued again at
	// no cost to its retry budget. ErrConflict when the attempt has ended.
	AttemptPreempt(ctx context.Context, p *AttemptPreemptParams) error
	// TaskListUnfinished returns every task that is assigned or running,
	// whatever its node: what holds capacity right now.
	TaskListUnfinished(ctx context.Context) ([]*Task, error)
	// TaskUpdate records a task's new state (fenced). When that ends the
	// attempt, the job moves on in the same transaction, and the attempt's
	// usage is recorded.
	TaskUpdate(ctx context.Context, p *TaskUpdateParams) (*Attempt, error)

	// LogAppend stores a piece of a task's output (fenced).
	LogAppend(ctx context.Context, p *LogAppendParams) error
	// LogList returns a job's output after a sequence number, oldest first.
	LogList(ctx context.Context, p *LogListParams) ([]*LogChunk, error)
	// MetricAppend stores metric lines a task reported (fenced).
	MetricAppend(ctx context.Context, p *MetricAppendParams) error
	// MetricList returns a job's metric lines after a sequence number.
	MetricList(ctx context.Context, p *MetricListParams) ([]*Metric, error)

	// ObjectCreate records a new encrypted object and its wrapped data key.
	ObjectCreate(ctx context.Context, o *Object) error
	ObjectGet(ctx context.Context, id string) (*Object, error)
	// ObjectGetByName finds a named object of a project (a dataset's).
	ObjectGetByName(ctx context.Context, project, kind, name string) (*Object, error)

	// DatasetCommit records a new version of a dataset; the version number
	// is assigned here (newest + 1) and set on d.
	DatasetCommit(ctx context.Context, d *Dataset) error
	// DatasetGet returns a version of a dataset, or its newest when version
	// is 0.
	DatasetGet(ctx context.Context, project, name string, version int) (*Dataset, error)
	// DatasetList returns the newest version of every dataset of a project
	// (all projects when project is empty).
	DatasetList(ctx context.Context, project string) ([]*Dataset, error)
	// DatasetDelete removes every version of a dataset.
	DatasetDelete(ctx context.Context, project, name string) error

	// CheckpointCommit records a new checkpoint version (fenced); the
	// version is assigned here and never goes backwards.
	CheckpointCommit(ctx context.Context, p *CheckpointCommitParams) (*Checkpoint, error)
	// CheckpointLatest returns a job's newest checkpoint; ErrNotFound when
	// it has none.
	CheckpointLatest(ctx context.Context, jobID string) (*Checkpoint, error)
	CheckpointList(ctx context.Context, jobID string) ([]*Checkpoint, error)

	// ArtifactCommit records a job's outputs (fenced).
	ArtifactCommit(ctx context.Context, p *ArtifactCommitParams) (*Artifact, error)
	// ArtifactGet returns the outputs of a job's newest attempt that sent any.
	ArtifactGet(ctx context.Context, jobID string) (*Artifact, error)

	// AuditAppend links an event to the head of the audit chain.
	AuditAppend(ctx context.Context, ev *audit.Event) (*audit.Entry, error)
	// AuditList returns audit entries after a sequence number, oldest first.
	AuditList(ctx context.Context, p *AuditListParams) ([]audit.Entry, error)
	// AuditCheckpointAdd stores a signed checkpoint of the chain's head;
	// ErrConflict when one seals that entry already.
	AuditCheckpointAdd(ctx context.Context, c *audit.Checkpoint) error
	AuditCheckpointList(ctx context.Context) ([]audit.Checkpoint, error)

	// JoinTokenCreate records a join token of a pool (only its hash).
	JoinTokenCreate(ctx context.Context, t *JoinToken) error
	// JoinTokenByHash finds the join token with this hash, whatever its
	// state (check Valid).
	JoinTokenByHash(ctx context.Context, hash string) (*JoinToken, error)
	// JoinTokenList lists a pool's join tokens, oldest first.
	JoinTokenList(ctx context.Context, poolID string) ([]*JoinToken, error)
	// JoinTokenRevoke makes a join token useless from now on; revoking it
	// again keeps the first time.
	JoinTokenRevoke(ctx context.Context, id string, now time.Time) error
	// JoinTokensAdopt moves join tokens an older store kept in the clear
	// into the hashed table (hash digests them) and returns how many.
	JoinTokensAdopt(ctx context.Context, hash func(string) string) (int, error)

	// UserCreate records a user; a name already taken is ErrConflict.
	UserCreate(ctx context.Context, u *User) error
	UserGet(ctx context.Context, id string) (*User, error)
	UserGetByName(ctx context.Context, name string) (*User, error)
	// UserList lists users by name.
	UserList(ctx context.Context) ([]*User, error)

	// TokenCreate records an API token of a user (ErrNotFound for an
	// unknown user); only its hash is kept.
	TokenCreate(ctx context.Context, t *Token) error
	TokenGet(ctx context.Context, id string) (*Token, error)
	// TokenList lists a user's tokens (every user's for ""), oldest first.
	TokenList(ctx context.Context, userID string) ([]*Token, error)
	// TokenRevoke makes a token useless from now on; revoking a revoked
	// token keeps its first revocation time.
	TokenRevoke(ctx context.Context, id string, now time.Time) error

	// MemberPut gives a user a role in a project, replacing any other.
	MemberPut(ctx context.Context, m *Member) error
	// MemberDelete takes a user's role in a project away (ErrNotFound when
	// there was none).
	MemberDelete(ctx context.Context, project, userID string) error
	// MemberList lists roles by project, then user, filtered by project or
	// user (empty fields match all).
	MemberList(ctx context.Context, p *MemberListParams) ([]*Member, error)

	Close() error
}

// User is a person or a program that uses the API with tokens.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Admin may do anything: manage pools, users and every project.
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an API token of a user. Hash is a digest of its secret; the
// secret itself is shown once, when the token is made.
type Token struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: never
	RevokedAt time.Time `json:"revoked_at,omitzero"` // zero: not revoked
}

// Valid reports whether the token may be used at now.
func (t *Token) Valid(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// JoinToken admits agents to a pool; Hash is a digest of its secret, which
// is shown once, when it is made.
type JoinToken struct {
	ID        string    `json:"id"`
	PoolID    string    `json:"pool_id"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: never
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Valid reports whether the join token admits agents at now.
func (t *JoinToken) Valid(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Member is a user's role in a project.
type Member struct {
	Project string    `json:"project"`
	UserID  string    `json:"user_id"`
	Role    core.Role `json:"role"`
}

type MemberListParams struct {
	Project string
	UserID  string
}

type AuditListParams struct {
	AfterSeq int64
	Limit    int // 0: no limit
}

// PoolState says whether a pool takes new work.
type PoolState string

const (
	PoolActive      PoolState = "active"
	PoolDraining    PoolState = "draining"
	PoolQuarantined PoolState = "quarantined"
)

// Pool is a source of compute.
type Pool struct {
	ID     string    `json:"id"`
	Name   string    `json:"name"`
	Driver string    `json:"driver"` // "agent" for pools of lode agents
	Region string    `json:"region"`
	Tier   core.Tier `json:"tier"`
	State  PoolState `json:"state"`
	// StateReason says why the pool is in its state; StateChangedAt since
	// when (zero: since it was created).
	StateReason    string            `json:"state_reason,omitempty"`
	StateChangedAt time.Time         `json:"state_changed_at,omitzero"`
	Interconnect   core.Interconnect `json:"interconnect"`
	Prices         core.Prices       `json:"prices"`
	CreatedAt      time.Time         `json:"created_at"`
}

// Project is a tenant's budget and fair-share weight.
type Project struct {
	Name string `json:"name"`
	// Budget caps what the project may spend, in dollars; 0: none.
	Budget float64 `json:"budget"`
	// Weight is its share in fair sharing; 1 by default.
	Weight    float64   `json:"weight"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Usage is the metered record of one ended attempt: what it held, for how
// long, and what that cost. Lost and preempted attempts have one too.
type Usage struct {
	AttemptID    string            `json:"attempt_id"`
	JobID        string            `json:"job_id"`
	Project      string            `json:"project"`
	PoolID       string            `json:"pool_id"`
	State        core.AttemptState `json:"state"`
	GPUModel     string            `json:"gpu_model,omitempty"`
	Ranks        int               `json:"ranks"`
	Resources    core.Resources    `json:"resources"` // per rank
	StartedAt    time.Time         `json:"started_at,omitzero"`
	EndedAt      time.Time         `json:"ended_at"`
	Seconds      float64           `json:"seconds"`
	PricePerHour float64           `json:"price_per_hour"`
	Cost         float64           `json:"cost"`
}

type UsageListParams struct {
	JobID   string
	Project string
	PoolID  string
}

// NodeState says whether a node takes work.
type NodeState string

const (
	NodeReady NodeState = "ready"
	// NodeDraining nodes keep their lease but take no new work.
	NodeDraining NodeState = "draining"
	NodeLost     NodeState = "lost" // its lease expired
	NodeLeft     NodeState = "left" // it said goodbye
)

// Node is one machine of a pool.
type Node struct {
	ID     string    `json:"id"`
	PoolID string    `json:"pool_id"`
	Name   string    `json:"name"`
	State  NodeState `json:"state"`
	// MilliCPUs, MemoryBytes and GPUs are what the node offers in all.
	MilliCPUs   int64             `json:"milli_cpus"`
	MemoryBytes int64             `json:"memory_bytes"`
	GPUs        []core.GPU        `json:"gpus"`
	Labels      map[string]string `json:"labels,omitempty"`
	// CredentialHash is the SHA-256 (hex) of the secret the node presents.
	CredentialHash  string    `json:"-"`
	AgentVersion    string    `json:"agent_version"`
	RegisteredAt    time.Time `json:"registered_at"`
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
	LeaseExpiresAt  time.Time `json:"lease_expires_at"`
}

// NodeListParams filters NodeList; zero values match everything.
type NodeListParams struct {
	PoolID string
	State  NodeState
}

type NodeHeartbeatParams struct {
	NodeID         string
	Now            time.Time
	LeaseExpiresAt time.Time
}

type NodeExpireLeasesParams struct {
	Now time.Time
}

type NodeMarkLostParams struct {
	// LastSeen holds, by node ID, when each node last renewed its lease.
	LastSeen map[string]time.Time
	Now      time.Time
}

type NodeDrainParams struct {
	NodeID string
	Reason string
	Undo   bool
	Now    time.Time
}

type NodeSetCapacityParams struct {
	NodeID      string
	MilliCPUs   int64
	MemoryBytes int64
	GPUs        []core.GPU
}

type NodeLeaveParams struct {
	NodeID string
	Now    time.Time
}

// Job is a submitted spec and where it stands.
type Job struct {
	ID      string        `json:"id"`
	Name    string        `json:"name"`
	Project string        `json:"project"`
	Spec    spec.Job      `json:"spec"`
	State   core.JobState `json:"state"`
	Reason  string        `json:"reason"`
	// Priority is copied from the spec for ordering in SQL.
	Priority core.Priority `json:"priority"`
	// WorkdirObject and WorkdirManifest name the uploaded working directory
	// (empty when the job has none).
	WorkdirObject   string `json:"workdir_object,omitempty"`
	WorkdirManifest string `json:"workdir_manifest,omitempty"`
	// DataObject holds the job's checkpoints and outputs under one data key,
	// so a file that did not change is stored once.
	DataObject string `json:"data_object"`
	// Datasets are the dataset versions resolved at submission.
	Datasets        []DatasetRef    `json:"datasets,omitempty"`
	CurrentAttempt  string          `json:"current_attempt,omitempty"`
	Attempts        int             `json:"attempts"`
	Retries         core.RetryCount `json:"retries"`
	CancelRequested bool            `json:"cancel_requested"`
	// ExitCode is the exit code of the first failing rank, or 0.
	ExitCode   int       `json:"exit_code"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// IdempotencyKey is the key the job was submitted with, if any, unique
	// in its project; RequestHash is a digest of that submission, to tell
	// a retry from the key's reuse for another request.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	RequestHash    string `json:"-"`
}

// DatasetRef is a dataset version a job mounts.
type DatasetRef struct {
	Name     string `json:"name"`
	Version  int    `json:"version"`
	Mount    string `json:"mount"`
	ObjectID string `json:"object_id"`
	Manifest string `json:"manifest"`
}

type JobListParams struct {
	Project string          // empty: all projects
	States  []core.JobState // empty: all states
	Limit   int             // 0: no limit
}

type JobCancelParams struct {
	JobID string
	Now   time.Time
}

// Attempt is one placement of a job's gang.
type Attempt struct {
	ID    string `json:"id"`
	JobID string `json:"job_id"`
	// Seq numbers a job's attempts from 1.
	Seq    int               `json:"seq"`
	PoolID string            `json:"pool_id"`
	State  core.AttemptState `json:"state"`
	// FencingToken is the secret every write from this attempt carries.
	FencingToken string `json:"-"`
	Reason       string `json:"reason,omitempty"`
	// GPUModel and PricePerHour are what the attempt was placed at: the
	// model its ranks' GPUs are, and the price of all ranks together.
	GPUModel     string  `json:"gpu_model,omitempty"`
	PricePerHour float64 `json:"price_per_hour"`
	// PreemptRequested is set when the scheduler asked the attempt to stop.
	PreemptRequested bool      `json:"preempt_requested,omitempty"`
	Tasks            []*Task   `json:"tasks"`
	CreatedAt        time.Time `json:"created_at"`
	StartedAt        time.Time `json:"started_at,omitzero"`
	EndedAt          time.Time `json:"ended_at,omitzero"`
}

// Task is one rank of an attempt on its node.
type Task struct {
	AttemptID string         `json:"attempt_id"`
	Rank      int            `json:"rank"`
	NodeID    string         `json:"node_id"`
	State     core.TaskState `json:"state"`
	ExitCode  int            `json:"exit_code"`
	Message   string         `json:"message,omitempty"`
	// Resources is what the task holds on its node while it is not ended.
	Resources core.Resources `json:"resources"`
	StartedAt time.Time      `json:"started_at,omitzero"`
	EndedAt   time.Time      `json:"ended_at,omitzero"`
}

type AttemptCreateParams struct {
	JobID  string
	PoolID string
	// GPUModel and PricePerHour are recorded on the attempt for metering.
	GPUModel     string
	PricePerHour float64
	// NodeIDs holds one node per rank; rank i runs on NodeIDs[i].
	NodeIDs []string
	Now     time.Time
}

type AttemptPreemptParams struct {
	AttemptID string
	Reason    string
	Now       time.Time
}

// Assignment is a task as its node sees it.
type Assignment struct {
	Task         Task              `json:"task"`
	AttemptState core.AttemptState `json:"attempt_state"`
	// Preempting is set when the attempt was asked to stop for other work.
	Preempting   bool   `json:"preempting,omitempty"`
	FencingToken string `json:"fencing_token"`
	Job          *Job   `json:"job"`
	// Ranks lists the node of every rank of the attempt, for gang wiring.
	Ranks []string `json:"ranks"`
}

// Fence identifies the attempt a worker writes for.
type Fence struct {
	AttemptID string
	Token     string
}

type TaskUpdateParams struct {
	Fence    Fence
	Rank     int
	State    core.TaskState
	ExitCode int
	Message  string
	Now      time.Time
}

// LogStream names where output came from.
type LogStream string

const (
	Stdout LogStream = "stdout"
	Stderr LogStream = "stderr"
)

// LogChunk is a piece of a task's output.
type LogChunk struct {
	Seq       int64     `json:"seq"`
	JobID     string    `json:"job_id"`
	AttemptID string    `json:"attempt_id"`
	Rank      int       `json:"rank"`
	Stream    LogStream `json:"stream"`
	Data      []byte    `json:"data"`
	Time      time.Time `json:"time"`
}

type LogAppendParams struct {
	Fence  Fence
	Rank   int
	Stream LogStream
	Data   []byte
	Now    time.Time
}

type LogListParams struct {
	JobID    string
	AfterSeq int64
	Limit    int // 0: no limit
}

// Metric is one JSON line a task appended to its metrics file.
type Metric struct {
	Seq       int64           `json:"seq"`
	JobID     string          `json:"job_id"`
	AttemptID string          `json:"attempt_id"`
	Rank      int             `json:"rank"`
	Data      json.RawMessage `json:"data"`
	Time      time.Time       `json:"time"`
}

type MetricAppendParams struct {
	Fence Fence
	Rank  int
	Lines []json.RawMessage
	Now   time.Time
}

type MetricListParams struct {
	JobID    string
	AfterSeq int64
	Limit    int
}

// Object kinds.
const (
	ObjectWorkdir = "workdir"
	ObjectDataset = "dataset"
	ObjectJobData = "jobdata" // a job's checkpoints and outputs
)

// Object is an encrypted blob-store object: its chunks and manifests are
// sealed under one data key, stored here only wrapped by the key-encryption
// key.
type Object struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Project    string    `json:"project"`
	Name       string    `json:"name,omitempty"` // datasets only
	WrappedKey []byte    `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
}

// Dataset is one version of a named dataset.
type Dataset struct {
	Project        string              `json:"project"`
	Name           string              `json:"name"`
	Version        int                 `json:"version"`
	ObjectID       string              `json:"object_id"`
	Manifest       string              `json:"manifest"`
	Classification core.Classification `json:"classification"`
	Files          int                 `json:"files"`
	Bytes          int64               `json:"bytes"`
	CreatedAt      time.Time           `json:"created_at"`
}

// Checkpoint is a committed snapshot of a job's checkpoint directory.
type Checkpoint struct {
	JobID     string    `json:"job_id"`
	Version   int       `json:"version"`
	AttemptID string    `json:"attempt_id"`
	Manifest  string    `json:"manifest"`
	Files     int       `json:"files"`
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
}

type CheckpointCommitParams struct {
	Fence    Fence
	Manifest string
	Files    int
	Bytes    int64
	Now      time.Time
}

// Artifact is the set of outputs an attempt uploaded.
type Artifact struct {
	JobID     string    `json:"job_id"`
	AttemptID string    `json:"attempt_id"`
	Manifest  string    `json:"manifest"`
	Files     int       `json:"files"`
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
}

type ArtifactCommitParams struct {
	Fence    Fence
	Manifest string
	Files    int
	Bytes    int64
	Now      time.Time
}
