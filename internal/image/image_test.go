package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// staticBinary builds a tiny static Go program, as `make image` builds lode.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello from scratch\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestBuildWritesALoadableImageOfTheBinary(t *testing.T) {
	bin := staticBinary(t)
	out := filepath.Join(t.TempDir(), "lode-image.tar")
	if err := Build(bin, "lode:test", out); err != nil {
		t.Fatal(err)
	}

	// What `docker load` reads: the manifest names the tag.
	ms, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || !slices.Contains(ms[0].RepoTags, "lode:test") {
		t.Errorf("manifest = %+v; want one image tagged lode:test", ms)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/lode"}) || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config: entrypoint %q, platform %s/%s; want [/lode] on linux/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture, runtime.GOARCH)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want exactly one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, _ := os.ReadFile(bin)
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Name == "lode" {
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, want) {
				t.Errorf("/lode holds %d bytes; want the binary's %d", len(got), len(want))
			}
		}
	}
	h := files["lode"]
	if h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 != 0o111 || h.Uid != 0 {
		t.Fatalf("/lode in the layer: %+v; want a regular file executable by all, owned by root", h)
	}
	if len(files) != 2 || files["tmp/"] == nil {
		t.Errorf("layer holds %v; want lode and tmp/ alone", files)
	}

	// The same binary gives the same image.
	again := filepath.Join(t.TempDir(), "again.tar")
	if err := Build(bin, "lode:test", again); err != nil {
		t.Fatal(err)
	}
	img2, err := tarball.ImageFromPath(again, nil)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("two builds of one binary: digests %s and %s; want the same", d1, d2)
	}
}

func TestBuildRefusesWhatScratchCannotRun(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []string{script}
	// A dynamically linked program, where the system has one.
	for _, p := range []string{"/bin/sh", "/usr/bin/env"} {
		if f, err := elf.Open(p); err == nil {
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					cases = append(cases, p)
					break
				}
			}
			f.Close()
		}
	}
	for _, bin := range cases {
		out := filepath.Join(dir, "out.tar")
		err := Build(bin, "lode:test", out)
		if !errors.Is(err, ErrNotStatic) {
			t.Errorf("Build(%s) = %v; want ErrNotStatic", bin, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("Build(%s) wrote %s although it failed", bin, out)
		}
	}
	if err := Build(staticBinary(t), "Not A Tag!", filepath.Join(dir, "x.tar")); err == nil {
		t.Error("a bad tag was accepted")
	}
}
