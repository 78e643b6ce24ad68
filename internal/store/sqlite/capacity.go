package sqlite

import (
	"slices"

	"lode.dev/lode/internal/core"
)

// gpuDemand is what one task asks of a node's GPUs: n of them, each of one
// of the models (any model when models is empty).
type gpuDemand struct {
	n      int
	models []string
}

// maxGPUModels bounds the distinct GPU models of one node that gpusFit
// reasons about; it looks at every subset of them.
const maxGPUModels = 16

// gpusFit reports whether a node's GPUs can serve all the demands at once,
// each GPU going to at most one task of a model the task accepts.
//
// By Hall's theorem for supply and demand, they can exactly when, for every
// set S of the node's models, the tasks that accept only models in S ask for
// no more GPUs than S holds. A node has few distinct models, so trying every
// S is cheap, and unlike a greedy assignment it never refuses a placement
// that fits (a task taking "a100 or rtx4090" cannot block a later task that
// needs the a100 while the rtx4090 is free).
func gpusFit(gpus []core.GPU, demands []gpuDemand) bool {
	var models []string
	count := map[string]int{}
	for _, g := range gpus {
		m := core.NormalizeGPUModel(g.Model)
		if count[m] == 0 {
			models = append(models, m)
		}
		count[m]++
	}
	if len(models) > maxGPUModels {
		return false
	}
	slices.Sort(models)

	type need struct {
		n    int
		mask uint32 // the node's models the task accepts
	}
	var needs []need
	for _, d := range demands {
		if d.n <= 0 {
			continue
		}
		var mask uint32
		for i, m := range models {
			if len(d.models) == 0 || slices.ContainsFunc(d.models, func(want string) bool {
				return core.NormalizeGPUModel(want) == m
			}) {
				mask |= 1 << i
			}
		}
		needs = append(needs, need{d.n, mask})
	}
	if len(needs) == 0 {
		return true
	}
	for set := uint32(0); set < 1<<len(models); set++ {
		have := 0
		for i, m := range models {
			if set&(1<<i) != 0 {
				have += count[m]
			}
		}
		want := 0
		for _, nd := range needs {
			if nd.mask&^set == 0 {
				want += nd.n
			}
		}
		if want > have {
			return false
		}
	}
	return true
}
