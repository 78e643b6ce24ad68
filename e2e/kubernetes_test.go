package e2e

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"lode.dev/lode/internal/core"
	kdriver "lode.dev/lode/internal/driver/kubernetes"
	"lode.dev/lode/internal/kubetest"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// The Kubernetes tests run a real `lode server` whose pools file names Kubernetes pools on a real
// control plane (internal/kubetest) with fake GPU nodes. kwok plays the kubelet: nothing runs in
// the pods, so every task state comes from the driver reading them; the kwok annotations in a
// pool's pod_annotations decide how long pods stay Running.

const a100Product = "NVIDIA-A100-SXM4-80GB"

// kubePool is one Kubernetes pool of a pools file.
type kubePool struct {
	name, model, product string
	price                float64
	// runFor keeps each pod Running that long ("1h": until it is deleted); empty ends it at once.
	runFor string
	// startAfter keeps each pod Pending that long once scheduled.
	startAfter string
	// pendingTimeout is the pool's pending_timeout; empty takes the default.
	pendingTimeout string
	// kubeconfig and namespace default to the cluster's admin and "default".
	kubeconfig, namespace string
}

// kubePools writes a pools file of Kubernetes pools on the cluster.
func kubePools(t *testing.T, c *kubetest.Cluster, pools ...kubePool) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("pools:\n")
	for _, p := range pools {
		var annotations []string
		if p.runFor != "" {
			annotations = append(annotations, fmt.Sprintf(`pod-complete.stage.kwok.x-k8s.io/delay: %q`, p.runFor))
		}
		if p.startAfter != "" {
			annotations = append(annotations, fmt.Sprintf(`pod-ready.stage.kwok.x-k8s.io/delay: %q`, p.startAfter))
		}
		kubeconfig, namespace := cmp.Or(p.kubeconfig, c.Kubeconfig), cmp.Or(p.namespace, "default")
		timeout := ""
		if p.pendingTimeout != "" {
			timeout = "\n      pending_timeout: " + p.pendingTimeout
		}
		fmt.Fprintf(&b, `  - name: %s
    driver: kubernetes
    tier: certified
    interconnect: {domain: %s, gbps: 100, multi_node: true}
    prices: {gpu_hour: {%s: %g}, cpu_hour: 0.01}
    kubernetes:
      kubeconfig: %s
      namespace: %s
      image: lode:e2e%s
      pod_annotations: {%s}
      gpus:
        %s:
          node_selector: {%s: %s}
          tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
`, p.name, p.name, p.model, p.price, kubeconfig, namespace, timeout, strings.Join(annotations, ", "), p.model, kubetest.GPUProductLabel, p.product)
	}
	path := filepath.Join(t.TempDir(), "pools.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// gpuSpec writes a job spec that runs in an image on GPUs.
func gpuSpec(t *testing.T, name string, nodes, gpus int, models string) string {
	t.Helper()
	spec := fmt.Sprintf(`name: %s
image: registry.example.com/vision/train:1.4
command: [python, train.py, --epochs, "3"]
resources: {gpus: %d, gpu: [%s], cpus: 4, memory: 16GiB}
nodes: %d
retries: {on_node_lost: 3, on_error: 0}
`, name, gpus, models, nodes)
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readyNodes returns the pool's ready nodes by name.
func (cl *cluster) readyNodes(pool string) map[string]*store.Node {
	cl.t.Helper()
	nodes, err := cl.c.Nodes(context.Background(), pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	out := map[string]*store.Node{}
	for _, n := range nodes {
		if n.State == store.NodeReady {
			out[n.Name] = n
		}
	}
	return out
}

// waitOffers waits until the pool's ready nodes are exactly these, offering these GPUs.
func (cl *cluster) waitOffers(pool string, want map[string]int, timeout time.Duration) {
	cl.t.Helper()
	var got map[string]int
	poll(cl.t, timeout, fmt.Sprintf("pool %s to offer %v GPUs", pool, want), func() bool {
		got = map[string]int{}
		for name, n := range cl.readyNodes(pool) {
			got[name] = len(n.GPUs)
		}
		return maps.Equal(got, want)
	})
}

// kubeObjects lists what the driver made for a Lode job: Jobs, Services, Secrets and pods.
func kubeObjects(t *testing.T, kc k8s.Interface, ns, jobID string) (jobs []batchv1.Job, svcs []corev1.Service, secrets []corev1.Secret, pods []corev1.Pod) {
	t.Helper()
	ctx, sel := context.Background(), metav1.ListOptions{LabelSelector: kdriver.LabelJob + "=" + jobID}
	j, err := kc.BatchV1().Jobs(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kc.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := kc.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kc.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	return j.Items, s.Items, sec.Items, p.Items
}

// waitNoObjects waits until nothing the driver made for the job is left.
func waitNoObjects(t *testing.T, kc k8s.Interface, ns, jobID string, timeout time.Duration) {
	t.Helper()
	var left []string
	poll(t, timeout, "the job's Kubernetes objects to be deleted", func() bool {
		jobs, svcs, secrets, pods := kubeObjects(t, kc, ns, jobID)
		left = nil
		for _, j := range jobs {
			left = append(left, "job/"+j.Name)
		}
		for _, s := range svcs {
			left = append(left, "service/"+s.Name)
		}
		for _, s := range secrets {
			left = append(left, "secret/"+s.Name)
		}
		for _, p := range pods {
			left = append(left, "pod/"+p.Name)
		}
		return len(left) == 0
	})
}

// TestKubernetesGangJobRunsAsIndexedJob: a 4-rank gang job placed on a Kubernetes pool becomes
// one Indexed Job and one headless Service (and a Secret), with the pod spec the runner
// contract asks for; each rank's pod runs on the node Lode placed the rank on; the job succeeds
// and its objects are deleted. The driver runs as a service account with exactly the
// permissions docs/kubernetes.md lists.
func TestKubernetesGangJobRunsAsIndexedJob(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 4})
	kc := c.Client(t)
	// The driver has only the permissions docs/kubernetes.md grants.
	c.Apply(t, rbacManifest(t))
	const ns = "lode-jobs"
	// Each pod runs for 2 s, so the attempt is seen running before it ends.
	cl := startServer(t, "--no-local-pool", "--pools", kubePools(t, c, kubePool{
		name: "kube", model: "h100", product: kubetest.DefaultGPUProduct, price: 2, runFor: "2s",
		kubeconfig: c.ServiceAccountKubeconfig(t, ns, "lode"), namespace: ns}))
	cl.waitOffers("kube", map[string]int{"gpu-node-0": 8, "gpu-node-1": 8, "gpu-node-2": 8, "gpu-node-3": 8}, 30*time.Second)

	start := time.Now()
	id := detachedJob(t, cl, gpuSpec(t, "gang", 4, 8, "h100"))
	var d *wire.JobDetail
	var (
		jobs    []batchv1.Job
		svcs    []corev1.Service
		secrets []corev1.Secret
	)
	poll(t, 30*time.Second, "the job's Indexed Job, Service and Secret", func() bool {
		jobs, svcs, secrets, _ = kubeObjects(t, kc, ns, id)
		return len(jobs) > 0 && len(svcs) > 0 && len(secrets) > 0
	})
	if len(jobs) != 1 || len(svcs) != 1 || len(secrets) != 1 {
		t.Fatalf("got %d Jobs, %d Services and %d Secrets for the job, want one of each", len(jobs), len(svcs), len(secrets))
	}
	d = cl.job(id)
	att := d.AttemptList[len(d.AttemptList)-1]
	job, svc, secret := jobs[0], svcs[0], secrets[0]
	name := kdriver.ObjectName(att.ID)

	// The Job: one pod per rank, indexed, no retries of its own.
	js := job.Spec
	if job.Name != name || *js.Completions != 4 || *js.Parallelism != 4 || *js.CompletionMode != batchv1.IndexedCompletion ||
		*js.BackoffLimit != 0 || *js.PodReplacementPolicy != batchv1.Failed || js.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("job %s: completions %d, parallelism %d, mode %s, backoffLimit %d, replacement %s, restart %s; "+
			"want %s, 4, 4, Indexed, 0, Failed, Never", job.Name, *js.Completions, *js.Parallelism, *js.CompletionMode,
			*js.BackoffLimit, *js.PodReplacementPolicy, js.Template.Spec.RestartPolicy, name)
	}
	wantLabels := map[string]string{kdriver.LabelAttempt: att.ID, kdriver.LabelJob: id, kdriver.LabelPool: "kube", kdriver.LabelProject: d.Project}
	for k, v := range wantLabels {
		if job.Labels[k] != v || js.Template.Labels[k] != v {
			t.Errorf("label %s: job %q, pod template %q; want %q", k, job.Labels[k], js.Template.Labels[k], v)
		}
	}
	pod := js.Template.Spec
	if pod.Subdomain != name || pod.NodeSelector[kubetest.GPUProductLabel] != kubetest.DefaultGPUProduct ||
		len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "nvidia.com/gpu" || pod.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("pod template: subdomain %q, node selector %v, tolerations %+v; want %q, the H100 product, nvidia.com/gpu Exists",
			pod.Subdomain, pod.NodeSelector, pod.Tolerations, name)
	}
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Image != "lode:e2e" ||
		!slices.Equal(pod.InitContainers[0].Command, []string{"/lode", "runner", "--install", "/opt/lode"}) {
		t.Errorf("init containers: %+v; want lode:e2e running /lode runner --install /opt/lode", pod.InitContainers)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers: %+v; want one", pod.Containers)
	}
	main := pod.Containers[0]
	if want := []string{"/opt/lode/lode", "runner", "--", "python", "train.py", "--epochs", "3"}; !slices.Equal(main.Command, want) ||
		main.Image != "registry.example.com/vision/train:1.4" {
		t.Errorf("main container: image %s, command %q; want the job's image and %q", main.Image, main.Command, want)
	}
	gpus := resource.MustParse("8")
	if q := main.Resources.Limits["nvidia.com/gpu"]; q.Cmp(gpus) != 0 {
		t.Errorf("GPU limit %s, want 8", q.String())
	}
	if q := main.Resources.Requests["nvidia.com/gpu"]; q.Cmp(gpus) != 0 {
		t.Errorf("GPU request %s, want 8", q.String())
	}
	if q := main.Resources.Requests[corev1.ResourceCPU]; q.MilliValue() != 4000 {
		t.Errorf("CPU request %s, want 4", q.String())
	}
	if q := main.Resources.Requests[corev1.ResourceMemory]; q.Value() != 16<<30 {
		t.Errorf("memory request %s, want 16Gi", q.String())
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range main.Env {
		env[e.Name] = e
	}
	for k, v := range map[string]string{
		"LODE_SERVER": cl.url, "LODE_ATTEMPT": att.ID, "LODE_TASK_DIR": "/lode/task", "WORLD_SIZE": "4", "LOCAL_RANK": "0",
		"MASTER_ADDR": name + "-0." + name + "." + ns + ".svc",
	} {
		if env[k].Value != v {
			t.Errorf("env %s = %q, want %q", k, env[k].Value, v)
		}
	}
	for _, k := range []string{"LODE_RANK", "RANK", "NODE_RANK"} {
		if f := env[k].ValueFrom; f == nil || f.FieldRef == nil || !strings.Contains(f.FieldRef.FieldPath, batchv1.JobCompletionIndexAnnotation) {
			t.Errorf("env %s = %+v; want the completion index", k, env[k])
		}
	}
	if f := env["LODE_FENCING_TOKEN"].ValueFrom; f == nil || f.SecretKeyRef == nil || f.SecretKeyRef.Name != secret.Name {
		t.Errorf("LODE_FENCING_TOKEN = %+v; want it from the Secret %s", env["LODE_FENCING_TOKEN"], secret.Name)
	}
	if env["MASTER_PORT"].Value == "" {
		t.Error("no MASTER_PORT")
	}
	memoryDir := false
	for _, v := range pod.Volumes {
		memoryDir = memoryDir || v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory
	}
	if !memoryDir {
		t.Errorf("volumes %+v: want a memory-backed emptyDir for the task directory", pod.Volumes)
	}

	// The Service: headless, rank 0 only; Service and Secret die with the Job.
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[batchv1.JobCompletionIndexAnnotation] != "0" ||
		svc.Spec.Selector[kdriver.LabelAttempt] != att.ID {
		t.Errorf("service: clusterIP %q, selector %v; want headless, rank 0 of the attempt", svc.Spec.ClusterIP, svc.Spec.Selector)
	}
	for what, refs := range map[string][]metav1.OwnerReference{"service": svc.OwnerReferences, "secret": secret.OwnerReferences} {
		if len(refs) != 1 || refs[0].Kind != "Job" || refs[0].UID != job.UID {
			t.Errorf("%s owner references %+v; want the Job %s", what, refs, job.UID)
		}
	}
	if len(secret.Data["token"]) == 0 {
		t.Error("the Secret holds no fencing token")
	}

	// Every rank's pod runs on the node Lode placed the rank on.
	d = cl.waitState(id, core.JobRunning, 30*time.Second)
	names := map[string]string{}
	for name, n := range cl.readyNodes("kube") {
		names[n.ID] = name
	}
	_, _, _, pods := kubeObjects(t, kc, ns, id)
	if len(pods) != 4 {
		t.Fatalf("%d pods, want 4", len(pods))
	}
	for i := range pods {
		p := &pods[i]
		r, ok := kdriver.RankIndex(p)
		if !ok || r > 3 {
			t.Fatalf("pod %s has no rank", p.Name)
		}
		if want := names[att.Tasks[r].NodeID]; p.Spec.NodeName != want {
			t.Errorf("rank %d's pod runs on %q; Lode placed the rank on %q", r, p.Spec.NodeName, want)
		}
	}

	d = cl.waitState(id, core.JobSucceeded, 60*time.Second)
	last := d.AttemptList[len(d.AttemptList)-1]
	t.Logf("submitted to running in %v; succeeded %v after submission (each pod runs 2 s)",
		last.StartedAt.Sub(d.CreatedAt).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if len(d.AttemptList) != 1 || last.State != core.AttemptSucceeded || last.StartedAt.IsZero() {
		t.Errorf("attempts: %d, the last %s (started %v); want one, succeeded after running", len(d.AttemptList), last.State, last.StartedAt)
	}
	for _, task := range last.Tasks {
		if task.State != core.TaskExited || task.ExitCode != 0 || task.StartedAt.IsZero() {
			t.Errorf("rank %d: %s, exit %d, started %v; want exited 0 after running", task.Rank, task.State, task.ExitCode, task.StartedAt)
		}
	}
	waitNoObjects(t, kc, ns, id, 30*time.Second)
}

// TestKubernetesCancelDeletesEverything: cancelling a running job deletes its Job, Service,
// Secret and pods, and the job ends cancelled.
func TestKubernetesCancelDeletesEverything(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 1})
	kc := c.Client(t)
	cl := startServer(t, "--no-local-pool", "--pools",
		kubePools(t, c, kubePool{name: "kube", model: "h100", product: kubetest.DefaultGPUProduct, price: 2, runFor: "1h"}))
	cl.waitOffers("kube", map[string]int{"gpu-node-0": 8}, 30*time.Second)

	id := detachedJob(t, cl, gpuSpec(t, "long", 1, 2, "h100"))
	cl.waitState(id, core.JobRunning, 30*time.Second)
	jobs, svcs, secrets, pods := kubeObjects(t, kc, "default", id)
	if len(jobs) != 1 || len(svcs) != 1 || len(secrets) != 1 || len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("before the cancel: %d Jobs, %d Services, %d Secrets, %d pods; want one of each, the pod running",
			len(jobs), len(svcs), len(secrets), len(pods))
	}

	start := time.Now()
	if code, _, stderr := cl.run("cancel", id); code != 0 {
		t.Fatalf("lode cancel: exit %d: %s", code, stderr)
	}
	d := cl.waitState(id, core.JobCancelled, 30*time.Second)
	if a := d.AttemptList[0]; a.State != core.AttemptCancelled || a.Tasks[0].State != core.TaskKilled {
		t.Errorf("attempt %s, its task %s; want cancelled, killed", a.State, a.Tasks[0].State)
	}
	waitNoObjects(t, kc, "default", id, 30*time.Second)
	t.Logf("cancelled, and every object gone, %v after the cancel", time.Since(start).Round(time.Millisecond))
}

