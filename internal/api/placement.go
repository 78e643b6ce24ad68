package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/control"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/meter"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// ApplyPoolSpec sets the fields a spec gives on a pool, checking each.
func ApplyPoolSpec(p *store.Pool, ps *wire.PoolSpec) error {
	var errs []error
	if ps.Region != nil {
		p.Region = *ps.Region
	}
	if ps.Tier != nil {
		t, err := core.ParseTier(*ps.Tier)
		if err != nil {
			errs = append(errs, err)
		}
		p.Tier = t
	}
	if ps.State != nil {
		switch st := store.PoolState(*ps.State); st {
		case store.PoolActive, store.PoolDraining, store.PoolQuarantined:
			p.State = st
		default:
			errs = append(errs, fmt.Errorf("unknown pool state %q (active, draining or quarantined)", *ps.State))
		}
	}
	if ps.Interconnect != nil {
		if ps.Interconnect.Gbps < 0 {
			errs = append(errs, fmt.Errorf("interconnect bandwidth must not be negative, not %g", ps.Interconnect.Gbps))
		}
		p.Interconnect = *ps.Interconnect
	}
	if ps.Prices != nil {
		pr := *ps.Prices
		if pr.CPUHour < 0 || pr.MemGiBHour < 0 {
			errs = append(errs, errors.New("prices must not be negative"))
		}
		norm := map[string]float64{}
		for m, v := range pr.GPUHour {
			if v < 0 {
				errs = append(errs, fmt.Errorf("the price of %s must not be negative", m))
			}
			norm[core.NormalizeGPUModel(m)] = v
		}
		pr.GPUHour = norm
		p.Prices = pr
	}
	return errors.Join(errs...)
}

func (s *Server) createPool(w http.ResponseWriter, r *http.Request) error {
	var req wire.PoolSpec
	if err := decode(r, &req); err != nil {
		return err
	}
	if !namePattern.MatchString(req.Name) {
		return badRequest("use lower-case letters, digits, '.', '_' and '-'", "bad pool name %q", req.Name)
	}
	if req.Driver == "" {
		req.Driver = "agent"
	}
	if req.Driver != "agent" {
		return badRequest("agent is the only driver so far", "unknown driver %q", req.Driver)
	}
	p := &store.Pool{ID: core.NewID("pool"), Name: req.Name, Driver: req.Driver, State: store.PoolActive,
		CreatedAt: s.cfg.Now().UTC()}
	if err := ApplyPoolSpec(p, &req); err != nil {
		return badRequest("", "pool %s: %v", req.Name, err)
	}
	defer s.record(r.Context(), audit.PoolChanged, actor(r.Context()), req.Name, "", map[string]string{"op": "create", "tier": p.Tier.String()})
	if err := s.cfg.Store.PoolCreate(r.Context(), p); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "conflict", "change it with `lode pools set`", "pool %q exists", req.Name)
		}
		return err
	}
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusCreated, wire.PoolInfo{Pool: *p})
}

func (s *Server) updatePool(w http.ResponseWriter, r *http.Request) error {
	var req wire.PoolSpec
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := s.cfg.Store.PoolGetByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if req.Name != "" && req.Name != p.Name {
		return badRequest("", "a pool cannot be renamed")
	}
	if req.Driver != "" && req.Driver != p.Driver {
		return badRequest("", "a pool's driver cannot change")
	}
	if err := ApplyPoolSpec(p, &req); err != nil {
		return badRequest("", "pool %s: %v", p.Name, err)
	}
	if err := s.cfg.Store.PoolUpdate(r.Context(), p); err != nil {
		return err
	}
	s.record(r.Context(), audit.PoolChanged, actor(r.Context()), p.Name, "", map[string]string{"op": "update", "tier": p.Tier.String(), "state": string(p.State)})
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusOK, wire.PoolInfo{Pool: *p})
}

func (s *Server) deletePool(w http.ResponseWriter, r *http.Request) error {
	p, err := s.cfg.Store.PoolGetByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.cfg.Store.PoolDelete(r.Context(), p.ID); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "conflict", "drain it instead: `lode pools set "+p.Name+" --state draining`",
				"pool %s has had nodes, so its history keeps it", p.Name)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.cfg.Store.ProjectList(r.Context())
	if err != nil {
		return err
	}
	ps = slices.DeleteFunc(ps, func(p *store.Project) bool { return !visible(r, p.Name) })
	return writeJSON(w, http.StatusOK, wire.ProjectList{Projects: nonNil(ps)})
}

