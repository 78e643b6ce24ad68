package sim

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/sched"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/yamlnode"
)

// Error is one problem with a trace, at a line and column of its file; it
// is the job spec's error type, so both read alike.
type Error = spec.Error

// Errors is every problem ParseTrace found, in file order.
type Errors = spec.Errors

// LoadTrace reads and parses a trace file.
func LoadTrace(path string) (*Trace, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return ParseTrace(path, data)
}

// ParseTrace reads a trace written in YAML (docs/trace.md). filename only
// labels errors. The format is strict: unknown or repeated keys, values of
// the wrong type and references to pools the trace does not declare are
// errors; on failure ParseTrace returns Errors listing every problem with
// its line and column.
func ParseTrace(filename string, data []byte) (*Trace, error) {
	p := &parser{file: filename}
	t := p.trace(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		if len(p.errs) > maxErrors {
			p.errs = append(p.errs[:maxErrors], &Error{File: filename, Msg: fmt.Sprintf("too many problems; stopped after %d", maxErrors)})
		}
		return nil, &p.errs
	}
	return t, nil
}

const (
	maxErrors = 50
	// maxWork bounds the entries of mappings and lists visited, so that
	// aliases cannot make a small file a huge tree.
	maxWork = 1 << 20
)

type parser struct {
	file string
	errs Errors
	work int
}

func (p *parser) fail(n *yaml.Node, field, hint, format string, args ...any) {
	e := &Error{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...), Hint: hint}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// stop says whether parsing should give up: too many problems or too big.
func (p *parser) stop() bool { return len(p.errs) > maxErrors || p.work > maxWork }

var topKeys = []string{"name", "start", "cycle", "until", "seed", "policy", "throughput", "projects", "pools", "events", "jobs"}

func (p *parser) trace(data []byte) (t *Trace) {
	defer func() {
		// The YAML library is not ours: an input that makes it panic is a
		// trace it cannot read, not a reason to take the caller down.
		if r := recover(); r != nil {
			p.fail(nil, "", "", "cannot read YAML: %v", r)
			t = nil
		}
	}()
	root := p.document(data)
	if root == nil {
		return nil
	}
	f := p.object(root, "", topKeys)
	t = &Trace{File: p.file, Start: DefaultStart, Cycle: DefaultCycle, Seed: DefaultSeed, Policy: sched.DefaultPolicy(),
		Throughput: maps.Clone(sched.DefaultThroughput), Projects: map[string]sched.Project{}}
	if n := f["name"]; n != nil {
		t.Name, _ = p.str(n, "name")
	}
	if n := f["start"]; n != nil {
		if s, ok := p.scalarText(n, "start"); ok {
			v, err := time.Parse(time.RFC3339, s)
			if err != nil {
				v, err = time.Parse("2006-01-02", s)
			}
			if err != nil {
				p.fail(n, "start", "write it like 2026-01-05T00:00:00Z", "%q is not a time", s)
			}
			t.Start = v.UTC()
		}
	}
	if n := f["cycle"]; n != nil {
		if v, ok := p.duration(n, "cycle"); ok {
			if v < time.Second {
				p.fail(n, "cycle", "for example 30s", "must be at least 1s, not %s", v)
			} else {
				t.Cycle = v
			}
		}
	}
	var until *yaml.Node
	if n := f["until"]; n != nil {
		until = n
		if v, ok := p.duration(n, "until"); ok {
			if v <= 0 {
				p.fail(n, "until", "for example 8d", "must be more than 0")
			}
			t.Until = v
		}
	}
	if n := f["seed"]; n != nil {
		if v, ok := p.int(n, "seed"); ok {
			if v < 1 {
				p.fail(n, "seed", "", "must be at least 1, not %d", v)
			}
			t.Seed = uint64(v)
		}
	}
	if n := f["policy"]; n != nil {
		p.policy(n, t)
	}
	if n := f["throughput"]; n != nil {
		p.throughput(n, t)
	}
	if n := f["projects"]; n != nil {
		p.projects(n, t)
	}
	poolNodes := map[string]*yaml.Node{}
	if n := f["pools"]; n != nil {
		for i, it := range p.items(n, "pools") {
			if pl, ok := p.pool(it, fmt.Sprintf("pools[%d]", i)); ok {
				if first, dup := poolNodes[pl.Name]; dup {
					p.fail(it, fmt.Sprintf("pools[%d].name", i), fmt.Sprintf("first at line %d", first.Line), "pool %q is declared twice", pl.Name)
					continue
				}
				poolNodes[pl.Name] = it
				t.Pools = append(t.Pools, pl)
			}
		}
	}
	switch n := f["pools"]; {
	case n == nil:
		p.fail(root, "pools", "declare at least one pool: see docs/trace.md", "is required")
	case n.Kind == yaml.SequenceNode && len(n.Content) == 0:
		p.fail(n, "pools", "declare at least one pool: see docs/trace.md", "is empty")
	}
	if n := f["events"]; n != nil {
		for i, it := range p.items(n, "events") {
			if ev, ok := p.event(it, fmt.Sprintf("events[%d]", i), t); ok {
				t.Events = append(t.Events, ev)
			}
		}
	}
	if n := f["jobs"]; n != nil {
		p.jobs(n, t)
	}
	p.gpuPrices(t, poolNodes)
	slices.SortStableFunc(t.Events, func(a, b Event) int { return cmp.Compare(a.At, b.At) })
	slices.SortStableFunc(t.Jobs, func(a, b Job) int { return cmp.Compare(a.At, b.At) })
	last := time.Duration(0)
	if len(t.Events) > 0 {
		last = t.Events[len(t.Events)-1].At
	}
	if len(t.Jobs) > 0 {
		last = max(last, t.Jobs[len(t.Jobs)-1].At)
	}
	if t.Until == 0 {
		t.Until = last + DefaultDrain
	} else if until != nil && t.Until < last {
		p.fail(until, "until", "", "is %s, before the last arrival or event (%s)", fmtDuration(t.Until), fmtDuration(last))
	}
	return t
}

