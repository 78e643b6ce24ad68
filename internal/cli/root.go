// Package cli is the `lode` command line: one cobra command per subcommand,
// each short, each calling into the packages that own the work.
package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/server"
)

// Version is set at build time.
var Version = "dev"

// ExitError carries a process exit code out of a command: a job's own exit
// code, or 2 for bad input.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// globals are the flags every command shares, and the embedded control
// plane a --local command runs.
type globals struct {
	server string
	token  string
	caFile string
	output string
	local  bool
	out    io.Writer
	errOut io.Writer

	// localPool makes the embedded control plane run this machine's pool
	// (lode run --local); localGPUs declares its GPUs.
	localPool bool
	localGPUs []core.GPU
	embedded  *server.Server
}

// Root returns the `lode` command.
func Root() *cobra.Command {
	return newRoot(&globals{out: os.Stdout, errOut: os.Stderr})
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "lode",
		Short: "Run ML training on any compute from one control plane",
		Long: `Lode runs ML training jobs from one control plane on any machine that runs
` + "`lode agent`" + ` (GPU rigs, workstations, servers) and on this one, with data
encrypted end to end, placement that knows price, trust and interconnect, and
training that resumes from its last checkpoint when a node disappears.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVar(&g.server, "server", cmp.Or(os.Getenv("LODE_SERVER"), "https://127.0.0.1:7070"),
		"control plane address (or $LODE_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("LODE_TOKEN"),
		"API token (or $LODE_TOKEN; by default the administrator's token that a server left in this machine's data directory)")
	root.PersistentFlags().StringVar(&g.caFile, "ca-file", os.Getenv("LODE_CA"),
		"the control plane's CA certificate (PEM) to trust (or $LODE_CA; by default the one in this machine's data directory, if any, else the system's roots)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().BoolVar(&g.local, "local", false,
		"use an embedded control plane on this machine's data directory ($LODE_HOME) instead of --server")
	root.AddCommand(
		serverCmd(g), agentCmd(g), runCmd(g), psCmd(g), statusCmd(g), logsCmd(g), cancelCmd(g),
		poolsCmd(g), nodesCmd(g), dataCmd(g), artifactsCmd(g), guardCmd(),
		explainCmd(g), costCmd(g), projectsCmd(g), simCmd(g), auditCmd(g),
		runnerCmd(g), whoamiCmd(g), usersCmd(g), tokensCmd(g),
	)
	return root
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	g := &globals{out: os.Stdout, errOut: os.Stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	g.close()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(os.Stderr, "lode: %v\n", ee.Err)
		}
		return ee.Code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "lode: interrupted")
		return 130
	}
	fmt.Fprintf(os.Stderr, "lode: %v\n", err)
	if errors.Is(err, client.ErrUnreachable) {
		fmt.Fprintln(os.Stderr, "hint: start one with `lode server`, point --server (or $LODE_SERVER) at yours, or use `lode run --local`")
	}
	return 1
}

// client connects to the control plane: the one at --server, or with
// --local an embedded one started now and stopped when the command ends.
func (g *globals) client() (*client.Client, error) {
	if g.local && g.embedded == nil {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		srv, err := server.Start(context.Background(), server.Config{
			DataDir: dataHome(), Listen: "127.0.0.1:0", NoLocalPool: !g.localPool, LocalGPUs: g.localGPUs,
			Guard: selfBinary(), Version: Version, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		g.embedded, g.server = srv, srv.URL()
	}
	ca, err := g.trustedCA()
	if err != nil {
		return nil, err
	}
	c, err := client.New(g.server, client.TrustCA(ca))
	if err != nil {
		return nil, err
	}
	return c.WithToken(g.apiToken()), nil
}

// trustedCA is the CA certificate to verify the server with: --ca-file or
// $LODE_CA, else the CA of a server on this machine (its data directory),
// else none (the system's roots).
func (g *globals) trustedCA() ([]byte, error) {
	if g.caFile != "" {
		b, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		return b, nil
	}
	b, _ := server.ReadCA(dataHome())
	return b, nil
}

// apiToken is the token to call with: --token or $LODE_TOKEN, else the
// administrator's token a server on this machine left in its data
// directory (readable only by its owner), so that a control plane run on
// one's own machine needs no login. Without either, requests go without a
// token and the server says what to do.
func (g *globals) apiToken() string {
	if g.token != "" {
		return g.token
	}
	tok, err := server.ReadAdminToken(dataHome())
	if err != nil {
		return ""
	}
	return tok
}

// close stops the embedded control plane, if any.
func (g *globals) close() {
	if g.embedded != nil {
		g.embedded.Shutdown(context.Background())
		g.embedded = nil
	}
}

func (g *globals) json() bool { return g.output == "json" }

// checkOutput validates -o.
func (g *globals) checkOutput() error {
	if g.output != "text" && g.output != "json" {
		return &ExitError{Code: 2, Err: fmt.Errorf("unknown output format %q: use -o text or -o json", g.output)}
	}
	return nil
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// dataHome is where a user's Lode state lives by default.
func dataHome() string {
	if d := os.Getenv("LODE_HOME"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lode")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".lode"
	}
	return filepath.Join(home, ".local", "share", "lode")
}
