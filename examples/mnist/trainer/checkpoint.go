package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Both files the trainer writes, checkpoints and the final model, share one frame:
//
//	magic    8 bytes  "MNISTCKP" or "MNISTMDL"
//	version  uint32   formatVersion
//	length   uint64   bytes of payload
//	payload
//	crc      uint32   CRC-32C of everything before it
//
// Integers are little-endian, floats their IEEE 754 bits. The CRC catches what a crash or a bad
// disk leaves behind; the length catches truncation before the CRC is even read.
const (
	checkpointMagic = "MNISTCKP"
	modelMagic      = "MNISTMDL"
	formatVersion   = 1
	frameHeader     = 8 + 4 + 8
	frameTrailer    = 4
	// maxHidden bounds what a file may declare, so a damaged one cannot ask for gigabytes.
	maxHidden = 1 << 14
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// state is everything a run needs to continue exactly where it stopped. The hyperparameters that
// shape the trajectory travel with it; how long to train (--epochs, --max-steps) does not, so a
// resumed run may be told to go further.
type state struct {
	seed     uint64
	hidden   int
	batch    int
	trainN   int // training examples in use: the shuffle depends on it
	lr       float64
	momentum float64

	step  int // minibatch updates done
	epoch int // the epoch in progress, from 0
	pos   int // examples of this epoch's order already consumed

	params   *params
	velocity *params
}

func frame(magic string, payload []byte) []byte {
	b := make([]byte, 0, frameHeader+len(payload)+frameTrailer)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, formatVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(payload)))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func unframe(magic string, b []byte) ([]byte, error) {
	if len(b) < frameHeader+frameTrailer {
		return nil, fmt.Errorf("truncated: %d bytes", len(b))
	}
	if string(b[:8]) != magic {
		return nil, fmt.Errorf("bad magic %q, want %q", b[:8], magic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return nil, fmt.Errorf("format version %d, want %d", v, formatVersion)
	}
	n := binary.LittleEndian.Uint64(b[12:])
	if have := uint64(len(b) - frameHeader - frameTrailer); n != have {
		return nil, fmt.Errorf("truncated or padded: header says %d bytes of payload, file has %d", n, have)
	}
	body, sum := b[:len(b)-frameTrailer], binary.LittleEndian.Uint32(b[len(b)-frameTrailer:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errors.New("checksum mismatch")
	}
	return body[frameHeader:], nil
}

func appendFloats(b []byte, p *params) []byte {
	for _, t := range p.tensors() {
		for _, f := range t {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		}
	}
	return b
}

// decoder reads a payload whose length was checked up front, so running short means a bug in the
// length check; it still fails softly.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.err = io.ErrUnexpectedEOF
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

// int reads a uint64 that must fit in [lo, hi].
func (d *decoder) int(name string, lo, hi int) int {
	v := d.u64()
	if d.err == nil && (v < uint64(lo) || v > uint64(hi)) {
		d.err = fmt.Errorf("%s %d out of range [%d, %d]", name, v, lo, hi)
	}
	return int(v)
}

func (d *decoder) params(p *params) {
	for _, t := range p.tensors() {
		for i := range t {
			t[i] = d.f64()
		}
	}
}

const (
	checkpointFixed = 9 * 8 // the scalar fields of a checkpoint payload
	modelFixed      = 3 * 8
)

func encodeCheckpoint(st *state) []byte {
	b := make([]byte, 0, checkpointFixed+2*8*st.params.count())
	for _, v := range []uint64{
		st.seed, uint64(st.hidden), uint64(st.batch), uint64(st.trainN),
		math.Float64bits(st.lr), math.Float64bits(st.momentum),
		uint64(st.step), uint64(st.epoch), uint64(st.pos),
	} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = appendFloats(b, st.params)
	b = appendFloats(b, st.velocity)
	return frame(checkpointMagic, b)
}

func decodeCheckpoint(b []byte) (*state, error) {
	payload, err := unframe(checkpointMagic, b)
	if err != nil {
		return nil, err
	}
	if len(payload) < checkpointFixed {
		return nil, fmt.Errorf("payload of %d bytes is too short", len(payload))
	}
	d := &decoder{b: payload}
	st := &state{seed: d.u64()}
	st.hidden = d.int("hidden", 1, maxHidden)
	st.batch = d.int("batch", 1, math.MaxInt32)
	st.trainN = d.int("training examples", 1, math.MaxInt32)
	st.lr, st.momentum = d.f64(), d.f64()
	st.step = d.int("step", 0, math.MaxInt64)
	st.epoch = d.int("epoch", 0, math.MaxInt32)
	st.pos = d.int("position", 0, math.MaxInt32)
	if d.err != nil {
		return nil, d.err
	}
	if st.pos >= st.trainN {
		return nil, fmt.Errorf("position %d past the %d training examples", st.pos, st.trainN)
	}
	if !(st.lr > 0) || math.IsInf(st.lr, 0) || !(st.momentum >= 0 && st.momentum < 1) {
		return nil, fmt.Errorf("learning rate %v or momentum %v out of range", st.lr, st.momentum)
	}
	st.params, st.velocity = newParams(st.hidden), newParams(st.hidden)
	if want := checkpointFixed + 2*8*st.params.count(); len(payload) != want {
		return nil, fmt.Errorf("payload of %d bytes, want %d for %d hidden units", len(payload), want, st.hidden)
	}
	d.params(st.params)
	d.params(st.velocity)
	return st, d.err
}

func encodeModel(p *params) []byte {
	b := make([]byte, 0, modelFixed+8*p.count())
	b = binary.LittleEndian.AppendUint64(b, inputs)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.hidden))
	b = binary.LittleEndian.AppendUint64(b, classes)
	return frame(modelMagic, appendFloats(b, p))
}

