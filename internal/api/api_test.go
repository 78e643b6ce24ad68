package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/store/sqlite"
	"lode.dev/lode/internal/wire"
)

type nopScheduler struct{}

func (nopScheduler) Wake()                            {}
func (nopScheduler) Pending(string) []sched.Rejection { return nil }

type env struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	store store.Store
	pool  *store.Pool
	admin string // the administrator's token
}

// newEnv serves the API over real SQLite, a real key file and a real
// file-backed blob store.
func newEnv(t testing.TB) *env { return newEnvWithCA(t, nil) }

// newEnvWithCA is newEnv with the control plane's CA, when ca is not nil:
// the API is served over TLS, and nodes need their certificates.
func newEnvWithCA(t testing.TB, ca *pki.Authority) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "lode.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keeper, err := data.EnsureLocalKey(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := data.OpenKeyring(ctx, keeper)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close() })
	bucket, err := data.OpenBucket(ctx, "file://"+filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	pool := &store.Pool{ID: core.NewID("pool"), Name: "default", Driver: "agent", State: store.PoolActive, CreatedAt: time.Now().UTC()}
	if err := st.PoolCreate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// The pool's join token, "tok", as an operator would have made it.
	if err := st.JoinTokenCreate(ctx, &store.JoinToken{ID: core.NewID("jt"), PoolID: pool.ID, Hash: HashSecret("tok")}); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, Chunks: data.NewBucketStore(bucket), Keyring: kr, Scheduler: nopScheduler{},
		HeartbeatInterval: time.Second, LeaseTTL: 5 * time.Second, PublicURL: "http://lode.test", Authority: ca})
	hs := httptest.NewUnstartedServer(s.Handler())
	if ca != nil {
		cert, err := ca.ServingCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	e := &env{t: t, srv: s, http: hs, store: st, pool: pool}
	e.admin = e.user("admin", true)
	return e
}

// anonymous, as a header of do, sends the request with no credential.
const anonymous = "X-Test-Anonymous"

