package failover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// pollEvery is how often the benchmark asks the API about a job. It only
// blurs detect-seen; the other figures are the server's own timestamps.
const pollEvery = 50 * time.Millisecond

// fleet is the set of `lode agent` processes of a run.
type fleet struct {
	bin, url, token, dir string
	ca                   string // the control plane's CA certificate file

	mu     sync.Mutex
	n      int
	byNode map[string]*proc // node ID -> its agent
	all    []*proc
	closed bool // set by stopAll: an agent started later is stopped at once
}

var joinedRE = regexp.MustCompile(`msg=joined node=(\S+)`)

// start starts an agent that offers one CPU (so it runs one job at a time)
// and waits until it has joined.
func (f *fleet) start() error {
	f.mu.Lock()
	f.n++
	name := fmt.Sprintf("rig-%03d", f.n)
	f.mu.Unlock()
	p, err := startProc(f.bin, "lode agent "+name, "agent", "--server", f.url, "--ca-file", f.ca, "--join-token", f.token, "--name", name,
		"--dir", filepath.Join(f.dir, name), "--gpus", "none", "--cpus", "1", "--memory", "1GiB")
	if err != nil {
		return err
	}
	f.mu.Lock()
	closed := f.closed
	f.all = append(f.all, p)
	f.mu.Unlock()
	if closed {
		p.stop()
		return errors.New("the run is over")
	}
	m, err := p.waitMatch(joinedRE, 60*time.Second)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.byNode[m[1]] = p
	f.mu.Unlock()
	return nil
}

