package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"lode.dev/lode/internal/core"
)

func TestSchemaFileUpToDate(t *testing.T) {
	got := Schema()
	if *update {
		if err := os.WriteFile("schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatalf("%v; create it with: go test ./internal/spec -run TestSchemaFileUpToDate -update", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("schema.json differs from Schema(); regenerate it with\n\tgo test ./internal/spec -run TestSchemaFileUpToDate -update\n(or go generate ./internal/spec)\n(-schema.json +Schema()):\n%s", diff)
	}
}

func TestSchemaIsJSONSchema(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(Schema(), &doc); err != nil {
		t.Fatalf("Schema() is not JSON: %v", err)
	}
	if got := doc["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", got)
	}
	// Every mapping of the spec is closed, as Parse is strict.
	walkSchema(jobSchema(), "", func(path string, s *jsonSchema) {
		if s.Properties != nil && s.AdditionalProperties != false {
			t.Errorf("%s: additionalProperties = %v, want false", top(path), s.AdditionalProperties)
		}
		if s.Pattern != "" {
			if _, err := regexp.Compile(s.Pattern); err != nil {
				t.Errorf("%s: pattern %q: %v", path, s.Pattern, err)
			}
		}
		if path != "" && s.Description == "" && s != jobSchema() {
			t.Errorf("%s has no description", path)
		}
	})
	b := Schema()
	b[0] = 'x'
	if Schema()[0] != '{' {
		t.Errorf("Schema() returns shared bytes that callers can change")
	}
}

// walkSchema calls fn for the schema of every key, by its path
// ("datasets[].mount"), and the top level with path "".
func walkSchema(s *jsonSchema, path string, fn func(path string, s *jsonSchema)) {
	fn(path, s)
	names := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := joinField(path, name)
		prop := s.Properties[name]
		if prop.Items != nil && prop.Items.Properties != nil {
			fn(p, prop)
			walkSchema(prop.Items, p+"[]", fn)
			continue
		}
		walkSchema(prop, p, fn)
	}
}

// exampleSpec builds a spec with every key of the schema, each set to the
// example the schema gives, and without the keys in leave.
func exampleSpec(t *testing.T, leave ...string) map[string]any {
	t.Helper()
	var build func(path string, s *jsonSchema) any
	build = func(path string, s *jsonSchema) any {
		switch {
		case s.Properties != nil:
			m := map[string]any{}
			for name, prop := range s.Properties {
				if p := joinField(path, name); !slices.Contains(leave, p) {
					m[name] = build(p, prop)
				}
			}
			return m
		case s.Items != nil && s.Items.Properties != nil:
			return []any{build(path+"[]", s.Items)}
		case len(s.Examples) == 0:
			t.Fatalf("%s: the schema gives no example", path)
		}
		return s.Examples[0]
	}
	return build("", jobSchema()).(map[string]any)
}

func parseTree(t *testing.T, tree map[string]any) (*Job, error) {
	t.Helper()
	b, err := yaml.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	return Parse("example.yaml", b)
}

func errorFields(err error) []string {
	var es *Errors
	if !errors.As(err, &es) {
		return nil
	}
	var fields []string
	for _, e := range *es {
		fields = append(fields, e.Field)
	}
	return fields
}

// TestSchemaKeysAreParseKeys checks that Parse accepts every key the schema
// publishes, that each of them changes the Job, and that Parse rejects a key
// the schema does not publish in every mapping.
func TestSchemaKeysAreParseKeys(t *testing.T) {
	// run and command exclude each other; try the spec with either.
	for _, variant := range [][]string{{"command"}, {"run"}} {
		full, err := parseTree(t, exampleSpec(t, variant...))
		if err != nil {
			t.Fatalf("the schema's examples without %s do not parse:\n%v", variant[0], err)
		}
		walkSchema(jobSchema(), "", func(path string, s *jsonSchema) {
			if path == "" || strings.HasSuffix(path, "[]") || slices.Contains(variant, path) {
				return
			}
			without, err := parseTree(t, exampleSpec(t, append([]string{path}, variant...)...))
			field := strings.ReplaceAll(path, "[]", "[0]")
			switch {
			case err != nil && isRequired(path):
				if !slices.Contains(errorFields(err), field) && path != "run" && path != "command" {
					t.Errorf("without required %s: errors %v, want one for %s", path, err, field)
				}
			case isRequired(path):
				t.Errorf("without required %s: Parse succeeded", path)
			case err == nil && cmp.Equal(full, without):
				t.Errorf("%s is in the schema but its example does not change the parsed job", path)
			}
		})
	}

	// And the other way: every mapping of the spec refuses a key the schema
	// does not name.
	walkSchema(jobSchema(), "", func(path string, s *jsonSchema) {
		if s.Properties == nil {
			return
		}
		tree := exampleSpec(t, "command")
		target := tree
		for _, part := range strings.Split(path, ".") {
			if part == "" {
				continue
			}
			if name, ok := strings.CutSuffix(part, "[]"); ok {
				target = target[name].([]any)[0].(map[string]any)
				continue
			}
			target = target[part].(map[string]any)
		}
		target["not_a_key"] = 1
		_, err := parseTree(t, tree)
		want := strings.ReplaceAll(joinField(path, "not_a_key"), "[]", "[0]")
		if got := errorFields(err); !cmp.Equal(got, []string{want}) {
			t.Errorf("a key the schema lacks at %s: error fields %v, want [%s]", top(path), got, want)
		}
	})
}

