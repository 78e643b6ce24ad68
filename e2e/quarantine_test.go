package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

// TestPoolWhoseAgentsAreKilledIsQuarantined: a job runs on the cheap rigs;
// every rig agent is SIGKILLed; the rigs pool is quarantined, the job
// finishes in the cloud from its checkpoint, and `lode pools` says why.
func TestPoolWhoseAgentsAreKilledIsQuarantined(t *testing.T) {
	poolsFile := filepath.Join(t.TempDir(), "pools.yaml")
	os.WriteFile(poolsFile, []byte(`pools:
  - {name: rigs, tier: community, prices: {cpu_hour: 0.01}}
  - {name: cloud, tier: certified, prices: {cpu_hour: 0.20}}
`), 0o644)
	cl := startServer(t, "--no-local-pool", "--pools", poolsFile)
	join := func(pool, name string) *proc {
		tok, err := cl.c.JoinToken(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		a := start(t, cl.env(), "agent", "--server", cl.url, "--join-token", tok.Token, "--name", name,
			"--dir", filepath.Join(t.TempDir(), name), "--gpus", "none", "--cpus", "2", "--memory", "2GiB", "--sync-every", "100ms")
		a.out.waitMatch(t, regexp.MustCompile(`msg=joined`), 20*time.Second)
		return a
	}
	rigs := []*proc{join("rigs", "rig-1"), join("rigs", "rig-2")}
	// The job lands on a rig, the cheaper pool; the cloud joins later, so
	// it has somewhere to go when the rigs are gone.
	id := detachedJob(t, cl, mnistSpec(t, "--epochs 2 --checkpoint-every 100"))
	cl.waitState(id, core.JobRunning, 60*time.Second)
	poll(t, 120*time.Second, "a committed checkpoint", func() bool {
		cks, err := cl.c.Checkpoints(context.Background(), id)
		return err == nil && len(cks) > 0
	})
	join("cloud", "cloud-1")
	for _, a := range rigs {
		a.signal(syscall.SIGKILL)
		a.wait(t, 10*time.Second)
	}
	var rigsPool wire.PoolInfo
	poll(t, 30*time.Second, "the rigs pool to be quarantined", func() bool {
		pools, err := cl.c.Pools(context.Background())
		if err != nil {
			return false
		}
		for _, p := range pools {
			if p.Name == "rigs" {
				rigsPool = p
			}
		}
		return rigsPool.State == "quarantined"
	})
	if !strings.Contains(rigsPool.StateReason, "lost 2 nodes") || rigsPool.Reliability.Losses != 2 {
		t.Errorf("rigs: %+v; want the reason to name its 2 lost nodes", rigsPool)
	}
	d := cl.waitState(id, core.JobSucceeded, 180*time.Second)
	pools, _ := cl.c.Pools(context.Background())
	names := map[string]string{}
	for _, p := range pools {
		names[p.ID] = p.Name
	}
	last := d.AttemptList[len(d.AttemptList)-1]
	if names[last.PoolID] != "cloud" || d.AttemptList[0].State != core.AttemptLost {
		t.Errorf("attempts: first %s on %s, last on %s; want lost on the rigs, then the cloud",
			d.AttemptList[0].State, names[d.AttemptList[0].PoolID], names[last.PoolID])
	}
	_, stdout, _ := cl.run("pools")
	if !strings.Contains(stdout, "quarantined: lost 2 nodes") {
		t.Errorf("lode pools does not say why the rigs are quarantined:\n%s", stdout)
	}
	if code, logs, stderr := cl.run("logs", id); !resumedRE.MatchString(logs) {
		t.Errorf("the job did not resume from its checkpoint in the cloud (lode logs exited %d):\n%s\nstderr:\n%s", code, logs, stderr)
	}
}
