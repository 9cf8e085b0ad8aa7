package render

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// MaxValuesFileSize bounds one values file; bigger files are refused before they are parsed.
const MaxValuesFileSize = 1 << 20

// Layer is one values file of the merge.
type Layer struct {
	// File is the path inside the repository.
	File string `json:"file"`
	// Values is the file's content; numbers are float64, as Helm reads them.
	Values map[string]any `json:"values"`

	node *yaml3.Node // the document's root mapping, for line numbers
}

// Merged is the result of merging an environment's values files.
type Merged struct {
	// Overlay is the env-overlay used, or "" for none.
	Overlay string `json:"overlay"`
	// Layers are the files that exist, in merge order.
	Layers []Layer `json:"layers"`
	// Values is the deep merge of the layers: maps merge key by key, anything else (lists
	// included) is replaced by the later file, and null deletes the key, as in Helm.
	Values map[string]any `json:"values"`
}

// MergeValues reads the values files of app's env in repo in GlueOps order (common →
// env-overlays/<overlay> → apps/<app>/base → apps/<app>/envs/<env>) and merges them. Missing
// files are skipped, but the env folder must exist. overlay "" means OverlayFor(repo, env);
// "-" means no overlay.
func MergeValues(repo fs.FS, app, env, overlay string) (*Merged, error) {
	if err := ValidateNames(app, env); err != nil {
		return nil, err
	}
	ok, err := exists(repo, envDir(app, env))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &Error{File: envDir(app, env), Reason: fmt.Sprintf("app %q has no environment %q", app, env)}
	}
	if overlay, err = chooseOverlay(repo, env, overlay); err != nil {
		return nil, err
	}
	return mergeFiles(repo, overlay, baseFile(app), envFile(app, env))
}

// MergePreviewValues reads the values files of the preview of pull request n of app in repo
// in GlueOps order (common → env-overlays/<overlay> → apps/<app>/base →
// apps/<app>/envs/previews/common → apps/<app>/envs/previews/pull-request-number/<n>) and
// merges them. Missing files are skipped, but the app folder must exist; the preview has no
// env folder of its own. overlay "" means OverlayFor(repo, "previews"), which falls back to
// nonprod; "-" means no overlay.
func MergePreviewValues(repo fs.FS, app string, n int, overlay string) (*Merged, error) {
	if n <= 0 {
		return nil, &Error{Reason: fmt.Sprintf("pull-request number %d is invalid: it must be positive", n)}
	}
	if err := ValidateNames(app, PreviewEnv(n)); err != nil {
		return nil, err
	}
	appDir := path.Join(AppsDir, app)
	ok, err := exists(repo, appDir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &Error{File: appDir, Reason: fmt.Sprintf("there is no app %q to preview", app)}
	}
	if overlay, err = chooseOverlay(repo, PreviewsEnv, overlay); err != nil {
		return nil, err
	}
	return mergeFiles(repo, overlay, baseFile(app), previewCommonFile(app), previewFile(app, n))
}

// chooseOverlay turns the overlay argument of MergeValues into an overlay name, "" for none.
func chooseOverlay(repo fs.FS, env, overlay string) (string, error) {
	switch overlay {
	case "":
		return OverlayFor(repo, env)
	case "-":
		return "", nil
	}
	if errs := validationLabel(overlay); errs != "" {
		return "", &Error{Reason: fmt.Sprintf("overlay name %q is invalid: %s", overlay, errs)}
	}
	return overlay, nil
}

// mergeFiles merges common, the overlay's file (which must exist if overlay is not "") and
// then the app's files, skipping those that do not exist.
func mergeFiles(repo fs.FS, overlay string, appFiles ...string) (*Merged, error) {
	files := []string{CommonValuesFile}
	if overlay != "" {
		files = append(files, overlayFile(overlay))
	}
	files = append(files, appFiles...)

	m := &Merged{Overlay: overlay, Values: map[string]any{}}
	var errs []error
	for _, f := range files {
		l, err := readLayer(repo, f)
		if errors.Is(err, fs.ErrNotExist) {
			if overlay != "" && f == overlayFile(overlay) {
				return nil, &Error{File: f, Reason: fmt.Sprintf("env-overlay %q has no env-values.yaml", overlay)}
			}
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.Layers = append(m.Layers, *l)
		mergeInto(m.Values, l.Values)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// readLayer reads and parses one values file. A missing file returns an error wrapping
// fs.ErrNotExist; bad YAML returns an *Error with the file and line.
func readLayer(repo fs.FS, name string) (*Layer, error) {
	f, err := repo.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, &Error{File: name, Reason: "cannot open: " + err.Error()}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &Error{File: name, Reason: "is a directory, not a values file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxValuesFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", name, err)
	}
	if len(data) > MaxValuesFileSize {
		return nil, &Error{File: name, Reason: fmt.Sprintf("is larger than %d bytes", MaxValuesFileSize)}
	}

	// The reader Helm uses first: values get the types Helm templates expect, and its syntax
	// errors point at the right line more often than yaml.v3's.
	l := &Layer{File: name, Values: map[string]any{}}
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, yamlError(name, err)
	}
	// Then yaml.v3, for line numbers and to refuse duplicate keys, which the other ignores.
	var doc yaml3.Node
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return l, nil // empty file or only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml3.ScalarNode && root.Tag == "!!null" {
		return l, nil
	}
	if root.Kind != yaml3.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Reason: "values must be a mapping of keys to values, not a " + nodeKind(root)}
	}
	var scratch any
	if err := root.Decode(&scratch); err != nil {
		return nil, yamlError(name, err)
	}
	l.node = root
	if m, ok := raw.(map[string]any); ok {
		l.Values = m
	}
	return l, nil
}

func yamlError(file string, err error) error {
	var te *yaml3.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		var errs []error
		for _, m := range te.Errors {
			errs = append(errs, yamlError(file, errors.New("yaml: "+m)))
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	first, _, _ := strings.Cut(msg, "\n")
	if m := yamlLineRE.FindStringSubmatch(first); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Reason: "invalid YAML: " + m[2]}
	}
	return &Error{File: file, Reason: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func nodeKind(n *yaml3.Node) string {
	switch n.Kind {
	case yaml3.SequenceNode:
		return "list"
	case yaml3.ScalarNode:
		return "scalar " + strconv.Quote(n.Value)
	case yaml3.AliasNode:
		return "alias"
	}
	return "document"
}

// mergeInto merges src into dst as Helm merges values files.
func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
			nm := map[string]any{}
			mergeInto(nm, sm)
			dst[k] = nm
			continue
		}
		dst[k] = deepCopy(v)
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = deepCopy(x)
		}
		return s
	}
	return v
}

// withoutNulls returns a copy of v without null map entries: in a values file null means
// "delete this key", which a schema would otherwise call a type error.
func withoutNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			if x != nil {
				m[k] = withoutNulls(x)
			}
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = withoutNulls(x)
		}
		return s
	}
	return v
}

// lineOf finds the line of the key or item at path under the mapping n, or of the deepest
// part of path that exists; 0 if n is nil.
func lineOf(n *yaml3.Node, path []string) int {
	if n == nil {
		return 0
	}
	line := n.Line
	for _, p := range path {
		for n.Kind == yaml3.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml3.MappingNode:
			var next *yaml3.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, next = n.Content[i].Line, n.Content[i+1]
				}
			}
			if next == nil {
				return line
			}
			n = next
		case yaml3.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}
