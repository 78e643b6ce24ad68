package core

import (
	"errors"
	"fmt"
)

// ErrTransition is returned for a state change the lifecycle does not allow.
var ErrTransition = errors.New("core: impossible state transition")

// JobState is where a job is in its life. A job moves through attempts:
// queued -> placed -> running -> succeeded | failed | cancelled, and back to
// queued when an attempt is lost or fails with retries left.
type JobState string

const (
	JobQueued    JobState = "queued"
	JobPlaced    JobState = "placed"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Terminal reports whether the job has ended for good.
func (s JobState) Terminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

var jobNext = map[JobState][]JobState{
	JobQueued:  {JobPlaced, JobCancelled, JobFailed},
	JobPlaced:  {JobRunning, JobQueued, JobSucceeded, JobFailed, JobCancelled},
	JobRunning: {JobQueued, JobSucceeded, JobFailed, JobCancelled},
}

// CheckJobTransition returns an error wrapping ErrTransition unless a job may
// move from one state to the other.
func CheckJobTransition(from, to JobState) error {
	for _, s := range jobNext[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("%w: job %s -> %s", ErrTransition, from, to)
}

// AttemptState is where one placement of a job's gang is.
type AttemptState string

const (
	AttemptPlaced    AttemptState = "placed"
	AttemptRunning   AttemptState = "running"
	AttemptSucceeded AttemptState = "succeeded"
	AttemptFailed    AttemptState = "failed"
	AttemptLost      AttemptState = "lost"
	AttemptPreempted AttemptState = "preempted"
	AttemptCancelled AttemptState = "cancelled"
)

// Terminal reports whether the attempt has ended.
func (s AttemptState) Terminal() bool {
	return s != AttemptPlaced && s != AttemptRunning
}

var attemptNext = map[AttemptState][]AttemptState{
	AttemptPlaced:  {AttemptRunning, AttemptSucceeded, AttemptFailed, AttemptLost, AttemptPreempted, AttemptCancelled},
	AttemptRunning: {AttemptSucceeded, AttemptFailed, AttemptLost, AttemptPreempted, AttemptCancelled},
}

// CheckAttemptTransition returns an error wrapping ErrTransition unless an
// attempt may move from one state to the other.
func CheckAttemptTransition(from, to AttemptState) error {
	for _, s := range attemptNext[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("%w: attempt %s -> %s", ErrTransition, from, to)
}

// TaskState is where one rank of an attempt is on its node.
type TaskState string

const (
	TaskAssigned TaskState = "assigned" // placed on a node, not yet started by its agent
	TaskRunning  TaskState = "running"
	TaskExited   TaskState = "exited" // the process ended; see its exit code
	TaskLost     TaskState = "lost"   // its node stopped answering
	TaskKilled   TaskState = "killed" // stopped on the control plane's word
)

// Terminal reports whether the task has ended.
func (s TaskState) Terminal() bool { return s != TaskAssigned && s != TaskRunning }

// CheckTaskTransition says whether a task may move as its agent reports:
// agents report running, exited, killed or lost; a task that ended cannot
// move again; a report repeated (running again, or the same end with the same
// exit code) is no change. The error wraps ErrTransition.
func CheckTaskTransition(from TaskState, fromExit int, to TaskState, exitCode int) (changed bool, err error) {
	switch to {
	case TaskRunning, TaskExited, TaskKilled, TaskLost:
	default:
		return false, fmt.Errorf("%w: task %s -> %q", ErrTransition, from, to)
	}
	if from.Terminal() {
		if from == to && fromExit == exitCode {
			return false, nil
		}
		return false, fmt.Errorf("%w: task %s -> %s", ErrTransition, from, to)
	}
	return !(from == TaskRunning && to == TaskRunning), nil
}

// AttemptOutcome derives an attempt's state from the states and exit codes of
// its ranks: it succeeds when every rank exited 0, fails as soon as one rank
// exited otherwise, is lost when a rank's node was lost, and is running while
// any rank runs. The attempt's current state wins when it is already terminal.
func AttemptOutcome(current AttemptState, tasks []TaskStatus) AttemptState {
	if current.Terminal() {
		return current
	}
	running, done := false, 0
	for _, t := range tasks {
		switch t.State {
		case TaskLost:
			return AttemptLost
		case TaskExited:
			if t.ExitCode != 0 {
				return AttemptFailed
			}
			done++
		case TaskKilled:
			return AttemptCancelled
		case TaskRunning:
			running = true
		}
	}
	if len(tasks) > 0 && done == len(tasks) {
		return AttemptSucceeded
	}
	if running || done > 0 {
		return AttemptRunning
	}
	return current
}

// TaskStatus is the part of a task that decides its attempt's outcome.
type TaskStatus struct {
	State    TaskState
	ExitCode int
}
