package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, that whatever it accepts
// passes Validate, and that an accepted job survives the trip to the server
// as JSON.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es *Errors
			if !errors.As(err, &es) || len(*es) == 0 {
				t.Fatalf("Parse error %T %v, want a non-empty *Errors", err, err)
			}
			if j != nil {
				t.Fatalf("Parse returned a job with its errors")
			}
			for _, e := range *es {
				if e.Line < 1 && !strings.HasPrefix(e.Msg, "bad YAML") && !strings.HasPrefix(e.Msg, "cannot read YAML") && !strings.HasPrefix(e.Msg, "too many problems") {
					t.Errorf("error without a line: %v", e)
				}
			}
			return
		}
		if err := Validate(j); err != nil {
			t.Fatalf("Parse accepted a job that Validate rejects: %v", err)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var back Job
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", b, err)
		}
		if diff := cmp.Diff(j, &back); diff != "" {
			t.Fatalf("the job changed through JSON (-parsed +decoded):\n%s", diff)
		}
	})
}
