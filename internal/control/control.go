// Package control owns the control loop: it declares nodes lost when their
// leases end (which requeues their jobs), builds the scheduler's snapshot
// from the store, asks the pure scheduler for a plan and applies it, each
// placement in its own transaction that re-checks capacity.
package control

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/lease"
	"lode.dev/lode/internal/meter"
	"lode.dev/lode/internal/reliability"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/store"
)

// Config configures a Loop.
type Config struct {
	Store  store.Store
	Logger *slog.Logger
	// Now is the clock; tests pass their own.
	Now func() time.Time
	// Interval is the longest pause between two cycles (Wake starts one
	// sooner).
	Interval time.Duration
	// OnChange is called after a cycle changed any job's state, so
	// watchers (log followers) can look again. May be nil.
	OnChange func()
	// Reliability sets when pools are quarantined and let back in.
	Reliability reliability.Policy
	// Leases is the lease book the API renews; nil means leases are kept
	// in the store (NodeHeartbeat, NodeExpireLeases).
	Leases *lease.Book
}

// Loop runs scheduling cycles. Start it with Run; Wake and Pending may be
// called from any goroutine.
type Loop struct {
	cfg  Config
	wake chan struct{}
	// judged is when pools were last judged; Cycle judges them every
	// judgeEvery, not every cycle, since it reads every node.
	judged time.Time

	mu      sync.Mutex
	pending map[string][]sched.Rejection
}

// judgeEvery is how often pools' reliability is judged, besides after every
// loss.
const judgeEvery = 5 * time.Second

// New returns a loop; call Run to start it.
func New(cfg Config) *Loop {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Loop{cfg: cfg, wake: make(chan struct{}, 1)}
}

// Wake asks for a cycle soon, for example after a job was submitted or a node
// joined.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Pending returns why each pool refused a queued job in the last cycle.
func (l *Loop) Pending(jobID string) []sched.Rejection {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending[jobID]
}

// Run runs cycles until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if err := l.Cycle(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Error("control cycle failed", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.wake:
		}
	}
}

// Cycle runs one pass: expire leases, then schedule and apply.
func (l *Loop) Cycle(ctx context.Context) error {
	now := l.cfg.Now()
	lost, err := l.expireLeases(ctx, now)
	if err != nil {
		return err
	}
	for _, n := range lost {
		l.record(ctx, now, audit.NodeLost, n.ID, map[string]string{"name": n.Name, "pool": n.PoolID,
			"last_heartbeat": n.LastHeartbeatAt.Format(time.RFC3339Nano)})
		l.cfg.Logger.Warn("node lost: its lease expired", slog.String("node", n.ID), slog.String("name", n.Name),
			slog.Time("last_heartbeat", n.LastHeartbeatAt))
	}
	if len(lost) > 0 || now.Sub(l.judged) >= judgeEvery {
		if err := l.judgePools(ctx, now); err != nil {
			return err
		}
		l.judged = now
	}
	// With nothing queued there is nothing to place or to preempt for, and
	// a large idle fleet costs a cycle nothing.
	queued, err := l.cfg.Store.JobList(ctx, &store.JobListParams{States: []core.JobState{core.JobQueued}, Limit: 1})
	if err != nil {
		return err
	}
	if len(queued) == 0 {
		l.mu.Lock()
		l.pending = nil
		l.mu.Unlock()
		if len(lost) > 0 && l.cfg.OnChange != nil {
			l.cfg.OnChange()
		}
		return nil
	}
	snap, err := Snapshot(ctx, l.cfg.Store, now)
	if err != nil {
		return err
	}
	plan := sched.Schedule(snap)
	placed := 0
	for _, p := range plan.Preemptions {
		err := l.cfg.Store.AttemptPreempt(ctx, &store.AttemptPreemptParams{AttemptID: p.AttemptID, Reason: p.Reason, Now: now})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		for _, r := range snap.Running {
			if r.AttemptID == p.AttemptID {
				l.notify(r.NodeIDs...)
			}
		}
		l.cfg.Logger.Info("attempt preempted", slog.String("job", p.JobID), slog.String("attempt", p.AttemptID),
			slog.String("for", p.For), slog.String("reason", p.Reason))
	}
	for _, p := range plan.Placements {
		a, err := l.cfg.Store.AttemptCreate(ctx, &store.AttemptCreateParams{
			JobID: p.JobID, PoolID: p.PoolID, NodeIDs: p.NodeIDs, Now: now,
			GPUModel: p.GPUModel, PricePerHour: p.PricePerHour,
		})
		if errors.Is(err, store.ErrConflict) {
			// The world moved since the snapshot (a cancel, a node lost);
			// the next cycle sees the new state.
			l.cfg.Logger.Debug("placement no longer valid", slog.String("job", p.JobID), slog.Any("err", err))
			continue
		}
		if err != nil {
			return err
		}
		l.notify(p.NodeIDs...)
		l.record(ctx, now, audit.JobPlaced, p.JobID, map[string]string{"attempt": a.ID, "pool": p.PoolID,
			"nodes": strings.Join(p.NodeIDs, ","), "price_per_hour": strconv.FormatFloat(p.PricePerHour, 'f', 4, 64)})
		placed++
		l.cfg.Logger.Info("job placed", slog.String("job", p.JobID), slog.String("attempt", a.ID),
			slog.Int("seq", a.Seq), slog.Any("nodes", p.NodeIDs))
	}
	l.mu.Lock()
	l.pending = plan.Pending
	l.mu.Unlock()
	if (placed > 0 || len(lost) > 0 || len(plan.Preemptions) > 0) && l.cfg.OnChange != nil {
		l.cfg.OnChange()
	}
	return nil
}

