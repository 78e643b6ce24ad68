package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// A heartbeat stream is one long request to /v1/agent/heartbeats: the agent
// writes one Heartbeat per line for as long as it lives, and the server
// answers each with one BeatFrame line. One request for many heartbeats
// spares the server the cost of a request per heartbeat, which at 10,000
// agents is most of what heartbeats cost.

// MediaLines is the media type of streams of newline-delimited JSON.
const MediaLines = "application/x-ndjson"

// MaxFrame bounds one line of a stream. A heartbeat lists the node's tasks
// and is a few hundred bytes; a reply carries assignments with data keys.
const MaxFrame = 1 << 20

// BeatFrame is the server's answer to one heartbeat of a stream: the reply,
// or the error that ends the stream.
type BeatFrame struct {
	Reply *HeartbeatReply `json:"reply,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// FrameReader reads a stream of newline-delimited JSON values, strictly: a
// value with unknown fields, or with anything after it on its line, is an
// error that says which frame was bad.
type FrameReader struct {
	sc *bufio.Scanner
	n  int
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxFrame)
	return &FrameReader{sc: sc}
}

// ErrFrameTooLarge is a line longer than MaxFrame.
var ErrFrameTooLarge = fmt.Errorf("frame over %d bytes", MaxFrame)

// Read decodes the next frame into v. It returns io.EOF at the clean end of
// the stream; errors of the underlying reader are returned as they are, so
// that callers can tell a broken connection from a bad frame.
func (f *FrameReader) Read(v any) error {
	for {
		if !f.sc.Scan() {
			err := f.sc.Err()
			switch {
			case err == nil:
				return io.EOF
			case errors.Is(err, bufio.ErrTooLong):
				return &FrameError{N: f.n + 1, Err: ErrFrameTooLarge}
			}
			return err
		}
		line := bytes.TrimSpace(f.sc.Bytes())
		if len(line) == 0 {
			continue // blank lines are allowed between frames
		}
		f.n++
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return &FrameError{N: f.n, Err: err}
		}
		if dec.More() {
			return &FrameError{N: f.n, Err: errors.New("data after the JSON value")}
		}
		return nil
	}
}

// FrameError is a frame that could not be decoded.
type FrameError struct {
	N   int // the frame's number, from 1
	Err error
}

func (e *FrameError) Error() string { return fmt.Sprintf("frame %d: %v", e.N, e.Err) }
func (e *FrameError) Unwrap() error { return e.Err }
