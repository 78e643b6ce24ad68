package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// process is a task's running command and everything it started.
type process struct {
	cmd     *exec.Cmd
	guarded bool
}

// startProcess starts argv in dir, as the user cred names (nil: the agent's
// own). With a guard binary the command runs under `guard exec-guard --
// argv`, which puts it in a process group of its own, kills that whole group
// when the agent dies (even by SIGKILL), and leaves no grandchild behind when
// the command exits. Without one (tests of this package) the command gets its
// own process group and dies with the agent, but its children may not.
//
// The guard itself runs as the agent's user and drops to cred only for the
// command: a task cannot signal or trace a guard that is not its own user's,
// so it cannot take away what stands between it and outliving the agent.
func startProcess(guard string, argv []string, dir string, env []string, stdout, stderr *os.File, cred *syscall.Credential) (*process, error) {
	var cmd *exec.Cmd
	if guard != "" {
		args := []string{"exec-guard"}
		if cred != nil {
			args = append(args, fmt.Sprintf("--uid=%d", cred.Uid), fmt.Sprintf("--gid=%d", cred.Gid))
		}
		cmd = exec.Command(guard, append(append(args, "--"), argv...)...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if guard != "" {
		// The guard must outlive the agent long enough to kill the task's
		// group: it gets SIGHUP, not SIGKILL, when the agent dies.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGHUP
	} else {
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &process{cmd: cmd, guarded: guard != ""}, nil
}

// terminate asks the task to stop (SIGTERM to its group), giving it a
// chance to write a last checkpoint.
func (p *process) terminate() {
	if p.guarded {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
}

// kill stops the task and everything it started at once.
func (p *process) kill() {
	if p.guarded {
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// wait waits for the command and returns its exit code (128+N when killed
// by signal N).
func (p *process) wait() (int, error) {
	err := p.cmd.Wait()
	return exitCode(p.cmd.ProcessState, err)
}

// guardArgs reads the guard's options, --uid=N and --gid=N, which come
// first and end at "--", and returns the user to run the command as (nil:
// the guard's own) and the command.
func guardArgs(args []string) (*syscall.Credential, []string, error) {
	var uid, gid int64 = -1, -1
	for len(args) > 0 && (strings.HasPrefix(args[0], "--uid=") || strings.HasPrefix(args[0], "--gid=")) {
		name, value, _ := strings.Cut(args[0], "=")
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n <= 0 || n >= 1<<31 {
			return nil, nil, fmt.Errorf("bad %s: want a user or group id above 0", args[0])
		}
		if name == "--uid" {
			uid = n
		} else {
			gid = n
		}
		args = args[1:]
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if uid < 0 && gid < 0 {
		return nil, args, nil
	}
	if uid < 0 || gid < 0 {
		return nil, nil, errors.New("--uid and --gid go together")
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, args, nil
}

func exitCode(ps *os.ProcessState, err error) (int, error) {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return -1, err
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// Guard is `lode exec-guard [--uid=N --gid=N] -- ARGV`: it runs ARGV in a
// process group of its own, as user N and group N when given (with no
// supplementary groups), and returns its exit code. SIGTERM and SIGINT are
// passed on to the group; SIGHUP (the agent died) and SIGUSR1 kill the group
// at once. When the command exits, whatever it left running in its group is
// killed too.
func Guard(args []string) int {
	cred, argv, err := guardArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lode exec-guard: %v\n", err)
		return 2
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "lode exec-guard: no command given")
		return 2
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	// Orphaned descendants are re-parented to us rather than to init, so
	// they stay in reach.
	_ = setChildSubreaper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) && errors.Is(ee.Err, exec.ErrNotFound) {
			fmt.Fprintf(os.Stderr, "lode: command not found: %s (is it installed on this node, and on PATH?)\n", argv[0])
			return 127
		}
		if cred != nil && errors.Is(err, fs.ErrPermission) {
			fmt.Fprintf(os.Stderr, "lode: cannot start %s: %v (the task runs as an unprivileged user, uid %d, of its own: "+
				"the command, and every directory above it, must be readable and executable by all users)\n", argv[0], err, cred.Uid)
			return 126
		}
		fmt.Fprintf(os.Stderr, "lode: cannot start %s: %v\n", argv[0], err)
		return 126
	}
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				switch s {
				case syscall.SIGTERM, syscall.SIGINT:
					_ = syscall.Kill(-pgid, syscall.SIGTERM)
				default:
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
				}
			case <-done:
				return
			}
		}
	}()
	code, err := exitCode(cmd.ProcessState, cmd.Wait())
	close(done)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	reapAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lode: %v\n", err)
		return 1
	}
	return code
}
