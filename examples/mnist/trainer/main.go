// Command mnist trains a small neural network on MNIST, in pure Go, as a Lode job: it reads the
// dataset Lode mounts, checkpoints into LODE_CHECKPOINT_DIR, resumes from there after a lost node,
// appends metrics to LODE_METRICS_FILE and leaves the model in LODE_OUTPUT_DIR.
//
//	go run . --data "$LODE_DATASET_MNIST"
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

func main() {
	// SIGTERM is how a preempted or cancelled job is told to stop: finish the step, checkpoint,
	// exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mnist: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	data            string
	epochs          int
	batch           int
	lr              float64
	momentum        float64
	hidden          int
	seed            uint64
	checkpointEvery int
	maxSteps        int
	trainLimit      int
	workers         int

	checkpointDir string
	outputDir     string
	metricsFile   string
}

// parseConfig reads flags and Lode's environment and reports every bad value at once.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("mnist", flag.ContinueOnError)
	// Errors come back through run as one line; only -h prints the usage.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.data, "data", cmp.Or(getenv("LODE_DATASET_MNIST"), "../data"), "`dir`ectory holding the four MNIST idx files (.gz or not)")
	fs.IntVar(&c.epochs, "epochs", 10, "passes over the training set")
	fs.IntVar(&c.batch, "batch", 64, "minibatch size")
	fs.Float64Var(&c.lr, "lr", 0.05, "learning rate")
	fs.Float64Var(&c.momentum, "momentum", 0.9, "SGD momentum")
	fs.IntVar(&c.hidden, "hidden", 256, "hidden units")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for the initial weights and the shuffles")
	fs.IntVar(&c.checkpointEvery, "checkpoint-every", 200, "write a checkpoint every `n` steps (0: only at the end)")
	fs.IntVar(&c.maxSteps, "max-steps", 0, "stop after `n` steps in all, then evaluate as usual (0: no limit)")
	fs.IntVar(&c.trainLimit, "train-limit", 0, "train on only the first `n` training images (0: all)")
	fs.IntVar(&c.workers, "workers", runtime.GOMAXPROCS(0), "goroutines per step; results do not depend on it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: mnist [flags]")
			fs.PrintDefaults()
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (flags only; -h lists them)", fs.Args())
	}

	var bad []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	check(c.epochs >= 1, "--epochs %d: want at least 1", c.epochs)
	check(c.batch >= 1, "--batch %d: want at least 1", c.batch)
	check(c.lr > 0 && !math.IsInf(c.lr, 0), "--lr %v: want a positive number", c.lr)
	check(c.momentum >= 0 && c.momentum < 1, "--momentum %v: want 0 ≤ momentum < 1", c.momentum)
	check(c.hidden >= 1 && c.hidden <= maxHidden, "--hidden %d: want 1 to %d", c.hidden, maxHidden)
	check(c.checkpointEvery >= 0, "--checkpoint-every %d: want 0 or more", c.checkpointEvery)
	check(c.maxSteps >= 0, "--max-steps %d: want 0 or more", c.maxSteps)
	check(c.trainLimit >= 0, "--train-limit %d: want 0 or more", c.trainLimit)
	check(c.workers >= 1, "--workers %d: want at least 1", c.workers)
	if bad != nil {
		return c, errors.New(strings.Join(bad, "; "))
	}

	c.checkpointDir = cmp.Or(getenv("LODE_CHECKPOINT_DIR"), "./ckpt")
	c.outputDir = cmp.Or(getenv("LODE_OUTPUT_DIR"), "./out")
	c.metricsFile = getenv("LODE_METRICS_FILE")
	return c, nil
}

// run is the whole program, with its environment passed in so that tests can run it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	train, test, err := loadMNIST(cfg.data, cfg.trainLimit)
	if err != nil {
		return fmt.Errorf("loading MNIST (--data %s): %w", cfg.data, err)
	}
	t := &trainer{cfg: cfg, train: train, test: test, stdout: stdout, stderr: stderr}
	if err := t.start(); err != nil {
		return err
	}
	if err := t.loop(ctx); err != nil {
		return err
	}
	return t.finish()
}
