package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/yamlnode"
)

// field is one key of a mapping in a spec whose value lands in a T: its
// name, its JSON Schema (with a description and an example) and how Parse
// decodes it. The tables below are the only list of the spec's keys: Parse
// accepts exactly these keys and Schema publishes exactly these.
type field[T any] struct {
	name string
	// required keys are enforced by check, which sees JSON Jobs too; the
	// flag puts them in the schema.
	required bool
	schema   *jsonSchema
	decode   func(d *decoder, n *yaml.Node, path string, t *T)
}

var jobFields = []field[Job]{
	{
		name: "name", required: true,
		schema: nameSchema("The job's name: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit.", "resnet-sweep-3"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Name, _ = d.str(n, p) },
	},
	{
		name: "project",
		schema: func() *jsonSchema {
			s := nameSchema("The project the job belongs to and is billed to.", "vision")
			s.Default = DefaultProject
			return s
		}(),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Project, _ = d.str(n, p) },
	},
	{
		name: "run",
		schema: &jsonSchema{
			Description: "A shell command line, run as /bin/sh -c RUN. Give run or command, not both.",
			Type:        "string", MinLength: ptr(1), Examples: []any{"python train.py --lr 0.1"},
		},
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			d.bad["command"] = true // a problem here is the command's problem
			if d.pos["command"] != nil {
				d.fail(n, p, "cannot be given with command", "run: takes a shell command line, command: a list of arguments; keep one")
				return
			}
			s, ok := d.str(n, p)
			if !ok {
				return
			}
			if strings.TrimSpace(s) == "" {
				d.fail(n, p, "must not be empty", "the shell command line that starts the job")
				return
			}
			delete(d.bad, "command")
			j.Command = []string{"/bin/sh", "-c", s}
		},
	},
	{
		name: "command",
		schema: &jsonSchema{
			Description: "The program and its arguments, run without a shell. Give run or command, not both.",
			Type:        "array", Items: &jsonSchema{Type: "string"}, MinItems: ptr(1),
			Examples: []any{[]any{"python", "train.py", "--lr", "0.1"}},
		},
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			if d.pos["run"] != nil {
				d.fail(n, p, "cannot be given with run", "run: takes a shell command line, command: a list of arguments; keep one")
				return
			}
			argv, ok := d.strs(n, p, "write command: [python, train.py], or run: for a shell command line")
			switch {
			case !ok:
			case len(argv) == 0:
				d.fail(n, p, "must not be empty", "the program to run, then its arguments")
			default:
				j.Command = argv
			}
		},
	},
	{
		name: "image",
		schema: stringSchema("A container image to run the job in; it needs a pool with the docker runtime. Without one the job runs as a sandboxed process.",
			"registry.example.com/vision/train:1.4"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Image, _ = d.str(n, p) },
	},
	{
		name: "workdir",
		schema: stringSchema("A local directory, absolute or relative to the spec file, uploaded encrypted and unpacked as the job's working directory.",
			"."),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Workdir, _ = d.str(n, p) },
	},
	{
		name:   "resources",
		schema: object("What each node of the job needs.", resourceFields),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { decodeObject(d, n, p, resourceFields, &j.Resources) },
	},
	{
		name: "nodes",
		schema: intSchema("How many nodes run the job. More than 1 makes a gang: all ranks start together, each with torchrun-style environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, NODE_RANK, LOCAL_RANK).",
			1, MaxNodes, DefaultNodes, 2),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Nodes, _ = d.int(n, p) },
	},
	{
		name:   "interconnect",
		schema: object("What a gang needs between its nodes. Gangs are placed only inside one interconnect domain that meets it; without this key a gang needs "+fmt.Sprint(DefaultGangGbps)+" Gbit/s.", interconnectFields),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			j.Interconnect = &Interconnect{}
			decodeObject(d, n, p, interconnectFields, j.Interconnect)
		},
	},
	{
		name: "estimate",
		schema: durationSchema("How long the job runs on one A100 per rank (or on its CPUs when it uses no GPU). Placement predicts cost and finish time from it, scaled by each GPU model's throughput; "+
			DefaultEstimate.String()+" when left out.", "", "3h"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Estimate, _ = d.duration(n, p) },
	},
	{
		name:   "objective",
		schema: enumSchema("What placement minimizes among the pools that satisfy every constraint: cost (expected price, rework included) or time (predicted finish).", []string{ObjectiveCost, ObjectiveTime}, ObjectiveCost, "time"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			if v, ok := enum(d, n, p, "objective", []string{ObjectiveCost, ObjectiveTime}, "cost or time", parseObjective); ok {
				j.Objective = v
			}
		},
	},
	{
		name: "datasets",
		schema: &jsonSchema{
			Description: "Datasets the job reads, each mounted read-only.",
			Type:        "array", Items: object("One dataset and where it appears.", datasetFields),
		},
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			items, ok := d.items(n, p, "write each dataset as an item: - {name: coco-2017, mount: /data/coco}")
			if !ok || len(items) == 0 {
				return
			}
			j.Datasets = make([]Dataset, len(items))
			for i, it := range items {
				decodeObject(d, it, indexField(p, i), datasetFields, &j.Datasets[i])
			}
		},
	},
	{
		name:   "checkpoint",
		schema: object("Where the job writes checkpoints; Lode syncs that directory as encrypted checkpoint versions and resumes from the last one when the job is placed again.", checkpointFields),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			j.Checkpoint = &Checkpoint{Every: Duration(DefaultCheckpointEvery)}
			decodeObject(d, n, p, checkpointFields, j.Checkpoint)
		},
	},
	{
		name:   "outputs",
		schema: dirSchema("The directory the job writes its outputs to, kept encrypted as the job's artifacts.", "/out"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Outputs, _ = d.str(n, p) },
	},
	{
		name: "classification",
		schema: enumSchema("How sensitive the job's data is; it decides which trust tiers and regions may run the job. At least the highest classification of its datasets.",
			classificationNames(), DefaultClassification.String(), "confidential"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			if v, ok := enum(d, n, p, "classification", classificationNames(), "one of "+strings.Join(classificationNames(), ", "), core.ParseClassification); ok {
				j.Classification = v
			}
		},
	},
	{
		name:   "placement",
		schema: object("Narrows where the job may run.", placementFields),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { decodeObject(d, n, p, placementFields, &j.Placement) },
	},
	{
		name:   "deadline",
		schema: durationSchema("How long after submission the job must be done, such as 6h. No deadline when left out.", "", "6h"),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { j.Deadline, _ = d.duration(n, p) },
	},
	{
		name: "priority",
		schema: &jsonSchema{
			Description: "Orders queued work: low, normal, high, or a number from 0 (low) through 50 (normal) and 100 (high) to 1000.",
			AnyOf: []*jsonSchema{
				{Type: "string", Enum: priorityNames},
				{Type: "integer", Minimum: ptr(0.0), Maximum: ptr(1000.0)},
			},
			Default: "normal", Examples: []any{"high"},
		},
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) {
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
				v, err := core.ParsePriority(n.Value)
				if err != nil {
					d.fail(n, p, fmt.Sprintf("must be from 0 to 1000, not %s", n.Value), "or low, normal, high")
					return
				}
				j.Priority = v
				return
			}
			if v, ok := enum(d, n, p, "priority", priorityNames, "low, normal, high or a number from 0 to 1000", core.ParsePriority); ok {
				j.Priority = v
			}
		},
	},
	{
		name:   "retries",
		schema: object("How many times the job is placed again after an attempt ends badly, by cause. Each retry resumes from the last checkpoint.", retryFields),
		decode: func(d *decoder, n *yaml.Node, p string, j *Job) { decodeObject(d, n, p, retryFields, &j.Retries) },
	},
	{
		name: "env",
		schema: &jsonSchema{
			Description: "Environment variables of the job. Numbers and booleans are taken as written. Names starting with LODE_ are reserved.",
			Type:        "object",
			PropertyNames: &jsonSchema{
				Pattern: envNamePattern,
				Not:     &jsonSchema{Pattern: "^" + reservedEnv},
			},
			AdditionalProperties: &jsonSchema{Type: []string{"string", "number", "boolean"}},
			Examples:             []any{map[string]any{"WANDB_MODE": "offline"}},
		},
		decode: decodeEnv,
	},
}

