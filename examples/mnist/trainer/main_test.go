package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// job is one Lode job's directories; runs of the same job share them, as attempts do.
type job struct {
	ckpt, out, metrics string
}

func newJob(t *testing.T) job {
	dir := t.TempDir()
	return job{
		ckpt:    filepath.Join(dir, "ckpt"),
		out:     filepath.Join(dir, "out"),
		metrics: filepath.Join(dir, "metrics.jsonl"),
	}
}

// small is a run that takes a fraction of a second: 512 training images in batches of 32 make an
// epoch 16 steps.
var small = []string{"--data", "../data", "--train-limit", "512", "--batch", "32", "--hidden", "32", "--epochs", "100", "--workers", "2"}

func (j job) run(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	env := map[string]string{
		"LODE_CHECKPOINT_DIR": j.ckpt,
		"LODE_OUTPUT_DIR":     j.out,
		"LODE_METRICS_FILE":   j.metrics,
	}
	var out, errOut bytes.Buffer
	err = run(ctx, append(slices.Clone(small), args...), func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func (j job) mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := j.run(t, context.Background(), args...)
	if err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout, stderr)
	}
	return stdout, stderr
}

func (j job) file(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameResult fails unless two jobs ended with byte-identical models and final checkpoints.
func sameResult(t *testing.T, got, want job, step int) {
	t.Helper()
	if !bytes.Equal(got.file(t, filepath.Join(got.out, "model.bin")), want.file(t, filepath.Join(want.out, "model.bin"))) {
		t.Error("model.bin differs from the uninterrupted run's")
	}
	name := checkpointName(step)
	if !bytes.Equal(got.file(t, filepath.Join(got.ckpt, name)), want.file(t, filepath.Join(want.ckpt, name))) {
		t.Errorf("%s differs from the uninterrupted run's", name)
	}
}

func TestRunWritesOutputs(t *testing.T) {
	j := newJob(t)
	stdout, stderr := j.mustRun(t, "--max-steps", "200", "--checkpoint-every", "50")
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing", stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	modelPath, _ := filepath.Abs(filepath.Join(j.out, "model.bin"))
	want := []*regexp.Regexp{
		regexp.MustCompile(`^mnist: 512 training and 10000 test images; MLP 784-32-10; batch 32, lr 0\.05, momentum 0\.9, seed 1; 2 workers$`),
		regexp.MustCompile(`^mnist: starting from step 0$`),
		regexp.MustCompile(`^mnist: test accuracy \d+\.\d\d% after 200 steps$`),
		regexp.MustCompile(`^mnist: model written to ` + regexp.QuoteMeta(modelPath) + `$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), stdout)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %s", i+1, lines[i], re)
		}
	}

	var sum summary
	if err := json.Unmarshal(j.file(t, filepath.Join(j.out, "summary.json")), &sum); err != nil {
		t.Fatal(err)
	}
	// 200 steps on 512 images learn enough to beat chance by far, not to match the full run.
	if sum.Steps != 200 || sum.Epochs != 12.5 || sum.TestAccuracy < 0.6 || sum.TrainExamples != 512 {
		t.Errorf("summary = %+v, want 200 steps, 12.5 epochs, accuracy ≥ 0.6, 512 examples", sum)
	}
	if _, err := decodeModel(j.file(t, modelPath)); err != nil {
		t.Errorf("model.bin: %v", err)
	}
	if got, want := checkpointNames(t, j.ckpt), []string{"ckpt-000150.bin", "ckpt-000200.bin"}; !slices.Equal(got, want) {
		t.Errorf("checkpoints %v, want %v", got, want)
	}

	// Two interval lines and the final one.
	var records []map[string]float64
	sc := bufio.NewScanner(bytes.NewReader(j.file(t, j.metrics)))
	for sc.Scan() {
		var m map[string]float64
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		records = append(records, m)
	}
	if len(records) != 3 {
		t.Fatalf("%d metrics lines, want 3", len(records))
	}
	for i, step := range []float64{100, 200} {
		m := records[i]
		if m["step"] != step || m["loss"] <= 0 || m["accuracy"] <= 0 || m["accuracy"] > 1 {
			t.Errorf("metrics line %d = %v, want step %v with loss and accuracy", i+1, m, step)
		}
	}
	if last := records[2]; last["step"] != 200 || last["test_accuracy"] != sum.TestAccuracy {
		t.Errorf("final metrics line = %v, want step 200 and test_accuracy %v", last, sum.TestAccuracy)
	}
}

// TestResumeEquivalence: training K steps, stopping, and resuming to 2K gives bit-for-bit the
// model of training 2K steps straight. K = 24 stops halfway through the second epoch, so the
// resume has to pick up the shuffled order in the middle.
func TestResumeEquivalence(t *testing.T) {
	straight := newJob(t)
	straight.mustRun(t, "--max-steps", "48", "--checkpoint-every", "10")

	split := newJob(t)
	split.mustRun(t, "--max-steps", "24", "--checkpoint-every", "10")
	// The second attempt lands on one core with other flags: the checkpoint's hyperparameters
	// must win, and the worker count must not matter.
	stdout, stderr := split.mustRun(t, "--max-steps", "48", "--checkpoint-every", "10", "--workers", "1", "--lr", "0.5", "--seed", "9")
	if !strings.Contains(stdout, "\nmnist: resuming from checkpoint at step 24\n") {
		t.Errorf("stdout lacks the resume line:\n%s", stdout)
	}
	for _, w := range []string{
		"mnist: warning: the checkpoint was written with --seed 1; keeping that, not 9\n",
		"mnist: warning: the checkpoint was written with --lr 0.05; keeping that, not 0.5\n",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	sameResult(t, split, straight, 48)

	// A job whose training is already done only evaluates and rewrites its outputs.
	stdout, _ = split.mustRun(t, "--max-steps", "48")
	if !strings.Contains(stdout, "mnist: resuming from checkpoint at step 48\nmnist: test accuracy ") {
		t.Errorf("rerunning a finished job:\n%s", stdout)
	}
	sameResult(t, split, straight, 48)
}

// TestResumeSkipsCorruptCheckpoint: the newest checkpoint is damaged, so the run falls back to
// the one before and still ends where the uninterrupted run did.
func TestResumeSkipsCorruptCheckpoint(t *testing.T) {
	straight := newJob(t)
	straight.mustRun(t, "--max-steps", "48")

	j := newJob(t)
	j.mustRun(t, "--max-steps", "30", "--checkpoint-every", "10")
	newest := filepath.Join(j.ckpt, checkpointName(30))
	b := j.file(t, newest)
	if err := os.WriteFile(newest, b[:len(b)/2], 0o644); err != nil { // a crash mid-write on a filesystem without atomic rename
		t.Fatal(err)
	}
	stdout, stderr := j.mustRun(t, "--max-steps", "48", "--checkpoint-every", "10")
	if !strings.Contains(stdout, "mnist: resuming from checkpoint at step 20\n") {
		t.Errorf("stdout lacks the resume from step 20:\n%s", stdout)
	}
	if want := "mnist: warning: skipping checkpoint " + newest + ": truncated or padded"; !strings.HasPrefix(stderr, want) {
		t.Errorf("stderr = %q, want it to start %q", stderr, want)
	}
	sameResult(t, j, straight, 48)
	if got, want := checkpointNames(t, j.ckpt), []string{"ckpt-000040.bin", "ckpt-000048.bin"}; !slices.Equal(got, want) {
		t.Errorf("checkpoints %v, want %v", got, want)
	}
}

// stopAfter is a context that reports cancellation from its n+1-th Err call on, as a SIGTERM
// arriving during step n would.
type stopAfter struct {
	context.Context
	n atomic.Int64
}

func (c *stopAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestInterruptCheckpointsAndResumes(t *testing.T) {
	straight := newJob(t)
	straight.mustRun(t, "--max-steps", "40")

	j := newJob(t)
	ctx := &stopAfter{Context: context.Background()}
	ctx.n.Store(17)
	_, _, err := j.run(t, ctx, "--max-steps", "40", "--checkpoint-every", "0")
	if err == nil || err.Error() != "interrupted at step 17; checkpoint written to "+j.ckpt+", run again to resume" {
		t.Fatalf("err = %v, want the interruption at step 17", err)
	}
	if _, err := os.Stat(filepath.Join(j.out, "model.bin")); err == nil {
		t.Error("an interrupted run wrote model.bin")
	}
	stdout, _ := j.mustRun(t, "--max-steps", "40", "--checkpoint-every", "0")
	if !strings.Contains(stdout, "mnist: resuming from checkpoint at step 17\n") {
		t.Errorf("stdout lacks the resume from step 17:\n%s", stdout)
	}
	sameResult(t, j, straight, 40)
}

func TestResumeWithFewerImages(t *testing.T) {
	j := newJob(t)
	j.mustRun(t, "--max-steps", "5")
	_, _, err := j.run(t, context.Background(), "--max-steps", "10", "--train-limit", "100")
	want := "the checkpoint at step 5 trained on 512 images, but only 100 are loaded (--train-limit 100)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"every bad value at once", []string{"--epochs", "0", "--batch", "-1", "--lr", "0", "--hidden", "0"},
			"--epochs 0: want at least 1; --batch -1: want at least 1; --lr 0: want a positive number; --hidden 0: want 1 to 16384"},
		{"unknown flag", []string{"--speed", "9"}, "flag provided but not defined: -speed"},
		{"stray argument", []string{"train"}, `unexpected arguments ["train"] (flags only; -h lists them)`},
		{"no data", []string{"--data", "/nonexistent/mnist"},
			"loading MNIST (--data /nonexistent/mnist): open /nonexistent/mnist/train-images-idx3-ubyte.gz: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t)
			stdout, stderr, err := j.run(t, context.Background(), tt.args...)
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("err = %v\nwant  %s", err, tt.wantErr)
			}
			if stdout != "" || stderr != "" {
				t.Errorf("printed %q and %q before failing, want nothing", stdout, stderr)
			}
		})
	}
}

func TestDataDefault(t *testing.T) {
	for _, tt := range []struct {
		env, want string
	}{{"", "../data"}, {"/mnt/datasets/mnist", "/mnt/datasets/mnist"}} {
		cfg, err := parseConfig(nil, func(k string) string {
			if k == "LODE_DATASET_MNIST" {
				return tt.env
			}
			return ""
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.data != tt.want || cfg.checkpointDir != "./ckpt" || cfg.outputDir != "./out" || cfg.metricsFile != "" {
			t.Errorf("LODE_DATASET_MNIST=%q: config %+v", tt.env, cfg)
		}
	}
}
