package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lode.dev/lode/internal/api"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

// AdminTokenFile is where, in the data directory, the first start leaves
// the administrator's token (mode 0600), so that commands run with --local
// on this machine need no login.
const AdminTokenFile = "admin.token"

// bootstrapAdmin makes the first administrator and their token when the
// server has no user yet, and returns the token's secret (empty when there
// were users already).
func (s *Server) bootstrapAdmin(ctx context.Context) (string, error) {
	users, err := s.store.UserList(ctx)
	if err != nil || len(users) > 0 {
		return "", err
	}
	now := time.Now().UTC()
	u := &store.User{ID: core.NewID("user"), Name: "admin", Admin: true, CreatedAt: now}
	if err := s.store.UserCreate(ctx, u); err != nil {
		return "", fmt.Errorf("creating the administrator: %w", err)
	}
	id, secret, hash := api.NewToken()
	if err := s.store.TokenCreate(ctx, &store.Token{ID: id, UserID: u.ID, Name: "bootstrap", Hash: hash, CreatedAt: now}); err != nil {
		return "", fmt.Errorf("creating the administrator's token: %w", err)
	}
	if err := writeSecretFile(filepath.Join(s.cfg.DataDir, AdminTokenFile), secret+"\n"); err != nil {
		return "", err
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
