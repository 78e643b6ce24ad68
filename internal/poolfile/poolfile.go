// Package poolfile reads the declarative pools file a server can load at
// start (`lode server --pools FILE`): every pool it names is created, or
// updated to match, so an installation's pools can live in version control.
// A pool of driver kubernetes also says here how to reach its cluster and
// what its pods look like; the server starts a driver for each.
package poolfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

// Drivers a pool may name.
const (
	DriverAgent      = "agent"
	DriverKubernetes = "kubernetes"
)

// Pool is one pool of the file.
type Pool struct {
	Name         string       `yaml:"name"`
	Driver       string       `yaml:"driver"`
	Region       string       `yaml:"region"`
	Tier         string       `yaml:"tier"`
	State        string       `yaml:"state"`
	Interconnect Interconnect `yaml:"interconnect"`
	Prices       Prices       `yaml:"prices"`
	// Kubernetes is required by, and only allowed for, driver kubernetes.
	Kubernetes *Kubernetes `yaml:"kubernetes"`
	line       int
	node       *yaml.Node
}

// Interconnect is the file's form of core.Interconnect.
type Interconnect struct {
	Domain    string  `yaml:"domain"`
	Gbps      float64 `yaml:"gbps"`
	MultiNode bool    `yaml:"multi_node"`
}

// Prices is the file's form of core.Prices.
type Prices struct {
	GPUHour    map[string]float64 `yaml:"gpu_hour"`
	CPUHour    float64            `yaml:"cpu_hour"`
	MemGiBHour float64            `yaml:"mem_gib_hour"`
}

// DefaultPendingTimeout is how long a pod of a Kubernetes pool may wait to
// start before its capacity is given back and the job placed again.
const DefaultPendingTimeout = 10 * time.Minute

// DefaultGPUResource is the extended resource GPUs are asked for by,
// unless a model names another.
const DefaultGPUResource = "nvidia.com/gpu"

// Kubernetes is a Kubernetes pool's cluster and the shape of its pods.
type Kubernetes struct {
	// Kubeconfig is the path of a kubeconfig file; empty means the
	// server runs in the cluster and uses its service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// Context picks a context of the kubeconfig (its current one if empty).
	Context string `yaml:"context"`
	// Namespace holds the pool's objects: the context's namespace, or
	// "default", if empty. NamespacePerProject puts each job in the
	// namespace named after its project instead, which must exist.
	Namespace           string `yaml:"namespace"`
	NamespacePerProject bool   `yaml:"namespace_per_project"`
	// Image is the lode image whose init container installs the runner
	// into each pod; lode:VERSION by default.
	Image string `yaml:"image"`
	// JobImage runs jobs whose spec names no image.
	JobImage string `yaml:"job_image"`
	// ServerURL is the Lode server's address as the pods reach it; the
	// server's public URL by default.
	ServerURL string `yaml:"server_url"`
	// PendingTimeout bounds how long a pod may wait to start (10m).
	PendingTimeout Duration `yaml:"pending_timeout"`
	// Queue is a Kueue LocalQueue name, set as the Job's
	// kueue.x-k8s.io/queue-name label.
	Queue string `yaml:"queue"`
	// NodeSelector narrows the pool to the nodes with these labels.
	NodeSelector map[string]string `yaml:"node_selector"`
	// PodAnnotations are added to every pod the pool creates.
	PodAnnotations map[string]string `yaml:"pod_annotations"`
	// GPUs maps a GPU model, as job specs name models, to the nodes that
	// have it. Without any, the pool offers its nodes' CPUs and memory.
	GPUs map[string]GPUNodes `yaml:"gpus"`
}

// GPUNodes says how to find the nodes of one GPU model and ask for their
// GPUs.
type GPUNodes struct {
	NodeSelector map[string]string `yaml:"node_selector"`
	Tolerations  []Toleration      `yaml:"tolerations"`
	// ResourceName is the extended resource of the GPUs (nvidia.com/gpu).
	ResourceName string `yaml:"resource_name"`
}

// Toleration is a Kubernetes toleration, under the same names.
type Toleration struct {
	Key               string `yaml:"key"`
	Operator          string `yaml:"operator"`
	Value             string `yaml:"value"`
	Effect            string `yaml:"effect"`
	TolerationSeconds *int64 `yaml:"toleration_seconds"`
}

// Duration is a duration written as Go writes them ("90s", "10m").
type Duration time.Duration

// UnmarshalYAML reads a duration, naming the line of a bad one.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: bad duration %q (write it like 90s or 10m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

