package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idxBytes builds an idx file of unsigned bytes with the given dimensions and data.
func idxBytes(dims []int, data []byte) []byte {
	b := []byte{0, 0, idxTypeUbyte, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestDecodeIDX(t *testing.T) {
	six := []byte{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name     string
		in       []byte
		limit    int
		wantDims []int
		wantData []byte
		wantErr  string
	}{
		{name: "2x3", in: idxBytes([]int{2, 3}, six), wantDims: []int{2, 3}, wantData: six},
		{name: "limit keeps the first items", in: idxBytes([]int{2, 3}, six), limit: 1, wantDims: []int{1, 3}, wantData: six[:3]},
		{name: "limit past the end keeps all", in: idxBytes([]int{2, 3}, six), limit: 5, wantDims: []int{2, 3}, wantData: six},
		{name: "empty", in: nil, wantErr: "reading the idx header: unexpected EOF"},
		{name: "short header", in: []byte{0, 0, 8}, wantErr: "unexpected EOF"},
		{name: "not idx", in: []byte("PK\x03\x04zip"), wantErr: "bad magic 0x504b0304: not an idx file"},
		{name: "float elements", in: []byte{0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0}, wantErr: "element type 0x0d, want 0x08"},
		{name: "no dimensions", in: []byte{0, 0, 8, 0}, wantErr: "0 dimensions"},
		{name: "too many dimensions", in: []byte{0, 0, 8, 9}, wantErr: "9 dimensions"},
		{name: "dimensions cut short", in: []byte{0, 0, 8, 3, 0, 0, 0, 1}, wantErr: "reading 3 idx dimensions: unexpected EOF"},
		{name: "zero dimension", in: idxBytes([]int{0, 28, 28}, nil), wantErr: "a zero dimension"},
		{name: "huge", in: idxBytes([]int{1 << 20, 1 << 20}, nil), wantErr: "come to more than"},
		{name: "truncated data", in: idxBytes([]int{2, 3}, six[:4]), wantErr: "idx data truncated: 4 of 6 bytes"},
		{name: "trailing bytes", in: idxBytes([]int{2, 3}, append(slices.Clone(six), 7)), wantErr: "unexpected bytes after the 6 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dims, data, err := decodeIDX(bytes.NewReader(tt.in), tt.limit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dims, tt.wantDims) || !bytes.Equal(data, tt.wantData) {
				t.Errorf("got dims %v data %v, want %v %v", dims, data, tt.wantDims, tt.wantData)
			}
		})
	}
}

// writeSplit writes an images file and a labels file, gzipped, as MNIST names them.
func writeSplit(t *testing.T, dir, prefix string, images, labels []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, prefix+"-images-idx3-ubyte.gz"), gz(images), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz"), gz(labels), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	img := func(n int) []byte { return idxBytes([]int{n, 28, 28}, make([]byte, n*inputs)) }
	lab := func(ls ...byte) []byte { return idxBytes([]int{len(ls)}, ls) }
	tests := []struct {
		name           string
		images, labels []byte
		raw            []byte // replaces the gzipped images file when set
		wantErr        string
	}{
		{name: "labels count", images: img(2), labels: lab(1, 2, 3), wantErr: "train-labels-idx1-ubyte.gz holds 3 labels but "},
		{name: "label out of range", images: img(2), labels: lab(1, 10), wantErr: "train-labels-idx1-ubyte.gz: label 10 at index 1, want 0 to 9"},
		{name: "image shape", images: idxBytes([]int{2, 27, 29}, make([]byte, 2*27*29)), labels: lab(1, 2), wantErr: "train-images-idx3-ubyte.gz: dimensions [2 27 29], want [n 28 28]"},
		{name: "labels as images", images: lab(1, 2), labels: lab(1, 2), wantErr: "train-images-idx3-ubyte.gz: dimensions [2], want [n 28 28]"},
		{name: "images as labels", images: img(2), labels: img(2), wantErr: "train-labels-idx1-ubyte.gz: dimensions [2 28 28], want [n]"},
		{name: "broken gzip", raw: []byte{0x1f, 0x8b, 8, 0, 1, 2}, labels: lab(1), wantErr: "train-images-idx3-ubyte.gz: unexpected EOF"},
		{name: "corrupt gzip payload", raw: corruptGzip(img(2)), labels: lab(1, 2), wantErr: "train-images-idx3-ubyte.gz: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSplit(t, dir, "train", tt.images, tt.labels)
			writeSplit(t, dir, "t10k", img(1), lab(0))
			if tt.raw != nil {
				os.WriteFile(filepath.Join(dir, "train-images-idx3-ubyte.gz"), tt.raw, 0o644)
			}
			_, _, err := loadMNIST(dir, 0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("err = %v, want it to name the file's path", err)
			}
		})
	}
}