// TestKubernetesNodeLossPlacesJobElsewhere: deleting the Kubernetes node under a running gang
// ends its attempt lost (the node's lease runs out, and the pool's reliability counts the
// loss), and the job is placed again on the other Kubernetes pool, the only one with room left,
// where it succeeds.
func TestKubernetesNodeLossPlacesJobElsewhere(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 2})
	c.AddNodes(t, kubetest.Node{Name: "a100-0", Product: a100Product}, kubetest.Node{Name: "a100-1", Product: a100Product})
	kc := c.Client(t)
	cl := startServer(t, "--no-local-pool", "--pools", kubePools(t, c,
		kubePool{name: "kube-h100", model: "h100", product: kubetest.DefaultGPUProduct, price: 2, runFor: "1h"},
		kubePool{name: "kube-a100", model: "a100", product: a100Product, price: 3}))
	cl.waitOffers("kube-h100", map[string]int{"gpu-node-0": 8, "gpu-node-1": 8}, 30*time.Second)
	cl.waitOffers("kube-a100", map[string]int{"a100-0": 8, "a100-1": 8}, 30*time.Second)

	id := detachedJob(t, cl, gpuSpec(t, "gang", 2, 8, "h100, a100"))
	d := cl.waitState(id, core.JobRunning, 30*time.Second)
	pools := map[string]string{}
	for _, p := range poolList(t, cl) {
		pools[p.ID] = p.Name
	}
	first := d.AttemptList[0]
	if pools[first.PoolID] != "kube-h100" {
		t.Fatalf("the job runs on %s; want kube-h100, the cheaper pool", pools[first.PoolID])
	}
	var victim string
	for name, n := range cl.readyNodes("kube-h100") {
		if n.ID == first.Tasks[0].NodeID {
			victim = name
		}
	}
	if victim == "" {
		t.Fatalf("rank 0's node %s is not a ready node of kube-h100", first.Tasks[0].NodeID)
	}

	start := time.Now()
	c.DeleteNodes(t, victim)
	d = cl.waitJob(id, 60*time.Second, "it is placed again", func(d *wire.JobDetail) bool { return len(d.AttemptList) == 2 })
	t.Logf("placed again %v after the node's deletion", time.Since(start).Round(time.Millisecond))
	if a := d.AttemptList[0]; a.State != core.AttemptLost {
		t.Errorf("the first attempt ended %s (%s); want lost", a.State, a.Reason)
	}
	if d.Retries.NodeLost != 1 || d.Retries.Error != 0 {
		t.Errorf("retries used %+v; want one for a lost node", d.Retries)
	}
	if p := pools[d.AttemptList[1].PoolID]; p != "kube-a100" {
		t.Errorf("placed again on %s; want kube-a100, the pool with room for the gang", p)
	}
	d = cl.waitState(id, core.JobSucceeded, 60*time.Second)
	for _, p := range poolList(t, cl) {
		if p.Name == "kube-h100" && p.Reliability.Losses != 1 {
			t.Errorf("kube-h100 counts %d lost nodes; want 1", p.Reliability.Losses)
		}
	}
	// The lost attempt's pods on the surviving node are gone too.
	waitNoObjects(t, kc, "default", id, 30*time.Second)
}

