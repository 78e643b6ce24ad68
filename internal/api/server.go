// Package api serves Lode's REST API under /v1/: the user API (jobs, pools,
// nodes, datasets, objects) and the agent API (join, heartbeat, task
// reports), the OpenAPI document that describes both, and Prometheus metrics.
// Handlers translate between HTTP and the store; decisions live elsewhere.
package api

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/lease"
	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/reliability"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// Config is what a Server needs.
type Config struct {
	Store   store.Store
	Chunks  *data.BucketStore
	Keyring *data.Keyring
	Logger  *slog.Logger
	Now     func() time.Time
	// Scheduler is woken when there may be new work, and tells why a job
	// waits.
	Scheduler Scheduler
	// HeartbeatInterval and LeaseTTL are handed to agents at join.
	HeartbeatInterval time.Duration
	LeaseTTL          time.Duration
	// PublicURL is the address agents should dial, used in the join
	// command the server prints.
	PublicURL string
	Version   string
	// Reliability is the quarantine policy, for scoring pools in listings.
	Reliability reliability.Policy
	// Leases is the lease book the control loop shares; New makes one
	// when it is nil.
	Leases *lease.Book
	// AuditKey is the public key that verifies the audit log's checkpoints.
	AuditKey ed25519.PublicKey
	// Policy is the data policy the scheduler places by, checked again
	// before a node gets a job's keys; the zero value is the default.
	Policy sched.Policy
	// Authority is the control plane's CA. With it, joining nodes get a
	// certificate, and the agent API requires mutual TLS with it; without
	// it (tests over plain HTTP) a node's credential alone authenticates.
	Authority *pki.Authority
	// NodeCertLife is how long a node certificate is valid (a day by
	// default); agents renew theirs before it ends.
	NodeCertLife time.Duration
}

// Scheduler is the part of the control loop the API talks to.
type Scheduler interface {
	Wake()
	Pending(jobID string) []sched.Rejection
}

// Server is the HTTP API. Create it with New; it is safe for concurrent use.
type Server struct {
	cfg     Config
	leases  *lease.Book
	mux     *http.ServeMux
	metrics *metrics
	routes  []route
	changes *changes

	// internal maps the hashes of join tokens made for agents of this
	// process to their pools.
	internalMu sync.Mutex
	internal   map[string]string
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Leases == nil {
		cfg.Leases = lease.NewBook()
	}
	if cfg.NodeCertLife == 0 {
		cfg.NodeCertLife = 24 * time.Hour
	}
	s := &Server{cfg: cfg, leases: cfg.Leases, mux: http.NewServeMux(), changes: newChanges(), internal: map[string]string{}}
	s.metrics = newMetrics(cfg.Store)
	s.register()
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Changed wakes everyone waiting for news of jobs (log followers). The
// control loop calls it after it changed job states.
func (s *Server) Changed() { s.changes.broadcast() }

// route is one endpoint, described for the OpenAPI document.
type route struct {
	method, path, summary string
	tag                   string
	request, response     any // zero values of the body types, or nil
	// media, when set, is the media type of a streamed body.
	media string
	// access says who may call it (auth.go).
	access access
}

// handle registers an endpoint and its description.
func (s *Server) handle(r route, h func(http.ResponseWriter, *http.Request) error) {
	s.routes = append(s.routes, r)
	pattern := r.method + " " + r.path
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		req, err := s.authenticate(req, r.access)
		if err == nil {
			err = h(rec, req)
		}
		if err != nil {
			s.writeError(rec, req, err)
		}
		s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(rec.status)).Inc()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// full duplex).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// apiError is an error with the HTTP status and body it should produce.
type apiError struct {
	status int
	body   wire.Error
	cause  error // matched by errors.Is, if set
}

func (e *apiError) Error() string { return e.body.Message }
func (e *apiError) Unwrap() error { return e.cause }

func errorf(status int, code, hint, format string, args ...any) error {
	return &apiError{status: status, body: wire.Error{Code: code, Message: fmt.Sprintf(format, args...), Hint: hint}}
}

func badRequest(hint, format string, args ...any) error {
	return errorf(http.StatusBadRequest, "bad_request", hint, format, args...)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if status, body, ok := s.problem(r, err); ok {
		writeJSON(w, status, wire.ErrorBody{Error: body})
	}
}

// problem turns an error into the status and body it should produce; ok is
// false when there is nobody to answer (the client went away).
func (s *Server) problem(r *http.Request, err error) (status int, body wire.Error, ok bool) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, store.ErrNotFound), errors.Is(err, data.ErrNotFound):
		ae = &apiError{status: http.StatusNotFound, body: wire.Error{Code: "not_found", Message: err.Error()}}
	case errors.Is(err, store.ErrConflict), errors.Is(err, core.ErrTransition):
		ae = &apiError{status: http.StatusConflict, body: wire.Error{Code: "conflict", Message: err.Error()}}
	case errors.Is(err, store.ErrFenced):
		s.metrics.fenced.Inc()
		s.record(r.Context(), audit.WriteFenced, claimant(r), cmp.Or(r.PathValue("attempt"), r.Header.Get(wire.HeaderAttempt)), "",
			map[string]string{"path": r.URL.Path})
		ae = &apiError{status: http.StatusConflict, body: wire.Error{Code: "fenced", Message: err.Error(),
			Hint: "this attempt is no longer current; stop the task"}}
	case errors.Is(err, store.ErrNodeGone):
		ae = &apiError{status: http.StatusGone, body: wire.Error{Code: "node_gone", Message: err.Error(),
			Hint: "stop this node's tasks and join again"}}
	case errors.Is(err, data.ErrNoSpace):
		s.cfg.Logger.Error("blob store is full", slog.Any("err", err))
		ae = &apiError{status: http.StatusInsufficientStorage, body: wire.Error{Code: "no_space",
			Message: "the control plane's blob store is out of space; the upload was not committed",
			Hint:    "free space where the server keeps its blobs, or point --blob-url at larger storage"}}
	case errors.Is(err, data.ErrBadName), errors.Is(err, data.ErrBadSize):
		ae = &apiError{status: http.StatusBadRequest, body: wire.Error{Code: "bad_request", Message: err.Error()}}
	case errors.Is(err, context.Canceled):
		return 0, wire.Error{}, false
	default:
		s.cfg.Logger.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		ae = &apiError{status: http.StatusInternalServerError, body: wire.Error{Code: "internal", Message: "internal error: " + err.Error()}}
	}
	// Refused access, a node that is gone coming back, and uploads refused
	// as malformed or too large are security-relevant whoever tried them.
	kind := ""
	switch {
	case ae.status == http.StatusUnauthorized || ae.status == http.StatusForbidden:
		kind = audit.AccessDenied
	case ae.body.Code == "node_gone":
		kind = audit.NodeRefused
	case ae.status == http.StatusRequestEntityTooLarge || ae.status == http.StatusBadRequest && isUpload(r):
		kind = audit.UploadRejected
	}
	if kind != "" {
		who := actor(r.Context())
		if kind == audit.NodeRefused || who == "anonymous" {
			// Who the refused request claimed to be, though it could not
			// prove it: the node or attempt its headers name.
			who = claimant(r)
		}
		s.record(r.Context(), kind, who, r.Method+" "+r.URL.Path, "",
			map[string]string{"code": ae.body.Code, "reason": ae.body.Message, "from": r.RemoteAddr})
	}
	return ae.status, ae.body, true
}