// document reads the one YAML document of data and returns its top-level
// mapping, or nil after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:invalidAt(data)], []byte("\n"))
		p.fail(&yaml.Node{Line: line}, "", "save the file as UTF-8", "the trace is not valid UTF-8")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.fail(&yaml.Node{Line: 1}, "", "a trace needs at least pools: and jobs:", "the trace is empty")
		} else {
			p.syntax(err)
		}
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		p.fail(&next, "", "remove the --- line", "a trace holds one YAML document, this is another")
	} else if !errors.Is(err, io.EOF) {
		p.syntax(err)
	}
	if len(doc.Content) == 0 {
		p.fail(&doc, "", "", "the trace is empty")
		return nil
	}
	root := yamlnode.Deref(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.fail(root, "", "a trace is a mapping with pools:, jobs: and the other keys of docs/trace.md", "the trace must be a mapping, not %s", yamlnode.Describe(root))
		return nil
	}
	return root
}

func invalidAt(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

var syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) syntax(err error) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := syntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	p.fail(&yaml.Node{Line: line}, "", "", "bad YAML: %s", msg)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// object returns the values of mapping n by key, reporting keys that are
// not among known, keys given twice and keys without a value. Keys with a
// problem are left out.
func (p *parser) object(n *yaml.Node, path string, known []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "write it as key: value lines indented under it, or as {key: value, ...}", "must be a mapping, not %s", yamlnode.Describe(n))
		return out
	}
	if p.work += len(n.Content); p.stop() {
		if p.work > maxWork && p.work-len(n.Content) <= maxWork {
			p.fail(n, path, "", "the trace is too big: it holds, or its aliases expand to, more than %d entries", maxWork)
		}
		return out
	}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlnode.Deref(n.Content[i]), yamlnode.Deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			p.fail(k, path, "write the keys out", "a key must be a word, not %s", yamlnode.Describe(k))
			continue
		}
		field := join(path, k.Value)
		if first, dup := keys[k.Value]; dup {
			p.fail(k, field, fmt.Sprintf("first at line %d", first.Line), "is given twice")
			continue
		}
		keys[k.Value] = k
		if known != nil && !slices.Contains(known, k.Value) {
			hint := "known keys: " + strings.Join(known, ", ")
			if s := closest(k.Value, known); s != "" {
				hint = "did you mean " + s + "?"
			}
			p.fail(k, field, hint, "unknown key")
			continue
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
			p.fail(v, field, "give it one, or remove the key", "has no value")
			continue
		}
		out[k.Value] = v
	}
	return out
}

// pairs returns a mapping's keys in file order with their values, for the
// mappings whose keys are names (projects, GPU models).
func (p *parser) pairs(n *yaml.Node, path string) (keys []*yaml.Node, vals map[string]*yaml.Node) {
	vals = p.object(n, path, nil)
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if k := yamlnode.Deref(n.Content[i]); vals[k.Value] != nil && !slices.ContainsFunc(keys, func(x *yaml.Node) bool { return x.Value == k.Value }) {
			keys = append(keys, k)
		}
	}
	return keys, vals
}

