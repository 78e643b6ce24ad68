package kubernetes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"lode.dev/lode/internal/poolfile"
)

var testSelector = Selector{
	NodeSelector: map[string]string{"pool": "gpu"},
	Models: map[string]poolfile.GPUNodes{
		"h100": {NodeSelector: map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, ResourceName: "nvidia.com/gpu",
			Tolerations: []poolfile.Toleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}}},
		"a100": {NodeSelector: map[string]string{"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, ResourceName: "nvidia.com/gpu"},
	},
}

func node(name string, labels map[string]string, change func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"),
				"nvidia.com/gpu": resource.MustParse("8"),
			},
		},
	}
	if change != nil {
		change(n)
	}
	return n
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name   string
		sel    Selector
		labels map[string]string
		model  string
		ok     bool
	}{
		{"h100", testSelector, map[string]string{"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "h100", true},
		{"a100 on GKE", testSelector, map[string]string{"pool": "gpu", "cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, "a100", true},
		{"not the pool's", testSelector, map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "", false},
		{"no known model", testSelector, map[string]string{"pool": "gpu", "nvidia.com/gpu.product": "Tesla-T4"}, "", false},
		{"both: first by name", testSelector, map[string]string{"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
			"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}, "a100", true},
		{"CPU pool", Selector{NodeSelector: map[string]string{"pool": "cpu"}}, map[string]string{"pool": "cpu"}, "", true},
		{"CPU pool, other node", Selector{NodeSelector: map[string]string{"pool": "cpu"}}, map[string]string{"pool": "gpu"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, ok := tt.sel.Match(node("n", tt.labels, nil))
			if model != tt.model || ok != tt.ok {
				t.Errorf("Match = %q, %v; want %q, %v", model, ok, tt.model, tt.ok)
			}
		})
	}
}

func TestUsable(t *testing.T) {
	taint := func(key string, effect corev1.TaintEffect) func(*corev1.Node) {
		return func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: "present", Effect: effect})
		}
	}
	tests := []struct {
		name   string
		model  string
		change func(*corev1.Node)
		want   string // a part of the reason; empty: usable
	}{
		{"ready", "h100", nil, ""},
		{"not ready", "h100", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }, "not Ready"},
		{"cordoned", "h100", func(n *corev1.Node) { n.Spec.Unschedulable = true }, "cordoned"},
		{"tolerated taint", "h100", taint("nvidia.com/gpu", corev1.TaintEffectNoSchedule), ""},
		{"a soft taint", "a100", taint("spot", corev1.TaintEffectPreferNoSchedule), ""},
		{"untolerated taint", "a100", taint("nvidia.com/gpu", corev1.TaintEffectNoSchedule), "nvidia.com/gpu=present:NoSchedule"},
		{"AKS's GPU taint", "h100", taint("sku", corev1.TaintEffectNoSchedule), "sku=present:NoSchedule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testSelector.Usable(node("n", nil, tt.change), tt.model)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("Usable = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNodeOffer(t *testing.T) {
	n := node("node-a", nil, nil)
	gpuPod := func(name, nodeName string, gpus string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")},
				Limits:   corev1.ResourceList{"nvidia.com/gpu": resource.MustParse(gpus)},
			}}}},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	// Extended resources are asked for by limit; the API server copies the limit to the
	// request, which is what PodRequests reads.
	withRequest := func(p *corev1.Pod) *corev1.Pod {
		c := &p.Spec.Containers[0]
		c.Resources.Requests["nvidia.com/gpu"] = c.Resources.Limits["nvidia.com/gpu"]
		return p
	}
	ours := func(p *corev1.Pod) bool { return strings.HasPrefix(p.Name, "lode-") }
	tests := []struct {
		name string
		pods []*corev1.Pod
		want Offer
	}{
		{"empty", nil, Offer{MilliCPUs: 64000, MemoryBytes: 512 << 30, GPUs: 8}},
		{"another workload", []*corev1.Pod{withRequest(gpuPod("infer", "node-a", "3", corev1.PodRunning))},
			Offer{MilliCPUs: 62000, MemoryBytes: 504 << 30, GPUs: 5}},
		{"pending on the node", []*corev1.Pod{withRequest(gpuPod("infer", "node-a", "3", corev1.PodPending))},
			Offer{MilliCPUs: 62000, MemoryBytes: 504 << 30, GPUs: 5}},
		{"ended", []*corev1.Pod{withRequest(gpuPod("infer", "node-a", "3", corev1.PodSucceeded)), withRequest(gpuPod("x", "node-a", "1", corev1.PodFailed))},
			Offer{MilliCPUs: 64000, MemoryBytes: 512 << 30, GPUs: 8}},
		{"another node", []*corev1.Pod{withRequest(gpuPod("infer", "node-b", "3", corev1.PodRunning))},
			Offer{MilliCPUs: 64000, MemoryBytes: 512 << 30, GPUs: 8}},
		{"Lode's own, counted by Lode", []*corev1.Pod{withRequest(gpuPod("lode-att-1-0", "node-a", "8", corev1.PodRunning))},
			Offer{MilliCPUs: 64000, MemoryBytes: 512 << 30, GPUs: 8}},
		{"more asked than there is", []*corev1.Pod{withRequest(gpuPod("a", "node-a", "6", corev1.PodRunning)), withRequest(gpuPod("b", "node-a", "6", corev1.PodRunning))},
			Offer{MilliCPUs: 60000, MemoryBytes: 496 << 30, GPUs: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NodeOffer(n, "nvidia.com/gpu", tt.pods, ours)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NodeOffer (-want +got):\n%s", diff)
			}
		})
	}
	if got := NodeOffer(n, "", nil, ours); got.GPUs != 0 {
		t.Errorf("a node of a pool without GPU models offers %d GPUs, want 0", got.GPUs)
	}
}