var resourceFields = []field[core.Resources]{
	{
		name:   "gpus",
		schema: intSchema("GPUs per node.", 0, MaxGPUs, 0, 1),
		decode: func(d *decoder, n *yaml.Node, p string, r *core.Resources) { r.GPUs, _ = d.int(n, p) },
	},
	{
		name: "gpu",
		schema: &jsonSchema{
			Description: "The GPU models the job accepts, any one of them; any model when left out. Names are taken loosely: \"NVIDIA GeForce RTX 3090\" is rtx3090.",
			AnyOf: []*jsonSchema{
				{Type: "string", MinLength: ptr(1)},
				{Type: "array", Items: &jsonSchema{Type: "string", MinLength: ptr(1)}},
			},
			Examples: []any{[]any{"rtx3090", "rtx4090", "a100"}},
		},
		decode: decodeGPUModels,
	},
	{
		name: "cpus",
		schema: &jsonSchema{
			Description: "CPUs per node: a number, which may be fractional (0.5), or thousandths written like 500m.",
			AnyOf: []*jsonSchema{
				{Type: "number", ExclusiveMinimum: ptr(0.0)},
				{Type: "string", Pattern: cpuPattern},
			},
			Default: 1, Examples: []any{8},
		},
		decode: func(d *decoder, n *yaml.Node, p string, r *core.Resources) {
			if v, ok := decodeCPUs(d, n, p); ok {
				r.MilliCPUs = v
			}
		},
	},
	{
		name: "memory",
		schema: &jsonSchema{
			Description: "Memory per node: a size such as 512MiB, 32GiB or 2GB, or a number of bytes.",
			AnyOf: []*jsonSchema{
				{Type: "string", Pattern: sizePattern},
				{Type: "integer", Minimum: ptr(float64(MinMemoryBytes))},
			},
			Default: "1GiB", Examples: []any{"32GiB"},
		},
		decode: func(d *decoder, n *yaml.Node, p string, r *core.Resources) {
			if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" && n.ShortTag() != "!!int" {
				d.fail(n, p, "must be a size, not "+yamlnode.Describe(n), "write it like 512MiB, 32GiB or 2GB")
				return
			}
			v, err := core.ParseBytes(n.Value)
			if err != nil {
				d.fail(n, p, fmt.Sprintf("%q is not a size", n.Value), "write it like 512MiB, 32GiB or 2GB")
				return
			}
			r.MemoryBytes = v
		},
	},
}

