package kubernetes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/poolfile"
)

var testPods = Pods{Pool: "eks", Image: "lode:1.0", ServerURL: "https://lode.example.com", CA: []byte("-----BEGIN CERTIFICATE-----\n"),
	Annotations: map[string]string{"a": "b"}}

func gangAttempt() Attempt {
	return Attempt{
		ID: "att-abc", JobID: "job-1", Project: "vision", Namespace: "ml", Ranks: 4,
		Command: []string{"python", "train.py"}, Image: "train:1",
		Resources:    core.Resources{MilliCPUs: 8000, MemoryBytes: 32 << 30, GPUs: 8},
		FencingToken: "secret-token", MasterPort: 29555,
		GPU: &poolfile.GPUNodes{
			NodeSelector: map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
			Tolerations:  []poolfile.Toleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}},
			ResourceName: "nvidia.com/gpu",
		},
	}
}

func TestRenderGang(t *testing.T) {
	objs, err := Render(testPods, gangAttempt())
	if err != nil {
		t.Fatal(err)
	}
	job, svc, secret := objs.Job, objs.Service, objs.Secret
	labels := map[string]string{LabelAttempt: "att-abc", LabelJob: "job-1", LabelPool: "eks", LabelProject: "vision"}
	for what, meta := range map[string]metav1.ObjectMeta{"job": job.ObjectMeta, "service": svc.ObjectMeta, "secret": secret.ObjectMeta} {
		if meta.Name != "lode-att-abc" || meta.Namespace != "ml" {
			t.Errorf("%s is %s/%s, want ml/lode-att-abc", what, meta.Namespace, meta.Name)
		}
		if diff := cmp.Diff(labels, meta.Labels); diff != "" {
			t.Errorf("%s labels (-want +got):\n%s", what, diff)
		}
	}

	js := job.Spec
	got := []any{*js.Completions, *js.Parallelism, *js.CompletionMode, *js.BackoffLimit, *js.PodReplacementPolicy}
	want := []any{int32(4), int32(4), batchv1.IndexedCompletion, int32(0), batchv1.Failed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job spec (-want +got):\n%s", diff)
	}
	pod := js.Template.Spec
	if diff := cmp.Diff([]corev1.PodSchedulingGate{{Name: PlacementGate}}, pod.SchedulingGates); diff != "" {
		t.Errorf("scheduling gates (-want +got):\n%s", diff)
	}
	if pod.Subdomain != "lode-att-abc" || pod.RestartPolicy != corev1.RestartPolicyNever || *pod.AutomountServiceAccountToken {
		t.Errorf("subdomain %q, restart %s, automount %v", pod.Subdomain, pod.RestartPolicy, *pod.AutomountServiceAccountToken)
	}
	if diff := cmp.Diff(map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, pod.NodeSelector); diff != "" {
		t.Errorf("node selector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, pod.Tolerations); diff != "" {
		t.Errorf("tolerations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a": "b"}, js.Template.Annotations); diff != "" {
		t.Errorf("pod annotations (-want +got):\n%s", diff)
	}
	init := pod.InitContainers[0]
	if diff := cmp.Diff([]string{"/lode", "runner", "--install", "/opt/lode"}, init.Command); diff != "" || init.Image != "lode:1.0" {
		t.Errorf("init container %s (-want +got):\n%s", init.Image, diff)
	}
	main := pod.Containers[0]
	if diff := cmp.Diff([]string{"/opt/lode/lode", "runner", "--", "python", "train.py"}, main.Command); diff != "" || main.Image != "train:1" {
		t.Errorf("main container %s (-want +got):\n%s", main.Image, diff)
	}
	res := map[string]string{}
	for n, q := range main.Resources.Requests {
		res["request "+string(n)] = q.String()
	}
	for n, q := range main.Resources.Limits {
		res["limit "+string(n)] = q.String()
	}
	wantRes := map[string]string{"request cpu": "8", "request memory": "32Gi", "request nvidia.com/gpu": "8", "limit nvidia.com/gpu": "8"}
	if diff := cmp.Diff(wantRes, res); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	env := map[string]string{}
	for _, e := range main.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field " + e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret " + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			env[e.Name] = e.Value
		}
	}
	index := "field metadata.annotations['batch.kubernetes.io/job-completion-index']"
	wantEnv := map[string]string{
		"LODE_SERVER": "https://lode.example.com", "LODE_ATTEMPT": "att-abc", "LODE_RANK": index,
		"LODE_FENCING_TOKEN": "secret lode-att-abc/token", "LODE_TASK_DIR": "/lode/task", "LODE_CA": "secret lode-att-abc/ca.crt",
		"WORLD_SIZE": "4", "RANK": index, "NODE_RANK": index, "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
		"MASTER_ADDR": "lode-att-abc-0.lode-att-abc.ml.svc", "MASTER_PORT": "29555",
	}
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	volumes := map[string]corev1.StorageMedium{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v.EmptyDir.Medium
	}
	if diff := cmp.Diff(map[string]corev1.StorageMedium{binVolume: "", taskVolume: corev1.StorageMediumMemory}, volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}

	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses || svc.Spec.Ports[0].Port != 29555 {
		t.Errorf("service: clusterIP %q, publishNotReady %v, ports %+v", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses, svc.Spec.Ports)
	}
	if diff := cmp.Diff(map[string]string{LabelAttempt: "att-abc", batchv1.JobCompletionIndexAnnotation: "0"}, svc.Spec.Selector); diff != "" {
		t.Errorf("service selector (-want +got):\n%s", diff)
	}
	if string(secret.Data[tokenKey]) != "secret-token" || string(secret.Data[caKey]) != string(testPods.CA) {
		t.Errorf("secret holds %q", secret.Data)
	}

	job.UID = types.UID("uid-1")
	Owned(&svc.ObjectMeta, job)
	if r := svc.OwnerReferences; len(r) != 1 || r[0].UID != "uid-1" || r[0].Kind != "Job" || !*r[0].BlockOwnerDeletion {
		t.Errorf("owner references %+v", r)
	}
}

