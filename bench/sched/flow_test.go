package schedbench

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"testing"
)

// flowGraph is a min-cost flow network solved by successive shortest paths
// (Dijkstra with potentials): each augmentation follows a cheapest path
// from source to sink in the residual network, so after k units the flow is
// a cheapest flow of value k, and at the end a cheapest maximum flow. Costs
// must be non-negative.
type flowGraph struct {
	edges []flowEdge
	adj   [][]int
}

type flowEdge struct {
	to, cap int
	cost    float64
}

func newFlowGraph(n int) *flowGraph { return &flowGraph{adj: make([][]int, n)} }

// add adds an edge and returns its index; index^1 is its reverse.
func (g *flowGraph) add(from, to, cap int, cost float64) int {
	g.adj[from] = append(g.adj[from], len(g.edges))
	g.edges = append(g.edges, flowEdge{to: to, cap: cap, cost: cost})
	g.adj[to] = append(g.adj[to], len(g.edges))
	g.edges = append(g.edges, flowEdge{to: from, cap: 0, cost: -cost})
	return len(g.edges) - 2
}

// minCostMaxFlow returns the flow value and its cost.
func (g *flowGraph) minCostMaxFlow(s, t int) (int, float64) {
	n := len(g.adj)
	pot := make([]float64, n)
	dist := make([]float64, n)
	prev := make([]int, n)
	flow, cost := 0, 0.0
	for {
		for i := range dist {
			dist[i], prev[i] = math.Inf(1), -1
		}
		dist[s] = 0
		pq := &distHeap{{s, 0}}
		for pq.Len() > 0 {
			it := heap.Pop(pq).(distItem)
			if it.d > dist[it.v] {
				continue
			}
			for _, ei := range g.adj[it.v] {
				e := &g.edges[ei]
				if e.cap == 0 {
					continue
				}
				// Reduced costs are non-negative up to rounding.
				nd := dist[it.v] + max(e.cost+pot[it.v]-pot[e.to], 0)
				if nd < dist[e.to] {
					dist[e.to], prev[e.to] = nd, ei
					heap.Push(pq, distItem{e.to, nd})
				}
			}
		}
		if math.IsInf(dist[t], 1) {
			return flow, cost
		}
		for i := range pot {
			if !math.IsInf(dist[i], 1) {
				pot[i] += dist[i]
			}
		}
		for v := t; v != s; v = g.edges[prev[v]^1].to {
			g.edges[prev[v]].cap--
			g.edges[prev[v]^1].cap++
			cost += g.edges[prev[v]].cost
		}
		flow++
	}
}

type distItem struct {
	v int
	d float64
}

type distHeap []distItem

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].d < h[j].d }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(distItem)) }
func (h *distHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// assignment solves the transportation problem the quality benchmark
// needs: job i may go to slot type k at cost[i][k] (NaN: not allowed), type
// k holds capacity[k] jobs. It returns each job's type (-1: unplaced) for a
// cheapest assignment of as many jobs as can be placed.
func assignment(cost [][]float64, capacity []int) ([]int, float64) {
	n, m := len(cost), len(capacity)
	src, sink := n+m, n+m+1
	g := newFlowGraph(n + m + 2)
	edge := make([][]int, n)
	for i := range n {
		g.add(src, i, 1, 0)
		edge[i] = make([]int, m)
		for k := range m {
			edge[i][k] = -1
			if !math.IsNaN(cost[i][k]) {
				edge[i][k] = g.add(i, n+k, 1, cost[i][k])
			}
		}
	}
	for k := range m {
		g.add(n+k, sink, capacity[k], 0)
	}
	_, total := g.minCostMaxFlow(src, sink)
	out := make([]int, n)
	for i := range n {
		out[i] = -1
		for k := range m {
			if e := edge[i][k]; e >= 0 && g.edges[e].cap == 0 {
				out[i] = k
			}
		}
	}
	return out, total
}

// TestAssignmentIsOptimal checks the flow against brute force on small
// random instances, so the benchmark's optimum can be trusted.
func TestAssignmentIsOptimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		n, m := 1+r.IntN(6), 1+r.IntN(3)
		cost := make([][]float64, n)
		for i := range cost {
			cost[i] = make([]float64, m)
			for k := range cost[i] {
				cost[i][k] = math.Round(r.Float64()*100) / 10
				if r.IntN(4) == 0 {
					cost[i][k] = math.NaN()
				}
			}
		}
		capacity := make([]int, m)
		for k := range capacity {
			capacity[k] = r.IntN(3)
		}
		got, total := assignment(cost, capacity)
		wantPlaced, wantCost := bruteForce(cost, capacity)
		placed, sum, used := 0, 0.0, make([]int, m)
		for i, k := range got {
			if k >= 0 {
				placed++
				sum += cost[i][k]
				used[k]++
			}
		}
		for k := range used {
			if used[k] > capacity[k] {
				t.Fatalf("trial %d: type %d over capacity", trial, k)
			}
		}
		if placed != wantPlaced || math.Abs(sum-wantCost) > 1e-9 || math.Abs(total-sum) > 1e-9 {
			t.Fatalf("trial %d: placed %d for %.2f (flow says %.2f), brute force %d for %.2f\ncost %v capacity %v",
				trial, placed, sum, total, wantPlaced, wantCost, cost, capacity)
		}
	}
}

// bruteForce returns the most jobs that can be placed and the cheapest
// cost of placing that many.
func bruteForce(cost [][]float64, capacity []int) (int, float64) {
	bestN, bestC := 0, 0.0
	used := make([]int, len(capacity))
	var rec func(i, placed int, sum float64)
	rec = func(i, placed int, sum float64) {
		if i == len(cost) {
			if placed > bestN || placed == bestN && sum < bestC {
				bestN, bestC = placed, sum
			}
			return
		}
		rec(i+1, placed, sum)
		for k := range capacity {
			if !math.IsNaN(cost[i][k]) && used[k] < capacity[k] {
				used[k]++
				rec(i+1, placed+1, sum+cost[i][k])
				used[k]--
			}
		}
	}
	rec(0, 0, 0)
	return bestN, bestC
}