// closest returns the known key within two edits of word, or "".
func closest(word string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(word, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// items returns the items of a list, aliases followed.
func (p *parser) items(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "write each item on a line starting with - , or as [a, b]", "must be a list, not %s", yamlnode.Describe(n))
		return nil
	}
	if p.work += len(n.Content); p.stop() {
		if p.work > maxWork && p.work-len(n.Content) <= maxWork {
			p.fail(n, path, "", "the trace is too big: it holds, or its aliases expand to, more than %d entries", maxWork)
		}
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		out[i] = yamlnode.Deref(it)
	}
	return out
}

// scalarText returns a scalar's text whatever its tag.
func (p *parser) scalarText(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, path, "", "must be a single value, not %s", yamlnode.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("quote it: %q", n.Value)
		}
		p.fail(n, path, hint, "must be a string, not %s", yamlnode.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) name(n *yaml.Node, path string) (string, bool) {
	s, ok := p.str(n, path)
	if ok && (s == "" || len(s) > 63 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		p.fail(n, path, "use letters, digits and -, at most 63 characters", "%q is not a name", s)
		return "", false
	}
	return s, ok
}

func (p *parser) int(n *yaml.Node, path string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.fail(n, path, "", "must be a whole number, not %s", describeValue(n))
		return 0, false
	}
	return v, true
}

func (p *parser) float(n *yaml.Node, path string) (float64, bool) {
	var v float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&v) != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.fail(n, path, "", "must be a number, not %s", describeValue(n))
		return 0, false
	}
	return v, true
}

// nonNeg decodes a number that is 0 or more.
func (p *parser) nonNeg(n *yaml.Node, path string) (float64, bool) {
	v, ok := p.float(n, path)
	if ok && v < 0 {
		p.fail(n, path, "", "must not be negative, not %g", v)
		return 0, false
	}
	return v, ok
}

func (p *parser) bool(n *yaml.Node, path string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		p.fail(n, path, "true or false", "must be a boolean, not %s", describeValue(n))
		return false, false
	}
	return v, true
}

func describeValue(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && len(n.Value) <= 40 {
		return fmt.Sprintf("%s %q", yamlnode.Describe(n), n.Value)
	}
	return yamlnode.Describe(n)
}

// duration decodes a duration written like 90s, 10m, 6h or 2d12h.
func (p *parser) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalarText(n, path)
	if !ok {
		return 0, false
	}
	v, err := parseDuration(s)
	if err != nil || n.ShortTag() == "!!float" || (n.ShortTag() == "!!int" && s != "0") {
		p.fail(n, path, "write it like 90s, 10m, 6h or 2d12h", "%q is not a duration", s)
		return 0, false
	}
	return v, true
}

// parseDuration reads a Go duration that may start with whole or
// fractional days ("2d", "1.5d12h").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	var d time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || !(days >= 0 && days <= 36500) || strings.ContainsAny(s[:i], "+-eEnN_xXpP") {
			return 0, fmt.Errorf("bad days in %q", s)
		}
		d = time.Duration(days * 24 * float64(time.Hour))
		if s = s[i+1:]; s == "" {
			return d, nil
		}
	}
	r, err := time.ParseDuration(s)
	if err != nil || r < 0 || r > 36500*24*time.Hour {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d + r, nil
}

// fmtDuration writes a duration as a trace would: 2d12h, 90m, 30s.
func fmtDuration(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	days := d / (24 * time.Hour)
	rest := d % (24 * time.Hour)
	out := ""
	if days > 0 {
		out = strconv.FormatInt(int64(days), 10) + "d"
		if rest == 0 {
			return out
		}
	}
	s := rest.String() // 1h0m0s, 1h30m0s, 1m30s, 30s
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return out + s
}

// size decodes an amount of memory such as 64GiB.
func (p *parser) size(n *yaml.Node, path string) (int64, bool) {
	s, ok := p.scalarText(n, path)
	if !ok {
		return 0, false
	}
	v, err := core.ParseBytes(s)
	if err != nil || v < 1<<20 {
		p.fail(n, path, "write it like 512MiB or 64GiB; a size without a unit is in bytes", "%q is not a memory size of at least 1MiB", s)
		return 0, false
	}
	return v, true
}

// cpus decodes a number of CPUs (fractions allowed) as milli-CPUs.
func (p *parser) cpus(n *yaml.Node, path string) (int64, bool) {
	v, ok := p.float(n, path)
	if !ok {
		return 0, false
	}
	if v <= 0 || v > 1e6 {
		p.fail(n, path, "", "must be more than 0 and at most 1000000, not %g", v)
		return 0, false
	}
	return int64(math.Round(v * 1000)), true
}

