// Package kubetest gives tests a real Kubernetes control plane with fake GPU nodes: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok, all on 127.0.0.1, started
// by scripts/kube/up.sh and stopped by scripts/kube/down.sh, so that the scripts stay the one
// description of how the stack runs. The binaries are built once by scripts/kube/build.sh
// (make engines) and cached by version; without them a test skips, or fails under CI=true.
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultGPUProduct is the nvidia.com/gpu.product label of fake nodes unless a test asks for
// another; the NVIDIA GPU operator sets the same label on real ones.
const DefaultGPUProduct = "NVIDIA-H100-80GB-HBM3"

// GPUProductLabel is the node label that names a node's GPU model.
const GPUProductLabel = "nvidia.com/gpu.product"

// startTimeout bounds up.sh; the stack is ready in seconds once the binaries are cached.
const startTimeout = 3 * time.Minute

// Cluster is a running stack. Its methods fail the test on error; they may run concurrently.
type Cluster struct {
	// Kubeconfig is the path of an admin kubeconfig (token auth, system:masters).
	Kubeconfig string
	// Dir holds the stack's logs (Dir/logs), pids, keys and etcd data.
	Dir string

	scripts string // scripts/kube
	kubectl string
}

// Node describes a fake GPU node; zero fields take the defaults of scripts/kube/node.sh
// (8 GPUs of DefaultGPUProduct, 64 CPUs, 512Gi of memory).
type Node struct {
	Name    string
	GPUs    int
	Product string
}

// Options change the stack Start makes.
type Options struct {
	// Nodes is how many default fake GPU nodes to make (gpu-node-0, ...); 0 means
	// LODE_KUBE_NODES, or 2. NoNodes makes none.
	Nodes   int
	NoNodes bool
}

// Start starts a stack with LODE_KUBE_NODES fake GPU nodes (default 2: gpu-node-0 and
// gpu-node-1), waits until it is ready, and stops it when the test ends. Without the cached
// binaries the test skips, or fails when CI=true, naming the command that builds them.
//
// kwok runs the pods (scripts/kube/stages): a pod of a Job becomes Ready as soon as it is
// scheduled and succeeds at once, unless its annotations say otherwise:
// pod-ready.stage.kwok.x-k8s.io/delay and pod-complete.stage.kwok.x-k8s.io/delay (Go durations)
// hold it Pending or Running that long, and lode.dev/kwok-exit-code makes its containers exit
// with that code. Pods of no Job run until deleted.
func Start(t testing.TB, opts ...Options) *Cluster {
	t.Helper()
	scripts, err := findScripts()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	e, err := locateEngines(scripts)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if missing := e.missing(); len(missing) > 0 {
		msg := fmt.Sprintf("kubetest: the Kubernetes engines are not built (missing %s); build them once with\n\t%s\n(or `make engines`: about 6 minutes on 2 cores, once)",
			strings.Join(missing, ", "), filepath.Join(scripts, "build.sh"))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	c := &Cluster{Dir: t.TempDir(), scripts: scripts, kubectl: e.kubectl()}
	// Registered before up.sh runs, and so run before t.TempDir removes the folder.
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
		if out, err := exec.Command(filepath.Join(scripts, "down.sh"), c.Dir).CombinedOutput(); err != nil {
			t.Errorf("kubetest: down.sh: %v\n%s", err, out)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(scripts, "up.sh"), c.Dir)
	// Should the test binary die without running its cleanups, the stack goes down with it.
	cmd.Env = append(os.Environ(), "LODE_KUBE_OWNER_PID="+strconv.Itoa(os.Getpid()))
	for _, o := range opts {
		switch {
		case o.NoNodes:
			cmd.Env = append(cmd.Env, "LODE_KUBE_NODES=0")
		case o.Nodes > 0:
			cmd.Env = append(cmd.Env, "LODE_KUBE_NODES="+strconv.Itoa(o.Nodes))
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetest: up.sh: %v\n%s", err, stderr.Bytes())
	}
	c.Kubeconfig = strings.TrimSpace(stdout.String())
	if last := lastLine(stderr.String()); last != "" {
		t.Log(last)
	}
	return c
}

// Client returns a client for the cluster.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	k, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return k
}

// ServiceAccountKubeconfig writes a kubeconfig that acts as a service account, with a token
// for it, and returns its path: how a test checks that a set of RBAC rules is enough.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	tok, err := c.Client(t).CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: a token for %s/%s: %v", namespace, name, err)
	}
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	for _, auth := range cfg.AuthInfos {
		*auth = clientcmdapi.AuthInfo{Token: tok.Status.Token}
	}
	path := filepath.Join(c.Dir, namespace+"-"+name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return path
}