// user makes a user and returns a token of theirs.
func (e *env) user(name string, admin bool) string {
	e.t.Helper()
	ctx := context.Background()
	u := &store.User{ID: core.NewID("user"), Name: name, Admin: admin}
	if err := e.store.UserCreate(ctx, u); err != nil {
		e.t.Fatal(err)
	}
	id, secret, hash := NewToken()
	if err := e.store.TokenCreate(ctx, &store.Token{ID: id, UserID: u.ID, Name: "test", Hash: hash}); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// as returns headers that authenticate with a user's token.
func as(token string) map[string]string { return map[string]string{"Authorization": "Bearer " + token} }

// do sends a request and returns the status and body.
func (e *env) do(method, path string, body any, header map[string]string) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.http.URL+path, r)
	if header[wire.HeaderNode] == "" && header["Authorization"] == "" && header[wire.HeaderFence] == "" && header[anonymous] == "" {
		req.Header.Set("Authorization", "Bearer "+e.admin) // the administrator, unless the test says who
	}
	for k, v := range header {
		if k != anonymous {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb wire.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Message == "" {
		t.Fatalf("not an error body: %s", body)
	}
	return eb.Error.Code
}

func validSpec() spec.Job {
	return spec.Job{Name: "t", Project: "default", Command: []string{"true"}, Nodes: 1,
		Resources: core.Resources{MilliCPUs: 1000, MemoryBytes: 1 << 30}, Retries: core.RetryBudget{OnNodeLost: 1}}
}

func TestOpenAPIDocumentCoversEveryRoute(t *testing.T) {
	e := newEnv(t)
	code, body := e.do("GET", "/v1/openapi.json", nil, nil)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range e.srv.routes {
		op, ok := doc.Paths[r.path][strings.ToLower(r.method)]
		if !ok {
			t.Errorf("%s %s missing from the document", r.method, r.path)
			continue
		}
		id, _ := op["operationId"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s %s: operationId %q empty or repeated", r.method, r.path, id)
		}
		ids[id] = true
	}
	if doc.OpenAPI != "3.1.0" || len(ids) != len(e.srv.routes) {
		t.Errorf("openapi %q with %d operations for %d routes", doc.OpenAPI, len(ids), len(e.srv.routes))
	}
	if !bytes.Contains(body, []byte(`"SpecJob"`)) {
		t.Error("the job spec schema is not among the components")
	}
}

func TestBadRequestsGetClearErrorsAndWriteNothing(t *testing.T) {
	e := newEnv(t)
	noCommand := validSpec()
	noCommand.Command = nil
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/v1/jobs", `{"spec":`, 400, "bad_request"},
		{"unknown field", "POST", "/v1/jobs", `{"spec":{},"extra":1}`, 400, "bad_request"},
		{"trailing data", "POST", "/v1/jobs", `{} {}`, 400, "bad_request"},
		{"invalid spec", "POST", "/v1/jobs", wire.SubmitJob{Spec: noCommand}, 400, "bad_request"},
		{"missing workdir object", "POST", "/v1/jobs", wire.SubmitJob{Spec: validSpec(), WorkdirObject: "obj-nope", WorkdirManifest: "m"}, 400, "bad_request"},
		{"too large", "POST", "/v1/jobs", `{"spec":{"name":"` + strings.Repeat("a", maxJSONBody) + `"}}`, 413, "too_large"},
		{"unknown job", "GET", "/v1/jobs/job-nope", nil, 404, "not_found"},
		{"bad limit", "GET", "/v1/jobs?limit=-3", nil, 400, "bad_request"},
		{"object of unknown kind", "POST", "/v1/objects", wire.CreateObject{Kind: "jobdata", Project: "default"}, 400, "bad_request"},
		{"chunk for unknown object", "PUT", "/v1/objects/obj-nope/chunks/" + strings.Repeat("a", 64), "x", 404, "not_found"},
		{"bad chunk address", "GET", "/v1/objects/obj-nope/chunks/..%2f..%2fetc", nil, 400, "bad_request"},
		{"join with a wrong token", "POST", "/v1/agent/join", wire.Join{JoinToken: "wrong", Name: "n", MilliCPUs: 1000, MemoryBytes: 1}, 401, "unauthorized"},
		{"heartbeat without credentials", "POST", "/v1/agent/heartbeats", wire.Heartbeat{}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.do(tt.method, tt.path, tt.body, nil)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if got := errorCode(t, body); got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
		})
	}
	jobs, _ := e.store.JobList(context.Background(), &store.JobListParams{})
	if len(jobs) != 0 {
		t.Errorf("bad requests created jobs: %v", jobs)
	}
}

// beat sends one heartbeat on a stream of its own and returns the status and
// the answer's frame (nil when the stream was refused).
func (e *env) beat(hb wire.Heartbeat, auth map[string]string) (int, *wire.BeatFrame, []byte) {
	e.t.Helper()
	status, body := e.do("POST", "/v1/agent/heartbeats", hb, auth)
	if status != 200 {
		return status, nil, body
	}
	frames := wire.NewFrameReader(bytes.NewReader(body))
	var f wire.BeatFrame
	if err := frames.Read(&f); err != nil {
		e.t.Fatalf("heartbeat stream: %v: %s", err, body)
	}
	if err := frames.Read(&wire.BeatFrame{}); err != io.EOF {
		e.t.Fatalf("heartbeat stream: one heartbeat answered by more than one frame: %s", body)
	}
	return status, &f, body
}

// join registers a node and returns the headers that authenticate it.
func (e *env) join() (string, map[string]string) {
	e.t.Helper()
	status, body := e.do("POST", "/v1/agent/join", wire.Join{JoinToken: "tok", Name: "n1", MilliCPUs: 4000, MemoryBytes: 8 << 30}, nil)
	if status != 201 {
		e.t.Fatalf("join: %d %s", status, body)
	}
	var j wire.Joined
	json.Unmarshal(body, &j)
	return j.NodeID, map[string]string{wire.HeaderNode: j.NodeID, "Authorization": "Bearer " + j.Credential}
}

