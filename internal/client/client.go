// Package client is the Go client of Lode's REST API, used by the CLI and
// the agent. It turns error responses back into *Error values, and
// implements data.ChunkStore over HTTP so data moves through the same code
// on both sides.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// Client talks to one Lode server. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
	// node and credential authenticate agent requests.
	node, credential string
	// token authenticates a user's requests.
	token string
	// attempt and fence authenticate a runner's requests for its attempt.
	attempt, fence string
	// roots are the CAs the client trusts (nil: the system's); id is the
	// node's certificate, for mutual TLS.
	roots *x509.CertPool
	id    *Identity
}

// Option configures a client.
type Option func(*options)

type options struct {
	roots *x509.CertPool
}

// TrustCA makes the client trust the server's certificate when the CA with
// this PEM certificate signed it (the control plane's own CA), instead of
// the system's roots.
func TrustCA(certPEM []byte) Option {
	return func(o *options) {
		if len(certPEM) == 0 {
			return // none given: the system's roots
		}
		if o.roots == nil {
			o.roots = x509.NewCertPool()
		}
		o.roots.AppendCertsFromPEM(certPEM)
	}
}

// New returns a client for the server at baseURL (https://host:port).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bad server address %q: want https://HOST:PORT", baseURL)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), roots: o.roots}
	c.http = c.newHTTP(nil)
	return c, nil
}

// newHTTP makes the client's HTTP client; a node's presents its
// certificate.
func (c *Client) newHTTP(id *Identity) *http.Client {
	tc := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	if id != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.current(), nil }
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   false, // heartbeat streams are HTTP/1.1 full duplex
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// WithNode returns a copy of the client that authenticates as a node.
func (c *Client) WithNode(nodeID, credential string) *Client {
	cc := *c
	cc.node, cc.credential = nodeID, credential
	return &cc
}

// WithToken returns a copy of the client that authenticates as the user
// whose API token this is.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// WithAttempt returns a copy of the client that authenticates with an
// attempt's fencing token, as a runner does: for the attempt's own writes
// and the data its job reads and writes.
func (c *Client) WithAttempt(attemptID, fencingToken string) *Client {
	cc := *c
	cc.attempt, cc.fence = attemptID, fencingToken
	return &cc
}

// BaseURL returns the server's address.
func (c *Client) BaseURL() string { return c.base }

// Error is an error response from the server.
type Error struct {
	Status int
	Body   wire.Error
}

func (e *Error) Error() string {
	if e.Body.Hint != "" {
		return e.Body.Message + " (" + e.Body.Hint + ")"
	}
	return e.Body.Message
}

// Is lets errors.Is match server errors against the store's and data's
// sentinel errors, so callers on both sides of the wire test errors alike.
func (e *Error) Is(target error) bool {
	switch e.Body.Code {
	case "not_found":
		return target == store.ErrNotFound || target == data.ErrNotFound
	case "conflict":
		return target == store.ErrConflict
	case "fenced":
		return target == store.ErrFenced
	case "node_gone":
		return target == store.ErrNodeGone
	}
	return false
}

// ErrUnreachable wraps failures to reach the server at all.
var ErrUnreachable = errors.New("server unreachable")

// IsUnauthorized reports whether err is the server refusing credentials.
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Body.Code == "unauthorized"
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	switch {
	case c.node != "":
		req.Header.Set(wire.HeaderNode, c.node)
		req.Header.Set("Authorization", "Bearer "+c.credential)
	case c.attempt != "":
		req.Header.Set(wire.HeaderAttempt, c.attempt)
		req.Header.Set(wire.HeaderFence, c.fence)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, c.base, shortNetError(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb wire.ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
			eb.Error = wire.Error{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status)}
		}
		return nil, &Error{Status: resp.StatusCode, Body: eb.Error}
	}
	return resp, nil
}

func shortNetError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// call sends in as JSON (when not nil) and decodes the answer into out (when
// not nil). fence, when set, is sent as the fencing token.
func (c *Client) call(ctx context.Context, method, path, fence string, in, out any) error {
	var h http.Header
	if fence != "" {
		h = http.Header{wire.HeaderFence: {fence}}
	}
	return c.callWith(ctx, method, path, h, in, out)
}

// callWith is call with any request headers.
func (c *Client) callWith(ctx context.Context, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := c.newRequest(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad response: %w", method, path, err)
	}
	// Read to the end, so the connection goes back to the pool: an agent
	// heartbeats every second, and a new connection each time costs the
	// server more than the heartbeat itself.
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// Health checks that the server answers.
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, "GET", "/v1/health", "", nil, nil)
}

