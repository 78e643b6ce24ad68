package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"lode.dev/lode/internal/store"
)

const projectColumns = `name, budget, weight, created_at, updated_at`

func scanProject(sc scanner) (*store.Project, error) {
	var (
		p                store.Project
		created, updated int64
	)
	if err := sc.Scan(&p.Name, &p.Budget, &p.Weight, &created, &updated); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = fromMsec(created), fromMsec(updated)
	return &p, nil
}

// ProjectPut creates or updates a project. A zero weight becomes 1; a
// negative budget or weight is an error.
func (s *Store) ProjectPut(ctx context.Context, p *store.Project) error {
	if p.Name == "" || p.Budget < 0 || p.Weight < 0 {
		return fmt.Errorf("sqlite: project %q: a name, and a budget and weight of 0 or more, are required", p.Name)
	}
	if p.Weight == 0 {
		p.Weight = 1
	}
	p.UpdatedAt = nowOr(p.UpdatedAt)
	return s.write(ctx, func(tx *sql.Tx) error {
		old, err := scanProject(tx.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = ?`, p.Name))
		switch {
		case err == nil:
			p.CreatedAt = old.CreatedAt
			_, err = tx.ExecContext(ctx, `UPDATE projects SET budget = ?, weight = ?, updated_at = ? WHERE name = ?`,
				p.Budget, p.Weight, msec(p.UpdatedAt), p.Name)
		case errors.Is(err, sql.ErrNoRows):
			p.CreatedAt = p.UpdatedAt
			_, err = tx.ExecContext(ctx, `INSERT INTO projects (`+projectColumns+`) VALUES (?, ?, ?, ?, ?)`,
				p.Name, p.Budget, p.Weight, msec(p.CreatedAt), msec(p.UpdatedAt))
		}
		return dbErr(err)
	})
}

func (s *Store) ProjectGet(ctx context.Context, name string) (*store.Project, error) {
	p, err := scanProject(s.r.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = ?`, name))
	return p, dbErr(notFound(err, "project %q", name))
}

// ProjectList lists projects by name.
func (s *Store) ProjectList(ctx context.Context) ([]*store.Project, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var ps []*store.Project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		ps = append(ps, p)
	}
	return ps, dbErr(rows.Err())
}

// UsageList returns usage records oldest first, filtered as p says.
func (s *Store) UsageList(ctx context.Context, p *store.UsageListParams) ([]*store.Usage, error) {
	var (
		where []string
		args  []any
	)
	for col, v := range map[string]string{"job_id": p.JobID, "project": p.Project, "pool_id": p.PoolID} {
		if v != "" {
			where, args = append(where, col+" = ?"), append(args, v)
		}
	}
	q := `SELECT attempt_id, job_id, project, pool_id, state, gpu_model, ranks, gpus, milli_cpus, memory_bytes,
		started_at, ended_at, seconds, price_per_hour, cost FROM usage`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.r.QueryContext(ctx, q+" ORDER BY ended_at, attempt_id", args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var us []*store.Usage
	for rows.Next() {
		var (
			u       store.Usage
			started sql.NullInt64
			ended   int64
		)
		if err := rows.Scan(&u.AttemptID, &u.JobID, &u.Project, &u.PoolID, &u.State, &u.GPUModel, &u.Ranks,
			&u.Resources.GPUs, &u.Resources.MilliCPUs, &u.Resources.MemoryBytes, &started, &ended,
			&u.Seconds, &u.PricePerHour, &u.Cost); err != nil {
			return nil, dbErr(err)
		}
		u.StartedAt, u.EndedAt = fromNullMsec(started), fromMsec(ended)
		us = append(us, &u)
	}
	return us, dbErr(rows.Err())
}
