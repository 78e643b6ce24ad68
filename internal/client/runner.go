package client

import (
	"context"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// Assignment fetches a task waiting to start, presenting its attempt's
// fencing token: how `lode runner`, which has no node credential, gets what
// an agent finds in a heartbeat reply. A token that is not the attempt's
// current one fails with an error matching store.ErrFenced; an unknown
// attempt, store.ErrNotFound.
func (c *Client) Assignment(ctx context.Context, f store.Fence, rank int) (*wire.Assignment, error) {
	var out wire.Assignment
	return &out, c.call(ctx, "GET", taskPath(f.AttemptID, rank, "assignment"), f.Token, nil, &out)
}