func TestAgentFlowAndFencing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	nodeID, auth := e.join()
	a := e.place(validSpec(), nodeID)

	status, f, body := e.beat(wire.Heartbeat{}, auth)
	if status != 200 || f.Reply == nil || len(f.Reply.Start) != 1 || f.Reply.Start[0].FencingToken == "" || len(f.Reply.Start[0].Keys) == 0 {
		t.Fatalf("heartbeat: %d %s; want one task to start with its token and keys", status, body)
	}
	reply := f.Reply
	token := reply.Start[0].FencingToken

	path := "/v1/agent/attempts/" + a.ID + "/ranks/0/"
	wrong := map[string]string{wire.HeaderFence: "forged"}
	for k, v := range auth {
		wrong[k] = v
	}
	status, body = e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("x")}, wrong)
	if status != 409 || errorCode(t, body) != "fenced" {
		t.Fatalf("forged token: %d %s; want 409 fenced", status, body)
	}
	good := map[string]string{wire.HeaderFence: token}
	for k, v := range auth {
		good[k] = v
	}
	for _, st := range []wire.TaskStatus{{State: core.TaskRunning}, {State: core.TaskExited, ExitCode: 0}} {
		if status, body := e.do("POST", path+"status", st, good); status != 204 {
			t.Fatalf("report %s: %d %s", st.State, status, body)
		}
	}
	job, _ := e.store.JobGet(ctx, a.JobID)
	if job.State != core.JobSucceeded {
		t.Errorf("job state %s, want succeeded", job.State)
	}
	// The attempt has ended: its token is stale now.
	status, body = e.do("POST", path+"logs", wire.TaskLog{Stream: store.Stdout, Data: []byte("late")}, good)
	if status != 409 || errorCode(t, body) != "fenced" {
		t.Errorf("write after the end: %d %s; want 409 fenced", status, body)
	}
	logs, _ := e.store.LogList(ctx, &store.LogListParams{JobID: a.JobID})
	if len(logs) != 0 {
		t.Errorf("fenced writes were stored: %v", logs)
	}
	// A node that left is told it is gone when it comes back.
	if status, body := e.do("POST", "/v1/agent/leave", nil, auth); status != 204 {
		t.Fatalf("leave: %d %s", status, body)
	}
	if n, _ := e.store.NodeGet(ctx, nodeID); n.State != store.NodeLeft {
		t.Errorf("node %s after leaving, want left", n.State)
	}
	if status, _, body := e.beat(wire.Heartbeat{}, auth); status != 410 || errorCode(t, body) != "node_gone" {
		t.Errorf("heartbeat of a gone node: %d %s; want 410 node_gone", status, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/v1/health", nil, nil)
	status, body := e.do("GET", "/metrics", nil, nil)
	if status != 200 || !bytes.Contains(body, []byte(`lode_http_requests_total{code="200",route="GET /v1/health"} 1`)) {
		t.Errorf("metrics: %d\n%s", status, body)
	}
}

// FuzzRequests throws arbitrary bodies at every endpoint that decodes one:
// the server must answer with a client error, never a 5xx or a panic.
func FuzzRequests(f *testing.F) {
	f.Add(0, []byte(`{"spec":{"name":"x"}}`))
	f.Add(1, []byte(`{"kind":"dataset","project":"p","name":"n"}`))
	f.Add(2, []byte(`{"join_token":"tok","name":"n","milli_cpus":1,"memory_bytes":1}`))
	f.Add(3, []byte(`{"addrs":["zz"]}`))
	f.Add(4, []byte(`{"project":"p","name":"n","object_id":"obj-x","manifest":"m"}`))
	f.Add(5, []byte(`{"name":"ada","admin":true}`))
	f.Add(6, []byte(`{"user":"ada","name":"ci","expires_in_s":60}`))
	f.Add(7, []byte(`{"expires_in_s":3600}`))
	f.Add(8, []byte(`{"role":"member"}`))
	paths := []string{"/v1/jobs", "/v1/objects", "/v1/agent/join", "/v1/objects/obj-x/missing", "/v1/datasets",
		"/v1/users", "/v1/tokens", "/v1/pools/default/join-tokens", "/v1/projects/p/members/ada"}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, which int, body []byte) {
		if which < 0 {
			which = -which
		}
		e.t = t
		path, method := paths[which%len(paths)], "POST"
		if strings.Contains(path, "/members/") {
			method = "PUT"
		}
		status, out := e.do(method, path, body, nil)
		if status >= 500 {
			t.Fatalf("status %d for %q: %s", status, body, out)
		}
	})
}

