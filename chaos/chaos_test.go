package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// config is one chaos run. Environment variables override the defaults of
// TestChaos: CHAOS_SEED, CHAOS_JOBS, CHAOS_AGENTS, CHAOS_KILLS,
// CHAOS_STALLS, CHAOS_PARTITIONS, CHAOS_RESTARTS and CHAOS_SPAN (a
// duration); CHAOS_DIR keeps the run's logs and data in that directory.
type config struct {
	Seed   uint64
	Jobs   int
	Agents int
	Faults Counts
	// Span is how long faults and submissions are spread over.
	Span time.Duration
	// Drain is how long the jobs have to finish after the span.
	Drain time.Duration
	// Steps bounds each job's target; Step is how long a step takes.
	MinSteps, MaxSteps int
	Step               time.Duration
	// Every is how many steps the trainer takes between checkpoints.
	Every int
}

// TestChaos is the full suite, run by `make chaos`: at least 200 jobs, 50
// agent kills, 20 stalls, 10 partitions and 5 server restarts by default.
func TestChaos(t *testing.T) {
	if os.Getenv("LODE_CHAOS") == "" {
		t.Skip("the full chaos suite runs with `make chaos` (or LODE_CHAOS=1)")
	}
	cfg := config{
		Seed: 1, Jobs: 200, Agents: 8,
		Faults:   Counts{Kills: 50, Stalls: 20, Partitions: 10, Restarts: 5},
		MinSteps: 30, MaxSteps: 90, Step: 40 * time.Millisecond, Every: 5,
		Drain: 3 * time.Minute,
	}
	if err := cfg.fromEnv(); err != nil {
		t.Fatal(err)
	}
	if cfg.Span == 0 {
		// About one fault every 1.5 s: enough room between them for the
		// jobs to make progress on two cores.
		cfg.Span = max(60*time.Second, time.Duration(cfg.Faults.Total())*1500*time.Millisecond)
	}
	runChaos(t, cfg)
}

// TestChaosShort is the shortened run inside `make test`: about 20 jobs and
// a few faults of each kind, in well under two minutes.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos is not short")
	}
	cfg := config{
		Seed: 7, Jobs: 20, Agents: 3,
		Faults:   Counts{Kills: 4, Stalls: 3, Partitions: 3, Restarts: 1},
		Span:     25 * time.Second,
		MinSteps: 40, MaxSteps: 80, Step: 40 * time.Millisecond, Every: 5,
		Drain: 60 * time.Second,
	}
	runChaos(t, cfg)
}

func (c *config) fromEnv() error {
	ints := map[string]*int{
		"CHAOS_JOBS": &c.Jobs, "CHAOS_AGENTS": &c.Agents, "CHAOS_KILLS": &c.Faults.Kills,
		"CHAOS_STALLS": &c.Faults.Stalls, "CHAOS_PARTITIONS": &c.Faults.Partitions, "CHAOS_RESTARTS": &c.Faults.Restarts,
	}
	var errs []error
	for name, p := range ints {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number >= 0", name, v))
			continue
		}
		*p = n
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAOS_SEED=%q: want a whole number", v))
		}
		c.Seed = n
	}
	if v := os.Getenv("CHAOS_SPAN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("CHAOS_SPAN=%q: want a duration such as 2m", v))
		}
		c.Span = d
	}
	if c.Jobs < 1 || c.Agents < 1 {
		errs = append(errs, fmt.Errorf("need at least one job and one agent (CHAOS_JOBS=%d, CHAOS_AGENTS=%d)", c.Jobs, c.Agents))
	}
	return errors.Join(errs...)
}

// job is a job the run submitted.
type job struct {
	name   string
	target int
	id     string
}

// expected is the trainer's result for a target: the sum of 1..target.
func (j *job) expected() string { return strconv.Itoa(j.target * (j.target + 1) / 2) }

// event is a fault as it was injected.
type event struct {
	Fault
	at time.Time // when it hit: the signal sent, the proxy switched
	// node is the node the agent was when the fault hit it: only that
	// node's losses are the fault's doing (an agent joins as a new node
	// after each loss and each restart).
	node string
	// back is when a restarted server served again.
	back time.Time
	err  error
}