// record appends to the audit log; a failure is logged, not fatal.
func (l *Loop) record(ctx context.Context, now time.Time, kind, subject string, detail map[string]string) {
	ev := &audit.Event{Time: now, Kind: kind, Actor: "control", Subject: subject, Detail: detail}
	if _, err := l.cfg.Store.AuditAppend(ctx, ev); err != nil {
		l.cfg.Logger.Error("audit log append failed", slog.String("kind", kind), slog.Any("err", err))
	}
}

// expireLeases declares lost the nodes whose leases ran out.
func (l *Loop) expireLeases(ctx context.Context, now time.Time) ([]*store.Node, error) {
	if l.cfg.Leases == nil {
		return l.cfg.Store.NodeExpireLeases(ctx, &store.NodeExpireLeasesParams{Now: now})
	}
	expired := l.cfg.Leases.Expire(now)
	if len(expired) == 0 {
		return nil, nil
	}
	lost, err := l.cfg.Store.NodeMarkLost(ctx, &store.NodeMarkLostParams{LastSeen: expired, Now: now})
	if err != nil {
		return nil, err
	}
	// The other ranks of the attempts those nodes ran must stop.
	l.cfg.Leases.Notify()
	return lost, nil
}

// notify tells nodes' next heartbeats to read their assignments.
func (l *Loop) notify(ids ...string) {
	if l.cfg.Leases != nil && len(ids) > 0 {
		l.cfg.Leases.Notify(ids...)
	}
}

// judgePools quarantines pools that lose nodes too often and lets them
// back in after a probation without losses.
func (l *Loop) judgePools(ctx context.Context, now time.Time) error {
	pools, err := l.cfg.Store.PoolList(ctx)
	if err != nil {
		return err
	}
	scores, err := Assess(ctx, l.cfg.Store, now, l.cfg.Reliability)
	if err != nil {
		return err
	}
	for _, p := range pools {
		since := p.StateChangedAt
		if since.IsZero() {
			since = p.CreatedAt
		}
		next, reason := reliability.Decide(string(p.State), since, scores[p.ID], now, l.cfg.Reliability)
		if next == string(p.State) {
			continue
		}
		p.State, p.StateReason, p.StateChangedAt = store.PoolState(next), reason, now
		if err := l.cfg.Store.PoolUpdate(ctx, p); err != nil {
			return err
		}
		l.cfg.Logger.Warn("pool "+next, slog.String("pool", p.Name), slog.String("reason", reason))
	}
	return nil
}

// Assess scores every pool by its nodes' losses.
func Assess(ctx context.Context, st store.Store, now time.Time, policy reliability.Policy) (map[string]reliability.Assessment, error) {
	nodes, err := st.NodeList(ctx, &store.NodeListParams{})
	if err != nil {
		return nil, err
	}
	lives := map[string][]reliability.Node{}
	for _, n := range nodes {
		life := reliability.Node{Registered: n.RegisteredAt}
		if n.State == store.NodeLost || n.State == store.NodeLeft {
			life.End, life.Lost = n.LastHeartbeatAt, n.State == store.NodeLost
		}
		lives[n.PoolID] = append(lives[n.PoolID], life)
	}
	pools, err := st.PoolList(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]reliability.Assessment{}
	for _, p := range pools {
		out[p.ID] = reliability.Assess(lives[p.ID], now, policy)
	}
	return out, nil
}

