package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	lodeserver "lode.dev/lode/internal/server"
)

// The lode binary is built once, by the first benchmark that needs it, so
// that `go test ./...` without -bench builds nothing.
var (
	buildOnce sync.Once
	buildDir  string
	lodeBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func binary(b *testing.B) string {
	b.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "lode-bench-failover-"); buildErr != nil {
			return
		}
		lodeBin = filepath.Join(buildDir, "lode")
		cmd := exec.Command("go", "build", "-o", lodeBin, "lode.dev/lode/cmd/lode")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("building lode: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return lodeBin
}

// tail keeps a process's output, dropping the oldest part past a limit so a
// long run cannot grow it without bound.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailKeep = 1 << 20

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4*tailKeep {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailKeep:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// last returns at most the last n bytes of output, for failure messages.
func (t *tail) last(n int) string {
	s := t.String()
	if len(s) > n {
		s = "...\n" + s[len(s)-n:]
	}
	return s
}

// proc is a lode process in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *tail
	exited chan struct{}
}

func startProc(bin, name string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &tail{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill SIGKILLs the process alone, as a crash would end it; its tasks
// learn of it through their parent-death signal.
func (p *proc) kill() error { return syscall.Kill(p.pid(), syscall.SIGKILL) }

// stop kills the process and everything left in its group, and reaps it.
func (p *proc) stop() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// waitMatch waits until the output matches re and returns the submatches.
func (p *proc) waitMatch(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	end := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m, nil
		}
		select {
		case <-p.exited:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("%s exited (%v) before printing %q; output:\n%s", p.name, p.cmd.ProcessState, re, p.out.last(8<<10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("%s did not print %q within %v; output:\n%s", p.name, re, timeout, p.out.last(8<<10))
		}
	}
}

// server is a `lode server` process and its client.
type server struct {
	*proc
	url string
	c   *client.Client
	ca  []byte // the control plane's CA certificate
	dir string // its data directory
}

var servingRE = regexp.MustCompile(`serving on (https://\S+)`)

// startServer starts `lode server --no-local-pool` on a free loopback port
// with a fresh data directory; extra flags are passed on. It is stopped
// when the benchmark ends, and its output shown if the benchmark failed.
func startServer(b *testing.B, extra ...string) *server {
	b.Helper()
	bin := binary(b)
	addr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	args := append([]string{"server", "--data-dir", dir, "--listen", addr, "--no-local-pool"}, extra...)
	p, err := startProc(bin, "lode server", args...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			b.Logf("output of lode %s (last 16 KiB):\n%s", strings.Join(args, " "), p.out.last(16<<10))
		}
	})
	m, err := p.waitMatch(servingRE, 60*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := lodeserver.ReadCA(dir)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(m[1], client.TrustCA(ca))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := lodeserver.ReadAdminToken(dir)
	if err != nil {
		b.Fatal(err)
	}
	return &server{proc: p, url: m[1], c: c.WithToken(tok), ca: ca, dir: dir}
}

func (s *server) joinToken(b *testing.B) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := s.c.JoinToken(ctx, "default")
	if err != nil {
		b.Fatalf("join token of the default pool: %v", err)
	}
	return tok.Token
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times; Linux fixes it
// at 100 for every architecture Go runs on.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user plus system CPU time a process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis: state is field 3, utime 14,
	// stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// machineCPU returns the CPU time all processes of the machine used, summed
// over its cores, from /proc/stat: everything but idle and iowait.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: unexpected format")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// Fields: user nice system idle iowait irq softirq steal guest
		// guest_nice. Steal is time the hypervisor gave elsewhere; guest
		// time is already counted in user and nice.
		if i == 3 || i == 4 || i >= 7 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// corePercent is CPU time over a wall-clock span, in percent of one core.
func corePercent(cpu, wall time.Duration) float64 {
	return 100 * cpu.Seconds() / wall.Seconds()
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) in seconds.
func percentile(xs []time.Duration, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := min(max(int(math.Ceil(p/100*float64(len(s)))), 1), len(s))
	return s[rank-1].Seconds()
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration such as 30s", name, v)
	}
	return d
}

// once notes that the experiment runs once per invocation whatever b.N is.
func once(b *testing.B) {
	if b.N > 1 {
		b.Logf("b.N=%d: the experiment runs once per invocation; use -benchtime 1x", b.N)
	}
}