// claimant names the worker a fenced or node_gone refusal came from: the
// node its headers name (which showed its credential and certificate
// before it was found gone or its write fenced), else the attempt whose
// fencing token it presented.
func claimant(r *http.Request) string {
	if id := r.Header.Get(wire.HeaderNode); id != "" {
		return "node:" + id
	}
	if id := cmp.Or(r.PathValue("attempt"), r.Header.Get(wire.HeaderAttempt)); id != "" {
		return "attempt:" + id
	}
	return actor(r.Context())
}

// isUpload reports whether r sends data to store: an object's chunks or
// manifests, a dataset.
func isUpload(r *http.Request) bool {
	return r.Method != http.MethodGet && (strings.HasPrefix(r.URL.Path, "/v1/objects") || strings.HasPrefix(r.URL.Path, "/v1/datasets"))
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// maxJSONBody bounds request bodies that are JSON; chunks have their own limit.
const maxJSONBody = 8 << 20

// decode reads a JSON body strictly: unknown fields and trailing data are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "", "request body over %d bytes", maxJSONBody)
		}
		return badRequest("send a JSON object as the OpenAPI document at /v1/openapi.json describes", "malformed request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "malformed request body: data after the JSON object")
	}
	return nil
}

// changes lets handlers wait for the next state change without polling.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func newChanges() *changes { return &changes{ch: make(chan struct{})} }

// wait returns a channel closed at the next broadcast.
func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *changes) broadcast() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// metrics are the server's Prometheus metrics, in a registry of its own so
// that several servers can live in one process (tests).
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	submitted prometheus.Counter
	beats     prometheus.Counter
	fenced    prometheus.Counter
	reports   *prometheus.CounterVec
}

func newMetrics(st store.Store) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lode_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "lode_jobs_submitted_total", Help: "Jobs submitted."}),
		beats:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lode_heartbeats_total", Help: "Agent heartbeats received."}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lode_fenced_writes_total", Help: "Writes refused because their attempt was no longer current.",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lode_task_reports_total", Help: "Task state reports from agents, by state.",
		}, []string{"state"}),
	}
	jobs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lode_jobs_active", Help: "Jobs queued, placed or running."},
		func() float64 {
			js, err := st.JobList(context.Background(), &store.JobListParams{
				States: []core.JobState{core.JobQueued, core.JobPlaced, core.JobRunning}})
			if err != nil {
				return -1
			}
			return float64(len(js))
		})
	nodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lode_nodes_ready", Help: "Nodes whose lease holds."},
		func() float64 {
			ns, err := st.NodeList(context.Background(), &store.NodeListParams{State: store.NodeReady})
			if err != nil {
				return -1
			}
			return float64(len(ns))
		})
	m.registry.MustRegister(m.requests, m.submitted, m.beats, m.fenced, m.reports, jobs, nodes,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}
