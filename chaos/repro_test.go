package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// TestServerNoticesARunningTaskItsNodeDropped: a node's heartbeat lists the
// tasks it runs; the server stops the tasks it does not know and sends again
// the ones still assigned, and a task it holds as running that the node no
// longer lists was lost by the node: its attempt must end (lost) so the job
// moves on, rather than stay running for as long as the node heartbeats.
// An agent can lose a task that way when the answer to its running report
// is lost, or through any bug of its own; the server must not depend on it.
//
// The test plays the node itself, through the client: it takes the task,
// reports it running, then heartbeats with an empty list. Within a few
// heartbeats the server must do something about the task: end its attempt,
// or send it (start or stop) again.
func TestServerNoticesARunningTaskItsNodeDropped(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv := &server{dir: filepath.Join(dir, "server"), addr: fmt.Sprintf("127.0.0.1:%d", port), logDir: dir}
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.proc.signal(syscall.SIGKILL); _ = srv.proc.wait(10 * time.Second) }()
	ctx := context.Background()
	c := srv.client()
	tok, err := c.JoinToken(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	node, joined, err := c.JoinAs(ctx, &wire.Join{JoinToken: tok.Token, Name: "fake", MilliCPUs: 1000, MemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{cfg: config{Step: 40 * time.Millisecond, Every: 5}, pidDir: dir}
	s, err := r.spec(&job{name: "forgotten", target: 10})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.SubmitJob(ctx, &wire.SubmitJob{Spec: *s})
	if err != nil {
		t.Fatal(err)
	}

	// Take the task and report it running, as an agent does. The ticker
	// paces the heartbeats as an agent's would.
	beat := time.NewTicker(time.Duration(joined.HeartbeatIntervalMS) * time.Millisecond)
	defer beat.Stop()
	var as *wire.Assignment
	for end := time.Now().Add(20 * time.Second); as == nil; {
		reply, err := node.Heartbeat(ctx, &wire.Heartbeat{})
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.Start) > 0 {
			as = &reply.Start[0]
			break
		}
		if time.Now().After(end) {
			t.Fatal("the job was never assigned to the node")
		}
		<-beat.C
	}
	fence := store.Fence{AttemptID: as.Task.AttemptID, Token: as.FencingToken}
	if err := node.TaskStatus(ctx, fence, as.Task.Rank, &wire.TaskStatus{State: core.TaskRunning}); err != nil {
		t.Fatal(err)
	}

	// Now the node runs nothing, and says so at every heartbeat.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		reply, err := node.Heartbeat(ctx, &wire.Heartbeat{Tasks: []wire.TaskRef{}})
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		for _, st := range reply.Start {
			if st.Task.AttemptID == fence.AttemptID {
				return // sent again: the node can run it
			}
		}
		for _, st := range reply.Stop {
			if st.AttemptID == fence.AttemptID {
				return // told to stop: the server knows it is not running
			}
		}
		detail, err := c.Job(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range detail.AttemptList {
			if a.ID == fence.AttemptID && a.State.Terminal() {
				return // the attempt ended: the job can move on
			}
		}
		<-beat.C
	}
	detail, _ := c.Job(ctx, d.ID)
	t.Errorf("for 15 s the node's heartbeats listed no task, yet job %s is still %s with attempt %s running: "+
		"the server never noticed that the task it holds as running is not running anywhere", d.ID, detail.State, fence.AttemptID)
}
