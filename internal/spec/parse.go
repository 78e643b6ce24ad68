package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/yamlnode"
)

// Defaults Parse applies to what a spec leaves out.
const (
	DefaultProject         = "default"
	DefaultNodes           = 1
	DefaultMilliCPUs       = 1000
	DefaultMemoryBytes     = 1 << 30
	DefaultClassification  = core.ClassInternal
	DefaultMinTrust        = core.TierCommunity
	DefaultPriority        = core.PriorityNormal
	DefaultRetryOnNodeLost = 5
	DefaultRetryOnError    = 0
	DefaultCheckpointEvery = 5 * time.Minute
	DefaultObjective       = ObjectiveCost
	// DefaultEstimate is the runtime assumed for a job that gives none.
	DefaultEstimate = time.Hour
	// DefaultGangGbps is the bandwidth a gang needs between its nodes when
	// its spec does not say: enough for data-parallel training of a
	// mid-sized model without the network dominating each step.
	DefaultGangGbps = 25
)

// Parse reads a job spec written in YAML, applies the defaults and checks
// it as Validate does. filename only labels errors. On failure it returns a
// nil Job and an *Errors holding every problem found, each with its line
// and column; a spec that parses also passes Validate.
//
// The spec is strict: unknown keys, duplicated keys, values of the wrong
// type, more than one YAML document and both or neither of run and command
// are errors. `run: STRING` becomes the command ["/bin/sh", "-c", STRING].
func Parse(filename string, data []byte) (*Job, error) {
	d := &decoder{
		file:      filename,
		data:      data,
		pos:       map[string]*yaml.Node{},
		bad:       map[string]bool{},
		elsewhere: keyParents(),
	}
	root := d.document(data)
	if root == nil {
		return nil, d.result()
	}
	d.root = root
	j := &Job{
		Project:        DefaultProject,
		Resources:      core.Resources{MilliCPUs: DefaultMilliCPUs, MemoryBytes: DefaultMemoryBytes},
		Nodes:          DefaultNodes,
		Classification: DefaultClassification,
		Placement:      Placement{MinTrust: DefaultMinTrust},
		Priority:       DefaultPriority,
		Objective:      DefaultObjective,
		Retries:        core.RetryBudget{OnNodeLost: DefaultRetryOnNodeLost, OnError: DefaultRetryOnError},
	}
	decodeObject(d, root, "", jobFields, j)
	if d.work <= maxWork {
		for _, e := range check(j) {
			d.place(e)
		}
	}
	if err := d.result(); err != nil {
		return nil, err
	}
	return j, nil
}

// decoder walks a spec's node tree into a Job, collecting problems.
type decoder struct {
	file string
	data []byte
	errs Errors
	root *yaml.Node
	// pos is the node of every field path decoded, so that problems found
	// later on the Job can be placed in the file.
	pos map[string]*yaml.Node
	// bad marks the field paths that already have a problem; a check on the
	// Job would only repeat it in other words.
	bad map[string]bool
	// elsewhere maps a key name to the full path of where it belongs, for
	// the hint on a key written at the wrong level.
	elsewhere map[string]string
	// work counts the entries of mappings and lists visited. Aliases can
	// make a small file name a huge tree; past maxWork the spec is refused.
	work int
}

const maxWork = 1 << 20

// spend counts the entries of n about to be visited and reports whether
// the budget allows it.
func (d *decoder) spend(n *yaml.Node) bool {
	if d.work > maxWork {
		return false
	}
	d.work += len(n.Content)
	if d.work > maxWork {
		d.problem(n, "", fmt.Sprintf("the spec is too big: it holds, or its aliases expand to, more than %d entries", maxWork), "")
		return false
	}
	return true
}

func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	errs := d.errs
	if len(errs) >= maxErrors {
		errs = append(errs, &Error{File: d.file, Msg: fmt.Sprintf("too many problems; stopped after %d", maxErrors)})
	}
	return &errs
}

// fail records a problem with the value at field, whose other checks are
// then skipped.
func (d *decoder) fail(n *yaml.Node, field, msg, hint string) {
	d.problem(n, field, msg, hint)
	if field != "" {
		d.bad[field] = true
	}
}

// maxErrors is how many problems Parse reports before it stops reading.
const maxErrors = 100