// strs decodes a list of strings; a single string is a list of one.
func (p *parser) strs(n *yaml.Node, path string) ([]string, bool) {
	if n.Kind == yaml.ScalarNode {
		s, ok := p.str(n, path)
		return []string{s}, ok
	}
	var out []string
	ok := true
	for i, it := range p.items(n, path) {
		s, good := p.str(it, fmt.Sprintf("%s[%d]", path, i))
		out, ok = append(out, s), ok && good
	}
	return out, ok && n.Kind == yaml.SequenceNode
}

func (p *parser) policy(n *yaml.Node, t *Trace) {
	byClass := map[core.Classification]sched.PolicyRule{}
	for _, r := range t.Policy.Rules {
		byClass[r.Classification] = r
	}
	seen := map[core.Classification]*yaml.Node{}
	for i, it := range p.items(n, "policy") {
		path := fmt.Sprintf("policy[%d]", i)
		f := p.object(it, path, []string{"classification", "min_tier", "regions"})
		var rule sched.PolicyRule
		cn, tn := f["classification"], f["min_tier"]
		if cn == nil || tn == nil {
			p.fail(it, path, "for example {classification: confidential, min_tier: certified, regions: [eu]}", "needs classification and min_tier")
			continue
		}
		if s, ok := p.str(cn, path+".classification"); ok {
			c, err := core.ParseClassification(s)
			if err != nil {
				p.fail(cn, path+".classification", "one of public, internal, confidential, restricted", "unknown classification %q", s)
				continue
			}
			if first, dup := seen[c]; dup {
				p.fail(cn, path+".classification", fmt.Sprintf("first at line %d", first.Line), "the rule for %s is given twice", c)
				continue
			}
			seen[c] = cn
			rule.Classification = c
		} else {
			continue
		}
		if s, ok := p.str(tn, path+".min_tier"); ok {
			tier, err := core.ParseTier(s)
			if err != nil {
				p.fail(tn, path+".min_tier", "one of community, verified, certified, private", "unknown trust tier %q", s)
			}
			rule.MinTier = tier
		}
		if rn := f["regions"]; rn != nil {
			rule.Regions, _ = p.strs(rn, path+".regions")
		}
		byClass[rule.Classification] = rule
	}
	t.Policy.Rules = nil
	for _, c := range slices.Sorted(maps.Keys(byClass)) {
		t.Policy.Rules = append(t.Policy.Rules, byClass[c])
	}
}

func (p *parser) throughput(n *yaml.Node, t *Trace) {
	keys, vals := p.pairs(n, "throughput")
	for _, k := range keys {
		model := core.NormalizeGPUModel(k.Value)
		if v, ok := p.float(vals[k.Value], "throughput."+k.Value); ok {
			if v <= 0 || v > 1000 {
				p.fail(vals[k.Value], "throughput."+k.Value, "an A100 is 1", "must be more than 0 and at most 1000, not %g", v)
				continue
			}
			t.Throughput[model] = v
		}
	}
}

func (p *parser) projects(n *yaml.Node, t *Trace) {
	keys, vals := p.pairs(n, "projects")
	for _, k := range keys {
		path := "projects." + k.Value
		f := p.object(vals[k.Value], path, []string{"budget", "weight"})
		var pr sched.Project
		if v := f["budget"]; v != nil {
			pr.Budget, _ = p.nonNeg(v, path+".budget")
		}
		if v := f["weight"]; v != nil {
			pr.Weight, _ = p.nonNeg(v, path+".weight")
		}
		t.Projects[k.Value] = pr
	}
}

var poolKeys = []string{"name", "kind", "region", "tier", "interconnect", "prices", "failures", "nodes"}

