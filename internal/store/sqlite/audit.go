package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/store"
)

const auditColumns = `seq, time, kind, actor, subject, project, detail, prev, hash`

func scanAudit(sc scanner) (*audit.Entry, error) {
	var (
		e      audit.Entry
		t      int64
		detail string
	)
	if err := sc.Scan(&e.Seq, &t, &e.Kind, &e.Actor, &e.Subject, &e.Project, &detail, &e.Prev, &e.Hash); err != nil {
		return nil, err
	}
	e.Time = fromMsec(t)
	if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
		return nil, fmt.Errorf("audit entry %d: detail: %w", e.Seq, err)
	}
	return &e, nil
}

// AuditAppend links an event to the head of the chain, in one transaction
// so that concurrent appends form one chain.
func (s *Store) AuditAppend(ctx context.Context, ev *audit.Event) (*audit.Entry, error) {
	var e audit.Entry
	err := s.write(ctx, func(tx *sql.Tx) error {
		head, err := scanAudit(tx.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`))
		if errors.Is(err, sql.ErrNoRows) {
			head, err = nil, nil
		}
		if err != nil {
			return err
		}
		e = audit.Next(head, *ev)
		detail, err := json.Marshal(e.Detail)
		if err != nil {
			return err
		}
		if e.Detail == nil {
			detail = []byte("{}")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, msec(e.Time), e.Kind, e.Actor, e.Subject, e.Project, string(detail), e.Prev, e.Hash)
		return dbErr(err)
	})
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// AuditList returns entries after a sequence number, oldest first.
func (s *Store) AuditList(ctx context.Context, p *store.AuditListParams) ([]audit.Entry, error) {
	q, args := `SELECT `+auditColumns+` FROM audit WHERE seq > ? ORDER BY seq`, []any{p.AfterSeq}
	if p.Limit > 0 {
		q, args = q+` LIMIT ?`, append(args, p.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []audit.Entry
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, *e)
	}
	return out, dbErr(rows.Err())
}

// AuditCheckpointAdd stores a signed checkpoint of the chain's head.
func (s *Store) AuditCheckpointAdd(ctx context.Context, c *audit.Checkpoint) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, head, time, signature) VALUES (?, ?, ?, ?)`,
			c.Seq, c.Head, msec(c.Time), c.Signature)
		return dbErr(err)
	})
}

// AuditCheckpointList returns every checkpoint, oldest first.
func (s *Store) AuditCheckpointList(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, head, time, signature FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var (
			c audit.Checkpoint
			t int64
		)
		if err := rows.Scan(&c.Seq, &c.Head, &t, &c.Signature); err != nil {
			return nil, dbErr(err)
		}
		c.Time = fromMsec(t)
		out = append(out, c)
	}
	return out, dbErr(rows.Err())
}
