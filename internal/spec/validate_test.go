package spec

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
)

// designJob is the example spec of the design document, parsed.
func designJob(t *testing.T) *Job {
	t.Helper()
	data, err := os.ReadFile("testdata/good/design-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := Parse("design-example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(j *Job)
		want []string // the fields at fault
	}{
		{"valid", func(j *Job) {}, nil},
		{"zero job", func(j *Job) { *j = Job{} }, []string{"name", "project", "command", "resources.cpus", "resources.memory", "nodes"}},
		{"name", func(j *Job) { j.Name = "Resnet" }, []string{"name"}},
		{"project", func(j *Job) { j.Project = "" }, []string{"project"}},
		{"empty program", func(j *Job) { j.Command = []string{""} }, []string{"command[0]"}},
		{"NUL in an argument", func(j *Job) { j.Command = []string{"python", "a\x00b"} }, []string{"command[1]"}},
		{"gpus", func(j *Job) { j.Resources.GPUs = -1 }, []string{"resources.gpus"}},
		{"models without gpus", func(j *Job) { j.Resources.GPUs = 0 }, []string{"resources.gpu"}},
		{"model not normalized", func(j *Job) { j.Resources.GPUModels = []string{"RTX 3090"} }, []string{"resources.gpu[0]"}},
		{"cpus", func(j *Job) { j.Resources.MilliCPUs = 0 }, []string{"resources.cpus"}},
		{"memory", func(j *Job) { j.Resources.MemoryBytes = -1 }, []string{"resources.memory"}},
		{"nodes", func(j *Job) { j.Nodes = 2000 }, []string{"nodes"}},
		{"dataset", func(j *Job) { j.Datasets = append(j.Datasets, Dataset{Version: -1, Mount: "/data/coco/x"}) }, []string{
			"datasets[1].name", "datasets[1].version", "datasets[1].mount",
		}},
		{"checkpoint", func(j *Job) { j.Checkpoint = &Checkpoint{Path: "../c"} }, []string{"checkpoint.path", "checkpoint.every"}},
		{"outputs", func(j *Job) { j.Outputs = "/ckpt/out" }, []string{"outputs"}},
		{"classification", func(j *Job) { j.Classification = 9 }, []string{"classification"}},
		{"trust", func(j *Job) { j.Placement.MinTrust = -1 }, []string{"placement.min_trust"}},
		{"price", func(j *Job) { j.Placement.MaxPricePerHour = math.NaN() }, []string{"placement.max_price_per_hour"}},
		{"regions and pools", func(j *Job) { j.Placement.Regions, j.Placement.Pools = []string{"eu", " "}, []string{""} }, []string{
			"placement.regions[1]", "placement.pools[0]",
		}},
		{"deadline", func(j *Job) { j.Deadline = Duration(-time.Second) }, []string{"deadline"}},
		{"priority", func(j *Job) { j.Priority = 1001 }, []string{"priority"}},
		{"retries", func(j *Job) { j.Retries = core.RetryBudget{OnNodeLost: -1, OnError: -1} }, []string{"retries.on_node_lost", "retries.on_error"}},
		{"env", func(j *Job) { j.Env = map[string]string{"LODE_JOB_ID": "x", "B-C": "", "OK": "a\x00"} }, []string{"env.B-C", "env.LODE_JOB_ID", "env.OK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := designJob(t)
			tt.edit(j)
			before, _ := json.Marshal(j)
			err := Validate(j)
			if after, _ := json.Marshal(j); string(before) != string(after) {
				t.Errorf("Validate changed the job:\n%s\n%s", before, after)
			}
			var got []string
			for _, e := range unjoin(err) {
				var se *Error
				if !errors.As(e, &se) {
					t.Fatalf("Validate error %q is not an *Error", e)
				}
				if se.File != "" || se.Line != 0 {
					t.Errorf("Validate error %q has a position", e)
				}
				got = append(got, se.Field)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate fields mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
	if err := Validate(nil); err == nil {
		t.Errorf("Validate(nil) = nil, want an error")
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestValidateJSON is the server's path: a Job decoded from JSON.
func TestValidateJSON(t *testing.T) {
	b, err := json.Marshal(designJob(t))
	if err != nil {
		t.Fatal(err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if err := Validate(&j); err != nil {
		t.Errorf("Validate(a parsed job sent as JSON) = %v", err)
	}
	const bad = `{"name": "x", "project": "p", "command": ["a"], "resources": {"milli_cpus": 1000, "memory_bytes": 1048576},
		"nodes": 0, "classification": 1, "placement": {"min_trust": 0}, "priority": 50, "env": {"LODE_X": "1"}}`
	if err := json.Unmarshal([]byte(bad), &j); err != nil {
		t.Fatal(err)
	}
	want := "nodes: must be from 1 to 1024, not 0\nenv.LODE_X: LODE_X is reserved (Lode sets the variables starting with LODE_)"
	if err := Validate(&j); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want\n%s", err, want)
	}
}