func (p *parser) pool(n *yaml.Node, path string) (Pool, bool) {
	f := p.object(n, path, poolKeys)
	pl := Pool{Kind: KindOther, Repair: DefaultRepair, Line: n.Line}
	ok := true
	need := func(key string) *yaml.Node {
		v := f[key]
		if v == nil && n.Kind == yaml.MappingNode {
			p.fail(n, join(path, key), "see docs/trace.md", "is required")
			ok = false
		}
		return v
	}
	if v := need("name"); v != nil {
		var good bool
		pl.Name, good = p.name(v, path+".name")
		ok = ok && good
	}
	if v := f["kind"]; v != nil {
		if s, good := p.str(v, path+".kind"); good {
			if !slices.Contains(kinds, s) {
				p.fail(v, path+".kind", "one of "+strings.Join(kinds, ", "), "unknown kind %q", s)
			}
			pl.Kind = s
		}
	}
	if v := need("region"); v != nil {
		pl.Region, _ = p.name(v, path+".region")
	}
	if v := need("tier"); v != nil {
		if s, good := p.str(v, path+".tier"); good {
			tier, err := core.ParseTier(s)
			if err != nil {
				p.fail(v, path+".tier", "one of community, verified, certified, private", "unknown trust tier %q", s)
			}
			pl.Tier = tier
		}
	}
	pl.Interconnect.Domain = pl.Name
	if v := f["interconnect"]; v != nil {
		ic := p.object(v, path+".interconnect", []string{"domain", "gbps", "multi_node"})
		if d := ic["domain"]; d != nil {
			pl.Interconnect.Domain, _ = p.name(d, path+".interconnect.domain")
		}
		if g := ic["gbps"]; g != nil {
			pl.Interconnect.Gbps, _ = p.nonNeg(g, path+".interconnect.gbps")
		}
		if m := ic["multi_node"]; m != nil {
			pl.Interconnect.MultiNode, _ = p.bool(m, path+".interconnect.multi_node")
		}
	}
	pl.Prices.GPUHour = map[string]float64{}
	if v := need("prices"); v != nil {
		pf := p.object(v, path+".prices", []string{"gpu_hour", "cpu_hour", "mem_gib_hour"})
		if g := pf["gpu_hour"]; g != nil {
			keys, vals := p.pairs(g, path+".prices.gpu_hour")
			for _, k := range keys {
				if price, good := p.nonNeg(vals[k.Value], path+".prices.gpu_hour."+k.Value); good {
					pl.Prices.GPUHour[core.NormalizeGPUModel(k.Value)] = price
				}
			}
		}
		if c := pf["cpu_hour"]; c != nil {
			pl.Prices.CPUHour, _ = p.nonNeg(c, path+".prices.cpu_hour")
		}
		if m := pf["mem_gib_hour"]; m != nil {
			pl.Prices.MemGiBHour, _ = p.nonNeg(m, path+".prices.mem_gib_hour")
		}
	}
	if v := f["failures"]; v != nil {
		ff := p.object(v, path+".failures", []string{"node_loss_per_hour", "repair"})
		if r := ff["node_loss_per_hour"]; r != nil {
			if rate, good := p.nonNeg(r, path+".failures.node_loss_per_hour"); good {
				if rate > 100 {
					p.fail(r, path+".failures.node_loss_per_hour", "0.01 is one loss per node every 100 hours", "must be at most 100, not %g", rate)
				}
				pl.LossPerHour = rate
			}
		}
		if r := ff["repair"]; r != nil {
			pl.Repair, _ = p.duration(r, path+".failures.repair")
		}
	}
	if v := f["nodes"]; v != nil {
		for i, it := range p.items(v, path+".nodes") {
			if g, good := p.nodeGroup(it, fmt.Sprintf("%s.nodes[%d]", path, i)); good {
				pl.Nodes = append(pl.Nodes, g)
			}
		}
	}
	return pl, ok
}

func (p *parser) nodeGroup(n *yaml.Node, path string) (NodeGroup, bool) {
	f := p.object(n, path, []string{"count", "cpus", "memory", "gpus"})
	g := NodeGroup{Count: 1}
	ok := n.Kind == yaml.MappingNode
	if v := f["count"]; v != nil {
		c, good := p.int(v, path+".count")
		if good && (c < 1 || c > MaxNodes) {
			p.fail(v, path+".count", "", "must be from 1 to %d, not %d", MaxNodes, c)
			good = false
		}
		g.Count, ok = c, ok && good
	}
	for _, key := range []string{"cpus", "memory"} {
		if f[key] == nil && n.Kind == yaml.MappingNode {
			p.fail(n, path+"."+key, "for example {count: 10, cpus: 16, memory: 64GiB, gpus: 4xrtx3090}", "is required")
			ok = false
		}
	}
	if v := f["cpus"]; v != nil {
		var good bool
		g.MilliCPUs, good = p.cpus(v, path+".cpus")
		ok = ok && good
	}
	if v := f["memory"]; v != nil {
		var good bool
		g.MemoryBytes, good = p.size(v, path+".memory")
		ok = ok && good
	}
	if v := f["gpus"]; v != nil {
		if s, good := p.str(v, path+".gpus"); good {
			gpus, err := core.ParseGPUs(s)
			if err != nil || len(gpus) > 1024 {
				p.fail(v, path+".gpus", "write them like 4xrtx3090 or 2xa100,2xrtx4090", "%q is not a GPU declaration", s)
				return g, false
			}
			for _, gpu := range gpus {
				if g.GPUs == nil {
					g.GPUs = map[string]int{}
				}
				g.GPUs[gpu.Model]++
			}
		} else {
			ok = false
		}
	}
	return g, ok
}

