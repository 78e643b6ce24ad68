package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// testKey returns a fixed data key, so that tests can make two sealers with the same key.
func testKey(seed byte) []byte {
	k := make([]byte, DataKeySize)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func newTestSealer(t testing.TB, objectID string) *Sealer {
	t.Helper()
	s, err := NewSealer(objectID, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newFileStore returns a BucketStore over a real fileblob bucket in a temporary directory,
// and that directory.
func newFileStore(t testing.TB) (*BucketStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	b, err := OpenBucket(context.Background(), "file://"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return NewBucketStore(b), dir
}

// countingStore counts what reaches the store underneath.
type countingStore struct {
	ChunkStore
	puts     atomic.Int64
	putBytes atomic.Int64
	mu       sync.Mutex
	put      []string
}

func (c *countingStore) PutChunk(ctx context.Context, objectID, addr string, sealed []byte) error {
	c.puts.Add(1)
	c.putBytes.Add(int64(len(sealed)))
	c.mu.Lock()
	c.put = append(c.put, addr)
	c.mu.Unlock()
	return c.ChunkStore.PutChunk(ctx, objectID, addr, sealed)
}

// deterministic returns n pseudo-random bytes that depend only on seed.
func deterministic(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mkfile(t testing.TB, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to umask
		t.Fatal(err)
	}
}

// entry describes one thing in a tree, for comparing trees.
type entry struct {
	Kind    string
	Mode    fs.FileMode
	Size    int64
	SHA256  string
	Symlink string
}

// describeTree returns every entry under dir by slash path.
func describeTree(t testing.TB, dir string) map[string]entry {
	t.Helper()
	got := make(map[string]entry)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{Mode: info.Mode().Perm()}
		switch {
		case d.IsDir():
			e.Kind = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			e.Kind, e.Mode = "symlink", 0
			if e.Symlink, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Kind, e.Size = "file", info.Size()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.SHA256 = hex.EncodeToString(sum[:])
		}
		got[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
