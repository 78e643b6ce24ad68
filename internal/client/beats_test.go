package client

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// beatServer answers heartbeat streams as the API does, full duplex, with
// answer deciding each frame; it counts the connections it was opened.
func beatServer(t *testing.T, answer func(n int, hb *wire.Heartbeat) *wire.BeatFrame) (*Client, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/agent/heartbeats" || r.Header.Get(wire.HeaderNode) != "node-1" {
			http.Error(w, "wrong request", http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		frames := wire.NewFrameReader(r.Body)
		for n := 1; ; n++ {
			var hb wire.Heartbeat
			if frames.Read(&hb) != nil {
				return
			}
			f := answer(n, &hb)
			if f == nil {
				continue // fall silent, reading on
			}
			json.NewEncoder(w).Encode(f)
			rc.Flush()
			if f.Error != nil {
				return
			}
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c.WithNode("node-1", "secret"), &conns
}

func TestBeatsCarryManyHeartbeatsOnOneConnection(t *testing.T) {
	c, conns := beatServer(t, func(n int, hb *wire.Heartbeat) *wire.BeatFrame {
		reply := &wire.HeartbeatReply{}
		for _, ref := range hb.Tasks {
			reply.Stop = append(reply.Stop, wire.StopTask{TaskRef: ref, Reason: "beat " + string(rune('0'+n))})
		}
		return &wire.BeatFrame{Reply: reply}
	})
	b, err := c.OpenBeats(t.Context(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 1; i <= 5; i++ {
		ref := wire.TaskRef{AttemptID: "att-1", Rank: i}
		reply, err := b.Beat(&wire.Heartbeat{Tasks: []wire.TaskRef{ref}})
		if err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		// Each answer belongs to its own heartbeat, in order.
		if len(reply.Stop) != 1 || reply.Stop[0].TaskRef != ref || reply.Stop[0].Reason != "beat "+string(rune('0'+i)) {
			t.Errorf("heartbeat %d answered %+v", i, reply.Stop)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 heartbeats opened %d connections, want 1", n)
	}
}

func TestBeatsEndWithTheServersError(t *testing.T) {
	c, _ := beatServer(t, func(n int, _ *wire.Heartbeat) *wire.BeatFrame {
		if n < 2 {
			return &wire.BeatFrame{Reply: &wire.HeartbeatReply{}}
		}
		return &wire.BeatFrame{Error: &wire.Error{Code: "node_gone", Message: "node node-1 holds no lease"}}
	})
	b, err := c.OpenBeats(t.Context(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Beat(&wire.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	_, err = b.Beat(&wire.Heartbeat{})
	if !errors.Is(err, store.ErrNodeGone) {
		t.Errorf("second heartbeat: %v, want ErrNodeGone", err)
	}
	if _, err := b.Beat(&wire.Heartbeat{}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a heartbeat on the closed stream: %v, want ErrUnreachable", err)
	}
}

func TestBeatsTimeOutWhenTheServerFallsSilent(t *testing.T) {
	c, _ := beatServer(t, func(n int, _ *wire.Heartbeat) *wire.BeatFrame {
		if n < 2 {
			return &wire.BeatFrame{Reply: &wire.HeartbeatReply{}}
		}
		return nil
	})
	b, err := c.OpenBeats(t.Context(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Beat(&wire.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Beat(&wire.Heartbeat{}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a heartbeat nobody answers: %v, want ErrUnreachable", err)
	}
}

func TestBeatsTimeOutWhenNobodyReadsThem(t *testing.T) {
	// A server that is not full duplex reads nothing while it answers: the
	// stream must give up rather than hang, whether it is the opening or a
	// heartbeat's write that waits.
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-done
	}))
	defer srv.Close()
	defer close(done)
	c, _ := New(srv.URL)
	b, err := c.WithNode("node-1", "secret").OpenBeats(t.Context(), 200*time.Millisecond)
	if err != nil {
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("opening: %v, want ErrUnreachable", err)
		}
		return
	}
	defer b.Close()
	big := &wire.Heartbeat{}
	for i := range 20_000 {
		big.Tasks = append(big.Tasks, wire.TaskRef{AttemptID: "att-with-a-long-name-to-fill-buffers", Rank: i})
	}
	for range 20 {
		if _, err := b.Beat(big); err != nil {
			if !errors.Is(err, ErrUnreachable) {
				t.Errorf("err = %v, want ErrUnreachable", err)
			}
			return
		}
	}
	t.Error("20 heartbeats nobody read nor answered all succeeded")
}
