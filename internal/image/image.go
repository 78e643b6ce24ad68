// Package image builds Lode's container image without a container engine:
// one layer holding the static lode binary at /lode (and an empty /tmp),
// on nothing else, written as a tarball that `docker load` (or podman,
// kind, k3s) reads. The Kubernetes driver's init container runs it as
// `/lode runner --install DIR`, which needs no shell, so the image needs
// none either.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Path is where the binary lies in the image, and its entrypoint.
const Path = "/lode"

// Build writes the image of binary, tagged tag (e.g. "lode:v1.2"), to the
// tarball out. The binary must be a statically linked Linux executable: an
// image with nothing else in it has no dynamic loader, and a dynamic
// binary would fail there with a baffling "no such file or directory".
// The same binary and tag always give the same image.
func Build(binary, tag, out string) error {
	ref, err := name.NewTag(tag, name.WithDefaultRegistry(""))
	if err != nil {
		return fmt.Errorf("image: bad tag %q: %w", tag, err)
	}
	arch, err := staticArch(binary)
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	layerTar, err := rootfs(bin)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("image: layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Entrypoint = []string{Path}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("image: writing %s: %w", out, err)
	}
	return nil
}

// rootfs is the layer: the binary, executable by all, and a /tmp for
// commands that want a scratch directory. Times are fixed so that the
// layer's digest depends on the binary alone.
func rootfs(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: Path[1:], Mode: 0o755, Size: int64(len(bin)), ModTime: epoch}, bin},
	}
	for _, e := range entries {
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// ErrNotStatic is returned for a binary an image from scratch cannot run.
var ErrNotStatic = errors.New("image: not a statically linked Linux executable")

// staticArch checks that binary is a static Linux executable and returns
// its architecture as an image names it.
func staticArch(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNotStatic, binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%w: %s needs a dynamic loader; build it with CGO_ENABLED=0", ErrNotStatic, binary)
		}
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%w: %s is an ELF %v, not an executable", ErrNotStatic, binary, f.Type)
	}
	arch, ok := map[elf.Machine]string{
		elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_ARM: "arm",
		elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_RISCV: "riscv64",
	}[f.Machine]
	if !ok {
		return "", fmt.Errorf("%w: %s is for %v, which this builder does not name", ErrNotStatic, binary, f.Machine)
	}
	return arch, nil
}
