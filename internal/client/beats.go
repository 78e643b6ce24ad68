package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"lode.dev/lode/internal/wire"
)

// Beats is a node's heartbeat stream: one long request that carries every
// heartbeat, answered line by line. Open it with OpenBeats; when Beat fails
// the stream is broken, and the caller opens a new one. A Beats is used by
// one goroutine at a time.
type Beats struct {
	body    *io.PipeWriter
	resp    *http.Response
	frames  *wire.FrameReader
	enc     *json.Encoder
	cancel  context.CancelFunc
	base    string
	timeout time.Duration

	closeOnce sync.Once
}

// OpenBeats opens a heartbeat stream for the client's node. timeout bounds
// each heartbeat's round trip: a stream whose answer does not come in time
// is broken (a partition, a stalled server) and is closed.
func (c *Client) OpenBeats(ctx context.Context, timeout time.Duration) (*Beats, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	req, err := c.newRequest(ctx, "POST", "/v1/agent/heartbeats", pr, wire.MediaLines)
	if err != nil {
		cancel()
		return nil, err
	}
	// The answer to the opening comes before any heartbeat is sent; the
	// timeout covers it too. Closing the body as well frees a transport
	// that waits to send it to a server that reads nothing.
	timer := time.AfterFunc(timeout, func() {
		cancel()
		pw.CloseWithError(context.DeadlineExceeded)
	})
	resp, err := c.do(req)
	stopped := timer.Stop()
	if err != nil {
		cancel()
		pw.Close()
		if !stopped && errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%w: %s: no answer to a heartbeat stream within %v", ErrUnreachable, c.base, timeout)
		}
		return nil, err
	}
	return &Beats{
		body: pw, resp: resp, frames: wire.NewFrameReader(resp.Body), enc: json.NewEncoder(pw),
		cancel: cancel, base: c.base, timeout: timeout,
	}, nil
}

// Beat sends one heartbeat and waits for its answer. An error the server
// sent (the node is gone, a bad frame) is an *Error, as for other calls; a
// broken stream wraps ErrUnreachable. Either way the stream is closed.
func (b *Beats) Beat(hb *wire.Heartbeat) (*wire.HeartbeatReply, error) {
	timer := time.AfterFunc(b.timeout, b.abort)
	reply, err := b.beat(hb)
	if !timer.Stop() && err != nil {
		err = fmt.Errorf("%w: %s: no answer to a heartbeat within %v", ErrUnreachable, b.base, b.timeout)
	}
	if err != nil {
		b.Close()
	}
	return reply, err
}

func (b *Beats) beat(hb *wire.Heartbeat) (*wire.HeartbeatReply, error) {
	if err := b.enc.Encode(hb); err != nil {
		return nil, fmt.Errorf("%w: %s: sending a heartbeat: %v", ErrUnreachable, b.base, shortNetError(err))
	}
	var f wire.BeatFrame
	switch err := b.frames.Read(&f); {
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%w: %s: the server closed the heartbeat stream", ErrUnreachable, b.base)
	case err != nil:
		var fe *wire.FrameError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("heartbeat stream: bad answer from the server: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: reading a heartbeat's answer: %v", ErrUnreachable, b.base, shortNetError(err))
	case f.Error != nil:
		return nil, &Error{Status: http.StatusOK, Body: *f.Error}
	case f.Reply == nil:
		return nil, errors.New("heartbeat stream: an answer with neither a reply nor an error")
	}
	return f.Reply, nil
}

// abort breaks the stream from another goroutine: a read waiting for the
// answer returns, and so does a write the transport no longer takes.
func (b *Beats) abort() {
	b.cancel()
	b.body.CloseWithError(context.DeadlineExceeded)
}

// Close ends the stream.
func (b *Beats) Close() error {
	b.closeOnce.Do(func() {
		b.body.Close()
		b.cancel()
		b.resp.Body.Close()
	})
	return nil
}

// Heartbeat sends a single heartbeat on a stream of its own, for callers
// that beat once (tools, tests); agents keep a stream open with OpenBeats.
func (c *Client) Heartbeat(ctx context.Context, hb *wire.Heartbeat) (*wire.HeartbeatReply, error) {
	deadline := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	b, err := c.OpenBeats(ctx, deadline)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.Beat(hb)
}
