// Package agent is `lode agent`: it runs on a machine that sells compute,
// dials out to the control plane (so it works behind NAT), registers its
// node, keeps its lease with heartbeats, and runs the tasks it is given with
// the process runtime, each in a private directory. The server's in-process
// local pool is this same agent talking over loopback.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// Config configures an agent.
type Config struct {
	Server    string
	JoinToken string
	// CA is the control plane's CA certificate (PEM) to trust; CAHash, its
	// fingerprint ("sha256:…"), fetches it from the server and checks it.
	// With neither, the system's roots verify the server.
	CA     []byte
	CAHash string
	// Name names the node; the hostname by default.
	Name string
	// Dir holds the agent's task directories; it is created 0700.
	Dir string
	// GPUs declares the node's GPUs; nil means ask nvidia-smi.
	GPUs      []core.GPU
	MilliCPUs int64 // 0: all of the machine's
	Memory    int64 // 0: all of the machine's
	Labels    map[string]string
	// AdvertiseAddr is where other ranks of a gang reach this node.
	AdvertiseAddr string
	// Guard is the lode binary, used to run tasks under `lode exec-guard`;
	// empty runs them directly.
	Guard string
	// SyncEvery is how often a task's checkpoint directory is looked at
	// for changes to upload.
	SyncEvery time.Duration
	// StopGrace is how long a stopped task has between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// TaskUIDs is where an agent running as root takes its tasks' users
	// from, one per task; zero means DefaultTaskUIDs.
	TaskUIDs UIDRange
	Version  string
	Logger   *slog.Logger
}

// Agent runs tasks for one control plane.
type Agent struct {
	cfg  Config
	base *client.Client
	log  *slog.Logger
	iso  *isolation

	// taskCtx bounds the tasks' lives; see Run.
	taskCtx context.Context

	mu    sync.Mutex
	tasks map[wire.TaskRef]*task
	gpus  []bool // GPU index -> in use
	wg    sync.WaitGroup
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	c, err := client.New(cfg.Server, client.TrustCA(cfg.CA))
	if err != nil {
		return nil, err
	}
	if cfg.JoinToken == "" {
		return nil, errors.New("a join token is required (--join-token); the server prints one at first start, and `lode pools token POOL` shows it again")
	}
	host, _ := os.Hostname()
	cfg.Name = cmp.Or(cfg.Name, host, "node")
	cfg.SyncEvery = cmp.Or(cfg.SyncEvery, time.Second)
	cfg.StopGrace = cmp.Or(cfg.StopGrace, 10*time.Second)
	cfg.MilliCPUs = cmp.Or(cfg.MilliCPUs, defaultCPUs())
	if cfg.Memory == 0 {
		if cfg.Memory, err = detectMemory(); err != nil {
			return nil, fmt.Errorf("cannot tell this machine's memory (%v); give --memory", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, errors.New("agent: a directory for task data is required")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "tasks"), 0o700); err != nil {
		return nil, fmt.Errorf("agent directory: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	iso, err := newIsolation(cfg.Dir, cfg.TaskUIDs, cfg.Memory, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, base: c, log: cfg.Logger, iso: iso, tasks: map[wire.TaskRef]*task{}}, nil
}

// Run joins the control plane and serves it until ctx ends; then it stops
// its tasks and leaves the pool. It returns nil after a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.GPUs == nil {
		gpus, err := DetectGPUs(ctx)
		if err != nil {
			return err
		}
		a.cfg.GPUs = gpus
	}
	a.gpus = make([]bool, len(a.cfg.GPUs))
	if a.cfg.AdvertiseAddr == "" {
		a.cfg.AdvertiseAddr = advertiseAddr(a.cfg.Server)
	}
	release, err := claimDir(a.cfg.Dir, a.iso, a.log)
	if err != nil {
		return err
	}
	defer release()
	// Tasks outlive ctx: on shutdown they stop through a drain, with their
	// grace period, and only then is taskCtx cancelled.
	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	a.taskCtx = taskCtx
	defer a.wg.Wait()
	defer cancelTasks()
	for {
		c, joined, err := a.join(ctx)
		if err != nil {
			return nil // ctx ended while joining
		}
		if gone := a.serve(ctx, c, joined); gone {
			a.stopAll("node is no longer part of the pool", false)
			continue
		}
		a.drainAndLeave(c, joined)
		return nil
	}
}

// drainAndLeave is a clean shutdown: the node is drained, so its tasks get
// SIGTERM and their grace period, commit a last checkpoint and are placed
// again elsewhere at no cost to their retries; then the node leaves. When
// the server cannot be reached the tasks are stopped all the same, and the
// server learns of it when the lease ends.
func (a *Agent) drainAndLeave(c *client.Client, joined *wire.Joined) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StopGrace+15*time.Second)
	defer cancel()
	if len(a.running()) > 0 {
		if _, err := c.DrainSelf(ctx); err != nil {
			a.log.Warn("could not drain this node; stopping its tasks here", slog.Any("err", err))
		} else {
			a.log.Info("draining: tasks stop with their grace period and resume elsewhere from their checkpoints")
			interval := cmp.Or(time.Duration(joined.HeartbeatIntervalMS)*time.Millisecond, time.Second)
			beats := &beatStream{c: c, timeout: beatTimeout(joined)}
			defer beats.close()
			for len(a.running()) > 0 {
				if reply, err := beats.beat(ctx, &wire.Heartbeat{Tasks: a.running()}); err == nil {
					reply.Start = nil // a draining node starts nothing
					a.apply(c, reply)
				}
				if !wait.Sleep(ctx, interval) {
					break
				}
			}
		}
	}
	a.stopAll("the agent is shutting down", false)
	if err := c.Leave(ctx); err != nil {
		a.log.Warn("could not tell the server this node is leaving; it will notice when the lease ends", slog.Any("err", err))
	}
}

