package core

// RetryBudget is how many times a job may be placed again after an attempt
// ends badly, by cause.
type RetryBudget struct {
	OnNodeLost int `json:"on_node_lost"`
	OnError    int `json:"on_error"`
}

// RetryCount is how many of each retry a job has used.
type RetryCount struct {
	NodeLost int `json:"node_lost"`
	Error    int `json:"error"`
}

// JobAfterAttempt decides what becomes of a job when its current attempt ends
// in the given state: it is queued again while its retry budget for that cause
// lasts, and otherwise ends. A job whose cancellation was asked for ends
// cancelled whatever its attempt did, unless the attempt had already
// succeeded. The returned reason says why, for people.
func JobAfterAttempt(ended AttemptState, cancelRequested bool, budget RetryBudget, used RetryCount) (JobState, RetryCount, string) {
	switch {
	case ended == AttemptSucceeded:
		return JobSucceeded, used, "all ranks exited 0"
	case cancelRequested || ended == AttemptCancelled:
		return JobCancelled, used, "cancelled on request"
	case ended == AttemptLost:
		if used.NodeLost < budget.OnNodeLost {
			used.NodeLost++
			return JobQueued, used, "a node was lost; placing again from the last checkpoint"
		}
		return JobFailed, used, "a node was lost and the retries on node loss are used up"
	case ended == AttemptPreempted:
		return JobQueued, used, "preempted; placing again from the last checkpoint"
	default:
		if used.Error < budget.OnError {
			used.Error++
			return JobQueued, used, "a rank failed; retrying from the last checkpoint"
		}
		return JobFailed, used, "a rank exited with an error"
	}
}
