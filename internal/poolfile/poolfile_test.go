package poolfile

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const good = `pools:
  - name: rigs-eu
    region: eu-west
    tier: community
    interconnect: {domain: rigs, gbps: 1}
    prices: {gpu_hour: {RTX 3090: 0.30, rtx4090: 0.45}, cpu_hour: 0.01}
  - name: cloud-us
    region: us-east
    tier: certified
    interconnect: {domain: efa, gbps: 400, multi_node: true}
    prices: {gpu_hour: {a100: 3.20}}
`

const goodKube = `pools:
  - name: eks-us
    driver: kubernetes
    region: us-east-1
    tier: certified
    interconnect: {domain: efa, gbps: 400, multi_node: true}
    prices: {gpu_hour: {h100: 4.10}}
    kubernetes:
      kubeconfig: /etc/lode/eks.kubeconfig
      context: eks-us
      namespace: lode-jobs
      image: registry.example.com/lode:1.2
      server_url: https://lode.example.com
      pending_timeout: 90s
      queue: team-a
      node_selector: {lode.dev/pool: eks-us}
      pod_annotations: {example.com/owner: ml}
      gpus:
        H100:
          node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
          tolerations:
            - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
        MI300X:
          node_selector: {amd.com/gpu.product: MI300X}
          resource_name: amd.com/gpu
  - name: gke
    driver: kubernetes
    kubernetes:
      namespace_per_project: true
      gpus:
        a100: {node_selector: {cloud.google.com/gke-accelerator: nvidia-tesla-a100}}
`

func TestParseKubernetes(t *testing.T) {
	pools, err := Parse("pools.yaml", []byte(goodKube))
	if err != nil {
		t.Fatal(err)
	}
	if s := pools[0].Spec(); s.Driver != DriverKubernetes {
		t.Errorf("driver %q, want kubernetes", s.Driver)
	}
	k := pools[0].Kubernetes
	if k.Timeout() != 90*time.Second || k.Queue != "team-a" || k.Namespace != "lode-jobs" || k.Context != "eks-us" {
		t.Errorf("eks-us: %+v", k)
	}
	models := k.Models()
	want := map[string]GPUNodes{
		"h100": {NodeSelector: map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, ResourceName: "nvidia.com/gpu",
			Tolerations: []Toleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}}},
		"mi300x": {NodeSelector: map[string]string{"amd.com/gpu.product": "MI300X"}, ResourceName: "amd.com/gpu"},
	}
	if diff := cmp.Diff(want, models); diff != "" {
		t.Errorf("models (-want +got):\n%s", diff)
	}
	if g := pools[1].Kubernetes; !g.NamespacePerProject || g.Timeout() != DefaultPendingTimeout {
		t.Errorf("gke: %+v", g)
	}
}

func TestParse(t *testing.T) {
	pools, err := Parse("pools.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 2 {
		t.Fatalf("got %d pools, want 2", len(pools))
	}
	s := pools[0].Spec()
	if *s.Tier != "community" || *s.State != "active" || s.Prices.GPUHour["rtx3090"] != 0.30 || s.Prices.CPUHour != 0.01 {
		t.Errorf("rigs-eu = %+v %+v", s, s.Prices)
	}
	if c := pools[1].Spec(); !c.Interconnect.MultiNode || c.Interconnect.Gbps != 400 || *c.Tier != "certified" {
		t.Errorf("cloud-us interconnect = %+v", c.Interconnect)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown key", "pools:\n  - name: a\n    colour: red\n", []string{"line 3", "colour"}},
		{"bad values", "pools:\n  - name: a\n    tier: gold\n  - name: B!\n    prices: {cpu_hour: -1}\n",
			[]string{"pools.yaml:2: pools[0]", "gold", "pools.yaml:4: pools[1]", "bad name", "negative"}},
		{"twice", "pools:\n  - name: a\n  - name: a\n", []string{"pools.yaml:3", "named twice (first on line 2)"}},
		{"empty", "", []string{"empty pools file"}},
		{"wrong type", "pools: {name: a}\n", []string{"line 1"}},
		{"unknown driver", "pools:\n  - name: a\n    driver: slurm\n", []string{"pools.yaml:3", "unknown driver \"slurm\""}},
		{"kubernetes without its section", "pools:\n  - name: a\n    driver: kubernetes\n", []string{"pools.yaml:3", "needs a kubernetes: section"}},
		{"section without the driver", "pools:\n  - name: a\n    kubernetes: {namespace: x}\n", []string{"pools.yaml:3", "needs driver: kubernetes"}},
		{"unknown kubernetes key", "pools:\n  - name: a\n    driver: kubernetes\n    kubernetes: {namespaces: x}\n", []string{"line 4", "namespaces"}},
		{"bad duration", "pools:\n  - name: a\n    driver: kubernetes\n    kubernetes:\n      pending_timeout: soon\n",
			[]string{"line 5", "bad duration \"soon\""}},
		{"bad kubernetes values", `pools:
  - name: a
    driver: kubernetes
    kubernetes:
      namespace: Not_A_Namespace
      namespace_per_project: true
      server_url: lode.example.com
      gpus:
        h100:
          resource_name: gpu
          tolerations:
            - {key: nvidia.com/gpu, operator: Exists, value: "1", effect: Sometimes}
        H-100: {node_selector: {"bad key!": x}}
`, []string{
			"pools.yaml:5: pools[0]: kubernetes.namespace: set namespace or namespace_per_project, not both",
			"pools.yaml:5: pools[0]: kubernetes.namespace: bad namespace",
			"pools.yaml:7: pools[0]: kubernetes.server_url: bad URL",
			"pools.yaml:9: pools[0]: kubernetes.gpus.h100: a node_selector is needed",
			"pools.yaml:10: pools[0]: kubernetes.gpus.h100.resource_name: bad resource name \"gpu\"",
			"pools.yaml:11: pools[0]: kubernetes.gpus.h100.tolerations: [0]: operator Exists takes no value",
			"unknown effect \"Sometimes\"",
			"pools.yaml:9: pools[0]: kubernetes.gpus.h100: \"H-100\" and \"h100\" name the same GPU model",
			"pools.yaml:13: pools[0]: kubernetes.gpus.H-100.node_selector: bad label key \"bad key!\"",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("pools.yaml", []byte(tt.in))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("pools:\n  - name: a\n")
	f.Add("pools: [")
	f.Add(goodKube)
	f.Add("pools:\n  - name: k\n    driver: kubernetes\n    kubernetes: {gpus: {h100: {node_selector: {a: b}, tolerations: [{operator: Exists}]}}}\n")
	f.Fuzz(func(t *testing.T, in string) {
		pools, err := Parse("f.yaml", []byte(in))
		if err != nil {
			return
		}
		for _, p := range pools {
			if _, err := p.spec(); err != nil {
				t.Errorf("accepted a pool whose spec fails: %v", err)
			}
			if (p.Kubernetes != nil) != (p.Spec().Driver == DriverKubernetes) {
				t.Errorf("accepted pool %s of driver %s with kubernetes section %v", p.Name, p.Spec().Driver, p.Kubernetes)
			}
			if k := p.Kubernetes; k != nil {
				if pr := k.problems(); len(pr) > 0 {
					t.Errorf("accepted a kubernetes section with problems: %v", pr)
				}
				for m, g := range k.Models() {
					if m == "" || g.ResourceName == "" || len(g.NodeSelector) == 0 {
						t.Errorf("accepted GPU model %q: %+v", m, g)
					}
				}
			}
		}
	})
}