// problem records a problem without marking field as bad.
func (d *decoder) problem(n *yaml.Node, field, msg, hint string) {
	if len(d.errs) >= maxErrors {
		d.work = maxWork + 1 // stop
		return
	}
	e := &Error{File: d.file, Field: field, Msg: msg, Hint: hint}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// place records a problem check found on the Job, at the node of its field
// or of the closest enclosing one.
func (d *decoder) place(e *Error) {
	for f := e.Field; f != ""; f = parentField(f) {
		if d.bad[f] {
			return
		}
	}
	n := d.root
	for f := e.Field; f != ""; f = parentField(f) {
		if p := d.pos[f]; p != nil {
			n = p
			break
		}
	}
	d.problem(n, e.Field, e.Msg, e.Hint)
}

// parentField returns "datasets[1]" for "datasets[1].mount" and "datasets"
// for "datasets[1]".
func parentField(f string) string {
	i := strings.LastIndexAny(f, ".[")
	if i < 0 {
		return ""
	}
	return f[:i]
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func indexField(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

var syntaxErrorRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// parserHints are the problems the YAML library's parser (not its scanner)
// reports. It gives their line counting from 0, and the line is where the
// enclosing mapping or list begins when that is past the first line.
var parserHints = map[string]string{
	"did not find expected <stream-start>":   "",
	"did not find expected <document start>": "",
	"did not find expected node content":     "",
	"found undefined tag handle":             "",
	"found duplicate %YAML directive":        "",
	"found incompatible YAML document":       "",
	"found duplicate %TAG directive":         "",
	"did not find expected key":              "check the indentation of the mapping that starts on or before this line",
	"did not find expected '-' indicator":    "check the indentation of the list that starts on or before this line",
	"did not find expected ',' or ']'":       "a [ list that starts on or before this line is not closed, or misses a comma",
	"did not find expected ',' or '}'":       "a { mapping that starts on or before this line is not closed, or misses a comma",
}

func (d *decoder) syntax(err error) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := syntaxErrorRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	hint, parser := parserHints[msg]
	if parser {
		line++
	}
	if lines := bytes.Split(d.data, []byte("\n")); line > 0 && line <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t")) {
		hint = "indent with spaces; YAML does not allow tabs there"
	}
	d.problem(&yaml.Node{Line: line}, "", "bad YAML: "+msg, hint)
}

// text reports the first byte of data that YAML does not allow, with its
// line and column, which the YAML library does not say.
func (d *decoder) text(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			d.problem(&yaml.Node{Line: line, Column: col}, "", "the spec is not valid UTF-8", "save the file as UTF-8")
			return false
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r', r >= 0x7f && r < 0xa0 && r != 0x85, r >= 0xd800 && r < 0xe000, r == 0xfffe, r == 0xffff:
			d.problem(&yaml.Node{Line: line, Column: col}, "", fmt.Sprintf("control character %U is not allowed", r), "")
			return false
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return true
}

// document reads the one YAML document of data and returns its top-level
// mapping, or nil after recording why there is none.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML library is not ours; whatever input makes it panic is a
		// spec it cannot read, not a reason to take the caller down.
		if r := recover(); r != nil {
			d.problem(nil, "", fmt.Sprintf("cannot read YAML: %v", r), "")
			root = nil
		}
	}()
	if !d.text(data) {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problem(&yaml.Node{Line: 1, Column: 1}, "", "the spec is empty", "a spec needs at least name: and run:")
		} else {
			d.syntax(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		d.problem(at, "", "a spec holds one YAML document, this is another", "remove the --- line, or put each job in a file of its own")
	case !errors.Is(err, io.EOF):
		d.syntax(err)
	}

	if len(doc.Content) == 0 {
		d.problem(&doc, "", "the spec is empty", "a spec needs at least name: and run:")
		return nil
	}
	root = yamlnode.Deref(doc.Content[0])
	switch {
	case root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		d.problem(root, "", "the spec is empty", "a spec needs at least name: and run:")
		return nil
	case root.Kind != yaml.MappingNode:
		d.problem(root, "", "the spec must be a mapping of keys to values, not "+yamlnode.Describe(root), "for example name: train-1, then run: python train.py on the next line")
		return nil
	}
	return root
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

type pair struct {
	name     string
	key, val *yaml.Node
}

// pairs returns the entries of a mapping with their aliases followed,
// reporting keys that are not words and keys given twice.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	if !d.spend(n) {
		return nil
	}
	var out []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlnode.Deref(n.Content[i]), yamlnode.Deref(n.Content[i+1])
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			d.problem(k, path, "merge keys (<<) are not supported", "write the keys out")
			continue
		case k.Kind != yaml.ScalarNode:
			d.problem(k, path, "a key must be a word, not "+yamlnode.Describe(k), "")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinField(path, k.Value), "is given twice", fmt.Sprintf("first at line %d", first.Line))
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k.Value, k, v})
	}
	return out
}

