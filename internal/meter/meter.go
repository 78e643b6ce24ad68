// Package meter turns what attempts held, and for how long, into money:
// the charge of one attempt, what a running attempt has cost so far, sums
// by job, project or pool, and what a finished job would have cost on the
// other pools it could have run on. It is pure arithmetic; the store keeps
// the records.
package meter

import (
	"cmp"
	"slices"
	"time"
)

// Charge is what an attempt costs for holding its resources from start to
// end at a price per hour. An attempt that never started costs nothing.
func Charge(start, end time.Time, pricePerHour float64) (seconds, cost float64) {
	if start.IsZero() || !end.After(start) {
		return 0, 0
	}
	seconds = end.Sub(start).Seconds()
	return seconds, seconds / 3600 * pricePerHour
}

// Record is the part of a usage record a report needs.
type Record struct {
	JobID, Project, Pool string
	Seconds, Cost        float64
}

// Line is one row of a cost report.
type Line struct {
	Key      string  `json:"key"`
	Attempts int     `json:"attempts"`
	Hours    float64 `json:"hours"`
	Cost     float64 `json:"cost"`
}

// By names what a report groups by.
type By string

const (
	ByJob     By = "job"
	ByProject By = "project"
	ByPool    By = "pool"
)

// Report sums records by job, project or pool, costliest first.
func Report(records []Record, by By) []Line {
	sums := map[string]*Line{}
	for _, r := range records {
		key := r.Pool
		switch by {
		case ByJob:
			key = r.JobID
		case ByProject:
			key = r.Project
		}
		l := sums[key]
		if l == nil {
			l = &Line{Key: key}
			sums[key] = l
		}
		l.Attempts++
		l.Hours += r.Seconds / 3600
		l.Cost += r.Cost
	}
	lines := make([]Line, 0, len(sums))
	for _, l := range sums {
		lines = append(lines, *l)
	}
	slices.SortFunc(lines, func(a, b Line) int { return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(a.Key, b.Key)) })
	return lines
}

// Alternative is what a finished job would have cost on another pool.
type Alternative struct {
	Pool     string  `json:"pool"`
	GPUModel string  `json:"gpu_model,omitempty"`
	Hours    float64 `json:"hours"`
	Cost     float64 `json:"cost"`
	// Ratio is the alternative's cost over what the job did cost.
	Ratio float64 `json:"ratio"`
}

// WouldHaveCost prices a job's measured work on another pool: the hours it
// ran on a GPU model of one throughput, scaled to another model's
// throughput, at that pool's price per hour. Throughputs are relative (an
// A100 is 1); for CPU jobs pass 1 and 1.
func WouldHaveCost(hours, ranThroughput, altThroughput, altPricePerHour float64) (altHours, cost float64) {
	if ranThroughput <= 0 || altThroughput <= 0 {
		return 0, 0
	}
	altHours = hours * ranThroughput / altThroughput
	return altHours, altHours * altPricePerHour
}
