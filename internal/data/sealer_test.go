package data

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSealChunkRoundTrip(t *testing.T) {
	s := newTestSealer(t, "obj-a")
	for _, plain := range [][]byte{{}, []byte("hello"), deterministic(1, ChunkSize)} {
		addr := s.Address(plain)
		if !validAddr(addr) {
			t.Fatalf("Address = %q, want 64 lowercase hex digits", addr)
		}
		sealed, err := s.SealChunk(addr, plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(plain)+Overhead {
			t.Errorf("sealed %d bytes into %d, want %d", len(plain), len(sealed), len(plain)+Overhead)
		}
		got, err := s.OpenChunk(addr, sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Error("OpenChunk returned other bytes than were sealed")
		}
		again, _ := s.SealChunk(addr, plain)
		if bytes.Equal(again, sealed) {
			t.Error("sealing twice gave the same bytes: nonces repeat")
		}
	}
}

func TestAddressDependsOnKeyOnly(t *testing.T) {
	a := newTestSealer(t, "obj-a")
	sameKey, _ := NewSealer("obj-b", testKey(1))
	otherKey, _ := NewSealer("obj-a", testKey(2))
	plain := []byte("the same content")
	if a.Address(plain) != a.Address(bytes.Clone(plain)) {
		t.Error("equal content got different addresses")
	}
	if a.Address(plain) != sameKey.Address(plain) {
		t.Error("the address depends on the object ID, not only the data key")
	}
	if a.Address(plain) == otherKey.Address(plain) {
		t.Error("two data keys give the same address")
	}
	if a.Address(plain) == a.Address([]byte("other content")) {
		t.Error("different content got the same address")
	}
}

func TestOpenChunkRefusesTampering(t *testing.T) {
	s := newTestSealer(t, "obj-a")
	plainA, plainB := []byte("chunk A content"), []byte("chunk B content")
	addrA, addrB := s.Address(plainA), s.Address(plainB)
	sealedA, _ := s.SealChunk(addrA, plainA)
	sealedB, _ := s.SealChunk(addrB, plainB)
	otherObject, _ := NewSealer("obj-b", testKey(1))
	otherKey, _ := NewSealer("obj-a", testKey(2))
	// Sealed with the right additional data but holding content of another address: only the
	// address check can catch it.
	mislabelled, _ := s.SealChunk(addrA, plainB)

	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0x40; return b }
	for _, c := range []struct {
		name   string
		s      *Sealer
		addr   string
		sealed []byte
	}{
		{"flipped nonce", s, addrA, flip(sealedA, 0)},
		{"flipped body", s, addrA, flip(sealedA, nonceSize+2)},
		{"flipped tag", s, addrA, flip(sealedA, len(sealedA)-1)},
		{"truncated by one", s, addrA, sealedA[:len(sealedA)-1]},
		{"truncated to the nonce", s, addrA, sealedA[:nonceSize]},
		{"empty", s, addrA, nil},
		{"extended", s, addrA, append(bytes.Clone(sealedA), 0)},
		{"swapped A under B", s, addrB, sealedA},
		{"swapped B under A", s, addrA, sealedB},
		{"content of another address", s, addrA, mislabelled},
		{"other object, same key", otherObject, addrA, sealedA},
		{"other key", otherKey, addrA, sealedA},
		{"malformed address", s, strings.ToUpper(addrA), sealedA},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.s.OpenChunk(c.addr, c.sealed)
			if !errors.Is(err, ErrTampered) {
				t.Errorf("OpenChunk = %q, %v; want ErrTampered", got, err)
			}
		})
	}
}

func TestNewSealerChecksKeyAndObject(t *testing.T) {
	for _, c := range []struct {
		id  string
		key []byte
	}{{"obj-a", make([]byte, 16)}, {"obj-a", make([]byte, 33)}, {"obj-a", nil}, {"", testKey(1)}} {
		if _, err := NewSealer(c.id, c.key); err == nil {
			t.Errorf("NewSealer(%q, %d-byte key) succeeded", c.id, len(c.key))
		}
	}
	s := newTestSealer(t, "obj-a")
	if _, err := s.SealChunk("nothex", []byte("x")); !errors.Is(err, ErrBadName) {
		t.Errorf("SealChunk with a malformed address: err = %v, want ErrBadName", err)
	}
}

func sampleManifest(s *Sealer) *Manifest {
	big := deterministic(7, ChunkSize+10)
	return &Manifest{Files: []File{
		{Path: "a", Mode: 0o755, Dir: true},
		{Path: "a/big.bin", Mode: 0o644, Size: int64(len(big)), Chunks: []string{s.Address(big[:ChunkSize]), s.Address(big[ChunkSize:])}},
		{Path: "a/empty", Mode: 0o600},
		{Path: "a/link", Symlink: "big.bin"},
		{Path: "top.txt", Mode: 0o640, Size: 3, Chunks: []string{s.Address([]byte("top"))}},
	}}
}

func TestManifestSealRoundTrip(t *testing.T) {
	s := newTestSealer(t, "obj-a")
	m := sampleManifest(s)
	name, sealed, err := s.SealManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if !validManifestName(name) {
		t.Fatalf("manifest name %q is not m- and 64 hex digits", name)
	}
	got, err := s.OpenManifest(name, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("OpenManifest(SealManifest(m)) differs (-want +got):\n%s", diff)
	}
	if got.Bytes() != ChunkSize+10+3 || got.FileCount() != 4 {
		t.Errorf("Bytes, FileCount = %d, %d; want %d, 4", got.Bytes(), got.FileCount(), ChunkSize+10+3)
	}

	name2, sealed2, _ := s.SealManifest(sampleManifest(s))
	if name2 != name {
		t.Error("the same manifest sealed under two names")
	}
	if bytes.Equal(sealed, sealed2) {
		t.Error("sealing a manifest twice gave the same bytes: nonces repeat")
	}
	changed := sampleManifest(s)
	changed.Files[2].Mode = 0o644
	if name3, _, _ := s.SealManifest(changed); name3 == name {
		t.Error("a changed manifest kept its name")
	}
}

func TestOpenManifestRefusesTampering(t *testing.T) {
	s := newTestSealer(t, "obj-a")
	name, sealed, _ := s.SealManifest(sampleManifest(s))
	otherName, otherSealed, _ := s.SealManifest(&Manifest{})
	otherObject, _ := NewSealer("obj-b", testKey(1))
	otherKey, _ := NewSealer("obj-a", testKey(2))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	for _, c := range []struct {
		desc   string
		s      *Sealer
		name   string
		sealed []byte
	}{
		{"flipped", s, name, flipped},
		{"truncated", s, name, sealed[:len(sealed)-1]},
		{"under another name", s, otherName, sealed},
		{"another manifest under this name", s, name, otherSealed},
		{"from another object", otherObject, name, sealed},
		{"under another key", otherKey, name, sealed},
		{"malformed name", s, "m-" + strings.Repeat("g", 64), sealed},
		{"name without prefix", s, name[2:], sealed},
	} {
		if m, err := c.s.OpenManifest(c.name, c.sealed); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: OpenManifest = %v, %v; want ErrTampered", c.desc, m, err)
		}
	}
}
