package failover

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

const (
	// jitter is the most a simulated agent's pause between heartbeats
	// differs from the interval, either way (uniformly).
	jitter = 300 * time.Millisecond
	// transports is how many HTTP transports the simulated fleet shares;
	// each keeps up to 16 idle connections to the server.
	transports = 64
	// joiners is how many joins are in flight at once.
	joiners = 16
	// beatTimeout bounds one heartbeat; the server's lease TTL is far
	// shorter, so a heartbeat that takes this long has failed anyway.
	beatTimeout = 10 * time.Second
)

// The phases of a heartbeat-load run.
const (
	joining int32 = iota
	warmUp
	inWindow
	stopping
)

// sim is a simulated fleet: goroutines that join and heartbeat like
// `lode agent` with no tasks.
type sim struct {
	token    string
	bases    []*client.Client
	seed     uint64
	interval atomic.Int64 // the server's heartbeat interval, from a join

	// measuring is set during the measurement window; only then are
	// heartbeats counted and timed.
	measuring atomic.Bool
	// phase is where the run is (joining, warmUp, inWindow, then
	// stopping); refusals counts the heartbeats refused as gone in each.
	phase    atomic.Int32
	refusals [4]atomic.Int64
	maxLat   atomic.Int64 // the slowest heartbeat of the whole run
	beats    atomic.Int64 // answered in the window
	failed   atomic.Int64 // failed other than node_gone, at any time

	mu      sync.Mutex
	lat     [][]time.Duration // per agent, in the window
	nodes   map[string]bool   // node IDs of the fleet
	gone    map[string]bool   // node IDs the server refused as gone
	lastErr error
}

func BenchmarkHeartbeatLoad(b *testing.B) {
	once(b)
	n := envInt(b, "LODE_BENCH_AGENTS", 10_000)
	window := envDuration(b, "LODE_BENCH_WINDOW", 30*time.Second)
	warmup := envDuration(b, "LODE_BENCH_WARMUP", 10*time.Second)
	seed := uint64(envInt(b, "LODE_BENCH_SEED", 1))

	srv := startServer(b)
	pid := srv.pid()

	// Baseline: the same server with no agents, over an equal window,
	// after it has settled from its start.
	time.Sleep(2 * time.Second)
	idle, err := measure(pid, window, nil)
	if err != nil {
		b.Fatal(err)
	}

	s := &sim{token: srv.joinToken(b), seed: seed, lat: make([][]time.Duration, n), nodes: map[string]bool{}, gone: map[string]bool{}}
	for range transports {
		c, err := client.New(srv.url, client.TrustCA(srv.ca))
		if err != nil {
			b.Fatal(err)
		}
		s.bases = append(s.bases, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var beating sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		beating.Wait()
	})

	b.ResetTimer()
	joinStart := time.Now()
	if err := s.joinAll(ctx, n, &beating); err != nil {
		b.Fatalf("joining %d simulated agents: %v", n, err)
	}
	joinTook := time.Since(joinStart)
	s.phase.Store(warmUp)
	if !wait.Sleep(ctx, warmup) {
		b.Fatal("cancelled during warm-up")
	}
	s.phase.Store(inWindow)
	counted0, counterErr := heartbeatCounter(srv)
	loaded, err := measure(pid, window, &s.measuring)
	if err != nil {
		b.Fatal(err)
	}
	s.phase.Store(stopping)
	beats := s.beats.Load()
	counted1, err := heartbeatCounter(srv)
	counterErr = errors.Join(counterErr, err)

	// Every node must be ready at the end. The fleet stops first, and the
	// list is read at once, well within a lease: listing 10,000 nodes is a
	// heavy request, and made while the fleet heartbeats it would measure
	// its own disturbance rather than the heartbeat load.
	cancel()
	falsePos, notReady, err := s.falsePositives(srv)
	if err != nil {
		b.Fatal(err)
	}
	beating.Wait()
	b.StopTimer()

	// The floor: the same fleet's connections and timing with nothing but
	// TCP in the server, measured in this run.
	floor := measureFloor(b, n, time.Duration(s.interval.Load()), warmup/2, window, seed)

	var lat []time.Duration
	for _, l := range s.lat {
		lat = append(lat, l...)
	}
	rate := float64(beats) / loaded.wall.Seconds()
	b.ReportMetric(loaded.serverPct(), "heartbeat-core-%")
	b.ReportMetric(idle.serverPct(), "idle-core-%")
	b.ReportMetric(floor, "bare-tcp-core-%")
	b.ReportMetric(loaded.serverPct()/floor, "x-over-bare-tcp")
	b.ReportMetric(rate, "heartbeats/s")
	b.ReportMetric(1000*percentile(lat, 99), "hb-p99-ms")
	b.ReportMetric(float64(len(falsePos)), "false-positives")
	b.ReportMetric(loaded.selfPct(), "loadgen-core-%")
	if beats > 0 {
		// The server's CPU above idle per heartbeat answered; it holds
		// everything the fleet's size costs the server, such as the
		// control loop's passes over its nodes.
		above := loaded.server.Seconds() - idle.server.Seconds()*loaded.wall.Seconds()/idle.wall.Seconds()
		b.ReportMetric(1e6*above/float64(beats), "server-µs/heartbeat")
	}
	b.Logf("%d simulated agents joined in %v (%.0f joins/s); heartbeat every %v ± %v; warm-up %v, window %v",
		n, joinTook.Round(time.Millisecond), float64(n)/joinTook.Seconds(), time.Duration(s.interval.Load()), jitter, warmup, window)
	b.Logf("server CPU: %.1f%% of a core under load, %.1f%% idle (%.1f points over idle); %.0f heartbeats/s answered (%.2f per agent per second); round trip p50 %.1fms p99 %.1fms max %.1fms",
		loaded.serverPct(), idle.serverPct(), loaded.serverPct()-idle.serverPct(), rate, rate/float64(n),
		1000*percentile(lat, 50), 1000*percentile(lat, 99), 1000*percentile(lat, 100))
	b.Logf("floor: a bare TCP server reading and answering one line per connection at the same rate: %.1f%% of a core; the server spends %.2fx that",
		floor, loaded.serverPct()/floor)
	if counterErr != nil {
		b.Logf("the server's own heartbeat count was not read: %v", counterErr)
	} else {
		b.Logf("the server counted %.0f heartbeats/s over the window (lode_heartbeats_total)", (counted1-counted0)/loaded.wall.Seconds())
	}
	b.Logf("load generator (this process): %.1f%% of a core over the window; other processes on this %d-core machine: about %.0f%% of a core (idle window: about %.0f%%); failed heartbeats %d",
		loaded.selfPct(), runtime.NumCPU(), loaded.othersPct(), idle.othersPct(), s.failed.Load())
	// False positives are a figure like the others (target 0), not a
	// failure: the run's other figures say why they happened.
	if len(falsePos) > 0 {
		b.Logf("FALSE POSITIVES: %d simulated nodes were declared gone although their agents kept heartbeating: %d are not listed ready, %d had a heartbeat refused as gone (%d while the fleet joined, %d in the warm-up, %d in the window); e.g. %s",
			len(falsePos), notReady, len(s.gone), s.refusals[joining].Load(), s.refusals[warmUp].Load(), s.refusals[inWindow].Load(), falsePos[0])
	}
	b.Logf("slowest heartbeat of the whole run, joins and warm-up included: %v", time.Duration(s.maxLat.Load()).Round(time.Millisecond))
	if s.lastErr != nil {
		b.Logf("last heartbeat failure: %v", s.lastErr)
	}
}

