package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

const userColumns = `id, name, admin, created_at`

func scanUser(sc scanner) (*store.User, error) {
	var (
		u       store.User
		created int64
	)
	if err := sc.Scan(&u.ID, &u.Name, &u.Admin, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMsec(created)
	return &u, nil
}

func (s *Store) UserCreate(ctx context.Context, u *store.User) error {
	if u.ID == "" || u.Name == "" {
		return fmt.Errorf("sqlite: a user needs an ID and a name")
	}
	u.CreatedAt = nowOr(u.CreatedAt)
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?)`,
			u.ID, u.Name, u.Admin, msec(u.CreatedAt))
		if err != nil {
			return fmt.Errorf("user %q: %w", u.Name, dbErr(err))
		}
		return nil
	})
}

func (s *Store) UserGet(ctx context.Context, id string) (*store.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	return u, dbErr(notFound(err, "user %s", id))
}

func (s *Store) UserGetByName(ctx context.Context, name string) (*store.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
	return u, dbErr(notFound(err, "user %q", name))
}

func (s *Store) UserList(ctx context.Context) ([]*store.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, dbErr(err)
	}
	return collect(rows, scanUser)
}

const tokenColumns = `id, user_id, name, hash, created_at, expires_at, revoked_at`

func scanToken(sc scanner) (*store.Token, error) {
	var (
		t                store.Token
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.UserID, &t.Name, &t.Hash, &created, &expires, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromMsec(created), fromNullMsec(expires), fromNullMsec(revoked)
	return &t, nil
}

func (s *Store) TokenCreate(ctx context.Context, t *store.Token) error {
	if t.ID == "" || t.UserID == "" || t.Hash == "" {
		return fmt.Errorf("sqlite: a token needs an ID, a user and a hash")
	}
	t.CreatedAt = nowOr(t.CreatedAt)
	t.ExpiresAt, t.RevokedAt = utc(t.ExpiresAt), utc(t.RevokedAt)
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := getUser(ctx, tx, t.UserID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.UserID, t.Name, t.Hash, msec(t.CreatedAt), nullMsec(t.ExpiresAt), nullMsec(t.RevokedAt))
		return dbErr(err)
	})
}

func getUser(ctx context.Context, q querier, id string) (*store.User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	return u, notFound(err, "user %s", id)
}

func (s *Store) TokenGet(ctx context.Context, id string) (*store.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	return t, dbErr(notFound(err, "token %s", id))
}

func (s *Store) TokenList(ctx context.Context, userID string) ([]*store.Token, error) {
	q, args := `SELECT `+tokenColumns+` FROM tokens`, []any{}
	if userID != "" {
		q, args = q+` WHERE user_id = ?`, append(args, userID)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	return collect(rows, scanToken)
}

func (s *Store) TokenRevoke(ctx context.Context, id string, now time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, msec(nowOr(now)), id)
		if err != nil {
			return dbErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

func (s *Store) MemberPut(ctx context.Context, m *store.Member) error {
	if _, err := core.ParseRole(string(m.Role)); err != nil || m.Project == "" {
		return fmt.Errorf("sqlite: member of %q: a project and a role are required: %v", m.Project, err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := getUser(ctx, tx, m.UserID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO members (project, user_id, role) VALUES (?, ?, ?)
			ON CONFLICT (project, user_id) DO UPDATE SET role = excluded.role`, m.Project, m.UserID, m.Role)
		return dbErr(err)
	})
}

func (s *Store) MemberDelete(ctx context.Context, project, userID string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM members WHERE project = ? AND user_id = ?`, project, userID)
		if err != nil {
			return dbErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %s has no role in project %q: %w", userID, project, store.ErrNotFound)
		}
		return nil
	})
}

func (s *Store) MemberList(ctx context.Context, p *store.MemberListParams) ([]*store.Member, error) {
	q, args := `SELECT project, user_id, role FROM members WHERE 1 = 1`, []any{}
	if p.Project != "" {
		q, args = q+` AND project = ?`, append(args, p.Project)
	}
	if p.UserID != "" {
		q, args = q+` AND user_id = ?`, append(args, p.UserID)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY project, user_id`, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	return collect(rows, func(sc scanner) (*store.Member, error) {
		var m store.Member
		return &m, sc.Scan(&m.Project, &m.UserID, &m.Role)
	})
}
