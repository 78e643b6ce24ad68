package client

import (
	"context"
	"net/url"

	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// CreatePool creates a pool.
func (c *Client) CreatePool(ctx context.Context, p *wire.PoolSpec) (*wire.PoolInfo, error) {
	var out wire.PoolInfo
	return &out, c.call(ctx, "POST", "/v1/pools", "", p, &out)
}

// UpdatePool changes the fields p sets on a pool.
func (c *Client) UpdatePool(ctx context.Context, name string, p *wire.PoolSpec) (*wire.PoolInfo, error) {
	var out wire.PoolInfo
	return &out, c.call(ctx, "PATCH", "/v1/pools/"+url.PathEscape(name), "", p, &out)
}

// DeletePool deletes a pool that never had a node.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", "/v1/pools/"+url.PathEscape(name), "", nil, nil)
}

// Projects lists projects.
func (c *Client) Projects(ctx context.Context) ([]*store.Project, error) {
	var out wire.ProjectList
	return out.Projects, c.call(ctx, "GET", "/v1/projects", "", nil, &out)
}

// PutProject sets a project's budget and weight.
func (c *Client) PutProject(ctx context.Context, name string, p *wire.ProjectSpec) (*store.Project, error) {
	var out store.Project
	return &out, c.call(ctx, "PUT", "/v1/projects/"+url.PathEscape(name), "", p, &out)
}

// Explain says where a job can run and what each pool would cost.
func (c *Client) Explain(ctx context.Context, id string) (*wire.Explanation, error) {
	var out wire.Explanation
	return &out, c.call(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/explain", "", nil, &out)
}

// DryRun says where a spec would run, without submitting it.
func (c *Client) DryRun(ctx context.Context, j *spec.Job) (*wire.Explanation, error) {
	var out wire.Explanation
	return &out, c.call(ctx, "POST", "/v1/dry-run", "", wire.DryRun{Spec: *j}, &out)
}

// Cost reports metered cost grouped by job, project or pool.
func (c *Client) Cost(ctx context.Context, by, project string) (*wire.CostReport, error) {
	q := url.Values{"by": {by}}
	if project != "" {
		q.Set("project", project)
	}
	var out wire.CostReport
	return &out, c.call(ctx, "GET", "/v1/cost?"+q.Encode(), "", nil, &out)
}

// JobCost reports what a job cost and would have cost elsewhere.
func (c *Client) JobCost(ctx context.Context, id string) (*wire.JobCost, error) {
	var out wire.JobCost
	return &out, c.call(ctx, "GET", "/v1/jobs/"+url.PathEscape(id)+"/cost", "", nil, &out)
}

// DrainNode stops a node taking work (undo: lets it take work again).
func (c *Client) DrainNode(ctx context.Context, id string, undo bool) (*wire.DrainReply, error) {
	verb := "drain"
	if undo {
		verb = "undrain"
	}
	var out wire.DrainReply
	return &out, c.call(ctx, "POST", "/v1/nodes/"+url.PathEscape(id)+"/"+verb, "", nil, &out)
}

// RevokeNode makes a node's credential useless at once (administrators).
func (c *Client) RevokeNode(ctx context.Context, id string) error {
	return c.call(ctx, "POST", "/v1/nodes/"+url.PathEscape(id)+"/revoke", "", nil, nil)
}

// DrainPool stops a pool taking work and moves its jobs elsewhere.
func (c *Client) DrainPool(ctx context.Context, name string) (*wire.DrainReply, error) {
	var out wire.DrainReply
	return &out, c.call(ctx, "POST", "/v1/pools/"+url.PathEscape(name)+"/drain", "", nil, &out)
}

// DrainSelf drains the agent's own node.
func (c *Client) DrainSelf(ctx context.Context) (*wire.DrainReply, error) {
	var out wire.DrainReply
	return &out, c.call(ctx, "POST", "/v1/agent/drain", "", nil, &out)
}

// Audit fetches the audit log.
func (c *Client) Audit(ctx context.Context) (*wire.AuditLog, error) {
	var out wire.AuditLog
	return &out, c.call(ctx, "GET", "/v1/audit", "", nil, &out)
}
