package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"lode.dev/lode/internal/api"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/store"
)

// AdminTokenFile is where, in the data directory, the first start leaves
// the administrator's token (mode 0600), so that commands run with --local
// on this machine need no login.
const AdminTokenFile = "admin.token"

// bootstrapAdmin makes sure an administrator can sign in: when no
// administrator holds a valid token (a first start; a start after a crash
// in the middle of this; every admin token revoked or expired), it makes
// the administrator "admin" if there is none and a token for them, and
// returns the token's secret to be printed once. The token file is written
// before the token is stored, so a crash in between leaves no valid token
// whose secret is lost: the next start makes another.
func (s *Server) bootstrapAdmin(ctx context.Context) (string, error) {
	users, err := s.store.UserList(ctx)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	var admin *store.User
	for _, u := range users {
		if !u.Admin {
			continue
		}
		if u.Name == "admin" {
			admin = u
		}
		tokens, err := s.store.TokenList(ctx, u.ID)
		if err != nil {
			return "", err
		}
		if slices.ContainsFunc(tokens, func(t *store.Token) bool { return t.Valid(now) }) {
			return "", nil
		}
	}
	if admin == nil {
		admin = &store.User{ID: core.NewID("user"), Name: "admin", Admin: true, CreatedAt: now}
		if err := s.store.UserCreate(ctx, admin); err != nil {
			return "", fmt.Errorf("creating the administrator: %w", err)
		}
	}
	id, secret, hash := api.NewToken()
	if err := writeSecretFile(filepath.Join(s.cfg.DataDir, AdminTokenFile), secret+"\n"); err != nil {
		return "", err
	}
	if err := s.store.TokenCreate(ctx, &store.Token{ID: id, UserID: admin.ID, Name: "bootstrap", Hash: hash, CreatedAt: now}); err != nil {
		return "", fmt.Errorf("creating the administrator's token: %w", err)
	}
	return secret, nil
}

// writeSecretFile writes a file only its owner can read, atomically: it
// never exists half-written or with looser permissions.
func writeSecretFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadAdminToken reads the administrator's token the first start left in a
// data directory.
func ReadAdminToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no administrator token in %s: this data directory's server has not started yet, or the file was removed (make a token with `lode tokens create`)", dataDir)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// tlsConfig is what the server presents and asks: its own certificate (the
// operator's, or one the control plane's CA signs for every name it may be
// reached by), and, from nodes, client certificates of that CA.
func (s *Server) tlsConfig() (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		if cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	} else if cert, err = s.ca.ServingCert(s.hostNames(), time.Now(), servingCertLife); err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    s.ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// servingCertLife is how long the serving certificate the CA signs is
// valid; a new one is made at every start.
const servingCertLife = 365 * 24 * time.Hour

// hostNames are the names and addresses clients may reach the server by.
func (s *Server) hostNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(s.listener.Addr().String()); err == nil {
		names = append(names, h)
	}
	if host, err := os.Hostname(); err == nil {
		names = append(names, host)
	}
	if u, err := url.Parse(s.url); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	return names
}

// ReadCA reads the control plane's CA certificate from a data directory.
func ReadCA(dataDir string) ([]byte, error) {
	return os.ReadFile(filepath.Join(dataDir, pki.CertFile))
}

// joinTokens moves join tokens an older server kept in the clear into the
// hashed table and, at first start (pools["created"] set), makes the
// default pool's first join token, whose secret it returns to be printed
// once.
func (s *Server) joinTokens(ctx context.Context, pools map[string]*store.Pool) (string, error) {
	n, err := s.store.JoinTokensAdopt(ctx, api.HashSecret)
	if err != nil {
		return "", fmt.Errorf("join tokens: %w", err)
	}
	if n > 0 {
		s.cfg.Logger.Info("join tokens kept in the clear are now stored hashed", slog.Int("tokens", n))
	}
	p := pools["created"]
	if p == nil {
		return "", nil
	}
	secret := core.NewSecret()
	jt := &store.JoinToken{ID: core.NewID("jt"), PoolID: p.ID, Hash: api.HashSecret(secret), CreatedAt: time.Now().UTC()}
	if err := s.store.JoinTokenCreate(ctx, jt); err != nil {
		return "", fmt.Errorf("the %s pool's join token: %w", p.Name, err)
	}
	return secret, nil
}
