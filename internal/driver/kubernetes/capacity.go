package kubernetes

import (
	"fmt"
	"maps"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/poolfile"
	"lode.dev/lode/internal/wire"
)

// Selector says which of a cluster's nodes are a pool's, and with which
// GPU model.
type Selector struct {
	// NodeSelector is what every node of the pool carries.
	NodeSelector map[string]string
	// Models are the GPU models by normalized name. A pool without any
	// offers its nodes' CPUs and memory only.
	Models map[string]poolfile.GPUNodes
}

// Match returns the GPU model of a node of the pool ("" in a pool without
// GPU models); ok is false for a node that is not the pool's. A node that
// two models' selectors match takes the first model by name.
func (s Selector) Match(n *corev1.Node) (model string, ok bool) {
	if !labelsMatch(n.Labels, s.NodeSelector) {
		return "", false
	}
	if len(s.Models) == 0 {
		return "", true
	}
	for _, m := range slices.Sorted(maps.Keys(s.Models)) {
		if labelsMatch(n.Labels, s.Models[m].NodeSelector) {
			return m, true
		}
	}
	return "", false
}

func labelsMatch(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Usable says why a node of the pool cannot take pods now, or "" when it
// can: it must be Ready, not cordoned, and every taint that keeps pods off
// it must be tolerated by the model's tolerations.
func (s Selector) Usable(n *corev1.Node, model string) string {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return "it is not Ready"
	}
	if n.Spec.Unschedulable {
		return "it is cordoned"
	}
	tols := Tolerations(s.Models[model].Tolerations)
	for i := range n.Spec.Taints {
		t := &n.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerated(tols, t) {
			return fmt.Sprintf("its taint %s=%s:%s is not tolerated (add a toleration to the model's tolerations)", t.Key, t.Value, t.Effect)
		}
	}
	return ""
}

func tolerated(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(logr.Discard(), t, false) {
			return true
		}
	}
	return false
}

// Offer is what a node offers Lode.
type Offer struct {
	MilliCPUs   int64
	MemoryBytes int64
	GPUs        int
}

// capacity is the offer as a heartbeat carries it: GPUs one by one.
func (o Offer) capacity(model string) *wire.Capacity {
	c := &wire.Capacity{MilliCPUs: o.MilliCPUs, MemoryBytes: o.MemoryBytes, GPUs: []core.GPU{}}
	for range o.GPUs {
		c.GPUs = append(c.GPUs, core.GPU{Model: model})
	}
	return c
}

// NodeOffer is what a node offers Lode: its allocatable CPUs, memory and
// GPUs (the extended resource gpuResource; none when empty) less what the
// pods bound to it ask for, leaving out the pods Lode counts itself.
// Lode's scheduler subtracts its own tasks from a node's offer, and the
// driver pins every rank's pod to the node its task is on, so a pod of a
// task Lode holds (ours says which) would be counted twice. Everything
// else takes capacity away: other workloads, system pods, and Lode pods
// whose tasks Lode no longer holds (a pod still stopping, or one an
// earlier server left behind). Pods that ended hold nothing.
func NodeOffer(n *corev1.Node, gpuResource string, pods []*corev1.Pod, ours func(*corev1.Pod) bool) Offer {
	alloc := n.Status.Allocatable
	o := Offer{MilliCPUs: alloc.Cpu().MilliValue(), MemoryBytes: alloc.Memory().Value()}
	if gpuResource != "" {
		if q, ok := alloc[corev1.ResourceName(gpuResource)]; ok {
			o.GPUs = int(q.Value())
		}
	}
	for _, p := range pods {
		if p.Spec.NodeName != n.Name || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || ours(p) {
			continue
		}
		req := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
		o.MilliCPUs -= req.Cpu().MilliValue()
		o.MemoryBytes -= req.Memory().Value()
		if gpuResource != "" {
			if q, ok := req[corev1.ResourceName(gpuResource)]; ok {
				o.GPUs -= int(q.Value())
			}
		}
	}
	o.MilliCPUs, o.MemoryBytes, o.GPUs = max(o.MilliCPUs, 0), max(o.MemoryBytes, 0), max(o.GPUs, 0)
	return o
}