// SubmitJob queues a job. The submission carries a fresh idempotency key
// and is sent again with it while the server cannot be reached, for up to
// submitRetryFor: a server that crashed after it queued the job answers the
// retry with that job rather than queueing a second one.
func (c *Client) SubmitJob(ctx context.Context, req *wire.SubmitJob) (*wire.JobDetail, error) {
	h := http.Header{wire.HeaderIdempotencyKey: {"submit-" + rand.Text()}}
	deadline := time.Now().Add(submitRetryFor)
	pause := 250 * time.Millisecond
	for {
		var out wire.JobDetail
		err := c.callWith(ctx, "POST", "/v1/jobs", h, req, &out)
		if err == nil || !errors.Is(err, ErrUnreachable) || time.Now().Add(pause).After(deadline) {
			return &out, err
		}
		if !wait.Sleep(ctx, pause) {
			return nil, ctx.Err()
		}
		pause = min(2*pause, 4*time.Second)
	}
}

// submitRetryFor is how long SubmitJob keeps trying to reach the server:
// long enough for a control plane to restart.
const submitRetryFor = 20 * time.Second

// Job returns a job with its attempts.
func (c *Client) Job(ctx context.Context, id string) (*wire.JobDetail, error) {
	var out wire.JobDetail
	return &out, c.call(ctx, "GET", "/v1/jobs/"+url.PathEscape(id), "", nil, &out)
}

// Jobs lists jobs newest first; project may be empty for all.
func (c *Client) Jobs(ctx context.Context, project string, limit int) ([]*store.Job, error) {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out wire.JobList
	return out.Jobs, c.call(ctx, "GET", "/v1/jobs?"+q.Encode(), "", nil, &out)
}

