package data

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzOpenManifest feeds arbitrary sealed bytes and names to OpenManifest: it must never panic,
// and whatever it accepts must be a valid manifest that seals back under the same name.
func FuzzOpenManifest(f *testing.F) {
	s := newTestSealer(f, "obj-a")
	name, sealed, err := s.SealManifest(sampleManifest(s))
	if err != nil {
		f.Fatal(err)
	}
	emptyName, emptySealed, _ := s.SealManifest(&Manifest{})
	f.Add(name, sealed)
	f.Add(emptyName, emptySealed)
	f.Add(name, sealed[:Overhead])
	f.Add("m-", []byte{})
	f.Fuzz(func(t *testing.T, name string, sealed []byte) {
		m, err := s.OpenManifest(name, sealed)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("OpenManifest error %v is not ErrTampered", err)
			}
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("OpenManifest accepted an invalid manifest: %v", err)
		}
		if again, _, err := s.SealManifest(m); err != nil || again != name {
			t.Fatalf("accepted manifest reseals as %q, %v; want %q", again, err, name)
		}
	})
}

// FuzzDecodeManifest feeds arbitrary plaintext to the manifest decoder, which a server may one
// day run on unauthenticated input: it must never panic, and whatever it accepts must be valid
// and canonical (it encodes back to exactly the input).
func FuzzDecodeManifest(f *testing.F) {
	s := newTestSealer(f, "obj-a")
	f.Add(sampleManifest(s).encode())
	f.Add((&Manifest{}).encode())
	f.Add((&Manifest{Files: []File{{Path: "d", Mode: 0o755, Dir: true}, {Path: "d/l", Symlink: ".."}, {Path: "x", Mode: 0o600}}}).encode())
	f.Add([]byte("LDM1\x01\x01x\x00\xa4\x03\x01" + string(make([]byte, 32))))
	f.Add([]byte("LDM1\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("decoder accepted an invalid manifest: %v", err)
		}
		if enc := m.encode(); !bytes.Equal(enc, b) {
			t.Fatalf("decoder accepted a non-canonical encoding:\n in  %x\n out %x", b, enc)
		}
		name, sealed := s.sealManifestBytes(b)
		opened, err := s.OpenManifest(name, sealed)
		if err != nil {
			t.Fatalf("a decodable manifest does not open once sealed: %v", err)
		}
		if diff := cmp.Diff(m, opened); diff != "" {
			t.Fatalf("sealed and opened manifest differs (-decoded +opened):\n%s", diff)
		}
	})
}

// FuzzOpenChunk feeds arbitrary addresses and sealed bytes to OpenChunk: it must never panic,
// every failure must be ErrTampered, and whatever it accepts must have the address it came
// under.
func FuzzOpenChunk(f *testing.F) {
	s := newTestSealer(f, "obj-a")
	for _, plain := range [][]byte{nil, []byte("hello"), deterministic(9, 1000)} {
		addr := s.Address(plain)
		sealed, _ := s.SealChunk(addr, plain)
		f.Add(addr, sealed)
		f.Add(addr, sealed[:len(sealed)-1])
	}
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, addr string, sealed []byte) {
		plain, err := s.OpenChunk(addr, sealed)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("OpenChunk error %v is not ErrTampered", err)
			}
			return
		}
		if got := s.Address(plain); got != addr {
			t.Fatalf("OpenChunk accepted content of address %s under %s", got, addr)
		}
	})
}
