package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

const (
	metricsEvery = 100 // steps between LODE_METRICS_FILE lines
	printEvery   = 400 // steps between progress lines on stdout
)

type trainer struct {
	cfg         config
	train, test dataset
	stdout      io.Writer
	stderr      io.Writer

	st        *state
	savedStep int // step of the last checkpoint written or resumed from; -1 if none
}

// start resumes from the newest readable checkpoint or begins afresh.
func (t *trainer) start() error {
	st, err := loadCheckpoint(t.cfg.checkpointDir, t.stderr)
	if err != nil {
		return err
	}
	if st == nil {
		t.st = &state{
			seed: t.cfg.seed, hidden: t.cfg.hidden, batch: t.cfg.batch, trainN: t.train.n,
			lr: t.cfg.lr, momentum: t.cfg.momentum,
			params:   initParams(t.cfg.hidden, t.cfg.seed),
			velocity: newParams(t.cfg.hidden),
		}
		t.savedStep = -1
		t.describe()
		fmt.Fprintln(t.stdout, "mnist: starting from step 0")
		return nil
	}

	// The checkpoint's hyperparameters win over the flags: continuing with others would not be
	// the run that was checkpointed. Say so when they differ.
	differs := func(flag string, ckpt, flagValue any) {
		if ckpt != flagValue {
			fmt.Fprintf(t.stderr, "mnist: warning: the checkpoint was written with --%s %v; keeping that, not %v\n", flag, ckpt, flagValue)
		}
	}
	differs("seed", st.seed, t.cfg.seed)
	differs("hidden", st.hidden, t.cfg.hidden)
	differs("batch", st.batch, t.cfg.batch)
	differs("lr", st.lr, t.cfg.lr)
	differs("momentum", st.momentum, t.cfg.momentum)
	switch {
	case st.trainN > t.train.n:
		return fmt.Errorf("the checkpoint at step %d trained on %d images, but only %d are loaded (--train-limit %d)",
			st.step, st.trainN, t.train.n, t.cfg.trainLimit)
	case st.trainN < t.train.n:
		differs("train-limit", st.trainN, t.cfg.trainLimit)
		t.train.n = st.trainN
		t.train.images = t.train.images[:st.trainN*inputs]
		t.train.labels = t.train.labels[:st.trainN]
	}
	t.st, t.savedStep = st, st.step
	t.describe()
	fmt.Fprintf(t.stdout, "mnist: resuming from checkpoint at step %d\n", st.step)
	return nil
}

func (t *trainer) describe() {
	st := t.st
	fmt.Fprintf(t.stdout, "mnist: %d training and %d test images; MLP %d-%d-%d; batch %d, lr %g, momentum %g, seed %d; %d workers\n",
		st.trainN, t.test.n, inputs, st.hidden, classes, st.batch, st.lr, st.momentum, st.seed, t.cfg.workers)
}

func (t *trainer) done() bool {
	return t.st.epoch >= t.cfg.epochs || (t.cfg.maxSteps > 0 && t.st.step >= t.cfg.maxSteps)
}

// window accumulates the training loss and accuracy between two reports.
type window struct {
	loss           float64
	correct, total int
}

func (w *window) add(loss float64, correct, n int) {
	w.loss += loss * float64(n)
	w.correct += correct
	w.total += n
}

func (w *window) mean() (loss, accuracy float64) {
	if w.total == 0 {
		return 0, 0
	}
	return w.loss / float64(w.total), float64(w.correct) / float64(w.total)
}

type stepMetrics struct {
	Step     int     `json:"step"`
	Epoch    float64 `json:"epoch"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"` // training accuracy over the last metricsEvery steps
}

type finalMetrics struct {
	Step         int     `json:"step"`
	Epoch        float64 `json:"epoch"`
	TestAccuracy float64 `json:"test_accuracy"`
}

// appendMetric adds one JSON line to LODE_METRICS_FILE, if there is one. A line is one write, so
// a reader tailing the file never sees half of it.
func (t *trainer) appendMetric(v any) error {
	if t.cfg.metricsFile == "" {
		return nil
	}
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(t.cfg.metricsFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("metrics file: %w", err)
	}
	return nil
}

// epochs is the training done so far, in epochs.
func (t *trainer) epochs() float64 {
	return float64(t.st.epoch) + float64(t.st.pos)/float64(t.st.trainN)
}

