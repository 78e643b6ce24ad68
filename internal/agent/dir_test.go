package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClaimDirRemovesWhatAKilledAgentLeft: task directories hold decrypted
// data; an agent killed with SIGKILL cannot remove its own, so the next
// agent on the directory must. A second agent on a claimed directory is
// refused.
func TestClaimDirRemovesWhatAKilledAgentLeft(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "tasks", "att-old-r0", "work")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "secret"), []byte("plaintext"), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := claimDir(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tasks"))
	if len(entries) != 0 {
		t.Errorf("tasks/ still holds %d entries after the claim", len(entries))
	}
	if _, err := claimDir(dir, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another lode agent") {
		t.Errorf("second claim: err = %v, want a refusal", err)
	}
	release()
	again, err := claimDir(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again()
}
