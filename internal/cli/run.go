package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wait"
	"lode.dev/lode/internal/wire"
)

func runCmd(g *globals) *cobra.Command {
	var detach, dryRun bool
	var gpus, outputs string
	cmd := &cobra.Command{
		Use:   "run SPEC",
		Short: "Submit a job, follow its output, and exit with its status",
		Long: `Submit the job a spec describes: push the datasets it names with from:,
upload its working directory (encrypted), queue it, follow its output and exit
with the job's status. With --local, an embedded control plane and this
machine's pool run in this process, with state in the user's data directory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			job, err := readSpec(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if dryRun {
				c, err := g.client()
				if err != nil {
					return err
				}
				e, err := c.DryRun(ctx, job)
				if err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(e)
				}
				fmt.Fprintf(g.out, "job %s would run on (cheapest first; nothing was submitted):\n", job.Name)
				printOptions(g, e.Options)
				return nil
			}
			local := g.local
			if local {
				if g.localGPUs, err = parseGPUFlag(gpus); err != nil {
					return err
				}
				g.localPool = true
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			detail, err := submit(ctx, g, c, job, filepath.Dir(args[0]))
			if err != nil {
				return err
			}
			if detach {
				if g.json() {
					return g.printJSON(detail)
				}
				fmt.Fprintln(g.out, detail.ID)
				return nil
			}
			fmt.Fprintf(g.errOut, "job %s (%s) submitted; following its output\n", detail.ID, detail.Name)
			if err := follow(ctx, g, c, detail.ID, local); err != nil {
				return err
			}
			if outputs == "" && local {
				outputs = filepath.Join("lode-outputs", detail.ID)
			}
			if outputs == "" {
				return nil
			}
			return fetchOutputs(ctx, g, c, detail.ID, outputs)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show where the job would run and what it would cost, without submitting it")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "submit and print the job ID without following it")
	cmd.Flags().StringVar(&outputs, "outputs", "", "fetch the job's outputs into this directory when it succeeds (default with --local: lode-outputs/JOB)")
	cmd.Flags().StringVar(&gpus, "gpus", "", "with --local: declare this machine's GPUs, e.g. 1xrtx4090 (default: ask nvidia-smi)")
	return cmd
}

// readSpec reads and parses a spec; every problem is printed, and nothing is
// submitted.
func readSpec(path string) (*spec.Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("cannot read the job spec: %w", err)}
	}
	job, err := spec.Parse(path, b)
	if err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("%w\nnothing was submitted", err)}
	}
	return job, nil
}

// submit pushes what the job needs and queues it.
func submit(ctx context.Context, g *globals, c *client.Client, job *spec.Job, specDir string) (*wire.JobDetail, error) {
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(specDir, p)
	}
	for i, d := range job.Datasets {
		if d.From == "" {
			continue
		}
		ds, err := pushDataset(ctx, g, c, job.Project, d.Name, rel(d.From), job.Classification)
		if err != nil {
			return nil, err
		}
		job.Datasets[i].Version = ds.Version
	}
	req := &wire.SubmitJob{Spec: *job}
	if job.Workdir != "" {
		dir := rel(job.Workdir)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("workdir %s is not a directory", dir)}
		}
		key, err := c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectWorkdir, Project: job.Project})
		if err != nil {
			return nil, err
		}
		res, err := pushDir(ctx, c, key, dir, "workdir", g.errOut)
		if err != nil {
			return nil, fmt.Errorf("uploading workdir %s: %w", dir, err)
		}
		fmt.Fprintf(g.errOut, "workdir: %d files, %s (%s sent, encrypted)\n", res.Files, core.FormatBytes(res.Bytes), core.FormatBytes(res.Uploaded))
		req.WorkdirObject, req.WorkdirManifest = key.ObjectID, res.Manifest
	}
	return c.SubmitJob(ctx, req)
}

// follow streams a job's output until it ends and returns an error carrying
// the job's exit status. A broken stream is picked up again where it left off.
func follow(ctx context.Context, g *globals, c *client.Client, id string, cancelOnInterrupt bool) error {
	var after int64
	var end wire.LogEvent
	b := 250 * time.Millisecond
	for {
		err := c.FollowLogs(ctx, id, after, func(ev wire.LogEvent) error {
			if ev.Chunk != nil {
				w := g.out
				if ev.Chunk.Stream == store.Stderr {
					w = g.errOut
				}
				w.Write(ev.Chunk.Data)
				after = ev.Chunk.Seq
			}
			if ev.End {
				end = ev
			}
			return nil
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			if cancelOnInterrupt {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.CancelJob(cctx, id)
				cancel()
				return fmt.Errorf("interrupted; job %s cancelled", id)
			}
			return fmt.Errorf("interrupted; job %s keeps running (lode logs -f %s)", id, id)
		}
		if !errors.Is(err, client.ErrUnreachable) {
			return err
		}
		fmt.Fprintf(g.errOut, "lode: lost the log stream (%v); retrying\n", err)
		if !wait.Sleep(ctx, b) {
			continue
		}
		b = min(b*2, 5*time.Second)
	}
	d, err := c.Job(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintln(g.errOut, summary(d, g.local))
	if g.json() {
		g.printJSON(d)
	}
	switch end.State {
	case core.JobSucceeded:
		return nil
	case core.JobCancelled:
		return &ExitError{Code: 130}
	default:
		return &ExitError{Code: max(d.ExitCode, 1)}
	}
}

// summary is one line on how a job ended.
func summary(d *wire.JobDetail, local bool) string {
	took := ""
	if !d.FinishedAt.IsZero() {
		took = " in " + d.FinishedAt.Sub(d.CreatedAt).Round(time.Second).String()
	}
	attempts := ""
	if d.Attempts > 1 {
		attempts = fmt.Sprintf(" after %d attempts", d.Attempts)
	}
	s := fmt.Sprintf("job %s %s%s%s", d.ID, d.State, took, attempts)
	if d.State != core.JobSucceeded && d.Reason != "" {
		s += ": " + d.Reason
	}
	if d.State == core.JobSucceeded {
		s += fmt.Sprintf("; fetch its outputs with `lode artifacts get%s %s DIR`", localFlag(local), d.ID)
	}
	return strings.TrimSpace(s)
}

func localFlag(local bool) string {
	if local {
		return " --local"
	}
	return ""
}
