// Command trainer is the job the chaos suite runs: it counts steps to a
// target, checkpoints its state atomically every few steps, resumes from the
// checkpoint it finds, and writes the sum of its step numbers (a function of
// the target alone) as its result.
//
// Its output is what the suite reads back: "start step 0 attempt=A" or
// "resumed from step N attempt=A" first, then "step N attempt=A" for every
// step and "checkpoint step N attempt=A" for every checkpoint, and
// "done sum=S attempt=A" at the end.
//
// It records its process, and a helper child that only waits, in the
// directory $CHAOS_PIDS, so that the suite can check that nothing a task
// started outlives it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// State is what a checkpoint holds.
type State struct {
	Job  string `json:"job"`
	Step int    `json:"step"`
	Sum  int64  `json:"sum"`
}

// StateFile is the checkpoint's name inside $LODE_CHECKPOINT_DIR.
const StateFile = "state.json"

func main() {
	target := flag.Int("target", 40, "steps to count to")
	step := flag.Duration("step", 40*time.Millisecond, "time one step takes")
	every := flag.Int("every", 5, "steps between checkpoints")
	helper := flag.Bool("helper", false, "only wait (the child the trainer starts)")
	flag.Parse()
	if *helper {
		record("helper")
		// Bounded, so that a leak found by the suite cannot outlive it
		// for long.
		time.Sleep(10 * time.Minute)
		return
	}
	os.Exit(run(*target, *step, *every))
}

func run(target int, stepTime time.Duration, every int) int {
	job, attempt := os.Getenv("LODE_JOB_ID"), os.Getenv("LODE_ATTEMPT")
	ckptDir, outDir := os.Getenv("LODE_CHECKPOINT_DIR"), os.Getenv("LODE_OUTPUT_DIR")
	if ckptDir == "" || outDir == "" || job == "" {
		fmt.Fprintln(os.Stderr, "trainer: LODE_JOB_ID, LODE_CHECKPOINT_DIR and LODE_OUTPUT_DIR must be set")
		return 2
	}
	record("trainer")
	if self, err := os.Executable(); err == nil {
		h := exec.Command(self, "-helper")
		if err := h.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "trainer: starting the helper:", err)
			return 2
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	st, err := load(ckptDir, job)
	if err != nil {
		fmt.Fprintf(os.Stderr, "trainer: %v\n", err)
		return 3
	}
	if st.Step == 0 {
		fmt.Printf("start step 0 attempt=%s\n", attempt)
	} else {
		fmt.Printf("resumed from step %d attempt=%s\n", st.Step, attempt)
	}
	metrics := openMetrics()
	tick := time.NewTicker(stepTime)
	defer tick.Stop()
	for st.Step < target {
		select {
		case <-term:
			// A graceful stop: keep what was done.
			if err := save(ckptDir, st); err == nil {
				fmt.Printf("checkpoint step %d attempt=%s\n", st.Step, attempt)
			}
			fmt.Printf("stopped at step %d attempt=%s\n", st.Step, attempt)
			return 143
		case <-tick.C:
		}
		st.Step++
		st.Sum += int64(st.Step)
		fmt.Printf("step %d attempt=%s\n", st.Step, attempt)
		if metrics != nil {
			fmt.Fprintf(metrics, "{\"step\":%d,\"attempt\":%q}\n", st.Step, attempt)
		}
		if st.Step%every == 0 || st.Step == target {
			if err := save(ckptDir, st); err != nil {
				fmt.Fprintf(os.Stderr, "trainer: checkpoint: %v\n", err)
				return 4
			}
			fmt.Printf("checkpoint step %d attempt=%s\n", st.Step, attempt)
		}
	}
	if err := writeAtomic(filepath.Join(outDir, "result"), []byte(fmt.Sprintf("%d\n", st.Sum))); err != nil {
		fmt.Fprintf(os.Stderr, "trainer: result: %v\n", err)
		return 4
	}
	fmt.Printf("done sum=%d attempt=%s\n", st.Sum, attempt)
	return 0
}

// load reads the checkpoint, or a fresh state when there is none. A
// checkpoint of another job, or one whose sum does not match its step, is
// an error: resuming from it would give a wrong result.
func load(dir, job string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Job: job}, nil
	}
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("corrupt checkpoint: %v", err)
	}
	if st.Job != job {
		return State{}, fmt.Errorf("corrupt checkpoint: it belongs to job %q", st.Job)
	}
	if want := int64(st.Step) * int64(st.Step+1) / 2; st.Sum != want || st.Step < 0 {
		return State{}, fmt.Errorf("corrupt checkpoint: step %d with sum %d, want %d", st.Step, st.Sum, want)
	}
	return st, nil
}

func save(dir string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, StateFile), b)
}

// writeAtomic writes a file under a temporary name and renames it into
// place, so that a reader sees the old content or the new, never a part.
func writeAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func openMetrics() *os.File {
	p := os.Getenv("LODE_METRICS_FILE")
	if p == "" {
		return nil
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil
	}
	return f
}

// record writes this process's PID and start time (which tells it from a
// later process that reuses the PID) into $CHAOS_PIDS.
func record(role string) {
	dir := os.Getenv("CHAOS_PIDS")
	if dir == "" {
		return
	}
	pid := os.Getpid()
	start, err := StartTime(pid)
	if err != nil {
		return
	}
	name := fmt.Sprintf("%s-a%s-%s-%d", os.Getenv("LODE_JOB_ID"), os.Getenv("LODE_ATTEMPT"), role, pid)
	_ = os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o644)
}

// StartTime returns field 22 of /proc/PID/stat: when the process started,
// in clock ticks since boot.
func StartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f[19], nil
}
