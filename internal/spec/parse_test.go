package spec

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
)

var update = flag.Bool("update", false, "rewrite schema.json and the golden files under testdata")

// TestParseTestdata parses every spec under testdata: good/NAME.yaml must
// parse into the job in good/NAME.json, bad/NAME.yaml must fail with the
// text in bad/NAME.err.
func TestParseTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no specs under testdata: %v", err)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			j, err := Parse(file, data)
			var got, golden string
			switch filepath.Base(filepath.Dir(file)) {
			case "good":
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				b, err := json.MarshalIndent(j, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got, golden = string(b)+"\n", strings.TrimSuffix(file, ".yaml")+".json"
			case "bad":
				if err == nil {
					t.Fatalf("Parse succeeded, want errors")
				}
				got, golden = err.Error()+"\n", strings.TrimSuffix(file, ".yaml")+".err"
			default:
				t.Fatalf("specs go under testdata/good or testdata/bad")
			}
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Parse(%s) mismatch (-%s +got):\n%s", file, golden, diff)
			}
		})
	}
}

// job returns the Job a minimal spec (name: t, run: x) parses into, changed
// by edit.
func job(edit func(j *Job)) *Job {
	j := &Job{
		Name:           "t",
		Project:        "default",
		Command:        []string{"/bin/sh", "-c", "x"},
		Resources:      core.Resources{MilliCPUs: 1000, MemoryBytes: 1 << 30},
		Nodes:          1,
		Classification: core.ClassInternal,
		Placement:      Placement{MinTrust: core.TierCommunity},
		Priority:       core.PriorityNormal,
		Objective:      ObjectiveCost,
		Retries:        core.RetryBudget{OnNodeLost: 5, OnError: 0},
	}
	if edit != nil {
		edit(j)
	}
	return j
}