// isRequired reports whether the key at path is required; of run and
// command one is.
func isRequired(path string) bool {
	if path == "run" || path == "command" {
		return true
	}
	required := false
	walkSchema(jobSchema(), "", func(p string, s *jsonSchema) {
		if s.Items != nil && s.Items.Properties != nil {
			s = s.Items
			p += "[]"
		}
		for _, name := range s.Required {
			if joinField(p, name) == path {
				required = true
			}
		}
	})
	return required
}

func top(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// TestSchemaDefaults checks that every default the schema states is the
// one Parse applies: writing the default changes nothing.
func TestSchemaDefaults(t *testing.T) {
	var n int
	walkSchema(jobSchema(), "", func(path string, s *jsonSchema) {
		if s.Default == nil {
			return
		}
		n++
		tree := exampleSpec(t, "command")
		target, name := tree, path
		if i := strings.LastIndex(path, "."); i >= 0 {
			target, name = tree[path[:i]].(map[string]any), path[i+1:]
		}
		target[name] = s.Default
		withDefault, err1 := parseTree(t, tree)
		delete(target, name)
		without, err2 := parseTree(t, tree)
		if fmt.Sprint(errorFields(err1)) != fmt.Sprint(errorFields(err2)) || !cmp.Equal(withDefault, without) {
			t.Errorf("%s: the schema's default %v is not what Parse applies (with it: %v, %v; without: %v, %v)",
				path, s.Default, withDefault, err1, without, err2)
		}
	})
	if n < 10 {
		t.Errorf("the schema states %d defaults; want them all (project, nodes, cpus, memory, ...)", n)
	}
}

// TestSchemaPatterns checks that the schema's patterns accept what Parse
// accepts, on samples of each.
func TestSchemaPatterns(t *testing.T) {
	match := func(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
	for _, s := range []string{"10m", "1h30m", "90s", "0", "1.5h", ".5s", "300ms", " 6h", "10 minutes", "2d", "-1h", "h", "", "1", "00"} {
		_, err := time.ParseDuration(strings.TrimSpace(s))
		parses := err == nil && !strings.HasPrefix(s, "-")
		if got := match(durationPattern, s); got != parses {
			t.Errorf("duration %q: pattern matches = %v, Parse accepts = %v", s, got, parses)
		}
	}
	for _, s := range []string{"32GiB", "512MiB", "2GB", "1024", "1.5 TiB", "10k", "32gigs", "GiB", "1.2.3GB", "32GIB", "4ib"} {
		_, err := core.ParseBytes(s)
		if got := match(sizePattern, s); got != (err == nil) {
			t.Errorf("size %q: pattern matches = %v, core.ParseBytes accepts = %v", s, got, err == nil)
		}
	}
	for _, s := range []string{"2", "0.5", ".5", "500m", "2 cores", "m", "1e3", "5.m", "-1", "+2", "0x10"} {
		_, err := Parse("t.yaml", []byte(fmt.Sprintf("name: t\nrun: x\nresources: {cpus: %q}\n", s)))
		if got := match(cpuPattern, s); got != (err == nil) {
			t.Errorf("cpus %q: pattern matches = %v, Parse accepts = %v (%v)", s, got, err == nil, err)
		}
	}
	for _, s := range []string{"a", "resnet-sweep-3", "a-", "-a", "A", "a_b", strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		_, err := Parse("t.yaml", []byte(fmt.Sprintf("name: %q\nrun: x\n", s)))
		if got := match(namePattern, s); got != (err == nil) {
			t.Errorf("name %q: pattern matches = %v, Parse accepts = %v", s, got, err == nil)
		}
	}
}
