package data

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
)

// ChunkSize is the fixed size of a chunk; a file's last chunk may be shorter, an empty file has
// none.
const ChunkSize = 4 << 20

// Limits on what a manifest may hold. A decoder enforces them before allocating, so hostile
// input costs at most what its own size allows.
const (
	maxManifestSize = 256 << 20 // encoded bytes: about 8 million chunk addresses, some 32 TiB
	maxPathLen      = 4096
	maxNameLen      = 255 // one path element
)

// Manifest lists a directory tree: every directory, regular file and symlink beneath its root,
// sorted by Path (byte order). Every entry's parent directory, if not the root, is an earlier
// Dir entry.
type Manifest struct {
	Files []File
}

// File is one entry of a Manifest: a regular file, a directory (Dir) or a symlink (Symlink
// not empty).
type File struct {
	// Path is slash-separated, relative to the tree's root and clean: no "", ".", "..",
	// leading or trailing slash, backslash or NUL.
	Path string
	// Mode holds permission bits only (0o777); it is 0 for symlinks.
	Mode uint32
	// Size is the file's length in bytes; 0 for directories and symlinks.
	Size int64
	// Chunks are the addresses of the file's chunks in order, ceil(Size/ChunkSize) of them.
	Chunks []string
	// Symlink is the target of a symlink: relative, clean, and resolving inside the tree.
	Symlink string
	Dir     bool
}

// Bytes returns the total size of the regular files.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// FileCount returns the number of entries that are not directories: regular files and symlinks.
func (m *Manifest) FileCount() int {
	n := 0
	for _, f := range m.Files {
		if !f.Dir {
			n++
		}
	}
	return n
}

func (f *File) regular() bool { return !f.Dir && f.Symlink == "" }

func chunkCount(size int64) int64 { return (size + ChunkSize - 1) / ChunkSize }

// validate checks everything a reader of the manifest relies on: safe paths, order, parents,
// consistent kinds and sizes, and well-formed addresses.
func (m *Manifest) validate() error {
	dirs := make(map[string]bool)
	prev := ""
	for i := range m.Files {
		f := &m.Files[i]
		if err := validPath(f.Path); err != nil {
			return fmt.Errorf("entry %q: %w", f.Path, err)
		}
		if i > 0 && f.Path <= prev {
			return fmt.Errorf("entry %q: not after %q (entries must be sorted and unique)", f.Path, prev)
		}
		prev = f.Path
		if parent := path.Dir(f.Path); parent != "." && !dirs[parent] {
			return fmt.Errorf("entry %q: parent %q is not a directory of the manifest", f.Path, parent)
		}
		if f.Mode&^0o777 != 0 {
			return fmt.Errorf("entry %q: mode %o has bits beyond 0777", f.Path, f.Mode)
		}
		switch {
		case f.Dir:
			if f.Symlink != "" || f.Size != 0 || len(f.Chunks) != 0 {
				return fmt.Errorf("entry %q: a directory has no target, size or chunks", f.Path)
			}
			dirs[f.Path] = true
		case f.Symlink != "":
			if f.Mode != 0 || f.Size != 0 || len(f.Chunks) != 0 {
				return fmt.Errorf("entry %q: a symlink has no mode, size or chunks", f.Path)
			}
			if err := validLinkTarget(f.Path, f.Symlink); err != nil {
				return fmt.Errorf("entry %q: %w", f.Path, err)
			}
		default:
			if f.Size < 0 {
				return fmt.Errorf("entry %q: negative size", f.Path)
			}
			if int64(len(f.Chunks)) != chunkCount(f.Size) {
				return fmt.Errorf("entry %q: %d chunks for %d bytes, want %d", f.Path, len(f.Chunks), f.Size, chunkCount(f.Size))
			}
			for _, a := range f.Chunks {
				if !validAddr(a) {
					return fmt.Errorf("entry %q: malformed chunk address %q", f.Path, a)
				}
			}
		}
	}
	return nil
}

// validPath accepts clean, relative, slash-separated paths with no "..": paths that cannot
// leave the tree by themselves (symlinks along the way are the writer's to refuse).
func validPath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path longer than %d bytes", maxPathLen)
	case p[0] == '/':
		return errors.New("absolute path")
	case strings.ContainsAny(p, "\x00\\"):
		return errors.New("path holds NUL or backslash")
	case path.Clean(p) != p:
		return errors.New("path is not clean")
	}
	for elem := range strings.SplitSeq(p, "/") {
		if elem == ".." {
			return errors.New("path climbs out with ..")
		}
		if len(elem) > maxNameLen {
			return fmt.Errorf("path element longer than %d bytes", maxNameLen)
		}
	}
	return nil
}

// validLinkTarget accepts a symlink target that resolves inside the tree. The target must be
// relative and clean, so any ".." elements lead it; they climb through the link's parents,
// which are real directories of the manifest, and may not climb above the root. What follows
// descends, and any symlink it passes through obeys the same rule, so no chain escapes.
func validLinkTarget(link, target string) error {
	switch {
	case target == "":
		return errors.New("empty symlink target")
	case len(target) > maxPathLen:
		return fmt.Errorf("symlink target longer than %d bytes", maxPathLen)
	case target[0] == '/':
		return fmt.Errorf("symlink target %q is absolute", target)
	case strings.ContainsAny(target, "\x00\\"):
		return errors.New("symlink target holds NUL or backslash")
	case path.Clean(target) != target:
		return fmt.Errorf("symlink target %q is not clean", target)
	}
	depth := 0
	if parent := path.Dir(link); parent != "." {
		depth = strings.Count(parent, "/") + 1
	}
	up := 0
	for elem := range strings.SplitSeq(target, "/") {
		if elem != ".." {
			break
		}
		up++
	}
	if up > depth {
		return fmt.Errorf("symlink target %q leaves the tree", target)
	}
	return nil
}

