package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testState(step int) *state {
	p := tinyParams(6, uint64(step)+1)
	v := tinyParams(6, uint64(step)+2)
	return &state{
		seed: 42, hidden: 6, batch: 16, trainN: 500, lr: 0.05, momentum: 0.9,
		step: step, epoch: step / 32, pos: step % 32 * 16,
		params: p, velocity: v,
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	want := testState(77)
	got, err := decodeCheckpoint(encodeCheckpoint(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded checkpoint differs:\n got %+v\nwant %+v", got, want)
	}
}

func TestModelRoundTrip(t *testing.T) {
	want := tinyParams(9, 1)
	got, err := decodeModel(encodeModel(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("decoded model differs")
	}
	if _, err := decodeCheckpoint(encodeModel(want)); err == nil || !strings.Contains(err.Error(), "bad magic") {
		t.Errorf("a model read as a checkpoint: err = %v, want bad magic", err)
	}
}

func TestDecodeCheckpointDamage(t *testing.T) {
	good := encodeCheckpoint(testState(5))
	flip := func(i int) []byte { b := slices.Clone(good); b[i] ^= 0x10; return b }
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "truncated: 0 bytes"},
		{"cut in the header", good[:10], "truncated: 10 bytes"},
		{"cut in the payload", good[:len(good)/2], "truncated or padded"},
		{"missing the checksum", good[:len(good)-4], "truncated or padded"},
		{"padded", append(slices.Clone(good), 0), "truncated or padded"},
		{"wrong magic", flip(0), "bad magic"},
		{"future version", flip(8), "format version 17, want 1"},
		{"flipped weight", flip(len(good) / 2), "checksum mismatch"},
		{"flipped checksum", flip(len(good) - 1), "checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCheckpoint(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	files, err := listCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
	}
	return names
}

func TestSaveCheckpointKeepsTwo(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".ckpt-000100.bin.tmp123"), []byte("left by a crash"), 0o644)
	for _, step := range []int{200, 400, 600, 800} {
		path, err := saveCheckpoint(dir, testState(step))
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, checkpointName(step)); path != want {
			t.Errorf("path = %s, want %s", path, want)
		}
	}
	if got, want := checkpointNames(t, dir), []string{"ckpt-000600.bin", "ckpt-000800.bin"}; !slices.Equal(got, want) {
		t.Errorf("after four saves: %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d entries in the checkpoint directory, want 2 (no temp files left)", len(entries))
	}
	if _, err := saveCheckpoint(filepath.Join(dir, "new"), testState(1)); err != nil {
		t.Errorf("saving into a directory that does not exist yet: %v", err)
	}

	// Resuming from 600 (because 800 was unreadable) and saving 700 must not leave 800 around to
	// pass for the newest.
	if _, err := saveCheckpoint(dir, testState(700)); err != nil {
		t.Fatal(err)
	}
	if got, want := checkpointNames(t, dir), []string{"ckpt-000600.bin", "ckpt-000700.bin"}; !slices.Equal(got, want) {
		t.Errorf("after saving 700: %v, want %v", got, want)
	}
}

func TestLoadCheckpointFallsBack(t *testing.T) {
	dir := t.TempDir()
	for _, step := range []int{10, 20} {
		if _, err := saveCheckpoint(dir, testState(step)); err != nil {
			t.Fatal(err)
		}
	}
	newest := filepath.Join(dir, checkpointName(20))
	whole, _ := os.ReadFile(newest)

	tests := []struct {
		name     string
		damage   func()
		wantStep int // -1: none
		wantWarn string
	}{
		{"intact", func() {}, 20, ""},
		{"truncated", func() { os.WriteFile(newest, whole[:len(whole)-100], 0o644) }, 10, "truncated or padded"},
		{"bit flip", func() {
			b := slices.Clone(whole)
			b[len(b)/3] ^= 1
			os.WriteFile(newest, b, 0o644)
		}, 10, "checksum mismatch"},
		{"empty", func() { os.WriteFile(newest, nil, 0o644) }, 10, "truncated: 0 bytes"},
		{"both bad", func() {
			os.WriteFile(newest, nil, 0o644)
			os.WriteFile(filepath.Join(dir, checkpointName(10)), []byte("garbage"), 0o644)
		}, -1, "garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(newest, whole, 0o644)
			os.WriteFile(filepath.Join(dir, checkpointName(10)), encodeCheckpoint(testState(10)), 0o644)
			tt.damage()
			var warn bytes.Buffer
			st, err := loadCheckpoint(dir, &warn)
			if err != nil {
				t.Fatal(err)
			}
			gotStep := -1
			if st != nil {
				gotStep = st.step
			}
			if gotStep != tt.wantStep {
				t.Errorf("loaded step %d, want %d", gotStep, tt.wantStep)
			}
			if tt.wantWarn == "" {
				if warn.Len() != 0 {
					t.Errorf("unexpected warning %q", warn.String())
				}
				return
			}
			want := "mnist: warning: skipping checkpoint " + newest + ": "
			if !strings.HasPrefix(warn.String(), want) {
				t.Errorf("warning %q, want it to start %q", warn.String(), want)
			}
			if tt.wantWarn != "garbage" && !strings.Contains(warn.String(), tt.wantWarn) {
				t.Errorf("warning %q, want it to mention %q", warn.String(), tt.wantWarn)
			}
		})
	}
}

func TestLoadCheckpointNone(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a checkpoint"), 0o644)
	os.WriteFile(filepath.Join(dir, ".ckpt-000100.bin.tmp123"), []byte("half"), 0o644)
	for _, d := range []string{dir, filepath.Join(dir, "missing")} {
		var warn bytes.Buffer
		st, err := loadCheckpoint(d, &warn)
		if st != nil || err != nil || warn.Len() != 0 {
			t.Errorf("loadCheckpoint(%s) = %v, %v, warning %q; want nothing", d, st, err, warn.String())
		}
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	good := encodeCheckpoint(testState(3))
	f.Add(good)
	f.Add(good[:40])
	f.Add(encodeModel(tinyParams(2, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if again := encodeCheckpoint(st); !bytes.Equal(again, b) {
			t.Fatalf("decode then encode changed %d bytes into %d", len(b), len(again))
		}
	})
}