// join registers the node, retrying with backoff until it succeeds or ctx
// ends. Every failure says what is wrong.
func (a *Agent) join(ctx context.Context) (*client.Client, *wire.Joined, error) {
	labels := map[string]string{wire.LabelAddr: a.cfg.AdvertiseAddr}
	for k, v := range a.cfg.Labels {
		labels[k] = v
	}
	req := &wire.Join{
		JoinToken: a.cfg.JoinToken, Name: a.cfg.Name, MilliCPUs: a.cfg.MilliCPUs, MemoryBytes: a.cfg.Memory,
		GPUs: a.cfg.GPUs, Labels: labels, AgentVersion: a.cfg.Version,
	}
	b := backoff{min: 500 * time.Millisecond, max: 30 * time.Second}
	for {
		err := a.trustServer(ctx)
		var node *client.Client
		var joined *wire.Joined
		if err == nil {
			node, joined, err = a.base.JoinAs(ctx, req)
		}
		if err == nil {
			a.log.Info("joined", slog.String("node", joined.NodeID), slog.String("pool", joined.Pool),
				slog.String("server", a.base.BaseURL()), slog.Int("gpus", len(a.cfg.GPUs)))
			return node, joined, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		pause := b.next()
		switch {
		case client.IsUnauthorized(err):
			a.log.Error("the server refused the join token; check --join-token (the server prints it at first start; `lode pools token POOL` shows it)",
				slog.Duration("retry_in", pause))
		case errors.Is(err, client.ErrUnreachable):
			a.log.Warn("cannot reach the server; is it running, and is --server right?", slog.Any("err", err), slog.Duration("retry_in", pause))
		default:
			a.log.Error("join failed", slog.Any("err", err), slog.Duration("retry_in", pause))
		}
		if !wait.Sleep(ctx, pause) {
			return nil, nil, ctx.Err()
		}
	}
}

// trustServer fetches the server's CA once, when the agent was given only
// its fingerprint, and trusts it from then on.
func (a *Agent) trustServer(ctx context.Context) error {
	if a.cfg.CAHash == "" || a.cfg.CA != nil {
		return nil
	}
	ca, err := client.FetchCA(ctx, a.cfg.Server, a.cfg.CAHash)
	if err != nil {
		return err
	}
	c, err := client.New(a.cfg.Server, client.TrustCA(ca))
	if err != nil {
		return err
	}
	a.cfg.CA, a.base = ca, c
	return nil
}

// renewCertificate renews the node's certificate once it has used up two
// thirds of its life; it reports whether it did, so that the heartbeat
// stream reconnects with the new one.
func (a *Agent) renewCertificate(ctx context.Context, c *client.Client) bool {
	id := c.Identity()
	if id == nil || !id.DueForRenewal(time.Now()) {
		return false
	}
	if err := c.RenewCertificate(ctx); err != nil {
		a.log.Warn("could not renew the node's certificate; retrying at the next heartbeat", slog.Any("err", err),
			slog.Time("expires", id.Certificate().NotAfter))
		return false
	}
	a.log.Info("node certificate renewed", slog.Time("expires", id.Certificate().NotAfter))
	return true
}

// serve heartbeats until ctx ends (false) or the server says the node is
// gone (true). Heartbeats travel on one stream, opened again whenever it
// breaks.
func (a *Agent) serve(ctx context.Context, c *client.Client, joined *wire.Joined) (gone bool) {
	interval := time.Duration(joined.HeartbeatIntervalMS) * time.Millisecond
	interval = cmp.Or(interval, time.Second)
	beats := &beatStream{c: c, timeout: beatTimeout(joined)}
	defer beats.close()
	t := time.NewTimer(0)
	defer t.Stop()
	unreachableSince := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if a.renewCertificate(ctx, c) {
			beats.close() // the next stream presents the new certificate
		}
		reply, err := beats.beat(ctx, &wire.Heartbeat{Tasks: a.running()})
		switch {
		case err == nil:
			if !unreachableSince.IsZero() {
				a.log.Info("server reachable again", slog.Duration("after", time.Since(unreachableSince).Round(time.Millisecond)))
				unreachableSince = time.Time{}
			}
			a.apply(c, reply)
		case ctx.Err() != nil:
			return false
		case errors.Is(err, store.ErrNodeGone) || client.IsUnauthorized(err):
			a.log.Warn("the server no longer knows this node (its lease ended or the server lost it); stopping its tasks and joining again",
				slog.Any("err", err))
			return true
		case errors.Is(err, client.ErrUnreachable):
			if unreachableSince.IsZero() {
				unreachableSince = time.Now()
				a.log.Warn("server unreachable; tasks keep running, retrying", slog.Any("err", err))
			}
		default:
			a.log.Error("heartbeat failed", slog.Any("err", err))
		}
		t.Reset(interval)
	}
}

