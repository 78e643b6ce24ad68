package kubernetes_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	kdriver "lode.dev/lode/internal/driver/kubernetes"
	"lode.dev/lode/internal/kubetest"
	"lode.dev/lode/internal/server"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// TestKubernetesDriverInProcess runs the driver inside an in-process control plane, so that
// `go test -race` watches its goroutines (informers, the loop, one heartbeat stream per node)
// while a job is cancelled, a gang runs to the end, and the server stops, leaving nothing behind
// in the cluster.
func TestKubernetesDriverInProcess(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 2})
	kc := c.Client(t)
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.yaml")
	err := os.WriteFile(pools, []byte(fmt.Sprintf(`pools:
  - name: kube
    driver: kubernetes
    interconnect: {domain: kube, gbps: 100, multi_node: true}
    prices: {gpu_hour: {h100: 2}}
    kubernetes:
      kubeconfig: %s
      image: lode:test
      pod_annotations: {pod-complete.stage.kwok.x-k8s.io/delay: 5s}
      gpus:
        h100: {node_selector: {%s: %s}}
`, c.Kubeconfig, kubetest.GPUProductLabel, kubetest.DefaultGPUProduct)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the server's log:\n%s", logs.String())
		}
	})
	srv, err := server.Start(ctx, server.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", PoolsFile: pools, NoLocalPool: true,
		HeartbeatInterval: 100 * time.Millisecond, LeaseTTL: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Shutdown(ctx)
		}
	})
	tok, err := server.ReadAdminToken(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := client.New(srv.URL(), client.TrustCA(srv.CA()))
	if err != nil {
		t.Fatal(err)
	}
	cl := base.WithToken(tok)
	until(t, "two ready nodes", func() bool {
		nodes, err := cl.Nodes(ctx, "kube")
		ready := 0
		for _, n := range nodes {
			if n.State == store.NodeReady && len(n.GPUs) == 8 {
				ready++
			}
		}
		return err == nil && ready == 2
	})

	submit := func(name string, ranks int) string {
		j, err := spec.Parse(name+".yaml", []byte(fmt.Sprintf(`name: %s
image: train:1
command: [python, train.py]
resources: {gpus: 4, gpu: [h100], cpus: 2, memory: 4GiB}
nodes: %d
`, name, ranks)))
		if err != nil {
			t.Fatal(err)
		}
		d, err := cl.SubmitJob(ctx, &wire.SubmitJob{Spec: *j})
		if err != nil {
			t.Fatal(err)
		}
		return d.ID
	}
	state := func(id string, want core.JobState) *wire.JobDetail {
		var d *wire.JobDetail
		until(t, fmt.Sprintf("job %s %s", id, want), func() bool {
			d, err = cl.Job(ctx, id)
			return err == nil && d.State == want
		})
		return d
	}

	// Every pod of the pool runs for 5 s: one job runs to the end while another is cancelled.
	gang := submit("gang", 2)
	other := submit("other", 1)
	state(other, core.JobRunning)
	if _, err := cl.CancelJob(ctx, other); err != nil {
		t.Fatal(err)
	}
	if a := state(other, core.JobCancelled).AttemptList[0]; a.State != core.AttemptCancelled {
		t.Errorf("the cancelled job's attempt is %s, want cancelled", a.State)
	}
	state(gang, core.JobSucceeded)

	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	until(t, "no Job left in the cluster", func() bool {
		jobs, err := kc.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{LabelSelector: kdriver.LabelPool + "=kube"})
		return err == nil && len(jobs.Items) == 0
	})
}

// until polls cond every 20 ms for up to 30 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a buffer that goroutines write to together.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
