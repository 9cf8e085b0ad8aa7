package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Source says how an env folder is rendered.
type Source string

// The three kinds of env folder, chosen by SourceOf.
const (
	// SourceChart: values.yaml (or no manifests at all), rendered with the chart.
	SourceChart Source = "chart"
	// SourceKustomize: a kustomization.yaml, built with the kustomize Go library.
	SourceKustomize Source = "kustomize"
	// SourceManifests: plain *.yaml, *.yml or *.json manifests, applied as they are.
	SourceManifests Source = "manifests"
)

var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// SourceOf looks at the files directly in apps/<app>/envs/<env>:
//
//   - values.yaml → SourceChart (it may not sit next to a kustomization or other manifests);
//   - kustomization.yaml, kustomization.yml or Kustomization → SourceKustomize;
//   - any other *.yaml, *.yml or *.json → SourceManifests;
//   - none of them → SourceChart with the common, overlay and base values only.
//
// Sub-folders are not read, except by kustomize when a kustomization refers to them.
func SourceOf(repo fs.FS, app, env string) (Source, error) {
	dir := envDir(app, env)
	ents, err := fs.ReadDir(repo, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &Error{File: dir, Reason: fmt.Sprintf("app %q has no environment %q", app, env)}
	}
	if err != nil {
		return "", fmt.Errorf("cannot list %s: %w", dir, err)
	}
	var values, kust bool
	var manifests []string
	for _, e := range ents {
		n := e.Name()
		switch {
		case e.IsDir():
		case n == "values.yaml":
			values = true
		case isKustomization(n):
			kust = true
		case isManifest(n):
			manifests = append(manifests, n)
		}
	}
	switch {
	case values && (kust || len(manifests) > 0):
		other := manifests
		if kust {
			other = append(other, "a kustomization")
		}
		return "", &Error{File: dir, Reason: fmt.Sprintf(
			"holds values.yaml and %s: an env folder is either chart values or manifests, move one of them", strings.Join(other, ", "))}
	case kust:
		return SourceKustomize, nil
	case len(manifests) > 0:
		return SourceManifests, nil
	}
	return SourceChart, nil
}

func isKustomization(n string) bool {
	for _, k := range kustomizationNames {
		if n == k {
			return true
		}
	}
	return false
}