func TestRenderVariants(t *testing.T) {
	tests := []struct {
		name    string
		pods    func(*Pods)
		attempt func(*Attempt)
		check   func(t *testing.T, o *Objects)
		err     string
	}{
		{
			name:    "no image, none in the pool",
			attempt: func(a *Attempt) { a.Image = "" },
			err:     "names no image",
		},
		{
			name:    "no image, the pool's job image",
			pods:    func(p *Pods) { p.JobImage = "python:3.12" },
			attempt: func(a *Attempt) { a.Image = "" },
			check: func(t *testing.T, o *Objects) {
				if got := o.Job.Spec.Template.Spec.Containers[0].Image; got != "python:3.12" {
					t.Errorf("image %q, want the pool's job image", got)
				}
			},
		},
		{
			name: "CPU only",
			attempt: func(a *Attempt) {
				a.Resources.GPUs, a.GPU = 0, nil
			},
			check: func(t *testing.T, o *Objects) {
				spec := o.Job.Spec.Template.Spec
				if len(spec.Containers[0].Resources.Limits) != 0 || spec.NodeSelector != nil || spec.Tolerations != nil {
					t.Errorf("limits %v, node selector %v, tolerations %v; want none", spec.Containers[0].Resources.Limits, spec.NodeSelector, spec.Tolerations)
				}
			},
		},
		{
			name:    "GPUs without a model",
			attempt: func(a *Attempt) { a.GPU = nil },
			err:     "no GPU model",
		},
		{
			name: "another GPU resource",
			attempt: func(a *Attempt) {
				a.GPU.ResourceName = "amd.com/gpu"
			},
			check: func(t *testing.T, o *Objects) {
				q := o.Job.Spec.Template.Spec.Containers[0].Resources.Limits["amd.com/gpu"]
				if q.Cmp(resource.MustParse("8")) != 0 {
					t.Errorf("amd.com/gpu limit %s, want 8", q.String())
				}
			},
		},
		{
			name: "Kueue queue",
			pods: func(p *Pods) { p.Queue = "team-a" },
			check: func(t *testing.T, o *Objects) {
				if o.Job.Labels[LabelQueue] != "team-a" {
					t.Errorf("labels %v, want the queue name", o.Job.Labels)
				}
			},
		},
		{
			name:    "no master port",
			attempt: func(a *Attempt) { a.MasterPort = 0 },
			check: func(t *testing.T, o *Objects) {
				if o.Service.Spec.Ports[0].Port != defaultMaster {
					t.Errorf("port %d, want %d", o.Service.Spec.Ports[0].Port, defaultMaster)
				}
			},
		},
		{
			name:    "no command",
			attempt: func(a *Attempt) { a.Command = nil },
			err:     "no command",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, a := testPods, gangAttempt()
			if tt.pods != nil {
				tt.pods(&p)
			}
			if tt.attempt != nil {
				tt.attempt(&a)
			}
			o, err := Render(p, a)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestObjectName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"att-5ss3xdea6wdguxng", "lode-att-5ss3xdea6wdguxng"},
		{"Att_X.1", "lode-att-x-1"},
		{strings.Repeat("a", 80), "lode-" + strings.Repeat("a", 47)},
		{strings.Repeat("a", 46) + "-b", "lode-" + strings.Repeat("a", 46)},
	}
	for _, tt := range tests {
		got := ObjectName(tt.id)
		if got != tt.want {
			t.Errorf("ObjectName(%q) = %q, want %q", tt.id, got, tt.want)
		}
		// A Service's name is a DNS-1035 label; a pod's host name NAME-INDEX must stay a label.
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("ObjectName(%q) = %q: %v", tt.id, got, errs)
		}
		if errs := validation.IsDNS1123Label(got + "-1023"); len(errs) > 0 {
			t.Errorf("host name of %q: %v", got, errs)
		}
	}
}

func TestPin(t *testing.T) {
	a := Pin("gpu-node-3")
	req := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	want := []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu-node-3"}}}}}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("pin (-want +got):\n%s", diff)
	}
}
