package data

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func BenchmarkSealChunk(b *testing.B) {
	s := newTestSealer(b, "obj-a")
	plain := deterministic(1, ChunkSize)
	addr := s.Address(plain)
	b.SetBytes(ChunkSize)
	for b.Loop() {
		if _, err := s.SealChunk(addr, plain); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenChunk includes the address check, which hashes the chunk again.
func BenchmarkOpenChunk(b *testing.B) {
	s := newTestSealer(b, "obj-a")
	plain := deterministic(1, ChunkSize)
	addr := s.Address(plain)
	sealed, _ := s.SealChunk(addr, plain)
	b.SetBytes(ChunkSize)
	for b.Loop() {
		if _, err := s.OpenChunk(addr, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPush pushes a tree of large and small files and reports its throughput as a ratio
// to raw AES-256-GCM sealing of the same bytes on one core, measured in the same run
// ("push/gcm"; 1 would mean Push costs no more than the encryption alone, and more than 1 is
// possible since Push uses several cores). "new" sends every chunk to a map in memory, so it
// measures Push itself; "unchanged" finds every chunk there already; "fileblob" sends every
// chunk to a real bucket on disk.
func BenchmarkPush(b *testing.B) {
	src := b.TempDir()
	var total int64
	for i := range 2 {
		data := deterministic(uint64(i), 5*ChunkSize+1234)
		mkfile(b, filepath.Join(src, fmt.Sprintf("big%d.bin", i)), data, 0o644)
		total += int64(len(data))
	}
	for i := range 64 {
		data := deterministic(uint64(100+i), 128<<10)
		mkfile(b, filepath.Join(src, "small", fmt.Sprintf("%02d", i)), data, 0o644)
		total += int64(len(data))
	}
	gcm := gcmBytesPerSecond(total)
	ctx := context.Background()
	s := newTestSealer(b, "obj-a")

	run := func(b *testing.B, fresh func(b *testing.B) ChunkStore, unchanged bool) {
		cs := fresh(b)
		if unchanged {
			if _, err := Push(ctx, cs, s, "obj-a", src, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(total)
		b.ResetTimer()
		n := 0
		for b.Loop() {
			if !unchanged {
				b.StopTimer()
				cs = fresh(b)
				b.StartTimer()
			}
			if _, err := Push(ctx, cs, s, "obj-a", src, nil); err != nil {
				b.Fatal(err)
			}
			n++
		}
		push := float64(total) * float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(push/gcm, "push/gcm")
	}
	inMemory := func(*testing.B) ChunkStore { return &mapStore{m: make(map[string][]byte)} }
	onDisk := func(b *testing.B) ChunkStore { st, _ := newFileStore(b); return st }
	b.Run("new", func(b *testing.B) { run(b, inMemory, false) })
	b.Run("unchanged", func(b *testing.B) { run(b, inMemory, true) })
	b.Run("fileblob", func(b *testing.B) { run(b, onDisk, false) })
}

// mapStore is the least a ChunkStore can cost: a map under a lock.
type mapStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *mapStore) MissingChunks(_ context.Context, _ string, addrs []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []string
	for _, a := range addrs {
		if _, ok := s.m[a]; !ok {
			missing = append(missing, a)
		}
	}
	return missing, nil
}

func (s *mapStore) PutChunk(_ context.Context, _, addr string, sealed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[addr] = sealed
	return nil
}

func (s *mapStore) GetChunk(_ context.Context, _, addr string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[addr]; ok {
		return b, nil
	}
	return nil, ErrNotFound
}

func (s *mapStore) PutManifest(ctx context.Context, id, name string, sealed []byte) error {
	return s.PutChunk(ctx, id, name, sealed)
}

func (s *mapStore) GetManifest(ctx context.Context, id, name string) ([]byte, error) {
	return s.GetChunk(ctx, id, name)
}

// gcmBytesPerSecond measures plain AES-256-GCM sealing of n bytes in ChunkSize pieces on one
// goroutine, best of three, as the baseline Push is compared with.
func gcmBytesPerSecond(n int64) float64 {
	block, _ := aes.NewCipher(testKey(9))
	aead, _ := cipher.NewGCM(block)
	plain := deterministic(5, ChunkSize)
	out := make([]byte, 0, ChunkSize+Overhead)
	nonce := make([]byte, aead.NonceSize())
	best := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		for done := int64(0); done < n; done += ChunkSize {
			out = aead.Seal(out[:0], nonce, plain[:min(int64(ChunkSize), n-done)], nil)
		}
		best = min(best, time.Since(start))
	}
	return float64(n) / best.Seconds()
}
