package client

import (
	"context"
	"fmt"
	"net/url"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// The agent API. Calls that write for a task carry its fencing token; a
// fenced write fails with an error matching store.ErrFenced.

// Join trades a join token for a node identity.
func (c *Client) Join(ctx context.Context, req *wire.Join) (*wire.Joined, error) {
	var out wire.Joined
	return &out, c.call(ctx, "POST", "/v1/agent/join", "", req, &out)
}

// Leave tells the server the node is going away.
func (c *Client) Leave(ctx context.Context) error {
	return c.call(ctx, "POST", "/v1/agent/leave", "", nil, nil)
}

func taskPath(attempt string, rank int, what string) string {
	return fmt.Sprintf("/v1/agent/attempts/%s/ranks/%d/%s", url.PathEscape(attempt), rank, what)
}

// TaskStatus reports a task's state.
func (c *Client) TaskStatus(ctx context.Context, f store.Fence, rank int, st *wire.TaskStatus) error {
	return c.call(ctx, "POST", taskPath(f.AttemptID, rank, "status"), f.Token, st, nil)
}

// TaskLog appends task output.
func (c *Client) TaskLog(ctx context.Context, f store.Fence, rank int, l *wire.TaskLog) error {
	return c.call(ctx, "POST", taskPath(f.AttemptID, rank, "logs"), f.Token, l, nil)
}

// TaskMetrics appends metric lines.
func (c *Client) TaskMetrics(ctx context.Context, f store.Fence, rank int, m *wire.TaskMetrics) error {
	return c.call(ctx, "POST", taskPath(f.AttemptID, rank, "metrics"), f.Token, m, nil)
}

// CommitCheckpoint records a new checkpoint version.
func (c *Client) CommitCheckpoint(ctx context.Context, f store.Fence, cm *wire.Commit) (*store.Checkpoint, error) {
	var out store.Checkpoint
	return &out, c.call(ctx, "POST", "/v1/agent/attempts/"+url.PathEscape(f.AttemptID)+"/checkpoints", f.Token, cm, &out)
}

// CommitArtifact records the attempt's outputs.
func (c *Client) CommitArtifact(ctx context.Context, f store.Fence, cm *wire.Commit) (*store.Artifact, error) {
	var out store.Artifact
	return &out, c.call(ctx, "POST", "/v1/agent/attempts/"+url.PathEscape(f.AttemptID)+"/artifacts", f.Token, cm, &out)
}
