// Package poolfile reads the declarative pools file a server can load at
// start (`lode server --pools FILE`): every pool it names is created, or
// updated to match, so an installation's pools can live in version control.
package poolfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"

	"go.yaml.in/yaml/v3"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/wire"
)

// Pool is one pool of the file.
type Pool struct {
	Name         string       `yaml:"name"`
	Driver       string       `yaml:"driver"`
	Region       string       `yaml:"region"`
	Tier         string       `yaml:"tier"`
	State        string       `yaml:"state"`
	Interconnect Interconnect `yaml:"interconnect"`
	Prices       Prices       `yaml:"prices"`
	line         int
}

// Interconnect is the file's form of core.Interconnect.
type Interconnect struct {
	Domain    string  `yaml:"domain"`
	Gbps      float64 `yaml:"gbps"`
	MultiNode bool    `yaml:"multi_node"`
}

// Prices is the file's form of core.Prices.
type Prices struct {
	GPUHour    map[string]float64 `yaml:"gpu_hour"`
	CPUHour    float64            `yaml:"cpu_hour"`
	MemGiBHour float64            `yaml:"mem_gib_hour"`
}

type file struct {
	Pools []Pool `yaml:"pools"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// Parse reads a pools file. Every problem is reported, each with the file
// and line.
func Parse(filename string, data []byte) ([]Pool, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty pools file (write pools: [...])", filename)
		}
		return nil, fmt.Errorf("%s: %v", filename, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %v", filename, err)
	}
	lines := poolLines(&root)
	var errs []error
	seen := map[string]int{}
	for i := range f.Pools {
		p := &f.Pools[i]
		if i < len(lines) {
			p.line = lines[i]
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: pools[%d]: %s", filename, p.line, i, fmt.Sprintf(format, args...)))
		}
		if !namePattern.MatchString(p.Name) {
			bad("bad name %q (lower-case letters, digits, '.', '_' and '-')", p.Name)
		}
		if prev, ok := seen[p.Name]; ok {
			bad("pool %q is named twice (first on line %d)", p.Name, prev)
		}
		seen[p.Name] = p.line
		if p.Driver != "" && p.Driver != "agent" {
			bad("unknown driver %q (agent is the only one so far)", p.Driver)
		}
		if _, err := p.spec(); err != nil {
			bad("%v", err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f.Pools, nil
}

// poolLines finds the line of each item of the top-level pools list.
func poolLines(root *yaml.Node) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "pools" {
			var lines []int
			for _, it := range m.Content[i+1].Content {
				lines = append(lines, it.Line)
			}
			return lines
		}
	}
	return nil
}

// Spec is the pool as an API pool spec, with every field set; tier and
// state default to community and active.
func (p *Pool) Spec() *wire.PoolSpec {
	s, _ := p.spec()
	return s
}

func (p *Pool) spec() (*wire.PoolSpec, error) {
	tier, state := p.Tier, p.State
	if tier == "" {
		tier = core.TierCommunity.String()
	}
	if state == "" {
		state = "active"
	}
	var errs []error
	if _, err := core.ParseTier(tier); err != nil {
		errs = append(errs, err)
	}
	switch state {
	case "active", "draining", "quarantined":
	default:
		errs = append(errs, fmt.Errorf("unknown state %q (active, draining or quarantined)", state))
	}
	if p.Interconnect.Gbps < 0 {
		errs = append(errs, fmt.Errorf("interconnect.gbps must not be negative"))
	}
	prices := core.Prices{GPUHour: map[string]float64{}, CPUHour: p.Prices.CPUHour, MemGiBHour: p.Prices.MemGiBHour}
	if prices.CPUHour < 0 || prices.MemGiBHour < 0 {
		errs = append(errs, fmt.Errorf("prices must not be negative"))
	}
	for m, v := range p.Prices.GPUHour {
		if v < 0 {
			errs = append(errs, fmt.Errorf("prices.gpu_hour.%s must not be negative", m))
		}
		prices.GPUHour[core.NormalizeGPUModel(m)] = v
	}
	ic := core.Interconnect{Domain: p.Interconnect.Domain, Gbps: p.Interconnect.Gbps, MultiNode: p.Interconnect.MultiNode}
	return &wire.PoolSpec{
		Name: p.Name, Driver: "agent", Region: &p.Region, Tier: &tier, State: &state,
		Interconnect: &ic, Prices: &prices,
	}, errors.Join(errs...)
}
