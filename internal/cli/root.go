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
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
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

// globals are the flags every command shares.
type globals struct {
	server string
	output string
	out    io.Writer
	errOut io.Writer
}

// Root returns the `lode` command.
func Root() *cobra.Command {
	g := &globals{out: os.Stdout, errOut: os.Stderr}
	root := &cobra.Command{
		Use:   "lode",
		Short: "Run ML training on any compute from one control plane",
		Long: `Lode runs ML training jobs on rigs, Kubernetes clusters, Slurm clusters and this
machine from one control plane, with data encrypted end to end, placement that
knows interconnect and trust, and training that resumes from its last checkpoint
when a node disappears.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVar(&g.server, "server", cmp.Or(os.Getenv("LODE_SERVER"), "http://127.0.0.1:7070"),
		"control plane address (or $LODE_SERVER)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(
		serverCmd(g), agentCmd(g), runCmd(g), psCmd(g), statusCmd(g), logsCmd(g), cancelCmd(g),
		poolsCmd(g), nodesCmd(g), dataCmd(g), artifactsCmd(g), guardCmd(),
	)
	return root
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	root := Root()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
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

func (g *globals) client() (*client.Client, error) {
	return client.New(g.server)
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
