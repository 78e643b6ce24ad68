package sim

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a replay measured. Money is in dollars, work in
// GPU-hours of wall time on whatever GPUs held it.
type Report struct {
	Trace  string `json:"trace"`
	Policy Policy `json:"policy"`
	Seed   uint64 `json:"seed"`
	// Start and End bound the replay in virtual time; it ends when every
	// job has ended, or at the trace's until.
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	SimulatedHours float64   `json:"simulated_hours"`

	Jobs       int `json:"jobs"`
	Finished   int `json:"finished"`
	Failed     int `json:"failed"` // retries on node loss used up
	Unfinished int `json:"unfinished"`
	// Deadlines counts the jobs with a deadline, DeadlinesMet those that
	// finished by it; DeadlineHitPct is their ratio (100 without any).
	Deadlines      int     `json:"deadlines"`
	DeadlinesMet   int     `json:"deadlines_met"`
	DeadlineHitPct float64 `json:"deadline_hit_pct"`

	// Cost is what every attempt cost, lost and preempted ones included.
	Cost float64 `json:"cost"`
	// LowerBound is the trace's lower bound (see LowerBound) and
	// CostOverLowerBoundPct how far Cost is above it.
	LowerBound            float64 `json:"lower_bound"`
	CostOverLowerBoundPct float64 `json:"cost_over_lower_bound_pct"`

	GPUHoursAvailable float64 `json:"gpu_hours_available"`
	GPUHoursBusy      float64 `json:"gpu_hours_busy"`
	GPUUtilisationPct float64 `json:"gpu_utilisation_pct"`
	// GPUHoursLost is the work node losses threw away (GPU-hours since the
	// attempt's last checkpoint); CostLost what it had cost.
	GPUHoursLost float64 `json:"gpu_hours_lost"`
	CostLost     float64 `json:"cost_lost"`
	// GPUHoursLostPreempted is work preemption threw away: only jobs that
	// never checkpoint lose any.
	GPUHoursLostPreempted float64 `json:"gpu_hours_lost_preempted"`
	NodeLosses            int     `json:"node_losses"`
	PoolsVanished         int     `json:"pools_vanished"`
	// Quarantines counts the times the control plane's reliability rules
	// quarantined a pool.
	Quarantines  int `json:"quarantines"`
	Attempts     int `json:"attempts"`
	AttemptsLost int `json:"attempts_lost"`
	Preemptions  int `json:"preemptions"`
	// Cycles counts the scheduler's runs.
	Cycles int `json:"cycles"`

	// Violations counts the placements (and preemptions) the control
	// plane refused because they broke a constraint; it must be 0.
	Violations       int            `json:"violations"`
	ViolationsByKind map[string]int `json:"violations_by_kind"`
	ViolationSamples []Violation    `json:"violation_samples,omitempty"`

	Pools    []PoolReport    `json:"pools"`
	Projects []ProjectReport `json:"projects"`
	// ProjectsOverBudget counts the projects that ended above their
	// budget. Every placement fitted the budget when it was made (or it
	// is a violation), but a budget is checked against what has been spent
	// so far, as the control plane reports it: rework after failures and
	// attempts running side by side can take a project past it.
	ProjectsOverBudget int `json:"projects_over_budget"`
	// UnfinishedJobs lists up to 20 jobs that did not finish, and why.
	UnfinishedJobs []JobReport `json:"unfinished_jobs,omitempty"`
	// MissedDeadlines lists up to 20 jobs that finished late or not at all.
	MissedDeadlines []JobReport `json:"missed_deadlines,omitempty"`
	Infeasible      []string    `json:"infeasible,omitempty"`
}

// PoolReport is one pool's share of a replay.
type PoolReport struct {
	Name              string  `json:"name"`
	Kind              string  `json:"kind"`
	Region            string  `json:"region"`
	Tier              string  `json:"tier"`
	Cost              float64 `json:"cost"`
	GPUHoursBusy      float64 `json:"gpu_hours_busy"`
	GPUHoursAvailable float64 `json:"gpu_hours_available"`
	GPUUtilisationPct float64 `json:"gpu_utilisation_pct"`
	Attempts          int     `json:"attempts"`
	AttemptsLost      int     `json:"attempts_lost"`
	Losses            int     `json:"losses"`
	Quarantines       int     `json:"quarantines"`
	// LossRate is the observed rate the scheduler was last told: losses
	// per node-hour over the day before.
	LossRate float64 `json:"loss_rate"`
}

