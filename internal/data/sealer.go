package data

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrTampered says that sealed data did not authenticate: it was altered, truncated, sealed
// under another key, for another object or address, or its content does not match its name.
var ErrTampered = errors.New("data: sealed data failed authentication (tampered, truncated or misplaced)")

const (
	nonceSize = 12 // 96-bit GCM nonces, random per seal
	tagSize   = 16
	// Overhead is what sealing adds to a plaintext: the nonce in front and the GCM tag behind.
	Overhead = nonceSize + tagSize

	// HKDF labels. Each subkey has one purpose, so an address can never double as a
	// manifest name and the data key itself never touches a cipher.
	labelEncrypt = "lode.dev/data v1 encrypt"
	labelAddress = "lode.dev/data v1 chunk address"
	labelName    = "lode.dev/data v1 manifest name"

	manifestPrefix = "m-"
)

// Sealer seals and opens one object's chunks and manifests under that object's data key.
// It is safe for concurrent use.
type Sealer struct {
	objectID string
	aead     cipher.AEAD
	addrKey  []byte
	nameKey  []byte
}

// NewSealer returns a Sealer for objectID under dataKey, which must be DataKeySize bytes.
// The data key itself is not kept; only subkeys derived from it with HKDF-SHA256.
func NewSealer(objectID string, dataKey []byte) (*Sealer, error) {
	if objectID == "" {
		return nil, errors.New("data: sealer needs an object ID")
	}
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("data: data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	sub := func(label string) []byte {
		k, err := hkdf.Key(sha256.New, dataKey, nil, label, 32)
		if err != nil {
			panic("data: hkdf: " + err.Error()) // only for lengths far beyond 32
		}
		return k
	}
	block, err := aes.NewCipher(sub(labelEncrypt))
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return &Sealer{objectID: objectID, aead: aead, addrKey: sub(labelAddress), nameKey: sub(labelName)}, nil
}

// ObjectID returns the object this Sealer seals for.
func (s *Sealer) ObjectID() string { return s.objectID }

// Address returns the address of a chunk: the hex HMAC-SHA256 of plain under a subkey of the
// data key. Equal chunks of one object share an address (so they are stored once), while an
// address tells nothing about its chunk to anyone without the key.
func (s *Sealer) Address(plain []byte) string {
	return hex.EncodeToString(mac(s.addrKey, plain))
}

func mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// SealChunk encrypts plain with AES-256-GCM under a fresh random nonce, binding the object ID
// and addr as additional data so that a chunk cannot be replayed under another address or
// object. addr must be Address(plain); it is not recomputed here.
func (s *Sealer) SealChunk(addr string, plain []byte) ([]byte, error) {
	if !validAddr(addr) {
		return nil, fmt.Errorf("data: seal chunk: %w: address %q", ErrBadName, addr)
	}
	return s.seal(s.additional('c', addr), plain), nil
}

// OpenChunk decrypts a chunk sealed by SealChunk and checks that its content has address addr.
// Any failure is ErrTampered.
func (s *Sealer) OpenChunk(addr string, sealed []byte) ([]byte, error) {
	want, err := hex.DecodeString(addr)
	if err != nil || !validAddr(addr) {
		return nil, fmt.Errorf("%w: chunk address %q is malformed", ErrTampered, addr)
	}
	plain, err := s.open(s.additional('c', addr), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s", err, addr)
	}
	if !hmac.Equal(mac(s.addrKey, plain), want) {
		return nil, fmt.Errorf("%w: chunk %s holds content of another address", ErrTampered, addr)
	}
	return plain, nil
}

// SealManifest validates m, encodes it canonically and seals it. The name is "m-" followed by
// the hex HMAC of the encoding, so the same directory contents always give the same name.
func (s *Sealer) SealManifest(m *Manifest) (name string, sealed []byte, err error) {
	if err := m.validate(); err != nil {
		return "", nil, fmt.Errorf("data: seal manifest: %w", err)
	}
	name, sealed = s.sealManifestBytes(m.encode())
	return name, sealed, nil
}

// sealManifestBytes seals an already encoded manifest. Tests use it to seal hostile manifests
// that SealManifest would refuse.
func (s *Sealer) sealManifestBytes(enc []byte) (name string, sealed []byte) {
	name = manifestPrefix + hex.EncodeToString(mac(s.nameKey, enc))
	return name, s.seal(s.additional('m', name), enc)
}

// OpenManifest authenticates a sealed manifest, checks that it carries name and decodes it
// strictly (size limits, canonical form, safe paths). Any failure is ErrTampered.
func (s *Sealer) OpenManifest(name string, sealed []byte) (*Manifest, error) {
	if !validManifestName(name) {
		return nil, fmt.Errorf("%w: manifest name %q is malformed", ErrTampered, name)
	}
	if len(sealed) > maxManifestSize+Overhead {
		return nil, fmt.Errorf("%w: manifest %s is larger than %d bytes", ErrTampered, name, maxManifestSize)
	}
	enc, err := s.open(s.additional('m', name), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s", err, name)
	}
	want, _ := hex.DecodeString(name[len(manifestPrefix):])
	if !hmac.Equal(mac(s.nameKey, enc), want) {
		return nil, fmt.Errorf("%w: manifest %s holds another manifest", ErrTampered, name)
	}
	m, err := decodeManifest(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %w", ErrTampered, name, err)
	}
	return m, nil
}

// additional returns GCM's additional data: a domain tag, the kind of thing sealed ('c' for
// chunk, 'm' for manifest), the object ID and the name, each length-prefixed so that no two
// different triples encode alike.
func (s *Sealer) additional(kind byte, name string) []byte {
	ad := make([]byte, 0, 32+len(s.objectID)+len(name))
	ad = append(ad, "lode.dev/data v1"...)
	ad = append(ad, kind)
	ad = binary.AppendUvarint(ad, uint64(len(s.objectID)))
	ad = append(ad, s.objectID...)
	ad = binary.AppendUvarint(ad, uint64(len(name)))
	return append(ad, name...)
}

func (s *Sealer) seal(ad, plain []byte) []byte {
	out := make([]byte, nonceSize, nonceSize+len(plain)+tagSize)
	rand.Read(out)
	return s.aead.Seal(out, out, plain, ad)
}

func (s *Sealer) open(ad, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than nonce and tag", ErrTampered, len(sealed))
	}
	plain, err := s.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}

// validAddr reports whether a is 64 lowercase hex digits, the only form Address returns.
func validAddr(a string) bool {
	if len(a) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validManifestName(n string) bool {
	return len(n) > len(manifestPrefix) && n[:len(manifestPrefix)] == manifestPrefix && validAddr(n[len(manifestPrefix):])
}