// agent returns the agent of a node. An agent's join reaches the server a
// moment before its log line reaches the benchmark, so it waits a little.
func (f *fleet) agent(ctx context.Context, node string) (*proc, error) {
	for range 200 {
		f.mu.Lock()
		p := f.byNode[node]
		f.mu.Unlock()
		if p != nil {
			return p, nil
		}
		if !wait.Sleep(ctx, pollEvery) {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("no agent of this run joined as node %s", node)
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	f.closed = true
	all := f.all
	f.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
}

// kill is one measured agent kill.
type kill struct {
	job, attempt, node string
	// detect: SIGKILL to the lost attempt's ended_at; seen: SIGKILL to the
	// first poll that showed it lost; resume: ended_at to the next
	// attempt's started_at.
	detect, seen, resume time.Duration
}

// failoverRun is one run of the detect-and-resume experiment.
type failoverRun struct {
	srv    *server
	fleet  *fleet
	kills  int
	claims atomic.Int64

	mu      sync.Mutex
	results []kill
}

func BenchmarkDetectAndResume(b *testing.B) {
	once(b)
	seed := uint64(envInt(b, "LODE_BENCH_SEED", 1))
	kills := envInt(b, "LODE_BENCH_KILLS", 100)
	jobs := envInt(b, "LODE_BENCH_JOBS", 4)

	srv := startServer(b, "--quarantine-below=-1")
	ttl, interval := leaseTerms(b, srv)
	f := &fleet{bin: binary(b), url: srv.url, token: srv.joinToken(b), dir: b.TempDir(), ca: filepath.Join(srv.dir, "ca.crt"), byNode: map[string]*proc{}}
	b.Cleanup(f.stopAll)

	// Twice as many agents as jobs: a lost job always finds a free agent.
	var wg sync.WaitGroup
	errs := make([]error, 2*jobs)
	for i := range errs {
		wg.Go(func() { errs[i] = f.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("starting agents: %v", err)
	}
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = submitSleeper(b, srv, i, kills)
	}

	b.ResetTimer()
	r := &failoverRun{srv: srv, fleet: f, kills: kills}
	// Each round takes a few seconds; allow a minute per round of one
	// worker before calling the run stuck.
	rounds := (kills + jobs - 1) / jobs
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds+2)*time.Minute)
	defer cancel()
	start := time.Now()
	failed := make([]error, jobs)
	for w, id := range ids {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			if failed[w] = r.worker(ctx, id, rng); failed[w] != nil {
				cancel() // one failure ends the run
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := errors.Join(failed...); err != nil {
		b.Fatalf("after %d of %d kills (seed %d): %v", len(r.results), kills, seed, err)
	}

	var detect, seen, resume []time.Duration
	for _, k := range r.results {
		detect, seen, resume = append(detect, k.detect), append(seen, k.seen), append(resume, k.resume)
	}
	b.ReportMetric(percentile(detect, 50), "detect-p50-s")
	b.ReportMetric(percentile(detect, 99), "detect-p99-s")
	b.ReportMetric(percentile(seen, 99), "detect-seen-p99-s")
	b.ReportMetric(percentile(resume, 50), "resume-p50-s")
	b.ReportMetric(percentile(resume, 99), "resume-p99-s")
	b.ReportMetric(percentile(detect, 99)/ttl.Seconds(), "detect-over-ttl")
	b.ReportMetric(ttl.Seconds(), "lease-ttl-s")
	b.ReportMetric(float64(len(r.results)), "kills")
	b.Logf("seed %d: %d kills over %d jobs in %v (%d agents started in all); heartbeat %v, lease TTL %v (server defaults)",
		seed, len(r.results), jobs, time.Since(start).Round(time.Second), f.n, interval, ttl)
	b.Logf("detect p50 %.3fs p99 %.3fs max %.3fs (target p99 ≤ 3s; %.2f× the lease TTL at p99; seen by polling p99 %.3fs)",
		percentile(detect, 50), percentile(detect, 99), percentile(detect, 100), percentile(detect, 99)/ttl.Seconds(), percentile(seen, 99))
	b.Logf("resume p50 %.3fs p99 %.3fs max %.3fs (target p99 ≤ 5s)",
		percentile(resume, 50), percentile(resume, 99), percentile(resume, 100))
	// Each kill on its own line comes last: without -v, go test keeps
	// only the first lines of a benchmark's log.
	for i, k := range r.results {
		b.Logf("kill %3d: job %s attempt %s on %s: detected %.3fs (seen %.3fs), running again %.3fs later",
			i+1, k.job, k.attempt, k.node, k.detect.Seconds(), k.seen.Seconds(), k.resume.Seconds())
	}
}

// leaseTerms asks the running server for its heartbeat interval and lease
// TTL: a probe node joins, reads them from the answer, and leaves at once
// (a node that left is not a loss, so no pool's score changes).
func leaseTerms(b *testing.B, srv *server) (ttl, interval time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, j, err := srv.c.JoinAs(ctx, &wire.Join{JoinToken: srv.joinToken(b), Name: "lease-probe", MilliCPUs: 1, MemoryBytes: 1 << 20})
	if err != nil {
		b.Fatalf("probe join: %v", err)
	}
	if err := node.Leave(ctx); err != nil {
		b.Fatalf("probe leave: %v", err)
	}
	ttl, interval = time.Duration(j.LeaseTTLMS)*time.Millisecond, time.Duration(j.HeartbeatIntervalMS)*time.Millisecond
	if ttl <= 0 || interval <= 0 {
		b.Fatalf("the server answered a join with lease TTL %v and heartbeat %v; want both positive", ttl, interval)
	}
	return ttl, interval
}

// submitSleeper queues a job that runs far longer than the benchmark, on one
// CPU, with enough retries on node loss for every kill.
func submitSleeper(b *testing.B, srv *server, i, kills int) string {
	b.Helper()
	src := fmt.Sprintf(`name: failover-%d
run: exec sleep 600
resources: {cpus: 1, memory: 64MiB}
retries: {on_node_lost: %d}
`, i, kills+10)
	j, err := spec.Parse("failover.yaml", []byte(src))
	if err != nil {
		b.Fatalf("job spec: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := srv.c.SubmitJob(ctx, &wire.SubmitJob{Spec: *j})
	if err != nil {
		b.Fatalf("submit: %v", err)
	}
	return d.ID
}

// worker kills the agent that runs job id, again and again, until the
// run's kills are all claimed.
func (r *failoverRun) worker(ctx context.Context, id string, rng *rand.Rand) error {
	seq := 1
	for r.claims.Add(1) <= int64(r.kills) {
		d, a, _, err := r.waitAttempt(ctx, id, 90*time.Second, fmt.Sprintf("attempt %d is running", seq),
			func(a *store.Attempt) (bool, error) {
				if a.Seq != seq {
					return false, nil
				}
				if a.State.Terminal() {
					return false, fmt.Errorf("attempt %d ended %s (%s), want it running", a.Seq, a.State, a.Reason)
				}
				return a.State == core.AttemptRunning, nil
			})
		if err != nil {
			return err
		}
		if len(a.Tasks) != 1 {
			return fmt.Errorf("job %s attempt %d has %d tasks, want 1", d.ID, a.Seq, len(a.Tasks))
		}
		node := a.Tasks[0].NodeID
		agent, err := r.fleet.agent(ctx, node)
		if err != nil {
			return err
		}
		// A random moment within two heartbeat periods, so the kill lands
		// anywhere in the heartbeat cycle.
		if !wait.Sleep(ctx, 300*time.Millisecond+time.Duration(rng.Int64N(int64(2*time.Second)))) {
			return ctx.Err()
		}
		killedAt := time.Now()
		if err := agent.kill(); err != nil {
			return fmt.Errorf("SIGKILL %s: %w", agent.name, err)
		}
		replaced := make(chan error, 1)
		go func() { replaced <- r.fleet.start() }()

		_, lost, seenAt, err := r.waitAttempt(ctx, id, 60*time.Second, fmt.Sprintf("attempt %d is lost after its agent was killed", seq),
			func(x *store.Attempt) (bool, error) {
				if x.ID != a.ID || !x.State.Terminal() {
					return false, nil
				}
				if x.State != core.AttemptLost {
					return false, fmt.Errorf("attempt %d ended %s (%s), want lost", x.Seq, x.State, x.Reason)
				}
				return true, nil
			})
		if err != nil {
			return err
		}
		_, next, _, err := r.waitAttempt(ctx, id, 90*time.Second, fmt.Sprintf("attempt %d is running after attempt %d was lost", seq+1, seq),
			func(x *store.Attempt) (bool, error) {
				if x.Seq != seq+1 {
					return false, nil
				}
				if x.State.Terminal() {
					return false, fmt.Errorf("attempt %d ended %s (%s), want it running", x.Seq, x.State, x.Reason)
				}
				return x.State == core.AttemptRunning && !x.StartedAt.IsZero(), nil
			})
		if err != nil {
			return err
		}
		if err := <-replaced; err != nil {
			return fmt.Errorf("replacement agent: %w", err)
		}
		agent.stop()
		if lost.EndedAt.IsZero() {
			return fmt.Errorf("job %s attempt %d is lost but has no ended_at", id, lost.Seq)
		}
		k := kill{job: id, attempt: lost.ID, node: node,
			detect: lost.EndedAt.Sub(killedAt), seen: seenAt.Sub(killedAt), resume: next.StartedAt.Sub(lost.EndedAt)}
		if k.detect < 0 || k.resume < 0 {
			return fmt.Errorf("job %s: timestamps out of order: killed %s, attempt %d ended %s, attempt %d started %s",
				id, killedAt.UTC().Format(time.RFC3339Nano), lost.Seq, lost.EndedAt.Format(time.RFC3339Nano), next.Seq, next.StartedAt.Format(time.RFC3339Nano))
		}
		r.mu.Lock()
		r.results = append(r.results, k)
		r.mu.Unlock()
		seq++
	}
	return nil
}

// waitAttempt polls job id until cond holds for one of its attempts, and
// returns the job, that attempt and when the poll saw it. cond's error ends
// the wait; so do the job ending and the timeout.
func (r *failoverRun) waitAttempt(ctx context.Context, id string, timeout time.Duration, what string,
	cond func(*store.Attempt) (bool, error)) (*wire.JobDetail, *store.Attempt, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *wire.JobDetail
	for {
		d, err := r.srv.c.Job(ctx, id)
		now := time.Now()
		switch {
		case err == nil:
			last = d
			for _, a := range d.AttemptList {
				ok, err := cond(a)
				if err != nil {
					return nil, nil, time.Time{}, fmt.Errorf("job %s: %w", id, err)
				}
				if ok {
					return d, a, now, nil
				}
			}
			if d.State.Terminal() {
				return nil, nil, time.Time{}, fmt.Errorf("job %s ended %s (%s) while waiting until %s", id, d.State, d.Reason, what)
			}
		case ctx.Err() == nil:
			// A slow or refused poll is retried until the timeout.
		}
		if !wait.Sleep(ctx, pollEvery) {
			if last == nil {
				return nil, nil, time.Time{}, fmt.Errorf("job %s: waiting until %s: %w (last poll: %v)", id, what, ctx.Err(), err)
			}
			return nil, nil, time.Time{}, fmt.Errorf("job %s: waiting until %s: %w; it is %s (%s), attempts: %s",
				id, what, ctx.Err(), last.State, last.Reason, attemptsString(last.AttemptList))
		}
	}
}

func attemptsString(as []*store.Attempt) string {
	s := ""
	for _, a := range as {
		s += fmt.Sprintf("[%d %s %s] ", a.Seq, a.State, a.Reason)
	}
	return s
}