func (s *Server) putProject(w http.ResponseWriter, r *http.Request) error {
	var req wire.ProjectSpec
	if err := decode(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	if !namePattern.MatchString(name) {
		return badRequest("use lower-case letters, digits, '.', '_' and '-'", "bad project name %q", name)
	}
	if req.Budget < 0 || req.Weight < 0 {
		return badRequest("0 means no budget and the default weight", "budget and weight must not be negative")
	}
	p := &store.Project{Name: name, Budget: req.Budget, Weight: req.Weight, UpdatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.ProjectPut(r.Context(), p); err != nil {
		return err
	}
	s.record(r.Context(), audit.ProjectChanged, actor(r.Context()), name, name,
		map[string]string{"budget": strconv.FormatFloat(p.Budget, 'f', 2, 64), "weight": strconv.FormatFloat(p.Weight, 'f', -1, 64)})
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusOK, p)
}

// options prices a job on every pool against the current state.
func (s *Server) options(ctx context.Context, j sched.Job) ([]sched.Option, error) {
	snap, err := control.Snapshot(ctx, s.cfg.Store, s.cfg.Now().UTC())
	if err != nil {
		return nil, err
	}
	return nonNil(sched.Options(snap, j)), nil
}

func (s *Server) explainJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFor(r, r.PathValue("id"), core.RoleViewer)
	if err != nil {
		return err
	}
	out := wire.Explanation{JobID: j.ID, State: j.State}
	attempts, err := s.cfg.Store.AttemptListByJob(r.Context(), j.ID)
	if err != nil {
		return err
	}
	if n := len(attempts); n > 0 {
		if p, err := s.cfg.Store.PoolGet(r.Context(), attempts[n-1].PoolID); err == nil {
			out.Placed = p.Name
		}
	}
	if out.Options, err = s.options(r.Context(), sched.Job{ID: j.ID, Project: j.Project, Spec: &j.Spec, CreatedAt: j.CreatedAt}); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) dryRun(w http.ResponseWriter, r *http.Request) error {
	var req wire.DryRun
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := spec.Validate(&req.Spec); err != nil {
		return badRequest("fix the spec", "invalid job spec: %v", err)
	}
	if err := allow(r, req.Spec.Project, core.RoleViewer); err != nil {
		return err
	}
	opts, err := s.options(r.Context(), sched.Job{ID: "dry-run", Project: req.Spec.Project, Spec: &req.Spec, CreatedAt: s.cfg.Now().UTC()})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.Explanation{Options: opts})
}

func (s *Server) costReport(w http.ResponseWriter, r *http.Request) error {
	by := meter.By(r.URL.Query().Get("by"))
	switch by {
	case "":
		by = meter.ByProject
	case meter.ByJob, meter.ByProject, meter.ByPool:
	default:
		return badRequest("by=job, by=project or by=pool", "cannot group costs by %q", by)
	}
	project := r.URL.Query().Get("project")
	if project != "" {
		if err := allow(r, project, core.RoleViewer); err != nil {
			return err
		}
	}
	usage, err := s.cfg.Store.UsageList(r.Context(), &store.UsageListParams{Project: project})
	if err != nil {
		return err
	}
	usage = slices.DeleteFunc(usage, func(u *store.Usage) bool { return !visible(r, u.Project) })
	names, err := s.poolNames(r.Context())
	if err != nil {
		return err
	}
	records := make([]meter.Record, len(usage))
	total := 0.0
	for i, u := range usage {
		records[i] = meter.Record{JobID: u.JobID, Project: u.Project, Pool: names[u.PoolID], Seconds: u.Seconds, Cost: u.Cost}
		total += u.Cost
	}
	return writeJSON(w, http.StatusOK, wire.CostReport{By: string(by), Lines: nonNil(meter.Report(records, by)), Total: total})
}

func (s *Server) poolNames(ctx context.Context) (map[string]string, error) {
	pools, err := s.cfg.Store.PoolList(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, p := range pools {
		names[p.ID] = p.Name
	}
	return names, nil
}

func (s *Server) jobCost(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFor(r, r.PathValue("id"), core.RoleViewer)
	if err != nil {
		return err
	}
	usage, err := s.cfg.Store.UsageList(r.Context(), &store.UsageListParams{JobID: j.ID})
	if err != nil {
		return err
	}
	out := wire.JobCost{JobID: j.ID, Usage: nonNil(usage)}
	for _, u := range usage {
		out.Total += u.Cost
	}
	if j.State != core.JobSucceeded || len(usage) == 0 {
		return writeJSON(w, http.StatusOK, out)
	}
	// What the job's measured work would have cost elsewhere: the last
	// (successful) attempt's hours, scaled by throughput, at each other
	// eligible pool's price.
	last := usage[len(usage)-1]
	names, err := s.poolNames(r.Context())
	if err != nil {
		return err
	}
	opts, err := s.options(r.Context(), sched.Job{ID: j.ID, Project: j.Project, Spec: &j.Spec, CreatedAt: j.CreatedAt})
	if err != nil {
		return err
	}
	for _, o := range opts {
		if !o.Feasible || o.Pool == names[last.PoolID] {
			continue
		}
		hours, cost := meter.WouldHaveCost(last.Seconds/3600, speed(last.GPUModel, j.Spec.Resources.GPUs),
			speed(o.GPUModel, j.Spec.Resources.GPUs), o.PricePerHour)
		alt := meter.Alternative{Pool: o.Pool, GPUModel: o.GPUModel, Hours: hours, Cost: cost}
		if out.Total > 0 {
			alt.Ratio = cost / out.Total
		}
		out.Alternatives = append(out.Alternatives, alt)
	}
	return writeJSON(w, http.StatusOK, out)
}

// speed is how fast work runs on a GPU model relative to an A100; CPU-only
// work runs at the same speed everywhere.
func speed(model string, gpus int) float64 {
	if gpus == 0 || model == "" {
		return 1
	}
	return sched.Throughput(nil, model)
}
