package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

const jobColumns = `id, name, project, spec, state, reason, priority, workdir_object, workdir_manifest, data_object,
	datasets, current_attempt, attempts, retries, cancel_requested, exit_code, created_at, updated_at, finished_at,
	idempotency_key, request_hash`

func scanJob(sc scanner) (*store.Job, error) {
	var (
		j                       store.Job
		spec, datasets, retries string
		created, updated        int64
		finished                sql.NullInt64
	)
	if err := sc.Scan(&j.ID, &j.Name, &j.Project, &spec, &j.State, &j.Reason, &j.Priority, &j.WorkdirObject,
		&j.WorkdirManifest, &j.DataObject, &datasets, &j.CurrentAttempt, &j.Attempts, &retries, &j.CancelRequested,
		&j.ExitCode, &created, &updated, &finished, &j.IdempotencyKey, &j.RequestHash); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return nil, fmt.Errorf("sqlite: job %s: spec: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(datasets), &j.Datasets); err != nil {
		return nil, fmt.Errorf("sqlite: job %s: datasets: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(retries), &j.Retries); err != nil {
		return nil, fmt.Errorf("sqlite: job %s: retries: %w", j.ID, err)
	}
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = fromMsec(created), fromMsec(updated), fromNullMsec(finished)
	return &j, nil
}

func getJob(ctx context.Context, q querier, id string) (*store.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	return j, notFound(err, "job %s", id)
}

// updateJob writes the fields of a job that change over its life.
func updateJob(ctx context.Context, tx *sql.Tx, j *store.Job) error {
	retries, err := json.Marshal(j.Retries)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET state = ?, reason = ?, current_attempt = ?, attempts = ?, retries = ?,
		cancel_requested = ?, exit_code = ?, updated_at = ?, finished_at = ? WHERE id = ?`,
		j.State, j.Reason, j.CurrentAttempt, j.Attempts, string(retries), j.CancelRequested, j.ExitCode,
		msec(j.UpdatedAt), nullMsec(j.FinishedAt), j.ID)
	return err
}

// JobCreate stores a submitted job. It must be new: its state empty (it
// becomes queued) or queued. A zero CreatedAt becomes the current time and a
// zero UpdatedAt the CreatedAt; a zero Priority takes the spec's. All of
// these are set on j.
func (s *Store) JobCreate(ctx context.Context, j *store.Job) error {
	if j.ID == "" {
		return fmt.Errorf("sqlite: job needs an ID")
	}
	if j.State == "" {
		j.State = core.JobQueued
	}
	if j.State != core.JobQueued {
		return fmt.Errorf("sqlite: job %s: a new job is queued, not %s", j.ID, j.State)
	}
	if j.Priority == 0 {
		j.Priority = j.Spec.Priority
	}
	j.CreatedAt = nowOr(j.CreatedAt)
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	j.UpdatedAt, j.FinishedAt = utc(j.UpdatedAt), utc(j.FinishedAt)
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return fmt.Errorf("sqlite: job %s: spec: %w", j.ID, err)
	}
	datasets, err := json.Marshal(j.Datasets)
	if err != nil {
		return fmt.Errorf("sqlite: job %s: datasets: %w", j.ID, err)
	}
	retries, err := json.Marshal(j.Retries)
	if err != nil {
		return fmt.Errorf("sqlite: job %s: retries: %w", j.ID, err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Name, j.Project, string(spec), j.State, j.Reason, j.Priority, j.WorkdirObject, j.WorkdirManifest,
			j.DataObject, string(datasets), j.CurrentAttempt, j.Attempts, string(retries), j.CancelRequested,
			j.ExitCode, msec(j.CreatedAt), msec(j.UpdatedAt), nullMsec(j.FinishedAt), j.IdempotencyKey, j.RequestHash)
		if err != nil {
			return fmt.Errorf("job %s: %w", j.ID, dbErr(err))
		}
		return nil
	})
}

func (s *Store) JobGetByIdempotencyKey(ctx context.Context, project, key string) (*store.Job, error) {
	if key == "" {
		return nil, fmt.Errorf("sqlite: an empty idempotency key names no job: %w", store.ErrNotFound)
	}
	j, err := scanJob(s.r.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE project = ? AND idempotency_key = ?`, project, key))
	return j, dbErr(notFound(err, "job with idempotency key %q in project %s", key, project))
}

func (s *Store) JobGet(ctx context.Context, id string) (*store.Job, error) {
	j, err := getJob(ctx, s.r, id)
	return j, dbErr(err)
}

// JobList lists jobs newest first (by CreatedAt, then ID).
func (s *Store) JobList(ctx context.Context, p *store.JobListParams) ([]*store.Job, error) {
	if p == nil {
		p = &store.JobListParams{}
	}
	q, args := `SELECT `+jobColumns+` FROM jobs WHERE 1 = 1`, []any{}
	if p.Project != "" {
		q, args = q+` AND project = ?`, append(args, p.Project)
	}
	if len(p.States) > 0 {
		q += ` AND state IN (` + placeholders(len(p.States)) + `)`
		for _, st := range p.States {
			args = append(args, st)
		}
	}
	q += ` ORDER BY created_at DESC, id DESC`
	if p.Limit > 0 {
		q, args = q+` LIMIT ?`, append(args, p.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var js []*store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		js = append(js, j)
	}
	return js, dbErr(rows.Err())
}

// JobCancel cancels a queued job at once and records the request for a
// placed or running one. Asking again while the request stands changes
// nothing and is no error.
func (s *Store) JobCancel(ctx context.Context, p *store.JobCancelParams) (*store.Job, error) {
	now := nowOr(p.Now)
	var j *store.Job
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if j, err = getJob(ctx, tx, p.JobID); err != nil {
			return err
		}
		switch {
		case j.State.Terminal():
			return fmt.Errorf("job %s is %s already: %w", j.ID, j.State, store.ErrConflict)
		case j.State == core.JobQueued:
			if err := core.CheckJobTransition(j.State, core.JobCancelled); err != nil {
				return err
			}
			j.State, j.Reason, j.FinishedAt = core.JobCancelled, "cancelled on request", now
		case j.CancelRequested:
			return nil
		}
		j.CancelRequested, j.UpdatedAt = true, now
		return updateJob(ctx, tx, j)
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}