func (p *parser) event(n *yaml.Node, path string, t *Trace) (Event, bool) {
	f := p.object(n, path, []string{"at", "pool", "add", "remove", "drain", "vanish"})
	ev := Event{Line: n.Line}
	ok := n.Kind == yaml.MappingNode
	if v := f["at"]; v != nil {
		var good bool
		ev.At, good = p.duration(v, path+".at")
		ok = ok && good
	} else if ok {
		p.fail(n, path+".at", "for example at: 3d12h", "is required")
		ok = false
	}
	if v := f["pool"]; v != nil {
		var good bool
		if ev.Pool, good = p.str(v, path+".pool"); good && !slices.ContainsFunc(t.Pools, func(pl Pool) bool { return pl.Name == ev.Pool }) {
			p.fail(v, path+".pool", "declare it under pools", "no pool %q", ev.Pool)
			good = false
		}
		ok = ok && good
	} else if ok {
		p.fail(n, path+".pool", "", "is required")
		ok = false
	}
	what := 0
	if v := f["add"]; v != nil {
		what++
		g, good := p.nodeGroup(v, path+".add")
		ev.Add, ok = &g, ok && good
	}
	for _, key := range []string{"remove", "drain"} {
		v := f[key]
		if v == nil {
			continue
		}
		what++
		r, good := p.int(v, path+"."+key)
		if good && (r < 1 || r > MaxNodes) {
			p.fail(v, path+"."+key, "", "must be from 1 to %d, not %d", MaxNodes, r)
			good = false
		}
		ok = ok && good
		if key == "remove" {
			ev.Remove = r
		} else {
			ev.Drain = r
		}
	}
	if v := f["vanish"]; v != nil {
		what++
		b, good := p.bool(v, path+".vanish")
		if good && !b {
			p.fail(v, path+".vanish", "remove the event, or write vanish: true", "false does nothing")
			good = false
		}
		ev.Vanish, ok = b, ok && good
	}
	if what != 1 && n.Kind == yaml.MappingNode {
		p.fail(n, path, "write one of add: {count: 4, cpus: 16, memory: 64GiB, gpus: 4xrtx3090}, remove: 4, drain: 4 or vanish: true", "an event needs exactly one of add, remove, drain and vanish")
		ok = false
	}
	return ev, ok
}

var jobKeys = []string{
	"name", "at", "count", "every", "project", "nodes", "gpus", "gpu", "cpus", "memory", "work", "estimate",
	"checkpoint", "classification", "deadline", "priority", "min_gbps", "min_trust", "regions", "pools",
	"max_price", "objective", "retries",
}

func (p *parser) jobs(n *yaml.Node, t *Trace) {
	ids := map[string]int{}
	for i, it := range p.items(n, "jobs") {
		if p.stop() {
			return
		}
		path := fmt.Sprintf("jobs[%d]", i)
		js, ok := p.job(it, path, i, t)
		if !ok {
			continue
		}
		for k := range js.count {
			id := js.spec.Name
			if js.count > 1 {
				id = fmt.Sprintf("%s-%d", js.spec.Name, k)
			}
			if line, dup := ids[id]; dup {
				p.fail(cmp.Or(js.nameNode, it), path+".name", fmt.Sprintf("first at line %d; give each entry its own name", line), "job %q is in the trace twice", id)
				break
			}
			if len(t.Jobs) >= MaxJobs {
				p.fail(it, path+".count", "", "the trace holds more than %d jobs", MaxJobs)
				return
			}
			ids[id] = it.Line
			t.Jobs = append(t.Jobs, Job{ID: id, At: js.at + time.Duration(k)*js.every, Spec: js.spec, Work: js.work, Line: it.Line})
		}
	}
}

type jobEntry struct {
	spec      *spec.Job
	nameNode  *yaml.Node
	at, every time.Duration
	count     int
	work      float64
}

