package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
)

// traceDir holds the shipped traces.
var traceDir = filepath.Join("..", "..", "testdata", "traces")

func TestParseShippedTraces(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(traceDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no traces in %s: %v", traceDir, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			tr, err := LoadTrace(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Pools) == 0 || len(tr.Jobs) == 0 {
				t.Errorf("got %d pools and %d jobs, want some of each", len(tr.Pools), len(tr.Jobs))
			}
		})
	}
}

func TestParseTrace(t *testing.T) {
	const src = `name: t
start: 2026-02-02T00:00:00Z
cycle: 1m
seed: 9
policy:
  - {classification: internal, min_tier: verified, regions: [eu]}
throughput: {rtx3090: 0.5}
projects:
  p1: {budget: 100, weight: 2}
pools:
  - name: rig
    kind: rig
    region: eu
    tier: verified
    prices: {gpu_hour: {RTX 3090: 0.3}, cpu_hour: 0.01}
    failures: {node_loss_per_hour: 0.01, repair: 2h}
    nodes:
      - {count: 2, cpus: 8, memory: 32GiB, gpus: 2xrtx3090}
events:
  - {at: 1d12h, pool: rig, vanish: true}
  - {at: 1d, pool: rig, add: {cpus: 4, memory: 8GiB}}
jobs:
  - {name: b, at: 2h, work: 4, nodes: 2, gpus: 2, gpu: rtx3090, deadline: 6h, priority: high, checkpoint: none, min_gbps: 10}
  - {name: a, at: 1h, count: 3, every: 30m, project: p1, gpus: 0, cpus: 2, estimate: 90m, classification: public, retries: 2}
`
	tr, err := ParseTrace("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.Start, time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("start: got %v, want %v", got, want)
	}
	if tr.Cycle != time.Minute || tr.Seed != 9 {
		t.Errorf("cycle, seed: got %v %d, want 1m 9", tr.Cycle, tr.Seed)
	}
	if got := tr.Until; got != 36*time.Hour+DefaultDrain {
		t.Errorf("until: got %v, want the last event plus %v", got, DefaultDrain)
	}
	wantRule := sched.PolicyRule{Classification: core.ClassInternal, MinTier: core.TierVerified, Regions: []string{"eu"}}
	if diff := cmp.Diff(wantRule, tr.Policy.Rules[core.ClassInternal]); diff != "" {
		t.Errorf("policy rule for internal (-want +got):\n%s", diff)
	}
	if len(tr.Policy.Rules) != 4 {
		t.Errorf("got %d policy rules, want the default's 4 with internal replaced", len(tr.Policy.Rules))
	}
	if tr.Throughput["rtx3090"] != 0.5 || tr.Throughput["a100"] != 1 {
		t.Errorf("throughput: got %v, want the default with rtx3090 0.5", tr.Throughput)
	}
	if diff := cmp.Diff(map[string]sched.Project{"p1": {Budget: 100, Weight: 2}}, tr.Projects); diff != "" {
		t.Errorf("projects (-want +got):\n%s", diff)
	}
	p := tr.Pools[0]
	if p.Prices.GPUHour["rtx3090"] != 0.3 || p.Prices.CPUHour != 0.01 || p.Interconnect.Domain != "rig" || p.Repair != 2*time.Hour {
		t.Errorf("pool: got %+v", p)
	}
	if diff := cmp.Diff([]NodeGroup{{Count: 2, MilliCPUs: 8000, MemoryBytes: 32 << 30, GPUs: map[string]int{"rtx3090": 2}}}, p.Nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if len(tr.Events) != 2 || tr.Events[0].At != 24*time.Hour || tr.Events[0].Add.Count != 1 || !tr.Events[1].Vanish {
		t.Errorf("events are not in time order with their defaults: %+v", tr.Events)
	}
	var ids []string
	for _, j := range tr.Jobs {
		ids = append(ids, j.ID+"@"+j.At.String())
	}
	if diff := cmp.Diff([]string{"a-0@1h0m0s", "a-1@1h30m0s", "b@2h0m0s", "a-2@2h0m0s"}, ids); diff != "" {
		t.Errorf("jobs in arrival order (-want +got):\n%s", diff)
	}
	b := tr.Jobs[2]
	if b.Work != 4 || b.Spec.Estimate.String() != "1h0m0s" || b.Spec.Checkpoint != nil || b.Spec.Priority != core.PriorityHigh ||
		b.Spec.Interconnect.MinGbps != 10 || b.Spec.Resources.GPUModels[0] != "rtx3090" {
		t.Errorf("job b: got %+v (work %g)", b.Spec, b.Work)
	}
	a := tr.Jobs[0]
	if a.Spec.Project != "p1" || a.Spec.Resources.GPUs != 0 || a.Spec.Estimate.String() != "1h30m0s" || a.Work != 1.5 || a.Spec.Retries.OnNodeLost != 2 {
		t.Errorf("job a: got %+v (work %g)", a.Spec, a.Work)
	}
}

// pools is a valid pools section for the bad-trace cases, lines 1 to 7.
const pools = `pools:
  - name: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx3090: 0.3}}
    nodes:
      - {count: 1, cpus: 8, memory: 32GiB, gpus: 1xrtx3090}
`

func TestParseTraceErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // each a whole line of the error
	}{
		{"empty", ``, []string{"t.yaml:1: the trace is empty (a trace needs at least pools: and jobs:)"}},
		{"not a mapping", "- a\n", []string{"t.yaml:1:1: the trace must be a mapping, not a list (a trace is a mapping with pools:, jobs: and the other keys of docs/trace.md)"}},
		{"syntax", pools + "jobs: [\n", []string{"t.yaml:8: bad YAML: did not find expected node content"}},
		{"unknown top-level key", "pool: []\n" + pools, []string{
			"t.yaml:1:1: pool: unknown key (did you mean pools?)",
		}},
		{"two documents", pools + "---\njobs: []\n", []string{"t.yaml:8:1: a trace holds one YAML document, this is another (remove the --- line)"}},
		{"unknown pool key", `pools:
  - name: rig
    regoin: eu
    tier: community
    prices: {}
`, []string{
			"t.yaml:2:5: pools[0].region: is required (see docs/trace.md)",
			"t.yaml:3:5: pools[0].regoin: unknown key (did you mean region?)",
		}},
		{"wrong types", `pools:
  - name: rig
    region: eu
    tier: 3
    interconnect: {gbps: fast, multi_node: yes please}
    prices: {gpu_hour: {a100: -1}}
    failures: {node_loss_per_hour: 200}
    nodes:
      - {count: 0, cpus: 8, memory: 32, gpus: 1xa100}
`, []string{
			`t.yaml:4:11: pools[0].tier: must be a string, not a number (quote it: "3")`,
			`t.yaml:5:26: pools[0].interconnect.gbps: must be a number, not a string "fast"`,
			`t.yaml:5:44: pools[0].interconnect.multi_node: must be a boolean, not a string "yes please" (true or false)`,
			`t.yaml:6:31: pools[0].prices.gpu_hour.a100: must not be negative, not -1`,
			`t.yaml:7:36: pools[0].failures.node_loss_per_hour: must be at most 100, not 200 (0.01 is one loss per node every 100 hours)`,
			`t.yaml:9:17: pools[0].nodes[0].count: must be from 1 to 100000, not 0`,
			`t.yaml:9:37: pools[0].nodes[0].memory: "32" is not a memory size of at least 1MiB (write it like 512MiB or 64GiB; a size without a unit is in bytes)`,
		}},
		{"GPU without a price", `pools:
  - name: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx3090: 0.3}}
    nodes:
      - {cpus: 8, memory: 32GiB, gpus: 2xrtx4090}
`, []string{`t.yaml:2:5: prices.gpu_hour: pool "rig" has rtx4090 GPUs but no price for them (give each model its price per GPU-hour, for example gpu_hour: {rtx4090: 0.30})`}},
		{"duplicate key", pools + "jobs:\n  - {name: a, at: 1h, work: 1, at: 2h}\n", []string{
			"t.yaml:9:32: jobs[0].at: is given twice (first at line 9)",
		}},
		{"events", pools + `events:
  - {at: 1d, pool: nope, vanish: true}
  - {at: 5x, pool: rig, remove: 1}
  - {at: 1d, pool: rig, remove: 1, vanish: true}
  - {at: 1d, pool: rig, vanish: false}
`, []string{
			`t.yaml:9:20: events[0].pool: no pool "nope" (declare it under pools)`,
			`t.yaml:10:10: events[1].at: "5x" is not a duration (write it like 90s, 10m, 6h or 2d12h)`,
			`t.yaml:11:5: events[2]: an event needs exactly one of add, remove, drain and vanish (write one of add: {count: 4, cpus: 16, memory: 64GiB, gpus: 4xrtx3090}, remove: 4, drain: 4 or vanish: true)`,
			`t.yaml:12:33: events[3].vanish: false does nothing (remove the event, or write vanish: true)`,
		}},
		{"jobs", pools + `jobs:
  - {name: a, at: 1h}
  - {name: b, at: 1h, gpus: 0, work: 3}
  - {name: c, at: 1h, work: 1, every: 1m}
  - {name: Bad_Name, at: 1h, work: 1}
  - {name: d, at: 1h, work: 1, nodes: 0, classification: secret}
  - {name: e, at: 1h, count: 2, work: 1}
  - {name: e-1, at: 1h, work: 1}
  - {name: f, at: 1h, work: 1, pools: [nope]}
  - {name: g, at: 1h, work: 1, estimate: 1h}
`, []string{
			"t.yaml:9:5: jobs[0].work: is required (or estimate: for a CPU-only job) (GPU-hours on an A100, all ranks together, for example work: 8)",
			"t.yaml:10:38: jobs[1].work: is in GPU-hours but the job asks for no GPUs (set gpus, or give estimate: for a CPU-only job)",
			"t.yaml:11:39: jobs[2].every: spaces the copies of a job with count, which is missing (set count too)",
			`t.yaml:12:12: jobs[3].name: "Bad_Name" is not a valid name (use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, such as "bad-name")`,
			`t.yaml:13:58: jobs[4].classification: unknown classification "secret" (one of public, internal, confidential, restricted)`,
			`t.yaml:15:12: jobs[6].name: job "e-1" is in the trace twice (first at line 14; give each entry its own name)`,
			`t.yaml:16:39: jobs[7].pools[0]: no pool "nope" (declare it under pools)`,
			`t.yaml:17:42: jobs[8].estimate: is given with work (keep one: work for GPU jobs, estimate for CPU-only jobs)`,
		}},
		{"no pools", "pools: []\n", []string{"t.yaml:1:8: pools: is empty (declare at least one pool: see docs/trace.md)"}},
		{"until before the last arrival", "until: 1h\n" + pools + "jobs:\n  - {name: a, at: 2h, work: 1}\n", []string{
			"t.yaml:1:8: until: is 1h, before the last arrival or event (2h)",
		}},
		{"policy", "policy:\n  - {classification: public}\n  - {classification: internal, min_tier: gold}\n" + pools, []string{
			"t.yaml:2:5: policy[0]: needs classification and min_tier (for example {classification: confidential, min_tier: certified, regions: [eu]})",
			`t.yaml:3:42: policy[1].min_tier: unknown trust tier "gold" (one of community, verified, certified, private)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := ParseTrace("t.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("got a trace (%d pools, %d jobs), want errors", len(tr.Pools), len(tr.Jobs))
			}
			var es *Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %T, want sim.Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 30 * time.Second: "30s", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m",
		36 * time.Hour: "1d12h", 48 * time.Hour: "2d", 24*time.Hour + 30*time.Second: "1d30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := parseDuration(want); err != nil || back != d {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", want, back, err, d)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "90s": 90 * time.Second, "2d": 48 * time.Hour, "1d12h": 36 * time.Hour, "0.5d": 12 * time.Hour, "1d30m": 24*time.Hour + 30*time.Minute,
	} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1e3d", "1d-1h", "3", "1x", "NaNd"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestLoadTraceMissingFile(t *testing.T) {
	_, err := LoadTrace(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}
