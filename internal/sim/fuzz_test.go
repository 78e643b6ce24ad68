package sim

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParseTrace checks that no input makes the parser panic or hang, that
// every problem it reports has a line, and that what it accepts is
// coherent: jobs in time order with unique names, events on known pools.
func FuzzParseTrace(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(traceDir, "*.yaml"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(flaky))
	f.Add([]byte(pools + "jobs:\n  - {name: a, at: 1h, count: 3, every: 1m, work: 1}\n"))
	f.Add([]byte(pools + "events:\n  - {at: 1d, pool: rig, add: {cpus: 4, memory: 8GiB, gpus: 2xa100}}\n"))
	f.Add([]byte("a: &a [*a, *a]\npools: *a\n"))
	f.Add([]byte("pools:\n\t- name: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrace("f.yaml", data)
		if err != nil {
			es, ok := err.(*Errors)
			if !ok || len(*es) == 0 {
				t.Fatalf("got %T %v, want sim.Errors", err, err)
			}
			return
		}
		if len(tr.Pools) == 0 {
			t.Fatal("accepted a trace without pools")
		}
		seen := map[string]bool{}
		for i, j := range tr.Jobs {
			if seen[j.ID] {
				t.Fatalf("job %q twice", j.ID)
			}
			seen[j.ID] = true
			if i > 0 && j.At < tr.Jobs[i-1].At {
				t.Fatalf("jobs out of order at %d", i)
			}
			if !(j.Work > 0) || j.Spec.Estimate <= 0 {
				t.Fatalf("job %q has work %g and estimate %v", j.ID, j.Work, j.Spec.Estimate)
			}
		}
		for _, ev := range tr.Events {
			if !slices.ContainsFunc(tr.Pools, func(p Pool) bool { return p.Name == ev.Pool }) {
				t.Fatalf("event on unknown pool %q", ev.Pool)
			}
		}
		if tr.Until <= 0 || tr.Cycle <= 0 {
			t.Fatalf("until %v, cycle %v", tr.Until, tr.Cycle)
		}
	})
}
