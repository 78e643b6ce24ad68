package spec

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
)

//go:generate go test -run ^TestSchemaFileUpToDate$ . -update

// SchemaID is the $id of the spec's JSON Schema.
const SchemaID = "https://lode.dev/schema/job-spec.json"

// Schema returns the JSON Schema (draft 2020-12) of the job spec, for
// editors and language servers. It is built from the same table of keys
// Parse decodes with; schema.json next to this file holds a copy.
func Schema() []byte { return bytes.Clone(schemaJSON()) }

var schemaJSON = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jobSchema()); err != nil {
		panic("spec: cannot encode the JSON Schema: " + err.Error()) // only plain values go in
	}
	return b.Bytes()
})

// jsonSchema is the part of JSON Schema the spec needs, in the order a
// reader wants to see it.
type jsonSchema struct {
	Schema      string `json:"$schema,omitempty"`
	ID          string `json:"$id,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// Type is a type name or a list of them.
	Type             any                    `json:"type,omitempty"`
	Enum             []string               `json:"enum,omitempty"`
	Pattern          string                 `json:"pattern,omitempty"`
	MinLength        *int                   `json:"minLength,omitempty"`
	Minimum          *float64               `json:"minimum,omitempty"`
	ExclusiveMinimum *float64               `json:"exclusiveMinimum,omitempty"`
	Maximum          *float64               `json:"maximum,omitempty"`
	Items            *jsonSchema            `json:"items,omitempty"`
	MinItems         *int                   `json:"minItems,omitempty"`
	Properties       map[string]*jsonSchema `json:"properties,omitempty"`
	Required         []string               `json:"required,omitempty"`
	// AdditionalProperties is false or a schema.
	AdditionalProperties any           `json:"additionalProperties,omitempty"`
	PropertyNames        *jsonSchema   `json:"propertyNames,omitempty"`
	AnyOf                []*jsonSchema `json:"anyOf,omitempty"`
	OneOf                []*jsonSchema `json:"oneOf,omitempty"`
	Not                  *jsonSchema   `json:"not,omitempty"`
	Default              any           `json:"default,omitempty"`
	Examples             []any         `json:"examples,omitempty"`
}

func jobSchema() *jsonSchema {
	s := object("A Lode job spec: what a training job needs, never where it runs.", jobFields)
	s.Schema = "https://json-schema.org/draft/2020-12/schema"
	s.ID = SchemaID
	s.Title = "Lode job spec"
	s.OneOf = []*jsonSchema{{Required: []string{"run"}}, {Required: []string{"command"}}}
	return s
}

// object is the schema of a mapping whose keys are fields.
func object[T any](desc string, fields []field[T]) *jsonSchema {
	s := &jsonSchema{
		Description:          desc,
		Type:                 "object",
		Properties:           map[string]*jsonSchema{},
		AdditionalProperties: false,
	}
	for _, f := range fields {
		s.Properties[f.name] = f.schema
		if f.required {
			s.Required = append(s.Required, f.name)
		}
	}
	return s
}

// keyParents maps every key name of the spec to the full path of its
// shallowest use ("gpus" to "resources.gpus", "mount" to
// "datasets[].mount"), for hints on keys written at the wrong level.
var keyParents = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	type level struct {
		prefix string
		s      *jsonSchema
	}
	queue := []level{{"", jobSchema()}}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		names := make([]string, 0, len(l.s.Properties))
		for name := range l.s.Properties {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			p := joinField(l.prefix, name)
			if _, ok := out[name]; !ok {
				out[name] = p
			}
			switch prop := l.s.Properties[name]; {
			case prop.Properties != nil:
				queue = append(queue, level{p, prop})
			case prop.Items != nil && prop.Items.Properties != nil:
				queue = append(queue, level{p + "[]", prop.Items})
			}
		}
	}
	return out
})

func ptr[T any](v T) *T { return &v }

// Schemas of the kinds of values the spec uses.

func nameSchema(desc string, example string) *jsonSchema {
	return &jsonSchema{Description: desc, Type: "string", Pattern: namePattern, Examples: []any{example}}
}

func stringSchema(desc string, example any) *jsonSchema {
	return &jsonSchema{Description: desc, Type: "string", Examples: []any{example}}
}

func stringListSchema(desc string, example ...any) *jsonSchema {
	return &jsonSchema{Description: desc, Type: "array", Items: &jsonSchema{Type: "string", MinLength: ptr(1)}, Examples: []any{example}}
}

// dirSchema is a directory inside the task's directory: absolute or
// relative, never climbing out with "..".
func dirSchema(desc string, example string) *jsonSchema {
	return &jsonSchema{
		Description: desc, Type: "string", MinLength: ptr(1),
		Not:      &jsonSchema{Pattern: `(^|/)\.\.(/|$)`},
		Examples: []any{example},
	}
}

func intSchema(desc string, lo, hi float64, def, example any) *jsonSchema {
	s := &jsonSchema{Description: desc, Type: "integer", Minimum: &lo, Default: def, Examples: []any{example}}
	if hi > 0 {
		s.Maximum = &hi
	}
	return s
}

func enumSchema(desc string, names []string, def, example string) *jsonSchema {
	s := &jsonSchema{Description: desc, Type: "string", Enum: names, Examples: []any{example}}
	if def != "" {
		s.Default = def
	}
	return s
}

// durationPattern is what time.ParseDuration reads, less negative values.
const durationPattern = `^\s*(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)\s*$`

func durationSchema(desc string, def, example string) *jsonSchema {
	s := &jsonSchema{Description: desc, Type: "string", Pattern: durationPattern, Examples: []any{example}}
	if def != "" {
		s.Default = def
	}
	return s
}

// sizePattern is what core.ParseBytes reads.
const sizePattern = `^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*([kKmMgGtT][iI]?)?[bB]?\s*$`

// cpuPattern is a CPU count written as text: 2, 0.5 or 500m.
const cpuPattern = `^\s*(([0-9]+(\.[0-9]*)?|\.[0-9]+)|[0-9]+m)\s*$`
