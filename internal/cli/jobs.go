package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// show fetches something from the control plane and prints it: as JSON
// with -o json, else with text.
func show[T any](g *globals, fetch func(*client.Client) (T, error), text func(T)) error {
	if err := g.checkOutput(); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	v, err := fetch(c)
	if err != nil {
		return err
	}
	if g.json() {
		return g.printJSON(v)
	}
	text(v)
	return nil
}

func table(g *globals, header string, rows [][]string) {
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func psCmd(g *globals) *cobra.Command {
	var project string
	var limit int
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]*store.Job, error) { return c.Jobs(cmd.Context(), project, limit) }, func(jobs []*store.Job) {
				var rows [][]string
				for _, j := range jobs {
					rows = append(rows, []string{j.ID, j.Name, j.Project, string(j.State), fmt.Sprint(j.Attempts), ago(j.CreatedAt), j.Reason})
				}
				table(g, "ID\tNAME\tPROJECT\tSTATE\tATTEMPTS\tCREATED\tREASON", rows)
			})
		},
	}
	cmd.Flags().StringVar(&project, "project", "", "only this project's jobs")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many jobs (0: all)")
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job, its attempts, and why it waits",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, func(c *client.Client) (*wire.JobDetail, error) { return c.Job(cmd.Context(), args[0]) }, func(d *wire.JobDetail) {
				fmt.Fprintf(g.out, "job:       %s (%s)\nproject:   %s\nstate:     %s\nreason:    %s\nsubmitted: %s\n",
					d.ID, d.Name, d.Project, d.State, d.Reason, d.CreatedAt.Local().Format(time.RFC3339))
				if !d.FinishedAt.IsZero() {
					fmt.Fprintf(g.out, "finished:  %s (exit code %d)\n", d.FinishedAt.Local().Format(time.RFC3339), d.ExitCode)
				}
				fmt.Fprintf(g.out, "retries:   %d after node loss (of %d), %d after errors (of %d)\n",
					d.Retries.NodeLost, d.Spec.Retries.OnNodeLost, d.Retries.Error, d.Spec.Retries.OnError)
				for _, r := range d.Pending {
					fmt.Fprintf(g.out, "waiting:   %s\n", r)
				}
				if len(d.AttemptList) > 0 {
					fmt.Fprintln(g.out, "\nattempts:")
					var rows [][]string
					for _, a := range d.AttemptList {
						nodes := make([]string, len(a.Tasks))
						for i, t := range a.Tasks {
							nodes[i] = fmt.Sprintf("%d:%s(%s)", t.Rank, t.NodeID, t.State)
						}
						rows = append(rows, []string{fmt.Sprint(a.Seq), a.ID, string(a.State), a.CreatedAt.Local().Format(time.TimeOnly),
							strings.Join(nodes, " "), a.Reason})
					}
					table(g, "#\tATTEMPT\tSTATE\tPLACED\tRANKS\tREASON", rows)
				}
			})
		},
	}
}

func logsCmd(g *globals) *cobra.Command {
	var followFlag bool
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's output (-f to follow it until the job ends)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if followFlag {
				ctx, stop := signalContext(cmd.Context())
				defer stop()
				return follow(ctx, g, c, args[0], false)
			}
			chunks, err := c.Logs(cmd.Context(), args[0], 0)
			if err != nil {
				return err
			}
			for _, ch := range chunks {
				w := g.out
				if ch.Stream == store.Stderr {
					w = g.errOut
				}
				w.Write(ch.Data)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&followFlag, "follow", "f", false, "follow the output until the job ends")
	return cmd
}

func cancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(d)
			}
			if d.State == core.JobCancelled {
				fmt.Fprintf(g.out, "job %s cancelled\n", d.ID)
			} else {
				fmt.Fprintf(g.out, "job %s: cancelling; its tasks are being stopped\n", d.ID)
			}
			return nil
		},
	}
}

func poolsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pools",
		Short: "List pools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]wire.PoolInfo, error) { return c.Pools(cmd.Context()) }, func(pools []wire.PoolInfo) {
				var rows [][]string
				for _, p := range pools {
					state := string(p.State)
					if p.StateReason != "" {
						state += " (" + p.StateReason + ")"
					}
					rows = append(rows, []string{p.Name, p.Region, p.Tier.String(), fmt.Sprintf("%d/%d", p.ReadyNodes, p.Nodes),
						fmt.Sprint(p.GPUs), fmt.Sprintf("%.2f", p.Reliability.Score), fmt.Sprint(p.Reliability.Losses), state})
				}
				table(g, "NAME\tREGION\tTRUST\tREADY/NODES\tGPUS\tSCORE\tLOSSES\tSTATE", rows)
			})
		},
	}
	cmd.AddCommand(poolAdminCmds(g)...)
	_, drainPool := drainCmds(g)
	cmd.AddCommand(drainPool)
	var life time.Duration
	token := &cobra.Command{
		Use:   "token POOL",
		Short: "Make a join token for a pool and print the command that starts an agent with it (the token is shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.NewJoinToken(cmd.Context(), args[0], life)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(t)
			}
			fmt.Fprintf(g.errOut, "join token %s for pool %s (shown this once; revoke it with `lode pools revoke-token %s`):\n", t.ID, t.Pool, t.ID)
			fmt.Fprintln(g.out, t.Command)
			return nil
		},
	}
	token.Flags().DurationVar(&life, "expires", 0, "how long the token admits agents (0: until revoked)")
	cmd.AddCommand(token, &cobra.Command{
		Use:   "tokens POOL",
		Short: "List a pool's join tokens (without their secrets)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, func(c *client.Client) ([]*store.JoinToken, error) { return c.JoinTokens(cmd.Context(), args[0]) },
				func(ts []*store.JoinToken) {
					var rows [][]string
					for _, t := range ts {
						state, expires := tokenState(t.Valid(time.Now()), t.RevokedAt, t.ExpiresAt)
						rows = append(rows, []string{t.ID, state, expires, ago(t.CreatedAt)})
					}
					table(g, "ID\tSTATE\tEXPIRES\tCREATED", rows)
				})
		},
	}, &cobra.Command{
		Use:   "revoke-token ID",
		Short: "Revoke a join token: no agent joins with it from now on (nodes that joined stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeJoinToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "join token %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}

