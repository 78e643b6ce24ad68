package data

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Progress is told how many bytes of a transfer are done out of how many in all. It may be
// nil. Push and Pull call it from one goroutine at a time, so it needs no locking of its own;
// it should return quickly, since the transfer waits for it.
type Progress func(done, total int64)

// PushResult says what a Push stored.
type PushResult struct {
	Manifest string // name of the sealed manifest, for Pull
	Files    int    // regular files and symlinks (Manifest.FileCount)
	Bytes    int64  // bytes of regular files (Manifest.Bytes)
	Uploaded int64  // sealed bytes of the chunks actually sent; 0 when the store had them all
}

// Tuning of transfers. Memory stays bounded by these, not by file or tree size: a Push holds at
// most about 2*min(GOMAXPROCS, 4) chunks being read and hashed, missingBatchBytes waiting on
// MissingChunks and transferParallelism being sealed and sent (some 100 MiB at worst); a Pull
// about 3*transferParallelism chunks.
const (
	transferParallelism = 4        // chunk uploads or downloads in flight
	missingBatchChunks  = 256      // addresses per MissingChunks call, at most
	missingBatchBytes   = 16 << 20 // plaintext held while a MissingChunks call is out, at most
)

// Push seals the tree under dir and stores it as object objectID: directories, regular files
// and symlinks that resolve inside dir (anything else is an error naming the path). Files are
// read as a stream of ChunkSize chunks; the store is asked which chunks it lacks, in batches,
// and only those are sealed and sent, a few at a time, so a chunk the store already holds is
// never sent again. The manifest is put last: nothing refers to a chunk before it is stored.
func Push(ctx context.Context, cs ChunkStore, s *Sealer, objectID, dir string, progress Progress) (*PushResult, error) {
	if s.ObjectID() != objectID {
		return nil, fmt.Errorf("data: push: sealer is for object %q, not %q", s.ObjectID(), objectID)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("data: push: %w", err)
	}
	defer root.Close()
	files, total, err := scanTree(root)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &pusher{cs: cs, s: s, objectID: objectID, root: root, files: files, cancel: cancel,
		progress: progress, total: total, seen: make(map[[32]byte]bool),
		slots: make(chan struct{}, transferParallelism)}
	p.run(ctx)
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("data: push %s: %w", dir, err)
	}
	p.finish()

	m := &Manifest{Files: files}
	name, sealed, err := s.SealManifest(m)
	if err != nil {
		return nil, fmt.Errorf("data: push %s: %w", dir, err)
	}
	if err := cs.PutManifest(ctx, objectID, name, sealed); err != nil {
		return nil, fmt.Errorf("data: push %s: %w", dir, err)
	}
	return &PushResult{Manifest: name, Files: m.FileCount(), Bytes: m.Bytes(), Uploaded: p.uploaded.Load()}, nil
}

// scanTree lists the tree under root in manifest order, with regular files' sizes left for
// the reader to fill in; total is the sum of their sizes as the scan saw them.
func scanTree(root *os.Root) (files []File, total int64, err error) {
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("data: push: %w", err)
		}
		if p == "." {
			return nil
		}
		if err := validPath(p); err != nil {
			return fmt.Errorf("data: push: %q: %w", p, err)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("data: push: %w", err)
		}
		mode := uint32(info.Mode().Perm())
		switch t := d.Type(); {
		case t.IsDir():
			files = append(files, File{Path: p, Mode: mode, Dir: true})
		case t.IsRegular():
			files = append(files, File{Path: p, Mode: mode})
			total += info.Size()
		case t&fs.ModeSymlink != 0:
			raw, err := root.Readlink(p)
			if err != nil {
				return fmt.Errorf("data: push: %w", err)
			}
			target, ok := cleanLinkTarget(raw)
			if ok {
				ok = validLinkTarget(p, target) == nil
			}
			if !ok {
				return fmt.Errorf("data: push: symlink %s -> %s: only relative symlinks that stay inside the tree can be pushed", p, raw)
			}
			files = append(files, File{Path: p, Symlink: target})
		default:
			return fmt.Errorf("data: push: %s is a %s; only directories, regular files and symlinks can be pushed", p, kindName(t))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	// WalkDir orders by name within each directory; the manifest orders whole paths by bytes
	// ("a.txt" before "a/b").
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, total, nil
}

func kindName(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "file of mode " + t.String()
}

// pusher runs the pipeline of one Push:
//
//	reader -> hash workers -> (in file order) batcher -> MissingChunks -> uploaders
//
// The reader hands each chunk both to the hash workers and, in order, to the batcher, which
// waits for each chunk's address, records it in its file, and batches new addresses for the
// store. Every goroutine stops when ctx is cancelled; the first error cancels it.
type pusher struct {
	cs       ChunkStore
	s        *Sealer
	objectID string
	root     *os.Root
	files    []File // sizes and chunks are filled in by the batcher
	cancel   context.CancelCauseFunc

	seen     map[[32]byte]bool // addresses stored or being stored by this push
	slots    chan struct{}     // one per upload in flight
	uploaded atomic.Int64

	mu       sync.Mutex // serializes progress calls
	progress Progress
	done     int64
	total    int64
}

