// Package sched decides where queued jobs run: the cheapest compute that
// satisfies each job's trust, region, interconnect, price, budget and
// deadline, in an order that respects priorities and shares the fleet
// fairly between projects.
//
// It is pure: Schedule reads an immutable Snapshot and returns a Plan, with
// no I/O, no clock but Snapshot.Now, no goroutines and no randomness. The
// control loop builds the snapshot from the store and applies the plan,
// re-checking every placement in a transaction.
//
// # Feasibility
//
// A pool takes a job only if every filter passes; the first that refuses
// is the pool's reason, in words a user reads (`lode explain`). Pool
// filters, in order: the pool is active; it is among the pools the job
// names; its region is among the job's regions; its trust tier is at least
// the job's min_trust; the Policy lets the job's data classification run on
// its tier and in its region; it has ready nodes; for a gang (nodes > 1) it
// lets gangs span its nodes and its interconnect meets the gang's need
// (interconnect.min_gbps, or spec.DefaultGangGbps); some node could hold a
// rank's CPUs and memory when idle, and the pool could hold the whole gang.
// Then, per GPU model of the pool the job accepts: some node has enough
// GPUs of it and the pool enough for the gang; the price is within the
// job's max_price_per_hour (the price of all ranks together); the project's
// budget covers Spent plus this run's expected cost (and what this cycle
// placed before it); the predicted finish, Now plus the predicted hours
// with rework, is no later than CreatedAt plus the deadline. A job is
// never split across pools, and every rank of a placement holds GPUs of one
// model.
//
// # Cost model
//
// For a job on pool p with GPU model m (a job without GPUs has no model and
// throughput 1):
//
//	EstHours       = Estimate / Throughput[m]         (Estimate 0: spec.DefaultEstimate)
//	PricePerHour   = Nodes × p.Prices.PerHour(Resources, m)
//	lost           = min(checkpoint.every, EstHours/2) (EstHours/2 without checkpoints)
//	ReworkHours    = p.LossRate × Nodes × EstHours × lost
//	ExpectedRework = ReworkHours × PricePerHour
//	EstCost        = PricePerHour × EstHours + ExpectedRework
//
// LossRate × Nodes × EstHours is the number of node losses the run expects;
// each sends the whole gang back to its last checkpoint, losing up to a
// checkpoint interval of work (a full interval, which also covers the
// restart), or on average half the run without checkpoints. The predicted
// wall time is EstHours + ReworkHours. Throughput defaults to
// DefaultThroughput; a model it lacks counts as an A100. A model missing
// from a pool's price table costs nothing there.
//
// Objective "cost" (the default) minimizes EstCost, then time; "time"
// minimizes the predicted wall time, then cost; ties go to the pool first
// by name, then the model first by name. Each pool offers the job its best
// model that fits.
//
// # The cycle
//
// One cycle (Schedule, or NewCycle and Step) runs in numbered phases over
// one snapshot:
//
//  1. Order: queued jobs by priority, highest first; within a priority,
//     by fair share between projects (dominant resource fairness: a
//     project's largest share of the fleet's CPUs, memory or GPUs held by
//     its running attempts and this cycle's placements, divided by its
//     weight; smallest first, updated as the cycle places jobs); within a
//     project, oldest first.
//  2. Place: each job goes on its best candidate (pool and model) that has
//     room for all its ranks now, inside one pool; several ranks may share
//     a node. A gang is placed whole or not at all and holds nothing
//     while it waits, so gangs cannot deadlock each other. A single-rank
//     job with objective cost that could not have its cheapest candidate
//     (or any) may exchange: an earlier placement of this cycle with the
//     same priority and the same resources moves to another of its own
//     candidates (and so on along a chain) when that lowers the total
//     expected cost or lets the job run at all. This is the shortest
//     augmenting path of min-cost flow over slot types (exchange.go); it
//     keeps a cycle near the cheapest assignment where first come, first
//     served would give the cheap slots to whoever came first.
//  3. Preempt: a job that found no room looks for running attempts of
//     strictly lower priority on one of its candidates whose removal would
//     make it fit, and picks the cheapest set (fewest attempts, then lowest
//     priorities, then newest). They are asked to stop; the job stays
//     pending ("waiting for N preempted attempts to stop") and takes the
//     room in a later cycle. Their capacity is not reused in this cycle,
//     and the free capacity the job will need beside it is held until the
//     cycle ends. A job never preempts work of its own priority or higher.
//     Attempts still stopping from an earlier cycle's preemptions
//     (Running.Stopping) are claimed first, so that a waiting job does not
//     preempt more each cycle.
//  4. Reserve and backfill: the first job in the order that found no room
//     and preempted nothing gets a reservation (EASY backfill): on the
//     candidate where it could start soonest as running work ends (at
//     Running.EstEnd) and this cycle's placements end, the nodes it would
//     use are held from that time. Later jobs keep filling free capacity,
//     and may use the held nodes only if they are predicted to end by then.
//
// Every job left pending gets one Rejection per pool.
package sched

import (
	"maps"
	"slices"

	"lode.dev/lode/internal/core"
)

// TakeGPUs takes r.GPUs GPUs of the models r accepts from free, models in
// name order, and reports whether there were enough. On false, free may be
// partly taken: callers pass a copy.
func TakeGPUs(free map[string]int, r core.Resources) bool {
	need := r.GPUs
	for _, model := range slices.Sorted(maps.Keys(free)) {
		if need == 0 {
			break
		}
		if len(r.GPUModels) > 0 && !slices.Contains(r.GPUModels, model) {
			continue
		}
		n := min(need, free[model])
		free[model] -= n
		need -= n
	}
	return need == 0
}
