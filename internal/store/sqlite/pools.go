package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

const poolColumns = `id, name, driver, region, tier, state, created_at, interconnect, prices, state_reason, state_changed_at`

func scanPool(sc scanner) (*store.Pool, error) {
	var (
		p                    store.Pool
		created              int64
		interconnect, prices string
		changed              sql.NullInt64
	)
	if err := sc.Scan(&p.ID, &p.Name, &p.Driver, &p.Region, &p.Tier, &p.State, &created, &interconnect, &prices,
		&p.StateReason, &changed); err != nil {
		return nil, err
	}
	p.StateChangedAt = fromNullMsec(changed)
	p.CreatedAt = fromMsec(created)
	if err := json.Unmarshal([]byte(interconnect), &p.Interconnect); err != nil {
		return nil, fmt.Errorf("pool %s: interconnect: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(prices), &p.Prices); err != nil {
		return nil, fmt.Errorf("pool %s: prices: %w", p.ID, err)
	}
	return &p, nil
}

// poolJSON encodes a pool's interconnect and prices.
func poolJSON(p *store.Pool) (interconnect, prices string, err error) {
	ic, err := json.Marshal(p.Interconnect)
	if err != nil {
		return "", "", err
	}
	pr, err := json.Marshal(p.Prices)
	return string(ic), string(pr), err
}

// PoolCreate stores a pool. An empty state becomes active and a zero
// CreatedAt the current time; both are set on p. Names are unique
// (ErrConflict).
func (s *Store) PoolCreate(ctx context.Context, p *store.Pool) error {
	if p.ID == "" || p.Name == "" {
		return fmt.Errorf("sqlite: pool needs an ID and a name")
	}
	if p.State == "" {
		p.State = store.PoolActive
	}
	p.CreatedAt = nowOr(p.CreatedAt)
	ic, pr, err := poolJSON(p)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO pools (`+poolColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Driver, p.Region, p.Tier, p.State, msec(p.CreatedAt), ic, pr, p.StateReason, nullMsec(p.StateChangedAt))
		if err != nil {
			return fmt.Errorf("pool %s (%s): %w", p.ID, p.Name, dbErr(err))
		}
		return nil
	})
}

// PoolUpdate stores a pool's name, region, tier, state, interconnect and
// prices (its driver, join token and creation time stay).
func (s *Store) PoolUpdate(ctx context.Context, p *store.Pool) error {
	switch p.State {
	case store.PoolActive, store.PoolDraining, store.PoolQuarantined:
	default:
		return fmt.Errorf("sqlite: pool %s: unknown state %q", p.ID, p.State)
	}
	ic, pr, err := poolJSON(p)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pools SET name = ?, region = ?, tier = ?, state = ?, interconnect = ?, prices = ?,
			state_reason = ?, state_changed_at = ? WHERE id = ?`,
			p.Name, p.Region, p.Tier, p.State, ic, pr, p.StateReason, nullMsec(p.StateChangedAt), p.ID)
		if err != nil {
			return fmt.Errorf("pool %s (%s): %w", p.ID, p.Name, dbErr(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("pool %s: %w", p.ID, store.ErrNotFound)
		}
		return nil
	})
}

// PoolDelete removes a pool that has never had a node. A pool with history
// is drained instead, so its attempts and usage keep their pool.
func (s *Store) PoolDelete(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var nodes int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE pool_id = ?`, id).Scan(&nodes); err != nil {
			return dbErr(err)
		}
		if nodes > 0 {
			return fmt.Errorf("pool %s has had %d nodes; drain it instead: %w", id, nodes, store.ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM pools WHERE id = ?`, id)
		if err != nil {
			return dbErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("pool %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

func (s *Store) PoolGet(ctx context.Context, id string) (*store.Pool, error) {
	p, err := scanPool(s.r.QueryRowContext(ctx, `SELECT `+poolColumns+` FROM pools WHERE id = ?`, id))
	return p, dbErr(notFound(err, "pool %s", id))
}

func (s *Store) PoolGetByName(ctx context.Context, name string) (*store.Pool, error) {
	p, err := scanPool(s.r.QueryRowContext(ctx, `SELECT `+poolColumns+` FROM pools WHERE name = ?`, name))
	return p, dbErr(notFound(err, "pool named %q", name))
}

// JoinTokensAdopt moves the join tokens older stores kept in the clear
// (pools.join_token) into join_tokens, hashed with hash, and clears them.
// It returns how many it moved.
func (s *Store) JoinTokensAdopt(ctx context.Context, hash func(string) string) (int, error) {
	n := 0
	err := s.write(ctx, func(tx *sql.Tx) error {
		n = 0
		rows, err := tx.QueryContext(ctx, `SELECT id, join_token FROM pools WHERE join_token IS NOT NULL AND join_token <> ''`)
		if err != nil {
			return err
		}
		type legacy struct{ pool, token string }
		var found []legacy
		for rows.Next() {
			var l legacy
			if err := rows.Scan(&l.pool, &l.token); err != nil {
				rows.Close()
				return err
			}
			found = append(found, l)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, l := range found {
			if _, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (`+joinTokenColumns+`) VALUES (?, ?, ?, ?, NULL, NULL)`,
				core.NewID("jt"), l.pool, hash(l.token), msec(time.Now())); err != nil {
				return dbErr(err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE pools SET join_token = NULL WHERE id = ?`, l.pool); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// PoolList lists every pool by name.
func (s *Store) PoolList(ctx context.Context) ([]*store.Pool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+poolColumns+` FROM pools ORDER BY name`)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var ps []*store.Pool
	for rows.Next() {
		p, err := scanPool(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		ps = append(ps, p)
	}
	return ps, dbErr(rows.Err())
}

const nodeColumns = `id, pool_id, name, state, milli_cpus, memory_bytes, gpus, labels, credential_hash, agent_version,
	registered_at, last_heartbeat_at, lease_expires_at`

func scanNode(sc scanner) (*store.Node, error) {
	var (
		n                   store.Node
		gpus, labels        string
		registered          int64
		heartbeat, leaseEnd sql.NullInt64
	)
	if err := sc.Scan(&n.ID, &n.PoolID, &n.Name, &n.State, &n.MilliCPUs, &n.MemoryBytes, &gpus, &labels,
		&n.CredentialHash, &n.AgentVersion, &registered, &heartbeat, &leaseEnd); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(gpus), &n.GPUs); err != nil {
		return nil, fmt.Errorf("sqlite: node %s: GPUs: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(labels), &n.Labels); err != nil {
		return nil, fmt.Errorf("sqlite: node %s: labels: %w", n.ID, err)
	}
	n.RegisteredAt = fromMsec(registered)
	n.LastHeartbeatAt = fromNullMsec(heartbeat)
	n.LeaseExpiresAt = fromNullMsec(leaseEnd)
	return &n, nil
}

func getNode(ctx context.Context, q querier, id string) (*store.Node, error) {
	n, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = ?`, id))
	return n, notFound(err, "node %s", id)
}

// NodeCreate stores a node that joined. An empty state becomes ready and a
// zero RegisteredAt the current time; both are set on n. ErrNotFound when
// its pool does not exist.
func (s *Store) NodeCreate(ctx context.Context, n *store.Node) error {
	if n.ID == "" || n.PoolID == "" {
		return fmt.Errorf("sqlite: node needs an ID and a pool")
	}
	if n.State == "" {
		n.State = store.NodeReady
	}
	n.RegisteredAt = nowOr(n.RegisteredAt)
	n.LastHeartbeatAt = utc(n.LastHeartbeatAt)
	n.LeaseExpiresAt = utc(n.LeaseExpiresAt)
	gpus, err := json.Marshal(n.GPUs)
	if err != nil {
		return fmt.Errorf("sqlite: node %s: GPUs: %w", n.ID, err)
	}
	labels, err := json.Marshal(n.Labels)
	if err != nil {
		return fmt.Errorf("sqlite: node %s: labels: %w", n.ID, err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM pools WHERE id = ?`, n.PoolID).Scan(&one)
		if err != nil {
			return notFound(err, "pool %s of node %s", n.PoolID, n.ID)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO nodes (`+nodeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.PoolID, n.Name, n.State, n.MilliCPUs, n.MemoryBytes, string(gpus), string(labels),
			n.CredentialHash, n.AgentVersion, msec(n.RegisteredAt), nullMsec(n.LastHeartbeatAt), nullMsec(n.LeaseExpiresAt))
		if err != nil {
			return fmt.Errorf("node %s: %w", n.ID, dbErr(err))
		}
		return nil
	})
}

func (s *Store) NodeGet(ctx context.Context, id string) (*store.Node, error) {
	n, err := getNode(ctx, s.r, id)
	return n, dbErr(err)
}

// NodeList lists nodes in the order they registered.
func (s *Store) NodeList(ctx context.Context, p *store.NodeListParams) ([]*store.Node, error) {
	if p == nil {
		p = &store.NodeListParams{}
	}
	q, args := `SELECT `+nodeColumns+` FROM nodes WHERE 1 = 1`, []any{}
	if p.PoolID != "" {
		q, args = q+` AND pool_id = ?`, append(args, p.PoolID)
	}
	if p.State != "" {
		q, args = q+` AND state = ?`, append(args, p.State)
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY registered_at, id`, args...)
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	var ns []*store.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		ns = append(ns, n)
	}
	return ns, dbErr(rows.Err())
}

// nodeGone returns ErrNodeGone unless the node is ready or draining.
func nodeGone(n *store.Node) error {
	if n.State != store.NodeReady && n.State != store.NodeDraining {
		return fmt.Errorf("node %s is %s: %w", n.ID, n.State, store.ErrNodeGone)
	}
	return nil
}

// liveNode reads a node that is ready or draining: ErrNodeGone for one lost
// or left.
func liveNode(ctx context.Context, q querier, id string) (*store.Node, error) {
	n, err := getNode(ctx, q, id)
	if err != nil {
		return nil, err
	}
	return n, nodeGone(n)
}

func (s *Store) NodeHeartbeat(ctx context.Context, p *store.NodeHeartbeatParams) (*store.Node, error) {
	now := nowOr(p.Now)
	var n *store.Node
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if n, err = getNode(ctx, tx, p.NodeID); err != nil {
			return err
		}
		if err := nodeGone(n); err != nil {
			return err
		}
		n.LastHeartbeatAt, n.LeaseExpiresAt = now, utc(p.LeaseExpiresAt)
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET last_heartbeat_at = ?, lease_expires_at = ? WHERE id = ?`,
			msec(n.LastHeartbeatAt), nullMsec(n.LeaseExpiresAt), n.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// NodeExpireLeases declares lost every ready node whose lease ended before
// p.Now (a node that never had a lease counts as expired). All the nodes
// are marked first, so that a gang that loses two nodes at once sees both of
// its tasks lost rather than one lost and one killed.
func (s *Store) NodeExpireLeases(ctx context.Context, p *store.NodeExpireLeasesParams) ([]*store.Node, error) {
	now := nowOr(p.Now)
	var lost []*store.Node
	err := s.write(ctx, func(tx *sql.Tx) error {
		lost = nil
		rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes
			WHERE state IN (?, ?) AND (lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY id`,
			store.NodeReady, store.NodeDraining, msec(now))
		if err != nil {
			return err
		}
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				rows.Close()
				return err
			}
			lost = append(lost, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return goneNodes(ctx, tx, lost, store.NodeLost, "its lease expired", now)
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// NodeMarkLost declares lost the live nodes named in p.LastSeen.
func (s *Store) NodeMarkLost(ctx context.Context, p *store.NodeMarkLostParams) ([]*store.Node, error) {
	now := nowOr(p.Now)
	var lost []*store.Node
	err := s.write(ctx, func(tx *sql.Tx) error {
		lost = nil
		ids := slices.Sorted(maps.Keys(p.LastSeen))
		for _, id := range ids {
			n, err := getNode(ctx, tx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if nodeGone(n) != nil {
				continue
			}
			n.LastHeartbeatAt = utc(p.LastSeen[id])
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?`, msec(n.LastHeartbeatAt), n.ID); err != nil {
				return err
			}
			lost = append(lost, n)
		}
		return goneNodes(ctx, tx, lost, store.NodeLost, "its lease expired", now)
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

func (s *Store) NodeLeave(ctx context.Context, p *store.NodeLeaveParams) error {
	now := nowOr(p.Now)
	return s.write(ctx, func(tx *sql.Tx) error {
		n, err := liveNode(ctx, tx, p.NodeID)
		if err != nil {
			return err
		}
		n.LastHeartbeatAt = now
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?`, msec(now), n.ID); err != nil {
			return err
		}
		return goneNodes(ctx, tx, []*store.Node{n}, store.NodeLeft, "it left", now)
	})
}

// NodeDrain marks a live node draining (or ready again, with Undo) and asks
// the live attempts with tasks on it to stop.
func (s *Store) NodeSetCapacity(ctx context.Context, p *store.NodeSetCapacityParams) error {
	gpus, err := json.Marshal(p.GPUs)
	if err != nil {
		return fmt.Errorf("sqlite: node %s: GPUs: %w", p.NodeID, err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		n, err := liveNode(ctx, tx, p.NodeID)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET milli_cpus = ?, memory_bytes = ?, gpus = ? WHERE id = ?`,
			p.MilliCPUs, p.MemoryBytes, string(gpus), n.ID)
		return err
	})
}

func (s *Store) NodeDrain(ctx context.Context, p *store.NodeDrainParams) ([]string, error) {
	var asked []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		asked = nil
		n, err := liveNode(ctx, tx, p.NodeID)
		if err != nil {
			return err
		}
		state := store.NodeDraining
		if p.Undo {
			state = store.NodeReady
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET state = ? WHERE id = ?`, state, n.ID); err != nil {
			return err
		}
		if p.Undo {
			return nil
		}
		if asked, err = queryStrings(ctx, tx, `SELECT DISTINCT a.id FROM tasks t JOIN attempts a ON a.id = t.attempt_id
			WHERE t.node_id = ? AND t.state IN (?, ?) AND a.state IN (?, ?) ORDER BY a.id`,
			n.ID, core.TaskAssigned, core.TaskRunning, core.AttemptPlaced, core.AttemptRunning); err != nil {
			return err
		}
		for _, id := range asked {
			if _, err := tx.ExecContext(ctx, `UPDATE attempts SET preempt_requested = ?, reason = ? WHERE id = ?`,
				true, p.Reason, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return asked, nil
}

// goneNodes moves nodes to state (lost or left), marks their unfinished
// tasks lost and ends those tasks' attempts as lost, moving the jobs on.
func goneNodes(ctx context.Context, tx *sql.Tx, nodes []*store.Node, state store.NodeState, why string, now time.Time) error {
	var attempts []string
	seen := map[string]bool{}
	for _, n := range nodes {
		n.State = state
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET state = ? WHERE id = ?`, state, n.ID); err != nil {
			return err
		}
		ids, err := queryStrings(ctx, tx, `SELECT DISTINCT attempt_id FROM tasks WHERE node_id = ? AND state IN (?, ?)
			ORDER BY attempt_id`, n.ID, core.TaskAssigned, core.TaskRunning)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				attempts = append(attempts, id)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET state = ?, message = ?, ended_at = ?
			WHERE node_id = ? AND state IN (?, ?)`,
			core.TaskLost, fmt.Sprintf("node %s is gone: %s", n.ID, why), msec(now),
			n.ID, core.TaskAssigned, core.TaskRunning); err != nil {
			return err
		}
	}
	for _, id := range attempts {
		a, err := getAttemptWithTasks(ctx, tx, id)
		if err != nil {
			return err
		}
		if a.State.Terminal() {
			continue // cannot happen: a live task means a live attempt
		}
		// Every lost task of a live attempt was lost just now: an earlier
		// loss would have ended the attempt.
		var lost []string
		for _, t := range a.Tasks {
			if t.State == core.TaskLost {
				lost = append(lost, fmt.Sprintf("rank %d on node %s", t.Rank, t.NodeID))
			}
		}
		reason := fmt.Sprintf("lost %s: %s", strings.Join(lost, ", "), why)
		if err := endAttempt(ctx, tx, a, core.AttemptLost, reason, now); err != nil {
			return err
		}
	}
	return nil
}
