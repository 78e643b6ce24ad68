package spec

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"lode.dev/lode/internal/core"
)

// Limits of a job spec.
const (
	MaxNodes = 1024 // the largest gang
	MaxGPUs  = 1024 // GPUs one node may be asked for
	// MinMemoryBytes catches sizes written without a unit: "memory: 32"
	// is 32 bytes.
	MinMemoryBytes = 1 << 20
	// MinCheckpointEvery is the shortest checkpoint interval: syncing more
	// often than this spends the job's time uploading.
	MinCheckpointEvery = time.Second
)

// Patterns, shared by the checks and the JSON Schema.
const (
	namePattern     = `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
	envNamePattern  = `^[A-Za-z_][A-Za-z0-9_]*$`
	gpuModelPattern = `^[a-z0-9][a-z0-9.+]*$`
	reservedEnv     = "LODE_"
)

var (
	nameRE     = regexp.MustCompile(namePattern)
	envNameRE  = regexp.MustCompile(envNamePattern)
	gpuModelRE = regexp.MustCompile(gpuModelPattern)
)

// Validate reports every problem with j that does not depend on how the
// spec was written: the checks a server runs on a Job decoded from JSON.
// Parse runs the same checks and reports them with file positions. The
// returned error joins one *Error per problem (errors.Join); it is nil when
// j is valid. Validate does not apply defaults or change j: a JSON Job must
// carry every value, such as project, nodes, cpus and memory.
//
// Field paths use the spec's key names ("resources.cpus"), which for
// resources differ from the JSON names of core.Resources.
func Validate(j *Job) error {
	if j == nil {
		return errors.New("spec: no job")
	}
	problems := check(j)
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// checker collects problems; field paths are those of the YAML spec.
type checker []*Error

func (c *checker) add(field, msg, hint string) {
	*c = append(*c, &Error{Field: field, Msg: msg, Hint: hint})
}

// check is the single list of semantic rules, shared by Validate and Parse
// so that the two cannot drift.
func check(j *Job) []*Error {
	var c checker
	c.name("name", j.Name, true)
	c.name("project", j.Project, true)

	switch {
	case len(j.Command) == 0:
		c.add("command", "is required", `write run: "python train.py" or command: [python, train.py]`)
	case j.Command[0] == "":
		c.add("command[0]", "must not be empty", "it names the program to run")
	}
	for i, a := range j.Command {
		c.noNUL(fmt.Sprintf("command[%d]", i), a)
	}
	if strings.ContainsFunc(j.Image, isSpace) {
		c.add("image", fmt.Sprintf("%q is not an image reference", j.Image), "write it like registry.example.com/team/train:1.4")
	}
	c.noNUL("workdir", j.Workdir)

	c.resources(&j.Resources)
	if j.Nodes < 1 || j.Nodes > MaxNodes {
		c.add("nodes", fmt.Sprintf("must be from 1 to %d, not %d", MaxNodes, j.Nodes), "")
	}

	// Every directory the job mounts or syncs must be its own, or one would
	// hide or upload another.
	type dir struct{ field, path, clean string }
	var dirs []dir
	addDir := func(field, p string) {
		if clean, ok := c.dir(field, p); ok {
			dirs = append(dirs, dir{field, p, clean})
		}
	}
	for i, ds := range j.Datasets {
		f := fmt.Sprintf("datasets[%d]", i)
		c.name(f+".name", ds.Name, true)
		if ds.Version < 0 {
			c.add(f+".version", fmt.Sprintf("must be 0 (the newest) or more, not %d", ds.Version), "")
		}
		if ds.Mount == "" {
			c.add(f+".mount", "is required", "where the dataset appears, for example /data/"+cmp.Or(ds.Name, "coco"))
		} else {
			addDir(f+".mount", ds.Mount)
		}
		c.noNUL(f+".from", ds.From)
	}
	if cp := j.Checkpoint; cp != nil {
		if cp.Path == "" {
			c.add("checkpoint.path", "is required", "the directory the job writes checkpoints to, for example /ckpt")
		} else {
			addDir("checkpoint.path", cp.Path)
		}
		if time.Duration(cp.Every) < MinCheckpointEvery {
			c.add("checkpoint.every", fmt.Sprintf("must be at least %s, not %s", MinCheckpointEvery, cp.Every), "for example 10m")
		}
	}
	if j.Outputs != "" {
		addDir("outputs", j.Outputs)
	}
	// Two directories collide when they are the same or one holds the
	// other; each is reported once, at the later of a pair.
	first := map[string]int{}
	for i, d := range dirs {
		if _, ok := first[d.clean]; !ok {
			first[d.clean] = i
		}
	}
	partner := make([]int, len(dirs))
	for i := range partner {
		partner[i] = -1
	}
	pair := func(i, k int) {
		later, earlier := max(i, k), min(i, k)
		if partner[later] < 0 || earlier < partner[later] {
			partner[later] = earlier
		}
	}
	for i, d := range dirs {
		if k := first[d.clean]; k != i {
			pair(i, k)
		}
		for p := d.clean; ; {
			slash := strings.LastIndexByte(p, '/')
			if slash < 0 {
				break
			}
			p = p[:slash]
			if k, ok := first[p]; ok {
				pair(i, k)
			}
		}
	}
	for i, k := range partner {
		if k >= 0 {
			a, b := dirs[i], dirs[k]
			c.add(a.field, fmt.Sprintf("%q collides with %s (%q)", a.path, b.field, b.path),
				"give every dataset, the checkpoint directory and the outputs a directory of their own")
		}
	}

	if j.Classification < core.ClassPublic || j.Classification > core.ClassRestricted {
		c.add("classification", fmt.Sprintf("unknown classification %d", int(j.Classification)), "one of "+strings.Join(classificationNames(), ", "))
	}
	c.placement(&j.Placement)
	if j.Interconnect != nil && !(j.Interconnect.MinGbps > 0) {
		c.add("interconnect.min_gbps", fmt.Sprintf("must be more than 0, not %g", j.Interconnect.MinGbps), "for example 100")
	}
	if j.Estimate < 0 {
		c.add("estimate", fmt.Sprintf("must not be negative, not %s", j.Estimate), "for example 3h")
	}
	switch j.Objective {
	case "", ObjectiveCost, ObjectiveTime:
	default:
		c.add("objective", fmt.Sprintf("unknown objective %q", j.Objective), "cost or time")
	}
	if j.Deadline < 0 {
		c.add("deadline", fmt.Sprintf("must not be negative, not %s", j.Deadline), "for example 6h")
	}
	if j.Priority < 0 || j.Priority > 1000 {
		c.add("priority", fmt.Sprintf("must be from 0 to 1000, not %d", int(j.Priority)), "or low, normal, high")
	}
	if j.Retries.OnNodeLost < 0 {
		c.add("retries.on_node_lost", fmt.Sprintf("must not be negative, not %d", j.Retries.OnNodeLost), "0 stops the job when a node is lost")
	}
	if j.Retries.OnError < 0 {
		c.add("retries.on_error", fmt.Sprintf("must not be negative, not %d", j.Retries.OnError), "0 stops the job when a rank fails")
	}

	keys := make([]string, 0, len(j.Env))
	for k := range j.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := "env." + k
		switch {
		case !envNameRE.MatchString(k):
			c.add(f, fmt.Sprintf("%q is not a valid environment variable name", k), "use letters, digits and _, not starting with a digit")
		case strings.HasPrefix(k, reservedEnv):
			c.add(f, fmt.Sprintf("%s is reserved", k), "Lode sets the variables starting with "+reservedEnv)
		}
		c.noNUL(f, j.Env[k])
	}
	return c
}

func (c *checker) resources(r *core.Resources) {
	if r.MilliCPUs <= 0 {
		c.add("resources.cpus", fmt.Sprintf("must be more than 0, not %s", formatCPUs(r.MilliCPUs)), "the smallest request is 0.001 (1m)")
	}
	if r.MemoryBytes < MinMemoryBytes {
		c.add("resources.memory", fmt.Sprintf("must be at least 1MiB, not %d bytes", r.MemoryBytes), "a size without a unit is in bytes; write it like 512MiB or 32GiB")
	}
	if r.GPUs < 0 || r.GPUs > MaxGPUs {
		c.add("resources.gpus", fmt.Sprintf("must be from 0 to %d, not %d", MaxGPUs, r.GPUs), "")
	}
	if len(r.GPUModels) > 0 && r.GPUs == 0 {
		c.add("resources.gpu", "names GPU models but resources.gpus is 0", "set resources.gpus to 1 or more, or remove gpu")
	}
	for i, m := range r.GPUModels {
		if !gpuModelRE.MatchString(m) || normalizeGPUModel(m) != m {
			c.add(fmt.Sprintf("resources.gpu[%d]", i), fmt.Sprintf("%q is not a GPU model", m), "write models like rtx4090 or a100; list several as [rtx3090, a100]")
		}
	}
}

func (c *checker) placement(p *Placement) {
	for i, r := range p.Regions {
		if r == "" || strings.ContainsFunc(r, isSpace) {
			c.add(fmt.Sprintf("placement.regions[%d]", i), fmt.Sprintf("%q is not a region", r), "for example eu or us-east-1")
		}
	}
	for i, r := range p.Pools {
		if r == "" || strings.ContainsFunc(r, isSpace) {
			c.add(fmt.Sprintf("placement.pools[%d]", i), fmt.Sprintf("%q is not a pool", r), "name a pool as `lode pools` lists it")
		}
	}
	if p.MinTrust < core.TierCommunity || p.MinTrust > core.TierPrivate {
		c.add("placement.min_trust", fmt.Sprintf("unknown trust tier %d", int(p.MinTrust)), "one of "+strings.Join(tierNames(), ", "))
	}
	if !(p.MaxPricePerHour >= 0) || math.IsInf(p.MaxPricePerHour, 0) {
		c.add("placement.max_price_per_hour", fmt.Sprintf("must be 0 (no cap) or more, not %g", p.MaxPricePerHour), "")
	}
}

// name checks a project, job or dataset name.
func (c *checker) name(field, s string, required bool) {
	switch {
	case s == "":
		if required {
			c.add(field, "is required", "")
		}
	case !nameRE.MatchString(s):
		hint := "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
		if fixed := fixName(s); nameRE.MatchString(fixed) {
			hint += fmt.Sprintf(", such as %q", fixed)
		}
		c.add(field, fmt.Sprintf("%q is not a valid name", s), hint)
	}
}

// dir checks a directory inside the task's directory and returns it
// cleaned, without leading or trailing slashes, for collision checks.
func (c *checker) dir(field, p string) (string, bool) {
	if strings.ContainsRune(p, 0) {
		c.add(field, "must not contain a NUL byte", "")
		return "", false
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		c.add(field, fmt.Sprintf("%q must not contain ..", p), "the path is inside the task's directory; write it without ..")
		return "", false
	}
	clean := strings.Trim(path.Clean("/"+p), "/")
	if clean == "" {
		c.add(field, fmt.Sprintf("%q is the task's root directory", p), "name a directory of its own, for example /data")
		return "", false
	}
	return clean, true
}

func (c *checker) noNUL(field, s string) {
	if strings.ContainsRune(s, 0) {
		c.add(field, "must not contain a NUL byte", "")
	}
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// fixName suggests a valid name for s: lowercase, with runs of other
// characters turned into '-'.
func fixName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 63 {
			break
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// normalizeGPUModel applies core.NormalizeGPUModel until the name stops
// changing ("nvinvidiadia" needs two passes), so a normalized model is a
// fixed point.
func normalizeGPUModel(s string) string {
	for range len(s) + 1 {
		n := core.NormalizeGPUModel(s)
		if n == s {
			break
		}
		s = n
	}
	return s
}

func formatCPUs(milli int64) string {
	if milli%1000 == 0 {
		return fmt.Sprint(milli / 1000)
	}
	return fmt.Sprintf("%dm", milli)
}

func classificationNames() []string {
	var names []string
	for c := core.ClassPublic; c <= core.ClassRestricted; c++ {
		names = append(names, c.String())
	}
	return names
}

func tierNames() []string {
	var names []string
	for t := core.TierCommunity; t <= core.TierPrivate; t++ {
		names = append(names, t.String())
	}
	return names
}

var priorityNames = []string{"low", "normal", "high"}
