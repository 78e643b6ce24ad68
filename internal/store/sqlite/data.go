package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"lode.dev/lode/internal/store"
)

// LogAppend stores a piece of a task's output (fenced). An empty stream is
// stdout. Sequence numbers grow with every append, across all jobs; as
// writes are serialized, a reader that saw Seq n never later finds a new
// chunk below n.
func (s *Store) LogAppend(ctx context.Context, p *store.LogAppendParams) error {
	now := nowOr(p.Now)
	stream := p.Stream
	if stream == "" {
		stream = store.Stdout
	}
	data := p.Data
	if data == nil {
		data = []byte{}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		a, _, err := fence(ctx, tx, p.Fence)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO logs (job_id, attempt_id, rank, stream, data, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, a.JobID, a.ID, p.Rank, stream, data, msec(now))
		return err
	})
}

// LogList returns a job's output after p.AfterSeq, oldest first, at most
// p.Limit chunks (all when 0). ErrNotFound when the job does not exist.
func (s *Store) LogList(ctx context.Context, p *store.LogListParams) ([]*store.LogChunk, error) {
	var cs []*store.LogChunk
	err := s.read(ctx, func(tx *sql.Tx) error {
		cs = nil
		if err := jobExists(ctx, tx, p.JobID); err != nil {
			return err
		}
		q, args := `SELECT seq, job_id, attempt_id, rank, stream, data, created_at FROM logs
			WHERE job_id = ? AND seq > ? ORDER BY seq`, []any{p.JobID, p.AfterSeq}
		if p.Limit > 0 {
			q, args = q+` LIMIT ?`, append(args, p.Limit)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				c  store.LogChunk
				at int64
			)
			if err := rows.Scan(&c.Seq, &c.JobID, &c.AttemptID, &c.Rank, &c.Stream, &c.Data, &at); err != nil {
				return err
			}
			c.Time = fromMsec(at)
			cs = append(cs, &c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// MetricAppend stores metric lines (fenced), one row each, in order. Every
// line must be one JSON value; otherwise nothing is stored.
func (s *Store) MetricAppend(ctx context.Context, p *store.MetricAppendParams) error {
	now := nowOr(p.Now)
	var bad []error
	for i, l := range p.Lines {
		if !json.Valid(l) {
			bad = append(bad, fmt.Errorf("metric line %d is not JSON: %.80q", i+1, l))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("sqlite: %w", errors.Join(bad...))
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		a, _, err := fence(ctx, tx, p.Fence)
		if err != nil {
			return err
		}
		for _, l := range p.Lines {
			if _, err := tx.ExecContext(ctx, `INSERT INTO metrics (job_id, attempt_id, rank, data, created_at)
				VALUES (?, ?, ?, ?, ?)`, a.JobID, a.ID, p.Rank, string(l), msec(now)); err != nil {
				return err
			}
		}
		return nil
	})
}

// MetricList returns a job's metric lines after p.AfterSeq, oldest first,
// at most p.Limit (all when 0). ErrNotFound when the job does not exist.
func (s *Store) MetricList(ctx context.Context, p *store.MetricListParams) ([]*store.Metric, error) {
	var ms []*store.Metric
	err := s.read(ctx, func(tx *sql.Tx) error {
		ms = nil
		if err := jobExists(ctx, tx, p.JobID); err != nil {
			return err
		}
		q, args := `SELECT seq, job_id, attempt_id, rank, data, created_at FROM metrics
			WHERE job_id = ? AND seq > ? ORDER BY seq`, []any{p.JobID, p.AfterSeq}
		if p.Limit > 0 {
			q, args = q+` LIMIT ?`, append(args, p.Limit)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				m    store.Metric
				data string
				at   int64
			)
			if err := rows.Scan(&m.Seq, &m.JobID, &m.AttemptID, &m.Rank, &data, &at); err != nil {
				return err
			}
			m.Data, m.Time = json.RawMessage(data), fromMsec(at)
			ms = append(ms, &m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

const objectColumns = `id, kind, project, name, wrapped_key, created_at`

func scanObject(sc scanner) (*store.Object, error) {
	var (
		o  store.Object
		at int64
	)
	if err := sc.Scan(&o.ID, &o.Kind, &o.Project, &o.Name, &o.WrappedKey, &at); err != nil {
		return nil, err
	}
	o.CreatedAt = fromMsec(at)
	return &o, nil
}

// ObjectCreate records an object. A named object's (project, kind, name) is
// unique (ErrConflict), so that ObjectGetByName finds one; unnamed objects
// are many. A zero CreatedAt becomes the current time, set on o.
func (s *Store) ObjectCreate(ctx context.Context, o *store.Object) error {
	if o.ID == "" {
		return fmt.Errorf("sqlite: object needs an ID")
	}
	o.CreatedAt = nowOr(o.CreatedAt)
	key := o.WrappedKey
	if key == nil {
		key = []byte{}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO objects (`+objectColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			o.ID, o.Kind, o.Project, o.Name, key, msec(o.CreatedAt))
		if err != nil {
			return fmt.Errorf("object %s: %w", o.ID, dbErr(err))
		}
		return nil
	})
}

func (s *Store) ObjectGet(ctx context.Context, id string) (*store.Object, error) {
	o, err := scanObject(s.r.QueryRowContext(ctx, `SELECT `+objectColumns+` FROM objects WHERE id = ?`, id))
	return o, dbErr(notFound(err, "object %s", id))
}

func (s *Store) ObjectGetByName(ctx context.Context, project, kind, name string) (*store.Object, error) {
	if name == "" {
		return nil, fmt.Errorf("%s object of project %s without a name: %w", kind, project, store.ErrNotFound)
	}
	o, err := scanObject(s.r.QueryRowContext(ctx, `SELECT `+objectColumns+` FROM objects
		WHERE project = ? AND kind = ? AND name = ?`, project, kind, name))
	return o, dbErr(notFound(err, "%s object %s/%s", kind, project, name))
}

const datasetColumns = `project, name, version, object_id, manifest, classification, files, bytes, created_at`

func scanDataset(sc scanner) (*store.Dataset, error) {
	var (
		d  store.Dataset
		at int64
	)
	if err := sc.Scan(&d.Project, &d.Name, &d.Version, &d.ObjectID, &d.Manifest, &d.Classification, &d.Files,
		&d.Bytes, &at); err != nil {
		return nil, err
	}
	d.CreatedAt = fromMsec(at)
	return &d, nil
}

// DatasetCommit records a new version of a dataset, numbered newest + 1
// (1 for a dataset with no versions, also after DatasetDelete), and sets it
// on d, with a zero CreatedAt set to the current time.
func (s *Store) DatasetCommit(ctx context.Context, d *store.Dataset) error {
	if d.Project == "" || d.Name == "" {
		return fmt.Errorf("sqlite: dataset needs a project and a name")
	}
	created := nowOr(d.CreatedAt)
	var version int
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM datasets
			WHERE project = ? AND name = ?`, d.Project, d.Name).Scan(&version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO datasets (`+datasetColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.Project, d.Name, version, d.ObjectID, d.Manifest, d.Classification, d.Files, d.Bytes, msec(created))
		return err
	})
	if err != nil {
		return err
	}
	d.Version, d.CreatedAt = version, created
	return nil
}

func (s *Store) DatasetGet(ctx context.Context, project, name string, version int) (*store.Dataset, error) {
	q, args := `SELECT `+datasetColumns+` FROM datasets WHERE project = ? AND name = ?`, []any{project, name}
	if version > 0 {
		q, args = q+` AND version = ?`, append(args, version)
	} else {
		q += ` ORDER BY version DESC LIMIT 1`
	}
	d, err := scanDataset(s.r.QueryRowContext(ctx, q, args...))
	if version > 0 {
		return d, dbErr(notFound(err, "dataset %s/%s version %d", project, name, version))
	}
	return d, dbErr(notFound(err, "dataset %s/%s", project, name))
}

// DatasetList returns the newest version of every dataset, by project and
// name.
func (s *Store) DatasetList(ctx context.Context, project string) ([]*store.Dataset, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+datasetColumns+` FROM datasets d
		WHERE (? = '' OR d.project = ?)
		AND d.version = (SELECT MAX(n.version) FROM datasets n WHERE n.project = d.project AND n.name = d.name)
		ORDER BY d.project, d.name`, project, project)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var ds []*store.Dataset
	for rows.Next() {
		d, err := scanDataset(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		ds = append(ds, d)
	}
	return ds, dbErr(rows.Err())
}

// DatasetDelete removes every version of a dataset; ErrNotFound when it has
// none. The objects and jobs that refer to it are left as they are.
func (s *Store) DatasetDelete(ctx context.Context, project, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM datasets WHERE project = ? AND name = ?`, project, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("dataset %s/%s: %w", project, name, store.ErrNotFound)
		}
		return nil
	})
}

const checkpointColumns = `job_id, version, attempt_id, manifest, files, bytes, created_at`

func scanCheckpoint(sc scanner) (*store.Checkpoint, error) {
	var (
		c  store.Checkpoint
		at int64
	)
	if err := sc.Scan(&c.JobID, &c.Version, &c.AttemptID, &c.Manifest, &c.Files, &c.Bytes, &at); err != nil {
		return nil, err
	}
	c.CreatedAt = fromMsec(at)
	return &c, nil
}

// CheckpointCommit records a new checkpoint (fenced), numbered one above the
// job's newest, whichever attempt wrote that.
func (s *Store) CheckpointCommit(ctx context.Context, p *store.CheckpointCommitParams) (*store.Checkpoint, error) {
	now := nowOr(p.Now)
	var c *store.Checkpoint
	err := s.write(ctx, func(tx *sql.Tx) error {
		a, _, err := fence(ctx, tx, p.Fence)
		if err != nil {
			return err
		}
		c = &store.Checkpoint{JobID: a.JobID, AttemptID: a.ID, Manifest: p.Manifest, Files: p.Files, Bytes: p.Bytes, CreatedAt: now}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM checkpoints WHERE job_id = ?`,
			a.JobID).Scan(&c.Version); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (`+checkpointColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			c.JobID, c.Version, c.AttemptID, c.Manifest, c.Files, c.Bytes, msec(c.CreatedAt))
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Store) CheckpointLatest(ctx context.Context, jobID string) (*store.Checkpoint, error) {
	c, err := scanCheckpoint(s.r.QueryRowContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints
		WHERE job_id = ? ORDER BY version DESC LIMIT 1`, jobID))
	return c, dbErr(notFound(err, "checkpoint of job %s", jobID))
}

// CheckpointList returns a job's checkpoints, oldest version first;
// ErrNotFound when the job does not exist.
func (s *Store) CheckpointList(ctx context.Context, jobID string) ([]*store.Checkpoint, error) {
	var cs []*store.Checkpoint
	err := s.read(ctx, func(tx *sql.Tx) error {
		cs = nil
		if err := jobExists(ctx, tx, jobID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+checkpointColumns+` FROM checkpoints WHERE job_id = ? ORDER BY version`, jobID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCheckpoint(rows)
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// ArtifactCommit records the outputs of an attempt (fenced), replacing what
// the same attempt committed before.
func (s *Store) ArtifactCommit(ctx context.Context, p *store.ArtifactCommitParams) (*store.Artifact, error) {
	now := nowOr(p.Now)
	var art *store.Artifact
	err := s.write(ctx, func(tx *sql.Tx) error {
		a, _, err := fence(ctx, tx, p.Fence)
		if err != nil {
			return err
		}
		art = &store.Artifact{JobID: a.JobID, AttemptID: a.ID, Manifest: p.Manifest, Files: p.Files, Bytes: p.Bytes, CreatedAt: now}
		_, err = tx.ExecContext(ctx, `INSERT INTO artifacts (attempt_id, job_id, manifest, files, bytes, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (attempt_id) DO UPDATE SET manifest = excluded.manifest, files = excluded.files,
				bytes = excluded.bytes, created_at = excluded.created_at`,
			art.AttemptID, art.JobID, art.Manifest, art.Files, art.Bytes, msec(art.CreatedAt))
		return err
	})
	if err != nil {
		return nil, err
	}
	return art, nil
}

// ArtifactGet returns the outputs of the job's newest attempt that sent any;
// ErrNotFound when none did.
func (s *Store) ArtifactGet(ctx context.Context, jobID string) (*store.Artifact, error) {
	var (
		art store.Artifact
		at  int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT r.job_id, r.attempt_id, r.manifest, r.files, r.bytes, r.created_at
		FROM artifacts r JOIN attempts a ON a.id = r.attempt_id
		WHERE r.job_id = ? ORDER BY a.seq DESC LIMIT 1`, jobID).
		Scan(&art.JobID, &art.AttemptID, &art.Manifest, &art.Files, &art.Bytes, &at)
	if err != nil {
		return nil, dbErr(notFound(err, "artifacts of job %s", jobID))
	}
	art.CreatedAt = fromMsec(at)
	return &art, nil
}