// decodeObject decodes a mapping whose keys are fields into t.
func decodeObject[T any](d *decoder, n *yaml.Node, path string, fields []field[T], t *T) bool {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping, not "+yamlnode.Describe(n), "write it as key: value lines indented under it, or as {key: value, ...}")
		return false
	}
	var present, meant []string
	for _, p := range d.pairs(n, path) {
		present = append(present, p.name)
		i := slices.IndexFunc(fields, func(f field[T]) bool { return f.name == p.name })
		if i < 0 {
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			if s := d.unknown(p.key, path, names); s != "" {
				meant = append(meant, s)
			}
			continue
		}
		fp := joinField(path, p.name)
		d.pos[fp] = p.val
		if isNull(p.val) {
			d.fail(p.val, fp, "has no value", "give it one, or remove the key")
			continue
		}
		fields[i].decode(d, p.val, fp, t)
	}
	// "nmae: x" is one mistake, not also a missing name.
	for _, m := range meant {
		if !slices.Contains(present, m) {
			d.bad[joinField(path, m)] = true
		}
	}
	return true
}

// unknown reports a key that is not one of names, with the likeliest key
// meant, and returns the one of names meant if it can tell.
func (d *decoder) unknown(key *yaml.Node, path string, names []string) (meant string) {
	name := key.Value
	var hint string
	if where, ok := d.elsewhere[name]; ok {
		switch parent := strings.TrimSuffix(where, "."+name); {
		case parent == where:
			hint = fmt.Sprintf("did you mean %s? it goes at the top level", where)
		case strings.HasSuffix(parent, "[]"):
			hint = fmt.Sprintf("did you mean %s? it goes in each item of %s", where, strings.TrimSuffix(parent, "[]"))
		default:
			hint = fmt.Sprintf("did you mean %s? it goes under %s", where, parent)
		}
	} else if meant = suggest(name, names); meant != "" {
		hint = "did you mean " + meant + "?"
	} else {
		hint = "known keys: " + strings.Join(names, ", ")
	}
	d.fail(key, joinField(path, name), "unknown key", hint)
	return meant
}

// str decodes a string.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			hint = fmt.Sprintf("quote it: %q", n.Value)
		}
		d.fail(n, path, "must be a string, not "+yamlnode.Describe(n), hint)
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.fail(n, path, "must be valid UTF-8", "")
		return "", false
	}
	return n.Value, true
}

// int decodes a whole number.
func (d *decoder) int(n *yaml.Node, path string) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
			if _, err := strconv.Atoi(strings.TrimSpace(n.Value)); err == nil {
				hint = "write it without quotes: " + strings.TrimSpace(n.Value)
			}
		}
		what := yamlnode.Describe(n)
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			what = n.Value
		}
		d.fail(n, path, "must be a whole number, not "+what, hint)
		return 0, false
	}
	var v int
	if err := n.Decode(&v); err != nil {
		d.fail(n, path, fmt.Sprintf("%q is not a whole number that fits", n.Value), "")
		return 0, false
	}
	return v, true
}

// float decodes a finite number.
func (d *decoder) float(n *yaml.Node, path string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
			if _, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err == nil {
				hint = "write it without quotes: " + strings.TrimSpace(n.Value)
			}
		}
		d.fail(n, path, "must be a number, not "+yamlnode.Describe(n), hint)
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail(n, path, fmt.Sprintf("%q is not a finite number", n.Value), "")
		return 0, false
	}
	return v, true
}

// duration decodes a duration written like 10m.
func (d *decoder) duration(n *yaml.Node, path string) (Duration, bool) {
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		d.fail(n, path, "must be a duration with a unit, not a bare number", fmt.Sprintf("for example %ss or %sm", n.Value, n.Value))
		return 0, false
	}
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.fail(n, path, fmt.Sprintf("%q is not a duration", s), "write it like 90s, 10m or 6h; the largest unit is h")
		return 0, false
	}
	return Duration(v), true
}

// items returns the items of a list with their aliases followed.
func (d *decoder) items(n *yaml.Node, path, hint string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "must be a list, not "+yamlnode.Describe(n), hint)
		return nil, false
	}
	if !d.spend(n) {
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		out[i] = yamlnode.Deref(it)
		d.pos[indexField(path, i)] = out[i]
	}
	return out, true
}

// strs decodes a list of strings; an empty list is nil.
func (d *decoder) strs(n *yaml.Node, path, hint string) ([]string, bool) {
	items, ok := d.items(n, path, hint)
	if !ok || len(items) == 0 {
		return nil, ok
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, good := d.str(it, indexField(path, i))
		out[i], ok = s, ok && good
	}
	if !ok {
		d.bad[path] = true
	}
	return out, ok
}

// enum decodes one of a fixed set of words with parse, suggesting the
// closest of names on a slip; choices says what may be written.
func enum[T any](d *decoder, n *yaml.Node, path, what string, names []string, choices string, parse func(string) (T, error)) (T, bool) {
	var zero T
	s, ok := d.str(n, path)
	if !ok {
		return zero, false
	}
	v, err := parse(s)
	if err != nil {
		hint := choices
		if g := suggest(s, names); g != "" {
			hint = "did you mean " + g + "? " + hint
		}
		d.fail(n, path, fmt.Sprintf("unknown %s %q", what, s), hint)
		return zero, false
	}
	return v, true
}