// TestExpiredLeaseIsGone: once the lease book lets a node's lease run out,
// its heartbeats are answered 410 and it must join again.
func TestExpiredLeaseIsGone(t *testing.T) {
	e := newEnv(t)
	_, auth := e.join()
	if _, f, body := e.beat(wire.Heartbeat{}, auth); f == nil || f.Reply == nil {
		t.Fatalf("heartbeat of a fresh node: %s", body)
	}
	if lost := e.srv.leases.Expire(time.Now().Add(time.Hour)); len(lost) != 1 {
		t.Fatalf("expired %v; want the one node", lost)
	}
	if status, _, body := e.beat(wire.Heartbeat{}, auth); status != 410 || errorCode(t, body) != "node_gone" {
		t.Errorf("heartbeat after the lease ran out: %d %s; want 410 node_gone", status, body)
	}
	wrong := map[string]string{wire.HeaderNode: auth[wire.HeaderNode], "Authorization": "Bearer forged"}
	if status, _, body := e.beat(wire.Heartbeat{}, wrong); status != 401 {
		t.Errorf("a forged credential for a gone node: %d %s; want 401", status, body)
	}
}

// TestHeartbeatStream: one request carries many heartbeats, each answered
// in turn; a bad frame is answered with an error frame that names it, and
// ends the stream.
func TestHeartbeatStream(t *testing.T) {
	e := newEnv(t)
	_, auth := e.join()
	body := `{"tasks":[]}` + "\n" + `{"tasks":[]}` + "\n" + `{"tasks":[],"extra":1}` + "\n" + `{"tasks":[]}` + "\n"
	status, out := e.do("POST", "/v1/agent/heartbeats", body, auth)
	if status != 200 {
		t.Fatalf("stream: %d %s", status, out)
	}
	frames := wire.NewFrameReader(bytes.NewReader(out))
	for i := range 2 {
		var f wire.BeatFrame
		if err := frames.Read(&f); err != nil || f.Reply == nil || f.Reply.LeaseExpiresAt.IsZero() {
			t.Fatalf("answer %d: %+v, %v", i+1, f, err)
		}
	}
	var f wire.BeatFrame
	if err := frames.Read(&f); err != nil || f.Error == nil || f.Error.Code != "bad_request" || !strings.Contains(f.Error.Message, "frame 3") {
		t.Fatalf("answer to the bad frame: %+v, %v; want a bad_request error naming frame 3", f.Error, err)
	}
	if err := frames.Read(&f); err != io.EOF {
		t.Errorf("after the error frame: %v; want the end of the stream", err)
	}
}

// TestHeartbeatReportsCapacity: a heartbeat may carry the node's current
// offer, which replaces what it declared at join; a nonsensical one is
// refused.
func TestHeartbeatReportsCapacity(t *testing.T) {
	e := newEnv(t)
	nodeID, auth := e.join()
	gpus := []core.GPU{{Model: "h100", MemoryBytes: 80 << 30}, {Model: "h100", MemoryBytes: 80 << 30}}
	offer := &wire.Capacity{MilliCPUs: 1500, MemoryBytes: 2 << 30, GPUs: gpus}
	if _, f, body := e.beat(wire.Heartbeat{Capacity: offer}, auth); f == nil || f.Reply == nil {
		t.Fatalf("heartbeat with a capacity: %s", body)
	}
	n, err := e.store.NodeGet(context.Background(), nodeID)
	if err != nil {
		t.Fatal(err)
	}
	if n.MilliCPUs != 1500 || n.MemoryBytes != 2<<30 || len(n.GPUs) != 2 || n.GPUs[0].Model != "h100" {
		t.Errorf("node after the heartbeat: %d millicpus, %d bytes, GPUs %v; want the offer", n.MilliCPUs, n.MemoryBytes, n.GPUs)
	}
	bad := &wire.Capacity{MilliCPUs: -1}
	if _, f, body := e.beat(wire.Heartbeat{Capacity: bad}, auth); f == nil || f.Error == nil || f.Error.Code != "bad_request" {
		t.Errorf("a negative capacity: %s; want a bad_request frame", body)
	}
	if n, _ := e.store.NodeGet(context.Background(), nodeID); n.MilliCPUs != 1500 {
		t.Errorf("a refused capacity was recorded: %d millicpus", n.MilliCPUs)
	}
}