func decodeModel(b []byte) (*params, error) {
	payload, err := unframe(modelMagic, b)
	if err != nil {
		return nil, err
	}
	if len(payload) < modelFixed {
		return nil, fmt.Errorf("payload of %d bytes is too short", len(payload))
	}
	d := &decoder{b: payload}
	d.int("inputs", inputs, inputs)
	hidden := d.int("hidden", 1, maxHidden)
	d.int("classes", classes, classes)
	if d.err != nil {
		return nil, d.err
	}
	p := newParams(hidden)
	if want := modelFixed + 8*p.count(); len(payload) != want {
		return nil, fmt.Errorf("payload of %d bytes, want %d for %d hidden units", len(payload), want, hidden)
	}
	d.params(p)
	return p, d.err
}

// writeFileAtomic writes path so that a reader, Lode's checkpoint uploader included, sees either
// the old file or the whole new one, even across a crash: temp file in the same directory, fsync,
// rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(0o644), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every filesystem can sync a directory
		d.Close()
	}
	return nil
}

func checkpointName(step int) string { return fmt.Sprintf("ckpt-%06d.bin", step) }

type checkpointFile struct {
	step int
	name string
}

// listCheckpoints returns dir's checkpoint files, oldest first; a missing dir has none.
func listCheckpoints(dir string) ([]checkpointFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var files []checkpointFile
	for _, e := range entries {
		digits, ok := strings.CutPrefix(e.Name(), "ckpt-")
		digits, ok2 := strings.CutSuffix(digits, ".bin")
		if !ok || !ok2 || !e.Type().IsRegular() {
			continue
		}
		if step, err := strconv.Atoi(digits); err == nil && step >= 0 {
			files = append(files, checkpointFile{step, e.Name()})
		}
	}
	slices.SortFunc(files, func(a, b checkpointFile) int { return a.step - b.step })
	return files, nil
}

// keepCheckpoints is how many checkpoint files survive a save: the newest may be the one a crash
// tore, and then the one before it is what a resume needs.
const keepCheckpoints = 2

// saveCheckpoint writes st to dir and prunes older checkpoints, returning the new file's path.
func saveCheckpoint(dir string, st *state) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, checkpointName(st.step))
	if err := writeFileAtomic(path, encodeCheckpoint(st)); err != nil {
		return "", fmt.Errorf("writing checkpoint: %w", err)
	}
	files, err := listCheckpoints(dir)
	if err != nil {
		return path, nil // the checkpoint is safe; pruning can wait for the next one
	}
	// Files with a later step than this one can only be ones the resume skipped as unreadable:
	// left alone they would pass for the newest forever.
	var older []checkpointFile
	for _, f := range files {
		if f.step > st.step {
			os.Remove(filepath.Join(dir, f.name))
		} else {
			older = append(older, f)
		}
	}
	for _, f := range older[:max(0, len(older)-keepCheckpoints)] {
		os.Remove(filepath.Join(dir, f.name))
	}
	// Temp files of writes a crash cut short; a job has one writer, so none is in progress.
	if stale, err := filepath.Glob(filepath.Join(dir, ".ckpt-*.tmp*")); err == nil {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	return path, nil
}

// loadCheckpoint returns the newest checkpoint in dir that reads back whole, or nil if there is
// none. Each one it has to skip is reported on warn.
func loadCheckpoint(dir string, warn io.Writer) (*state, error) {
	files, err := listCheckpoints(dir)
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	for _, f := range slices.Backward(files) {
		path := filepath.Join(dir, f.name)
		b, err := os.ReadFile(path)
		if err == nil {
			var st *state
			if st, err = decodeCheckpoint(b); err == nil {
				return st, nil
			}
		}
		fmt.Fprintf(warn, "mnist: warning: skipping checkpoint %s: %v\n", path, err)
	}
	return nil, nil
}
