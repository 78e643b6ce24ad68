package main

import (
	"math"
	"math/rand/v2"
	"sync"
)

// params holds an MLP of one hidden layer: inputs → hidden (ReLU) → classes (softmax). The
// optimizer's velocity has the same shape, which is why one type serves for both.
type params struct {
	hidden int
	// w1 is inputs×hidden with pixel i's outgoing weights in row i: MNIST images are four-fifths
	// zero, so the forward pass and the gradient visit only the rows of lit pixels.
	w1 []float64
	b1 []float64
	w2 []float64 // hidden×classes
	b2 []float64
}

func newParams(hidden int) *params {
	return &params{
		hidden: hidden,
		w1:     make([]float64, inputs*hidden),
		b1:     make([]float64, hidden),
		w2:     make([]float64, hidden*classes),
		b2:     make([]float64, classes),
	}
}

// tensors lists the parameter slices in the fixed order used by the optimizer and the file
// formats.
func (p *params) tensors() [][]float64 { return [][]float64{p.w1, p.b1, p.w2, p.b2} }

func (p *params) count() int { return inputs*p.hidden + p.hidden + p.hidden*classes + classes }

// initParams draws He-normal weights for the ReLU layer and Glorot-scaled weights for the softmax
// layer, biases zero. Only step 0 uses it; after that the weights come from checkpoints.
func initParams(hidden int, seed uint64) *params {
	p := newParams(hidden)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	s1 := math.Sqrt(2.0 / inputs)
	for i := range p.w1 {
		p.w1[i] = r.NormFloat64() * s1
	}
	s2 := math.Sqrt(1.0 / float64(hidden))
	for i := range p.w2 {
		p.w2[i] = r.NormFloat64() * s2
	}
	return p
}

// pixel maps a byte to the network's input in [0, 1].
var pixel = func() (t [256]float64) {
	for i := range t {
		t[i] = float64(i) / 255
	}
	return t
}()

// forward computes the hidden activations into h (len hidden) and returns the logits.
func (p *params) forward(x []byte, h []float64) (logits [classes]float64) {
	copy(h, p.b1)
	for i, px := range x[:inputs] {
		if px == 0 {
			continue
		}
		v := pixel[px]
		row := p.w1[i*p.hidden : (i+1)*p.hidden]
		row = row[:len(h)]
		for j := range h {
			h[j] += v * row[j]
		}
	}
	copy(logits[:], p.b2)
	for j, hj := range h {
		if hj <= 0 {
			h[j] = 0
			continue
		}
		row := p.w2[j*classes : (j+1)*classes]
		for k := range logits {
			logits[k] += hj * row[k]
		}
	}
	return logits
}

func argmax(v *[classes]float64) int {
	best := 0
	for k := range v {
		if v[k] > v[best] {
			best = k
		}
	}
	return best
}

// gradState is the scratch space of one minibatch gradient, kept between steps so that training
// allocates nothing per step.
type gradState struct {
	h, dh   []float64 // per sample: hidden activations, loss gradient at the hidden pre-activations
	dlogits []float64 // per sample: loss gradient at the logits
	loss    []float64
	correct []bool
	grad    *params
}

func newGradState(hidden, batch int) *gradState {
	return &gradState{
		h:       make([]float64, batch*hidden),
		dh:      make([]float64, batch*hidden),
		dlogits: make([]float64, batch*classes),
		loss:    make([]float64, batch),
		correct: make([]bool, batch),
		grad:    newParams(hidden),
	}
}

// parallel runs fn(w) for w in [0, workers) and waits.
func parallel(workers int, fn func(w int)) {
	if workers <= 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { fn(w) })
	}
	wg.Wait()
}