var datasetFields = []field[Dataset]{
	{
		name: "name", required: true,
		schema: nameSchema("The dataset's name in the job's project.", "coco-2017"),
		decode: func(d *decoder, n *yaml.Node, p string, ds *Dataset) { ds.Name, _ = d.str(n, p) },
	},
	{
		name:   "version",
		schema: intSchema("The version to mount; the newest at submission when left out or 0.", 0, 0, nil, 3),
		decode: func(d *decoder, n *yaml.Node, p string, ds *Dataset) { ds.Version, _ = d.int(n, p) },
	},
	{
		name: "mount", required: true,
		schema: dirSchema("Where the dataset appears, a directory inside the task's directory; a leading / is the task's root.", "/data/coco"),
		decode: func(d *decoder, n *yaml.Node, p string, ds *Dataset) { ds.Mount, _ = d.str(n, p) },
	},
	{
		name: "from",
		schema: stringSchema("A local directory, absolute or relative to the spec file, pushed as a new version of the dataset at submission when its contents differ from the newest version.",
			"./data/coco"),
		decode: func(d *decoder, n *yaml.Node, p string, ds *Dataset) { ds.From, _ = d.str(n, p) },
	},
}

var interconnectFields = []field[Interconnect]{
	{
		name: "min_gbps", required: true,
		schema: &jsonSchema{
			Description: "Bandwidth between the gang's nodes, in Gbit/s.",
			Type:        "number", ExclusiveMinimum: ptr(0.0), Examples: []any{100},
		},
		decode: func(d *decoder, n *yaml.Node, p string, ic *Interconnect) { ic.MinGbps, _ = d.float(n, p) },
	},
}

