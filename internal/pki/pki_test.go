package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenCreatesOnceAndKeepsTheKeyPrivate(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != a.Fingerprint() {
		t.Error("reopening made another authority")
	}
	// A certificate whose key is gone is an error that says what to do,
	// never a silent new authority.
	os.Remove(filepath.Join(dir, KeyFile))
	if _, err := Open(dir); err == nil {
		t.Error("a CA certificate without its key: want an error")
	}
}

func TestServingAndNodeCertificatesVerify(t *testing.T) {
	a, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	srv, err := a.ServingCert([]string{"127.0.0.1", "cp.example.com"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "cp.example.com"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: a.Pool()}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: a.Pool()}); err == nil {
		t.Error("the serving certificate verified for a host it does not name")
	}

	key, csr, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := a.SignNode(csr, "node-abc", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := KeyPair(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: a.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := pair.Leaf.Verify(opts); err != nil {
		t.Errorf("node certificate: %v", err)
	}
	if id, ok := NodeID(pair.Leaf); !ok || id != "node-abc" {
		t.Errorf("NodeID = %q, %v; want node-abc", id, ok)
	}
	opts.CurrentTime = now.Add(2 * time.Hour)
	if _, err := pair.Leaf.Verify(opts); err == nil {
		t.Error("an expired node certificate verified")
	}
	// Another authority's certificates are not trusted.
	other, _ := Open(t.TempDir())
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: opts.KeyUsages}); err == nil {
		t.Error("a node certificate verified against another authority")
	}
}

func TestSignNodeRefusesBadRequests(t *testing.T) {
	a, _ := Open(t.TempDir())
	_, csr, _ := NewNodeKey()
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)-5] ^= 0xff
	for name, tt := range map[string]struct {
		csr  []byte
		node string
	}{
		"garbage":          {[]byte("not a request"), "node-1"},
		"bad signature":    {tampered, "node-1"},
		"a node ID a path": {csr, "node-1/../x"},
	} {
		if _, err := a.SignNode(tt.csr, tt.node, time.Now(), time.Hour); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// FuzzSignNode: any bytes as a certificate request give a certificate or an
// error, never a panic.
func FuzzSignNode(f *testing.F) {
	a, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	_, csr, _ := NewNodeKey()
	f.Add(csr)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		a.SignNode(b, "node-1", time.Now(), time.Hour)
	})
}
