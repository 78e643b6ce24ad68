package kubetest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestKubernetesClusterStarts runs a batch/v1 Job that asks for a GPU on the fake nodes to
// completion, then adds and loses a node: what the Kubernetes driver's tests build on.
func TestKubernetesClusterStarts(t *testing.T) {
	c := Start(t)

	got := c.Kubectl(t, "get", "nodes", "-l", GPUProductLabel+"="+DefaultGPUProduct,
		"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.allocatable.nvidia\.com/gpu} {end}`)
	if want := "gpu-node-0=8 gpu-node-1=8"; strings.TrimSpace(got) != want {
		t.Fatalf("GPU nodes: got %q, want %q", got, want)
	}

	c.Apply(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: gpu-smoke
  namespace: default
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector:
        %s: %s
      containers:
      - name: train
        image: lode.dev/trainer:test
        resources:
          limits:
            nvidia.com/gpu: 1
`, GPUProductLabel, DefaultGPUProduct))
	start := time.Now()
	waitJob(t, c, "gpu-smoke", 60*time.Second)
	t.Logf("the GPU job succeeded in %v", time.Since(start).Round(time.Millisecond))
	node := c.Kubectl(t, "get", "pods", "-l", "job-name=gpu-smoke", "-o", "jsonpath={.items[0].spec.nodeName}")
	if !strings.HasPrefix(node, "gpu-node-") {
		t.Errorf("the job's pod ran on %q, want a gpu-node-N", node)
	}

	c.AddNodes(t, Node{Name: "a100-0", GPUs: 4, Product: "NVIDIA-A100-SXM4-80GB"})
	if got := c.Kubectl(t, "get", "node", "a100-0", "-o", `jsonpath={.status.allocatable.nvidia\.com/gpu}`); got != "4" {
		t.Errorf("a100-0 allocatable GPUs: got %q, want 4", got)
	}
	c.DeleteNodes(t, "a100-0")
	if got := c.Kubectl(t, "get", "nodes", "-o", "name"); strings.Contains(got, "a100-0") {
		t.Errorf("a100-0 is still listed after its deletion:\n%s", got)
	}
}

// waitJob polls the Job until it succeeds, failing as soon as it fails or the deadline passes.
func waitJob(t *testing.T, c *Cluster, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for tick := time.NewTicker(100 * time.Millisecond); ; <-tick.C {
		status := c.Kubectl(t, "get", "job", name, "-o",
			`jsonpath={range .status.conditions[?(@.status=="True")]}{.type} {end}`)
		switch {
		case strings.Contains(status, "Complete"):
			return
		case strings.Contains(status, "Failed"):
			t.Fatalf("job %s failed:\n%s", name, c.Kubectl(t, "describe", "job", name))
		case time.Now().After(deadline):
			t.Fatalf("job %s did not succeed within %v (conditions %q):\n%s", name, timeout, status,
				c.Kubectl(t, "get", "pods", "-o", "wide"))
		}
	}
}

// TestKubernetesPodStages checks what the Kubernetes driver's tests rely on: a pod annotated with
// a completion delay stays Running, one annotated with an exit code fails with it, and one
// annotated with a start delay stays Pending.
func TestKubernetesPodStages(t *testing.T) {
	c := Start(t, Options{Nodes: 1})
	job := func(name string, annotations string) {
		c.Apply(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
  namespace: default
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {%s}
    spec:
      restartPolicy: Never
      containers:
      - name: train
        image: lode.dev/trainer:test
`, name, annotations))
	}
	job("runs", `pod-complete.stage.kwok.x-k8s.io/delay: 1h`)
	job("fails", `lode.dev/kwok-exit-code: "3"`)
	job("waits", `pod-ready.stage.kwok.x-k8s.io/delay: 1h`)

	podField := func(job, path string) string {
		return c.Kubectl(t, "get", "pods", "-l", "job-name="+job, "-o", "jsonpath={.items[*]"+path+"}")
	}
	deadline := time.Now().Add(60 * time.Second)
	for tick := time.NewTicker(100 * time.Millisecond); ; <-tick.C {
		runs, fails := podField("runs", ".status.phase"), podField("fails", ".status.phase")
		if runs == "Running" && fails == "Failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs is %q (want Running), fails is %q (want Failed)", runs, fails)
		}
	}
	if code := podField("fails", ".status.containerStatuses[0].state.terminated.exitCode"); code != "3" {
		t.Errorf("fails exited %q, want 3", code)
	}
	// The start delay holds a scheduled pod Pending while the others have long moved on.
	if got := podField("waits", ".status.phase"); got != "Pending" {
		t.Errorf("waits is %q, want Pending", got)
	}
	if node := podField("waits", ".spec.nodeName"); node != "gpu-node-0" {
		t.Errorf("waits is on %q, want scheduled onto gpu-node-0", node)
	}
}
