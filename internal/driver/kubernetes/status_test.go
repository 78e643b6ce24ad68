package kubernetes

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"lode.dev/lode/internal/core"
)

// pod makes a rank's pod on node-a in a phase; change edits it further.
func pod(phase corev1.PodPhase, change func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "node-a"}, Status: corev1.PodStatus{Phase: phase}}
	if change != nil {
		change(p)
	}
	return p
}

func terminated(code int32, reason string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}}
	}
}

func waiting(container, reason string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		st := []corev1.ContainerStatus{{Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
		if container == installName {
			p.Status.InitContainerStatuses = st
		} else {
			p.Status.ContainerStatuses = st
		}
	}
}

func TestSee(t *testing.T) {
	now := metav1.Now()
	tests := []struct {
		name string
		pod  *corev1.Pod
		want core.TaskState
		code int
		why  string // a part of Why
		bad  bool
	}{
		{"no pod", nil, core.TaskAssigned, 0, "no pod", false},
		{"gated", pod(corev1.PodPending, func(p *corev1.Pod) {
			p.Spec.NodeName, p.Spec.SchedulingGates = "", []corev1.PodSchedulingGate{{Name: PlacementGate}}
		}), core.TaskAssigned, 0, "pinned", false},
		{"unschedulable", pod(corev1.PodPending, func(p *corev1.Pod) {
			p.Spec.NodeName = ""
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}}
		}), core.TaskAssigned, 0, "Insufficient nvidia.com/gpu", false},
		{"job image not pulled", pod(corev1.PodPending, waiting(containerName, "ImagePullBackOff")), core.TaskAssigned, 0, "job's image", true},
		{"lode image not pulled", pod(corev1.PodPending, waiting(installName, "ErrImagePull")), core.TaskAssigned, 0, "lode image", false},
		{"running", pod(corev1.PodRunning, nil), core.TaskRunning, 0, "node-a", false},
		{"succeeded", pod(corev1.PodSucceeded, terminated(0, "Completed")), core.TaskExited, 0, "succeeded", false},
		{"failed", pod(corev1.PodFailed, terminated(3, "Error")), core.TaskExited, 3, "exit code 3", false},
		{"out of memory", pod(corev1.PodFailed, terminated(137, "OOMKilled")), core.TaskExited, 137, "OOMKilled", false},
		{"evicted", pod(corev1.PodFailed, func(p *corev1.Pod) {
			p.Status.Reason, p.Status.Message = "Evicted", "The node was low on resource: memory."
			terminated(137, "Error")(p)
		}), core.TaskLost, 0, "low on resource", false},
		{"preempted", pod(corev1.PodFailed, func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler"}}
			terminated(143, "Error")(p)
		}), core.TaskLost, 0, "PreemptionByScheduler", false},
		{"runner not installed", pod(corev1.PodFailed, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: installName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127}}}}
		}), core.TaskLost, 0, "runner could not be installed", false},
		{"refused by the kubelet", pod(corev1.PodFailed, func(p *corev1.Pod) { p.Status.Reason = "OutOfnvidia.com/gpu" }),
			core.TaskLost, 0, "OutOfnvidia.com/gpu", false},
		{"node deleted", pod(corev1.PodRunning, func(p *corev1.Pod) { p.Spec.NodeName = "gone" }), core.TaskLost, 0, "gone was deleted", false},
		{"being deleted", pod(corev1.PodRunning, func(p *corev1.Pod) { p.DeletionTimestamp = &now }), core.TaskLost, 0, "being deleted", false},
		{"ended, then deleted", pod(corev1.PodSucceeded, func(p *corev1.Pod) { p.DeletionTimestamp = &now }), core.TaskExited, 0, "succeeded", false},
	}
	exists := func(n string) bool { return n != "gone" }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := See(tt.pod, exists)
			if got.State != tt.want || got.ExitCode != tt.code || got.BadImage != tt.bad || !strings.Contains(got.Why, tt.why) {
				t.Errorf("See = %+v; want %s, exit %d, bad image %v, saying %q", got, tt.want, tt.code, tt.bad, tt.why)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	const timeout = 10 * time.Minute
	exited3 := Seen{State: core.TaskExited, ExitCode: 3, Why: "exit code 3"}
	lost := Seen{State: core.TaskLost, Why: "evicted"}
	waitingPod := Seen{State: core.TaskAssigned, Why: "its pod cannot be scheduled"}
	badImage := Seen{State: core.TaskAssigned, Why: "the job's image cannot be pulled", BadImage: true}
	tests := []struct {
		name   string
		told   core.TaskState
		seen   Seen
		waited time.Duration
		want   Report
	}{
		{"waiting", core.TaskAssigned, waitingPod, time.Minute, Report{}},
		{"starts", core.TaskAssigned, Seen{State: core.TaskRunning}, 0, Report{Running: true}},
		{"runs on", core.TaskRunning, Seen{State: core.TaskRunning}, time.Hour, Report{}},
		{"ends", core.TaskRunning, exited3, time.Hour, Report{End: &exited3, Drop: true}},
		{"ended unseen running", core.TaskAssigned, exited3, 0, Report{Running: true, End: &exited3, Drop: true}},
		{"lost while running: dropped", core.TaskRunning, lost, time.Hour, Report{Drop: true}},
		{"lost before running: reported", core.TaskAssigned, lost, 0, Report{End: &lost, Drop: true}},
		{"ran, then no pod", core.TaskRunning, Seen{State: core.TaskAssigned, Why: "no pod yet"}, time.Hour, Report{Drop: true}},
		{"already over", core.TaskExited, lost, time.Hour, Report{}},
		{"pending too long", core.TaskAssigned, waitingPod, timeout + time.Second, Report{
			End: &Seen{State: core.TaskLost, Why: "its pod did not start within 10m0s (its pod cannot be scheduled); its capacity is given back"}, Drop: true, Stuck: true}},
		{"bad image too long", core.TaskAssigned, badImage, timeout + time.Second, Report{
			End: &Seen{State: core.TaskExited, ExitCode: 1, Why: "the job's image cannot be pulled, for 10m0s"}, Drop: true}},
		{"bad image, still time", core.TaskAssigned, badImage, timeout - time.Second, Report{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.told, tt.seen, tt.waited, timeout)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRankIndex(t *testing.T) {
	tests := []struct {
		annotations, labels map[string]string
		want                int
		ok                  bool
	}{
		{map[string]string{"batch.kubernetes.io/job-completion-index": "3"}, nil, 3, true},
		{nil, map[string]string{"batch.kubernetes.io/job-completion-index": "2"}, 2, true},
		{nil, nil, 0, false},
		{map[string]string{"batch.kubernetes.io/job-completion-index": "x"}, nil, 0, false},
		{map[string]string{"batch.kubernetes.io/job-completion-index": "-1"}, nil, -1, false},
	}
	for _, tt := range tests {
		got, ok := RankIndex(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tt.annotations, Labels: tt.labels}})
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("RankIndex(%v, %v) = %d, %v; want %d, %v", tt.annotations, tt.labels, got, ok, tt.want, tt.ok)
		}
	}
}
