// Package render turns one environment of a GlueOps-layout deployment-configurations
// repository into the Kubernetes objects gluebox applies: it merges the environment's values
// files (common → env-overlay → app base → app env), checks every file against the chart's
// values schema, renders the chart (by default the built-in app chart from package assets)
// with the Helm Go library, and refuses objects an app may not create.
//
// It is pure: no cluster, no network, no state; the same repository content and Options give
// the same Result, byte for byte. The GitOps engine imports it; so may the CLI, to check a
// repository offline.
//
// An env folder may instead hold plain manifests or a kustomization.yaml (see SourceOf); the
// same checks apply to what they produce.
package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/gluebox/gluebox/assets"
)

// Labels and annotations the renderer puts on every object.
const (
	AppLabel         = "gluebox.dev/app"
	EnvLabel         = "gluebox.dev/env"
	CommitLabel      = "gluebox.dev/commit"
	CommitAnnotation = "gluebox.dev/commit"
	ManagedByLabel   = "app.kubernetes.io/managed-by"
	ManagedByValue   = "gluebox"
)

// ReservedValuesKey is the top-level values key the renderer fills with app, env, namespace,
// domain, commit and registry for the chart; values files may not set it.
const ReservedValuesKey = "gluebox"

// Options selects what to render. App and Env are required; the zero value of every other
// field means something.
type Options struct {
	// App is the folder under apps/.
	App string
	// Env is the folder under apps/<app>/envs/.
	Env string
	// Overlay names the env-overlay; "" chooses it with OverlayFor, "-" uses none.
	Overlay string
	// Domain is the DNS suffix of default hostnames, <app>-<env>.<Domain>; "" means an
	// enabled ingress must name its hosts.
	Domain string
	// Commit is the deployment-configurations commit being rendered, put on every object as
	// label (first 63 characters) and annotation; "" puts neither.
	Commit string
	// Registry is the host[:port] of the built-in registry, used when image.registry is unset.
	Registry string
	// Chart is the chart to render, with Chart.yaml at its root; nil means assets.AppChart().
	Chart fs.FS
}

// Result is one rendered environment.
type Result struct {
	App       string `json:"app"`
	Env       string `json:"env"`
	Namespace string `json:"namespace"`
	// Source says how the env folder was rendered.
	Source Source `json:"source"`
	// Merged holds the values files used and their merge, before chart defaults. Pass
	// Merged.Values to kubesync.BindingsFromValues for the externalSecret bindings. Nil unless
	// Source is SourceChart.
	Merged *Merged `json:"merged"`
	// Objects are the rendered objects, all in Namespace, sorted by kind then name.
	Objects []*unstructured.Unstructured `json:"-"`
	// Manifest is Objects as a YAML stream, for history and display.
	Manifest []byte `json:"-"`
	// Digest is "sha256:<hex>" of the canonical JSON of Objects without the commit label and
	// annotation: two commits that change nothing for this environment have the same Digest.
	Digest string `json:"digest"`
}

var commitRE = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)

// Render renders app's env in the repository repo. Bad input gets an *Error (or several,
// joined) naming the file, line and key where it applies.
func Render(repo fs.FS, opts Options) (*Result, error) {
	if err := ValidateNames(opts.App, opts.Env); err != nil {
		return nil, err
	}
	if opts.Commit != "" && !commitRE.MatchString(opts.Commit) {
		return nil, &Error{Reason: fmt.Sprintf("commit %q is not a hexadecimal commit id", opts.Commit)}
	}
	if opts.Domain != "" {
		if errs := validation.IsDNS1123Subdomain(opts.Domain); len(errs) > 0 {
			return nil, &Error{Reason: fmt.Sprintf("domain %q is invalid: %s", opts.Domain, strings.Join(errs, "; "))}
		}
	}
	ns := Namespace(opts.App, opts.Env)

	src, err := SourceOf(repo, opts.App, opts.Env)
	if err != nil {
		return nil, err
	}
	var (
		objs   []*unstructured.Unstructured
		merged *Merged
	)
	switch src {
	case SourceChart:
		merged, objs, err = renderChart(repo, opts, ns)
	case SourceKustomize:
		objs, err = buildKustomization(repo, opts.App, opts.Env)
	case SourceManifests:
		objs, err = readManifests(repo, envDir(opts.App, opts.Env))
	}
	if err != nil {
		return nil, err
	}
	if err := admit(objs, ns); err != nil {
		return nil, err
	}
	for _, o := range objs {
		stamp(o, opts)
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if a.GetKind() != b.GetKind() {
			return a.GetKind() < b.GetKind()
		}
		if a.GetAPIVersion() != b.GetAPIVersion() {
			return a.GetAPIVersion() < b.GetAPIVersion()
		}
		return a.GetName() < b.GetName()
	})

	res := &Result{App: opts.App, Env: opts.Env, Namespace: ns, Source: src, Merged: merged, Objects: objs}
	if res.Manifest, err = manifest(objs); err != nil {
		return nil, err
	}
	if res.Digest, err = digest(objs); err != nil {
		return nil, err
	}
	return res, nil
}

