package sim_test

import (
	"fmt"
	"log"

	"lode.dev/lode/internal/sim"
)

// A community rig and a certified cloud; one public job and one
// confidential job that the default policy keeps off the rig.
const trace = `
name: example
pools:
  - name: rig
    kind: rig
    region: eu
    tier: community
    prices: {gpu_hour: {rtx4090: 0.40}}
    failures: {node_loss_per_hour: 0.01, repair: 1h}
    nodes:
      - {count: 2, cpus: 16, memory: 64GiB, gpus: 2xrtx4090}
  - name: cloud
    kind: on-demand
    region: eu
    tier: certified
    prices: {gpu_hour: {a100: 3.00}}
    nodes:
      - {count: 2, cpus: 32, memory: 256GiB, gpus: 4xa100}
jobs:
  - {name: train, at: 0, work: 4, deadline: 12h}
  - {name: eval, at: 1h, work: 1, classification: confidential, deadline: 6h}
`

func ExampleRun() {
	t, err := sim.ParseTrace("example.yaml", []byte(trace))
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range []sim.Policy{sim.PolicyLode, sim.PolicyCloudOnly} {
		r, err := sim.Run(t, sim.Options{Policy: p})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: $%.2f for %d of %d jobs, %.0f%% of deadlines met, %d violations (lower bound $%.2f)\n",
			r.Policy, r.Cost, r.Finished, r.Jobs, r.DeadlineHitPct, r.Violations, r.LowerBound)
	}
	// Output:
	// lode: $5.00 for 2 of 2 jobs, 100% of deadlines met, 0 violations (lower bound $5.00)
	// cloud-only: $15.00 for 2 of 2 jobs, 100% of deadlines met, 0 violations (lower bound $5.00)
}
