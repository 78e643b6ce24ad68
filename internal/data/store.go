package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"
	"syscall"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// buckets
	_ "gocloud.dev/blob/memblob"  // mem:// buckets
	"gocloud.dev/gcerrors"
)

var (
	// ErrNotFound says that a chunk or manifest is not in the store.
	ErrNotFound = errors.New("data: not found in the blob store")
	// ErrBadName says that an object ID, chunk address or manifest name is malformed. Stores
	// refuse such names so that no caller can reach keys outside its object.
	ErrBadName = errors.New("data: malformed object ID, chunk address or manifest name")
	// ErrBadSize says that what was to be stored cannot be a sealed chunk
	// or manifest: too short to hold a seal, or too long.
	ErrBadSize = errors.New("data: not the size of a sealed chunk or manifest")
	// ErrNoSpace says that the blob store's disk is full.
	ErrNoSpace = errors.New("no space left on the blob store's disk")
)

// ChunkStore is where sealed bytes go. The control plane implements it over a blob bucket
// (BucketStore); the API client implements it over HTTP. A ChunkStore sees only sealed data and
// opaque names, never a key.
//
// Implementations must be safe for concurrent use: Push and Pull call them from several
// goroutines. Writes are atomic: after a failed or cancelled PutChunk or PutManifest the key is
// either absent or holds what it held before. Putting a key that exists replaces it.
type ChunkStore interface {
	// MissingChunks returns those of addrs that the store does not hold, in the order given.
	MissingChunks(ctx context.Context, objectID string, addrs []string) ([]string, error)
	// PutChunk stores a sealed chunk under its address.
	PutChunk(ctx context.Context, objectID, addr string, sealed []byte) error
	// GetChunk returns a sealed chunk, or an error wrapping ErrNotFound.
	GetChunk(ctx context.Context, objectID, addr string) ([]byte, error)
	// PutManifest stores a sealed manifest under its name.
	PutManifest(ctx context.Context, objectID, name string, sealed []byte) error
	// GetManifest returns a sealed manifest, or an error wrapping ErrNotFound.
	GetManifest(ctx context.Context, objectID, name string) ([]byte, error)
}

// Largest sealed sizes a store accepts or returns.
const (
	maxSealedChunk    = ChunkSize + Overhead
	maxSealedManifest = maxManifestSize + Overhead
)

// storeParallelism bounds the concurrent requests one call makes to the bucket; on cloud
// buckets each existence check or delete is a round trip.
const storeParallelism = 16

// OpenBucket opens any gocloud.dev/blob URL whose driver is registered: file:// and mem://
// here, others where they are wired. For file:// URLs the directory is created (mode 0700) if
// missing, temporary files are kept beside their final names (so a rename is atomic and a full
// disk is the store's own) and no attribute side files are written, unless the URL says
// otherwise.
func OpenBucket(ctx context.Context, bucketURL string) (*blob.Bucket, error) {
	u, err := url.Parse(bucketURL)
	if err != nil {
		return nil, fmt.Errorf("data: bucket URL: %w", err)
	}
	if u.Scheme == "file" {
		q := u.Query()
		for k, v := range map[string]string{"create_dir": "true", "dir_file_mode": "0700", "no_tmp_dir": "true", "metadata": "skip"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("data: open bucket: %w", err)
	}
	return b, nil
}

// BucketStore is a ChunkStore over a blob bucket, with keys
// "objects/<objectID>/chunks/<addr>" and "objects/<objectID>/manifests/<name>".
type BucketStore struct {
	b *blob.Bucket
}

var _ ChunkStore = (*BucketStore)(nil)

// NewBucketStore returns a store over b. The caller keeps ownership of b and closes it.
func NewBucketStore(b *blob.Bucket) *BucketStore { return &BucketStore{b: b} }

// ValidObjectID reports whether id can name an object in a store: lowercase letters and
// digits in dash-separated runs, as core.NewID makes them ("obj-4k2m9x7q3tplw5rn"), at most
// 128 bytes.
func ValidObjectID(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && id[i-1] != '-':
		default:
			return false
		}
	}
	return true
}

func objectPrefix(objectID string) (string, error) {
	if !ValidObjectID(objectID) {
		return "", fmt.Errorf("%w: object ID %q", ErrBadName, objectID)
	}
	return "objects/" + objectID + "/", nil
}

func chunkKey(objectID, addr string) (string, error) {
	prefix, err := objectPrefix(objectID)
	if err != nil {
		return "", err
	}
	if !validAddr(addr) {
		return "", fmt.Errorf("%w: chunk address %q", ErrBadName, addr)
	}
	return prefix + "chunks/" + addr, nil
}

func manifestKey(objectID, name string) (string, error) {
	prefix, err := objectPrefix(objectID)
	if err != nil {
		return "", err
	}
	if !validManifestName(name) {
		return "", fmt.Errorf("%w: manifest name %q", ErrBadName, name)
	}
	return prefix + "manifests/" + name, nil
}