func parseObjective(s string) (string, error) {
	if s == ObjectiveCost || s == ObjectiveTime {
		return s, nil
	}
	return "", fmt.Errorf("unknown objective %q", s)
}

var checkpointFields = []field[Checkpoint]{
	{
		name: "path", required: true,
		schema: dirSchema("The directory the job writes checkpoints to, inside the task's directory. LODE_CHECKPOINT_DIR names it in the job.", "/ckpt"),
		decode: func(d *decoder, n *yaml.Node, p string, c *Checkpoint) { c.Path, _ = d.str(n, p) },
	},
	{
		name:   "every",
		schema: durationSchema("How often the directory is synced as a new checkpoint version, at least 1s.", "5m", "10m"),
		decode: func(d *decoder, n *yaml.Node, p string, c *Checkpoint) {
			if v, ok := d.duration(n, p); ok {
				c.Every = v
			}
		},
	},
}

var placementFields = []field[Placement]{
	{
		name:   "regions",
		schema: stringListSchema("Regions the job may run in; any allowed by the classification when left out.", "eu"),
		decode: func(d *decoder, n *yaml.Node, p string, pl *Placement) {
			pl.Regions, _ = d.strs(n, p, "write regions: [eu]")
		},
	},
	{
		name: "min_trust",
		schema: enumSchema("The lowest trust tier of pool the job may run on; the classification may ask for more.",
			tierNames(), DefaultMinTrust.String(), "verified"),
		decode: func(d *decoder, n *yaml.Node, p string, pl *Placement) {
			if v, ok := enum(d, n, p, "trust tier", tierNames(), "one of "+strings.Join(tierNames(), ", "), core.ParseTier); ok {
				pl.MinTrust = v
			}
		},
	},
	{
		name: "max_price_per_hour",
		schema: &jsonSchema{
			Description: "A hard cap on what the job may cost per hour; no cap when left out or 0.",
			Type:        "number", Minimum: ptr(0.0), Examples: []any{2.5},
		},
		decode: func(d *decoder, n *yaml.Node, p string, pl *Placement) { pl.MaxPricePerHour, _ = d.float(n, p) },
	},
	{
		name:   "pools",
		schema: stringListSchema("Pools the job may run on; any pool when left out.", "rigs-eu"),
		decode: func(d *decoder, n *yaml.Node, p string, pl *Placement) {
			pl.Pools, _ = d.strs(n, p, "write pools: [rigs-eu]")
		},
	},
}

var retryFields = []field[core.RetryBudget]{
	{
		name:   "on_node_lost",
		schema: intSchema("Placements again after a node was lost (its operator vanished, its lease expired).", 0, 0, DefaultRetryOnNodeLost, 10),
		decode: func(d *decoder, n *yaml.Node, p string, r *core.RetryBudget) { r.OnNodeLost, _ = d.int(n, p) },
	},
	{
		name:   "on_error",
		schema: intSchema("Placements again after a rank exited with an error.", 0, 0, DefaultRetryOnError, 1),
		decode: func(d *decoder, n *yaml.Node, p string, r *core.RetryBudget) { r.OnError, _ = d.int(n, p) },
	},
}

