package e2e

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smallDisk mounts a 1 MiB tmpfs for the test, or skips when this machine
// cannot (not root); under CI=true it fails instead.
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		msg := "cannot mount a small tmpfs (needs root): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; run the tests as root to include this one")
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestFullDiskWhileUploading fills the blob store's disk during a dataset
// push: the user gets a short error that says so, and no dataset version
// refers to the partial upload.
func TestFullDiskWhileUploading(t *testing.T) {
	disk := smallDisk(t)
	cl := startServer(t, "--no-local-pool", "--blob-url", "file://"+disk)
	src := t.TempDir()
	big := make([]byte, 3<<20) // random, so nothing deduplicates
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cl.run("data", "push", "big", src)
	if code == 0 {
		t.Fatalf("push to a full disk succeeded")
	}
	if !strings.Contains(stderr, "out of space") {
		t.Errorf("the error does not say the disk is full:\n%s", stderr)
	}
	if strings.Contains(stderr, "goroutine") || strings.Count(strings.TrimSpace(stderr), "\n") > 2 {
		t.Errorf("want a short error, got:\n%s", stderr)
	}
	ds, err := cl.c.Datasets(context.Background(), "default")
	if err != nil || len(ds) != 0 {
		t.Errorf("datasets after a failed push = %v, %v; want none", ds, err)
	}
	var partial []string
	filepath.Walk(disk, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.Contains(filepath.Base(p), "tmp") {
			partial = append(partial, p)
		}
		return nil
	})
	if len(partial) > 0 {
		t.Errorf("partial files left in the blob store: %v", partial)
	}
}
