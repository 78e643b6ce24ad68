package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// record appends a security-relevant event to the audit log. A failure to
// record is logged loudly; the action itself has happened already.
func (s *Server) record(ctx context.Context, kind, actor, subject, project string, detail map[string]string) {
	ev := &audit.Event{Time: s.cfg.Now().UTC(), Kind: kind, Actor: actor, Subject: subject, Project: project, Detail: detail}
	if _, err := s.cfg.Store.AuditAppend(context.WithoutCancel(ctx), ev); err != nil {
		s.cfg.Logger.Error("audit log append failed", slog.String("kind", kind), slog.String("subject", subject), slog.Any("err", err))
	}
}

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) error {
	var after int64
	if a := r.URL.Query().Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return badRequest("", "after must be a non-negative integer, not %q", a)
		}
		after = n
	}
	entries, err := s.cfg.Store.AuditList(r.Context(), &store.AuditListParams{AfterSeq: after})
	if err != nil {
		return err
	}
	cps, err := s.cfg.Store.AuditCheckpointList(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.AuditLog{Entries: nonNil(entries), Checkpoints: nonNil(cps), PublicKey: s.cfg.AuditKey})
}
