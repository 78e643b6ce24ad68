package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/store"
)

// auditKey loads the ed25519 key that signs audit checkpoints, creating it
// (mode 0600) at first start.
func auditKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(seed) + "\n"
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit key: %w", err)
		}
		if _, err := f.WriteString(enc); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("audit key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("audit key: %w", err)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit key %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit key %s is not a base64 ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// sealAudit signs the audit chain's head when it moved since the last
// checkpoint.
func sealAudit(ctx context.Context, st store.Store, key ed25519.PrivateKey, now time.Time) error {
	cps, err := st.AuditCheckpointList(ctx)
	if err != nil {
		return err
	}
	var last audit.Checkpoint
	if len(cps) > 0 {
		last = cps[len(cps)-1]
	}
	// Read from the entry the last checkpoint sealed, so the new seal only
	// ever extends a chain that still matches it: a log tampered with since
	// is reported, never signed.
	tail, err := st.AuditList(ctx, &store.AuditListParams{AfterSeq: max(last.Seq-1, 0)})
	if err != nil {
		return err
	}
	if last.Seq > 0 {
		if len(tail) == 0 || tail[0].Seq != last.Seq || tail[0].Hash != last.Head {
			return fmt.Errorf("audit log entry %d no longer matches its checkpoint; not sealing (run `lode audit verify`)", last.Seq)
		}
	}
	prev := last.Head
	for _, e := range tail {
		if e.Seq == last.Seq {
			continue
		}
		if e.Prev != prev || audit.Hash(e.Seq, e.Prev, e.Event) != e.Hash {
			return fmt.Errorf("audit log entry %d does not extend the sealed chain; not sealing (run `lode audit verify`)", e.Seq)
		}
		prev = e.Hash
	}
	if len(tail) == 0 || tail[len(tail)-1].Seq == last.Seq {
		return nil
	}
	cp := audit.Seal(key, tail[len(tail)-1], now)
	err = st.AuditCheckpointAdd(ctx, &cp)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// sealLoop seals the audit chain every interval until ctx ends, and once
// more when it does.
func (s *Server) sealLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := sealAudit(context.WithoutCancel(ctx), s.store, s.auditKey, time.Now()); err != nil {
				s.cfg.Logger.Error("sealing the audit log", slog.Any("err", err))
			}
			return
		case <-t.C:
			if err := sealAudit(ctx, s.store, s.auditKey, time.Now()); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("sealing the audit log", slog.Any("err", err))
			}
		}
	}
}
