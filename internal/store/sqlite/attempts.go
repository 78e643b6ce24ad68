package sqlite

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/meter"
	"lode.dev/lode/internal/store"
)

const attemptColumns = `a.id, a.job_id, a.seq, a.pool_id, a.state, a.fencing_token, a.reason, a.created_at, a.started_at, a.ended_at,
	a.gpu_model, a.price_per_hour, a.preempt_requested`

func scanAttempt(sc scanner, extra ...any) (*store.Attempt, error) {
	var (
		a              store.Attempt
		created        int64
		started, ended sql.NullInt64
	)
	dest := append([]any{&a.ID, &a.JobID, &a.Seq, &a.PoolID, &a.State, &a.FencingToken, &a.Reason,
		&created, &started, &ended, &a.GPUModel, &a.PricePerHour, &a.PreemptRequested}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	a.CreatedAt, a.StartedAt, a.EndedAt = fromMsec(created), fromNullMsec(started), fromNullMsec(ended)
	return &a, nil
}

const taskColumns = `t.attempt_id, t.rank, t.node_id, t.state, t.exit_code, t.message, t.milli_cpus, t.memory_bytes,
	t.gpus, t.gpu_models, t.started_at, t.ended_at`

func scanTask(sc scanner, extra ...any) (*store.Task, error) {
	var (
		t              store.Task
		models         string
		started, ended sql.NullInt64
	)
	dest := append([]any{&t.AttemptID, &t.Rank, &t.NodeID, &t.State, &t.ExitCode, &t.Message,
		&t.Resources.MilliCPUs, &t.Resources.MemoryBytes, &t.Resources.GPUs, &models, &started, &ended}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(models), &t.Resources.GPUModels); err != nil {
		return nil, fmt.Errorf("sqlite: task %s/%d: GPU models: %w", t.AttemptID, t.Rank, err)
	}
	t.StartedAt, t.EndedAt = fromNullMsec(started), fromNullMsec(ended)
	return &t, nil
}

func insertTask(ctx context.Context, tx *sql.Tx, t *store.Task) error {
	models, err := json.Marshal(t.Resources.GPUModels)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO tasks (attempt_id, rank, node_id, state, exit_code, message, milli_cpus,
		memory_bytes, gpus, gpu_models, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.AttemptID, t.Rank, t.NodeID, t.State, t.ExitCode, t.Message, t.Resources.MilliCPUs, t.Resources.MemoryBytes,
		t.Resources.GPUs, string(models), nullMsec(t.StartedAt), nullMsec(t.EndedAt))
	return err
}

func updateTask(ctx context.Context, tx *sql.Tx, t *store.Task) error {
	_, err := tx.ExecContext(ctx, `UPDATE tasks SET state = ?, exit_code = ?, message = ?, started_at = ?, ended_at = ?
		WHERE attempt_id = ? AND rank = ?`,
		t.State, t.ExitCode, t.Message, nullMsec(t.StartedAt), nullMsec(t.EndedAt), t.AttemptID, t.Rank)
	return err
}

func updateAttempt(ctx context.Context, tx *sql.Tx, a *store.Attempt) error {
	_, err := tx.ExecContext(ctx, `UPDATE attempts SET state = ?, reason = ?, started_at = ?, ended_at = ?, preempt_requested = ?
		WHERE id = ?`, a.State, a.Reason, nullMsec(a.StartedAt), nullMsec(a.EndedAt), a.PreemptRequested, a.ID)
	return err
}

// getAttempt reads an attempt without its tasks.
func getAttempt(ctx context.Context, q querier, id string) (*store.Attempt, error) {
	a, err := scanAttempt(q.QueryRowContext(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE a.id = ?`, id))
	return a, notFound(err, "attempt %s", id)
}

// getAttemptWithTasks reads an attempt and its tasks, by rank.
func getAttemptWithTasks(ctx context.Context, q querier, id string) (*store.Attempt, error) {
	a, err := getAttempt(ctx, q, id)
	if err != nil {
		return nil, err
	}
	if a.Tasks, err = getTasks(ctx, q, id); err != nil {
		return nil, err
	}
	return a, nil
}

func getTasks(ctx context.Context, q querier, attemptID string) ([]*store.Task, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks t WHERE t.attempt_id = ? ORDER BY t.rank`, attemptID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ts []*store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, rows.Err()
}

// AttemptCreate places a queued job on the nodes of one pool, re-checking
// every node's state and free resources against the tasks already on it. A
// node may appear more than once (several ranks on one machine) when it has
// room for all of them. A wrong number of nodes for the job's ranks is an
// error that is none of the store's sentinels: the caller's plan is wrong,
// not stale.
func (s *Store) AttemptCreate(ctx context.Context, p *store.AttemptCreateParams) (*store.Attempt, error) {
	now := nowOr(p.Now)
	var a *store.Attempt
	err := s.write(ctx, func(tx *sql.Tx) error {
		j, err := getJob(ctx, tx, p.JobID)
		if err != nil {
			return err
		}
		if j.State != core.JobQueued {
			return fmt.Errorf("job %s is %s, not queued: %w", j.ID, j.State, store.ErrConflict)
		}
		if ranks := max(1, j.Spec.Nodes); len(p.NodeIDs) != ranks {
			return fmt.Errorf("sqlite: job %s has %d ranks but the placement names %d nodes", j.ID, ranks, len(p.NodeIDs))
		}
		pool, err := scanPool(tx.QueryRowContext(ctx, `SELECT `+poolColumns+` FROM pools WHERE id = ?`, p.PoolID))
		if err != nil {
			return notFound(err, "pool %s", p.PoolID)
		}
		if pool.State != store.PoolActive {
			return fmt.Errorf("pool %s is %s: %w", pool.Name, pool.State, store.ErrConflict)
		}

		req := j.Spec.Resources
		if p.GPUModel != "" && req.GPUs > 0 {
			// The ranks hold GPUs of the model they were priced at.
			req.GPUModels = []string{p.GPUModel}
		}
		ranksOn, order := map[string]int{}, []string{}
		for _, id := range p.NodeIDs {
			if ranksOn[id] == 0 {
				order = append(order, id)
			}
			ranksOn[id]++
		}
		for _, id := range order {
			n, err := getNode(ctx, tx, id)
			if err != nil {
				return err
			}
			if n.PoolID != pool.ID {
				return fmt.Errorf("node %s belongs to pool %s, not %s: %w", n.ID, n.PoolID, pool.ID, store.ErrConflict)
			}
			if n.State != store.NodeReady {
				return fmt.Errorf("node %s is %s: %w", n.ID, n.State, store.ErrConflict)
			}
			if err := checkRoom(ctx, tx, n, req, ranksOn[id]); err != nil {
				return err
			}
		}

		a = &store.Attempt{
			ID:           core.NewID("att"),
			JobID:        j.ID,
			Seq:          j.Attempts + 1,
			PoolID:       pool.ID,
			State:        core.AttemptPlaced,
			FencingToken: core.NewSecret(),
			GPUModel:     p.GPUModel,
			PricePerHour: p.PricePerHour,
			CreatedAt:    now,
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (id, job_id, seq, pool_id, state, fencing_token, reason,
			created_at, started_at, ended_at, gpu_model, price_per_hour) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)`,
			a.ID, a.JobID, a.Seq, a.PoolID, a.State, a.FencingToken, a.Reason, msec(a.CreatedAt), a.GPUModel, a.PricePerHour); err != nil {
			return fmt.Errorf("attempt %d of job %s: %w", a.Seq, j.ID, dbErr(err))
		}
		for rank, id := range p.NodeIDs {
			t := &store.Task{AttemptID: a.ID, Rank: rank, NodeID: id, State: core.TaskAssigned, Resources: req}
			if err := insertTask(ctx, tx, t); err != nil {
				return err
			}
			a.Tasks = append(a.Tasks, t)
		}

		if err := core.CheckJobTransition(j.State, core.JobPlaced); err != nil {
			return err
		}
		j.State, j.Reason = core.JobPlaced, fmt.Sprintf("placed on pool %s", pool.Name)
		j.CurrentAttempt, j.Attempts, j.UpdatedAt = a.ID, j.Attempts+1, now
		return updateJob(ctx, tx, j)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// checkRoom returns ErrConflict unless node n has room for ranks more tasks
// asking req each, beside the unfinished tasks already on it.
func checkRoom(ctx context.Context, tx *sql.Tx, n *store.Node, req core.Resources, ranks int) error {
	rows, err := tx.QueryContext(ctx, `SELECT milli_cpus, memory_bytes, gpus, gpu_models FROM tasks
		WHERE node_id = ? AND state IN (?, ?)`, n.ID, core.TaskAssigned, core.TaskRunning)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		cpus, mem int64
		demands   []gpuDemand
	)
	for rows.Next() {
		var (
			c, m   int64
			g      int
			models string
			d      gpuDemand
		)
		if err := rows.Scan(&c, &m, &g, &models); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(models), &d.models); err != nil {
			return fmt.Errorf("sqlite: a task on node %s: GPU models: %w", n.ID, err)
		}
		d.n = g
		cpus, mem, demands = cpus+c, mem+m, append(demands, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	k := int64(ranks)
	if want := k * req.MilliCPUs; cpus+want > n.MilliCPUs {
		return fmt.Errorf("node %s has %dm CPU free, %d rank(s) ask %dm: %w",
			n.ID, max(0, n.MilliCPUs-cpus), ranks, want, store.ErrConflict)
	}
	if want := k * req.MemoryBytes; mem+want > n.MemoryBytes {
		return fmt.Errorf("node %s has %s of memory free, %d rank(s) ask %s: %w", n.ID,
			core.FormatBytes(max(0, n.MemoryBytes-mem)), ranks, core.FormatBytes(want), store.ErrConflict)
	}
	for range ranks {
		demands = append(demands, gpuDemand{n: req.GPUs, models: req.GPUModels})
	}
	if !gpusFit(n.GPUs, demands) {
		models := "any model"
		if len(req.GPUModels) > 0 {
			models = fmt.Sprint(req.GPUModels)
		}
		return fmt.Errorf("node %s lacks %d free GPU(s) of %s for %d rank(s): %w",
			n.ID, req.GPUs*ranks, models, ranks, store.ErrConflict)
	}
	return nil
}

func (s *Store) AttemptGet(ctx context.Context, id string) (*store.Attempt, error) {
	var a *store.Attempt
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = getAttemptWithTasks(ctx, tx, id)
		return err
	})
	return a, err
}

// AttemptListByJob returns a job's attempts by Seq, with their tasks;
// ErrNotFound when the job does not exist.
func (s *Store) AttemptListByJob(ctx context.Context, jobID string) ([]*store.Attempt, error) {
	var as []*store.Attempt
	err := s.read(ctx, func(tx *sql.Tx) error {
		as = nil
		if err := jobExists(ctx, tx, jobID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE a.job_id = ? ORDER BY a.seq`, jobID)
		if err != nil {
			return err
		}
		byID := map[string]*store.Attempt{}
		for rows.Next() {
			a, err := scanAttempt(rows)
			if err != nil {
				rows.Close()
				return err
			}
			as = append(as, a)
			byID[a.ID] = a
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks t JOIN attempts a ON a.id = t.attempt_id
			WHERE a.job_id = ? ORDER BY a.seq, t.rank`, jobID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanTask(rows)
			if err != nil {
				return err
			}
			if a := byID[t.AttemptID]; a != nil {
				a.Tasks = append(a.Tasks, t)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return as, nil
}

func jobExists(ctx context.Context, q querier, id string) error {
	var one int
	return notFound(q.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE id = ?`, id).Scan(&one), "job %s", id)
}

// TaskListByNode returns the tasks on a node whose attempts are live, and
// also any task still assigned or running whose attempt has ended, so that
// its agent stops it. Attempts that end here in the store (TaskUpdate, lease
// expiry) mark their unfinished tasks killed at once, so an agent must also
// stop every task it runs that is missing from the list. Assignments come in
// the order the attempts were created, then by rank. ErrNotFound when the
// node does not exist.
func (s *Store) TaskListByNode(ctx context.Context, nodeID string) ([]*store.Assignment, error) {
	var as []*store.Assignment
	err := s.read(ctx, func(tx *sql.Tx) error {
		as = nil
		if _, err := getNode(ctx, tx, nodeID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+taskColumns+`, a.state, a.fencing_token, a.job_id, a.preempt_requested
			FROM tasks t JOIN attempts a ON a.id = t.attempt_id
			WHERE t.node_id = ? AND (a.state IN (?, ?) OR t.state IN (?, ?))
			ORDER BY a.created_at, a.id, t.rank`,
			nodeID, core.AttemptPlaced, core.AttemptRunning, core.TaskAssigned, core.TaskRunning)
		if err != nil {
			return err
		}
		var jobIDs []string
		for rows.Next() {
			var (
				a     store.Assignment
				jobID string
			)
			t, err := scanTask(rows, &a.AttemptState, &a.FencingToken, &jobID, &a.Preempting)
			if err != nil {
				rows.Close()
				return err
			}
			a.Task = *t
			as, jobIDs = append(as, &a), append(jobIDs, jobID)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		jobs, ranks := map[string]*store.Job{}, map[string][]string{}
		for i, a := range as {
			id := jobIDs[i]
			if jobs[id] == nil {
				if jobs[id], err = getJob(ctx, tx, id); err != nil {
					return err
				}
			}
			a.Job = jobs[id]
			if ranks[a.Task.AttemptID] == nil {
				ts, err := getTasks(ctx, tx, a.Task.AttemptID)
				if err != nil {
					return err
				}
				for _, t := range ts {
					ranks[a.Task.AttemptID] = append(ranks[a.Task.AttemptID], t.NodeID)
				}
			}
			a.Ranks = ranks[a.Task.AttemptID]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return as, nil
}

// TaskListUnfinished returns the tasks that hold capacity: assigned or
// running, by node.
func (s *Store) TaskListUnfinished(ctx context.Context) ([]*store.Task, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks t WHERE t.state IN (?, ?) ORDER BY t.node_id, t.attempt_id, t.rank`,
		core.TaskAssigned, core.TaskRunning)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var ts []*store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		ts = append(ts, t)
	}
	return ts, dbErr(rows.Err())
}

// fence returns the attempt a worker writes for, without its tasks, and the
// attempt's job, or ErrFenced unless the attempt exists, the token is its
// own, it is its job's current attempt and it has not ended.
func fence(ctx context.Context, tx *sql.Tx, f store.Fence) (*store.Attempt, *store.Job, error) {
	a, err := getAttempt(ctx, tx, f.AttemptID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("attempt %s does not exist: %w", f.AttemptID, store.ErrFenced)
	}
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare([]byte(a.FencingToken), []byte(f.Token)) != 1 {
		return nil, nil, fmt.Errorf("attempt %s: wrong fencing token: %w", a.ID, store.ErrFenced)
	}
	if a.State.Terminal() {
		return nil, nil, fmt.Errorf("attempt %s has ended %s: %w", a.ID, a.State, store.ErrFenced)
	}
	j, err := getJob(ctx, tx, a.JobID)
	if err != nil {
		return nil, nil, err
	}
	if j.CurrentAttempt != a.ID {
		return nil, nil, fmt.Errorf("attempt %s is not job %s's current attempt: %w", a.ID, j.ID, store.ErrFenced)
	}
	return a, j, nil
}

// TaskUpdate records a task's new state (fenced). Running sets the task's
// StartedAt, an end its EndedAt; ExitCode is kept for ends only. The
// attempt's state follows core.AttemptOutcome; when the attempt ends, its
// other unfinished tasks are killed and the job moves on per
// core.JobAfterAttempt. A repeated report changes nothing. ErrNotFound when
// the attempt has no such rank.
func (s *Store) TaskUpdate(ctx context.Context, p *store.TaskUpdateParams) (*store.Attempt, error) {
	now := nowOr(p.Now)
	var a *store.Attempt
	err := s.write(ctx, func(tx *sql.Tx) error {
		var (
			j   *store.Job
			err error
		)
		if a, j, err = fence(ctx, tx, p.Fence); err != nil {
			return err
		}
		if a.Tasks, err = getTasks(ctx, tx, a.ID); err != nil {
			return err
		}
		if p.Rank < 0 || p.Rank >= len(a.Tasks) {
			return fmt.Errorf("task of rank %d in attempt %s: %w", p.Rank, a.ID, store.ErrNotFound)
		}
		t := a.Tasks[p.Rank]
		changed, err := core.CheckTaskTransition(t.State, t.ExitCode, p.State, p.ExitCode)
		if err != nil || !changed {
			return err
		}
		t.State, t.Message = p.State, p.Message
		if p.State == core.TaskRunning {
			t.StartedAt = now
		} else {
			t.ExitCode, t.EndedAt = p.ExitCode, now
		}
		if err := updateTask(ctx, tx, t); err != nil {
			return err
		}

		statuses := make([]core.TaskStatus, len(a.Tasks))
		for i, t := range a.Tasks {
			statuses[i] = core.TaskStatus{State: t.State, ExitCode: t.ExitCode}
		}
		next := core.AttemptOutcome(a.State, statuses)
		if next == core.AttemptCancelled && a.PreemptRequested && !j.CancelRequested {
			// Its ranks were stopped because the scheduler asked.
			next = core.AttemptPreempted
		}
		switch {
		case next == a.State:
			return nil
		case next.Terminal():
			return endAttempt(ctx, tx, a, next, endReason(t, next), now)
		}
		if err := core.CheckAttemptTransition(a.State, next); err != nil {
			return err
		}
		a.State, a.StartedAt = next, now
		if err := updateAttempt(ctx, tx, a); err != nil {
			return err
		}
		if next == core.AttemptRunning && j.State == core.JobPlaced {
			if err := core.CheckJobTransition(j.State, core.JobRunning); err != nil {
				return err
			}
			j.State, j.Reason, j.UpdatedAt = core.JobRunning, "", now
			return updateJob(ctx, tx, j)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// AttemptPreempt marks a live attempt for preemption; its agents stop its
// tasks with a grace period and report them killed, which ends it preempted.
func (s *Store) AttemptPreempt(ctx context.Context, p *store.AttemptPreemptParams) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		a, err := getAttempt(ctx, tx, p.AttemptID)
		if err != nil {
			return err
		}
		if a.State.Terminal() {
			return fmt.Errorf("attempt %s has ended %s: %w", a.ID, a.State, store.ErrConflict)
		}
		if a.PreemptRequested {
			return nil
		}
		a.PreemptRequested, a.Reason = true, p.Reason
		return updateAttempt(ctx, tx, a)
	})
}

// endReason says, for people, why the task t ended its attempt.
func endReason(t *store.Task, ended core.AttemptState) string {
	var why string
	switch {
	case ended == core.AttemptSucceeded:
		return "all ranks exited 0"
	case t.State == core.TaskExited:
		why = fmt.Sprintf("rank %d exited with code %d", t.Rank, t.ExitCode)
	default:
		why = fmt.Sprintf("rank %d was %s", t.Rank, t.State)
	}
	if t.Message != "" {
		why += ": " + t.Message
	}
	return why
}

// endAttempt ends a live attempt (whose tasks a holds) in state ended, kills
// its unfinished tasks (a failed or lost rank ends the whole gang) and moves
// its job on per core.JobAfterAttempt.
func endAttempt(ctx context.Context, tx *sql.Tx, a *store.Attempt, ended core.AttemptState, reason string, now time.Time) error {
	if err := core.CheckAttemptTransition(a.State, ended); err != nil {
		return err
	}
	a.State, a.Reason, a.EndedAt = ended, reason, now
	if err := updateAttempt(ctx, tx, a); err != nil {
		return err
	}
	exitCode := 0
	for _, t := range a.Tasks {
		if !t.State.Terminal() {
			t.State, t.EndedAt = core.TaskKilled, now
			t.Message = fmt.Sprintf("stopped: the attempt ended %s (%s)", ended, reason)
			if err := updateTask(ctx, tx, t); err != nil {
				return err
			}
		}
		if t.State == core.TaskExited && t.ExitCode != 0 && exitCode == 0 {
			exitCode = t.ExitCode
		}
	}

	j, err := getJob(ctx, tx, a.JobID)
	if err != nil {
		return err
	}
	if j.CurrentAttempt != a.ID {
		return fmt.Errorf("sqlite: attempt %s ended, but job %s's current attempt is %q", a.ID, j.ID, j.CurrentAttempt)
	}
	if err := insertUsage(ctx, tx, a, j.Project); err != nil {
		return err
	}
	state, used, why := core.JobAfterAttempt(ended, j.CancelRequested, j.Spec.Retries, j.Retries)
	if err := core.CheckJobTransition(j.State, state); err != nil {
		return err
	}
	j.State, j.Retries, j.Reason, j.ExitCode, j.UpdatedAt = state, used, why, exitCode, now
	switch {
	case state.Terminal():
		j.FinishedAt = now
	case state == core.JobQueued:
		j.CurrentAttempt = ""
	}
	return updateJob(ctx, tx, j)
}

// insertUsage meters an attempt that just ended, whatever its end.
func insertUsage(ctx context.Context, tx *sql.Tx, a *store.Attempt, project string) error {
	var r core.Resources
	if len(a.Tasks) > 0 {
		r = a.Tasks[0].Resources
	}
	seconds, cost := meter.Charge(a.StartedAt, a.EndedAt, a.PricePerHour)
	_, err := tx.ExecContext(ctx, `INSERT INTO usage (attempt_id, job_id, project, pool_id, state, gpu_model, ranks, gpus,
		milli_cpus, memory_bytes, started_at, ended_at, seconds, price_per_hour, cost)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.JobID, project, a.PoolID, a.State, a.GPUModel, len(a.Tasks), r.GPUs, r.MilliCPUs, r.MemoryBytes,
		nullMsec(a.StartedAt), msec(a.EndedAt), seconds, a.PricePerHour, cost)
	if err != nil {
		return fmt.Errorf("usage of attempt %s: %w", a.ID, dbErr(err))
	}
	return nil
}
