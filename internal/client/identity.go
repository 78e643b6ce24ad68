package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/wire"
)

// Identity is a node's certificate and key, presented to the server with
// mutual TLS. It is renewed in place, so clients that share it present the
// new certificate on their next connection.
type Identity struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

func (id *Identity) current() *tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert
}

func (id *Identity) set(certPEM []byte, key *ecdsa.PrivateKey) error {
	pair, err := pki.KeyPair(certPEM, key)
	if err != nil {
		return fmt.Errorf("the server's node certificate: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.cert = &pair
	return nil
}

// Certificate is the node's current certificate.
func (id *Identity) Certificate() *x509.Certificate {
	if c := id.current(); c != nil {
		return c.Leaf
	}
	return nil
}

// DueForRenewal reports whether the certificate has used up two thirds of
// its life at now.
func (id *Identity) DueForRenewal(now time.Time) bool {
	c := id.current()
	if c == nil || c.Leaf == nil {
		return false
	}
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return now.After(c.Leaf.NotBefore.Add(life * 2 / 3))
}

// JoinAs trades a pool's join token for a node identity: a key made here
// (it never leaves this process), a certificate the control plane's CA
// signs for it, and the node's credential. It returns a client that
// authenticates as the node with both.
func (c *Client) JoinAs(ctx context.Context, req *wire.Join) (*Client, *wire.Joined, error) {
	key, csr, err := pki.NewNodeKey()
	if err != nil {
		return nil, nil, err
	}
	r := *req
	r.CSR = csr
	joined, err := c.Join(ctx, &r)
	if err != nil {
		return nil, nil, err
	}
	id := &Identity{}
	if err := id.set([]byte(joined.Certificate), key); err != nil {
		return nil, nil, err
	}
	node := c.WithNode(joined.NodeID, joined.Credential)
	node.id = id
	node.http = node.newHTTP(id)
	return node, joined, nil
}

// Identity is the node's certificate (nil for clients that are not a
// node's).
func (c *Client) Identity() *Identity { return c.id }

// RenewCertificate has the CA sign a certificate for a new key of the
// node's, and presents it from the next connection on.
func (c *Client) RenewCertificate(ctx context.Context) error {
	if c.id == nil {
		return errors.New("client: not a node's client")
	}
	key, csr, err := pki.NewNodeKey()
	if err != nil {
		return err
	}
	var out wire.NodeCertificate
	if err := c.call(ctx, "POST", "/v1/agent/certificate", "", &wire.RenewCertificate{CSR: csr}, &out); err != nil {
		return err
	}
	if err := c.id.set([]byte(out.Certificate), key); err != nil {
		return err
	}
	// Connections made with the old certificate go; new ones present the
	// new one.
	c.http.CloseIdleConnections()
	return nil
}

// FetchCA reads the CA certificate a server presents at /v1/ca and checks
// it against fingerprint ("sha256:…", as `lode pools token` prints it):
// an agent given only that can trust the control plane's own CA. The
// connection that fetches it is not verified; the fingerprint is what
// makes the answer trustworthy.
func FetchCA(ctx context.Context, baseURL, fingerprint string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", baseURL+"/v1/ca", nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 15 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, baseURL, shortNetError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the server's CA: %s %v", resp.Status, err)
	}
	cert, err := pki.ParseCert(b)
	if err != nil {
		return nil, fmt.Errorf("the server's CA: %w", err)
	}
	if got := pki.Fingerprint(cert); got != fingerprint {
		return nil, fmt.Errorf("the server's CA is %s, not %s: check --ca-hash (`lode pools token POOL` on the server prints it); a different CA may mean someone is in between", got, fingerprint)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("the server's CA certificate is not a CA's")
	}
	// Only the certificate that was checked is trusted: anything the
	// answer held after it (another CA, slipped in by someone in between)
	// is dropped.
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
}
