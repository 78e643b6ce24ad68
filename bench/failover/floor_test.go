package failover

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"lode.dev/lode/internal/wait"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The floor of the heartbeat load: a process that does nothing but read one
// line from each of n TCP connections about once a second and answer it with
// one line, as heartbeats are read and answered, with no HTTP, no JSON and
// no lease. What the server spends above it is what Lode's protocol costs;
// the floor itself is what one TCP connection per agent costs on this
// machine, whatever the protocol.

// floorLine and floorReply are the sizes of an idle heartbeat and its answer.
const (
	floorLine  = `{"tasks":[]}` + "\n"
	floorReply = `{"reply":{"lease_expires_at":"2026-11-29T17:00:00.000000000Z"}}` + "\n"
)

// TestFloorServer is the floor's server process: the benchmark starts this
// test binary again with LODE_BENCH_FLOOR_SERVER=1. It prints its address
// and serves until its standard input closes.
func TestFloorServer(t *testing.T) {
	if os.Getenv("LODE_BENCH_FLOOR_SERVER") != "1" {
		t.Skip("the heartbeat benchmark's baseline server; started by BenchmarkHeartbeatLoad")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("floor serving on %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadSlice('\n'); err != nil {
						return
					}
					if _, err := io.WriteString(c, floorReply); err != nil {
						return
					}
				}
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
}

// measureFloor runs the floor with n connections, each sending a line every
// interval ± jitter, and returns the floor server's share of a core over the
// window.
func measureFloor(b *testing.B, n int, interval, warmup, window time.Duration, seed uint64) float64 {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run", "^TestFloorServer$")
	cmd.Env = append(os.Environ(), "LODE_BENCH_FLOOR_SERVER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "floor serving on ")
	if err != nil || !ok {
		b.Fatalf("the floor server did not start: %q %v", line, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatalf("floor connection %d: %v", i, err)
		}
		wg.Go(func() {
			defer c.Close()
			context.AfterFunc(ctx, func() { c.Close() })
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			r := bufio.NewReader(c)
			for pause := time.Duration(rng.Int64N(int64(interval))); wait.Sleep(ctx, pause); {
				if _, err := io.WriteString(c, floorLine); err != nil {
					return
				}
				if _, err := r.ReadSlice('\n'); err != nil {
					return
				}
				pause = interval - jitter + time.Duration(rng.Int64N(int64(2*jitter)+1))
			}
		})
	}
	if !wait.Sleep(ctx, warmup) {
		b.Fatal("cancelled")
	}
	m, err := measure(cmd.Process.Pid, window, nil)
	if err != nil {
		b.Fatal(err)
	}
	return m.serverPct()
}
