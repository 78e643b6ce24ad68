package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/server"
)

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("bad --log-level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func selfBinary() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}

func serverCmd(g *globals) *cobra.Command {
	var cfg server.Config
	var gpus, logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane",
		Long: `Run the control plane: the REST API under /v1/, the scheduler and, unless
--no-local-pool, an agent for this machine. At first start it creates a join
token for the "default" pool and prints the command that starts an agent with it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if cfg.LocalGPUs, err = parseGPUFlag(gpus); err != nil {
				return err
			}
			cfg.Logger, cfg.Out, cfg.Version, cfg.Guard = log, os.Stdout, Version, selfBinary()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			srv, err := server.Start(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "lode: serving on %s (data in %s)\n", srv.URL(), cfg.DataDir)
			select {
			case <-ctx.Done():
				log.Info("shutting down; agents keep their tasks running")
			case err := <-srv.Err():
				log.Error("server failed", slog.Any("err", err))
			}
			return srv.Shutdown(context.Background())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", dataHome(), "where the database, key file and blobs live")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "address to serve on (use 0.0.0.0:7070 for agents on other machines)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "address agents dial, if not https://LISTEN")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "the server's own TLS certificate (PEM; default: one the control plane's CA signs)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the key of --tls-cert")
	f.StringVar(&cfg.BlobURL, "blob-url", "", "gocloud.dev/blob URL for encrypted data (default file://DATA-DIR/blobs)")
	f.StringVar(&cfg.KeeperURL, "keeper-url", "", "gocloud.dev/secrets URL of the key-encryption key (default a key file in DATA-DIR)")
	f.StringVar(&cfg.PoolsFile, "pools", "", "a pools file (YAML) whose pools are created or updated at start")
	f.BoolVar(&cfg.NoLocalPool, "no-local-pool", false, "do not run tasks on this machine")
	f.StringVar(&gpus, "gpus", "", "declare this machine's GPUs for the local pool, e.g. 2xrtx3090 (default: ask nvidia-smi)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat", time.Second, "how often agents renew their lease")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", 2500*time.Millisecond, "how long a silent node keeps its lease before it is declared lost (one missed heartbeat is tolerated)")
	f.Float64Var(&cfg.Reliability.QuarantineBelow, "quarantine-below", 0.5,
		"quarantine a pool whose score (the chance a node survives an hour) falls under this; negative: never")
	f.IntVar(&cfg.Reliability.MinLosses, "quarantine-min-losses", 2, "losses it takes before a pool can be quarantined")
	f.DurationVar(&cfg.Reliability.Probation, "probation", 10*time.Minute, "how long a quarantined pool must go without a loss to be let back in")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func parseGPUFlag(s string) ([]core.GPU, error) {
	if s == "" {
		return nil, nil
	}
	if s == "none" || s == "0" {
		return []core.GPU{}, nil
	}
	gpus, err := core.ParseGPUs(s)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: err}
	}
	return gpus, nil
}

func agentCmd(g *globals) *cobra.Command {
	var cfg agent.Config
	var gpus, cpus, memory, logLevel, taskUIDs string
	var labels []string
	cmd := &cobra.Command{
		Use:   "agent --server URL --join-token TOKEN --ca-hash HASH",
		Short: "Sell this machine's compute to a control plane",
		Long: `Run an agent: it dials out to the control plane (so it works behind NAT),
registers this machine's CPUs, memory and GPUs, and runs the tasks it is given,
each in a private directory. Stop it with Ctrl-C or SIGTERM: its tasks stop and
move elsewhere from their last checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if cfg.GPUs, err = parseGPUFlag(gpus); err != nil {
				return err
			}
			if cpus != "" {
				var c float64
				if _, err := fmt.Sscanf(cpus, "%g", &c); err != nil || c <= 0 {
					return &ExitError{Code: 2, Err: fmt.Errorf("bad --cpus %q: give a number such as 8 or 0.5", cpus)}
				}
				cfg.MilliCPUs = int64(c * 1000)
			}
			if memory != "" {
				if cfg.Memory, err = core.ParseBytes(memory); err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("bad --memory: %w", err)}
				}
			}
			if cfg.TaskUIDs, err = agent.ParseUIDRange(taskUIDs); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("bad --task-uids: %w", err)}
			}
			cfg.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return &ExitError{Code: 2, Err: fmt.Errorf("bad --label %q: want KEY=VALUE", l)}
				}
				cfg.Labels[k] = v
			}
			cfg.Server, cfg.Logger, cfg.Version, cfg.Guard = g.server, log, Version, selfBinary()
			if g.caFile != "" {
				if cfg.CA, err = os.ReadFile(g.caFile); err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--ca-file: %w", err)}
				}
			}
			if cfg.Dir == "" {
				cfg.Dir = filepath.Join(dataHome(), "agent")
			}
			a, err := agent.New(cfg)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.JoinToken, "join-token", os.Getenv("LODE_JOIN_TOKEN"), "the pool's join token (or $LODE_JOIN_TOKEN)")
	f.StringVar(&cfg.CAHash, "ca-hash", os.Getenv("LODE_CA_HASH"),
		"fingerprint of the control plane's CA, sha256:… (or $LODE_CA_HASH; the server's join command holds it)")
	f.StringVar(&cfg.Name, "name", "", "node name (default: hostname)")
	f.StringVar(&cfg.Dir, "dir", "", "directory for task data (default: DATA-HOME/agent)")
	f.StringVar(&gpus, "gpus", "", "declare GPUs, e.g. 2xrtx3090 or none (default: ask nvidia-smi)")
	f.StringVar(&cpus, "cpus", "", "CPUs to offer (default: all)")
	f.StringVar(&memory, "memory", "", "memory to offer, e.g. 32GiB (default: all)")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE label for the node (repeatable)")
	f.StringVar(&taskUIDs, "task-uids", agent.DefaultTaskUIDs.String(), "user ids for tasks, one each, when the agent runs as root (FIRST-LAST)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "address other ranks of a gang reach this node at")
	f.DurationVar(&cfg.SyncEvery, "sync-every", time.Second, "how often to look for new checkpoints to upload")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func guardCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "exec-guard -- COMMAND [ARGS...]",
		Short:              "Run a task's command so that nothing it starts outlives it (used by the agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if code := agent.Guard(args); code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
}