// TestKubernetesPendingTimeoutPlacesJobElsewhere: a pod that cannot start within the pool's
// pending timeout gives its capacity back: its attempt ends lost (the cluster failed it, not the
// job, so no error retry is spent), and the job is placed again on the other pool.
func TestKubernetesPendingTimeoutPlacesJobElsewhere(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 1})
	c.AddNodes(t, kubetest.Node{Name: "a100-0", Product: a100Product})
	kc := c.Client(t)
	cl := startServer(t, "--no-local-pool", "--pools", kubePools(t, c,
		kubePool{name: "stuck", model: "h100", product: kubetest.DefaultGPUProduct, price: 2, startAfter: "1h", pendingTimeout: "3s"},
		kubePool{name: "spare", model: "a100", product: a100Product, price: 3}))
	cl.waitOffers("stuck", map[string]int{"gpu-node-0": 8}, 30*time.Second)
	cl.waitOffers("spare", map[string]int{"a100-0": 8}, 30*time.Second)

	start := time.Now()
	id := detachedJob(t, cl, gpuSpec(t, "waits", 1, 8, "h100, a100"))
	d := cl.waitJob(id, 30*time.Second, "it is placed again", func(d *wire.JobDetail) bool { return len(d.AttemptList) == 2 })
	t.Logf("placed again %v after submission (the pending timeout is 3 s)", time.Since(start).Round(time.Millisecond))
	first := d.AttemptList[0]
	if first.State != core.AttemptLost || first.Tasks[0].State != core.TaskLost || !strings.Contains(first.Tasks[0].Message, "did not start within 3s") {
		t.Errorf("the first attempt ended %s, its task %s (%q); want lost, for not starting within 3s", first.State, first.Tasks[0].State, first.Tasks[0].Message)
	}
	if !first.StartedAt.IsZero() {
		t.Errorf("the first attempt started at %v; it never ran", first.StartedAt)
	}
	if d.Retries.Error != 0 {
		t.Errorf("retries used %+v; want none for errors", d.Retries)
	}
	d = cl.waitState(id, core.JobSucceeded, 60*time.Second)
	pools := map[string]string{}
	for _, p := range poolList(t, cl) {
		pools[p.ID] = p.Name
	}
	if p := pools[d.AttemptList[1].PoolID]; p != "spare" {
		t.Errorf("placed again on %s, want spare", p)
	}
	waitNoObjects(t, kc, "default", id, 30*time.Second)
}

