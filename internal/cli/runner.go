package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
)

// runnerFlags are `lode runner`'s flags; empty ones fall back to the
// environment.
type runnerFlags struct {
	server, attempt, rank, taskDir string
}

// runnerSetup is a runner's checked configuration. tempDir is set when the
// task directory's parent was made for this run and is removed after it.
type runnerSetup struct {
	cfg     agent.RunnerConfig
	tempDir string
}

// runnerConfig reads a runner's configuration from flags, then the
// environment, and lists every problem at once, each naming the variable
// that fixes it. The fencing token has no flag: a command line is readable
// by every process on the machine.
func runnerConfig(getenv func(string) string, f runnerFlags) (*runnerSetup, error) {
	var errs []error
	// pick returns the flag's value or else the variable's, and how to
	// name where it came from.
	pick := func(flag, name, env string) (string, string) {
		if flag != "" {
			return flag, "--" + name
		}
		return getenv(env), env
	}
	var cfg agent.RunnerConfig
	server, from := pick(f.server, "server", "LODE_SERVER")
	switch u, err := url.Parse(server); {
	case server == "":
		errs = append(errs, errors.New("LODE_SERVER is not set: give the control plane's address (https://HOST:PORT), or --server"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, fmt.Errorf("%s=%q is not a server address: want https://HOST:PORT", from, server))
	}
	cfg.Server = server
	if cfg.AttemptID, _ = pick(f.attempt, "attempt", "LODE_ATTEMPT"); cfg.AttemptID == "" {
		errs = append(errs, errors.New("LODE_ATTEMPT is not set: give the ID of the attempt this task belongs to, or --attempt"))
	}
	rank, from := pick(f.rank, "rank", "LODE_RANK")
	if rank == "" {
		// An Indexed Job numbers its pods; the index is the rank.
		rank, from = getenv("JOB_COMPLETION_INDEX"), "JOB_COMPLETION_INDEX"
	}
	if rank == "" {
		errs = append(errs, errors.New("LODE_RANK is not set (nor JOB_COMPLETION_INDEX): give the task's rank, 0 for a single-node job, or --rank"))
	} else if n, err := strconv.Atoi(rank); err != nil || n < 0 {
		errs = append(errs, fmt.Errorf("%s=%q is not a rank: want a whole number, 0 or more", from, rank))
	} else {
		cfg.Rank = n
	}
	if cfg.FencingToken = getenv("LODE_FENCING_TOKEN"); cfg.FencingToken == "" {
		errs = append(errs, errors.New("LODE_FENCING_TOKEN is not set: give the attempt's fencing token (on Kubernetes, from the attempt's Secret)"))
	}
	// LODE_CA is the control plane's CA certificate: its PEM text (as a
	// Kubernetes Secret hands it over) or a file holding it.
	if ca := getenv("LODE_CA"); strings.HasPrefix(strings.TrimSpace(ca), "-----BEGIN") {
		cfg.CA = []byte(ca)
	} else if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			errs = append(errs, fmt.Errorf("LODE_CA=%q: %v: give the control plane's CA certificate (PEM text or a file)", ca, err))
		}
		cfg.CA = b
	}
	cfg.MasterAddr = getenv("MASTER_ADDR")
	if p := getenv("MASTER_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("MASTER_PORT=%q is not a port: want 1-65535", p))
		}
		cfg.MasterPort = n
	}
	setup := &runnerSetup{}
	dir, from := pick(f.taskDir, "task-dir", "LODE_TASK_DIR")
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q cannot hold the task's files: %v", from, dir, err))
		}
		cfg.Dir = dir
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "lode-runner-")
		if err != nil {
			return nil, fmt.Errorf("LODE_TASK_DIR is not set and no private directory could be made for the task: %w", err)
		}
		cfg.Dir, setup.tempDir = d, d
	}
	setup.cfg = cfg
	return setup, nil
}

