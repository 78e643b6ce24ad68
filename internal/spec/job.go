// Package spec owns the job spec: the YAML a user writes to say what a job
// needs (never where it runs), its strict parsing with file:line:column errors,
// its validation, and the JSON Schema published for editors.
package spec

import (
	"encoding/json"
	"fmt"
	"time"

	"lode.dev/lode/internal/core"
)

// Job is a parsed, validated job spec. It travels between the CLI and the
// server as JSON; the server validates it again with Validate.
type Job struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	// Command is the argv to run. A spec's `run: STRING` becomes
	// ["/bin/sh", "-c", STRING]; `command: [argv...]` is taken as it is.
	Command []string `json:"command"`
	Image   string   `json:"image,omitempty"`
	// Workdir is the local directory uploaded (encrypted) and unpacked as
	// the task's working directory, as written in the spec (relative paths
	// are relative to the spec file's directory). Empty: nothing uploaded.
	Workdir   string         `json:"workdir,omitempty"`
	Resources core.Resources `json:"resources"`
	Nodes     int            `json:"nodes"`
	// Interconnect is what a gang needs between its nodes; nil takes the
	// default need for gangs (DefaultGangGbps).
	Interconnect *Interconnect `json:"interconnect,omitempty"`
	// Estimate is how long the job runs on the reference GPU (an A100; see
	// sched.DefaultThroughput) or, without GPUs, on the CPUs it asks for.
	// The scheduler predicts cost and finish time from it; 0 means unknown
	// (DefaultEstimate is assumed).
	Estimate Duration `json:"estimate,omitempty"`
	// Objective is what placement minimizes: "cost" (the default) or "time".
	Objective      string              `json:"objective,omitempty"`
	Datasets       []Dataset           `json:"datasets,omitempty"`
	Checkpoint     *Checkpoint         `json:"checkpoint,omitempty"`
	Outputs        string              `json:"outputs,omitempty"`
	Classification core.Classification `json:"classification"`
	Placement      Placement           `json:"placement"`
	Deadline       Duration            `json:"deadline,omitempty"`
	Priority       core.Priority       `json:"priority"`
	Retries        core.RetryBudget    `json:"retries"`
	Env            map[string]string   `json:"env,omitempty"`
}

// Dataset is one dataset a job reads, mounted read-only into its directory.
type Dataset struct {
	Name string `json:"name"`
	// Version pins a version; 0 takes the newest at submission.
	Version int `json:"version,omitempty"`
	// Mount is where the dataset appears: a path inside the task's
	// directory (a leading "/" is taken relative to it by runtimes without
	// their own filesystem).
	Mount string `json:"mount"`
	// From is a local directory pushed as a new version of the dataset at
	// submission when its contents differ from the newest version.
	From string `json:"from,omitempty"`
}

// Checkpoint says where the job writes checkpoints and how often Lode
// should sync that directory up as a new checkpoint version.
type Checkpoint struct {
	Path  string   `json:"path"`
	Every Duration `json:"every"`
}

// Interconnect is the bandwidth a gang needs between its nodes.
type Interconnect struct {
	MinGbps float64 `json:"min_gbps"`
}

// Objectives a job may ask placement to minimize.
const (
	ObjectiveCost = "cost"
	ObjectiveTime = "time"
)

// Placement narrows where a job may run.
type Placement struct {
	Regions         []string  `json:"regions,omitempty"`
	MinTrust        core.Tier `json:"min_trust"`
	MaxPricePerHour float64   `json:"max_price_per_hour,omitempty"`
	Pools           []string  `json:"pools,omitempty"`
}

// Duration is a time.Duration written as text ("10m", "6h") in YAML and JSON.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration written as text.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("spec: duration must be a string such as \"10m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("spec: bad duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