// TestSubmitIsIdempotentWithAKey: a submission retried with its key answers
// with the job the first one queued; the key reused for another request is
// a conflict; nothing is queued twice.
func TestSubmitIsIdempotentWithAKey(t *testing.T) {
	e := newEnv(t)
	submit := func(key string, s spec.Job) (*http.Response, wire.JobDetail) {
		t.Helper()
		b, _ := json.Marshal(wire.SubmitJob{Spec: s})
		req, _ := http.NewRequest("POST", e.http.URL+"/v1/jobs", bytes.NewReader(b))
		req.Header.Set(wire.HeaderIdempotencyKey, key)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d wire.JobDetail
		json.NewDecoder(resp.Body).Decode(&d)
		return resp, d
	}
	first, d1 := submit("k-1", validSpec())
	if first.StatusCode != 201 || first.Header.Get(wire.HeaderReplayed) != "" {
		t.Fatalf("first submission: %d %v", first.StatusCode, first.Header)
	}
	again, d2 := submit("k-1", validSpec())
	if again.StatusCode != 200 || again.Header.Get(wire.HeaderReplayed) != "true" || d2.ID != d1.ID {
		t.Errorf("retry: %d %v job %s; want 200, replayed, job %s", again.StatusCode, again.Header, d2.ID, d1.ID)
	}
	other := validSpec()
	other.Name = "something-else"
	if resp, _ := submit("k-1", other); resp.StatusCode != 409 {
		t.Errorf("the key reused for another job: %d, want 409", resp.StatusCode)
	}
	if resp, _ := submit(strings.Repeat("k", maxIdempotencyKey+1), validSpec()); resp.StatusCode != 400 {
		t.Errorf("an oversized key: %d, want 400", resp.StatusCode)
	}
	if resp, d3 := submit("k-2", validSpec()); resp.StatusCode != 201 || d3.ID == d1.ID {
		t.Errorf("another key: %d job %s; want a new job", resp.StatusCode, d3.ID)
	}
	jobs, _ := e.store.JobList(context.Background(), &store.JobListParams{})
	if len(jobs) != 2 {
		t.Errorf("%d jobs queued, want 2 (one per key)", len(jobs))
	}
}

// TestClientRetriesASubmitWhoseAnswerWasLost: the server queues the job and
// the connection breaks before the answer (as when the control plane
// crashes at that moment); the client sends the submission again with the
// same key and gets the same job; one job is queued.
func TestClientRetriesASubmitWhoseAnswerWasLost(t *testing.T) {
	e := newEnv(t)
	var cut atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/jobs" && cut.CompareAndSwap(false, true) {
			e.srv.Handler().ServeHTTP(httptest.NewRecorder(), r) // the job is queued...
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close() // ...and the answer is lost
			}
			return
		}
		e.srv.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithToken(e.admin)
	d, err := c.SubmitJob(t.Context(), &wire.SubmitJob{Spec: validSpec()})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if !cut.Load() {
		t.Fatal("the first answer was never cut")
	}
	jobs, _ := e.store.JobList(context.Background(), &store.JobListParams{})
	if len(jobs) != 1 || jobs[0].ID != d.ID {
		t.Errorf("jobs queued: %d (answer named %s); want exactly the one", len(jobs), d.ID)
	}
}

