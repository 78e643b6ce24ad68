package kubernetes

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/poolfile"
)

// Labels on every object the driver makes. The pool label lets a driver
// find its own objects again; the others say what an object belongs to.
const (
	LabelAttempt = "lode.dev/attempt"
	LabelJob     = "lode.dev/job"
	LabelPool    = "lode.dev/pool"
	LabelProject = "lode.dev/project"
	// LabelQueue names a Kueue LocalQueue.
	LabelQueue = "kueue.x-k8s.io/queue-name"
)

// PlacementGate holds each pod of an attempt until the driver has pinned it
// to the node Lode's scheduler chose for its rank. An Indexed Job has one
// pod template for all ranks, so the template cannot name each rank's node;
// a gated pod's node affinity may still be set (Kubernetes 1.27 and later),
// which is what the driver does before it lifts the gate.
const PlacementGate = "lode.dev/placement"

// Names inside the pod.
const (
	containerName  = "task"
	installName    = "lode-install"
	binVolume      = "lode-bin"
	taskVolume     = "lode-task"
	binDir         = "/opt/lode"
	taskDir        = "/lode/task"
	tokenKey       = "token"
	caKey          = "ca.crt"
	defaultMaster  = 29500
	completionPath = "metadata.annotations['" + batchv1.JobCompletionIndexAnnotation + "']"
)

// Pods is what a pool puts into every pod it makes.
type Pods struct {
	Pool string
	// Image is the lode image of the init container.
	Image string
	// JobImage runs jobs that name no image.
	JobImage string
	// ServerURL is the Lode server as pods reach it; CA, the control
	// plane's CA certificate (PEM) its runners trust, if any.
	ServerURL   string
	CA          []byte
	Queue       string
	Annotations map[string]string
}

// Attempt is what the driver knows of an attempt when it makes its objects.
type Attempt struct {
	ID, JobID, Project string
	Namespace          string
	Ranks              int
	Command            []string
	Image              string
	// Resources is what each rank asks for.
	Resources    core.Resources
	FencingToken string
	MasterPort   int
	// GPU says how the ranks' GPUs are asked for and which nodes have
	// them; nil for an attempt without GPUs.
	GPU *poolfile.GPUNodes
}

// Objects are an attempt's Kubernetes objects. The Service and the Secret
// are owned by the Job (Owned sets that once the Job exists), so deleting
// the Job deletes everything.
type Objects struct {
	Job     *batchv1.Job
	Service *corev1.Service
	Secret  *corev1.Secret
}