func (t *trainer) checkpoint() error {
	if _, err := saveCheckpoint(t.cfg.checkpointDir, t.st); err != nil {
		return err
	}
	t.savedStep = t.st.step
	return nil
}

// loop trains until --epochs or --max-steps is reached, or ctx is cancelled.
func (t *trainer) loop(ctx context.Context) error {
	st := t.st
	gs := newGradState(st.hidden, st.batch)
	var order []int
	var printed, logged window
	for !t.done() {
		if ctx.Err() != nil {
			if err := t.checkpoint(); err != nil {
				return fmt.Errorf("interrupted at step %d, and the checkpoint failed: %w", st.step, err)
			}
			return fmt.Errorf("interrupted at step %d; checkpoint written to %s, run again to resume", st.step, t.cfg.checkpointDir)
		}
		if order == nil {
			order = epochOrder(st.seed, st.epoch, st.trainN)
		}
		end := min(st.pos+st.batch, st.trainN)
		batch := order[st.pos:end]
		loss, correct := st.params.gradient(t.train, batch, t.cfg.workers, gs)
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return fmt.Errorf("training diverged at step %d (loss %v); try a smaller --lr", st.step+1, loss)
		}
		momentumStep(st.params, st.velocity, gs.grad, st.lr, st.momentum)

		epoch := st.epoch
		st.step++
		st.pos = end
		if st.pos == st.trainN {
			st.epoch, st.pos, order = st.epoch+1, 0, nil
		}

		printed.add(loss, correct, len(batch))
		logged.add(loss, correct, len(batch))
		if st.step%metricsEvery == 0 {
			l, a := logged.mean()
			if err := t.appendMetric(stepMetrics{Step: st.step, Epoch: t.epochs(), Loss: l, Accuracy: a}); err != nil {
				return err
			}
			logged = window{}
		}
		if st.step%printEvery == 0 {
			l, a := printed.mean()
			fmt.Fprintf(t.stdout, "mnist: step %d epoch %d loss %.4f train-acc %.1f%%\n", st.step, epoch+1, l, 100*a)
			printed = window{}
		}
		if t.cfg.checkpointEvery > 0 && st.step%t.cfg.checkpointEvery == 0 {
			if err := t.checkpoint(); err != nil {
				return err
			}
		}
	}
	return nil
}

type summary struct {
	TestAccuracy       float64 `json:"test_accuracy"`
	Steps              int     `json:"steps"`
	Epochs             float64 `json:"epochs"`
	TrainExamples      int     `json:"train_examples"`
	Hidden             int     `json:"hidden"`
	Batch              int     `json:"batch"`
	LearningRate       float64 `json:"lr"`
	Momentum           float64 `json:"momentum"`
	Seed               uint64  `json:"seed"`
	ModelFile          string  `json:"model_file"`
	ModelFormatVersion int     `json:"model_format_version"`
}

// finish evaluates on the test set and writes the final checkpoint, the model and the summary.
func (t *trainer) finish() error {
	st := t.st
	acc := st.params.accuracy(t.test, t.cfg.workers)
	if t.savedStep != st.step {
		if err := t.checkpoint(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(t.cfg.outputDir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	modelPath, err := filepath.Abs(filepath.Join(t.cfg.outputDir, "model.bin"))
	if err != nil {
		return err
	}
	if err := writeFileAtomic(modelPath, encodeModel(st.params)); err != nil {
		return fmt.Errorf("writing the model: %w", err)
	}
	sum, err := json.MarshalIndent(summary{
		TestAccuracy: acc, Steps: st.step, Epochs: t.epochs(), TrainExamples: st.trainN,
		Hidden: st.hidden, Batch: st.batch, LearningRate: st.lr, Momentum: st.momentum, Seed: st.seed,
		ModelFile: "model.bin", ModelFormatVersion: formatVersion,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(t.cfg.outputDir, "summary.json"), append(sum, '\n')); err != nil {
		return fmt.Errorf("writing the summary: %w", err)
	}
	if err := t.appendMetric(finalMetrics{Step: st.step, Epoch: t.epochs(), TestAccuracy: acc}); err != nil {
		return err
	}
	fmt.Fprintf(t.stdout, "mnist: test accuracy %.2f%% after %d steps\n", 100*acc, st.step)
	fmt.Fprintf(t.stdout, "mnist: model written to %s\n", modelPath)
	return nil
}
