package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOpenBucketCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "blobs")
	b, err := OpenBucket(context.Background(), "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("bucket directory mode = %04o, want 0700", got)
	}
	if _, err := OpenBucket(context.Background(), "nosuch://x"); err == nil {
		t.Error("OpenBucket with an unknown scheme succeeded")
	}
}

func TestBucketStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	st, dir := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	plain := []byte("some chunk")
	addr := s.Address(plain)
	sealed, _ := s.SealChunk(addr, plain)
	other := strings.Repeat("0", 64)

	missing, err := st.MissingChunks(ctx, "obj-a", []string{addr, other})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{addr, other}, missing); diff != "" {
		t.Errorf("MissingChunks before put (-want +got):\n%s", diff)
	}
	if err := st.PutChunk(ctx, "obj-a", addr, sealed); err != nil {
		t.Fatal(err)
	}
	missing, err = st.MissingChunks(ctx, "obj-a", []string{addr, other})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{other}, missing); diff != "" {
		t.Errorf("MissingChunks after put (-want +got):\n%s", diff)
	}
	if missing, _ := st.MissingChunks(ctx, "obj-b", []string{addr}); len(missing) != 1 {
		t.Error("a chunk of obj-a counts as present in obj-b")
	}
	got, err := st.GetChunk(ctx, "obj-a", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sealed) {
		t.Error("GetChunk returned other bytes than were put")
	}
	if _, err := st.GetChunk(ctx, "obj-a", other); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetChunk of a missing chunk: err = %v, want ErrNotFound", err)
	}

	name, msealed, _ := s.SealManifest(&Manifest{})
	if err := st.PutManifest(ctx, "obj-a", name, msealed); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetManifest(ctx, "obj-a", name); err != nil || !bytes.Equal(got, msealed) {
		t.Errorf("GetManifest = %d bytes, %v; want what was put", len(got), err)
	}
	if _, err := st.GetManifest(ctx, "obj-a", "m-"+other); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetManifest of a missing manifest: err = %v, want ErrNotFound", err)
	}

	wantKeys := []string{"objects/obj-a/chunks/" + addr, "objects/obj-a/manifests/" + name}
	if diff := cmp.Diff(wantKeys, listFiles(t, dir)); diff != "" {
		t.Errorf("files in the bucket (-want +got):\n%s", diff)
	}
	for _, k := range wantKeys {
		info, _ := os.Stat(filepath.Join(dir, k))
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", k, info.Mode().Perm())
		}
	}

	if err := st.DeleteObject(ctx, "obj-a"); err != nil {
		t.Fatal(err)
	}
	if got := listFiles(t, dir); len(got) != 0 {
		t.Errorf("after DeleteObject the bucket holds %v", got)
	}
	if err := st.DeleteObject(ctx, "obj-a"); err != nil {
		t.Errorf("deleting an empty object: %v", err)
	}
}

// listFiles returns the regular files under dir as slash paths.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestBucketStoreRefusesBadNames(t *testing.T) {
	ctx := context.Background()
	st, dir := newFileStore(t)
	addr := strings.Repeat("a", 64)
	name := "m-" + addr
	sealed := make([]byte, Overhead+1)
	for _, id := range []string{"", "obj-A", "obj/x", "../obj-a", "obj-a/../obj-b", "obj..a", "-obj", "obj-", "obj--a", "obj a", strings.Repeat("a", 129)} {
		for _, err := range []error{
			st.PutChunk(ctx, id, addr, sealed),
			st.PutManifest(ctx, id, name, sealed),
			st.DeleteObject(ctx, id),
			func() error { _, err := st.GetChunk(ctx, id, addr); return err }(),
			func() error { _, err := st.MissingChunks(ctx, id, []string{addr}); return err }(),
		} {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("object ID %q: err = %v, want ErrBadName", id, err)
			}
		}
	}
	for _, a := range []string{"", "../" + addr[3:], strings.ToUpper(addr), addr + "0", addr[:63] + "/", "m-" + addr} {
		if err := st.PutChunk(ctx, "obj-a", a, sealed); !errors.Is(err, ErrBadName) {
			t.Errorf("PutChunk(address %q): err = %v, want ErrBadName", a, err)
		}
		if _, err := st.MissingChunks(ctx, "obj-a", []string{addr, a}); !errors.Is(err, ErrBadName) {
			t.Errorf("MissingChunks(address %q): err = %v, want ErrBadName", a, err)
		}
	}
	for _, n := range []string{"", addr, "m-", "m-../" + addr[3:], "x-" + addr, "m-" + strings.ToUpper(addr)} {
		if err := st.PutManifest(ctx, "obj-a", n, sealed); !errors.Is(err, ErrBadName) {
			t.Errorf("PutManifest(name %q): err = %v, want ErrBadName", n, err)
		}
		if _, err := st.GetManifest(ctx, "obj-a", n); !errors.Is(err, ErrBadName) {
			t.Errorf("GetManifest(name %q): err = %v, want ErrBadName", n, err)
		}
	}
	if err := st.PutChunk(ctx, "obj-a", addr, make([]byte, maxSealedChunk+1)); err == nil {
		t.Error("PutChunk accepted a chunk larger than a sealed chunk can be")
	}
	if got := listFiles(t, dir); len(got) != 0 {
		t.Errorf("refused writes left %v", got)
	}
}

func TestBucketStoreCancelledWriteLeavesNothing(t *testing.T) {
	st, dir := newFileStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	addr := strings.Repeat("b", 64)
	if err := st.PutChunk(ctx, "obj-a", addr, make([]byte, 1000)); err == nil {
		t.Error("PutChunk with a cancelled context succeeded")
	}
	if got := listFiles(t, dir); len(got) != 0 {
		t.Errorf("a cancelled write left %v", got)
	}
}

func TestStoreErrorSaysDiskIsFull(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "/srv/blobs/x.tmp", Err: syscall.ENOSPC}
	err := storeError("put chunk abc", fmt.Errorf("blob: %w", full))
	if !strings.Contains(err.Error(), "no space left on the blob store's disk") {
		t.Errorf("storeError = %q, want it to say the disk is full", err)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Error("storeError lost the underlying error")
	}
	if storeError("x", nil) != nil {
		t.Error("storeError(nil) is not nil")
	}
}

// TestBucketStoreOnMemblob runs the same round trip on a mem:// bucket, so the store does not
// lean on fileblob's behaviour.
func TestBucketStoreOnMemblob(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBucket(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := NewBucketStore(b)
	addr := strings.Repeat("c", 64)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.PutChunk(cctx, "obj-a", addr, make([]byte, 100)); err == nil {
		t.Error("a cancelled write succeeded")
	}
	if m, _ := st.MissingChunks(ctx, "obj-a", []string{addr}); len(m) != 1 {
		t.Error("a cancelled write left the chunk behind")
	}
	if err := st.PutChunk(ctx, "obj-a", addr, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetChunk(ctx, "obj-a", addr); err != nil || len(got) != 100 {
		t.Errorf("GetChunk = %d bytes, %v", len(got), err)
	}
	if err := st.DeleteObject(ctx, "obj-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetChunk(ctx, "obj-a", addr); !errors.Is(err, ErrNotFound) {
		t.Errorf("after DeleteObject GetChunk: err = %v, want ErrNotFound", err)
	}
}