func (p *parser) job(n *yaml.Node, path string, index int, t *Trace) (jobEntry, bool) {
	f := p.object(n, path, jobKeys)
	before := len(p.errs)
	if n.Kind != yaml.MappingNode {
		return jobEntry{}, false
	}
	e := jobEntry{count: 1}
	j := &spec.Job{
		Name:           fmt.Sprintf("job-%d", index),
		Project:        spec.DefaultProject,
		Command:        []string{"sim"},
		Nodes:          1,
		Resources:      core.Resources{MilliCPUs: DefaultJobCPUs * 1000, MemoryBytes: DefaultJobMemory, GPUs: 1},
		Classification: spec.DefaultClassification,
		Placement:      spec.Placement{MinTrust: spec.DefaultMinTrust},
		Priority:       spec.DefaultPriority,
		Objective:      spec.DefaultObjective,
		Retries:        core.RetryBudget{OnNodeLost: spec.DefaultRetryOnNodeLost, OnError: spec.DefaultRetryOnError},
		Checkpoint:     &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(spec.DefaultCheckpointEvery)},
	}
	e.spec = j
	if v := f["name"]; v != nil {
		j.Name, _ = p.str(v, path+".name")
		e.nameNode = v
	}
	if v := f["at"]; v != nil {
		e.at, _ = p.duration(v, path+".at")
	} else {
		p.fail(n, path+".at", "when the job arrives, for example at: 1d2h", "is required")
	}
	if v := f["count"]; v != nil {
		if c, ok := p.int(v, path+".count"); ok {
			if c < 1 || c > MaxJobs {
				p.fail(v, path+".count", "", "must be from 1 to %d, not %d", MaxJobs, c)
			} else {
				e.count = c
			}
		}
	}
	if v := f["every"]; v != nil {
		e.every, _ = p.duration(v, path+".every")
		if f["count"] == nil {
			p.fail(v, path+".every", "set count too", "spaces the copies of a job with count, which is missing")
		}
	}
	if v := f["project"]; v != nil {
		j.Project, _ = p.str(v, path+".project")
	}
	if v := f["nodes"]; v != nil {
		j.Nodes, _ = p.int(v, path+".nodes")
	}
	if v := f["gpus"]; v != nil {
		j.Resources.GPUs, _ = p.int(v, path+".gpus")
	}
	if v := f["gpu"]; v != nil {
		models, _ := p.strs(v, path+".gpu")
		for _, m := range models {
			j.Resources.GPUModels = append(j.Resources.GPUModels, core.NormalizeGPUModel(m))
		}
	}
	if v := f["cpus"]; v != nil {
		j.Resources.MilliCPUs, _ = p.cpus(v, path+".cpus")
	}
	if v := f["memory"]; v != nil {
		j.Resources.MemoryBytes, _ = p.size(v, path+".memory")
	}
	switch w, est := f["work"], f["estimate"]; {
	case w != nil && est != nil:
		p.fail(est, path+".estimate", "keep one: work for GPU jobs, estimate for CPU-only jobs", "is given with work")
	case w != nil:
		if v, ok := p.float(w, path+".work"); ok {
			if !(v > 0) || v > 1e9 {
				p.fail(w, path+".work", "GPU-hours on an A100, all ranks together, for example 8", "must be more than 0, not %g", v)
			} else if j.Resources.GPUs < 1 {
				p.fail(w, path+".work", "set gpus, or give estimate: for a CPU-only job", "is in GPU-hours but the job asks for no GPUs")
			} else {
				e.work = v
				perRank := v / float64(max(j.Nodes, 1)*j.Resources.GPUs)
				j.Estimate = spec.Duration(time.Duration(perRank * float64(time.Hour)))
			}
		}
	case est != nil:
		if v, ok := p.duration(est, path+".estimate"); ok {
			if v <= 0 {
				p.fail(est, path+".estimate", "for example 3h", "must be more than 0")
			}
			j.Estimate = spec.Duration(v)
			e.work = v.Hours() * float64(max(j.Nodes, 1)*max(j.Resources.GPUs, 1))
		}
	default:
		p.fail(n, path+".work", "GPU-hours on an A100, all ranks together, for example work: 8", "is required (or estimate: for a CPU-only job)")
	}
	if v := f["checkpoint"]; v != nil {
		if v.Kind == yaml.ScalarNode && v.Value == "none" {
			j.Checkpoint = nil
		} else if d, ok := p.duration(v, path+".checkpoint"); ok {
			if d == 0 {
				j.Checkpoint = nil
			} else if d < time.Second {
				p.fail(v, path+".checkpoint", "for example 10m, or none", "must be at least 1s, not %s", d)
			} else {
				j.Checkpoint.Every = spec.Duration(d)
			}
		}
	}
	if v := f["classification"]; v != nil {
		if s, ok := p.str(v, path+".classification"); ok {
			c, err := core.ParseClassification(s)
			if err != nil {
				p.fail(v, path+".classification", "one of public, internal, confidential, restricted", "unknown classification %q", s)
			}
			j.Classification = c
		}
	}
	if v := f["deadline"]; v != nil {
		if d, ok := p.duration(v, path+".deadline"); ok {
			j.Deadline = spec.Duration(d)
		}
	}
	if v := f["priority"]; v != nil {
		if s, ok := p.scalarText(v, path+".priority"); ok {
			pr, err := core.ParsePriority(s)
			if err != nil {
				p.fail(v, path+".priority", "low, normal, high or 0-1000", "unknown priority %q", s)
			}
			j.Priority = pr
		}
	}
	if v := f["min_gbps"]; v != nil {
		if g, ok := p.float(v, path+".min_gbps"); ok {
			j.Interconnect = &spec.Interconnect{MinGbps: g}
		}
	}
	if v := f["min_trust"]; v != nil {
		if s, ok := p.str(v, path+".min_trust"); ok {
			tier, err := core.ParseTier(s)
			if err != nil {
				p.fail(v, path+".min_trust", "one of community, verified, certified, private", "unknown trust tier %q", s)
			}
			j.Placement.MinTrust = tier
		}
	}
	if v := f["regions"]; v != nil {
		j.Placement.Regions, _ = p.strs(v, path+".regions")
	}
	if v := f["pools"]; v != nil {
		names, _ := p.strs(v, path+".pools")
		for i, name := range names {
			if !slices.ContainsFunc(t.Pools, func(pl Pool) bool { return pl.Name == name }) {
				p.fail(v, fmt.Sprintf("%s.pools[%d]", path, i), "declare it under pools", "no pool %q", name)
			}
		}
		j.Placement.Pools = names
	}
	if v := f["max_price"]; v != nil {
		j.Placement.MaxPricePerHour, _ = p.nonNeg(v, path+".max_price")
	}
	if v := f["objective"]; v != nil {
		j.Objective, _ = p.str(v, path+".objective")
	}
	if v := f["retries"]; v != nil {
		j.Retries.OnNodeLost, _ = p.int(v, path+".retries")
	}
	if len(p.errs) > before {
		return e, false
	}
	// The job spec's own rules apply too; its field names map back to the
	// trace's keys.
	probe := *j
	if e.count > 1 {
		probe.Name = fmt.Sprintf("%s-%d", j.Name, e.count-1)
	}
	if err := spec.Validate(&probe); err != nil {
		var errs []error
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			errs = u.Unwrap()
		} else {
			errs = []error{err}
		}
		for _, err := range errs {
			var se *spec.Error
			if !errors.As(err, &se) {
				p.fail(n, path, "", "%v", err)
				continue
			}
			key := traceKey(se.Field)
			at := f[key]
			if at == nil {
				at = n
			}
			p.fail(at, join(path, key), se.Hint, "%s", se.Msg)
		}
		return e, false
	}
	return e, true
}

