// Package market benchmarks what Lode's placement saves on a simulated
// compute market: a trace (docs/trace.md) replayed through the real
// scheduler by internal/sim, against the on-demand-cloud-only baseline
// replayed in the same run and the trace's lower bound.
//
//	go test -run '^$' -bench . ./bench/market/
//	LODE_TRACE=my-week.yaml go test -run '^$' -bench . ./bench/market/
//	go test -run '^$' -bench . ./bench/market/ -args -trace my-week.yaml -seed 3
//
// Figures, each a benchmark metric:
//
//   - x-cheaper-than-cloud: the cloud-only baseline's cost over Lode's
//     (target ≥ 3);
//   - deadlines-met-%: jobs with a deadline that finished by it (≥ 99);
//   - violations: placements the simulator's own re-check refused (0);
//   - cost-over-lower-bound-%: Lode's cost above the trace's lower bound,
//     each job's work at the cheapest price its constraints allow,
//     ignoring capacity and failures (≤ 15);
//   - gpu-hours-lost, unfinished, utilisation-%: for the record.
//
// ns/op is how long one replay of the trace takes.
package market

import (
	"cmp"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lode.dev/lode/internal/sim"
)

var (
	traceFlag = flag.String("trace", "", "trace to replay (default $LODE_TRACE, else testdata/traces/market-week.yaml)")
	seedFlag  = flag.Uint64("seed", 0, "failure-model seed (default $LODE_SEED, else the trace's)")
)

func load(b *testing.B) (*sim.Trace, uint64) {
	b.Helper()
	path := cmp.Or(*traceFlag, os.Getenv("LODE_TRACE"), filepath.Join("..", "..", "testdata", "traces", "market-week.yaml"))
	t, err := sim.LoadTrace(path)
	if err != nil {
		b.Fatal(err)
	}
	seed := *seedFlag
	if s := os.Getenv("LODE_SEED"); seed == 0 && s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			b.Fatalf("LODE_SEED=%q: %v", s, err)
		}
	}
	return t, seed
}

func replay(b *testing.B, t *sim.Trace, p sim.Policy, seed uint64) *sim.Report {
	b.Helper()
	r, err := sim.Run(t, sim.Options{Policy: p, Seed: seed})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkMarket replays the trace under Lode's scheduler and reports the
// headline figures against the cloud-only baseline of the same run.
func BenchmarkMarket(b *testing.B) {
	t, seed := load(b)
	cloud := replay(b, t, sim.PolicyCloudOnly, seed)
	var r *sim.Report
	for b.Loop() {
		r = replay(b, t, sim.PolicyLode, seed)
	}
	report(b, r, cloud)
}

// BenchmarkBaselines reports the same figures for the baselines, so the
// table shows what the scheduler adds over them.
func BenchmarkBaselines(b *testing.B) {
	t, seed := load(b)
	cloud := replay(b, t, sim.PolicyCloudOnly, seed)
	for _, p := range []sim.Policy{sim.PolicyCheapestFirst, sim.PolicyCloudOnly} {
		b.Run("policy="+string(p), func(b *testing.B) {
			var r *sim.Report
			for b.Loop() {
				r = replay(b, t, p, seed)
			}
			report(b, r, cloud)
		})
	}
}

func report(b *testing.B, r, cloud *sim.Report) {
	b.Helper()
	if r.Cost > 0 {
		b.ReportMetric(cloud.Cost/r.Cost, "x-cheaper-than-cloud")
	}
	b.ReportMetric(r.DeadlineHitPct, "deadlines-met-%")
	b.ReportMetric(float64(r.Violations), "violations")
	b.ReportMetric(r.CostOverLowerBoundPct, "cost-over-lower-bound-%")
	b.ReportMetric(r.GPUHoursLost, "gpu-hours-lost")
	b.ReportMetric(float64(r.Unfinished+r.Failed), "unfinished")
	b.ReportMetric(r.GPUUtilisationPct, "utilisation-%")
	b.Logf("%s under %s: $%.2f (cloud-only $%.2f, lower bound $%.2f), %d/%d jobs finished, %d/%d deadlines met, %d violations",
		r.Trace, r.Policy, r.Cost, cloud.Cost, r.LowerBound, r.Finished, r.Jobs, r.DeadlinesMet, r.Deadlines, r.Violations)
	if cloud.Unfinished+cloud.Failed > 0 {
		b.Logf("the cloud-only baseline left %d jobs unfinished: its cost covers less work", cloud.Unfinished+cloud.Failed)
	}
	if testing.Verbose() {
		var sb strings.Builder
		if err := r.WriteText(&sb); err == nil {
			b.Log("\n" + sb.String())
		}
	}
}