// ObjectName is the name of an attempt's Job, Service and Secret. Attempt
// IDs are lower-case letters, digits and dashes already; the prefix makes
// the name start with a letter, as a Service's must, and the pods' host
// names (NAME-INDEX) stay under 63 characters.
func ObjectName(attemptID string) string {
	var b strings.Builder
	b.WriteString("lode-")
	for _, r := range strings.ToLower(attemptID) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.TrimRight(truncate(b.String(), 52), "-")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// MasterAddr is the DNS name of rank 0's pod: the pod's host name under
// the headless Service, which only rank 0's pod backs.
func MasterAddr(name, namespace string) string {
	return fmt.Sprintf("%s-0.%s.%s.svc", name, name, namespace)
}

// Render makes an attempt's objects. It fails only for an attempt that
// cannot run here: no image to run it with, or no command.
func Render(p Pods, a Attempt) (*Objects, error) {
	image := a.Image
	if image == "" {
		image = p.JobImage
	}
	if image == "" {
		return nil, fmt.Errorf("the job names no image, and pool %s has no job_image to run such jobs with", p.Pool)
	}
	if len(a.Command) == 0 {
		return nil, fmt.Errorf("the job has no command")
	}
	if a.Ranks < 1 {
		return nil, fmt.Errorf("an attempt needs at least one rank, not %d", a.Ranks)
	}
	name := ObjectName(a.ID)
	port := a.MasterPort
	if port == 0 {
		port = defaultMaster
	}
	labels := map[string]string{LabelAttempt: a.ID, LabelJob: a.JobID, LabelPool: p.Pool, LabelProject: a.Project}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: a.Namespace, Labels: maps.Clone(labels)}
	}
	index := func(env string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: completionPath}}}
	}
	env := []corev1.EnvVar{
		{Name: "LODE_SERVER", Value: p.ServerURL},
		{Name: "LODE_ATTEMPT", Value: a.ID},
		index("LODE_RANK"),
		{Name: "LODE_FENCING_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: tokenKey}}},
		{Name: "LODE_TASK_DIR", Value: taskDir},
	}
	if len(p.CA) > 0 {
		env = append(env, corev1.EnvVar{Name: "LODE_CA", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: caKey}}})
	}
	env = append(env, []corev1.EnvVar{
		// torchrun's variables, as an agent sets them: one process per
		// rank, ranks numbered by the Job's completion index.
		{Name: "WORLD_SIZE", Value: strconv.Itoa(a.Ranks)},
		index("RANK"),
		index("NODE_RANK"),
		{Name: "LOCAL_RANK", Value: "0"},
		{Name: "LOCAL_WORLD_SIZE", Value: "1"},
		{Name: "MASTER_ADDR", Value: MasterAddr(name, a.Namespace)},
		{Name: "MASTER_PORT", Value: strconv.Itoa(port)},
	}...)

	requests := corev1.ResourceList{}
	if a.Resources.MilliCPUs > 0 {
		requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(a.Resources.MilliCPUs, resource.DecimalSI)
	}
	if a.Resources.MemoryBytes > 0 {
		requests[corev1.ResourceMemory] = *resource.NewQuantity(a.Resources.MemoryBytes, resource.BinarySI)
	}
	var limits corev1.ResourceList
	var nodeSelector map[string]string
	var tolerations []corev1.Toleration
	if a.Resources.GPUs > 0 {
		if a.GPU == nil {
			return nil, fmt.Errorf("the job asks for %d GPUs and the pool knows no GPU model for it", a.Resources.GPUs)
		}
		// Extended resources are asked for by limit; the request must
		// equal it.
		gpus := *resource.NewQuantity(int64(a.Resources.GPUs), resource.DecimalSI)
		rn := corev1.ResourceName(a.GPU.ResourceName)
		requests[rn] = gpus
		limits = corev1.ResourceList{rn: gpus}
	}
	if a.GPU != nil {
		nodeSelector = maps.Clone(a.GPU.NodeSelector)
		tolerations = Tolerations(a.GPU.Tolerations)
	}

	podLabels := maps.Clone(labels)
	job := &batchv1.Job{
		ObjectMeta: meta(),
		Spec: batchv1.JobSpec{
			Completions:    ptr(int32(a.Ranks)),
			Parallelism:    ptr(int32(a.Ranks)),
			CompletionMode: ptr(batchv1.IndexedCompletion),
			// Lode places the job again itself, from its checkpoint,
			// and counts its retries: a failed pod fails the Job.
			BackoffLimit:         ptr(int32(0)),
			PodReplacementPolicy: ptr(batchv1.Failed),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: maps.Clone(p.Annotations)},
				Spec: corev1.PodSpec{
					RestartPolicy:   corev1.RestartPolicyNever,
					SchedulingGates: []corev1.PodSchedulingGate{{Name: PlacementGate}},
					Subdomain:       name,
					NodeSelector:    nodeSelector,
					Tolerations:     tolerations,
					// The job talks to Lode, not to the cluster: it gets
					// no service-account token and no service variables.
					AutomountServiceAccountToken: ptr(false),
					EnableServiceLinks:           ptr(false),
					InitContainers: []corev1.Container{{
						Name:         installName,
						Image:        p.Image,
						Command:      []string{"/lode", "runner", "--install", binDir},
						VolumeMounts: []corev1.VolumeMount{{Name: binVolume, MountPath: binDir}},
					}},
					Containers: []corev1.Container{{
						Name:      containerName,
						Image:     image,
						Command:   append([]string{binDir + "/lode", "runner", "--"}, a.Command...),
						Env:       env,
						Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits},
						VolumeMounts: []corev1.VolumeMount{
							{Name: binVolume, MountPath: binDir, ReadOnly: true},
							{Name: taskVolume, MountPath: taskDir},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: binVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						// Decrypted inputs and checkpoints live in memory
						// only, never on the node's disks.
						{Name: taskVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
					},
				},
			},
		},
	}
	if p.Queue != "" {
		job.Labels[LabelQueue] = p.Queue
	}

	svc := &corev1.Service{
		ObjectMeta: meta(),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			// Rank 0 alone backs the Service, so the pod's host name
			// under it, MASTER_ADDR, is rank 0's address.
			Selector: map[string]string{LabelAttempt: a.ID, batchv1.JobCompletionIndexAnnotation: "0"},
			// Other ranks look rank 0 up while it starts, before it is
			// ready.
			PublishNotReadyAddresses: true,
			Ports:                    []corev1.ServicePort{{Name: "master", Port: int32(port)}},
		},
	}
	secret := &corev1.Secret{
		ObjectMeta: meta(),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{tokenKey: []byte(a.FencingToken)},
	}
	if len(p.CA) > 0 {
		secret.Data[caKey] = p.CA
	}
	return &Objects{Job: job, Service: svc, Secret: secret}, nil
}

// Owned makes obj a dependent of the Job: the garbage collector deletes it
// with the Job, and a foreground deletion of the Job waits for it.
func Owned(obj *metav1.ObjectMeta, job *batchv1.Job) {
	obj.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
		BlockOwnerDeletion: ptr(true),
	}}
}

// Tolerations converts the pools file's tolerations.
func Tolerations(ts []poolfile.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	return out
}

// Pin is the node affinity that holds a rank's pod to the node Lode chose
// for it. A field selector on the name, not a hostname label: node names
// are unique, host-name labels need not be.
func Pin(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}},
			}},
		},
	}}
}

func ptr[T any](v T) *T { return &v }
