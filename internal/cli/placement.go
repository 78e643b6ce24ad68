package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// poolFlags are the flags that describe a pool, for add and set.
type poolFlags struct {
	region, tier, state, domain string
	gbps                        float64
	multiNode                   bool
	gpuPrices                   []string
	cpuPrice, memPrice          float64
}

func (f *poolFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.region, "region", "", "region the pool's machines are in, e.g. eu-west")
	fl.StringVar(&f.tier, "tier", "", "trust tier: community, verified, certified or private")
	fl.StringVar(&f.state, "state", "", "active, draining or quarantined")
	fl.StringVar(&f.domain, "interconnect-domain", "", "name of the network the pool's nodes share")
	fl.Float64Var(&f.gbps, "gbps", 0, "bandwidth between two of the pool's nodes, in Gbit/s")
	fl.BoolVar(&f.multiNode, "multi-node", false, "gangs may span the pool's nodes")
	fl.StringArrayVar(&f.gpuPrices, "gpu-price", nil, "MODEL=DOLLARS per GPU-hour, e.g. rtx3090=0.30 (repeatable)")
	fl.Float64Var(&f.cpuPrice, "cpu-price", 0, "dollars per CPU-hour")
	fl.Float64Var(&f.memPrice, "mem-price", 0, "dollars per GiB-hour of memory")
}

// spec turns the flags the user set into a pool spec; base holds the
// pool's current values for set.
func (f *poolFlags) spec(cmd *cobra.Command, base *store.Pool) (*wire.PoolSpec, error) {
	ps := &wire.PoolSpec{}
	changed := cmd.Flags().Changed
	if changed("region") {
		ps.Region = &f.region
	}
	if changed("tier") {
		ps.Tier = &f.tier
	}
	if changed("state") {
		ps.State = &f.state
	}
	if changed("interconnect-domain") || changed("gbps") || changed("multi-node") {
		ic := core.Interconnect{}
		if base != nil {
			ic = base.Interconnect
		}
		if changed("interconnect-domain") {
			ic.Domain = f.domain
		}
		if changed("gbps") {
			ic.Gbps = f.gbps
		}
		if changed("multi-node") {
			ic.MultiNode = f.multiNode
		}
		ps.Interconnect = &ic
	}
	if changed("gpu-price") || changed("cpu-price") || changed("mem-price") {
		pr := core.Prices{GPUHour: map[string]float64{}}
		if base != nil {
			pr.CPUHour, pr.MemGiBHour = base.Prices.CPUHour, base.Prices.MemGiBHour
			for k, v := range base.Prices.GPUHour {
				pr.GPUHour[k] = v
			}
		}
		for _, gp := range f.gpuPrices {
			m, v, ok := strings.Cut(gp, "=")
			price, err := strconv.ParseFloat(v, 64)
			if !ok || m == "" || err != nil || price < 0 {
				return nil, &ExitError{Code: 2, Err: fmt.Errorf("bad --gpu-price %q: want MODEL=DOLLARS, e.g. rtx3090=0.30", gp)}
			}
			pr.GPUHour[core.NormalizeGPUModel(m)] = price
		}
		if changed("cpu-price") {
			pr.CPUHour = f.cpuPrice
		}
		if changed("mem-price") {
			pr.MemGiBHour = f.memPrice
		}
		ps.Prices = &pr
	}
	return ps, nil
}

func poolAdminCmds(g *globals) []*cobra.Command {
	var addFlags, setFlags poolFlags
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a pool of agents, with its trust tier, region, interconnect and prices",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := addFlags.spec(cmd, nil)
			if err != nil {
				return err
			}
			ps.Name, ps.Driver = args[0], "agent"
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.CreatePool(cmd.Context(), ps)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.out, "pool %s created; start its agents with the command `lode pools token %s` prints\n", p.Name, p.Name)
			return nil
		},
	}
	addFlags.register(add)
	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Change a pool: trust tier, region, state (drain it), interconnect or prices",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			pools, err := c.Pools(cmd.Context())
			if err != nil {
				return err
			}
			var base *store.Pool
			for _, p := range pools {
				if p.Name == args[0] {
					base = &p.Pool
				}
			}
			if base == nil {
				return fmt.Errorf("no pool named %q; `lode pools` lists them", args[0])
			}
			ps, err := setFlags.spec(cmd, base)
			if err != nil {
				return err
			}
			p, err := c.UpdatePool(cmd.Context(), args[0], ps)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.out, "pool %s updated\n", p.Name)
			return nil
		},
	}
	setFlags.register(set)
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a pool that never had a node (drain one that did)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeletePool(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "pool %s deleted\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{add, set, rm}
}

func projectsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projects",
		Short: "List projects with their budgets and fair-share weights",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]*store.Project, error) { return c.Projects(cmd.Context()) }, func(ps []*store.Project) {
				var rows [][]string
				for _, p := range ps {
					budget := "none"
					if p.Budget > 0 {
						budget = fmt.Sprintf("$%.2f", p.Budget)
					}
					rows = append(rows, []string{p.Name, budget, fmt.Sprintf("%g", p.Weight)})
				}
				table(g, "NAME\tBUDGET\tWEIGHT", rows)
			})
		},
	}
	var budget, weight float64
	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Set a project's budget (dollars, 0: none) and fair-share weight",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.PutProject(cmd.Context(), args[0], &wire.ProjectSpec{Budget: budget, Weight: weight})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.out, "project %s: budget $%.2f, weight %g\n", p.Name, p.Budget, p.Weight)
			return nil
		},
	}
	set.Flags().Float64Var(&budget, "budget", 0, "what the project may spend, in dollars (0: no budget)")
	set.Flags().Float64Var(&weight, "weight", 1, "its share in fair sharing")
	cmd.AddCommand(set)
	cmd.AddCommand(memberCmds(g)...)
	return cmd
}