// CancelJob cancels a job.
func (c *Client) CancelJob(ctx context.Context, id string) (*wire.JobDetail, error) {
	var out wire.JobDetail
	return &out, c.call(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/cancel", "", nil, &out)
}

// Logs returns a job's output after a sequence number.
func (c *Client) Logs(ctx context.Context, id string, after int64) ([]*store.LogChunk, error) {
	var out struct {
		Chunks []*store.LogChunk `json:"chunks"`
	}
	return out.Chunks, c.call(ctx, "GET", fmt.Sprintf("/v1/jobs/%s/logs?after=%d", url.PathEscape(id), after), "", nil, &out)
}

// FollowLogs streams a job's output from after a sequence number, calling fn
// for each event, until the job ends (the last event has End set), ctx ends
// or the stream breaks.
func (c *Client) FollowLogs(ctx context.Context, id string, after int64, fn func(wire.LogEvent) error) error {
	req, err := c.newRequest(ctx, "GET", fmt.Sprintf("/v1/jobs/%s/logs?follow=true&after=%d", url.PathEscape(id), after), nil, "")
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	err = readEvents(resp.Body, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// errEndOfStream: the event stream ended before the job did.
var errEndOfStream = errors.New("log stream ended early")

// readEvents decodes a text/event-stream of LogEvents, calling fn for each,
// until the event that ends the job.
func readEvents(r io.Reader, fn func(wire.LogEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev wire.LogEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return fmt.Errorf("bad log event from the server: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
		if ev.End {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: log stream broke: %v", ErrUnreachable, err)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, errEndOfStream)
}

// Metrics returns a job's metric lines after a sequence number.
func (c *Client) Metrics(ctx context.Context, id string, after int64) ([]*store.Metric, error) {
	var out wire.MetricList
	return out.Metrics, c.call(ctx, "GET", fmt.Sprintf("/v1/jobs/%s/metrics?after=%d", url.PathEscape(id), after), "", nil, &out)
}

// Checkpoints returns a job's committed checkpoint versions.
func (c *Client) Checkpoints(ctx context.Context, id string) ([]*store.Checkpoint, error) {
	var out wire.CheckpointList
	return out.Checkpoints, c.call(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/checkpoints", "", nil, &out)
}

// Artifacts returns where a job's outputs are and their key.
func (c *Client) Artifacts(ctx context.Context, id string) (*wire.ArtifactAccess, error) {
	var out wire.ArtifactAccess
	return &out, c.call(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/artifacts", "", nil, &out)
}

// Pools lists pools.
func (c *Client) Pools(ctx context.Context) ([]wire.PoolInfo, error) {
	var out wire.PoolList
	return out.Pools, c.call(ctx, "GET", "/v1/pools", "", nil, &out)
}

// JoinToken makes a join token for a pool that never expires; its secret
// is in the answer only.
func (c *Client) JoinToken(ctx context.Context, pool string) (*wire.JoinToken, error) {
	return c.NewJoinToken(ctx, pool, 0)
}

// NewJoinToken makes a join token for a pool that expires after life (0:
// never).
func (c *Client) NewJoinToken(ctx context.Context, pool string, life time.Duration) (*wire.JoinToken, error) {
	var out wire.JoinToken
	return &out, c.call(ctx, "POST", "/v1/pools/"+url.PathEscape(pool)+"/join-tokens", "",
		&wire.NewJoinToken{ExpiresInS: int64(life.Seconds())}, &out)
}

// JoinTokens lists a pool's join tokens, without their secrets.
func (c *Client) JoinTokens(ctx context.Context, pool string) ([]*store.JoinToken, error) {
	var out wire.JoinTokenList
	return out.Tokens, c.call(ctx, "GET", "/v1/pools/"+url.PathEscape(pool)+"/join-tokens", "", nil, &out)
}

// RevokeJoinToken makes a join token useless from now on.
func (c *Client) RevokeJoinToken(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/v1/join-tokens/"+url.PathEscape(id), "", nil, nil)
}

// Nodes lists nodes; pool may be empty for all.
func (c *Client) Nodes(ctx context.Context, pool string) ([]*store.Node, error) {
	q := url.Values{}
	if pool != "" {
		q.Set("pool", pool)
	}
	var out wire.NodeList
	return out.Nodes, c.call(ctx, "GET", "/v1/nodes?"+q.Encode(), "", nil, &out)
}

// CreateObject creates an encrypted object (or finds a dataset's) and
// returns its data key.
func (c *Client) CreateObject(ctx context.Context, req *wire.CreateObject) (*wire.ObjectKey, error) {
	var out wire.ObjectKey
	return &out, c.call(ctx, "POST", "/v1/objects", "", req, &out)
}

// CommitDataset records a pushed directory as a new dataset version.
func (c *Client) CommitDataset(ctx context.Context, req *wire.CommitDataset) (*store.Dataset, error) {
	var out wire.DatasetList
	if err := c.call(ctx, "POST", "/v1/datasets", "", req, &out); err != nil {
		return nil, err
	}
	if len(out.Datasets) != 1 {
		return nil, errors.New("commit dataset: bad response")
	}
	return out.Datasets[0], nil
}

// Datasets lists the newest version of each dataset.
func (c *Client) Datasets(ctx context.Context, project string) ([]*store.Dataset, error) {
	var out wire.DatasetList
	return out.Datasets, c.call(ctx, "GET", "/v1/datasets?project="+url.QueryEscape(project), "", nil, &out)
}

// DeleteDataset removes every version of a dataset.
func (c *Client) DeleteDataset(ctx context.Context, project, name string) error {
	return c.call(ctx, "DELETE", "/v1/datasets/"+url.PathEscape(project)+"/"+url.PathEscape(name), "", nil, nil)
}

var _ data.ChunkStore = (*Client)(nil)

// MissingChunks implements data.ChunkStore.
func (c *Client) MissingChunks(ctx context.Context, objectID string, addrs []string) ([]string, error) {
	var out wire.MissingChunks
	err := c.call(ctx, "POST", "/v1/objects/"+url.PathEscape(objectID)+"/missing", "", wire.MissingChunks{Addrs: addrs}, &out)
	return out.Addrs, err
}

func (c *Client) putBytes(ctx context.Context, path string, b []byte) error {
	req, err := c.newRequest(ctx, "PUT", path, bytes.NewReader(b), "application/octet-stream")
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) getBytes(ctx context.Context, path string) ([]byte, error) {
	req, err := c.newRequest(ctx, "GET", path, nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// PutChunk implements data.ChunkStore.
func (c *Client) PutChunk(ctx context.Context, objectID, addr string, sealed []byte) error {
	return c.putBytes(ctx, "/v1/objects/"+url.PathEscape(objectID)+"/chunks/"+url.PathEscape(addr), sealed)
}

// GetChunk implements data.ChunkStore.
func (c *Client) GetChunk(ctx context.Context, objectID, addr string) ([]byte, error) {
	return c.getBytes(ctx, "/v1/objects/"+url.PathEscape(objectID)+"/chunks/"+url.PathEscape(addr))
}

// PutManifest implements data.ChunkStore.
func (c *Client) PutManifest(ctx context.Context, objectID, name string, sealed []byte) error {
	return c.putBytes(ctx, "/v1/objects/"+url.PathEscape(objectID)+"/manifests/"+url.PathEscape(name), sealed)
}

// GetManifest implements data.ChunkStore.
func (c *Client) GetManifest(ctx context.Context, objectID, name string) ([]byte, error) {
	return c.getBytes(ctx, "/v1/objects/"+url.PathEscape(objectID)+"/manifests/"+url.PathEscape(name))
}
