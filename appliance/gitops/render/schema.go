package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// valuesSchema checks values files against a chart's values.schema.json and says which key of
// which file is wrong, on which line.
type valuesSchema struct {
	doc any // the schema as parsed JSON, to list the keys a section accepts
	sch *jsonschema.Schema
}

const schemaURL = "file:///values.schema.json"

func compileSchema(data []byte) (*valuesSchema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("chart values.schema.json: %w", err)
	}
	c := jsonschema.NewCompiler()
	// Only the schema itself: a chart's $refs to the network must not make rendering depend on it.
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("chart values.schema.json: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("chart values.schema.json: %w", err)
	}
	return &valuesSchema{doc: doc, sch: sch}, nil
}

var printer = message.NewPrinter(language.English)

// check validates one layer and returns one *Error per problem, sorted by line.
func (s *valuesSchema) check(l *Layer) []error {
	inst, err := jsonValue(withoutNulls(l.Values))
	if err != nil {
		return []error{&Error{File: l.File, Reason: err.Error()}}
	}
	err = s.sch.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []error{&Error{File: l.File, Reason: err.Error()}}
	}
	var out []*Error
	seen := map[string]bool{}
	add := func(e *Error) {
		if k := e.Key + "\x00" + e.Reason; !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	var walk func(v *jsonschema.ValidationError)
	walk = func(v *jsonschema.ValidationError) {
		if len(v.Causes) > 0 {
			for _, c := range v.Causes {
				walk(c)
			}
			return
		}
		if ap, ok := v.ErrorKind.(*kind.AdditionalProperties); ok {
			for _, p := range ap.Properties {
				loc := append(append([]string(nil), v.InstanceLocation...), p)
				reason := "unknown key"
				if keys := s.keysAt(v.InstanceLocation); len(keys) > 0 {
					reason += "; accepted here: " + strings.Join(keys, ", ")
				}
				add(&Error{File: l.File, Line: lineOf(l.node, loc), Key: keyPath(loc), Reason: reason})
			}
			return
		}
		key := keyPath(v.InstanceLocation)
		if key == "" {
			key = "(top level)"
		}
		add(&Error{File: l.File, Line: lineOf(l.node, v.InstanceLocation), Key: key,
			Reason: v.ErrorKind.LocalizedString(printer)})
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	errs := make([]error, len(out))
	for i, e := range out {
		errs[i] = e
	}
	return errs
}

// keysAt lists the properties the schema declares for the object at loc, following
// properties, items and additionalProperties; nil if it cannot tell.
func (s *valuesSchema) keysAt(loc []string) []string {
	node, _ := s.doc.(map[string]any)
	for _, p := range loc {
		if node == nil {
			return nil
		}
		if _, err := strconv.Atoi(p); err == nil {
			if it, ok := node["items"].(map[string]any); ok {
				node = it
				continue
			}
		}
		if props, ok := node["properties"].(map[string]any); ok {
			if n, ok := props[p].(map[string]any); ok {
				node = n
				continue
			}
		}
		node, _ = node["additionalProperties"].(map[string]any)
	}
	props, _ := node["properties"].(map[string]any)
	keys := make([]string, 0, len(props))
	for k := range props {
		if len(loc) == 0 && k == ReservedValuesKey {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// keyPath formats a JSON-pointer-like location as a values key path: a.b[0].c.
func keyPath(loc []string) string {
	var b strings.Builder
	for _, p := range loc {
		if _, err := strconv.Atoi(p); err == nil {
			fmt.Fprintf(&b, "[%s]", p)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// jsonValue turns values into what the validator expects (json.Number for numbers).
func jsonValue(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("values cannot be encoded as JSON: %w", err)
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}
