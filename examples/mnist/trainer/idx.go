package main

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// The idx format of LeCun's files: a four-byte magic (two zero bytes, a type code, the number of
// dimensions), each dimension as a big-endian uint32, then the data in row-major order.
const (
	idxTypeUbyte = 0x08
	idxMaxDims   = 4
	// idxMaxBytes is far above MNIST's 47 MB; it stops a damaged header from making the reader
	// promise itself gigabytes.
	idxMaxBytes = 1 << 28
)

// MNIST's shape.
const (
	imageSide = 28
	inputs    = imageSide * imageSide
	classes   = 10
)

// dataset is one split of MNIST: n images of inputs bytes each, back to back, and n labels.
type dataset struct {
	n      int
	images []byte
	labels []byte
}

func (d dataset) image(i int) []byte { return d.images[i*inputs : (i+1)*inputs] }

// decodeIDX reads one idx file of unsigned bytes. With limit > 0 it keeps only the first limit
// items along the first dimension and stops reading there, so a test that wants 500 training
// images does not decompress 60,000. Without a limit it reads to the end and insists that nothing
// follows the data, which is also what makes gzip verify its checksum.
func decodeIDX(r io.Reader, limit int) (dims []int, data []byte, err error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, nil, fmt.Errorf("reading the idx header: %w", unexpectedEOF(err))
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, nil, fmt.Errorf("bad magic %#08x: not an idx file", binary.BigEndian.Uint32(head[:]))
	}
	if head[2] != idxTypeUbyte {
		return nil, nil, fmt.Errorf("idx element type %#02x, want %#02x (unsigned byte)", head[2], idxTypeUbyte)
	}
	nd := int(head[3])
	if nd < 1 || nd > idxMaxDims {
		return nil, nil, fmt.Errorf("idx file with %d dimensions, want 1 to %d", nd, idxMaxDims)
	}
	raw := make([]byte, 4*nd)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, fmt.Errorf("reading %d idx dimensions: %w", nd, unexpectedEOF(err))
	}
	dims = make([]int, nd)
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(raw[4*i:]))
	}
	size := 1
	for _, d := range dims {
		if d == 0 {
			return nil, nil, fmt.Errorf("idx dimensions %v: a zero dimension", dims)
		}
		if size > idxMaxBytes/d {
			return nil, nil, fmt.Errorf("idx dimensions %v come to more than %d bytes", dims, idxMaxBytes)
		}
		size *= d
	}
	n := dims[0]
	if limit > 0 && limit < n {
		size = size / n * limit
		dims[0] = limit
	} else {
		limit = 0
	}
	// ReadAll grows the buffer as bytes arrive, so a truncated file costs what it holds, not
	// what its header claims.
	data, err = io.ReadAll(io.LimitReader(r, int64(size)))
	if err != nil {
		return nil, nil, fmt.Errorf("reading idx data: %w", err)
	}
	if len(data) < size {
		return nil, nil, fmt.Errorf("idx data truncated: %d of %d bytes", len(data), size)
	}
	if limit == 0 {
		var extra [1]byte
		switch k, err := io.ReadFull(r, extra[:]); {
		case k > 0:
			return nil, nil, fmt.Errorf("unexpected bytes after the %d bytes of idx data", size)
		case err != io.EOF:
			return nil, nil, fmt.Errorf("reading past idx data: %w", err)
		}
	}
	return dims, data, nil
}

// unexpectedEOF turns a clean EOF into ErrUnexpectedEOF: running out of bytes inside a header is
// truncation, not a normal end.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// idxFile is one decoded idx file and the path it came from, for error messages.
type idxFile struct {
	path string
	dims []int
	data []byte
}

// readIDX reads dir/name.gz, or dir/name when only the decompressed file is there (a dataset
// someone unpacked), and names the file in every error.
func readIDX(dir, name string, limit int) (idxFile, error) {
	path := filepath.Join(dir, name+".gz")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		if g, err2 := os.Open(filepath.Join(dir, name)); err2 == nil {
			path, f, err = g.Name(), g, nil
		}
	}
	if err != nil {
		return idxFile{}, err // *PathError already names the file
	}
	defer f.Close()

	var r io.Reader = bufio.NewReader(f)
	if magic, _ := r.(*bufio.Reader).Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return idxFile{}, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	dims, data, err := decodeIDX(r, limit)
	if err != nil {
		return idxFile{}, fmt.Errorf("%s: %w", path, err)
	}
	return idxFile{path, dims, data}, nil
}

// loadSplit reads one images file and its labels file and checks that they belong together.
func loadSplit(dir, imagesName, labelsName string, limit int) (dataset, error) {
	images, err := readIDX(dir, imagesName, limit)
	if err != nil {
		return dataset{}, err
	}
	if d := images.dims; len(d) != 3 || d[1] != imageSide || d[2] != imageSide {
		return dataset{}, fmt.Errorf("%s: dimensions %v, want [n %d %d]", images.path, d, imageSide, imageSide)
	}
	labels, err := readIDX(dir, labelsName, limit)
	if err != nil {
		return dataset{}, err
	}
	if len(labels.dims) != 1 {
		return dataset{}, fmt.Errorf("%s: dimensions %v, want [n]", labels.path, labels.dims)
	}
	if labels.dims[0] != images.dims[0] {
		return dataset{}, fmt.Errorf("%s holds %d labels but %s holds %d images",
			labels.path, labels.dims[0], images.path, images.dims[0])
	}
	for i, l := range labels.data {
		if l >= classes {
			return dataset{}, fmt.Errorf("%s: label %d at index %d, want 0 to %d", labels.path, l, i, classes-1)
		}
	}
	return dataset{n: images.dims[0], images: images.data, labels: labels.data}, nil
}

// loadMNIST reads both splits; trainLimit > 0 keeps only the first trainLimit training images.
func loadMNIST(dir string, trainLimit int) (train, test dataset, err error) {
	train, err = loadSplit(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", trainLimit)
	if err != nil {
		return dataset{}, dataset{}, err
	}
	test, err = loadSplit(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 0)
	if err != nil {
		return dataset{}, dataset{}, err
	}
	return train, test, nil
}