func nodesCmd(g *globals) *cobra.Command {
	var pool string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			poolNames := map[string]string{}
			return show(g, func(c *client.Client) ([]*store.Node, error) {
				pools, err := c.Pools(cmd.Context())
				if err != nil {
					return nil, err
				}
				for _, p := range pools {
					poolNames[p.ID] = p.Name
				}
				return c.Nodes(cmd.Context(), pool)
			}, func(nodes []*store.Node) {
				var rows [][]string
				for _, n := range nodes {
					gpus := map[string]int{}
					for _, gp := range n.GPUs {
						gpus[gp.Model]++
					}
					var gs []string
					for _, m := range slices.Sorted(maps.Keys(gpus)) {
						gs = append(gs, fmt.Sprintf("%dx%s", gpus[m], m))
					}
					rows = append(rows, []string{n.ID, n.Name, poolNames[n.PoolID], string(n.State), fmt.Sprintf("%.1f", float64(n.MilliCPUs)/1000),
						core.FormatBytes(n.MemoryBytes), strings.Join(gs, ","), ago(n.LastHeartbeatAt)})
				}
				table(g, "ID\tNAME\tPOOL\tSTATE\tCPUS\tMEMORY\tGPUS\tHEARTBEAT", rows)
			})
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "only this pool's nodes")
	drainNode, _ := drainCmds(g)
	cmd.AddCommand(drainNode, &cobra.Command{
		Use:   "revoke NODE",
		Short: "Revoke a node: its credential is refused at once, its jobs move elsewhere (it may join again only with a join token)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "node %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}

func dataCmd(g *globals) *cobra.Command {
	var project, class string
	cmd := &cobra.Command{Use: "data", Short: "Manage datasets (encrypted, versioned)"}
	cmd.PersistentFlags().StringVar(&project, "project", "default", "the datasets' project")
	push := &cobra.Command{
		Use:   "push NAME DIR",
		Short: "Push a directory as a new version of a dataset (only changed chunks are sent)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := core.ParseClassification(class)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := pushDataset(cmd.Context(), g, c, project, args[0], args[1], cl)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(d)
			}
			return nil
		},
	}
	push.Flags().StringVar(&class, "classification", "internal", "public, internal, confidential or restricted")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List datasets (newest version of each)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]*store.Dataset, error) { return c.Datasets(cmd.Context(), project) }, func(ds []*store.Dataset) {
				var rows [][]string
				for _, d := range ds {
					rows = append(rows, []string{d.Name, fmt.Sprintf("v%d", d.Version), d.Project, d.Classification.String(),
						fmt.Sprint(d.Files), core.FormatBytes(d.Bytes), ago(d.CreatedAt)})
				}
				table(g, "NAME\tVERSION\tPROJECT\tCLASSIFICATION\tFILES\tSIZE\tPUSHED", rows)
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete every version of a dataset",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteDataset(cmd.Context(), project, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "dataset %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(push, ls, rm)
	return cmd
}

func artifactsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "artifacts", Short: "Fetch job outputs"}
	cmd.AddCommand(&cobra.Command{
		Use:   "get JOB DIR",
		Short: "Download and decrypt a job's outputs into DIR",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return fetchOutputs(cmd.Context(), g, c, args[0], args[1])
		},
	})
	return cmd
}

// fetchOutputs downloads and opens a job's outputs into dir.
func fetchOutputs(ctx context.Context, g *globals, c *client.Client, jobID, dir string) error {
	acc, err := c.Artifacts(ctx, jobID)
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(g.errOut, "job %s has no outputs\n", jobID)
		return nil
	}
	if err != nil {
		return err
	}
	s, err := data.NewSealer(acc.ObjectID, acc.DataKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, done := progress(g.errOut, "outputs")
	m, err := data.Pull(ctx, c, s, acc.ObjectID, acc.Artifact.Manifest, dir, p)
	done()
	if err != nil {
		return fmt.Errorf("fetching outputs of %s: %w", jobID, err)
	}
	abs, _ := filepath.Abs(dir)
	fmt.Fprintf(g.errOut, "outputs of %s (%d files, %s) are in %s\n", jobID, m.FileCount(), core.FormatBytes(m.Bytes()), abs)
	for _, f := range m.Files {
		if !f.Dir && f.Symlink == "" {
			fmt.Fprintf(g.errOut, "  %s\n", filepath.Join(abs, filepath.FromSlash(f.Path)))
		}
	}
	return nil
}