type file struct {
	Pools []Pool `yaml:"pools"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// Parse reads a pools file. Every problem is reported, each with the file
// and line.
func Parse(filename string, data []byte) ([]Pool, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty pools file (write pools: [...])", filename)
		}
		return nil, fmt.Errorf("%s: %v", filename, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %v", filename, err)
	}
	items := poolNodes(&root)
	var errs []error
	seen := map[string]int{}
	for i := range f.Pools {
		p := &f.Pools[i]
		if i < len(items) {
			p.node, p.line = items[i], items[i].Line
		}
		// bad reports a problem at the line of the key path names, or of
		// the pool when the path is not in the file.
		bad := func(path []string, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: pools[%d]: %s", filename, p.keyLine(path...), i, fmt.Sprintf(format, args...)))
		}
		if !namePattern.MatchString(p.Name) {
			bad([]string{"name"}, "bad name %q (lower-case letters, digits, '.', '_' and '-')", p.Name)
		}
		if prev, ok := seen[p.Name]; ok {
			bad(nil, "pool %q is named twice (first on line %d)", p.Name, prev)
		}
		seen[p.Name] = p.line
		switch p.driver() {
		case DriverAgent:
			if p.Kubernetes != nil {
				bad([]string{"kubernetes"}, "a kubernetes: section needs driver: kubernetes (the pool's driver is %s)", p.driver())
			}
		case DriverKubernetes:
			if p.Kubernetes == nil {
				bad([]string{"driver"}, "driver kubernetes needs a kubernetes: section (kubeconfig, namespace, gpus; see docs/kubernetes.md)")
			}
		default:
			bad([]string{"driver"}, "unknown driver %q (agent or kubernetes)", p.Driver)
		}
		if _, err := p.spec(); err != nil {
			bad(nil, "%v", err)
		}
		if k := p.Kubernetes; k != nil {
			for _, pr := range k.problems() {
				bad(append([]string{"kubernetes"}, pr.path...), "kubernetes.%s: %s", strings.Join(pr.path, "."), pr.msg)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f.Pools, nil
}

// poolNodes finds each item of the top-level pools list.
func poolNodes(root *yaml.Node) []*yaml.Node {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "pools" {
			return m.Content[i+1].Content
		}
	}
	return nil
}

// keyLine is the line of the deepest key of path found in the pool's
// mapping, or the pool's own line.
func (p *Pool) keyLine(path ...string) int {
	line, n := p.line, p.node
	for _, key := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		n = next
	}
	return line
}

func (p *Pool) driver() string {
	if p.Driver == "" {
		return DriverAgent
	}
	return p.Driver
}

// Spec is the pool as an API pool spec, with every field set; driver, tier
// and state default to agent, community and active.
func (p *Pool) Spec() *wire.PoolSpec {
	s, _ := p.spec()
	return s
}

func (p *Pool) spec() (*wire.PoolSpec, error) {
	tier, state := p.Tier, p.State
	if tier == "" {
		tier = core.TierCommunity.String()
	}
	if state == "" {
		state = "active"
	}
	var errs []error
	if _, err := core.ParseTier(tier); err != nil {
		errs = append(errs, err)
	}
	switch state {
	case "active", "draining", "quarantined":
	default:
		errs = append(errs, fmt.Errorf("unknown state %q (active, draining or quarantined)", state))
	}
	if p.Interconnect.Gbps < 0 {
		errs = append(errs, fmt.Errorf("interconnect.gbps must not be negative"))
	}
	prices := core.Prices{GPUHour: map[string]float64{}, CPUHour: p.Prices.CPUHour, MemGiBHour: p.Prices.MemGiBHour}
	if prices.CPUHour < 0 || prices.MemGiBHour < 0 {
		errs = append(errs, fmt.Errorf("prices must not be negative"))
	}
	for m, v := range p.Prices.GPUHour {
		if v < 0 {
			errs = append(errs, fmt.Errorf("prices.gpu_hour.%s must not be negative", m))
		}
		prices.GPUHour[core.NormalizeGPUModel(m)] = v
	}
	ic := core.Interconnect{Domain: p.Interconnect.Domain, Gbps: p.Interconnect.Gbps, MultiNode: p.Interconnect.MultiNode}
	return &wire.PoolSpec{
		Name: p.Name, Driver: p.driver(), Region: &p.Region, Tier: &tier, State: &state,
		Interconnect: &ic, Prices: &prices,
	}, errors.Join(errs...)
}

// Timeout is how long a pod may wait to start.
func (k *Kubernetes) Timeout() time.Duration {
	if k.PendingTimeout == 0 {
		return DefaultPendingTimeout
	}
	return time.Duration(k.PendingTimeout)
}

// Models returns the GPU models by normalized name, each with its resource
// name filled in.
func (k *Kubernetes) Models() map[string]GPUNodes {
	out := make(map[string]GPUNodes, len(k.GPUs))
	for name, g := range k.GPUs {
		if g.ResourceName == "" {
			g.ResourceName = DefaultGPUResource
		}
		out[core.NormalizeGPUModel(name)] = g
	}
	return out
}

type problem struct {
	path []string
	msg  string
}

// problems lists what is wrong with a kubernetes: section, each with the
// path of its key.
func (k *Kubernetes) problems() []problem {
	var out []problem
	bad := func(path []string, format string, args ...any) {
		out = append(out, problem{path: path, msg: fmt.Sprintf(format, args...)})
	}
	if k.Namespace != "" && k.NamespacePerProject {
		bad([]string{"namespace"}, "set namespace or namespace_per_project, not both")
	}
	if k.Namespace != "" {
		for _, e := range validation.IsDNS1123Label(k.Namespace) {
			bad([]string{"namespace"}, "bad namespace %q: %s", k.Namespace, e)
		}
	}
	if k.ServerURL != "" {
		if u, err := url.Parse(k.ServerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad([]string{"server_url"}, "bad URL %q: want http(s)://HOST[:PORT]", k.ServerURL)
		}
	}
	if k.Queue != "" {
		for _, e := range validation.IsValidLabelValue(k.Queue) {
			bad([]string{"queue"}, "bad queue name %q: %s", k.Queue, e)
		}
	}
	out = append(out, selectorProblems("node_selector", k.NodeSelector)...)
	for _, key := range sortedKeys(k.PodAnnotations) {
		for _, e := range validation.IsQualifiedName(key) {
			bad([]string{"pod_annotations"}, "bad annotation key %q: %s", key, e)
		}
	}
	seen := map[string]string{}
	for _, name := range sortedKeys(k.GPUs) {
		g := k.GPUs[name]
		path := []string{"gpus", name}
		norm := core.NormalizeGPUModel(name)
		if norm == "" {
			bad(path, "a GPU model needs a name")
		} else if prev, ok := seen[norm]; ok {
			bad(path, "%q and %q name the same GPU model", prev, name)
		}
		seen[norm] = name
		if len(g.NodeSelector) == 0 {
			bad(path, "a node_selector is needed to tell this model's nodes (for example nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3)")
		}
		for _, p := range selectorProblems("node_selector", g.NodeSelector) {
			out = append(out, problem{path: append(path, p.path...), msg: p.msg})
		}
		if g.ResourceName != "" {
			if errs := validation.IsQualifiedName(g.ResourceName); len(errs) > 0 || !strings.Contains(g.ResourceName, "/") {
				bad(append(path, "resource_name"), "bad resource name %q: an extended resource is DOMAIN/NAME, like nvidia.com/gpu", g.ResourceName)
			}
		}
		for i, t := range g.Tolerations {
			for _, msg := range t.problems() {
				bad(append(path, "tolerations"), "[%d]: %s", i, msg)
			}
		}
	}
	return out
}

func selectorProblems(path string, sel map[string]string) []problem {
	var out []problem
	for _, key := range sortedKeys(sel) {
		for _, e := range validation.IsQualifiedName(key) {
			out = append(out, problem{[]string{path}, fmt.Sprintf("bad label key %q: %s", key, e)})
		}
		for _, e := range validation.IsValidLabelValue(sel[key]) {
			out = append(out, problem{[]string{path}, fmt.Sprintf("bad value %q of label %s: %s", sel[key], key, e)})
		}
	}
	return out
}

func (t Toleration) problems() []string {
	var out []string
	switch t.Operator {
	case "", "Equal":
	case "Exists":
		if t.Value != "" {
			out = append(out, "operator Exists takes no value")
		}
	default:
		out = append(out, fmt.Sprintf("unknown operator %q (Equal or Exists)", t.Operator))
	}
	switch t.Effect {
	case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
	default:
		out = append(out, fmt.Sprintf("unknown effect %q (NoSchedule, PreferNoSchedule or NoExecute)", t.Effect))
	}
	if t.TolerationSeconds != nil && t.Effect != "NoExecute" {
		out = append(out, "toleration_seconds needs effect NoExecute")
	}
	if t.Key == "" && t.Operator != "Exists" {
		out = append(out, "a toleration without a key must have operator Exists")
	}
	if t.Key != "" {
		for _, e := range validation.IsQualifiedName(t.Key) {
			out = append(out, fmt.Sprintf("bad key %q: %s", t.Key, e))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