// cleanLinkTarget turns a symlink target read from disk into the manifest's form. Cleaning is
// only safe when no ".." follows another element: "x/.." resolves through x, which may itself
// be a symlink, so such targets are refused rather than rewritten.
func cleanLinkTarget(raw string) (string, bool) {
	if raw == "" || raw[0] == '/' {
		return "", false
	}
	seenName := false
	for elem := range strings.SplitSeq(raw, "/") {
		switch elem {
		case "..":
			if seenName {
				return "", false
			}
		case "", ".":
		default:
			seenName = true
		}
	}
	return path.Clean(raw), true
}

// The encoding is binary and canonical: one manifest has exactly one encoding, which is what
// makes manifest names content addresses. Layout:
//
//	magic "LDM1"
//	uvarint entry count
//	per entry: uvarint path length, path, kind byte, uvarint mode, then
//	  regular:  uvarint size, ceil(size/ChunkSize) raw 32-byte addresses
//	  dir:      nothing
//	  symlink:  uvarint target length, target
//
// Uvarints must be minimal.
const manifestMagic = "LDM1"

const (
	kindRegular = 0
	kindDir     = 1
	kindSymlink = 2
)

// encode returns the canonical encoding of a validated manifest.
func (m *Manifest) encode() []byte {
	n := len(manifestMagic) + binary.MaxVarintLen64
	for _, f := range m.Files {
		n += len(f.Path) + len(f.Symlink) + 3*binary.MaxVarintLen64 + 1 + 32*len(f.Chunks)
	}
	b := make([]byte, 0, n)
	b = append(b, manifestMagic...)
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for _, f := range m.Files {
		b = binary.AppendUvarint(b, uint64(len(f.Path)))
		b = append(b, f.Path...)
		switch {
		case f.Dir:
			b = append(b, kindDir)
			b = binary.AppendUvarint(b, uint64(f.Mode))
		case f.Symlink != "":
			b = append(b, kindSymlink)
			b = binary.AppendUvarint(b, uint64(f.Mode))
			b = binary.AppendUvarint(b, uint64(len(f.Symlink)))
			b = append(b, f.Symlink...)
		default:
			b = append(b, kindRegular)
			b = binary.AppendUvarint(b, uint64(f.Mode))
			b = binary.AppendUvarint(b, uint64(f.Size))
			for _, a := range f.Chunks {
				b, _ = hex.AppendDecode(b, []byte(a))
			}
		}
	}
	return b
}

// decodeManifest parses an encoding strictly: wrong magic, truncation, trailing bytes,
// non-minimal numbers, counts the input cannot hold, and anything validate refuses are errors.
// It never panics and allocates no more than a small multiple of len(b).
func decodeManifest(b []byte) (*Manifest, error) {
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("manifest is %d bytes, more than %d", len(b), maxManifestSize)
	}
	d := decoder{b: b}
	if string(d.bytes(len(manifestMagic))) != manifestMagic {
		return nil, errors.New("not a manifest (bad magic)")
	}
	const minEntry = 4 // path length, one path byte, kind, mode
	count := d.uvarint()
	if count > uint64(len(d.b)/minEntry) {
		return nil, errors.New("entry count exceeds what the manifest holds")
	}
	m := &Manifest{Files: make([]File, 0, min(count, 1024))}
	for i := uint64(0); i < count && d.err == nil; i++ {
		var f File
		f.Path = d.str(maxPathLen)
		kind := d.byte()
		mode := d.uvarint()
		if mode > 0o777 {
			return nil, fmt.Errorf("entry %q: mode %o has bits beyond 0777", f.Path, mode)
		}
		f.Mode = uint32(mode)
		switch kind {
		case kindRegular:
			size := d.uvarint()
			if size > math.MaxInt64 {
				return nil, fmt.Errorf("entry %q: size overflows", f.Path)
			}
			f.Size = int64(size)
			n := chunkCount(f.Size)
			if n > int64(len(d.b)/32) {
				return nil, fmt.Errorf("entry %q: %d chunks exceed what the manifest holds", f.Path, n)
			}
			if n > 0 {
				f.Chunks = make([]string, n)
				for j := range f.Chunks {
					f.Chunks[j] = hex.EncodeToString(d.bytes(32))
				}
			}
		case kindDir:
			f.Dir = true
		case kindSymlink:
			f.Symlink = d.str(maxPathLen)
			if f.Symlink == "" && d.err == nil {
				return nil, fmt.Errorf("entry %q: empty symlink target", f.Path)
			}
		default:
			if d.err == nil {
				return nil, fmt.Errorf("entry %q: unknown kind %d", f.Path, kind)
			}
		}
		m.Files = append(m.Files, f)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(d.b))
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decoder reads from b, remembering the first error; after one, reads return zero values.
type decoder struct {
	b   []byte
	err error
}

var errTruncated = errors.New("manifest is truncated")

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.err = errTruncated
		return 0
	case n < 0:
		d.err = errors.New("number overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.err = errors.New("number is not minimally encoded")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(limit int) string {
	n := d.uvarint()
	if d.err == nil && n > uint64(limit) {
		d.err = fmt.Errorf("string of %d bytes exceeds %d", n, limit)
	}
	return string(d.bytes(int(min(n, uint64(limit)))))
}
