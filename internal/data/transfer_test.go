package data

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const bigSize = 2*ChunkSize + 12345 // three chunks, the last one short

// makeTree writes a tree with nested and empty directories, empty files, a file of several
// chunks and symlinks, and returns its root.
func makeTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	mkfile(t, filepath.Join(src, "a", "b", "deep.txt"), []byte("deep\n"), 0o644)
	mkfile(t, filepath.Join(src, "a", "empty"), nil, 0o600)
	mkfile(t, filepath.Join(src, "a", "big.bin"), deterministic(42, bigSize), 0o640)
	mkfile(t, filepath.Join(src, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	mkfile(t, filepath.Join(src, "ro", "f"), []byte("read only dir"), 0o444)
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{"a", 0o755}, {"a/b", 0o700}, {"emptydir", 0o750}, {"ro", 0o555}} {
		p := filepath.Join(src, d.path)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"link-to-file": "a/b/deep.txt",
		"a/b/up":       "../../exec.sh",
		"a/dirlink":    "b",
		"dangling":     "nothing/here",
		"a/dotted":     "./b//deep.txt", // stored clean, resolves alike
	} {
		if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
			t.Fatal(err)
		}
	}
	unlockDirs(t, src)
	return src
}

// unlockDirs makes the directories under root writable again before the test's temporary
// directories are removed, for runs that are not root.
func unlockDirs(t *testing.T, root string) {
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := makeTree(t)
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")

	res, err := Push(ctx, st, s, "obj-a", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 3 + 1 + 1 + 1 // big.bin, deep.txt, exec.sh, ro/f
	wantBytes := int64(bigSize + len("deep\n") + len("#!/bin/sh\necho hi\n") + len("read only dir"))
	want := &PushResult{Manifest: res.Manifest, Files: 10, Bytes: wantBytes, Uploaded: wantBytes + chunks*Overhead}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("PushResult (-want +got):\n%s", diff)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	unlockDirs(t, dst)
	m, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.FileCount() != res.Files || m.Bytes() != res.Bytes {
		t.Errorf("pulled manifest has %d files, %d bytes; pushed %d, %d", m.FileCount(), m.Bytes(), res.Files, res.Bytes)
	}
	wantTree := describeTree(t, src)
	wantTree["a/dotted"] = entry{Kind: "symlink", Symlink: "b/deep.txt"}
	if diff := cmp.Diff(wantTree, describeTree(t, dst)); diff != "" {
		t.Errorf("pulled tree differs (-want +got):\n%s", diff)
	}

	// Pulling again over the same directory replaces what is there.
	mkfile(t, filepath.Join(dst, "a", "b", "deep.txt"), []byte("changed"), 0o600)
	if _, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantTree, describeTree(t, dst)); diff != "" {
		t.Errorf("tree pulled over itself differs (-want +got):\n%s", diff)
	}
}