// beatTimeout bounds a heartbeat's round trip: long enough for a loaded
// server, short enough that a stream lost in a partition is replaced well
// before the lease it renews runs out twice over.
func beatTimeout(joined *wire.Joined) time.Duration {
	return max(time.Duration(joined.LeaseTTLMS)*time.Millisecond, 2*time.Second)
}

// beatStream is the node's heartbeat stream, opened on first use and
// again after it broke.
type beatStream struct {
	c       *client.Client
	timeout time.Duration
	open    *client.Beats
}

func (b *beatStream) beat(ctx context.Context, hb *wire.Heartbeat) (*wire.HeartbeatReply, error) {
	if b.open == nil {
		s, err := b.c.OpenBeats(ctx, b.timeout)
		if err != nil {
			return nil, err
		}
		b.open = s
	}
	reply, err := b.open.Beat(hb)
	if err != nil {
		b.open = nil // Beat closed it
	}
	return reply, err
}

func (b *beatStream) close() {
	if b.open != nil {
		b.open.Close()
		b.open = nil
	}
}

// running lists the tasks this agent runs.
func (a *Agent) running() []wire.TaskRef {
	a.mu.Lock()
	defer a.mu.Unlock()
	refs := make([]wire.TaskRef, 0, len(a.tasks))
	for ref := range a.tasks {
		refs = append(refs, ref)
	}
	return refs
}

// apply starts and stops tasks as a heartbeat reply says.
func (a *Agent) apply(c *client.Client, reply *wire.HeartbeatReply) {
	for _, s := range reply.Stop {
		a.mu.Lock()
		t := a.tasks[s.TaskRef]
		a.mu.Unlock()
		if t != nil {
			t.stop(s.Reason, true)
		}
	}
	for _, as := range reply.Start {
		ref := wire.TaskRef{AttemptID: as.Task.AttemptID, Rank: as.Task.Rank}
		a.mu.Lock()
		if _, ok := a.tasks[ref]; ok {
			a.mu.Unlock()
			continue
		}
		gpus, ok := a.takeGPUs(as.Task.Resources)
		if !ok {
			a.mu.Unlock()
			a.log.Error("assigned a task this node has no free GPUs for", slog.String("attempt", ref.AttemptID))
			continue
		}
		t := newTask(a, c, as, gpus)
		a.tasks[ref] = t
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			t.run(a.taskCtx)
			a.mu.Lock()
			delete(a.tasks, ref)
			a.releaseGPUs(gpus)
			a.mu.Unlock()
		}()
	}
}

// takeGPUs picks free GPU indexes of acceptable models. a.mu must be held.
func (a *Agent) takeGPUs(r core.Resources) ([]int, bool) {
	var idx []int
	for i, g := range a.cfg.GPUs {
		if len(idx) == r.GPUs {
			break
		}
		if a.gpus[i] {
			continue
		}
		if len(r.GPUModels) > 0 && !containsModel(r.GPUModels, g.Model) {
			continue
		}
		idx = append(idx, i)
	}
	if len(idx) < r.GPUs {
		return nil, false
	}
	for _, i := range idx {
		a.gpus[i] = true
	}
	return idx, true
}

func (a *Agent) releaseGPUs(idx []int) {
	for _, i := range idx {
		a.gpus[i] = false
	}
}

func containsModel(models []string, m string) bool {
	m = core.NormalizeGPUModel(m)
	for _, x := range models {
		if core.NormalizeGPUModel(x) == m {
			return true
		}
	}
	return false
}

// stopAll stops every task; report says whether to tell the server.
func (a *Agent) stopAll(reason string, report bool) {
	a.mu.Lock()
	ts := make([]*task, 0, len(a.tasks))
	for _, t := range a.tasks {
		ts = append(ts, t)
	}
	a.mu.Unlock()
	for _, t := range ts {
		t.stop(reason, report)
	}
	for _, t := range ts {
		<-t.done
	}
}

// backoff yields growing, jittered waits.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
