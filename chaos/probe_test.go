package chaos

import (
	"context"
	"errors"
	"sync"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

// probe is a node of the suite's own that no fault ever touches: it joins
// with too little CPU to be given work and heartbeats straight to the server
// (no proxy) at the server's interval, timing each heartbeat. When it is
// declared lost, the server lost a node that kept its lease: a false
// positive with no fault to blame.
type probe struct {
	srv   *server
	token string

	mu      sync.Mutex
	rtts    []time.Duration
	max     time.Duration
	slowest time.Time   // when the slowest heartbeat was sent
	lost    []time.Time // when the server said the probe was gone
	fails   int         // heartbeats that got no answer (the server was down)
}

func (p *probe) run(ctx context.Context) {
	for ctx.Err() == nil {
		c, joined, err := p.join(ctx)
		if err != nil {
			if !wait.Sleep(ctx, 250*time.Millisecond) {
				return
			}
			continue
		}
		p.beat(ctx, c, time.Duration(joined.HeartbeatIntervalMS)*time.Millisecond)
	}
}

func (p *probe) join(ctx context.Context) (*client.Client, *wire.Joined, error) {
	c := p.srv.client()
	return c.JoinAs(ctx, &wire.Join{JoinToken: p.token, Name: "probe", MilliCPUs: 1, MemoryBytes: 1})
}

// beat heartbeats until ctx ends or the server says the node is gone.
func (p *probe) beat(ctx context.Context, c *client.Client, every time.Duration) {
	tick := time.NewTicker(max(every, 50*time.Millisecond))
	defer tick.Stop()
	for {
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Heartbeat(hctx, &wire.Heartbeat{})
		cancel()
		p.mu.Lock()
		switch {
		case err == nil:
			rtt := time.Since(start)
			if rtt > p.max {
				p.max, p.slowest = rtt, start
			}
			p.rtts = append(p.rtts, rtt)
		case errors.Is(err, store.ErrNodeGone) || client.IsUnauthorized(err):
			p.lost = append(p.lost, time.Now())
		default:
			p.fails++
		}
		p.mu.Unlock()
		if errors.Is(err, store.ErrNodeGone) || client.IsUnauthorized(err) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
