package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	lodeserver "lode.dev/lode/internal/server"
	"lode.dev/lode/internal/wait"
)

// lodeBin and trainerBin are built once for the package.
var lodeBin, trainerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lode-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Tasks run as users of their own under an agent running as root:
	// the trainer must be theirs to run.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lodeBin, trainerBin = filepath.Join(dir, "lode"), filepath.Join(dir, "trainer")
	for bin, pkg := range map[string]string{lodeBin: "lode.dev/lode/cmd/lode", trainerBin: "lode.dev/lode/chaos/trainer"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// output collects a process's output, in memory and in a file, and lets
// the suite wait for a line.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
	cond *sync.Cond
}

func newOutput(path string) (*output, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	o := &output{file: f}
	o.cond = sync.NewCond(&o.mu)
	return o, nil
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	_, _ = o.file.Write(p)
	o.cond.Broadcast()
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitMatch waits until the output matches re, the process exits, or the
// timeout passes.
func (o *output) waitMatch(re *regexp.Regexp, exited <-chan struct{}, timeout time.Duration) ([]string, error) {
	wake := func() { o.mu.Lock(); o.cond.Broadcast(); o.mu.Unlock() }
	deadline := time.AfterFunc(timeout, wake)
	defer deadline.Stop()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-exited:
			wake()
		case <-stop:
		}
	}()
	end := time.Now().Add(timeout)
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if m := re.FindStringSubmatch(o.buf.String()); m != nil {
			return m, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("the process exited before %q appeared", re)
		default:
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("timed out after %v waiting for %q", timeout, re)
		}
		o.cond.Wait()
	}
}

// proc is a lode process the suite started.
type proc struct {
	cmd    *exec.Cmd
	out    *output
	exited chan struct{}
}

func startProc(logPath string, args ...string) (*proc, error) {
	out, err := newOutput(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: exec.Command(lodeBin, args...), out: out, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.file.Close()
		return nil, err
	}
	go func() {
		_ = p.cmd.Wait()
		out.file.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process alone.
func (p *proc) signal(sig syscall.Signal) { _ = syscall.Kill(p.pid(), sig) }

// wait waits until the process exited.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("process %d (lode %s) did not exit within %v", p.pid(), p.cmd.Args[1], timeout)
	}
}

// descendants returns every process below pid, parents before children.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], child)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// server is the `lode server` of a run: restarted on the same address and
// data directory as often as the schedule says.
type server struct {
	dir, addr string
	logDir    string

	// mu is held for writing while the server is down, and for reading
	// by every request of the suite that must not be lost in a crash
	// (submissions), so that none is in flight when the server is killed.
	mu          sync.RWMutex
	proc        *proc
	incarnation int
	c           *client.Client
	metrics     *http.Client // reads /metrics, trusting the server's CA

	// refused sums, over the server's lives, the writes of attempts it
	// refused: lode_fenced_writes_total (the attempt is no longer current)
	// and the 410 answers on the attempt routes (the writer's node was
	// declared lost). The counters start from 0 at every start, so they are
	// read before each kill and added up; writes refused between the last
	// read and a kill are missed, which makes the figures lower bounds.
	refusedMu   sync.Mutex
	refusedPast [2]float64
	refusedNow  [2]float64
}

var servingRE = regexp.MustCompile(`serving on (https://\S+)`)

// args are the server's flags: fast failure detection, and no automatic
// quarantine. The suite loses nodes of its one pool on purpose, far faster
// than any real pool should; quarantining that pool would park every job
// for the probation period, which is not what the suite tests.
func (s *server) args() []string {
	return []string{"server", "--data-dir", s.dir, "--listen", s.addr, "--no-local-pool",
		"--heartbeat", "250ms", "--lease-ttl", "1s", "--quarantine-below=-1", "--log-level", "info"}
}

// start starts the server and waits until it serves. s.mu must be held
// for writing (or the server not yet shared).
func (s *server) start() error {
	s.incarnation++
	p, err := startProc(filepath.Join(s.logDir, fmt.Sprintf("server.%d.log", s.incarnation)), s.args()...)
	if err != nil {
		return err
	}
	s.proc = p
	m, err := p.out.waitMatch(servingRE, p.exited, 60*time.Second)
	if err != nil {
		return fmt.Errorf("server: %w; output:\n%s", err, p.out.String())
	}
	ca, err := lodeserver.ReadCA(s.dir)
	if err != nil {
		return err
	}
	c, err := client.New(m[1], client.TrustCA(ca))
	if err != nil {
		return err
	}
	tok, err := lodeserver.ReadAdminToken(s.dir)
	if err != nil {
		return err
	}
	s.c = c.WithToken(tok)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	s.metrics = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	return nil
}

// client returns the client of the server's current life.
func (s *server) client() *client.Client {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.c
}

// scrapeRefused reads the server's counts of refused writes.
func (s *server) scrapeRefused(ctx context.Context) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.scrapeRefusedLocked(ctx)
}

func (s *server) scrapeRefusedLocked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fenced, gone, err := refused(ctx, s.metrics, "https://"+s.addr+"/metrics")
	if err != nil {
		return
	}
	s.refusedMu.Lock()
	s.refusedNow = [2]float64{max(s.refusedNow[0], fenced), max(s.refusedNow[1], gone)}
	s.refusedMu.Unlock()
}