func runnerCmd(g *globals) *cobra.Command {
	var f runnerFlags
	var install, logLevel string
	var syncEvery, stopGrace time.Duration
	cmd := &cobra.Command{
		Use:   "runner [flags] -- COMMAND [ARGS...]",
		Short: "Run one task of an attempt without an agent (the main process of a Kubernetes pod)",
		Long: `Run one task (one rank) of an attempt, where no ` + "`lode agent`" + ` runs: the
Kubernetes driver starts every pod of an attempt with ` + "`lode runner -- COMMAND`" + `.
It presents the attempt's fencing token, fetches the task's assignment,
decrypts the job's inputs into the task directory, runs COMMAND (the job's own
command when none is given), ships its output and metrics, commits its
checkpoints and outputs, and reports how it ended. SIGTERM stops the command
with a grace period to write a last checkpoint.

Configuration comes from the environment; flags override it:
  LODE_SERVER          the control plane's address (or --server)
  LODE_ATTEMPT         the attempt's ID (or --attempt)
  LODE_RANK            the task's rank (or --rank); when unset,
                       JOB_COMPLETION_INDEX, which an Indexed Job sets
  LODE_FENCING_TOKEN   the attempt's fencing token (no flag: command lines
                       are visible to every process)
  LODE_TASK_DIR        where the task's files go (or --task-dir); a fresh
                       private directory by default

Exit status: the command's own (0 once its outputs are stored); 1 when the
runner could not run it (the token was refused, the attempt is over); 2 for
missing or invalid configuration.

` + "`lode runner --install DIR`" + ` copies this binary to DIR/lode and exits: an init
container uses it to bring lode into any image, even one with no cp.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if install != "" {
				if len(args) > 0 {
					return &ExitError{Code: 2, Err: errors.New("--install takes no command")}
				}
				if err := installSelf(install); err != nil {
					return &ExitError{Code: 1, Err: err}
				}
				return nil
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if cmd.Flag("server").Changed {
				f.server = g.server
			}
			setup, err := runnerConfig(os.Getenv, f)
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("runner: %w", err)}
			}
			if setup.tempDir != "" {
				defer os.RemoveAll(setup.tempDir)
			}
			cfg := setup.cfg
			cfg.Command, cfg.Guard, cfg.Logger = args, selfBinary(), log
			cfg.SyncEvery, cfg.StopGrace = syncEvery, stopGrace
			cfg.Stdout, cfg.Stderr = g.out, g.errOut
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			end, err := agent.RunTask(ctx, cfg)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			return runnerExit(end)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&install, "install", "", "copy this binary to DIR/lode (mode 0755) and exit")
	fl.StringVar(&f.attempt, "attempt", "", "the attempt's ID (default $LODE_ATTEMPT)")
	fl.StringVar(&f.rank, "rank", "", "the task's rank (default $LODE_RANK, else $JOB_COMPLETION_INDEX)")
	fl.StringVar(&f.taskDir, "task-dir", "", "where the task's files go (default $LODE_TASK_DIR, else a fresh private directory)")
	fl.DurationVar(&syncEvery, "sync-every", time.Second, "how often to look for new checkpoints to upload")
	fl.DurationVar(&stopGrace, "stop-grace", 10*time.Second, "how long the command has between SIGTERM and SIGKILL when stopped")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// runnerExit turns how a task ended into the runner's exit status.
func runnerExit(end agent.TaskEnd) error {
	switch {
	case end.Fenced:
		return &ExitError{Code: 1, Err: errors.New("the attempt is no longer current: the server refused the task's writes, and the command was stopped")}
	case end.State == core.TaskExited && end.ExitCode == 0:
		return nil
	case end.State == core.TaskExited && end.ExitCode > 0:
		// The command's own failure: its stderr has said why already.
		var err error
		if end.Message != "" {
			err = errors.New(end.Message)
		}
		return &ExitError{Code: end.ExitCode, Err: err}
	case end.ExitCode > 0:
		return &ExitError{Code: end.ExitCode, Err: fmt.Errorf("the task was stopped: %s", end.Message)}
	default:
		return &ExitError{Code: 1, Err: fmt.Errorf("the task ended %s: %s", cmp.Or(string(end.State), "before it started"), end.Message)}
	}
}

// installSelf copies the running executable to dir/lode, mode 0755. It
// writes a temporary file beside the target and renames it, so a reader
// never sees a half-written binary.
func installSelf(dir string) error {
	self, err := os.Executable()
	if err != nil {
		// Without /proc (a bare chroot) the path it was started by
		// still finds it, when that path is absolute: the image's
		// entrypoint is.
		if !filepath.IsAbs(os.Args[0]) {
			return fmt.Errorf("install: cannot find this executable: %w", err)
		}
		self = os.Args[0]
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".lode-install-*")
	if err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "lode")); err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	return nil
}