// TestKubernetesServerKilledAndRestarted: a server killed outright leaves its attempt's Job
// behind; the restarted server's nodes are new ones, so the attempt ends lost when the old
// node's lease runs out, the job is placed again, and the old Job is swept away. A server
// stopped cleanly deletes what it made.
func TestKubernetesServerKilledAndRestarted(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 1})
	kc := c.Client(t)
	cl := startServer(t, "--no-local-pool", "--pools",
		kubePools(t, c, kubePool{name: "kube", model: "h100", product: kubetest.DefaultGPUProduct, price: 2, runFor: "1h"}))
	cl.waitOffers("kube", map[string]int{"gpu-node-0": 8}, 30*time.Second)
	id := detachedJob(t, cl, gpuSpec(t, "long", 1, 2, "h100"))
	first := cl.waitState(id, core.JobRunning, 30*time.Second).AttemptList[0]

	start := time.Now()
	cl.restartServer(syscall.SIGKILL)
	d := cl.waitJob(id, 60*time.Second, "it runs again", func(d *wire.JobDetail) bool {
		return len(d.AttemptList) == 2 && d.State == core.JobRunning
	})
	t.Logf("running again %v after the restart", time.Since(start).Round(time.Millisecond))
	if a := d.AttemptList[0]; a.State != core.AttemptLost {
		t.Errorf("the first attempt ended %s; want lost", a.State)
	}
	poll(t, 30*time.Second, "the first attempt's Job to be swept away", func() bool {
		jobs, err := kc.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{LabelSelector: kdriver.LabelAttempt + "=" + first.ID})
		return err == nil && len(jobs.Items) == 0
	})
	jobs, _, _, pods := kubeObjects(t, kc, "default", id)
	if len(jobs) != 1 || jobs[0].Labels[kdriver.LabelAttempt] != d.AttemptList[1].ID || len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
		t.Errorf("%d Jobs and %d pods for the job; want the second attempt's Job and its running pod", len(jobs), len(pods))
	}

	// A clean stop: the nodes leave, which ends the attempt, and its objects are deleted.
	cl.server.signal(syscall.SIGTERM)
	if code := cl.server.wait(t, 40*time.Second); code != 0 {
		t.Errorf("the server exited %d after SIGTERM", code)
	}
	waitNoObjects(t, kc, "default", id, 30*time.Second)
}