// refusedTotal returns the writes refused as fenced and as from a lost node.
func (s *server) refusedTotal() (fenced, gone float64) {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	return s.refusedPast[0] + s.refusedNow[0], s.refusedPast[1] + s.refusedNow[1]
}

// crash kills the server with SIGKILL, waits down, and starts it again.
func (s *server) crash(ctx context.Context, down time.Duration) (killedAt time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scrapeRefusedLocked(ctx)
	killedAt = time.Now()
	s.proc.signal(syscall.SIGKILL)
	if err := s.proc.wait(30 * time.Second); err != nil {
		return killedAt, err
	}
	s.refusedMu.Lock()
	for i := range s.refusedPast {
		s.refusedPast[i] += s.refusedNow[i]
		s.refusedNow[i] = 0
	}
	s.refusedMu.Unlock()
	wait.Sleep(ctx, down) // when ctx ended, start it anyway: the checks need it
	return killedAt, s.start()
}

// refused reads, from the server's Prometheus metrics, how many writes of
// attempts it refused as fenced, and how many as coming from a lost node.
func refused(ctx context.Context, hc *http.Client, url string) (fenced, gone float64, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		// NAME{LABELS} VALUE; label values may hold spaces.
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name, value := line[:i], line[i+1:]
		v, perr := strconv.ParseFloat(strings.TrimSpace(value), 64)
		switch {
		case perr != nil:
		case name == "lode_fenced_writes_total":
			fenced, found = v, true
		case strings.HasPrefix(name, "lode_http_requests_total{") && strings.Contains(name, `code="410"`) &&
			strings.Contains(name, "/v1/agent/attempts/"):
			gone += v
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, fmt.Errorf("%s: no lode_fenced_writes_total", url)
	}
	return fenced, gone, nil
}

// agent is one agent slot: a name, a directory and a proxy that outlive
// the agent processes started in it.
type agent struct {
	name   string
	dir    string
	logDir string
	proxy  *Proxy
	server string // the server URL the agent dials: its proxy
	ca     string // the control plane's CA certificate file
	token  string

	// faultMu serializes the faults that hit this slot.
	faultMu sync.Mutex

	mu          sync.Mutex
	proc        *proc
	incarnation int
	logs        []string
}

var joinedRE = regexp.MustCompile(`msg=joined node=(\S+)`)

// start starts an agent process in the slot and waits until it joined.
func (a *agent) start() error {
	a.mu.Lock()
	a.incarnation++
	log := filepath.Join(a.logDir, fmt.Sprintf("%s.%d.log", a.name, a.incarnation))
	a.logs = append(a.logs, log)
	a.mu.Unlock()
	p, err := startProc(log, "agent", "--server", a.server, "--ca-file", a.ca, "--join-token", a.token, "--name", a.name,
		"--dir", a.dir, "--gpus", "none", "--cpus", "1", "--memory", "512MiB", "--sync-every", "100ms", "--log-level", "info")
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
	// The join may wait for a server that is down: its backoff grows to
	// 30 s at most.
	if _, err := p.out.waitMatch(joinedRE, p.exited, 90*time.Second); err != nil {
		return fmt.Errorf("%s: %w; output:\n%s", a.name, err, p.out.String())
	}
	return nil
}

func (a *agent) current() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc
}

// node is the node the agent process last joined as ("" before it joined).
func (a *agent) node() string {
	p := a.current()
	if p == nil {
		return ""
	}
	all := joinedRE.FindAllStringSubmatch(p.out.String(), -1)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1][1]
}

// kill SIGKILLs the agent process alone: its tasks' exec-guards must take
// their tasks down with it.
func (a *agent) kill() (time.Time, error) {
	p := a.current()
	at := time.Now()
	p.signal(syscall.SIGKILL)
	return at, p.wait(30 * time.Second)
}

// stall stops the agent (and, for a machine, every process under it) for d.
func (a *agent) stall(ctx context.Context, d time.Duration, machine bool) time.Time {
	p := a.current()
	pids := []int{p.pid()}
	if machine {
		pids = append(pids, descendants(p.pid())...)
	}
	at := time.Now()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	wait.Sleep(ctx, d)
	for i := len(pids) - 1; i >= 0; i-- {
		_ = syscall.Kill(pids[i], syscall.SIGCONT)
	}
	return at
}

// stop stops the agent cleanly (SIGTERM) and waits for it.
func (a *agent) stop(timeout time.Duration) error {
	p := a.current()
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.signal(syscall.SIGTERM)
	return p.wait(timeout)
}

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// countLines counts the lines of the files that contain substr.
func countLines(paths []string, substr string) int {
	n := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), substr) {
				n++
			}
		}
		f.Close()
	}
	return n
}

// liveProc is a process a trainer recorded that is still alive.
type liveProc struct {
	pid  int
	what string // its record, state and command line
}

// livePIDs reads the records the trainers wrote and returns the processes
// still alive (zombies count as gone), and how many records there are.
func livePIDs(dir string) ([]liveProc, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var live []liveProc
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, 0, err
		}
		var pid int
		var start string
		if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", e.Name(), err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 20 || f[19] != start || f[0] == "Z" || f[0] == "X" {
			continue // gone and its PID reused, or a zombie
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		live = append(live, liveProc{pid: pid, what: fmt.Sprintf("%s: state %s: %s", e.Name(), f[0],
			strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))})
	}
	return live, len(entries), nil
}

// dirEntries lists what is under dir (nothing when it does not exist).
func dirEntries(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

var _ io.Writer = (*output)(nil)