// measure returns the CPU time process pid used over a window, this
// process's own, and the window's exact length; flag, if set, is raised
// during the window.
func measure(pid int, window time.Duration, flag *atomic.Bool) (m usage, err error) {
	before, err := cpuTime(pid)
	if err != nil {
		return m, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	machineBefore, err := machineCPU()
	if err != nil {
		return m, err
	}
	selfBefore, start := selfCPU(), time.Now()
	if flag != nil {
		flag.Store(true)
	}
	time.Sleep(window)
	if flag != nil {
		flag.Store(false)
	}
	after, err := cpuTime(pid)
	if err != nil {
		return m, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	m.wall, m.self = time.Since(start), selfCPU()-selfBefore
	machineAfter, err := machineCPU()
	if err != nil {
		return m, err
	}
	m.server, m.machine = after-before, machineAfter-machineBefore
	return m, nil
}

// usage is what measure saw: the server's CPU time, this process's, the
// whole machine's, and the window's length.
type usage struct{ server, self, machine, wall time.Duration }

// othersPct is about what processes other than the server and this one
// took, in percent of one core: other work on the machine that competed.
// The kernel's per-process and per-core counts are sampled differently, so
// it is rough, and never shown below 0.
func (u usage) othersPct() float64 { return max(0, corePercent(u.machine-u.server-u.self, u.wall)) }

func (u usage) serverPct() float64 { return corePercent(u.server, u.wall) }
func (u usage) selfPct() float64   { return corePercent(u.self, u.wall) }

// joinAll joins n agents, a few at a time, starting each one's heartbeats
// as soon as it has joined (as a real agent does: its lease runs from the
// join).
func (s *sim) joinAll(run context.Context, n int, beating *sync.WaitGroup) error {
	ctx, cancel := context.WithTimeout(run, time.Duration(max(n/20, 120))*time.Second)
	defer cancel()
	next := atomic.Int64{}
	errs := make([]error, joiners)
	var wg sync.WaitGroup
	for w := range joiners {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, node, err := s.join(ctx, i)
				if err != nil {
					errs[w] = fmt.Errorf("agent %d: %w", i, err)
					cancel()
					return
				}
				beating.Go(func() { s.beat(run, i, node, c) })
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("joins did not finish in time: %w", ctx.Err())
	}
	return nil
}

func (s *sim) join(ctx context.Context, i int) (*client.Client, string, error) {
	base := s.bases[i%len(s.bases)]
	req := &wire.Join{JoinToken: s.token, Name: fmt.Sprintf("sim-%05d", i), MilliCPUs: 8000, MemoryBytes: 32 << 30,
		Labels: map[string]string{wire.LabelAddr: "127.0.0.1"}, AgentVersion: "bench"}
	var err error
	for range 3 {
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var j *wire.Joined
		var node *client.Client
		node, j, err = base.JoinAs(jctx, req)
		cancel()
		if err == nil {
			s.interval.Store(int64(time.Duration(j.HeartbeatIntervalMS) * time.Millisecond))
			s.mu.Lock()
			s.nodes[j.NodeID] = true
			s.mu.Unlock()
			return node, j.NodeID, nil
		}
		if ctx.Err() != nil || client.IsUnauthorized(err) {
			break
		}
	}
	return nil, "", err
}

// beat heartbeats until ctx ends or the server says the node is gone:
// every interval ± jitter after the last answer, on a stream opened again
// whenever it breaks, as `lode agent` does; the first one at a random
// moment within an interval of the join.
func (s *sim) beat(ctx context.Context, i int, node string, c *client.Client) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(i)))
	interval := time.Duration(s.interval.Load())
	if interval <= 0 {
		interval = time.Second
	}
	req := &wire.Heartbeat{Tasks: []wire.TaskRef{}}
	pause := time.Duration(rng.Int64N(int64(interval)))
	var lat []time.Duration
	defer func() {
		s.mu.Lock()
		s.lat[i] = lat
		s.mu.Unlock()
	}()
	var beats *client.Beats
	defer func() {
		if beats != nil {
			beats.Close()
		}
	}()
	for wait.Sleep(ctx, pause) {
		start := time.Now()
		var err error
		if beats == nil {
			beats, err = c.OpenBeats(ctx, beatTimeout)
		}
		if err == nil {
			if _, err = beats.Beat(req); err != nil {
				beats = nil // Beat closed it
			}
		}
		took := time.Since(start)
		raise(&s.maxLat, int64(took))
		switch {
		case err == nil:
			if s.measuring.Load() {
				s.beats.Add(1)
				lat = append(lat, took)
			}
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrNodeGone) || client.IsUnauthorized(err):
			s.refusals[s.phase.Load()].Add(1)
			s.mu.Lock()
			s.gone[node] = true
			s.lastErr = err
			s.mu.Unlock()
			return
		default:
			s.failed.Add(1)
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
		}
		pause = interval - jitter + time.Duration(rng.Int64N(int64(2*jitter)+1))
	}
}