// traceKey maps a job spec field to the trace key that sets it.
func traceKey(field string) string {
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	switch field {
	case "resources.cpus":
		return "cpus"
	case "resources.memory":
		return "memory"
	case "resources.gpus":
		return "gpus"
	case "resources.gpu":
		return "gpu"
	case "placement.regions":
		return "regions"
	case "placement.pools":
		return "pools"
	case "placement.min_trust":
		return "min_trust"
	case "placement.max_price_per_hour":
		return "max_price"
	case "interconnect.min_gbps":
		return "min_gbps"
	case "checkpoint.every":
		return "checkpoint"
	case "retries.on_node_lost":
		return "retries"
	}
	return field
}

// gpuPrices checks that every GPU model a pool's nodes hold has a price.
func (p *parser) gpuPrices(t *Trace, at map[string]*yaml.Node) {
	for _, pl := range t.Pools {
		groups := slices.Clone(pl.Nodes)
		for _, ev := range t.Events {
			if ev.Pool == pl.Name && ev.Add != nil {
				groups = append(groups, *ev.Add)
			}
		}
		var missing []string
		for _, g := range groups {
			for m := range g.GPUs {
				if _, ok := pl.Prices.GPUHour[m]; !ok && !slices.Contains(missing, m) {
					missing = append(missing, m)
				}
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			p.fail(at[pl.Name], "prices.gpu_hour", "give each model its price per GPU-hour, for example gpu_hour: {"+missing[0]+": 0.30}",
				"pool %q has %s GPUs but no price for them", pl.Name, strings.Join(missing, ", "))
		}
	}
}
