package data

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestManifestValidate(t *testing.T) {
	addr := strings.Repeat("ab", 32)
	file := func(p string) File { return File{Path: p, Mode: 0o644, Size: 1, Chunks: []string{addr}} }
	dir := func(p string) File { return File{Path: p, Mode: 0o755, Dir: true} }
	link := func(p, target string) File { return File{Path: p, Symlink: target} }
	for _, c := range []struct {
		desc  string
		files []File
		ok    bool
	}{
		{"empty", nil, true},
		{"nested", []File{dir("a"), dir("a/b"), file("a/b/c"), file("a/x"), file("z")}, true},
		{"byte order puts a.txt before a/", []File{dir("a"), file("a.txt"), file("a/b")}, true},
		{"walk order is not byte order", []File{dir("a"), file("a/b"), file("a.txt")}, false},
		{"link to a sibling", []File{dir("a"), file("a/f"), link("a/l", "f")}, true},
		{"link up to the root", []File{dir("a"), link("a/l", "..")}, true},
		{"link up to a file at the root", []File{dir("a"), link("a/l", "../z"), file("z")}, true},
		{"dangling link inside", []File{link("l", "nothing/here")}, true},
		{"link to itself's directory", []File{link("l", ".")}, true},

		{"dot-dot", []File{file("../x")}, false},
		{"absolute", []File{file("/etc/x")}, false},
		{"climbing", []File{dir("a"), file("a/../../x")}, false},
		{"unclean", []File{dir("a"), file("a//x")}, false},
		{"dot", []File{file(".")}, false},
		{"trailing slash", []File{file("x/")}, false},
		{"empty path", []File{file("")}, false},
		{"backslash", []File{file(`a\..\x`)}, false},
		{"NUL", []File{file("a\x00b")}, false},
		{"long element", []File{file(strings.Repeat("x", 256))}, false},
		{"duplicate", []File{file("x"), file("x")}, false},
		{"unsorted", []File{file("y"), file("x")}, false},
		{"parent missing", []File{file("a/x")}, false},
		{"parent is a file", []File{file("a"), file("a/x")}, false},
		{"through a symlink", []File{link("evil", "a"), file("evil/x")}, false},
		{"absolute link", []File{link("evil", "/")}, false},
		{"link escaping", []File{dir("a"), link("a/l", "../..")}, false},
		{"link escaping at the root", []File{link("l", "../x")}, false},
		{"unclean link", []File{link("l", "x/../..")}, false},
		{"link with mode", []File{{Path: "l", Symlink: "x", Mode: 0o777}}, false},
		{"setuid", []File{{Path: "x", Mode: 0o4755}}, false},
		{"dir with chunks", []File{{Path: "d", Dir: true, Chunks: []string{addr}}}, false},
		{"dir and link", []File{{Path: "d", Dir: true, Symlink: "x"}}, false},
		{"too few chunks", []File{{Path: "x", Size: ChunkSize + 1, Chunks: []string{addr}}}, false},
		{"too many chunks", []File{{Path: "x", Size: 0, Chunks: []string{addr}}}, false},
		{"negative size", []File{{Path: "x", Size: -1}}, false},
		{"uppercase address", []File{{Path: "x", Size: 1, Chunks: []string{strings.ToUpper(addr)}}}, false},
	} {
		err := (&Manifest{Files: c.files}).validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", c.desc, err, c.ok)
		}
	}
}

func TestCleanLinkTarget(t *testing.T) {
	for _, c := range []struct {
		raw, want string
		ok        bool
	}{
		{"f", "f", true},
		{"./f", "f", true},
		{"a//b/", "a/b", true},
		{"../../x/./y", "../../x/y", true},
		{"..", "..", true},
		{"x/..", "", false}, // x may be a symlink: resolving it is not lexical
		{"../x/../y", "", false},
		{"/etc", "", false},
		{"", "", false},
	} {
		got, ok := cleanLinkTarget(c.raw)
		if got != c.want || ok != c.ok {
			t.Errorf("cleanLinkTarget(%q) = %q, %v; want %q, %v", c.raw, got, ok, c.want, c.ok)
		}
	}
}

func TestDecodeManifestIsStrict(t *testing.T) {
	s := newTestSealer(t, "obj-a")
	good := sampleManifest(s).encode()
	m, err := decodeManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleManifest(s), m); diff != "" {
		t.Errorf("decode(encode(m)) differs (-want +got):\n%s", diff)
	}
	// One entry: path "x", regular, mode 0o644 (0xa4 0x03), size 1, one address.
	one := append([]byte("LDM1\x01\x01x\x00\xa4\x03\x01"), make([]byte, 32)...)
	if _, err := decodeManifest(one); err != nil {
		t.Fatalf("hand-made encoding: %v", err)
	}
	for _, c := range []struct {
		desc string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("LDM2"), good[4:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"non-minimal count", []byte("LDM1\x80\x00")},
		{"count beyond input", []byte("LDM1\xff\xff\xff\xff\x0f")},
		{"unknown kind", []byte("LDM1\x01\x01x\x07\x00")},
		{"mode beyond 0777", []byte("LDM1\x01\x01x\x01\x80\x10")},
		{"size beyond input", []byte("LDM1\x01\x01x\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x7f")},
		{"size overflows int64", []byte("LDM1\x01\x01x\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")},
		{"empty symlink target", []byte("LDM1\x01\x01x\x02\x00\x00")},
		{"path beyond limit", []byte("LDM1\x01\xff\xff\x03")},
		{"unsafe path", []byte("LDM1\x01\x02..\x01\x00")},
	} {
		if m, err := decodeManifest(c.b); err == nil {
			t.Errorf("%s: decodeManifest = %+v, want an error", c.desc, m)
		}
	}
}
