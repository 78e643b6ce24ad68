package sched

import (
	"cmp"
	"slices"
)

// Options is every pool's verdict on job j against snapshot s, with the
// predicted price, time and cost there: what `lode explain` and `lode run
// --dry-run` print. Feasible pools come first, in the order of the job's
// objective; FitsNow says whether one has room right now (Reason says why
// not). The others follow with the reason they refuse, priced where a
// price can be given, in the same order. Queued jobs of the snapshot are
// not considered: the verdict is for j alone against what is free now.
func Options(s *Snapshot, j Job) []Option {
	if j.Spec == nil {
		return nil
	}
	sc := *s
	sc.Queued = nil
	c := NewCycle(&sc)
	proj := &projState{name: j.Project, weight: 1}
	if i, ok := slices.BinarySearchFunc(c.projs, j.Project, func(p projState, name string) int {
		return cmp.Compare(p.name, name)
	}); ok {
		proj = &c.projs[i]
	}
	jc := c.prepare(&j, proj)

	type ranked struct {
		Option
		cand candidate
		has  bool // an estimate to order by
	}
	out := make([]ranked, 0, len(c.f.pools))
	for pi := range c.f.pools {
		p := &c.f.pools[pi]
		c.cands = c.cands[:0]
		v := c.evaluate(jc, int32(pi))
		r := ranked{Option: Option{Pool: p.Name}}
		if len(c.cands) > 0 {
			r.Feasible, r.has = true, true
			cands := c.sortedCandidates(jc)
			r.cand = cands[0]
			for i, cd := range cands {
				q := c.request(jc, &cd)
				_, found, stage := c.f.fit(p, &q, nil)
				if found == jc.ranks {
					r.cand, r.FitsNow = cd, true
					break
				}
				if i == 0 {
					r.Reason = c.explain(jc, p, verdict{code: refNoRoom, model: cd.model, found: found, stage: stage})
				}
			}
			if r.FitsNow {
				r.Reason = ""
			}
		} else {
			r.Reason = c.explain(jc, p, v)
			r.cand, r.has = c.priceAnyway(jc, int32(pi), v)
		}
		if r.has {
			e := r.cand.est
			if r.cand.model >= 0 {
				r.GPUModel = c.f.models[r.cand.model]
			}
			r.PricePerHour, r.EstHours, r.ExpectedRework, r.EstCost = e.PricePerHour, e.EstHours, e.ExpectedRework, e.EstCost
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b ranked) int {
		switch {
		case a.Feasible != b.Feasible:
			if a.Feasible {
				return -1
			}
			return 1
		case a.has != b.has:
			if a.has {
				return -1
			}
			return 1
		case a.has && better(&a.cand, &b.cand, jc.objTime):
			return -1
		case a.has && better(&b.cand, &a.cand, jc.objTime):
			return 1
		}
		return cmp.Compare(a.Pool, b.Pool)
	})
	opts := make([]Option, len(out))
	for i := range out {
		opts[i] = out[i].Option
	}
	return opts
}

// priceAnyway prices a job on a pool that refuses it, so the user sees what
// the pool would have cost: the model the refusal names, else the best
// model the pool has that the job accepts.
func (c *Cycle) priceAnyway(j *jobCtx, pi int32, v verdict) (candidate, bool) {
	p := &c.f.pools[pi]
	if len(p.nodes) == 0 {
		return candidate{}, false
	}
	estimate := func(model int32) candidate {
		tp, gpuPrice := 1.0, 0.0
		if model >= 0 {
			tp, gpuPrice = c.throughput[model], p.gpuPrice[model]
		}
		e := predict(j.ranks, perHour(j.cpu, j.mem, int(j.gpus), p.Prices.CPUHour, p.Prices.MemGiBHour, gpuPrice),
			j.base, tp, j.ckpt, p.LossRate)
		return candidate{pool: pi, model: model, est: e}
	}
	if j.gpus == 0 {
		return estimate(-1), true
	}
	if v.model >= 0 {
		return estimate(v.model), true
	}
	var best candidate
	found := false
	for _, mi := range p.mods {
		if !j.accept[mi.model] {
			continue
		}
		if cd := estimate(mi.model); !found || better(&cd, &best, j.objTime) {
			best, found = cd, true
		}
	}
	return best, found
}
