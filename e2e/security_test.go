package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
)

// TestNoPlaintextAtRest plants a marker in a dataset file; the job copies it
// into a checkpoint and an output. The marker must appear nowhere in the
// blob store or the database, and the agent's task directory must be gone.
func TestNoPlaintextAtRest(t *testing.T) {
	const marker = "LODE-MARKER-7f3a9c1e5b"
	cl := startServer(t, "--no-local-pool")
	agentDir := filepath.Join(t.TempDir(), "agent")
	cl.startAgent("rig-1", "--dir", agentDir)
	spec := script(t, "datasets: [{name: secrets, mount: data, from: ds}]\ncheckpoint: {path: ckpt, every: 1s}\noutputs: out\n", `
cp data/secret.txt ckpt/state.txt
cp data/secret.txt out/result.txt
echo done
`, map[string]string{"ds/secret.txt": "the payload is " + marker + "\n"})
	id := detachedJob(t, cl, spec)
	d := cl.waitState(id, core.JobSucceeded, 60*time.Second)
	if d.State != core.JobSucceeded {
		t.Fatal(d.Reason)
	}
	code, _, stderr := cl.run("artifacts", "get", id, filepath.Join(t.TempDir(), "out"))
	if code != 0 {
		t.Fatalf("artifacts get: %s", stderr)
	}
	cks, err := cl.c.Checkpoints(t.Context(), id)
	if err != nil || len(cks) == 0 {
		t.Fatalf("checkpoints = %v, %v; want at least one", cks, err)
	}
	// Tasks of an agent running as root live in the machine's task root.
	taskRoot, err := agent.TaskRoot(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{cl.dataDir, agentDir, taskRoot} {
		if hits := grepTree(t, dir, []byte(marker)); len(hits) > 0 {
			t.Errorf("plaintext marker found in %s", strings.Join(hits, ", "))
		}
	}
	// The control test: the marker is where the user put it, so grepTree
	// would have found it at rest had it been stored in the clear.
	if hits := grepTree(t, filepath.Dir(spec), []byte(marker)); len(hits) != 1 {
		t.Fatalf("control: marker found in %v, want the dataset file", hits)
	}
}