// renderChart merges the values files and renders the chart with them.
func renderChart(repo fs.FS, opts Options, ns string) (*Merged, []*unstructured.Unstructured, error) {
	chartFS := opts.Chart
	if chartFS == nil {
		chartFS = assets.AppChart()
	}
	chrt, err := loadChart(chartFS)
	if err != nil {
		return nil, nil, err
	}
	merged, err := MergeValues(repo, opts.App, opts.Env, opts.Overlay)
	if err != nil {
		return nil, nil, err
	}
	schema, err := checkLayers(chrt, merged.Layers)
	if err != nil {
		return nil, nil, err
	}

	vals := deepCopy(merged.Values).(map[string]any)
	vals[ReservedValuesKey] = map[string]any{
		"app": opts.App, "env": opts.Env, "namespace": ns,
		"domain": opts.Domain, "commit": opts.Commit, "registry": opts.Registry,
	}
	// Helm's own schema check is skipped: it would follow remote $refs over the network, and
	// the one below says which key is wrong.
	top, err := chartutil.ToRenderValuesWithSchemaValidation(chrt, vals, chartutil.ReleaseOptions{
		Name: opts.App, Namespace: ns, IsInstall: true, Revision: 1,
	}, nil, true)
	if err != nil {
		return nil, nil, &Error{Reason: "merged values: " + strings.TrimSpace(err.Error())}
	}
	if schema != nil {
		final, _ := top["Values"].(chartutil.Values)
		if errs := schema.check(&Layer{File: "", Values: final.AsMap()}); len(errs) > 0 {
			for _, e := range errs {
				e.(*Error).Reason = "after merging with the chart defaults: " + e.(*Error).Reason
			}
			return nil, nil, errors.Join(errs...)
		}
	}
	files, err := engine.Render(chrt, top)
	if err != nil {
		return nil, nil, &Error{Reason: "chart: " + strings.TrimSpace(err.Error())}
	}
	objs, err := decodeRendered(chrt.Name(), files)
	return merged, objs, err
}

// checkLayers checks each values file on its own, so that an error names the file and line,
// and returns the chart's compiled schema (nil if it has none).
func checkLayers(chrt *chart.Chart, layers []Layer) (*valuesSchema, error) {
	var errs []error
	for i := range layers {
		l := &layers[i]
		if _, ok := l.Values[ReservedValuesKey]; ok {
			errs = append(errs, &Error{File: l.File, Line: lineOf(l.node, []string{ReservedValuesKey}),
				Key: ReservedValuesKey, Reason: "is reserved: gluebox sets it when it renders"})
		}
	}
	var s *valuesSchema
	if len(chrt.Schema) > 0 {
		var err error
		if s, err = compileSchema(chrt.Schema); err != nil {
			return nil, err
		}
		for i := range layers {
			errs = append(errs, s.check(&layers[i])...)
		}
	}
	return s, errors.Join(errs...)
}

// loadChart reads a chart from a file system with Chart.yaml at its root.
func loadChart(fsys fs.FS) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("cannot load chart: %w", err)
	}
	return c, nil
}

// decodeRendered splits the rendered templates into objects, in template name order.
func decodeRendered(chartName string, files map[string]string) ([]*unstructured.Unstructured, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" || !strings.Contains(n, "/templates/") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		objs, err := decodeStream("chart "+strings.TrimPrefix(n, chartName+"/"), []byte(files[n]))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// stamp puts the app, env and commit on o's metadata. Only metadata: a commit label on pod
// templates would restart every pod on every commit of the repository.
func stamp(o *unstructured.Unstructured, opts Options) {
	labels := o.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[AppLabel] = opts.App
	labels[EnvLabel] = opts.Env
	labels[ManagedByLabel] = ManagedByValue
	if opts.Commit != "" {
		c := strings.ToLower(opts.Commit)
		if len(c) > validation.LabelValueMaxLength {
			c = c[:validation.LabelValueMaxLength]
		}
		labels[CommitLabel] = c
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[CommitAnnotation] = strings.ToLower(opts.Commit)
		o.SetAnnotations(ann)
	}
	o.SetLabels(labels)
}

func manifest(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("cannot encode %s/%s: %w", o.GetKind(), o.GetName(), err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

// digest hashes the canonical form of objs: one line of JSON (keys sorted) per object, in
// order, without the commit stamp.
func digest(objs []*unstructured.Unstructured) (string, error) {
	h := sha256.New()
	for _, o := range objs {
		c := o.DeepCopy()
		if l := c.GetLabels(); l != nil {
			delete(l, CommitLabel)
			c.SetLabels(l)
		}
		if a := c.GetAnnotations(); a != nil {
			delete(a, CommitAnnotation)
			c.SetAnnotations(a)
		}
		js, err := json.Marshal(c.Object)
		if err != nil {
			return "", fmt.Errorf("cannot encode %s/%s: %w", o.GetKind(), o.GetName(), err)
		}
		h.Write(js)
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
