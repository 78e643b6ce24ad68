package kubernetes

import (
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"lode.dev/lode/internal/core"
)

// Seen is a rank as the cluster shows it: waiting to start (assigned),
// running, exited with a code, or lost to something that was not the job's
// doing (its node went away, it was evicted, it could not be started).
type Seen struct {
	State    core.TaskState
	ExitCode int
	// Why says, for people, what the cluster showed.
	Why string
	// BadImage is set while the job's own image cannot be pulled: a
	// rank that times out so has a broken job, not a broken pool.
	BadImage bool
}

// See reads a rank's pod. pod is nil when the rank has none (not created
// yet, or deleted); nodeExists says whether a node is still in the
// cluster.
func See(pod *corev1.Pod, nodeExists func(string) bool) Seen {
	if pod == nil {
		return Seen{State: core.TaskAssigned, Why: "no pod yet"}
	}
	st := pod.Status
	if st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed {
		if pod.DeletionTimestamp != nil {
			return Seen{State: core.TaskLost, Why: "its pod is being deleted (evicted, drained or deleted by hand)"}
		}
		if pod.Spec.NodeName != "" && !nodeExists(pod.Spec.NodeName) {
			return Seen{State: core.TaskLost, Why: "its node " + pod.Spec.NodeName + " was deleted"}
		}
	}
	switch st.Phase {
	case corev1.PodRunning:
		return Seen{State: core.TaskRunning, Why: "its pod runs on " + pod.Spec.NodeName}
	case corev1.PodSucceeded:
		return Seen{State: core.TaskExited, Why: "its pod succeeded"}
	case corev1.PodFailed:
		if disrupted(pod) {
			return Seen{State: core.TaskLost, Why: "its pod was " + failure(pod)}
		}
		if cs := containerStatus(st.ContainerStatuses, containerName); cs != nil && cs.State.Terminated != nil {
			t := cs.State.Terminated
			why := "its pod failed: exit code " + strconv.Itoa(int(t.ExitCode))
			if t.Reason != "" && t.Reason != "Error" {
				why += " (" + t.Reason + ")"
			}
			return Seen{State: core.TaskExited, ExitCode: int(t.ExitCode), Why: why}
		}
		if cs := containerStatus(st.InitContainerStatuses, installName); cs != nil && cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 {
			return Seen{State: core.TaskLost, Why: fmt.Sprintf("the runner could not be installed: init container %s exited %d (is the pool's image a lode image?)",
				installName, cs.State.Terminated.ExitCode)}
		}
		return Seen{State: core.TaskLost, Why: "its pod failed before its command ran: " + failure(pod)}
	}
	// Pending (or Unknown: the node stopped reporting; its lease tells).
	s := Seen{State: core.TaskAssigned, Why: "its pod is pending"}
	if len(pod.Spec.SchedulingGates) > 0 {
		s.Why = "its pod waits to be pinned to its node"
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
			s.Why = "its pod cannot be scheduled: " + c.Message
		}
	}
	if cs := containerStatus(st.InitContainerStatuses, installName); cs != nil && cs.State.Waiting != nil && pullFailed(cs.State.Waiting.Reason) {
		s.Why = "the pool's lode image cannot be pulled: " + cs.State.Waiting.Reason + " " + cs.State.Waiting.Message
	}
	if cs := containerStatus(st.ContainerStatuses, containerName); cs != nil && cs.State.Waiting != nil {
		switch w := cs.State.Waiting; {
		case pullFailed(w.Reason):
			s.BadImage = true
			s.Why = "the job's image cannot be pulled: " + w.Reason + " " + w.Message
		case w.Reason == "", w.Reason == "ContainerCreating", w.Reason == "PodInitializing":
		default:
			s.Why = "its container waits: " + w.Reason + " " + w.Message
		}
	}
	return s
}

func pullFailed(reason string) bool {
	return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName"
}

// disrupted reports whether Kubernetes ended the pod for reasons of its
// own: eviction, preemption by a pod of higher priority, a node shutting
// down or being drained.
func disrupted(pod *corev1.Pod) bool {
	if pod.Status.Reason == "Evicted" || pod.Status.Reason == "Preempting" || pod.Status.Reason == "Shutdown" ||
		pod.Status.Reason == "Terminated" || pod.Status.Reason == "NodeLost" {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func failure(pod *corev1.Pod) string {
	st := pod.Status
	switch {
	case st.Reason != "" && st.Message != "":
		return st.Reason + ": " + st.Message
	case st.Reason != "":
		return st.Reason
	case st.Message != "":
		return st.Message
	}
	for _, c := range st.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return c.Reason + ": " + c.Message
		}
	}
	return "no reason given"
}

func containerStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// RankIndex is the completion index of an Indexed Job's pod: its rank.
func RankIndex(pod *corev1.Pod) (int, bool) {
	v, ok := pod.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = pod.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 0
}

// Report is what the driver tells the server about a rank, after what it
// told it before.
type Report struct {
	// Running and End are reports to send, in that order; End is an
	// exited or lost state. Running is sent before an end the server has
	// not seen the rank start for: a pod that ended ran.
	Running bool
	End     *Seen
	// Drop takes the rank off its node's heartbeats. For a rank the
	// server holds running, that is how it learns the rank is lost: a
	// node that no longer runs a running task has lost it.
	Drop bool
	// Stuck says the rank's node did not start it in time.
	Stuck bool
}

// Decide says what to report of a rank the server last heard of as told
// (assigned, running, or an end), now that the cluster shows seen. waited
// is how long the rank has waited to start; a rank that waited past
// timeout gives its capacity back: its job is placed again, at the cost
// of an error retry only when its own image is at fault.
func Decide(told core.TaskState, seen Seen, waited, timeout time.Duration) Report {
	if told.Terminal() {
		return Report{}
	}
	switch seen.State {
	case core.TaskRunning:
		return Report{Running: told == core.TaskAssigned}
	case core.TaskExited:
		return Report{Running: told == core.TaskAssigned, End: &seen, Drop: true}
	case core.TaskLost:
		if told == core.TaskRunning {
			return Report{Drop: true}
		}
		return Report{End: &seen, Drop: true}
	}
	// Waiting.
	if told == core.TaskRunning {
		// It ran, and now has no pod or a pending one: it was lost.
		return Report{Drop: true}
	}
	if timeout > 0 && waited > timeout {
		if seen.BadImage {
			end := Seen{State: core.TaskExited, ExitCode: 1, Why: fmt.Sprintf("%s, for %v", seen.Why, timeout)}
			return Report{End: &end, Drop: true}
		}
		end := Seen{State: core.TaskLost, Why: fmt.Sprintf("its pod did not start within %v (%s); its capacity is given back", timeout, seen.Why)}
		return Report{End: &end, Drop: true, Stuck: true}
	}
	return Report{}
}