// MissingChunks implements ChunkStore.
func (s *BucketStore) MissingChunks(ctx context.Context, objectID string, addrs []string) ([]string, error) {
	keys := make([]string, len(addrs))
	for i, a := range addrs {
		k, err := chunkKey(objectID, a)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	present := make([]bool, len(keys))
	err := parallel(ctx, len(keys), storeParallelism, func(ctx context.Context, i int) error {
		ok, err := s.b.Exists(ctx, keys[i])
		present[i] = ok
		return err
	})
	if err != nil {
		return nil, storeError("check chunks", err)
	}
	var missing []string
	for i, a := range addrs {
		if !present[i] {
			missing = append(missing, a)
		}
	}
	return missing, nil
}

// PutChunk implements ChunkStore.
func (s *BucketStore) PutChunk(ctx context.Context, objectID, addr string, sealed []byte) error {
	key, err := chunkKey(objectID, addr)
	if err != nil {
		return err
	}
	if len(sealed) < Overhead || len(sealed) > maxSealedChunk {
		return fmt.Errorf("data: put chunk %s: %w: %d bytes is not a sealed chunk (%d to %d)", addr, ErrBadSize, len(sealed), Overhead, maxSealedChunk)
	}
	return storeError("put chunk "+addr, s.write(ctx, key, sealed))
}

// GetChunk implements ChunkStore.
func (s *BucketStore) GetChunk(ctx context.Context, objectID, addr string) ([]byte, error) {
	key, err := chunkKey(objectID, addr)
	if err != nil {
		return nil, err
	}
	b, err := s.read(ctx, key, maxSealedChunk)
	if err != nil {
		return nil, storeError("get chunk "+addr, err)
	}
	return b, nil
}

// PutManifest implements ChunkStore.
func (s *BucketStore) PutManifest(ctx context.Context, objectID, name string, sealed []byte) error {
	key, err := manifestKey(objectID, name)
	if err != nil {
		return err
	}
	if len(sealed) < Overhead || len(sealed) > maxSealedManifest {
		return fmt.Errorf("data: put manifest %s: %w: %d bytes is not a sealed manifest (%d to %d)", name, ErrBadSize, len(sealed), Overhead, maxSealedManifest)
	}
	return storeError("put manifest "+name, s.write(ctx, key, sealed))
}

// GetManifest implements ChunkStore.
func (s *BucketStore) GetManifest(ctx context.Context, objectID, name string) ([]byte, error) {
	key, err := manifestKey(objectID, name)
	if err != nil {
		return nil, err
	}
	b, err := s.read(ctx, key, maxSealedManifest)
	if err != nil {
		return nil, storeError("get manifest "+name, err)
	}
	return b, nil
}

// DeleteObject removes every key of an object: chunks, manifests, and anything a crashed
// writer left behind. Deleting an object that has no keys is not an error.
func (s *BucketStore) DeleteObject(ctx context.Context, objectID string) error {
	prefix, err := objectPrefix(objectID)
	if err != nil {
		return err
	}
	var keys []string
	it := s.b.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return storeError("list "+objectID, err)
		}
		keys = append(keys, obj.Key)
	}
	err = parallel(ctx, len(keys), storeParallelism, func(ctx context.Context, i int) error {
		if err := s.b.Delete(ctx, keys[i]); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return err
		}
		return nil
	})
	return storeError("delete "+objectID, err)
}

// write stores data under key atomically: the writer's context is cancelled before Close on
// any failure, which makes every driver discard what it had.
func (s *BucketStore) write(ctx context.Context, key string, data []byte) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, key, &blob.WriterOptions{
		ContentType: "application/octet-stream",
		BeforeWrite: func(as func(any) bool) error {
			// fileblob creates files 0666 less umask; keep sealed data to the server's user.
			var f *os.File
			if as(&f) {
				return f.Chmod(0o600)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	return w.Close()
}

func (s *BucketStore) read(ctx context.Context, key string, limit int64) ([]byte, error) {
	r, err := s.b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if r.Size() > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", r.Size(), limit)
	}
	buf := bytes.NewBuffer(make([]byte, 0, r.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// storeError names the operation and turns driver errors into ones a user can act on. It
// returns nil for a nil err.
func storeError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case gcerrors.Code(err) == gcerrors.NotFound:
		return fmt.Errorf("data: %s: %w", op, ErrNotFound)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("data: %s: %w: %w", op, ErrNoSpace, err)
	}
	return fmt.Errorf("data: %s: %w", op, err)
}

// parallel calls fn(ctx, i) for i in [0, n) on at most workers goroutines. The first error
// cancels the context given to the others and is returned.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// CheckChunkName says whether an object ID and chunk address are well
// formed, so that callers can refuse bad input before they look anything
// up; the error matches ErrBadName.
func CheckChunkName(objectID, addr string) error {
	_, err := chunkKey(objectID, addr)
	return err
}

// CheckManifestName is CheckChunkName for a manifest.
func CheckManifestName(objectID, name string) error {
	_, err := manifestKey(objectID, name)
	return err
}