// Snapshot reads what the scheduler needs from the store: pools with their
// prices, ready nodes with their free capacity, live attempts, projects with
// what they have spent, and queued jobs.
func Snapshot(ctx context.Context, st store.Store, now time.Time) (*sched.Snapshot, error) {
	pools, err := st.PoolList(ctx)
	if err != nil {
		return nil, err
	}
	snap := &sched.Snapshot{Now: now, Projects: map[string]sched.Project{}}
	scores, err := Assess(ctx, st, now, reliability.Policy{})
	if err != nil {
		return nil, err
	}
	poolByID := map[string]sched.Pool{}
	for _, p := range pools {
		sp := SchedPool(p)
		sp.LossRate = scores[p.ID].LossRate
		snap.Pools = append(snap.Pools, sp)
		poolByID[p.ID] = sp
	}
	nodes, err := st.NodeList(ctx, &store.NodeListParams{State: store.NodeReady})
	if err != nil {
		return nil, err
	}
	// One read for every node's tasks: a cycle's cost must not grow by a
	// query per node.
	unfinished, err := st.TaskListUnfinished(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string][]*store.Task{}
	for _, t := range unfinished {
		held[t.NodeID] = append(held[t.NodeID], t)
	}
	for _, n := range nodes {
		snap.Nodes = append(snap.Nodes, sched.Node{ID: n.ID, PoolID: n.PoolID, Free: FreeCapacity(n, held[n.ID]), Total: FreeCapacity(n, nil)})
	}
	projects, err := st.ProjectList(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range projects {
		snap.Projects[p.Name] = sched.Project{Weight: p.Weight, Budget: p.Budget}
	}
	usage, err := st.UsageList(ctx, &store.UsageListParams{})
	if err != nil {
		return nil, err
	}
	for _, u := range usage {
		spend(snap, u.Project, u.Cost)
	}
	live, err := st.JobList(ctx, &store.JobListParams{States: []core.JobState{core.JobPlaced, core.JobRunning}})
	if err != nil {
		return nil, err
	}
	for _, j := range live {
		if j.CurrentAttempt == "" {
			continue
		}
		a, err := st.AttemptGet(ctx, j.CurrentAttempt)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if a.State.Terminal() {
			continue
		}
		r := sched.Running{
			AttemptID: a.ID, JobID: j.ID, Project: j.Project, Priority: j.Spec.Priority, PoolID: a.PoolID,
			GPUModel: a.GPUModel, StartedAt: a.StartedAt, PricePerHour: a.PricePerHour,
			// Asked to stop, it still holds its nodes until it has.
			Stopping: a.PreemptRequested,
		}
		start := a.StartedAt
		if start.IsZero() {
			start = now
		}
		if pool, ok := poolByID[a.PoolID]; ok {
			r.EstEnd = sched.Predict(pool, &j.Spec, a.GPUModel, snap.Throughput).Finish(start)
		}
		for _, t := range a.Tasks {
			r.NodeIDs = append(r.NodeIDs, t.NodeID)
			r.Resources = t.Resources
		}
		snap.Running = append(snap.Running, r)
		_, accrued := meter.Charge(a.StartedAt, now, a.PricePerHour)
		spend(snap, j.Project, accrued)
	}
	jobs, err := st.JobList(ctx, &store.JobListParams{States: []core.JobState{core.JobQueued}})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		snap.Queued = append(snap.Queued, sched.Job{ID: j.ID, Project: j.Project, Spec: &j.Spec, CreatedAt: j.CreatedAt})
	}
	return snap, nil
}

func spend(snap *sched.Snapshot, project string, cost float64) {
	p := snap.Projects[project]
	p.Spent += cost
	snap.Projects[project] = p
}

// SchedPool is a stored pool as the scheduler sees it.
func SchedPool(p *store.Pool) sched.Pool {
	return sched.Pool{
		ID: p.ID, Name: p.Name, Region: p.Region, Tier: p.Tier, State: string(p.State),
		Interconnect: sched.Interconnect{Domain: p.Interconnect.Domain, Gbps: p.Interconnect.Gbps, MultiNode: p.Interconnect.MultiNode},
		Prices:       sched.Prices{GPUHour: p.Prices.GPUHour, CPUHour: p.Prices.CPUHour, MemGiBHour: p.Prices.MemGiBHour},
	}
}

// FreeCapacity is a node's capacity minus what its unfinished tasks hold.
// GPUs held by a task are taken from the models it accepts, in the same
// order the scheduler and the store use.
func FreeCapacity(n *store.Node, tasks []*store.Task) sched.Capacity {
	c := sched.Capacity{MilliCPUs: n.MilliCPUs, MemoryBytes: n.MemoryBytes, GPUs: map[string]int{}}
	for _, g := range n.GPUs {
		c.GPUs[core.NormalizeGPUModel(g.Model)]++
	}
	for _, t := range tasks {
		if t.State.Terminal() {
			continue
		}
		r := t.Resources
		c.MilliCPUs -= r.MilliCPUs
		c.MemoryBytes -= r.MemoryBytes
		sched.TakeGPUs(c.GPUs, r)
	}
	return c
}