// TestKeysAreRefusedWhereThePolicyForbids: a confidential job placed on a
// community pool's node (as a scheduler bug would) gets no keys there: the
// heartbeat starts nothing, the attempt fails, and the audit log records the
// refusal and no grant.
func TestKeysAreRefusedWhereThePolicyForbids(t *testing.T) {
	e := newEnv(t) // its pool is a community pool
	ctx := context.Background()
	nodeID, auth := e.join()
	sp := validSpec()
	sp.Classification = core.ClassConfidential
	a := e.place(sp, nodeID)
	_, f, body := e.beat(wire.Heartbeat{}, auth)
	if f == nil || f.Reply == nil || len(f.Reply.Start) != 0 {
		t.Fatalf("heartbeat: %s; want an answer that starts nothing", body)
	}
	got, err := e.store.AttemptGet(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != core.AttemptFailed {
		t.Errorf("attempt %s, want failed", got.State)
	}
	entries, err := e.store.AuditList(ctx, &store.AuditListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var refused bool
	for _, en := range entries {
		if en.Event.Subject != a.ID {
			continue
		}
		switch en.Event.Kind {
		case audit.GrantRefused:
			refused = true
		case audit.KeyGranted:
			t.Errorf("the audit log records a grant for the attempt: %+v", en.Event)
		}
	}
	if !refused {
		t.Error("the audit log does not record the refusal")
	}
}

// TestNodesAuthenticateWithTheirCertificates: over TLS with the control
// plane's CA, a node joins with a certificate request and must present the
// certificate it got: its credential alone, or another node's certificate,
// is refused; renewal gives a new certificate that works.
func TestNodesAuthenticateWithTheirCertificates(t *testing.T) {
	ca, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWithCA(t, ca)
	ctx := t.Context()
	base, err := client.New(e.http.URL, client.TrustCA(ca.CertPEM()))
	if err != nil {
		t.Fatal(err)
	}
	join := func(name string) (*client.Client, *wire.Joined) {
		t.Helper()
		node, joined, err := base.JoinAs(ctx, &wire.Join{JoinToken: "tok", Name: name, MilliCPUs: 1000, MemoryBytes: 1 << 30})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		return node, joined
	}
	a, ja := join("a")
	_, jb := join("b")
	if _, err := a.Heartbeat(ctx, &wire.Heartbeat{}); err != nil {
		t.Fatalf("a node with its certificate: %v", err)
	}
	// The credential without the certificate.
	if _, err := base.WithNode(ja.NodeID, ja.Credential).Heartbeat(ctx, &wire.Heartbeat{}); !client.IsUnauthorized(err) {
		t.Errorf("the credential without the certificate: %v, want unauthorized", err)
	}
	// Node a's certificate speaking for node b.
	if _, err := a.WithNode(jb.NodeID, jb.Credential).Heartbeat(ctx, &wire.Heartbeat{}); !client.IsUnauthorized(err) {
		t.Errorf("another node's certificate: %v, want unauthorized", err)
	}
	// A join without a certificate request is refused.
	if _, err := base.Join(ctx, &wire.Join{JoinToken: "tok", Name: "c", MilliCPUs: 1000, MemoryBytes: 1 << 30}); err == nil {
		t.Error("a join without a certificate request: want an error")
	}
	old := a.Identity().Certificate()
	if err := a.RenewCertificate(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if a.Identity().Certificate().Equal(old) {
		t.Error("renewal kept the old certificate")
	}
	if _, err := a.Heartbeat(ctx, &wire.Heartbeat{}); err != nil {
		t.Errorf("after renewal: %v", err)
	}
	// Fetching the CA by its fingerprint, as an agent given only that does.
	pem, err := client.FetchCA(ctx, e.http.URL, ca.Fingerprint())
	if err != nil || string(pem) != string(ca.CertPEM()) {
		t.Errorf("FetchCA: %v", err)
	}
	other, _ := pki.Open(t.TempDir())
	if _, err := client.FetchCA(ctx, e.http.URL, other.Fingerprint()); err == nil {
		t.Error("FetchCA with another CA's fingerprint: want an error")
	}
}

// TestJoinTokensExpireAndAreRevoked: a join token made through the API is
// shown once, stored only as its hash, admits agents until it expires or is
// revoked, and then is refused with the reason.
func TestJoinTokensExpireAndAreRevoked(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.srv.cfg.Now = func() time.Time { return now }
	status, body := e.do("POST", "/v1/pools/default/join-tokens", wire.NewJoinToken{ExpiresInS: 3600}, nil)
	if status != 201 {
		t.Fatalf("new join token: %d %s", status, body)
	}
	var jt wire.JoinToken
	json.Unmarshal(body, &jt)
	if jt.Token == "" || !strings.Contains(jt.Command, jt.Token) {
		t.Fatalf("new join token: %s; want the secret and the command that uses it", body)
	}
	stored, err := e.store.JoinTokenByHash(context.Background(), HashSecret(jt.Token))
	if err != nil || stored.ID != jt.ID || stored.Hash == jt.Token {
		t.Fatalf("stored join token: %+v, %v; want it found by its hash, and not the secret", stored, err)
	}
	_, listed := e.do("GET", "/v1/pools/default/join-tokens", nil, nil)
	if bytes.Contains(listed, []byte(jt.Token)) {
		t.Error("the listing holds a token's secret")
	}
	join := func() (int, []byte) {
		return e.do("POST", "/v1/agent/join", wire.Join{JoinToken: jt.Token, Name: "n", MilliCPUs: 1000, MemoryBytes: 1 << 30}, nil)
	}
	if status, body := join(); status != 201 {
		t.Fatalf("join with a fresh token: %d %s", status, body)
	}
	now = now.Add(2 * time.Hour)
	if status, body := join(); status != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("join with an expired token: %d %s; want 401 saying it expired", status, body)
	}
	now = now.Add(-2 * time.Hour)
	if status, body := e.do("DELETE", "/v1/join-tokens/"+jt.ID, nil, nil); status != 204 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if status, body := join(); status != 401 || !strings.Contains(string(body), "revoked") {
		t.Errorf("join with a revoked token: %d %s; want 401 saying it was revoked", status, body)
	}
	// "tok", the env's own token, still admits: revocation is per token.
	if status, body := e.do("POST", "/v1/agent/join", wire.Join{JoinToken: "tok", Name: "m", MilliCPUs: 1000, MemoryBytes: 1 << 30}, nil); status != 201 {
		t.Errorf("join with another token of the pool: %d %s", status, body)
	}
}

// TestWorkersWriteOnlyTheirJobsData: a node running a job may read the
// datasets the job mounts and write the job's own data object, but never
// write a dataset it was given to read (which would destroy it for every
// job of the project).
func TestWorkersWriteOnlyTheirJobsData(t *testing.T) {
	e := newEnv(t)
	status, body := e.do("POST", "/v1/objects", wire.CreateObject{Kind: store.ObjectDataset, Project: "default", Name: "ds"}, nil)
	if status != 201 {
		t.Fatalf("dataset object: %d %s", status, body)
	}
	var ds wire.ObjectKey
	json.Unmarshal(body, &ds)
	manifest := "m-" + strings.Repeat("a", 64)
	sealed := bytes.Repeat([]byte{7}, 64) // the server cannot tell a seal from bytes of its size
	if status, body := e.do("PUT", "/v1/objects/"+ds.ObjectID+"/manifests/"+manifest, []byte("short"), nil); status != 400 {
		t.Errorf("a manifest too short to be sealed: %d %s; want 400", status, body)
	}
	if status, body := e.do("PUT", "/v1/objects/"+ds.ObjectID+"/manifests/"+manifest, sealed, nil); status != 204 {
		t.Fatalf("dataset manifest: %d %s", status, body)
	}
	if status, body := e.do("POST", "/v1/datasets", wire.CommitDataset{Project: "default", Name: "ds", ObjectID: ds.ObjectID, Manifest: manifest}, nil); status != 201 {
		t.Fatalf("commit dataset: %d %s", status, body)
	}
	nodeID, auth := e.join()
	sp := validSpec()
	sp.Datasets = []spec.Dataset{{Name: "ds", Mount: "data"}}
	a := e.place(sp, nodeID)
	j, err := e.store.JobGet(context.Background(), a.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := e.do("GET", "/v1/objects/"+ds.ObjectID+"/manifests/"+manifest, nil, auth); status != 200 {
		t.Errorf("the node reads the dataset its job mounts: %d %s", status, body)
	}
	if status, body := e.do("PUT", "/v1/objects/"+ds.ObjectID+"/manifests/"+manifest, sealed, auth); status != 403 {
		t.Errorf("the node overwrites the dataset: %d %s; want 403", status, body)
	}
	if status, body := e.do("PUT", "/v1/objects/"+ds.ObjectID+"/chunks/"+strings.Repeat("b", 64), sealed, auth); status != 403 {
		t.Errorf("the node writes a chunk into the dataset: %d %s; want 403", status, body)
	}
	if status, body := e.do("PUT", "/v1/objects/"+j.DataObject+"/manifests/"+manifest, sealed, auth); status != 204 {
		t.Errorf("the node writes its job's data object: %d %s; want 204", status, body)
	}
}
