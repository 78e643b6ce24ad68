package client

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"lode.dev/lode/internal/pki"
)

// TestFetchCATrustsOnlyTheCertificateItChecked: an answer that holds the
// right CA followed by another is cut to the one whose fingerprint was
// given; a wrong fingerprint is refused.
func TestFetchCATrustsOnlyTheCertificateItChecked(t *testing.T) {
	real, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	evil, err := pki.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(append(append([]byte(nil), real.CertPEM()...), evil.CertPEM()...))
	}))
	defer srv.Close()
	got, err := FetchCA(t.Context(), srv.URL, real.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, real.CertPEM()) {
		t.Errorf("FetchCA returned %d bytes; want exactly the checked CA's certificate (%d bytes), nothing appended", len(got), len(real.CertPEM()))
	}
	if _, err := FetchCA(t.Context(), srv.URL, evil.Fingerprint()); err == nil {
		t.Error("a fingerprint that is not the first certificate's: want an error")
	}
}
