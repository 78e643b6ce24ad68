package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

const threePools = `pools:
  - name: rigs
    region: eu-west
    tier: community
    interconnect: {domain: home, gbps: 1}
    prices: {gpu_hour: {rtx3090: 0.30}, cpu_hour: 0.01}
  - name: cloud
    region: eu-west
    tier: certified
    interconnect: {domain: vpc, gbps: 25}
    prices: {gpu_hour: {a100: 3.20}, cpu_hour: 0.05}
  - name: hpc
    region: eu-west
    tier: verified
    interconnect: {domain: ib, gbps: 200, multi_node: true}
    prices: {gpu_hour: {a100: 2.10}, cpu_hour: 0.04}
`

// TestPlacementFollowsPolicyAndPrice: a confidential single-GPU job goes to
// the certified cloud (the rigs are cheaper but not trusted with it), a
// 4-node gang to the pool with fast interconnect, a public single-GPU job
// to the cheap rigs; and `lode cost` shows what each would have cost
// elsewhere.
func TestPlacementFollowsPolicyAndPrice(t *testing.T) {
	poolsFile := filepath.Join(t.TempDir(), "pools.yaml")
	os.WriteFile(poolsFile, []byte(threePools), 0o644)
	cl := startServer(t, "--no-local-pool", "--pools", poolsFile)
	join := func(pool, name, gpus string) {
		tok, err := cl.c.JoinToken(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		a := start(t, cl.env(), "agent", "--server", cl.url, "--join-token", tok.Token, "--name", name,
			"--dir", filepath.Join(t.TempDir(), name), "--gpus", gpus, "--cpus", "4", "--memory", "8GiB")
		a.out.waitMatch(t, regexp.MustCompile(`msg=joined`), 20*time.Second)
	}
	join("rigs", "rig-1", "2xrtx3090")
	join("cloud", "cloud-1", "2xa100")
	for _, n := range []string{"hpc-1", "hpc-2"} {
		join("hpc", n, "2xa100")
	}

	submit := func(name, extra string) string {
		return detachedJob(t, cl, script(t, "resources: {gpus: 1, cpus: 1, memory: 1GiB}\nestimate: 2h\n"+extra, "echo "+name+"\n", nil))
	}
	confidential := submit("confidential", "classification: confidential\n")
	gang := submit("gang", "nodes: 4\ninterconnect: {min_gbps: 100}\n")
	public := submit("public", "classification: public\n")

	want := map[string]string{confidential: "cloud", gang: "hpc", public: "rigs"}
	pools := map[string]string{}
	ps, _ := cl.c.Pools(context.Background())
	for _, p := range ps {
		pools[p.ID] = p.Name
	}
	for id, pool := range want {
		d := cl.waitState(id, core.JobSucceeded, 60*time.Second)
		if got := pools[d.AttemptList[0].PoolID]; got != pool {
			t.Errorf("job %s (%s) ran on %s, want %s", id, d.Name, got, pool)
		}
	}

	// The confidential job could not have run on the rigs at any price;
	// the public one could have run in the cloud, at a higher price.
	code, stdout, stderr := cl.run("explain", confidential)
	if code != 0 || !strings.Contains(stdout, "rigs") || !strings.Contains(stdout, "confidential") {
		t.Errorf("explain %s: exit %d\n%s%s", confidential, code, stdout, stderr)
	}
	code, stdout, stderr = cl.run("cost", public, "-o", "json")
	if code != 0 {
		t.Fatalf("cost: %s", stderr)
	}
	var jc wire.JobCost
	if err := json.Unmarshal([]byte(stdout), &jc); err != nil {
		t.Fatal(err)
	}
	if len(jc.Usage) != 1 {
		t.Fatalf("usage = %+v; want one record", jc.Usage)
	}
	alt := map[string]float64{}
	for _, a := range jc.Alternatives {
		alt[a.Pool] = a.Ratio
	}
	if _, ok := alt["cloud"]; !ok || len(jc.Alternatives) < 1 {
		t.Errorf("alternatives = %+v; want the cloud priced", jc.Alternatives)
	}
	if jc.Total > 0 && alt["cloud"] <= 1 {
		t.Errorf("the cloud would have cost %.2fx the rigs; want more", alt["cloud"])
	}

	// A dry run shows every pool with a reason or a price, cheapest first.
	spec := script(t, "resources: {gpus: 1}\nclassification: confidential\nestimate: 1h\n", "true\n", nil)
	code, stdout, stderr = cl.run("run", "--dry-run", spec)
	if code != 0 {
		t.Fatalf("dry run: %s", stderr)
	}
	for _, w := range []string{"cloud", "rigs", "hpc", "nothing was submitted"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, stdout)
		}
	}
	jobs, _ := cl.c.Jobs(context.Background(), "", 0)
	if len(jobs) != 3 {
		t.Errorf("%d jobs after a dry run; want the 3 submitted", len(jobs))
	}
}
