// Package yamlnode holds what Lode's strict YAML readers (the job spec, the
// simulator's traces) share about yaml.Node trees: following aliases, and
// naming a node's kind in an error message.
package yamlnode

import "go.yaml.in/yaml/v3"

// Deref follows aliases to the node they name (at most 64 deep, so a cycle
// cannot hang a reader).
func Deref(n *yaml.Node) *yaml.Node {
	for range 64 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
	return n
}

// Describe names what kind of value a node holds: "a mapping", "a list",
// "a number", ...
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!null":
			return "null"
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!timestamp":
			return "a date"
		default:
			return "a value tagged " + t
		}
	}
	return "an alias"
}
