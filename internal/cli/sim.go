package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/sim"
)

func simCmd(g *globals) *cobra.Command {
	var policy string
	var seed uint64
	var compare bool
	cmd := &cobra.Command{
		Use:   "sim TRACE",
		Short: "Replay a fleet-and-market trace through the scheduler in virtual time",
		Long: `Replay a trace (pools with prices, trust, interconnect and failure rates; nodes
that come and go; jobs that arrive) through the scheduler in virtual time, and
print what it cost, which deadlines were met, how busy the GPUs were, what
failures threw away and any constraint a placement broke. docs/trace.md
describes the trace format.

--policy runs the same trace under a baseline instead: cloud-only (the same
scheduler on the trace's on-demand pools alone) or cheapest-first (the lowest
price per hour that has room, ignoring speed, reliability and deadlines).
--compare runs all three and prints them side by side.`,
		Example: `  lode sim testdata/traces/market-week.yaml
  lode sim --compare testdata/traces/market-week.yaml
  lode sim --policy cheapest-first --seed 3 -o json my-trace.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			p, err := sim.ParsePolicy(policy)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			t, err := sim.LoadTrace(args[0])
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if !compare {
				r, err := sim.Run(t, sim.Options{Policy: p, Seed: seed})
				if err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(r)
				}
				return r.WriteText(g.out)
			}
			var reports []*sim.Report
			for _, p := range sim.Policies() {
				r, err := sim.Run(t, sim.Options{Policy: p, Seed: seed})
				if err != nil {
					return err
				}
				reports = append(reports, r)
			}
			if g.json() {
				return g.printJSON(reports)
			}
			printComparison(g, reports)
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", string(sim.PolicyLode), "who places jobs: lode, cloud-only or cheapest-first")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "seed of the failure model (0: the trace's seed)")
	cmd.Flags().BoolVar(&compare, "compare", false, "run every policy and compare them")
	return cmd
}

// printComparison prints one row per policy, costs as ratios against the
// cloud-only baseline of the same run.
func printComparison(g *globals, reports []*sim.Report) {
	var cloud float64
	for _, r := range reports {
		if r.Policy == sim.PolicyCloudOnly {
			cloud = r.Cost
		}
	}
	var rows [][]string
	for _, r := range reports {
		x := "-"
		if r.Cost > 0 && cloud > 0 {
			x = fmt.Sprintf("%.2fx", cloud/r.Cost)
		}
		rows = append(rows, []string{
			string(r.Policy), fmt.Sprintf("$%.2f", r.Cost), x, fmt.Sprintf("%+.1f%%", r.CostOverLowerBoundPct),
			fmt.Sprintf("%.2f%%", r.DeadlineHitPct), fmt.Sprintf("%d/%d", r.Finished, r.Jobs),
			fmt.Sprintf("%.1f", r.GPUHoursLost), fmt.Sprintf("%.1f%%", r.GPUUtilisationPct), fmt.Sprint(r.Violations),
		})
	}
	if len(reports) > 0 {
		fmt.Fprintf(g.out, "trace %s, seed %d, lower bound $%.2f\n\n", reports[0].Trace, reports[0].Seed, reports[0].LowerBound)
	}
	table(g, "POLICY\tCOST\tCHEAPER THAN CLOUD\tOVER LOWER BOUND\tDEADLINES MET\tFINISHED\tGPU-H LOST\tUTIL\tVIOLATIONS", rows)
}