// gradient computes the mean softmax cross-entropy of the examples batch (indices into d) and its
// gradient with respect to p, which it leaves in gs.grad. It returns the mean loss and the number
// of examples classified correctly.
//
// The work is split across workers goroutines, but every number is summed in the same order
// whatever the split: samples are independent in the first phase, and in the second each gradient
// element is a sum over the batch in batch order, computed by exactly one goroutine. So training
// is bit-for-bit the same on 1 core or 64, and a checkpoint taken on one machine resumes
// identically on another of the same architecture.
func (p *params) gradient(d dataset, batch []int, workers int, gs *gradState) (loss float64, correct int) {
	H, B := p.hidden, len(batch)
	workers = max(1, min(workers, B))
	invB := 1 / float64(B)

	// Phase 1, by sample: forward pass, loss, and the gradients at the logits and at the hidden
	// layer.
	parallel(workers, func(w int) {
		for s := w * B / workers; s < (w+1)*B/workers; s++ {
			k := batch[s]
			h := gs.h[s*H : (s+1)*H]
			logits := p.forward(d.image(k), h)
			y := int(d.labels[k])

			// log-sum-exp around the largest logit, so exp cannot overflow.
			top := argmax(&logits)
			m := logits[top]
			var sum float64
			for _, l := range logits {
				sum += math.Exp(l - m)
			}
			lse := m + math.Log(sum)
			gs.loss[s] = lse - logits[y]
			gs.correct[s] = top == y

			dl := gs.dlogits[s*classes : (s+1)*classes]
			for c, l := range logits {
				dl[c] = math.Exp(l-lse) * invB
			}
			dl[y] -= invB

			dh := gs.dh[s*H : (s+1)*H]
			for j, hj := range h {
				if hj <= 0 { // ReLU passes no gradient where it was off
					dh[j] = 0
					continue
				}
				row := p.w2[j*classes : (j+1)*classes]
				var g float64
				for c := range dl {
					g += row[c] * dl[c]
				}
				dh[j] = g
			}
		}
	})

	// Phase 2, by parameter: the first layer's rows are spread over the workers; the other
	// tensors are small and summed by worker 0.
	g := gs.grad
	parallel(workers, func(w int) {
		// Rows go round-robin because the blank border rows cost almost nothing; contiguous
		// ranges would leave one worker the busy middle.
		for i := w; i < inputs; i += workers {
			row := g.w1[i*H : (i+1)*H]
			clear(row)
			for s, k := range batch {
				px := d.images[k*inputs+i]
				if px == 0 {
					continue
				}
				v := pixel[px]
				dh := gs.dh[s*H : (s+1)*H]
				dh = dh[:len(row)]
				for j := range row {
					row[j] += v * dh[j]
				}
			}
		}
		if w != 0 {
			return
		}
		clear(g.b1)
		clear(g.w2)
		clear(g.b2)
		for s := range batch {
			h := gs.h[s*H : (s+1)*H]
			dh := gs.dh[s*H : (s+1)*H]
			dl := gs.dlogits[s*classes : (s+1)*classes]
			for j, hj := range h {
				g.b1[j] += dh[j]
				if hj == 0 {
					continue
				}
				row := g.w2[j*classes : (j+1)*classes]
				for c := range row {
					row[c] += hj * dl[c]
				}
			}
			for c := range g.b2 {
				g.b2[c] += dl[c]
			}
		}
	})

	for s := range B {
		loss += gs.loss[s]
		if gs.correct[s] {
			correct++
		}
	}
	return loss * invB, correct
}

// momentumStep is SGD with (heavy-ball) momentum: v ← μv + g; w ← w − ηv.
func momentumStep(p, velocity, grad *params, lr, momentum float64) {
	pt, vt, gt := p.tensors(), velocity.tensors(), grad.tensors()
	for t := range pt {
		w, v, g := pt[t], vt[t], gt[t]
		v = v[:len(w)]
		g = g[:len(w)]
		for i := range w {
			v[i] = momentum*v[i] + g[i]
			w[i] -= lr * v[i]
		}
	}
}

// accuracy is the fraction of d that p classifies correctly.
func (p *params) accuracy(d dataset, workers int) float64 {
	workers = max(1, min(workers, d.n))
	counts := make([]int, workers)
	parallel(workers, func(w int) {
		h := make([]float64, p.hidden)
		for i := w * d.n / workers; i < (w+1)*d.n/workers; i++ {
			logits := p.forward(d.image(i), h)
			if argmax(&logits) == int(d.labels[i]) {
				counts[w]++
			}
		}
	})
	correct := 0
	for _, c := range counts {
		correct += c
	}
	return float64(correct) / float64(d.n)
}

// epochOrder is the order in which epoch visits n training examples. It depends only on (seed,
// epoch, n), so a run resumed from a checkpoint sees exactly the batches of one never interrupted.
// The Fisher-Yates shuffle is written out, over PCG's fixed output sequence, rather than taken
// from rand.Shuffle, so that the order cannot change under a checkpoint with the Go release.
func epochOrder(seed uint64, epoch, n int) []int {
	r := rand.NewPCG(seed, uint64(epoch))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	for i := n - 1; i > 0; i-- {
		// The modulo bias, under n/2^64, is of no consequence for a shuffle.
		j := int(r.Uint64() % uint64(i+1))
		order[i], order[j] = order[j], order[i]
	}
	return order
}
