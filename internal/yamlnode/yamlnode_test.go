package yamlnode

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDescribeAndDeref(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: &x [1]\nb: *x\nc: 2\nd: hi\ne: true\nf: null\n"), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	want := map[string]string{"a": "a list", "b": "a list", "c": "a number", "d": "a string", "e": "a boolean", "f": "null"}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i].Value, Deref(m.Content[i+1])
		if got := Describe(val); got != want[key] {
			t.Errorf("%s: %q, want %q", key, got, want[key])
		}
	}
	if got := Describe(m.Content[3]); got != "an alias" {
		t.Errorf("an alias not followed: %q", got)
	}
}
