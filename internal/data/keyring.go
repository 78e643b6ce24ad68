package data

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // base64key:// keyrings; other drivers are registered where they are wired
)

// DataKeySize is the size of a data key in bytes (AES-256).
const DataKeySize = 32

// Keyring holds the key-encryption key (KEK) through gocloud.dev/secrets. It wraps and unwraps
// data keys and never hands the KEK out. A Keyring is safe for concurrent use.
type Keyring struct {
	keeper *secrets.Keeper
}

// EnsureLocalKey makes sure a local key file exists at path and returns the keeper URL for it,
// "base64key://...". The URL holds the key itself: treat it as a secret, never log it.
//
// A missing file is created with mode 0600 (and its parent directory, if missing, with 0700);
// an existing one is read. A key file that group or others may read or write is refused, since
// whoever reads it can unwrap every data key.
func EnsureLocalKey(path string) (keeperURL string, err error) {
	key, err := readLocalKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createLocalKey(path)
	}
	if err != nil {
		return "", err
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(key), nil
}

func readLocalKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // keeps fs.ErrNotExist visible to the caller
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("data: key file %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("data: key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("data: key file %s has mode %04o, which gives group or others access to the key; run chmod 600 %s", path, perm, path)
	}
	text, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return nil, fmt.Errorf("data: read key file %s: %w", path, err)
	}
	key, err := base64.URLEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(key) != 32 {
		// Say nothing about the content: it is key material.
		return nil, fmt.Errorf("data: key file %s does not hold a base64 (URL alphabet) 32-byte key", path)
	}
	return key, nil
}

// createLocalKey writes a fresh key under a temporary name and links it into place, so that two
// processes racing to create the key agree on one and nobody reads a half-written file.
func createLocalKey(path string) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data: create key directory: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	var suffix [8]byte
	rand.Read(suffix[:])
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+hex.EncodeToString(suffix[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data: create key file: %w", err)
	}
	defer os.Remove(tmp)
	_, err = f.WriteString(base64.URLEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("data: write key file: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readLocalKey(path) // somebody else won the race
		}
		return nil, fmt.Errorf("data: create key file: %w", err)
	}
	return key, nil
}

// OpenKeyring opens the keyring at keeperURL, any gocloud.dev/secrets URL whose driver is
// registered in the program ("base64key://" always is). Error messages never repeat the URL,
// because for local keys it holds the key.
func OpenKeyring(ctx context.Context, keeperURL string) (*Keyring, error) {
	u, err := url.Parse(keeperURL)
	if err != nil || u.Scheme == "" {
		return nil, errors.New("data: keyring URL does not parse as scheme://...")
	}
	mux := secrets.DefaultURLMux()
	if !mux.ValidKeeperScheme(u.Scheme) {
		return nil, fmt.Errorf("data: no keyring driver for scheme %q (have %s)", u.Scheme, strings.Join(mux.KeeperSchemes(), ", "))
	}
	keeper, err := mux.OpenKeeperURL(ctx, u)
	if err != nil {
		return nil, &redactedError{text: fmt.Sprintf("data: open %s keyring failed", u.Scheme), err: err}
	}
	return &Keyring{keeper: keeper}, nil
}

// redactedError keeps the cause for errors.Is and errors.As but leaves its text out, since a
// driver may quote the URL it was given.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// NewDataKey returns a fresh random data key and the same key wrapped by the KEK. Store only
// wrapped; plain lives in memory for as long as the job needs it.
func (k *Keyring) NewDataKey(ctx context.Context) (plain, wrapped []byte, err error) {
	plain = make([]byte, DataKeySize)
	rand.Read(plain)
	wrapped, err = k.keeper.Encrypt(ctx, plain)
	if err != nil {
		return nil, nil, fmt.Errorf("data: wrap data key: %w", err)
	}
	return plain, wrapped, nil
}

// Unwrap returns the data key that wrapped holds. It fails when wrapped was made under another
// KEK or was altered.
func (k *Keyring) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	plain, err := k.keeper.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("data: unwrap data key: %w", err)
	}
	if len(plain) != DataKeySize {
		return nil, fmt.Errorf("data: unwrapped data key is %d bytes, want %d", len(plain), DataKeySize)
	}
	return plain, nil
}

// Close releases the keyring's driver resources.
func (k *Keyring) Close() error { return k.keeper.Close() }
