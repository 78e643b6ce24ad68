package data

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureLocalKeyCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys", "sub")
	path := filepath.Join(dir, "kek")
	url, err := EnsureLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "base64key://") {
		t.Errorf("EnsureLocalKey = %q, want a base64key:// URL", url)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {dir, 0o700}} {
		info, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != c.want {
			t.Errorf("mode of %s = %04o, want %04o", c.path, got, c.want)
		}
	}
	again, err := EnsureLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != url {
		t.Error("EnsureLocalKey on an existing file returned another key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key file", len(entries))
	}
}

func TestKeyringUnwrapsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek")
	url, err := EnsureLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := OpenKeyring(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	plain, wrapped, err := k1.NewDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != DataKeySize {
		t.Fatalf("data key is %d bytes, want %d", len(plain), DataKeySize)
	}
	if bytes.Contains(wrapped, plain) {
		t.Fatal("wrapped key contains the plain key")
	}
	k1.Close()

	url2, err := EnsureLocalKey(path) // as a restarted server would
	if err != nil {
		t.Fatal(err)
	}
	k2, err := OpenKeyring(ctx, url2)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	got, err := k2.Unwrap(ctx, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Error("unwrapped key differs from the one wrapped")
	}
	_, wrapped2, _ := k2.NewDataKey(ctx)
	if bytes.Equal(wrapped, wrapped2) {
		t.Error("two data keys wrapped alike")
	}
}

func TestWrongKeyCannotUnwrap(t *testing.T) {
	ctx := context.Background()
	mk := func() *Keyring {
		url, err := EnsureLocalKey(filepath.Join(t.TempDir(), "kek"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := OpenKeyring(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}
	right, wrong := mk(), mk()
	_, wrapped, err := right.NewDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Unwrap(ctx, wrapped); err == nil {
		t.Error("a keyring with another KEK unwrapped the data key")
	}
	flipped := bytes.Clone(wrapped)
	flipped[len(flipped)-1] ^= 1
	if _, err := right.Unwrap(ctx, flipped); err == nil {
		t.Error("an altered wrapped key unwrapped")
	}
}

func TestEnsureLocalKeyRefusesLooseOrBadFiles(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose")
	if _, err := EnsureLocalKey(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureLocalKey(loose)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key file: err = %v, want one that says to chmod 600", err)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureLocalKey(bad); err == nil {
		t.Error("a key file without a key was accepted")
	}
	if _, err := EnsureLocalKey(dir); err == nil {
		t.Error("a directory was accepted as a key file")
	}
}

func TestOpenKeyringErrorsDoNotQuoteTheURL(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I"
	for _, url := range []string{
		"base64key://" + secret,          // wrong length
		"base64key://" + secret + "?x=1", // unknown parameter
		"nosuchdriver://" + secret,
		"://" + secret,
	} {
		_, err := OpenKeyring(context.Background(), url)
		if err == nil {
			t.Errorf("OpenKeyring(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("OpenKeyring error quotes the key: %v", err)
		}
	}
}