func ptr[T any](v T) *T { return &v }

// Kubectl runs the cached kubectl against the cluster and returns its standard output.
func (c *Cluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.kubectlOutput("", args...)
	if err != nil {
		t.Fatalf("kubetest: kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Apply creates or updates the objects of a YAML or JSON manifest.
func (c *Cluster) Apply(t testing.TB, manifest string) {
	t.Helper()
	if _, err := c.kubectlOutput(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubetest: kubectl apply: %v\n%s", err, manifest)
	}
}

func (c *Cluster) kubectlOutput(stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// AddNodes creates fake GPU nodes and waits until they are Ready.
func (c *Cluster) AddNodes(t testing.TB, nodes ...Node) {
	t.Helper()
	for _, n := range nodes {
		args := []string{c.Dir, "add"}
		if n.GPUs > 0 {
			args = append(args, "--gpus", strconv.Itoa(n.GPUs))
		}
		if n.Product != "" {
			args = append(args, "--product", n.Product)
		}
		c.script(t, "node.sh", append(args, n.Name)...)
	}
}

// DeleteNodes deletes nodes and waits until they are gone: how a test loses a node. Their pods
// are left to the controllers, as when a real node disappears.
func (c *Cluster) DeleteNodes(t testing.TB, names ...string) {
	t.Helper()
	c.script(t, "node.sh", append([]string{c.Dir, "delete"}, names...)...)
}

func (c *Cluster) script(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(filepath.Join(c.scripts, name), args...).CombinedOutput(); err != nil {
		t.Fatalf("kubetest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// logTails shows the end of every component's log, for a test that failed.
func (c *Cluster) logTails(t testing.TB) {
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "logs", "*.log"))
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		lines = lines[max(0, len(lines)-15):]
		t.Logf("kubetest: the end of %s:\n%s", filepath.Base(path), strings.Join(lines, "\n"))
	}
}

// engines says where scripts/kube/build.sh caches the binaries of the versions in
// scripts/kube/versions.env; it mirrors engines_missing in scripts/kube/lib.sh.
type engines struct {
	root     string
	versions map[string]string
}

func locateEngines(scripts string) (engines, error) {
	versions, err := readVersions(filepath.Join(scripts, "versions.env"))
	if err != nil {
		return engines{}, err
	}
	root := os.Getenv("LODE_KUBE_ENGINES")
	if root == "" {
		// os.UserCacheDir follows XDG_CACHE_HOME, then ~/.cache, as lib.sh does.
		cache, err := os.UserCacheDir()
		if err != nil {
			return engines{}, fmt.Errorf("no cache folder for the engines (set LODE_KUBE_ENGINES): %w", err)
		}
		root = filepath.Join(cache, "lode", "engines")
	}
	return engines{root: root, versions: versions}, nil
}

func (e engines) dir(name, key string) string {
	return filepath.Join(e.root, name+"-"+e.versions[key])
}

func (e engines) kubectl() string {
	return filepath.Join(e.dir("kubernetes", "KUBERNETES_VERSION"), "kubectl")
}

func (e engines) missing() []string {
	kube := e.dir("kubernetes", "KUBERNETES_VERSION")
	kwok := e.dir("kwok", "KWOK_VERSION")
	var missing []string
	for _, path := range []string{
		filepath.Join(kube, "kube-apiserver"),
		filepath.Join(kube, "kube-controller-manager"),
		filepath.Join(kube, "kube-scheduler"),
		filepath.Join(kube, "kubectl"),
		filepath.Join(e.dir("etcd", "ETCD_VERSION"), "etcd"),
		filepath.Join(kwok, "kwok"),
	} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	return missing
}

// readVersions reads the KEY=VALUE lines of scripts/kube/versions.env.
func readVersions(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	versions := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		versions[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var errs []error
	for _, key := range []string{"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION"} {
		if versions[key] == "" {
			errs = append(errs, fmt.Errorf("%s: no %s", path, key))
		}
	}
	return versions, errors.Join(errs...)
}

// findScripts finds scripts/kube from the working folder, which go test sets to the package's.
func findScripts() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		scripts := filepath.Join(dir, "scripts", "kube")
		if _, err := os.Stat(filepath.Join(scripts, "up.sh")); err == nil {
			return scripts, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("found no scripts/kube/up.sh above the working folder")
		}
		dir = parent
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
