// Package e2e runs real `lode server` and `lode agent` processes on
// loopback and real jobs through them.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/server"
	"lode.dev/lode/internal/wire"
)

// lodeBin is the lode binary built once for the whole package.
var lodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lode-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lodeBin = filepath.Join(dir, "lode")
	build := exec.Command("go", "build", "-o", lodeBin, "lode.dev/lode/cmd/lode")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lode:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// output collects a process's output and lets tests wait for a line.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cond *sync.Cond
}

func newOutput() *output {
	o := &output{}
	o.cond = sync.NewCond(&o.mu)
	return o
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	o.cond.Broadcast()
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitMatch waits until the output matches re and returns the submatches.
func (o *output) waitMatch(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.AfterFunc(timeout, func() { o.mu.Lock(); o.cond.Broadcast(); o.mu.Unlock() })
	defer deadline.Stop()
	end := time.Now().Add(timeout)
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if m := re.FindStringSubmatch(o.buf.String()); m != nil {
			return m
		}
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %q in output:\n%s", timeout, re, o.buf.String())
		}
		o.cond.Wait()
	}
}

// proc is a lode process started by a test; it is killed when the test ends.
type proc struct {
	cmd *exec.Cmd
	out *output
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(lodeBin, args...), out: newOutput()}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("output of lode %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// signal sends sig to the process alone (not its task processes).
func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v; output:\n%s", timeout, p.out.String())
		return -1
	}
}

// lode runs a lode command to completion and returns its exit code, stdout
// and stderr.
func lode(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lodeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lode %s timed out; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cluster is a server and its client.
type cluster struct {
	t       *testing.T
	dataDir string
	url     string
	server  *proc
	c       *client.Client // as the administrator
	args    []string
	// adminToken is the token the server's first start made.
	adminToken string
}

var servingRE = regexp.MustCompile(`serving on (https://\S+)`)

// startServer starts `lode server` on a fresh port with a fresh data
// directory; extra flags are passed on.
func startServer(t *testing.T, extra ...string) *cluster {
	t.Helper()
	cl := &cluster{t: t, dataDir: t.TempDir()}
	cl.args = append([]string{"server", "--data-dir", cl.dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--heartbeat", "250ms", "--lease-ttl", "2s", "--log-level", "debug"}, extra...)
	cl.startServerProcess()
	return cl
}

func (cl *cluster) startServerProcess() {
	cl.t.Helper()
	cl.server = start(cl.t, nil, cl.args...)
	cl.url = cl.server.out.waitMatch(cl.t, servingRE, 30*time.Second)[1]
	ca, err := server.ReadCA(cl.dataDir)
	if err != nil {
		cl.t.Fatal(err)
	}
	c, err := client.New(cl.url, client.TrustCA(ca))
	if err != nil {
		cl.t.Fatal(err)
	}
	if cl.adminToken, err = server.ReadAdminToken(cl.dataDir); err != nil {
		cl.t.Fatal(err)
	}
	cl.c = c.WithToken(cl.adminToken)
}

// restartServer stops the server with sig and starts it again on the same
// address and data.
func (cl *cluster) restartServer(sig syscall.Signal) {
	cl.t.Helper()
	cl.server.signal(sig)
	cl.server.wait(cl.t, 40*time.Second)
	cl.startServerProcess()
}

func (cl *cluster) token(pool string) string {
	cl.t.Helper()
	tok, err := cl.c.JoinToken(context.Background(), pool)
	if err != nil {
		cl.t.Fatal(err)
	}
	return tok.Token
}

// startAgent starts `lode agent` in the default pool.
func (cl *cluster) startAgent(name string, extra ...string) *proc {
	cl.t.Helper()
	args := append([]string{"agent", "--server", cl.url, "--join-token", cl.token("default"), "--name", name,
		"--dir", filepath.Join(cl.t.TempDir(), name), "--gpus", "none", "--sync-every", "200ms"}, extra...)
	a := start(cl.t, cl.env(), args...)
	a.out.waitMatch(cl.t, regexp.MustCompile(`msg=joined`), 20*time.Second)
	return a
}

// run runs a lode CLI command against this cluster.
func (cl *cluster) run(args ...string) (int, string, string) {
	cl.t.Helper()
	return lode(cl.t, cl.env(), append(args, "--server", cl.url)...)
}

// env is what a lode process needs to talk to this cluster's server: the
// administrator's token and the control plane's CA.
func (cl *cluster) env() []string {
	return []string{"LODE_TOKEN=" + cl.adminToken, "LODE_CA=" + filepath.Join(cl.dataDir, "ca.crt")}
}

// job returns a job's details.
func (cl *cluster) job(id string) *wire.JobDetail {
	cl.t.Helper()
	d, err := cl.c.Job(context.Background(), id)
	if err != nil {
		cl.t.Fatal(err)
	}
	return d
}

// waitJob waits until cond holds for the job, polling the API.
func (cl *cluster) waitJob(id string, timeout time.Duration, what string, cond func(*wire.JobDetail) bool) *wire.JobDetail {
	cl.t.Helper()
	end := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		d := cl.job(id)
		if cond(d) {
			return d
		}
		if time.Now().After(end) {
			cl.t.Fatalf("job %s: timed out after %v waiting until %s; it is %s (%s)", id, timeout, what, d.State, d.Reason)
		}
		<-tick.C
	}
}

func (cl *cluster) waitState(id string, want core.JobState, timeout time.Duration) *wire.JobDetail {
	cl.t.Helper()
	return cl.waitJob(id, timeout, "it is "+string(want), func(d *wire.JobDetail) bool { return d.State == want })
}

// writeFiles writes files (path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// reachableDir makes a directory with mode perm under the system's
// temporary directory, not the test's own, which only root may enter: task
// users must reach it.
func reachableDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lode-e2e-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, perm); err != nil {
		t.Fatal(err)
	}
	return dir
}

// grepTree reports every file under dir whose bytes contain marker.
func grepTree(t *testing.T, dir string, marker []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if found, err := contains(f, marker); err != nil {
			return err
		} else if found {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil && !(errors.Is(err, os.ErrNotExist) && len(hits) == 0) {
		t.Fatal(err)
	}
	return hits
}

func contains(r io.Reader, marker []byte) (bool, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var carry []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := br.Read(buf)
		chunk := append(carry, buf[:n]...)
		if bytes.Contains(chunk, marker) {
			return true, nil
		}
		if len(chunk) >= len(marker) {
			carry = append([]byte(nil), chunk[len(chunk)-len(marker)+1:]...)
		} else {
			carry = chunk
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
