package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameReaderReadsLinesStrictly(t *testing.T) {
	in := `{"tasks":[{"attempt_id":"att-1","rank":2}]}

{"tasks":[]}
`
	r := NewFrameReader(strings.NewReader(in))
	var hb Heartbeat
	if err := r.Read(&hb); err != nil {
		t.Fatal(err)
	}
	if len(hb.Tasks) != 1 || hb.Tasks[0] != (TaskRef{AttemptID: "att-1", Rank: 2}) {
		t.Errorf("first frame = %+v", hb)
	}
	if err := r.Read(&hb); err != nil || len(hb.Tasks) != 0 {
		t.Errorf("second frame = %+v, %v", hb, err)
	}
	if err := r.Read(&hb); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameReaderNamesTheBadFrame(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field":   `{"tasks":[]}` + "\n" + `{"taks":[]}`,
		"trailing data":   `{"tasks":[]}` + "\n" + `{"tasks":[]} {}`,
		"not json":        `{"tasks":[]}` + "\n" + `beat`,
		"wrong type":      `{"tasks":[]}` + "\n" + `{"tasks":7}`,
		"oversized frame": `{"tasks":[]}` + "\n" + `{"tasks":["` + strings.Repeat("x", MaxFrame) + `"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := NewFrameReader(strings.NewReader(in))
			var hb Heartbeat
			if err := r.Read(&hb); err != nil {
				t.Fatalf("first frame: %v", err)
			}
			err := r.Read(&hb)
			var fe *FrameError
			if !errors.As(err, &fe) || fe.N != 2 {
				t.Fatalf("err = %v, want a FrameError for frame 2", err)
			}
			if name == "oversized frame" && !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("err = %v, want ErrFrameTooLarge", err)
			}
		})
	}
}

// FuzzFrameReader: any bytes give frames or an error, never a panic or a
// hang.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte(`{"tasks":[{"attempt_id":"a","rank":0}]}` + "\n"))
	f.Add([]byte("{}\n\n{\"tasks\":null}"))
	f.Add([]byte(`{"tasks":[{"rank":1e400}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewFrameReader(strings.NewReader(string(in)))
		for range 100 {
			var hb Heartbeat
			if err := r.Read(&hb); err != nil {
				return
			}
		}
	})
}