// corruptGzip compresses b and flips a bit of the stored CRC, so that the damage shows only at
// the end of the stream.
func corruptGzip(b []byte) []byte {
	z := gz(b)
	z[len(z)-8] ^= 1
	return z
}

func TestLoadMNISTMissingFile(t *testing.T) {
	dir := t.TempDir()
	_, _, err := loadMNIST(dir, 0)
	want := filepath.Join(dir, "train-images-idx3-ubyte.gz")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want one naming %s", err, want)
	}
}

// TestLoadMNISTUncompressed covers a dataset that was unpacked before it was pushed to Lode.
func TestLoadMNISTUncompressed(t *testing.T) {
	dir := t.TempDir()
	pixels := make([]byte, 3*inputs)
	pixels[inputs+5] = 200
	os.WriteFile(filepath.Join(dir, "train-images-idx3-ubyte"), idxBytes([]int{3, 28, 28}, pixels), 0o644)
	os.WriteFile(filepath.Join(dir, "train-labels-idx1-ubyte"), idxBytes([]int{3}, []byte{4, 5, 6}), 0o644)
	writeSplit(t, dir, "t10k", idxBytes([]int{1, 28, 28}, make([]byte, inputs)), idxBytes([]int{1}, []byte{9}))
	train, test, err := loadMNIST(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if train.n != 2 || train.image(1)[5] != 200 || !bytes.Equal(train.labels, []byte{4, 5}) {
		t.Errorf("train = %d images, pixel %d, labels %v; want 2, 200, [4 5]", train.n, train.image(1)[5], train.labels)
	}
	if test.n != 1 || test.labels[0] != 9 {
		t.Errorf("test = %d images, labels %v; want 1, [9]", test.n, test.labels)
	}
}

// TestLoadShippedData reads the real files next to the trainer.
func TestLoadShippedData(t *testing.T) {
	train, test, err := loadMNIST("../data", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if train.n != 1000 || test.n != 10000 {
		t.Errorf("got %d training and %d test images, want 1000 and 10000", train.n, test.n)
	}
	// The first training image is a 5 and the first test image a 7, as every MNIST tutorial shows.
	if train.labels[0] != 5 || test.labels[0] != 7 {
		t.Errorf("first labels %d and %d, want 5 and 7", train.labels[0], test.labels[0])
	}
}

func FuzzReadIDX(f *testing.F) {
	f.Add(idxBytes([]int{2, 3}, []byte{1, 2, 3, 4, 5, 6}), 0)
	f.Add(idxBytes([]int{2, 3}, []byte{1, 2, 3, 4, 5, 6}), 1)
	f.Add(idxBytes([]int{1, 28, 28}, make([]byte, inputs)), 0)
	f.Add(idxBytes([]int{3}, []byte{0, 9, 3}), 2)
	f.Add(idxBytes([]int{1 << 16, 1 << 12}, []byte{1}), 0)
	f.Add([]byte{0, 0, 8, 4, 0, 0, 0, 1}, 0)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		dims, data, err := decodeIDX(bytes.NewReader(in), limit)
		if err != nil {
			if dims != nil || data != nil {
				t.Fatalf("error %v came with results", err)
			}
			return
		}
		size := 1
		for _, d := range dims {
			if d <= 0 {
				t.Fatalf("dims %v: not positive", dims)
			}
			size *= d
		}
		if size != len(data) {
			t.Fatalf("dims %v promise %d bytes, got %d", dims, size, len(data))
		}
		if limit > 0 && dims[0] > limit {
			t.Fatalf("limit %d, got %d items", limit, dims[0])
		}
		if header := 4 + 4*len(dims); len(in) < header+len(data) || !bytes.Equal(data, in[header:header+len(data)]) {
			t.Fatalf("data is not the bytes after the header")
		}
		// The gzip path must agree with the raw one.
		if limit <= 0 {
			gdims, gdata, err := decodeIDX(mustGunzip(t, gz(in)), 0)
			if err != nil || !slices.Equal(gdims, dims) || !bytes.Equal(gdata, data) {
				t.Fatalf("through gzip: %v %d bytes %v", gdims, len(gdata), err)
			}
		}
	})
}

func mustGunzip(t *testing.T, b []byte) *gzip.Reader {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return zr
}
