package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// progress returns a progress callback that draws a bar on a terminal and
// stays silent elsewhere, and a function that finishes the bar.
func progress(w io.Writer, label string) (data.Progress, func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(label),
					progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			_ = bar.Set64(done)
		}, func() {
			if bar != nil {
				_ = bar.Finish()
			}
		}
}

// pushDir seals and uploads a directory into an object.
func pushDir(ctx context.Context, c *client.Client, key *wire.ObjectKey, dir, label string, errOut io.Writer) (*data.PushResult, error) {
	s, err := data.NewSealer(key.ObjectID, key.DataKey)
	if err != nil {
		return nil, err
	}
	p, done := progress(errOut, label)
	res, err := data.Push(ctx, c, s, key.ObjectID, dir, p)
	done()
	return res, err
}

// pushDataset pushes a directory as a new version of a dataset, unless its
// contents equal the newest version's. It returns the version to use.
func pushDataset(ctx context.Context, g *globals, c *client.Client, project, name, dir string, class core.Classification) (*store.Dataset, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", name, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dataset %s: %s is not a directory", name, dir)
	}
	key, err := c.CreateObject(ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: project, Name: name})
	if err != nil {
		return nil, err
	}
	res, err := pushDir(ctx, c, key, dir, "dataset "+name, g.errOut)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", name, err)
	}
	for _, d := range mustDatasets(ctx, c, project) {
		if d.Name == name && d.Manifest == res.Manifest {
			fmt.Fprintf(g.errOut, "dataset %s: unchanged, using v%d (%d files, %s)\n", name, d.Version, d.Files, core.FormatBytes(d.Bytes))
			return d, nil
		}
	}
	d, err := c.CommitDataset(ctx, &wire.CommitDataset{
		Project: project, Name: name, ObjectID: key.ObjectID, Manifest: res.Manifest,
		Classification: class, Files: res.Files, Bytes: res.Bytes,
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.errOut, "dataset %s: pushed v%d (%d files, %s; %s sent)\n", name, d.Version, d.Files,
		core.FormatBytes(d.Bytes), core.FormatBytes(res.Uploaded))
	return d, nil
}

func mustDatasets(ctx context.Context, c *client.Client, project string) []*store.Dataset {
	ds, _ := c.Datasets(ctx, project)
	return ds
}