// run is one chaos run's processes and records.
type run struct {
	t      *testing.T
	cfg    config
	dir    string
	pidDir string
	srv    *server
	agents []*agent
	jobs   []*job
	probe  *probe

	mu     sync.Mutex
	events []event
	errs   []error // failures of the harness itself
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func runChaos(t *testing.T, cfg config) {
	r := &run{t: t, cfg: cfg, dir: os.Getenv("CHAOS_DIR")}
	if r.dir == "" {
		// Not t.TempDir(), whose parent only root may enter: the trainers,
		// running as task users, write their PID records under it.
		dir, err := os.MkdirTemp("", "lode-chaos-run-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		r.dir = dir
	} else {
		r.dir = filepath.Join(r.dir, fmt.Sprintf("seed-%d-%s", cfg.Seed, time.Now().Format("150405")))
	}
	logDir := filepath.Join(r.dir, "logs")
	r.pidDir = filepath.Join(r.dir, "pids")
	for _, d := range []string{logDir, r.pidDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d, mode := range map[string]os.FileMode{r.dir: 0o755, r.pidDir: 0o1777} {
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("chaos: run directory %s", r.dir)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r.srv = &server{dir: filepath.Join(r.dir, "server"), addr: fmt.Sprintf("127.0.0.1:%d", port), logDir: logDir}
	if err := r.srv.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.killAll)

	ctx := context.Background()
	tok, err := r.srv.client().JoinToken(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	r.agents = make([]*agent, cfg.Agents)
	for i := range r.agents {
		p, err := NewProxy(r.srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		a := &agent{name: fmt.Sprintf("agent-%02d", i), dir: filepath.Join(r.dir, "agents", fmt.Sprintf("agent-%02d", i)),
			logDir: logDir, proxy: p, server: "https://" + p.Addr(), ca: filepath.Join(r.srv.dir, "ca.crt"), token: tok.Token}
		r.agents[i] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.start(); err != nil {
				r.fail(err)
			}
		}()
	}
	wg.Wait()
	if len(r.errs) > 0 {
		t.Fatal(errors.Join(r.errs...))
	}

	faults := Schedule(cfg.Seed, cfg.Faults, cfg.Agents, 2*time.Second, cfg.Span)
	var sched strings.Builder
	for _, f := range faults {
		fmt.Fprintln(&sched, f)
	}
	_ = os.WriteFile(filepath.Join(r.dir, "schedule.txt"), []byte(sched.String()), 0o644)

	// Everything below ends by itself: the jobs have the span plus the
	// drain time to finish, and every fault lasts seconds.
	runCtx, cancel := context.WithTimeout(ctx, cfg.Span+cfg.Drain)
	defer cancel()
	start := time.Now()
	r.jobs = r.makeJobs()
	var injected, submitted, scraping sync.WaitGroup
	injected.Add(1)
	go func() { defer injected.Done(); r.inject(runCtx, start, faults) }()
	submitted.Add(1)
	go func() { defer submitted.Done(); r.submit(runCtx, start) }()
	scrapeCtx, stopScraping := context.WithCancel(ctx)
	scraping.Add(2)
	go func() { defer scraping.Done(); r.scrape(scrapeCtx) }()
	r.probe = &probe{srv: r.srv, token: tok.Token}
	go func() { defer scraping.Done(); r.probe.run(scrapeCtx) }()

	submitted.Wait()
	done := r.waitJobs(runCtx)
	injected.Wait()
	stopScraping()
	scraping.Wait()
	elapsed := time.Since(start)
	t.Logf("chaos: %d of %d jobs ended in %v; %d faults injected", done, len(r.jobs), elapsed.Round(time.Second), len(r.events))

	rep := r.check(ctx)
	rep.print(t, r)
}

// makeJobs draws each job's target from the seed.
func (r *run) makeJobs() []*job {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 42))
	jobs := make([]*job, r.cfg.Jobs)
	for i := range jobs {
		jobs[i] = &job{name: fmt.Sprintf("chaos-%04d", i), target: r.cfg.MinSteps + rng.IntN(r.cfg.MaxSteps-r.cfg.MinSteps+1)}
	}
	return jobs
}

func (r *run) spec(j *job) (*spec.Job, error) {
	y := fmt.Sprintf(`name: %s
command: [%q, "-target", "%d", "-step", %q, "-every", "%d"]
resources: {cpus: 1, memory: 256MiB}
checkpoint: {path: ckpt, every: 1s}
outputs: out
retries: {on_node_lost: 100}
env: {CHAOS_PIDS: %q}
`, j.name, trainerBin, j.target, r.cfg.Step.String(), r.cfg.Every, r.pidDir)
	return spec.Parse(j.name+".yaml", []byte(y))
}

// submit submits the jobs spread over the first three quarters of the
// span, so that faults keep hitting running jobs until the end. A
// submission holds the server's lock for reading, so none is in flight
// when the server is killed (a retried submission could create the job
// twice: the API has no idempotency key).
func (r *run) submit(ctx context.Context, start time.Time) {
	over := r.cfg.Span * 3 / 4
	for i, j := range r.jobs {
		at := start.Add(time.Duration(int64(over) * int64(i) / int64(len(r.jobs))))
		if !wait.Sleep(ctx, time.Until(at)) {
			r.fail(fmt.Errorf("submitting: %w (%d of %d submitted)", ctx.Err(), i, len(r.jobs)))
			return
		}
		s, err := r.spec(j)
		if err != nil {
			r.fail(fmt.Errorf("spec of %s: %w", j.name, err))
			return
		}
		r.srv.mu.RLock()
		d, err := r.srv.c.SubmitJob(ctx, &wire.SubmitJob{Spec: *s})
		r.srv.mu.RUnlock()
		if err != nil {
			r.fail(fmt.Errorf("submitting %s: %w", j.name, err))
			return
		}
		j.id = d.ID
	}
}

// waitJobs polls until every submitted job has ended or ctx ends, and
// returns how many ended.
func (r *run) waitJobs(ctx context.Context) int {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	ended := 0
	for {
		jobs, err := r.srv.client().Jobs(ctx, "", 0)
		if err == nil {
			ended = 0
			for _, j := range jobs {
				if j.State.Terminal() {
					ended++
				}
			}
			if ended >= len(r.jobs) {
				return ended
			}
		}
		select {
		case <-ctx.Done():
			return ended
		case <-tick.C:
		}
	}
}

// scrape reads the server's counts of refused writes every 250 ms.
func (r *run) scrape(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		r.srv.scrapeRefused(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// inject runs the schedule: each fault at its time, faults on one agent
// one after the other, server restarts one after the other.
func (r *run) inject(ctx context.Context, start time.Time, faults []Fault) {
	var wg sync.WaitGroup
	for _, f := range faults {
		if !wait.Sleep(ctx, time.Until(start.Add(f.At))) {
			r.fail(fmt.Errorf("fault schedule cut short: %w", ctx.Err()))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := r.apply(ctx, f)
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
			if ev.err != nil {
				r.fail(fmt.Errorf("fault %v: %w", f, ev.err))
			}
		}()
	}
	wg.Wait()
}

// apply injects one fault and returns when it has healed.
func (r *run) apply(ctx context.Context, f Fault) event {
	ev := event{Fault: f}
	if f.Kind == Restart {
		ev.at, ev.err = r.srv.crash(ctx, f.For)
		ev.back = time.Now()
		return ev
	}
	a := r.agents[f.Agent]
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	ev.node = a.node()
	switch f.Kind {
	case Kill:
		if ev.at, ev.err = a.kill(); ev.err != nil {
			return ev
		}
		wait.Sleep(ctx, f.For)
		ev.err = a.start()
	case Stall:
		ev.at = a.stall(ctx, f.For, f.Machine)
	case Partition:
		a.proxy.Set(f.Mode)
		ev.at = time.Now()
		wait.Sleep(ctx, f.For)
		a.proxy.Set(Open)
	}
	return ev
}

// killAll ends every process of the run: the agents (whose exec-guards
// take their tasks down), any trainer still alive, the proxies, the server.
func (r *run) killAll() {
	for _, a := range r.agents {
		if a == nil {
			continue
		}
		if p := a.current(); p != nil {
			kids := descendants(p.pid())
			_ = syscall.Kill(p.pid(), syscall.SIGCONT)
			p.signal(syscall.SIGKILL)
			for _, k := range kids {
				_ = syscall.Kill(k, syscall.SIGKILL)
			}
			_ = p.wait(10 * time.Second)
		}
		a.proxy.Close()
	}
	if r.pidDir != "" {
		live, _, _ := livePIDs(r.pidDir)
		for _, l := range live {
			_ = syscall.Kill(l.pid, syscall.SIGKILL)
		}
	}
	if r.srv != nil && r.srv.proc != nil {
		r.srv.proc.signal(syscall.SIGKILL)
		_ = r.srv.proc.wait(10 * time.Second)
	}
}

// stopAgents stops every agent cleanly.
func (r *run) stopAgents() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range r.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.stop(30 * time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// agentLogs lists every agent log file of the run.
func (r *run) agentLogs() []string {
	var logs []string
	for _, a := range r.agents {
		a.mu.Lock()
		logs = append(logs, a.logs...)
		a.mu.Unlock()
	}
	return logs
}