func TestPushEmptyTree(t *testing.T) {
	ctx := context.Background()
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	var calls [][2]int64
	res, err := Push(ctx, st, s, "obj-a", t.TempDir(), func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 0 || res.Bytes != 0 || res.Uploaded != 0 {
		t.Errorf("PushResult = %+v, want nothing pushed", res)
	}
	if diff := cmp.Diff([][2]int64{{0, 0}}, calls); diff != "" {
		t.Errorf("progress calls (-want +got):\n%s", diff)
	}
	dst := t.TempDir()
	if _, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPushUploadsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	src := makeTree(t)
	fs, _ := newFileStore(t)
	st := &countingStore{ChunkStore: fs}
	s := newTestSealer(t, "obj-a")
	push := func() *PushResult {
		t.Helper()
		st.puts.Store(0)
		st.putBytes.Store(0)
		res, err := Push(ctx, st, s, "obj-a", src, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Uploaded != st.putBytes.Load() {
			t.Errorf("Uploaded = %d, but %d bytes reached the store", res.Uploaded, st.putBytes.Load())
		}
		return res
	}
	first := push()

	again := push()
	if again.Uploaded != 0 || st.puts.Load() != 0 {
		t.Errorf("pushing an unchanged tree sent %d chunks, %d bytes; want none", st.puts.Load(), again.Uploaded)
	}
	if again.Manifest != first.Manifest {
		t.Error("an unchanged tree got another manifest name")
	}

	// One byte in the middle chunk of big.bin: only that chunk goes.
	big := filepath.Join(src, "a", "big.bin")
	data, _ := os.ReadFile(big)
	data[ChunkSize+100] ^= 0xff
	mkfile(t, big, data, 0o640)
	res := push()
	if st.puts.Load() != 1 || res.Uploaded != ChunkSize+Overhead {
		t.Errorf("after changing one chunk: sent %d chunks, %d bytes; want 1, %d", st.puts.Load(), res.Uploaded, ChunkSize+Overhead)
	}
	if res.Manifest == first.Manifest {
		t.Error("a changed tree kept its manifest name")
	}

	// A small file.
	mkfile(t, filepath.Join(src, "a", "b", "deep.txt"), []byte("deeper\n"), 0o644)
	res = push()
	if st.puts.Load() != 1 || res.Uploaded != int64(len("deeper\n")+Overhead) {
		t.Errorf("after changing a small file: sent %d chunks, %d bytes; want 1, %d", st.puts.Load(), res.Uploaded, len("deeper\n")+Overhead)
	}

	// A mode change alone sends no chunk but makes a new manifest.
	if err := os.Chmod(filepath.Join(src, "exec.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	before := res.Manifest
	if res = push(); st.puts.Load() != 0 || res.Manifest == before {
		t.Errorf("after a chmod: sent %d chunks, manifest changed %v; want 0, true", st.puts.Load(), res.Manifest != before)
	}
}

func TestPushSendsRepeatedContentOnce(t *testing.T) {
	src := t.TempDir()
	same := deterministic(3, ChunkSize)
	mkfile(t, filepath.Join(src, "one"), same, 0o644)
	mkfile(t, filepath.Join(src, "two"), same, 0o644)
	mkfile(t, filepath.Join(src, "twice"), append(bytes.Clone(same), same...), 0o644)
	fs, _ := newFileStore(t)
	st := &countingStore{ChunkStore: fs}
	res, err := Push(context.Background(), st, newTestSealer(t, "obj-a"), "obj-a", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.puts.Load() != 1 || res.Uploaded != ChunkSize+Overhead {
		t.Errorf("four copies of one chunk: sent %d chunks, %d bytes; want 1, %d", st.puts.Load(), res.Uploaded, ChunkSize+Overhead)
	}
}

func TestProgressCountsEveryByte(t *testing.T) {
	ctx := context.Background()
	src := makeTree(t)
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	check := func(what string, calls [][2]int64, bytes int64) {
		t.Helper()
		if len(calls) == 0 {
			t.Fatalf("%s: progress never called", what)
		}
		for i, c := range calls {
			if c[0] > c[1] || (i > 0 && c[0] < calls[i-1][0]) {
				t.Errorf("%s: progress call %d = %v after %v", what, i, c, calls[max(i-1, 0)])
			}
		}
		if last := calls[len(calls)-1]; last != [2]int64{bytes, bytes} {
			t.Errorf("%s: last progress call = %v, want [%d %d]", what, last, bytes, bytes)
		}
	}
	for range 2 { // the second push finds every chunk in the store
		var calls [][2]int64
		res, err := Push(ctx, st, s, "obj-a", src, func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
		if err != nil {
			t.Fatal(err)
		}
		check("push", calls, res.Bytes)

		calls = nil
		dst := filepath.Join(t.TempDir(), "dst")
		unlockDirs(t, dst)
		if _, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, func(done, total int64) { calls = append(calls, [2]int64{done, total}) }); err != nil {
			t.Fatal(err)
		}
		check("pull", calls, res.Bytes)
	}
}

func TestPushRefusesWhatItCannotCarry(t *testing.T) {
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	outside := t.TempDir()
	for _, c := range []struct {
		desc string
		make func(src string) error
		want string // in the error
	}{
		{"named pipe", func(src string) error { return syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600) }, "pipe"},
		{"absolute symlink", func(src string) error { return os.Symlink("/etc/passwd", filepath.Join(src, "abs")) }, "abs"},
		{"absolute symlink into the tree", func(src string) error { return os.Symlink(filepath.Join(src, "x"), filepath.Join(src, "self")) }, "self"},
		{"symlink climbing out", func(src string) error { return os.Symlink("../outside", filepath.Join(src, "up")) }, "up"},
		{"symlink climbing out from below", func(src string) error {
			os.Mkdir(filepath.Join(src, "d"), 0o755)
			return os.Symlink("../../x", filepath.Join(src, "d", "l"))
		}, "d/l"},
		{"symlink through a name", func(src string) error { return os.Symlink("d/../../x", filepath.Join(src, "tricky")) }, "tricky"},
		{"symlink to outside dir", func(src string) error { return os.Symlink(outside, filepath.Join(src, "out")) }, "out"},
	} {
		src := t.TempDir()
		mkfile(t, filepath.Join(src, "x"), []byte("x"), 0o644)
		if err := c.make(src); err != nil {
			t.Fatal(err)
		}
		_, err := Push(context.Background(), st, s, "obj-a", src, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Push err = %v, want an error naming %q", c.desc, err, c.want)
		}
	}
	if _, err := Push(context.Background(), st, s, "obj-b", t.TempDir(), nil); err == nil {
		t.Error("Push with a sealer for another object succeeded")
	}
}

func TestPushCancelledStoresNoManifest(t *testing.T) {
	src := makeTree(t)
	st, dir := newFileStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Push(ctx, st, newTestSealer(t, "obj-a"), "obj-a", src, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Push with a cancelled context: err = %v, want context.Canceled", err)
	}
	for _, f := range listFiles(t, dir) {
		if strings.Contains(f, "/manifests/") {
			t.Errorf("a cancelled push stored manifest %s", f)
		}
	}
}

// pushedObject pushes a tree and returns the store's directory and the pushed manifest.
func pushedObject(t *testing.T, st *BucketStore, s *Sealer, src string) *Manifest {
	t.Helper()
	ctx := context.Background()
	res, err := Push(ctx, st, s, s.ObjectID(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := st.GetManifest(ctx, s.ObjectID(), res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.OpenManifest(res.Manifest, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPullRefusesTamperedChunks(t *testing.T) {
	src := makeTree(t)
	for _, c := range []struct {
		desc   string
		tamper func(chunks []string, path func(addr string) string)
		want   error
	}{
		{"flipped byte", func(chunks []string, path func(string) string) {
			b, _ := os.ReadFile(path(chunks[1]))
			b[len(b)/2] ^= 1
			os.WriteFile(path(chunks[1]), b, 0o600)
		}, ErrTampered},
		{"swapped chunks", func(chunks []string, path func(string) string) {
			a, _ := os.ReadFile(path(chunks[0]))
			b, _ := os.ReadFile(path(chunks[1]))
			os.WriteFile(path(chunks[0]), b, 0o600)
			os.WriteFile(path(chunks[1]), a, 0o600)
		}, ErrTampered},
		{"truncated", func(chunks []string, path func(string) string) {
			os.Truncate(path(chunks[2]), 100)
		}, ErrTampered},
		{"missing", func(chunks []string, path func(string) string) {
			os.Remove(path(chunks[2]))
		}, ErrNotFound},
	} {
		t.Run(c.desc, func(t *testing.T) {
			st, dir := newFileStore(t)
			s := newTestSealer(t, "obj-a")
			m := pushedObject(t, st, s, src)
			var chunks []string
			for _, f := range m.Files {
				if f.Path == "a/big.bin" {
					chunks = f.Chunks
				}
			}
			c.tamper(chunks, func(addr string) string { return filepath.Join(dir, "objects", "obj-a", "chunks", addr) })
			name, _, _ := s.SealManifest(m)
			dst := filepath.Join(t.TempDir(), "dst")
			unlockDirs(t, dst)
			// A stale copy in place must survive a failed pull untouched.
			stale := []byte("previous version")
			mkfile(t, filepath.Join(dst, "a", "big.bin"), stale, 0o600)

			_, err := Pull(context.Background(), st, s, "obj-a", name, dst, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("Pull err = %v, want %v", err, c.want)
			}
			if got, _ := os.ReadFile(filepath.Join(dst, "a", "big.bin")); !bytes.Equal(got, stale) {
				t.Errorf("a/big.bin holds %d other bytes after a failed pull, want the previous version", len(got))
			}
			for p := range describeTree(t, dst) {
				if strings.Contains(p, ".lode-pull-") {
					t.Errorf("failed pull left %s", p)
				}
			}
		})
	}
}

func TestPullRefusesManifestOfAnotherObject(t *testing.T) {
	ctx := context.Background()
	src := makeTree(t)
	st, dir := newFileStore(t)
	// Same data key, other object: only the object binding tells them apart.
	sa, _ := NewSealer("obj-a", testKey(1))
	sb, _ := NewSealer("obj-b", testKey(1))
	pushedObject(t, st, sa, src)
	res, err := Push(ctx, st, sb, "obj-b", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(dir, "objects", "obj-b", "manifests", res.Manifest)
	to := filepath.Join(dir, "objects", "obj-a", "manifests", res.Manifest)
	b, _ := os.ReadFile(from)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := Pull(ctx, st, sa, "obj-a", res.Manifest, dst, nil); !errors.Is(err, ErrTampered) {
		t.Errorf("Pull of another object's manifest: err = %v, want ErrTampered", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused pull created %s", dst)
	}
}

// TestPullRefusesPathTraversal seals hostile manifests with the right key, as a worker
// holding a grant could, and checks that Pull writes nothing outside its directory.
func TestPullRefusesPathTraversal(t *testing.T) {
	ctx := context.Background()
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	content := []byte("pwned")
	addr := s.Address(content)
	sealed, _ := s.SealChunk(addr, content)
	if err := st.PutChunk(ctx, "obj-a", addr, sealed); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	var tag [6]byte
	rand.Read(tag[:])
	etc := "/etc/lode-test-" + hex.EncodeToString(tag[:])
	file := func(p string) File {
		return File{Path: p, Mode: 0o644, Size: int64(len(content)), Chunks: []string{addr}}
	}
	for _, c := range []struct {
		desc  string
		files []File
	}{
		{"../x", []File{file("../x")}},
		{"../outside/x", []File{file("../outside/x")}},
		{"/etc/x", []File{file(etc)}},
		{"absolute path outside", []File{file(filepath.Join(outside, "x"))}},
		{"a/../../x", []File{{Path: "a", Mode: 0o755, Dir: true}, file("a/../../x")}},
		{"evil -> / then evil/x", []File{{Path: "evil", Symlink: "/"}, file("evil/x")}},
		{"evil -> outside then evil/x", []File{{Path: "evil", Symlink: outside}, file("evil/x")}},
		{"evil -> ../outside then evil/x", []File{{Path: "evil", Symlink: "../outside"}, file("evil/x")}},
		{"evil -> .. then evil/outside/x", []File{{Path: "evil", Symlink: ".."}, file("evil/outside/x")}},
		{"link climbing out", []File{{Path: "d", Mode: 0o755, Dir: true}, {Path: "d/l", Symlink: "../../outside"}}},
	} {
		t.Run(c.desc, func(t *testing.T) {
			name, msealed := s.sealManifestBytes((&Manifest{Files: c.files}).encode())
			if err := st.PutManifest(ctx, "obj-a", name, msealed); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(base, "dst")
			_, err := Pull(ctx, st, s, "obj-a", name, dst, nil)
			if !errors.Is(err, ErrTampered) {
				t.Errorf("Pull err = %v, want ErrTampered", err)
			}
			if got := describeTree(t, outside); len(got) != 0 {
				t.Errorf("Pull wrote outside its directory: %v", got)
			}
			if _, err := os.Lstat(etc); err == nil {
				os.Remove(etc)
				t.Errorf("Pull wrote %s", etc)
			}
			if got, _ := os.ReadDir(base); len(got) != 1 {
				t.Errorf("Pull left %d entries beside its directory, want only outside/", len(got)-1)
			}
		})
	}
}

// TestPullStaysInsideThroughExistingSymlinks puts symlinks that lead outside into the
// destination before a valid pull: Pull must neither follow nor keep them in its way.
func TestPullStaysInsideThroughExistingSymlinks(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	mkfile(t, filepath.Join(src, "d", "x"), []byte("inside"), 0o644)
	st, _ := newFileStore(t)
	s := newTestSealer(t, "obj-a")
	res, err := Push(ctx, st, s, "obj-a", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o700)

	// d itself leads outside: refused, since d must be a directory.
	dst := filepath.Join(base, "dst1")
	os.Mkdir(dst, 0o700)
	os.Symlink(outside, filepath.Join(dst, "d"))
	if _, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, nil); err == nil {
		t.Error("Pull through a directory symlink leading outside succeeded")
	}

	// d/x leads outside: the file replaces the link.
	dst = filepath.Join(base, "dst2")
	os.MkdirAll(filepath.Join(dst, "d"), 0o700)
	os.Symlink(filepath.Join(outside, "x"), filepath.Join(dst, "d", "x"))
	if _, err := Pull(ctx, st, s, "obj-a", res.Manifest, dst, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "d", "x")); string(got) != "inside" {
		t.Errorf("d/x = %q, want %q", got, "inside")
	}
	if got := describeTree(t, outside); len(got) != 0 {
		t.Errorf("Pull wrote outside its directory: %v", got)
	}

	// The writer itself, given a path through a link outside, is stopped by os.Root.
	dst = filepath.Join(base, "dst3")
	os.Mkdir(dst, 0o700)
	os.Symlink("../outside", filepath.Join(dst, "evil"))
	root, err := os.OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	next := func() ([]byte, error) { return []byte("pwned"), nil }
	if err := writeFile(root, File{Path: "evil/x", Mode: 0o644, Size: 5, Chunks: []string{strings.Repeat("0", 64)}}, next, func(int64) {}); err == nil {
		t.Error("writeFile through a link outside the root succeeded")
	}
	if got := describeTree(t, outside); len(got) != 0 {
		t.Errorf("writeFile wrote outside its root: %v", got)
	}
}

// TestNoPlaintextInTheStore pushes a tree whose contents, names and link targets carry a
// marker, then reads every byte the store wrote.
func TestNoPlaintextInTheStore(t *testing.T) {
	var tag [8]byte
	rand.Read(tag[:])
	marker := "LODE-PLAINTEXT-MARKER-" + hex.EncodeToString(tag[:])
	src := t.TempDir()
	mkfile(t, filepath.Join(src, "small.txt"), []byte("before "+marker+" after"), 0o644)
	mkfile(t, filepath.Join(src, marker+"-dir", marker+".txt"), []byte(marker), 0o644)
	mkfile(t, filepath.Join(src, "big.bin"), bytes.Repeat([]byte(marker), ChunkSize/len(marker)*2), 0o644)
	if err := os.Symlink(marker+".txt", filepath.Join(src, marker+"-dir", "link")); err != nil {
		t.Fatal(err)
	}
	st, dir := newFileStore(t)
	if _, err := Push(context.Background(), st, newTestSealer(t, "obj-a"), "obj-a", src, nil); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(p, marker) {
			t.Errorf("store path %s holds the marker", p)
		}
		if d.Type().IsRegular() {
			files++
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte(marker[:16])) {
				t.Errorf("store file %s holds plaintext", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Errorf("the store holds %d files; the test looked at too little", files)
	}
}
