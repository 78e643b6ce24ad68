package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// tinyData is n random images, about half their pixels blank so that the sparse paths run, with
// random labels.
func tinyData(n int, seed uint64) dataset {
	r := rand.New(rand.NewPCG(seed, 1))
	d := dataset{n: n, images: make([]byte, n*inputs), labels: make([]byte, n)}
	for i := range d.images {
		if r.IntN(2) == 0 {
			d.images[i] = byte(1 + r.IntN(255))
		}
	}
	for i := range d.labels {
		d.labels[i] = byte(r.IntN(classes))
	}
	return d
}

// tinyParams are small random weights with nonzero biases, so that no tensor's gradient is zero
// by construction.
func tinyParams(hidden int, seed uint64) *params {
	p := initParams(hidden, seed)
	r := rand.New(rand.NewPCG(seed, 2))
	for _, t := range [][]float64{p.b1, p.b2} {
		for i := range t {
			t[i] = r.NormFloat64() * 0.1
		}
	}
	return p
}

// TestGradientCheck compares every analytic partial derivative with a central difference of the
// loss.
func TestGradientCheck(t *testing.T) {
	const hidden, eps = 5, 1e-6
	d := tinyData(4, 7)
	batch := []int{0, 1, 2, 3}
	p := tinyParams(hidden, 7)
	gs := newGradState(hidden, len(batch))
	p.gradient(d, batch, 2, gs)
	analytic := gs.grad

	scratch := newGradState(hidden, len(batch))
	lossAt := func() float64 {
		l, _ := p.gradient(d, batch, 1, scratch)
		return l
	}
	names := []string{"w1", "b1", "w2", "b2"}
	var checked, worst = 0, 0.0
	for ti, tensor := range p.tensors() {
		for i := range tensor {
			orig := tensor[i]
			tensor[i] = orig + eps
			up := lossAt()
			tensor[i] = orig - eps
			down := lossAt()
			tensor[i] = orig
			numeric := (up - down) / (2 * eps)
			got := analytic.tensors()[ti][i]
			diff := math.Abs(got - numeric)
			if scale := math.Abs(got) + math.Abs(numeric); scale > 1e-4 {
				diff /= scale
			}
			worst = max(worst, diff)
			if diff > 1e-5 {
				t.Errorf("%s[%d]: analytic %.9g, numeric %.9g", names[ti], i, got, numeric)
			}
			checked++
		}
	}
	if checked != p.count() {
		t.Fatalf("checked %d parameters, the model has %d", checked, p.count())
	}
	t.Logf("%d partial derivatives, worst relative error %.2g", checked, worst)
}

// TestGradientIndependentOfWorkers holds the promise that resumes depend on: the number of
// goroutines never changes a single bit.
func TestGradientIndependentOfWorkers(t *testing.T) {
	d := tinyData(37, 3)
	batch := epochOrder(9, 0, d.n)[:29]
	p := tinyParams(16, 3)
	var want *gradState
	var wantLoss float64
	for _, workers := range []int{1, 2, 3, 8, 64} {
		gs := newGradState(16, len(batch))
		loss, _ := p.gradient(d, batch, workers, gs)
		if want == nil {
			want, wantLoss = gs, loss
			continue
		}
		if loss != wantLoss {
			t.Errorf("workers %d: loss %v, want %v", workers, loss, wantLoss)
		}
		for ti, tensor := range gs.grad.tensors() {
			if !slices.Equal(tensor, want.grad.tensors()[ti]) {
				t.Errorf("workers %d: gradient tensor %d differs from 1 worker's", workers, ti)
			}
		}
	}
}

func TestTrainingLearnsTinyData(t *testing.T) {
	d := tinyData(20, 5)
	p := initParams(32, 5)
	vel := newParams(32)
	gs := newGradState(32, d.n)
	batch := epochOrder(1, 0, d.n)
	first, _ := p.gradient(d, batch, 2, gs)
	var loss float64
	var correct int
	for range 200 {
		momentumStep(p, vel, gs.grad, 0.05, 0.9)
		loss, correct = p.gradient(d, batch, 2, gs)
	}
	if loss > first/10 || correct != d.n {
		t.Errorf("after 200 steps on 20 images: loss %.4f (from %.4f), %d correct; want memorised", loss, first, correct)
	}
	if got := p.accuracy(d, 3); got != 1 {
		t.Errorf("accuracy = %v, want 1", got)
	}
}

func TestEpochOrder(t *testing.T) {
	a := epochOrder(1, 0, 1000)
	sorted := slices.Sorted(slices.Values(a))
	for i, v := range sorted {
		if i != v {
			t.Fatalf("epochOrder is not a permutation: sorted[%d] = %d", i, v)
		}
	}
	if !slices.Equal(a, epochOrder(1, 0, 1000)) {
		t.Error("same seed and epoch gave different orders")
	}
	if slices.Equal(a, epochOrder(1, 1, 1000)) {
		t.Error("epochs 0 and 1 share an order")
	}
	if slices.Equal(a, epochOrder(2, 0, 1000)) {
		t.Error("seeds 1 and 2 share an order")
	}
	// Pinned: a change here breaks every checkpoint in flight, which resume would not notice.
	if got, want := epochOrder(1, 0, 10), []int{0, 9, 6, 5, 4, 7, 3, 2, 8, 1}; !slices.Equal(got, want) {
		t.Errorf("epochOrder(1, 0, 10) = %v, want %v", got, want)
	}
}
