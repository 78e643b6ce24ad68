// Package failover benchmarks Lode's failure detection and resume against
// real processes on loopback: a `lode server` built from this tree, real
// `lode agent` processes that are SIGKILLed, and a fleet of simulated
// agents that heartbeat over real HTTP. It holds no code of its own; the
// benchmarks are its tests.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/failover/
//	go test -run '^$' -bench DetectAndResume -benchtime 1x ./bench/failover/
//	LODE_BENCH_AGENTS=2000 go test -run '^$' -bench HeartbeatLoad -benchtime 1x ./bench/failover/
//
// Each benchmark runs its experiment once per invocation, whatever b.N is
// (ns/op is then the length of the whole experiment); with -v the log also
// lists every kill. The server keeps its default --heartbeat and
// --lease-ttl: the point is to measure the defaults.
//
// BenchmarkDetectAndResume runs a server (--no-local-pool, and
// --quarantine-below=-1, since the benchmark loses nodes of its only pool
// far faster than any real pool should and quarantine would park the jobs)
// with twice as many agents (--gpus none --cpus 1) as long-running jobs, so
// spare capacity is never what a resume waits for. Again and again it
// waits until a job runs, waits a random (seeded) moment, SIGKILLs the
// agent that runs it and starts a replacement agent. Figures:
//
//   - detect-p50-s, detect-p99-s: SIGKILL to the lost attempt's ended_at
//     as the server recorded it (target p99 ≤ 3 s);
//   - detect-seen-p99-s: SIGKILL to the moment the API first showed the
//     attempt lost (the server's figure plus polling delay);
//   - resume-p50-s, resume-p99-s: the lost attempt's ended_at to the next
//     attempt's started_at, that is running again on another agent
//     (target p99 ≤ 5 s);
//   - detect-over-ttl: detect-p99-s over the server's lease TTL, read from
//     the server in the same run (lease-ttl-s): a kill just after a
//     heartbeat cannot be noticed sooner than one TTL later, so about 1 is
//     the best a lease-based detector at these settings can do.
//
// Percentiles are nearest-rank: with fewer than 100 kills p99 is the worst
// kill.
//
// BenchmarkHeartbeatLoad runs a server (--no-local-pool) and first
// measures its idle CPU over the measurement window with no agents. Then
// LODE_BENCH_AGENTS (default 10,000) simulated agents join the default
// pool, each from its own goroutine, and heartbeat every interval the
// server hands out (1 s by default) ± 300 ms of uniform jitter, as
// `lode agent` does, over a few shared HTTP transports. After a warm-up it
// measures, over the window, the server process's CPU from /proc/PID/stat.
// Figures:
//
//   - heartbeat-core-%: the server's CPU under the load, in percent of one
//     core (target ≤ 10 at 10,000 agents);
//   - idle-core-%: the same server's CPU over an equal window with no
//     agents, the baseline to read it against;
//   - heartbeats/s: heartbeats answered in the window;
//   - hb-p99-ms: heartbeat round-trip time at p99;
//   - false-positives: simulated nodes the server declared gone although
//     their agents kept heartbeating: those whose heartbeat it refused as
//     gone, and those it does not list as ready at the end (the list is
//     read as the fleet stops, well within a lease) (must be 0);
//   - server-µs/heartbeat: the server's CPU above idle per heartbeat
//     answered, which holds all the fleet's size costs the server (the
//     control loop's passes over its nodes too), not only the requests;
//   - loadgen-core-%: the benchmark process's own CPU over the window, the
//     share of the machine the simulated fleet itself took.
//
// The log also says how much CPU other processes on the machine took in
// each window, from /proc/stat, since they compete with the server.
//
// Settings (environment): LODE_BENCH_SEED (1), LODE_BENCH_KILLS (100),
// LODE_BENCH_JOBS (4), LODE_BENCH_AGENTS (10000), LODE_BENCH_WINDOW (30s),
// LODE_BENCH_WARMUP (10s). The server's output is shown when a benchmark
// fails, and an agent's when it fails to join.
package failover
