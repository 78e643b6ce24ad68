package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"lode.dev/lode/internal/store"
)

const joinTokenColumns = `id, pool_id, hash, created_at, expires_at, revoked_at`

func scanJoinToken(sc scanner) (*store.JoinToken, error) {
	var (
		t                store.JoinToken
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.PoolID, &t.Hash, &created, &expires, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromMsec(created), fromNullMsec(expires), fromNullMsec(revoked)
	return &t, nil
}

func (s *Store) JoinTokenCreate(ctx context.Context, t *store.JoinToken) error {
	if t.ID == "" || t.PoolID == "" || t.Hash == "" {
		return fmt.Errorf("sqlite: a join token needs an ID, a pool and a hash")
	}
	t.CreatedAt = nowOr(t.CreatedAt)
	t.ExpiresAt, t.RevokedAt = utc(t.ExpiresAt), utc(t.RevokedAt)
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM pools WHERE id = ?`, t.PoolID).Scan(&one); err != nil {
			return notFound(err, "pool %s", t.PoolID)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (`+joinTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.PoolID, t.Hash, msec(t.CreatedAt), nullMsec(t.ExpiresAt), nullMsec(t.RevokedAt))
		return dbErr(err)
	})
}

func (s *Store) JoinTokenByHash(ctx context.Context, hash string) (*store.JoinToken, error) {
	t, err := scanJoinToken(s.r.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE hash = ?`, hash))
	// The hash stays out of the error: it is what the caller guessed.
	return t, dbErr(notFound(err, "join token"))
}

func (s *Store) JoinTokenList(ctx context.Context, poolID string) ([]*store.JoinToken, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE pool_id = ? ORDER BY created_at, id`, poolID)
	if err != nil {
		return nil, dbErr(err)
	}
	return collect(rows, scanJoinToken)
}

func (s *Store) JoinTokenRevoke(ctx context.Context, id string, now time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, msec(nowOr(now)), id)
		if err != nil {
			return dbErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("join token %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}