// printOptions prints every pool's verdict on a job, cheapest first.
func printOptions(g *globals, opts []sched.Option) {
	var rows [][]string
	for _, o := range opts {
		verdict := "ok"
		switch {
		case !o.Feasible:
			verdict = "no: " + o.Reason
		case !o.FitsNow:
			verdict = "later: " + o.Reason
		}
		cost, hours, price, gpu := "-", "-", "-", "-"
		if o.Feasible || o.PricePerHour > 0 {
			price = fmt.Sprintf("$%.2f", o.PricePerHour)
			hours = fmt.Sprintf("%.2f", o.EstHours)
			cost = fmt.Sprintf("$%.2f", o.EstCost)
		}
		if o.GPUModel != "" {
			gpu = o.GPUModel
		}
		rows = append(rows, []string{o.Pool, gpu, price, hours, cost, verdict})
	}
	table(g, "POOL\tGPU\tPRICE/H\tEST HOURS\tEST COST\tVERDICT", rows)
}

func explainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "explain JOB",
		Short: "Why a job waits, or why it runs where it does, with each pool's cost",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, func(c *client.Client) (*wire.Explanation, error) { return c.Explain(cmd.Context(), args[0]) }, func(e *wire.Explanation) {
				switch {
				case e.State == core.JobQueued:
					fmt.Fprintf(g.out, "job %s is queued; where it could run:\n", e.JobID)
				case e.Placed != "":
					fmt.Fprintf(g.out, "job %s is %s on pool %s; the alternatives now:\n", e.JobID, e.State, e.Placed)
				default:
					fmt.Fprintf(g.out, "job %s is %s\n", e.JobID, e.State)
				}
				printOptions(g, e.Options)
			})
		},
	}
}

func costCmd(g *globals) *cobra.Command {
	var by, project string
	cmd := &cobra.Command{
		Use:   "cost [JOB]",
		Short: "Metered cost by project, job or pool; for one job, what it would have cost elsewhere",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return show(g, func(c *client.Client) (*wire.JobCost, error) { return c.JobCost(cmd.Context(), args[0]) }, func(jc *wire.JobCost) {
					var rows [][]string
					for _, u := range jc.Usage {
						rows = append(rows, []string{u.AttemptID, string(u.State), u.GPUModel, fmt.Sprintf("%.2f", u.Seconds/3600),
							fmt.Sprintf("$%.2f", u.PricePerHour), fmt.Sprintf("$%.4f", u.Cost)})
					}
					table(g, "ATTEMPT\tENDED\tGPU\tHOURS\tPRICE/H\tCOST", rows)
					fmt.Fprintf(g.out, "total: $%.4f\n", jc.Total)
					if len(jc.Alternatives) > 0 {
						fmt.Fprintln(g.out, "\nthe same work elsewhere:")
						rows = nil
						for _, a := range jc.Alternatives {
							rows = append(rows, []string{a.Pool, a.GPUModel, fmt.Sprintf("%.2f", a.Hours), fmt.Sprintf("$%.4f", a.Cost), fmt.Sprintf("%.2fx", a.Ratio)})
						}
						table(g, "POOL\tGPU\tHOURS\tCOST\tVS ACTUAL", rows)
					}
				})
			}
			return show(g, func(c *client.Client) (*wire.CostReport, error) { return c.Cost(cmd.Context(), by, project) }, func(r *wire.CostReport) {
				var rows [][]string
				for _, l := range r.Lines {
					rows = append(rows, []string{l.Key, fmt.Sprint(l.Attempts), fmt.Sprintf("%.2f", l.Hours), fmt.Sprintf("$%.4f", l.Cost)})
				}
				table(g, strings.ToUpper(r.By)+"\tATTEMPTS\tHOURS\tCOST", rows)
				fmt.Fprintf(g.out, "total: $%.4f\n", r.Total)
			})
		},
	}
	cmd.Flags().StringVar(&by, "by", "project", "group by job, project or pool")
	cmd.Flags().StringVar(&project, "project", "", "only this project")
	return cmd
}

func drainCmds(g *globals) (node, pool *cobra.Command) {
	var undo bool
	node = &cobra.Command{
		Use:   "drain NODE",
		Short: "Stop a node taking work; its running tasks get SIGTERM and a grace period, then move elsewhere",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.DrainNode(cmd.Context(), args[0], undo)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(r)
			}
			if undo {
				fmt.Fprintf(g.out, "node %s takes work again\n", args[0])
			} else {
				fmt.Fprintf(g.out, "node %s draining; %d attempts stopping\n", args[0], len(r.Stopping))
			}
			return nil
		},
	}
	node.Flags().BoolVar(&undo, "undo", false, "let the node take work again")
	pool = &cobra.Command{
		Use:   "drain POOL",
		Short: "Stop a pool taking work and move its running jobs elsewhere from their checkpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.DrainPool(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(r)
			}
			fmt.Fprintf(g.out, "pool %s draining; %d attempts stopping (`lode pools set %s --state active` undoes it)\n", args[0], len(r.Stopping), args[0])
			return nil
		},
	}
	return node, pool
}