const minimal = "name: t\nrun: x\n"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want *Job
	}{
		{"defaults", minimal, job(nil)},
		{"command", "name: t\ncommand: [python, train.py, --lr, '0.1']\n", job(func(j *Job) {
			j.Command = []string{"python", "train.py", "--lr", "0.1"}
		})},
		{"run keeps the line as written", "name: t\nrun: |\n  cd src\n  python train.py \"$@\"\n", job(func(j *Job) {
			j.Command = []string{"/bin/sh", "-c", "cd src\npython train.py \"$@\"\n"}
		})},
		{"fractional cpus", minimal + "resources: {cpus: 0.5}\n", job(func(j *Job) { j.Resources.MilliCPUs = 500 })},
		{"milli cpus", minimal + "resources: {cpus: 250m}\n", job(func(j *Job) { j.Resources.MilliCPUs = 250 })},
		{"cpus as a string", minimal + "resources: {cpus: \"2\"}\n", job(func(j *Job) { j.Resources.MilliCPUs = 2000 })},
		{"cpus rounded to 1m", minimal + "resources: {cpus: 1.0004}\n", job(func(j *Job) { j.Resources.MilliCPUs = 1000 })},
		{"memory in binary units", minimal + "resources: {memory: 512MiB}\n", job(func(j *Job) { j.Resources.MemoryBytes = 512 << 20 })},
		{"memory in decimal units", minimal + "resources: {memory: 2GB}\n", job(func(j *Job) { j.Resources.MemoryBytes = 2e9 })},
		{"memory in bytes", minimal + "resources: {memory: 2147483648}\n", job(func(j *Job) { j.Resources.MemoryBytes = 2 << 30 })},
		{"one gpu model, loosely written", minimal + "resources: {gpus: 2, gpu: NVIDIA GeForce RTX 4090}\n", job(func(j *Job) {
			j.Resources.GPUs, j.Resources.GPUModels = 2, []string{"rtx4090"}
		})},
		{"gpu models normalized once each", minimal + "resources: {gpus: 1, gpu: [RTX-3090, rtx3090, Tesla A100]}\n", job(func(j *Job) {
			j.Resources.GPUs, j.Resources.GPUModels = 1, []string{"rtx3090", "a100"}
		})},
		{"empty lists are left out", minimal + "resources: {gpus: 1, gpu: []}\ndatasets: []\nplacement: {regions: [], pools: []}\nenv: {}\n", job(func(j *Job) {
			j.Resources.GPUs = 1
		})},
		{"checkpoint every defaults", minimal + "checkpoint: {path: /ckpt}\n", job(func(j *Job) {
			j.Checkpoint = &Checkpoint{Path: "/ckpt", Every: Duration(5 * time.Minute)}
		})},
		{"retries keep the default they do not name", minimal + "retries: {on_error: 3}\n", job(func(j *Job) {
			j.Retries = core.RetryBudget{OnNodeLost: 5, OnError: 3}
		})},
		{"priority as a number", minimal + "priority: 70\n", job(func(j *Job) { j.Priority = 70 })},
		{"priority as a word", minimal + "priority: high\n", job(func(j *Job) { j.Priority = core.PriorityHigh })},
		{"enums", minimal + "classification: public\nplacement: {min_trust: certified}\n", job(func(j *Job) {
			j.Classification, j.Placement.MinTrust = core.ClassPublic, core.TierCertified
		})},
		{"env scalars as written", minimal + "env: {A: 1, B: 0.50, C: true, D: \"\", E: 1e-4, F: hello world}\n", job(func(j *Job) {
			j.Env = map[string]string{"A": "1", "B": "0.50", "C": "true", "D": "", "E": "1e-4", "F": "hello world"}
		})},
		{"paths", minimal + "workdir: ../src\ndatasets:\n  - {name: a, mount: data/a, from: ../a}\n  - {name: b, version: 2, mount: /data/b}\noutputs: ./out\n", job(func(j *Job) {
			j.Workdir, j.Outputs = "../src", "./out"
			j.Datasets = []Dataset{{Name: "a", Mount: "data/a", From: "../a"}, {Name: "b", Version: 2, Mount: "/data/b"}}
		})},
		{"max price", minimal + "placement: {max_price_per_hour: 3}\n", job(func(j *Job) { j.Placement.MaxPricePerHour = 3 })},
		{"deadline", minimal + "deadline: 1h30m\n", job(func(j *Job) { j.Deadline = Duration(90 * time.Minute) })},
		{"aliases", "name: t\nrun: &cmd x\nenv: {CMD: *cmd}\n", job(func(j *Job) { j.Env = map[string]string{"CMD": "x"} })},
		{"document markers", "---\n" + minimal + "...\n", job(nil)},
		{"byte order mark", "\ufeff" + minimal, job(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.yaml", []byte(tt.spec))
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{"empty", "", []string{"t.yaml:1:1: the spec is empty (a spec needs at least name: and run:)"}},
		{"blank", "\n\n   \n", []string{"t.yaml:1:1: the spec is empty (a spec needs at least name: and run:)"}},
		{"scalar document", "hello\n", []string{
			"t.yaml:1:1: the spec must be a mapping of keys to values, not a string (for example name: train-1, then run: python train.py on the next line)",
		}},
		{"two documents", minimal + "---\n" + minimal, []string{
			"t.yaml:4:1: a spec holds one YAML document, this is another (remove the --- line, or put each job in a file of its own)",
		}},
		{"unclosed list", "name: t\nrun: x\nplacement:\n  regions: [eu, us\n", []string{
			"t.yaml:4: bad YAML: did not find expected ',' or ']' (a [ list that starts on or before this line is not closed, or misses a comma)",
		}},
		{"not UTF-8", "name: t\nrun: x\nenv: {A: \"\xff\"}\n", []string{
			"t.yaml:3:11: the spec is not valid UTF-8 (save the file as UTF-8)",
		}},
		{"control character", "name: t\nrun: x\x01\n", []string{
			"t.yaml:2:7: control character U+0001 is not allowed",
		}},
		{"missing name", "run: x\n", []string{"t.yaml:1:1: name: is required"}},
		{"neither run nor command", "name: t\n", []string{
			`t.yaml:1:1: command: is required (write run: "python train.py" or command: [python, train.py])`,
		}},
		{"run and command", "name: t\ncommand: [x]\nrun: x\n", []string{
			"t.yaml:3:6: run: cannot be given with command (run: takes a shell command line, command: a list of arguments; keep one)",
		}},
		{"empty command", "name: t\ncommand: []\n", []string{
			"t.yaml:2:10: command: must not be empty (the program to run, then its arguments)",
		}},
		{"empty program", "name: t\ncommand: ['', x]\n", []string{
			"t.yaml:2:11: command[0]: must not be empty (it names the program to run)",
		}},
		{"run of the wrong type", "name: t\nrun: [x]\n", []string{"t.yaml:2:6: run: must be a string, not a list"}},
		{"name too long", "name: " + strings.Repeat("a", 64) + "\nrun: x\n", []string{
			`t.yaml:1:7: name: "` + strings.Repeat("a", 64) + `" is not a valid name (use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, such as "` + strings.Repeat("a", 63) + `")`,
		}},
		{"null value", minimal + "image:\n", []string{"t.yaml:3:7: image: has no value (give it one, or remove the key)"}},
		{"key that is not a word", minimal + "[a]: 1\n", []string{"t.yaml:3:1: a key must be a word, not a list"}},
		{"duplicate key", minimal + "nodes: 1\nnodes: 2\n", []string{"t.yaml:4:1: nodes: is given twice (first at line 3)"}},
		{"key at the wrong level", minimal + "memory: 2GiB\n", []string{
			"t.yaml:3:1: memory: unknown key (did you mean resources.memory? it goes under resources)",
		}},
		{"typo", minimal + "resources: {cpu: 2}\n", []string{"t.yaml:3:13: resources.cpu: unknown key (did you mean cpus?)"}},
		{"typo of a required key", "nme: t\nrun: x\n", []string{"t.yaml:1:1: nme: unknown key (did you mean name?)"}},
		{"nodes", minimal + "nodes: 0\n", []string{"t.yaml:3:8: nodes: must be from 1 to 1024, not 0"}},
		{"nodes over the top", minimal + "nodes: 1025\n", []string{"t.yaml:3:8: nodes: must be from 1 to 1024, not 1025"}},
		{"nodes as a fraction", minimal + "nodes: 1.5\n", []string{"t.yaml:3:8: nodes: must be a whole number, not 1.5"}},
		{"nodes out of range", minimal + "nodes: 99999999999999999999\n", []string{"t.yaml:3:8: nodes: must be a whole number, not 99999999999999999999"}},
		{"gpus", minimal + "resources: {gpus: -1}\n", []string{"t.yaml:3:19: resources.gpus: must be from 0 to 1024, not -1"}},
		{"gpu models without gpus", minimal + "resources: {gpu: a100}\n", []string{
			"t.yaml:3:18: resources.gpu: names GPU models but resources.gpus is 0 (set resources.gpus to 1 or more, or remove gpu)",
		}},
		{"gpu models in one string", minimal + "resources: {gpus: 1, gpu: 'a100, h100'}\n", []string{
			`t.yaml:3:27: resources.gpu[0]: "a100,h100" is not a GPU model (write models like rtx4090 or a100; list several as [rtx3090, a100])`,
		}},
		{"gpu model that normalizes to nothing", minimal + "resources: {gpus: 1, gpu: [a100, NVIDIA]}\n", []string{
			`t.yaml:3:34: resources.gpu[1]: "" is not a GPU model (write models like rtx4090 or a100; list several as [rtx3090, a100])`,
		}},
		{"cpus zero", minimal + "resources: {cpus: 0}\n", []string{
			"t.yaml:3:19: resources.cpus: must be more than 0, not 0 (the smallest request is 0.001 (1m))",
		}},
		{"cpus negative", minimal + "resources: {cpus: -500m}\n", []string{
			"t.yaml:3:19: resources.cpus: must be more than 0, not -500m (the smallest request is 0.001 (1m))",
		}},
		{"cpus too small", minimal + "resources: {cpus: 0.0001}\n", []string{
			"t.yaml:3:19: resources.cpus: must be more than 0, not 0 (the smallest request is 0.001 (1m))",
		}},
		{"cpus not a number", minimal + "resources: {cpus: .nan}\n", []string{
			`t.yaml:3:19: resources.cpus: ".nan" is not a CPU count (write it like 2, 0.5 or 500m)`,
		}},
		{"cpus unit", minimal + "resources: {cpus: 2 cores}\n", []string{
			`t.yaml:3:19: resources.cpus: "2 cores" is not a CPU count (write it like 2, 0.5 or 500m)`,
		}},
		{"memory", minimal + "resources: {memory: 32GiBs}\n", []string{
			`t.yaml:3:21: resources.memory: "32GiBs" is not a size (write it like 512MiB, 32GiB or 2GB)`,
		}},
		{"memory without unit", minimal + "resources: {memory: 32}\n", []string{
			"t.yaml:3:21: resources.memory: must be at least 1MiB, not 32 bytes (a size without a unit is in bytes; write it like 512MiB or 32GiB)",
		}},
		{"duration", minimal + "deadline: 2d\n", []string{
			`t.yaml:3:11: deadline: "2d" is not a duration (write it like 90s, 10m or 6h; the largest unit is h)`,
		}},
		{"duration without unit", minimal + "checkpoint: {path: /c, every: 600}\n", []string{
			"t.yaml:3:31: checkpoint.every: must be a duration with a unit, not a bare number (for example 600s or 600m)",
		}},
		{"checkpoint too often", minimal + "checkpoint: {path: /c, every: 100ms}\n", []string{
			"t.yaml:3:31: checkpoint.every: must be at least 1s, not 100ms (for example 10m)",
		}},
		{"checkpoint without path", minimal + "checkpoint: {every: 1m}\n", []string{
			"t.yaml:3:13: checkpoint.path: is required (the directory the job writes checkpoints to, for example /ckpt)",
		}},
		{"negative deadline", minimal + "deadline: -1h\n", []string{
			"t.yaml:3:11: deadline: must not be negative, not -1h0m0s (for example 6h)",
		}},
		{"retries", minimal + "retries: {on_node_lost: -1}\n", []string{
			"t.yaml:3:25: retries.on_node_lost: must not be negative, not -1 (0 stops the job when a node is lost)",
		}},
		{"price", minimal + "placement: {max_price_per_hour: -0.5}\n", []string{
			"t.yaml:3:33: placement.max_price_per_hour: must be 0 (no cap) or more, not -0.5",
		}},
		{"price infinite", minimal + "placement: {max_price_per_hour: .inf}\n", []string{
			`t.yaml:3:33: placement.max_price_per_hour: ".inf" is not a finite number`,
		}},
		{"enum", minimal + "placement: {min_trust: verifed}\n", []string{
			`t.yaml:3:24: placement.min_trust: unknown trust tier "verifed" (did you mean verified? one of community, verified, certified, private)`,
		}},
		{"priority", minimal + "priority: 2000\n", []string{"t.yaml:3:11: priority: must be from 0 to 1000, not 2000 (or low, normal, high)"}},
		{"priority word", minimal + "priority: hihg\n", []string{
			`t.yaml:3:11: priority: unknown priority "hihg" (did you mean high? low, normal, high or a number from 0 to 1000)`,
		}},
		{"dataset mounts collide", minimal + "datasets:\n  - {name: a, mount: /data}\n  - {name: b, mount: data/}\n", []string{
			`t.yaml:5:22: datasets[1].mount: "data/" collides with datasets[0].mount ("/data") (give every dataset, the checkpoint directory and the outputs a directory of their own)`,
		}},
		{"dataset inside the outputs", minimal + "datasets: [{name: a, mount: /out/a}]\noutputs: /out\n", []string{
			`t.yaml:4:10: outputs: "/out" collides with datasets[0].mount ("/out/a") (give every dataset, the checkpoint directory and the outputs a directory of their own)`,
		}},
		{"dataset without mount", minimal + "datasets: [{name: a}]\n", []string{
			"t.yaml:3:12: datasets[0].mount: is required (where the dataset appears, for example /data/a)",
		}},
		{"dot-dot", minimal + "outputs: out/../../x\n", []string{
			`t.yaml:3:10: outputs: "out/../../x" must not contain .. (the path is inside the task's directory; write it without ..)`,
		}},
		{"root", minimal + "checkpoint: {path: ./}\n", []string{
			`t.yaml:3:20: checkpoint.path: "./" is the task's root directory (name a directory of its own, for example /data)`,
		}},
		{"env names", minimal + "env: {LODE_X: 1, 2X: 1, A-B: 1, lode_x: 1}\n", []string{
			"t.yaml:3:7: env.LODE_X: LODE_X is reserved (Lode sets the variables starting with LODE_)",
			`t.yaml:3:18: env.2X: "2X" is not a valid environment variable name (use letters, digits and _, not starting with a digit)`,
			`t.yaml:3:25: env.A-B: "A-B" is not a valid environment variable name (use letters, digits and _, not starting with a digit)`,
		}},
		{"env value", minimal + "env: {A: [1]}\n", []string{"t.yaml:3:10: env.A: must be a string, number or boolean, not a list"}},
		{"merge key", minimal + "resources: {<<: {cpus: 2}}\n", []string{"t.yaml:3:13: resources: merge keys (<<) are not supported (write the keys out)"}},
		{"date as name", "name: 2024-01-02\nrun: x\n", []string{`t.yaml:1:7: name: must be a string, not a date (quote it: "2024-01-02")`}},
		{"image with spaces", minimal + "image: my image\n", []string{
			`t.yaml:3:8: image: "my image" is not an image reference (write it like registry.example.com/team/train:1.4)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Parse("t.yaml", []byte(tt.spec))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want errors", j)
			}
			if j != nil {
				t.Errorf("Parse returned a job with its errors")
			}
			var es *Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse error is %T, want *Errors", err)
			}
			var got []string
			for _, e := range *es {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseThreeMistakes checks that a spec with three mistakes gets three
// errors, each on its line.
func TestParseThreeMistakes(t *testing.T) {
	spec := `name: train-1
run: python train.py
resources:
  gpus: 2
  memory: 32 gigs
nodes: 0
datasets:
  - name: coco
    mount: /data
    verison: 3
`
	_, err := Parse("job.yaml", []byte(spec))
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse error = %v, want *Errors", err)
	}
	type place struct {
		Line  int
		Field string
	}
	var got []place
	for _, e := range *es {
		got = append(got, place{e.Line, e.Field})
	}
	want := []place{{5, "resources.memory"}, {6, "nodes"}, {10, "datasets[0].verison"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s\nall errors:\n%v", diff, err)
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse("job.yaml", []byte("name: Bad\nrun: x\nnodes: 0\n"))
	var es *Errors
	if !errors.As(err, &es) || len(*es) != 2 {
		t.Fatalf("errors.As(%v, *Errors) found %v, want 2 errors", err, es)
	}
	var e *Error
	if !errors.As(err, &e) || e.Field != "name" || e.File != "job.yaml" || e.Line != 1 || e.Column != 7 {
		t.Errorf("errors.As(*Error) = %+v, want the first problem, at job.yaml:1:7", e)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 5, Field: "nodes", Msg: "bad", Hint: "fix it"}, "a.yaml:3:5: nodes: bad (fix it)"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad YAML"}, "a.yaml:3: bad YAML"},
		{Error{File: "a.yaml", Msg: "empty"}, "a.yaml: empty"},
		{Error{Line: 2, Column: 1, Msg: "m"}, "2:1: m"},
		{Error{Field: "resources.gpus", Msg: "must be from 0 to 1024"}, "resources.gpus: must be from 0 to 1024"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"name", "image", "resources", "checkpoint", "max_price_per_hour", "memory"}
	tests := map[string]string{
		"nmae": "name", "Name": "name", "imgae": "image", "resorces": "resources", "checkpiont": "checkpoint",
		"max_price": "max_price_per_hour", "mem": "memory", "x": "", "frobnicate": "", "img": "",
	}
	for word, want := range tests {
		if got := suggest(word, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

// TestParseLimits checks that a small spec whose aliases expand to a huge
// tree, or a spec with very many mistakes, is refused quickly.
func TestParseLimits(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("name: t\nrun: x\nx0: &m0 {name: a, mount: /a}\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&bomb, "x%d: &m%d [", i, i)
		for k := range 10 {
			if k > 0 {
				bomb.WriteString(", ")
			}
			fmt.Fprintf(&bomb, "*m%d", i-1)
		}
		bomb.WriteString("]\n")
	}
	bomb.WriteString("datasets: *m20\n")

	var many strings.Builder
	many.WriteString(minimal + "env:\n")
	for i := range 5000 {
		fmt.Fprintf(&many, "  %d: x\n", i)
	}

	var wide strings.Builder
	wide.WriteString(minimal + "big: &big [")
	for i := range 100000 {
		if i > 0 {
			wide.WriteString(",")
		}
		wide.WriteString("x")
	}
	wide.WriteString("]\ncommand: [")
	for i := range 100 {
		if i > 0 {
			wide.WriteString(",")
		}
		wide.WriteString("*big")
	}
	wide.WriteString("]\n")

	for name, spec := range map[string]string{"alias bomb": bomb.String(), "many mistakes": many.String(), "wide alias": wide.String()} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("t.yaml", []byte(spec))
			var es *Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse error = %v, want *Errors", err)
			}
			if len(*es) > maxErrors+1 {
				t.Errorf("Parse reported %d problems, want at most %d", len(*es), maxErrors+1)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Parse took %v", d)
			}
		})
	}
}