// ProjectReport is one project's spend.
type ProjectReport struct {
	Name       string  `json:"name"`
	Budget     float64 `json:"budget,omitempty"`
	Spent      float64 `json:"spent"`
	OverBudget bool    `json:"over_budget,omitempty"`
}

// JobReport says what became of one job.
type JobReport struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Deadline time.Time `json:"deadline,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	Attempts int       `json:"attempts"`
	Cost     float64   `json:"cost"`
	Reason   string    `json:"reason,omitempty"`
}

func (w *world) report() *Report {
	r := &w.rep
	r.Trace = cmp.Or(w.t.Name, w.t.File)
	r.Policy = w.opt.Policy
	r.Seed = w.opt.Seed
	r.Start, r.End = w.t.Start, w.now
	r.SimulatedHours = w.now.Sub(w.t.Start).Hours()
	r.Jobs = len(w.jobs)
	for _, j := range w.jobs {
		switch j.state {
		case jobSucceeded:
			r.Finished++
		case jobFailed:
			r.Failed++
		default:
			r.Unfinished++
		}
		if j.state != jobSucceeded && len(r.UnfinishedJobs) < 20 {
			r.UnfinishedJobs = append(r.UnfinishedJobs, jobReport(j))
		}
		if j.spec.Deadline > 0 {
			r.Deadlines++
			due := j.created.Add(time.Duration(j.spec.Deadline))
			if j.state == jobSucceeded && !j.ended.After(due) {
				r.DeadlinesMet++
			} else if len(r.MissedDeadlines) < 20 {
				r.MissedDeadlines = append(r.MissedDeadlines, jobReport(j))
			}
		}
	}
	r.DeadlineHitPct = 100
	if r.Deadlines > 0 {
		r.DeadlineHitPct = 100 * float64(r.DeadlinesMet) / float64(r.Deadlines)
	}
	b := LowerBound(w.t)
	r.LowerBound, r.Infeasible = b.Cost, b.Infeasible
	if b.Cost > 0 {
		r.CostOverLowerBoundPct = 100 * (r.Cost/b.Cost - 1)
	}
	for _, p := range w.pools {
		pr := p.rep
		pr.GPUHoursAvailable = p.gpuHoursUp
		for _, n := range p.nodes {
			if n.up {
				pr.GPUHoursAvailable += w.now.Sub(n.upSince).Hours() * float64(n.gpus)
			}
		}
		if pr.GPUHoursAvailable > 0 {
			pr.GPUUtilisationPct = 100 * pr.GPUHoursBusy / pr.GPUHoursAvailable
		}
		pr.LossRate = p.lossRate
		r.GPUHoursAvailable += pr.GPUHoursAvailable
		r.Pools = append(r.Pools, pr)
	}
	if r.GPUHoursAvailable > 0 {
		r.GPUUtilisationPct = 100 * r.GPUHoursBusy / r.GPUHoursAvailable
	}
	for _, name := range slices.Sorted(maps.Keys(w.projects)) {
		pr := w.projects[name]
		over := pr.budget > 0 && pr.settled > pr.budget*(1+1e-9)
		if over {
			r.ProjectsOverBudget++
		}
		r.Projects = append(r.Projects, ProjectReport{Name: name, Budget: pr.budget, Spent: pr.settled, OverBudget: over})
	}
	r.ViolationsByKind = maps.Clone(w.violations)
	return r
}

func jobReport(j *job) JobReport {
	jr := JobReport{ID: j.def.ID, State: j.state.String(), Ended: j.ended, Attempts: j.attempts, Cost: j.cost, Reason: j.reason}
	if j.spec.Deadline > 0 {
		jr.Deadline = j.created.Add(time.Duration(j.spec.Deadline))
	}
	switch {
	case j.state == jobSucceeded:
		jr.Reason = ""
	case j.state == jobQueued && len(j.pending) > 0:
		jr.Reason = summarize(j.pending)
	}
	return jr
}

// WriteText writes the report for people: the figures, then each pool,
// then whatever went wrong.
func (r *Report) WriteText(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("trace", "%s (policy %s, seed %d)", r.Trace, r.Policy, r.Seed)
	row("simulated", "%.1f h, %s to %s, %d scheduler cycles", r.SimulatedHours, r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339), r.Cycles)
	row("jobs", "%d: %d finished, %d failed, %d unfinished", r.Jobs, r.Finished, r.Failed, r.Unfinished)
	row("deadlines met", "%.2f%% (%d of %d)", r.DeadlineHitPct, r.DeadlinesMet, r.Deadlines)
	row("total cost", "$%.2f", r.Cost)
	row("lower bound", "$%.2f (cost is %+.1f%%)", r.LowerBound, r.CostOverLowerBoundPct)
	row("GPU utilisation", "%.1f%% (%.0f of %.0f GPU-hours)", r.GPUUtilisationPct, r.GPUHoursBusy, r.GPUHoursAvailable)
	row("lost to failures", "%.1f GPU-hours, $%.2f (%d node losses, %d attempts lost, %d pools vanished, %d quarantines)",
		r.GPUHoursLost, r.CostLost, r.NodeLosses, r.AttemptsLost, r.PoolsVanished, r.Quarantines)
	row("attempts", "%d (%d preempted)", r.Attempts, r.Preemptions)
	kinds := make([]string, 0, len(r.ViolationsByKind))
	for _, k := range slices.Sorted(maps.Keys(r.ViolationsByKind)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ViolationsByKind[k]))
	}
	row("violations", "%d %s", r.Violations, strings.Join(kinds, ", "))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "POOL\tKIND\tTIER\tREGION\tCOST\tGPU-H BUSY\tUTIL\tATTEMPTS\tLOST\tLOSSES\tQUARANTINES\tLOSS RATE")
	for _, p := range r.Pools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t$%.2f\t%.1f\t%.1f%%\t%d\t%d\t%d\t%d\t%.4f/h\n", p.Name, p.Kind, p.Tier, p.Region, p.Cost,
			p.GPUHoursBusy, p.GPUUtilisationPct, p.Attempts, p.AttemptsLost, p.Losses, p.Quarantines, p.LossRate)
	}
	if len(r.Projects) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PROJECT\tSPENT\tBUDGET")
		for _, p := range r.Projects {
			budget := "-"
			if p.Budget > 0 {
				budget = fmt.Sprintf("$%.2f", p.Budget)
			}
			if p.OverBudget {
				budget += " (over)"
			}
			fmt.Fprintf(tw, "%s\t$%.2f\t%s\n", p.Name, p.Spent, budget)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(out, "\n%s:\n", title)
		for _, l := range lines {
			fmt.Fprintf(out, "  %s\n", l)
		}
	}
	var lines []string
	for _, v := range r.ViolationSamples {
		lines = append(lines, v.String())
	}
	section("violations (first 20)", lines)
	lines = nil
	for _, j := range r.MissedDeadlines {
		lines = append(lines, describeJob(j))
	}
	section("missed deadlines (first 20)", lines)
	lines = nil
	for _, j := range r.UnfinishedJobs {
		lines = append(lines, describeJob(j))
	}
	section("unfinished jobs (first 20)", lines)
	if len(r.Infeasible) > 0 {
		section("jobs no pool of the trace can hold", []string{strings.Join(r.Infeasible[:min(len(r.Infeasible), 20)], ", ")})
	}
	return nil
}

func describeJob(j JobReport) string {
	s := j.ID + " " + j.State
	if !j.Deadline.IsZero() {
		s += ", due " + j.Deadline.Format(time.RFC3339)
	}
	if !j.Ended.IsZero() {
		s += ", ended " + j.Ended.Format(time.RFC3339)
	}
	s += fmt.Sprintf(", %d attempts, $%.2f", j.Attempts, j.Cost)
	if j.Reason != "" {
		s += ": " + j.Reason
	}
	return s
}