// falsePositives lists the fleet's nodes the server does not hold ready,
// and those whose heartbeats it refused as gone: every one of them kept
// heartbeating until then.
func (s *sim) falsePositives(srv *server) (bad []string, notReady int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, err := srv.c.Nodes(ctx, "")
	if err != nil {
		return nil, 0, fmt.Errorf("listing nodes: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := 0
	for _, nd := range nodes {
		if !s.nodes[nd.ID] {
			continue
		}
		seen++
		switch {
		case nd.State != store.NodeReady:
			notReady++
			bad = append(bad, fmt.Sprintf("%s (%s) is %s, last heartbeat %s", nd.Name, nd.ID, nd.State, nd.LastHeartbeatAt.Format(time.RFC3339Nano)))
		case s.gone[nd.ID]:
			bad = append(bad, fmt.Sprintf("%s (%s) is listed ready, but its heartbeat was refused: node gone", nd.Name, nd.ID))
		}
	}
	if seen != len(s.nodes) {
		return nil, 0, fmt.Errorf("the server lists %d of the %d simulated nodes", seen, len(s.nodes))
	}
	return bad, notReady, nil
}

// heartbeatCounter reads lode_heartbeats_total from the server's /metrics.
func heartbeatCounter(srv *server) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "lode_heartbeats_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no lode_heartbeats_total in /metrics")
}

// raise sets v to x if x is larger.
func raise(v *atomic.Int64, x int64) {
	for {
		m := v.Load()
		if x <= m || v.CompareAndSwap(m, x) {
			return
		}
	}
}
