package chaos

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends a line and reads the answer, with a deadline.
func roundTrip(c net.Conn, r *bufio.Reader, line string, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestProxyForwards(t *testing.T) {
	p := newTestProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, bufio.NewReader(c), "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("got %q, %v; want hello", got, err)
	}
}

func TestProxyRefuseResetsAndHeals(t *testing.T) {
	p := newTestProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Refuse)
	if got, err := roundTrip(c, r, "during", 5*time.Second); err == nil {
		t.Fatalf("an open connection still answered %q after Refuse", got)
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		_, err := roundTrip(c2, bufio.NewReader(c2), "new", 5*time.Second)
		c2.Close()
		if err == nil {
			t.Fatal("a new connection was served during Refuse")
		}
	}
	p.Set(Open)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), "after", 5*time.Second); err != nil || got != "after" {
		t.Fatalf("after healing: got %q, %v", got, err)
	}
}

func TestProxyBlackholeHoldsThenDelivers(t *testing.T) {
	p := newTestProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Blackhole)
	// Nothing comes back while the partition lasts: the read times out
	// rather than failing.
	_, err = roundTrip(c, r, "held", 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("during Blackhole: got %v, want a timeout", err)
	}
	p.Set(Open)
	// What was held arrives once the partition heals.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after healing: got %q, %v; want the held line", got, err)
	}
}

func TestProxyCloseEndsConnections(t *testing.T) {
	p := newTestProxy(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Set(Blackhole)
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a blackholed connection")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
}

func TestRefusedReadsPrometheusText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `# HELP lode_fenced_writes_total Writes refused because their attempt was no longer current.
# TYPE lode_fenced_writes_total counter
lode_fenced_writes_total 3
lode_http_requests_total{code="410",route="POST /v1/agent/attempts/{attempt}/ranks/{rank}/logs"} 5
lode_http_requests_total{code="410",route="POST /v1/agent/attempts/{attempt}/checkpoints"} 2
lode_http_requests_total{code="401",route="POST /v1/agent/heartbeats"} 7
lode_http_requests_total{code="204",route="POST /v1/agent/attempts/{attempt}/ranks/{rank}/logs"} 11
`)
	}))
	defer srv.Close()
	fenced, gone, err := refused(context.Background(), http.DefaultClient, srv.URL)
	if err != nil || fenced != 3 || gone != 7 {
		t.Errorf("refused = %v, %v, %v; want 3 fenced and 7 from lost nodes (heartbeats are not writes)", fenced, gone, err)
	}
}
