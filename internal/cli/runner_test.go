package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/core"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// complete is a runner's whole configuration, as a Kubernetes pod gets it.
func complete(t *testing.T) map[string]string {
	return map[string]string{
		"LODE_SERVER": "http://lode.test:7070", "LODE_ATTEMPT": "att-1", "LODE_RANK": "2",
		"LODE_FENCING_TOKEN": "secret", "LODE_TASK_DIR": filepath.Join(t.TempDir(), "task"),
	}
}

func TestRunnerConfigFromTheEnvironment(t *testing.T) {
	vars := complete(t)
	setup, err := runnerConfig(envOf(vars), runnerFlags{})
	if err != nil {
		t.Fatal(err)
	}
	got := setup.cfg
	if got.Server != "http://lode.test:7070" || got.AttemptID != "att-1" || got.Rank != 2 || got.FencingToken != "secret" || got.Dir != vars["LODE_TASK_DIR"] {
		t.Errorf("config = %+v; want every variable's value", got)
	}
	if setup.tempDir != "" {
		t.Errorf("a temporary directory %s was made although LODE_TASK_DIR was given", setup.tempDir)
	}
	if st, err := os.Stat(vars["LODE_TASK_DIR"]); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("LODE_TASK_DIR was not made a private directory: %v %v", st, err)
	}

	// Flags override the environment.
	dir := t.TempDir()
	setup, err = runnerConfig(envOf(vars), runnerFlags{server: "https://other:1", attempt: "att-2", rank: "0", taskDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := setup.cfg; got.Server != "https://other:1" || got.AttemptID != "att-2" || got.Rank != 0 || got.Dir != dir {
		t.Errorf("config with flags = %+v; want the flags' values", got)
	}

	// An Indexed Job's completion index is the rank when LODE_RANK is not
	// set, and LODE_RANK wins when both are.
	delete(vars, "LODE_RANK")
	vars["JOB_COMPLETION_INDEX"] = "3"
	if setup, err := runnerConfig(envOf(vars), runnerFlags{}); err != nil || setup.cfg.Rank != 3 {
		t.Errorf("rank from JOB_COMPLETION_INDEX = %+v, %v; want 3", setup, err)
	}
	vars["LODE_RANK"] = "1"
	if setup, err := runnerConfig(envOf(vars), runnerFlags{}); err != nil || setup.cfg.Rank != 1 {
		t.Errorf("rank with both set = %+v, %v; want LODE_RANK's 1", setup, err)
	}

	// Without LODE_TASK_DIR the task gets a fresh private directory.
	delete(vars, "LODE_TASK_DIR")
	setup, err = runnerConfig(envOf(vars), runnerFlags{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(setup.tempDir) })
	if setup.tempDir == "" || setup.cfg.Dir != setup.tempDir {
		t.Fatalf("no temporary directory: %+v", setup)
	}
	if st, err := os.Stat(setup.tempDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("temporary task directory: %v %v; want mode 0700", st, err)
	}
}

func TestRunnerConfigErrorsNameTheVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(map[string]string)
		flags runnerFlags
		want  []string
	}{
		{"nothing set", func(v map[string]string) { clear(v) },
			runnerFlags{}, []string{"LODE_SERVER is not set", "LODE_ATTEMPT is not set", "LODE_RANK is not set", "LODE_FENCING_TOKEN is not set"}},
		{"no token", func(v map[string]string) { delete(v, "LODE_FENCING_TOKEN") }, runnerFlags{}, []string{"LODE_FENCING_TOKEN"}},
		{"no attempt", func(v map[string]string) { delete(v, "LODE_ATTEMPT") }, runnerFlags{}, []string{"LODE_ATTEMPT"}},
		{"no server", func(v map[string]string) { delete(v, "LODE_SERVER") }, runnerFlags{}, []string{"LODE_SERVER"}},
		{"server not a URL", func(v map[string]string) { v["LODE_SERVER"] = "lode.test:7070" }, runnerFlags{}, []string{`LODE_SERVER="lode.test:7070"`}},
		{"server flag not a URL", nil, runnerFlags{server: "ftp://x"}, []string{`--server="ftp://x"`}},
		{"rank not a number", func(v map[string]string) { v["LODE_RANK"] = "one" }, runnerFlags{}, []string{`LODE_RANK="one"`}},
		{"negative rank", func(v map[string]string) { v["LODE_RANK"] = "-1" }, runnerFlags{}, []string{`LODE_RANK="-1"`}},
		{"bad completion index", func(v map[string]string) { delete(v, "LODE_RANK"); v["JOB_COMPLETION_INDEX"] = "x" },
			runnerFlags{}, []string{`JOB_COMPLETION_INDEX="x"`}},
		{"rank flag not a number", nil, runnerFlags{rank: "x"}, []string{`--rank="x"`}},
		{"task dir is a file", func(v map[string]string) { v["LODE_TASK_DIR"] = file }, runnerFlags{}, []string{"LODE_TASK_DIR=", "cannot hold"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := complete(t)
			if tt.edit != nil {
				tt.edit(vars)
			}
			setup, err := runnerConfig(envOf(vars), tt.flags)
			if err == nil {
				t.Fatalf("no error; config %+v", setup.cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestRunnerCommandExitsTwoOnBadConfiguration runs the command as the
// binary would, with an empty environment.
func TestRunnerCommandExitsTwoOnBadConfiguration(t *testing.T) {
	for _, k := range []string{"LODE_SERVER", "LODE_ATTEMPT", "LODE_RANK", "JOB_COMPLETION_INDEX", "LODE_FENCING_TOKEN", "LODE_TASK_DIR"} {
		t.Setenv(k, "")
	}
	var out bytes.Buffer
	root := newRoot(&globals{out: &out, errOut: &out})
	root.SetArgs([]string{"runner", "--", "true"})
	err := root.Execute()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || !strings.Contains(err.Error(), "LODE_ATTEMPT is not set") {
		t.Errorf("err = %v; want exit 2 naming LODE_ATTEMPT", err)
	}
}

func TestRunnerInstallCopiesItselfAtomically(t *testing.T) {
	dir := t.TempDir()
	// A binary already there (a restarted init container) is replaced.
	if err := os.WriteFile(filepath.Join(dir, "lode"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := newRoot(&globals{out: &out, errOut: &out})
	root.SetArgs([]string{"runner", "--install", dir})
	if err := root.Execute(); err != nil {
		t.Fatalf("install: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "lode"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("DIR/lode holds %d bytes (%v); want this executable's %d", len(got), err, len(want))
	}
	st, _ := os.Stat(filepath.Join(dir, "lode"))
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v; want 0755", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("DIR holds %v; want lode alone, no temporary file left", entries)
	}

	missing := filepath.Join(dir, "missing")
	root = newRoot(&globals{out: &out, errOut: &out})
	root.SetArgs([]string{"runner", "--install", missing})
	err = root.Execute()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(err.Error(), missing) {
		t.Errorf("install into a missing directory: %v; want exit 1 naming it", err)
	}
	root = newRoot(&globals{out: &out, errOut: &out})
	root.SetArgs([]string{"runner", "--install", dir, "--", "true"})
	if err := root.Execute(); !errors.As(err, &ee) || ee.Code != 2 {
		t.Errorf("install with a command: %v; want exit 2", err)
	}
}

func TestRunnerExitStatus(t *testing.T) {
	tests := []struct {
		name string
		end  agent.TaskEnd
		want int
	}{
		{"success", agent.TaskEnd{State: core.TaskExited, ExitCode: 0, Reported: true}, 0},
		{"the command failed", agent.TaskEnd{State: core.TaskExited, ExitCode: 3, Reported: true}, 3},
		{"stopped by SIGTERM", agent.TaskEnd{State: core.TaskKilled, ExitCode: 143, Message: "stopped", Reported: true}, 143},
		{"fenced", agent.TaskEnd{State: core.TaskKilled, ExitCode: 0, Message: "fenced", Fenced: true}, 1},
		{"never started", agent.TaskEnd{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runnerExit(tt.end)
			got := 0
			var ee *ExitError
			if errors.As(err, &ee) {
				got = ee.Code
			} else if err != nil {
				t.Fatalf("error %v is not an ExitError", err)
			}
			if got != tt.want {
				t.Errorf("exit %d; want %d", got, tt.want)
			}
		})
	}
}