func isManifest(n string) bool {
	switch path.Ext(n) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// MaxManifestBytes bounds the files read for one env folder of manifests or one app folder
// given to kustomize.
const MaxManifestBytes = 16 << 20

// readManifests decodes every manifest file directly in dir, in name order.
func readManifests(repo fs.FS, dir string) ([]*unstructured.Unstructured, error) {
	ents, err := fs.ReadDir(repo, dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	var errs []error
	total := 0
	for _, e := range ents {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		name := path.Join(dir, e.Name())
		data, err := fs.ReadFile(repo, name)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", name, err)
		}
		if total += len(data); total > MaxManifestBytes {
			return nil, &Error{File: dir, Reason: fmt.Sprintf("manifests are larger than %d bytes", MaxManifestBytes)}
		}
		objs, err := decodeStream(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, objs...)
	}
	return out, errors.Join(errs...)
}

var docSep = regexp.MustCompile(`^---(\s.*)?$`)

// decodeStream decodes a YAML stream (or one JSON document) into objects; errors name file
// and line. Empty documents and null are skipped; a List is expanded.
func decodeStream(file string, data []byte) ([]*unstructured.Unstructured, error) {
	type doc struct {
		line int
		data []byte
	}
	var docs []doc
	cur := doc{line: 1}
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		if docSep.Match(bytes.TrimRight(line, "\r\n")) {
			docs = append(docs, cur)
			cur = doc{line: i + 2}
			continue
		}
		cur.data = append(cur.data, line...)
	}
	docs = append(docs, cur)

	var out []*unstructured.Unstructured
	for _, d := range docs {
		if len(bytes.TrimSpace(stripComments(d.data))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(d.data)
		if err != nil {
			e := yamlError(file, err)
			var re *Error
			if errors.As(e, &re) && re.Line > 0 {
				re.Line += d.line - 1
			} else if re != nil {
				re.Line = d.line
			}
			return nil, e
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(js); err != nil {
			return nil, &Error{File: file, Line: d.line, Reason: "not a Kubernetes object: " + err.Error()}
		}
		if o.IsList() {
			l, err := o.ToList()
			if err != nil {
				return nil, &Error{File: file, Line: d.line, Reason: "invalid List: " + err.Error()}
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

var remoteRE = regexp.MustCompile(`://|^git@|^(github\.com|gitlab\.com|bitbucket\.org)/|\?ref=|^ssh:`)

// buildKustomization builds apps/<app>/envs/<env> with kustomize, offline: the app folder is
// copied into memory and every resources, bases and components entry must be a file or
// folder inside it (remote bases and paths outside the app folder are refused, because
// kustomize would otherwise try to clone them). Plugins, exec functions and helmCharts are off.
func buildKustomization(repo fs.FS, app, env string) ([]*unstructured.Unstructured, error) {
	appDir := path.Join(AppsDir, app)
	mem := filesys.MakeFsInMemory()
	total := 0
	var kusts []string
	err := fs.WalkDir(repo, appDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return mem.MkdirAll("/" + p)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		data, err := fs.ReadFile(repo, p)
		if err != nil {
			return err
		}
		if total += len(data); total > MaxManifestBytes {
			return &Error{File: appDir, Reason: fmt.Sprintf("app folder is larger than %d bytes", MaxManifestBytes)}
		}
		if isKustomization(path.Base(p)) {
			kusts = append(kusts, p)
		}
		return mem.WriteFile("/"+p, data)
	})
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("cannot read %s: %w", appDir, err)
	}
	sort.Strings(kusts)
	var errs []error
	for _, k := range kusts {
		errs = append(errs, checkKustomization(repo, k, mem)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	dir := envDir(app, env)
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/"+dir)
	if err != nil {
		return nil, &Error{File: dir, Reason: "kustomize: " + strings.ReplaceAll(err.Error(), "/"+AppsDir+"/", AppsDir+"/")}
	}
	out := make([]*unstructured.Unstructured, 0, rm.Size())
	for _, r := range rm.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			return nil, &Error{File: dir, Reason: "kustomize output: " + err.Error()}
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(js); err != nil {
			return nil, &Error{File: dir, Reason: "kustomize output: " + err.Error()}
		}
		out = append(out, o)
	}
	return out, nil
}

// checkKustomization refuses references kustomize would resolve over the network or outside
// the app folder.
func checkKustomization(repo fs.FS, file string, mem filesys.FileSystem) []error {
	data, err := fs.ReadFile(repo, file)
	if err != nil {
		return []error{fmt.Errorf("cannot read %s: %w", file, err)}
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return []error{yamlError(file, err)}
	}
	dir := path.Dir(file)
	var errs []error
	for _, field := range []string{"resources", "bases", "components", "crds"} {
		list, _ := k[field].([]any)
		for i, v := range list {
			s, _ := v.(string)
			key := field + "[" + strconv.Itoa(i) + "]"
			switch {
			case s == "":
				errs = append(errs, &Error{File: file, Key: key, Reason: "must be a path"})
			case remoteRE.MatchString(s):
				errs = append(errs, &Error{File: file, Key: key, Reason: fmt.Sprintf(
					"%q is remote: gluebox renders offline, put the manifests in the repository", s)})
			case !mem.Exists("/" + path.Join(dir, s)):
				errs = append(errs, &Error{File: file, Key: key, Reason: fmt.Sprintf(
					"%q does not exist inside apps/%s", s, strings.Split(dir, "/")[1])})
			}
		}
	}
	return errs
}