// decodeGPUModels reads one model or a list of them, normalized, each once.
func decodeGPUModels(d *decoder, n *yaml.Node, p string, r *core.Resources) {
	var models []string
	if n.Kind == yaml.ScalarNode {
		s, ok := d.str(n, p)
		if !ok {
			return
		}
		models = []string{s}
		d.pos[indexField(p, 0)] = n
	} else {
		var ok bool
		if models, ok = d.strs(n, p, "write gpu: a100, or gpu: [rtx3090, a100]"); !ok {
			return
		}
	}
	nodes := make([]*yaml.Node, len(models))
	for i := range models {
		nodes[i] = d.pos[indexField(p, i)]
	}
	r.GPUModels = nil
	seen := map[string]bool{}
	for i, m := range models {
		m = normalizeGPUModel(m)
		if seen[m] {
			continue
		}
		seen[m] = true
		d.pos[indexField(p, len(r.GPUModels))] = nodes[i]
		r.GPUModels = append(r.GPUModels, m)
	}
}

// maxMilliCPUs bounds a CPU request far above any machine, so that the
// arithmetic on it cannot overflow.
const maxMilliCPUs = 1e9

// decodeCPUs reads 2, 0.5, "0.5" or "500m" as thousandths of a CPU.
func decodeCPUs(d *decoder, n *yaml.Node, p string) (int64, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, p, "must be a number, not "+yamlnode.Describe(n), "write it like 2, 0.5 or 500m")
		return 0, false
	}
	milli, ok := int64(0), false
	switch n.ShortTag() {
	case "!!int", "!!float":
		var f float64
		if n.Decode(&f) == nil {
			milli, ok = cpuMilli(f)
		}
	case "!!str":
		s := strings.TrimSpace(n.Value)
		if m, isMilli := strings.CutSuffix(s, "m"); isMilli {
			v, err := strconv.ParseInt(m, 10, 64)
			milli, ok = v, err == nil && strings.TrimLeft(m, "-0123456789") == ""
		} else if f, err := strconv.ParseFloat(s, 64); err == nil && strings.TrimLeft(s, "-0123456789.") == "" {
			milli, ok = cpuMilli(f)
		}
	}
	switch {
	case !ok:
		d.fail(n, p, fmt.Sprintf("%q is not a CPU count", n.Value), "write it like 2, 0.5 or 500m")
		return 0, false
	case milli > maxMilliCPUs || milli < -maxMilliCPUs:
		d.fail(n, p, fmt.Sprintf("%s CPUs is more than any node has", n.Value), "")
		return 0, false
	}
	return milli, true
}

func cpuMilli(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return int64(math.Round(max(min(f, 2*maxMilliCPUs), -2*maxMilliCPUs) * 1000)), true
}

// decodeEnv reads a mapping of names to scalars, taking numbers and
// booleans as written.
func decodeEnv(d *decoder, n *yaml.Node, p string, j *Job) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, p, "must be a mapping of names to values, not "+yamlnode.Describe(n), "write it as NAME: value lines indented under env:")
		return
	}
	for _, kv := range d.pairs(n, p) {
		f := joinField(p, kv.name)
		d.pos[f] = kv.key
		v := kv.val
		if isNull(v) {
			d.fail(v, f, "has no value", fmt.Sprintf(`write %s: "" for an empty value`, kv.name))
			continue
		}
		switch v.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool":
			if v.Kind != yaml.ScalarNode {
				break
			}
			if !utf8.ValidString(kv.name) || !utf8.ValidString(v.Value) {
				d.fail(v, f, "must be valid UTF-8", "")
				continue
			}
			if j.Env == nil {
				j.Env = map[string]string{}
			}
			j.Env[kv.name] = v.Value
			continue
		}
		d.fail(v, f, "must be a string, number or boolean, not "+yamlnode.Describe(v), "")
	}
}