// rbacManifest is the manifest of docs/kubernetes.md's Permissions section.
func rbacManifest(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Permissions\n")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	manifest, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/kubernetes.md has no yaml block under ## Permissions")
	}
	return manifest
}

func poolList(t *testing.T, cl *cluster) []wire.PoolInfo {
	t.Helper()
	pools, err := cl.c.Pools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pools
}

// TestKubernetesOfferFollowsPods: a pod that is not Lode's taking GPUs on a node shrinks what
// the node offers Lode, so a job that needs the whole node waits; when that pod ends, the offer
// is whole again and the job is placed and runs.
func TestKubernetesOfferFollowsPods(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{Nodes: 1})
	kc := c.Client(t)
	cl := startServer(t, "--no-local-pool", "--pools",
		kubePools(t, c, kubePool{name: "kube", model: "h100", product: kubetest.DefaultGPUProduct, price: 2}))
	cl.waitOffers("kube", map[string]int{"gpu-node-0": 8}, 30*time.Second)
	nodeID := cl.readyNodes("kube")["gpu-node-0"].ID

	ctx := context.Background()
	start := time.Now()
	foreign, err := kc.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": "gpu-node-0"},
			Containers: []corev1.Container{{Name: "infer", Image: "registry.example.com/infer:2", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("3")}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cl.waitOffers("kube", map[string]int{"gpu-node-0": 5}, 30*time.Second)
	t.Logf("the offer shrank to 5 GPUs %v after the other pod was created", time.Since(start).Round(time.Millisecond))
	if n := cl.readyNodes("kube")["gpu-node-0"]; n.ID != nodeID {
		t.Errorf("gpu-node-0 is Lode node %s now, %s before; a changed offer should not make a new node", n.ID, nodeID)
	}

	id := detachedJob(t, cl, gpuSpec(t, "whole-node", 1, 8, "h100"))
	d := cl.waitJob(id, 30*time.Second, "the scheduler has turned it down", func(d *wire.JobDetail) bool { return len(d.Pending) > 0 })
	if d.State != core.JobQueued || !strings.Contains(fmt.Sprint(d.Pending), "kube") {
		t.Fatalf("job %s, pending %+v; want it queued, with kube's reason", d.State, d.Pending)
	}

	// The other pod ends, as its kubelet would say.
	foreign.Status.Phase = corev1.PodSucceeded
	now := metav1.Now()
	foreign.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "infer", Image: "registry.example.com/infer:2",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}}}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := kc.CoreV1().Pods("default").Get(ctx, foreign.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = foreign.Status
		_, err = kc.CoreV1().Pods("default").UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	d = cl.waitState(id, core.JobSucceeded, 60*time.Second)
	t.Logf("the offer was whole again and the job ran %v after the other pod ended", time.Since(start).Round(time.Millisecond))
	if len(d.AttemptList) != 1 {
		t.Errorf("%d attempts; want one", len(d.AttemptList))
	}
}
