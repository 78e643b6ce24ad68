package sched

import (
	"math"
	"time"

	"lode.dev/lode/internal/spec"
)

// Estimate is the cost model's prediction for one job on one pool and GPU
// model; the package comment gives the formulas.
type Estimate struct {
	// PricePerHour is the price of all ranks together.
	PricePerHour float64
	// EstHours is the predicted runtime without failures.
	EstHours float64
	// ReworkHours is the expected time lost to node failures, redoing work
	// since the last checkpoint; ExpectedRework is what it costs.
	ReworkHours    float64
	ExpectedRework float64
	// EstCost is the expected cost, rework included.
	EstCost float64
}

// Hours is the predicted wall time, expected rework included: what
// deadlines, the time objective and backfill reservations use.
func (e Estimate) Hours() float64 { return e.EstHours + e.ReworkHours }

// Finish is when a run started at start is predicted to end.
func (e Estimate) Finish(start time.Time) time.Time {
	return start.Add(hoursToDuration(e.Hours()))
}

// Predict prices job j on pool p with GPUs of gpuModel ("" for a job
// without GPUs), with throughput as in Snapshot.Throughput (nil: the
// default table).
func Predict(p Pool, j *spec.Job, gpuModel string, throughput map[string]float64) Estimate {
	r := j.Resources
	tp := 1.0
	if r.GPUs > 0 {
		tp = Throughput(throughput, gpuModel)
	}
	perRank := perHour(r.MilliCPUs, r.MemoryBytes, r.GPUs, p.Prices.CPUHour, p.Prices.MemGiBHour, p.Prices.GPUHour[gpuModel])
	return predict(max(j.Nodes, 1), perRank, baseHours(j), tp, checkpointHours(j), p.LossRate)
}

// predict is the cost model: everything Predict and the scheduling cycle
// compute goes through it, so both price a job the same way.
func predict(ranks int, perRankHour, baseHours, throughput, ckptHours, lossRate float64) Estimate {
	var e Estimate
	e.PricePerHour = float64(ranks) * perRankHour
	e.EstHours = baseHours / throughput
	lost := e.EstHours / 2
	if ckptHours > 0 {
		lost = min(ckptHours, lost)
	}
	if lossRate > 0 {
		e.ReworkHours = lossRate * float64(ranks) * e.EstHours * lost
	}
	e.ExpectedRework = e.ReworkHours * e.PricePerHour
	e.EstCost = e.PricePerHour*e.EstHours + e.ExpectedRework
	return e
}

// perHour is Prices.PerHour with the prices looked up: the same sums in the
// same order, so both give the same figure to the last bit.
func perHour(milliCPUs, memBytes int64, gpus int, cpuHour, memHour, gpuHour float64) float64 {
	price := float64(milliCPUs)/1000*cpuHour + float64(memBytes)/(1<<30)*memHour
	if gpus > 0 {
		price += float64(gpus) * gpuHour
	}
	return price
}

// baseHours is the job's runtime on the reference GPU (or its CPUs).
func baseHours(j *spec.Job) float64 {
	d := time.Duration(j.Estimate)
	if d <= 0 {
		d = spec.DefaultEstimate
	}
	return d.Hours()
}

// checkpointHours is the job's checkpoint interval in hours, 0 without
// checkpoints.
func checkpointHours(j *spec.Job) float64 {
	if j.Checkpoint == nil || j.Checkpoint.Every <= 0 {
		return 0
	}
	return time.Duration(j.Checkpoint.Every).Hours()
}

// Throughput is a model's speed relative to an A100: from the table
// (DefaultThroughput when nil), 1 for models it lacks (and for nonsense
// figures).
func Throughput(table map[string]float64, model string) float64 {
	if table == nil {
		table = DefaultThroughput
	}
	if t, ok := table[model]; ok && t > 0 && !math.IsInf(t, 0) {
		return t
	}
	return 1
}

// maxHours bounds predicted runtimes so that times stay within int64
// nanoseconds (about a century).
const maxHours = 24 * 365 * 100

func hoursToDuration(h float64) time.Duration {
	if !(h > 0) {
		return 0
	}
	return time.Duration(min(h, maxHours) * float64(time.Hour))
}
