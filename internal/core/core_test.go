package core

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1024", want: 1024},
		{in: "32GiB", want: 32 << 30},
		{in: "512 MiB", want: 512 << 20},
		{in: "2GB", want: 2_000_000_000},
		{in: "1.5Gi", want: 3 << 29},
		{in: "12 parsecs", bad: true},
		{in: "", bad: true},
		{in: "-1GiB", bad: true},
		{in: "99999999999TiB", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrSize) {
				t.Errorf("ParseBytes(%q) = %d, %v; want ErrSize", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseGPUs(t *testing.T) {
	got, err := ParseGPUs("2xrtx3090, 1xNVIDIA A100")
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{{Model: "rtx3090"}, {Model: "rtx3090"}, {Model: "a100"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"0xa100", "2x", "3x ", "-1xa100"} {
		if _, err := ParseGPUs(bad); err == nil {
			t.Errorf("ParseGPUs(%q): want an error", bad)
		}
	}
}

func TestJobAfterAttempt(t *testing.T) {
	budget := RetryBudget{OnNodeLost: 1, OnError: 1}
	tests := []struct {
		name    string
		ended   AttemptState
		cancel  bool
		used    RetryCount
		want    JobState
		wantUse RetryCount
	}{
		{"success", AttemptSucceeded, false, RetryCount{}, JobSucceeded, RetryCount{}},
		{"success beats a late cancel", AttemptSucceeded, true, RetryCount{}, JobSucceeded, RetryCount{}},
		{"cancel", AttemptCancelled, false, RetryCount{}, JobCancelled, RetryCount{}},
		{"lost while cancelling", AttemptLost, true, RetryCount{}, JobCancelled, RetryCount{}},
		{"lost, budget left", AttemptLost, false, RetryCount{}, JobQueued, RetryCount{NodeLost: 1}},
		{"lost, budget used", AttemptLost, false, RetryCount{NodeLost: 1}, JobFailed, RetryCount{NodeLost: 1}},
		{"failed, budget left", AttemptFailed, false, RetryCount{NodeLost: 1}, JobQueued, RetryCount{NodeLost: 1, Error: 1}},
		{"failed, budget used", AttemptFailed, false, RetryCount{Error: 1}, JobFailed, RetryCount{Error: 1}},
		{"preempted costs nothing", AttemptPreempted, false, RetryCount{}, JobQueued, RetryCount{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, use, reason := JobAfterAttempt(tt.ended, tt.cancel, budget, tt.used)
			if got != tt.want || use != tt.wantUse || reason == "" {
				t.Errorf("got %s %+v %q; want %s %+v and a reason", got, use, reason, tt.want, tt.wantUse)
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	jobStates := []JobState{JobQueued, JobPlaced, JobRunning, JobSucceeded, JobFailed, JobCancelled}
	allowed := map[[2]JobState]bool{}
	for from, tos := range jobNext {
		for _, to := range tos {
			allowed[[2]JobState{from, to}] = true
		}
	}
	for _, from := range jobStates {
		for _, to := range jobStates {
			err := CheckJobTransition(from, to)
			if allowed[[2]JobState{from, to}] != (err == nil) {
				t.Errorf("job %s -> %s: err = %v", from, to, err)
			}
			if err != nil && !errors.Is(err, ErrTransition) {
				t.Errorf("job %s -> %s: %v does not wrap ErrTransition", from, to, err)
			}
			if from.Terminal() && err == nil {
				t.Errorf("job %s -> %s: a terminal state moved", from, to)
			}
		}
	}
	if err := CheckAttemptTransition(AttemptSucceeded, AttemptRunning); !errors.Is(err, ErrTransition) {
		t.Errorf("attempt succeeded -> running: %v, want ErrTransition", err)
	}
}

func TestAttemptOutcome(t *testing.T) {
	ok := TaskStatus{State: TaskExited}
	tests := []struct {
		name  string
		tasks []TaskStatus
		want  AttemptState
	}{
		{"all assigned", []TaskStatus{{State: TaskAssigned}, {State: TaskAssigned}}, AttemptPlaced},
		{"one running", []TaskStatus{{State: TaskRunning}, {State: TaskAssigned}}, AttemptRunning},
		{"one done, one running", []TaskStatus{ok, {State: TaskRunning}}, AttemptRunning},
		{"all done", []TaskStatus{ok, ok}, AttemptSucceeded},
		{"one failed", []TaskStatus{{State: TaskExited, ExitCode: 3}, {State: TaskRunning}}, AttemptFailed},
		{"one lost", []TaskStatus{ok, {State: TaskLost}}, AttemptLost},
		{"killed", []TaskStatus{{State: TaskKilled}, {State: TaskRunning}}, AttemptCancelled},
	}
	for _, tt := range tests {
		if got := AttemptOutcome(AttemptPlaced, tt.tasks); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	if got := AttemptOutcome(AttemptLost, []TaskStatus{ok}); got != AttemptLost {
		t.Errorf("a terminal attempt changed to %s", got)
	}
}

func TestNewIDIsUniqueAndPrefixed(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("job")
		if !strings.HasPrefix(id, "job-") || seen[id] {
			t.Fatalf("bad or repeated ID %q", id)
		}
		seen[id] = true
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1", "32GiB", "1.5 TB", "", "x", "9e99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err == nil && n < 0 {
			t.Errorf("ParseBytes(%q) = %d, a negative size", s, n)
		}
	})
}

func FuzzParseGPUs(f *testing.F) {
	for _, s := range []string{"2xrtx3090", "1xa100,1xrtx4090", "", "x", "1024xh100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		gpus, err := ParseGPUs(s)
		if err == nil && len(gpus) > 0 {
			for _, g := range gpus {
				if g.Model == "" {
					t.Errorf("ParseGPUs(%q): empty model", s)
				}
			}
		}
	})
}

func TestCheckTaskTransition(t *testing.T) {
	tests := []struct {
		from     TaskState
		fromExit int
		to       TaskState
		exit     int
		changed  bool
		bad      bool
	}{
		{from: TaskAssigned, to: TaskRunning, changed: true},
		{from: TaskRunning, to: TaskRunning},
		{from: TaskRunning, to: TaskExited, exit: 3, changed: true},
		{from: TaskAssigned, to: TaskLost, changed: true},
		{from: TaskExited, fromExit: 3, to: TaskExited, exit: 3},
		{from: TaskExited, fromExit: 3, to: TaskExited, exit: 0, bad: true},
		{from: TaskExited, to: TaskRunning, bad: true},
		{from: TaskKilled, to: TaskExited, bad: true},
		{from: TaskRunning, to: TaskAssigned, bad: true},
		{from: TaskRunning, to: "bogus", bad: true},
	}
	for _, tt := range tests {
		changed, err := CheckTaskTransition(tt.from, tt.fromExit, tt.to, tt.exit)
		if tt.bad != (err != nil) || changed != tt.changed {
			t.Errorf("%s(%d) -> %s(%d): changed %v, err %v", tt.from, tt.fromExit, tt.to, tt.exit, changed, err)
		}
		if err != nil && !errors.Is(err, ErrTransition) {
			t.Errorf("%v does not wrap ErrTransition", err)
		}
	}
}