type pushChunk struct {
	file  int
	plain []byte
	addr  string
	ready chan struct{} // closed once addr is set
}

func (p *pusher) run(ctx context.Context) {
	hashers := max(1, min(runtime.GOMAXPROCS(0), 4))
	jobs := make(chan *pushChunk)
	ordered := make(chan *pushChunk, 2*hashers)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		defer close(ordered)
		if err := p.read(ctx, jobs, ordered); err != nil {
			p.cancel(err)
		}
	})
	for range hashers {
		wg.Go(func() {
			for c := range jobs {
				c.addr = p.s.Address(c.plain)
				close(c.ready)
			}
		})
	}
	var uploads sync.WaitGroup
	p.batch(ctx, ordered, &uploads)
	uploads.Wait()
	// On error the reader may be blocked on a send; ctx is cancelled by then, which frees it.
	wg.Wait()
}

// read streams every regular file in order as chunks of ChunkSize (the last one shorter).
func (p *pusher) read(ctx context.Context, jobs, ordered chan<- *pushChunk) error {
	var scratch []byte
	for i := range p.files {
		f := &p.files[i]
		if !f.regular() {
			continue
		}
		err := func() error {
			in, err := p.root.Open(f.Path)
			if err != nil {
				return err
			}
			defer in.Close()
			if info, err := in.Stat(); err != nil {
				return err
			} else if !info.Mode().IsRegular() {
				return fmt.Errorf("%s stopped being a regular file during the push", f.Path)
			}
			for {
				if scratch == nil {
					scratch = make([]byte, ChunkSize)
				}
				n, err := io.ReadFull(in, scratch)
				if n == 0 && (err == io.EOF || err == nil) {
					return nil
				}
				if err != nil && err != io.ErrUnexpectedEOF {
					return err
				}
				var plain []byte
				if n == ChunkSize {
					plain, scratch = scratch, nil // hand the buffer over whole
				} else {
					plain = append([]byte(nil), scratch[:n]...) // a short last chunk: keep scratch
				}
				c := &pushChunk{file: i, plain: plain, ready: make(chan struct{})}
				for _, ch := range []chan<- *pushChunk{ordered, jobs} {
					select {
					case ch <- c:
					case <-ctx.Done():
						return context.Cause(ctx)
					}
				}
				if n < ChunkSize {
					return nil
				}
			}
		}()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Path, err)
		}
	}
	return nil
}

// batch takes chunks in file order, records their addresses, and sends new ones to the store
// in batches.
func (p *pusher) batch(ctx context.Context, ordered <-chan *pushChunk, uploads *sync.WaitGroup) {
	var pending []*pushChunk
	var pendingBytes int
	flush := func() {
		if len(pending) == 0 || ctx.Err() != nil {
			return
		}
		p.flush(ctx, pending, uploads)
		pending, pendingBytes = nil, 0
	}
	for c := range ordered {
		select {
		case <-c.ready:
		case <-ctx.Done():
			return
		}
		f := &p.files[c.file]
		f.Chunks = append(f.Chunks, c.addr)
		f.Size += int64(len(c.plain))
		var key [32]byte
		hex.Decode(key[:], []byte(c.addr))
		if p.seen[key] {
			p.report(int64(len(c.plain))) // the same content earlier in this push
			continue
		}
		p.seen[key] = true
		pending = append(pending, c)
		pendingBytes += len(c.plain)
		if len(pending) >= missingBatchChunks || pendingBytes >= missingBatchBytes {
			flush()
		}
	}
	flush()
}

// flush asks the store which of batch it lacks and uploads those, at most transferParallelism
// at a time; it returns once the last upload has started.
func (p *pusher) flush(ctx context.Context, batch []*pushChunk, uploads *sync.WaitGroup) {
	addrs := make([]string, len(batch))
	for i, c := range batch {
		addrs[i] = c.addr
	}
	missing, err := p.cs.MissingChunks(ctx, p.objectID, addrs)
	if err != nil {
		p.cancel(err)
		return
	}
	lacking := make(map[string]bool, len(missing))
	for _, a := range missing {
		lacking[a] = true
	}
	for _, c := range batch {
		if !lacking[c.addr] {
			p.report(int64(len(c.plain)))
			continue
		}
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		uploads.Go(func() {
			defer func() { <-p.slots }()
			sealed, err := p.s.SealChunk(c.addr, c.plain)
			if err == nil {
				err = p.cs.PutChunk(ctx, p.objectID, c.addr, sealed)
			}
			if err != nil {
				p.cancel(err)
				return
			}
			p.uploaded.Add(int64(len(sealed)))
			p.report(int64(len(c.plain)))
		})
	}
}

// report adds n bytes to what is done and tells progress, one call at a time.
func (p *pusher) report(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.progress != nil {
		p.progress(p.done, max(p.total, p.done))
	}
}

// finish tells progress that all is done, whatever the scan expected.
func (p *pusher) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.progress != nil {
		p.progress(p.done, p.done)
	}
}
