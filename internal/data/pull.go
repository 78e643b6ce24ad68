package data

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"
)

// Pull fetches manifest of object objectID, opens it, and writes the tree it lists under dir,
// creating dir (0700) if missing. All writes go through an os.Root at dir, so neither a hostile
// manifest nor a symlink already in dir can make Pull write outside it. Each file is written
// under a temporary name and renamed into place once complete: a chunk that fails to open
// (ErrTampered) or to arrive leaves no partial file behind. Files, directories and symlinks
// already in dir under the same names are replaced; other entries in dir are left alone.
func Pull(ctx context.Context, cs ChunkStore, s *Sealer, objectID, manifest, dir string, progress Progress) (*Manifest, error) {
	if s.ObjectID() != objectID {
		return nil, fmt.Errorf("data: pull: sealer is for object %q, not %q", s.ObjectID(), objectID)
	}
	sealed, err := cs.GetManifest(ctx, objectID, manifest)
	if err != nil {
		return nil, fmt.Errorf("data: pull: %w", err)
	}
	m, err := s.OpenManifest(manifest, sealed)
	if err != nil {
		return nil, fmt.Errorf("data: pull: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data: pull: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("data: pull: %w", err)
	}
	defer root.Close()

	// Directories first (parents come before children in a manifest), writable by us until the
	// end; then files; then symlinks; then directory modes, children before parents.
	for _, f := range m.Files {
		if f.Dir {
			if err := makeDir(root, f.Path); err != nil {
				return nil, fmt.Errorf("data: pull: %w", err)
			}
		}
	}
	if err := pullFiles(ctx, cs, s, objectID, root, m, progress); err != nil {
		return nil, fmt.Errorf("data: pull %s: %w", manifest, err)
	}
	for _, f := range m.Files {
		if f.Symlink != "" {
			if err := makeSymlink(root, f.Path, f.Symlink); err != nil {
				return nil, fmt.Errorf("data: pull: %w", err)
			}
		}
	}
	for _, f := range slices.Backward(m.Files) {
		if f.Dir {
			if err := root.Chmod(f.Path, fs.FileMode(f.Mode)); err != nil {
				return nil, fmt.Errorf("data: pull: %w", err)
			}
		}
	}
	return m, nil
}

// makeDir makes p a directory the pull can write into, keeping one that is there already.
func makeDir(root *os.Root, p string) error {
	err := root.Mkdir(p, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	info, err := root.Lstat(p)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", p)
	}
	if info.Mode().Perm()&0o700 != 0o700 {
		return root.Chmod(p, info.Mode().Perm()|0o700)
	}
	return nil
}

func makeSymlink(root *os.Root, p, target string) error {
	if info, err := root.Lstat(p); err == nil {
		if info.IsDir() {
			return fmt.Errorf("%s exists and is a directory", p)
		}
		if err := root.Remove(p); err != nil {
			return err
		}
	}
	return root.Symlink(target, p)
}

type pullChunk struct {
	addr  string
	plain []byte
	err   error
	ready chan struct{} // closed once plain or err is set
}

// pullFiles writes m's regular files. A producer lists their chunks in order to fetchers,
// which fetch and open them in parallel, and to this goroutine, which writes them in order.
func pullFiles(ctx context.Context, cs ChunkStore, s *Sealer, objectID string, root *os.Root, m *Manifest, progress Progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	jobs := make(chan *pullChunk)
	ordered := make(chan *pullChunk, 2*transferParallelism)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil) // frees a producer blocked on a send after an early return
		wg.Wait()
	}()
	wg.Go(func() {
		defer close(jobs)
		defer close(ordered)
		for _, f := range m.Files {
			for _, addr := range f.Chunks {
				c := &pullChunk{addr: addr, ready: make(chan struct{})}
				for _, ch := range []chan<- *pullChunk{ordered, jobs} {
					select {
					case ch <- c:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	})
	for range transferParallelism {
		wg.Go(func() {
			for c := range jobs {
				sealed, err := cs.GetChunk(ctx, objectID, c.addr)
				if err == nil {
					c.plain, err = s.OpenChunk(c.addr, sealed)
				}
				c.err = err
				close(c.ready)
			}
		})
	}

	next := func() ([]byte, error) {
		c, ok := <-ordered
		if !ok {
			return nil, context.Cause(ctx)
		}
		select {
		case <-c.ready:
			return c.plain, c.err
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	var done int64
	total := m.Bytes()
	report := func(n int64) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}
	for _, f := range m.Files {
		if f.Dir || f.Symlink != "" {
			continue
		}
		if err := writeFile(root, f, next, report); err != nil {
			return err
		}
	}
	if progress != nil && total == 0 {
		progress(0, 0)
	}
	return nil
}

// writeFile writes f under a temporary name beside it and renames it into place when whole.
func writeFile(root *os.Root, f File, next func() ([]byte, error), report func(int64)) (err error) {
	var suffix [8]byte
	rand.Read(suffix[:])
	tmp := path.Join(path.Dir(f.Path), ".lode-pull-"+hex.EncodeToString(suffix[:])+".tmp")
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			root.Remove(tmp)
		}
	}()
	for i := range f.Chunks {
		plain, err := next()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if want := min(ChunkSize, f.Size-int64(i)*ChunkSize); int64(len(plain)) != want {
			return fmt.Errorf("%s: %w: chunk %d holds %d bytes, the manifest says %d", f.Path, ErrTampered, i, len(plain), want)
		}
		if _, err := out.Write(plain); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		report(int64(len(plain)))
	}
	if err := out.Chmod(fs.FileMode(f.Mode)); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return root.Rename(tmp, f.Path)
}
