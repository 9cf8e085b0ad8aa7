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
//
// A pull-request preview (Options.Preview) is rendered like an environment "pr-<n>" that has
// no env folder: the chart with the values of apps/<app>/envs/previews (see
// MergePreviewValues). Image tags may be resolved to digests by the caller
// (Options.ResolveTag), which keeps the lookup, and any network, outside this package.
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
	// Env is the folder under apps/<app>/envs/, or PreviewEnv(Preview) for a preview.
	Env string
	// Preview is the pull-request number of a preview environment; 0 means Env is an env
	// folder. A preview needs no env folder: it is always rendered with the chart, from the
	// values of MergePreviewValues, in the namespace Namespace(App, PreviewEnv(Preview)).
	Preview int
	// Overlay names the env-overlay; "" chooses it with OverlayFor (for a preview,
	// OverlayFor(repo, "previews")), "-" uses none.
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
	// ResolveTag, if not nil, turns the image tag of a chart-rendered app whose deployment is
	// enabled and whose image is in the built-in registry (image.registry empty) into the tag
	// or "sha256:<hex>" digest the chart renders. It gets image.repository (the app name if
	// empty) and image.tag as a string, possibly "". An error stops the render and is
	// reported as an *Error at image.tag. Nil renders image.tag as it is.
	ResolveTag func(repository, tag string) (string, error)
}

// Result is one rendered environment.
type Result struct {
	App       string `json:"app"`
	Env       string `json:"env"`
	Namespace string `json:"namespace"`
	// Source says how the env folder was rendered.
	Source Source `json:"source"`
	// Merged holds the values files used and their merge, before chart defaults and before
	// ResolveTag. Pass Merged.Values to kubesync.BindingsFromValues for the externalSecret
	// bindings. Nil unless Source is SourceChart.
	Merged *Merged `json:"merged"`
	// Image is the container image the chart runs, "registry/repository:tag" or
	// "registry/repository@sha256:<hex>" (no registry if neither image.registry nor
	// Options.Registry is set), with the tag ResolveTag returned, built as the built-in chart
	// builds it. Empty unless Source is SourceChart and deployment.enabled is true.
	Image string `json:"image,omitempty"`
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
	if opts.Preview < 0 {
		return nil, &Error{Reason: fmt.Sprintf("preview %d is invalid: a pull-request number is positive", opts.Preview)}
	}
	if opts.Preview > 0 && opts.Env != PreviewEnv(opts.Preview) {
		return nil, &Error{Reason: fmt.Sprintf("env %q is not the env of preview %d: it must be %q",
			opts.Env, opts.Preview, PreviewEnv(opts.Preview))}
	}
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

	src := SourceChart
	if opts.Preview == 0 {
		var err error
		if src, err = SourceOf(repo, opts.App, opts.Env); err != nil {
			return nil, err
		}
	}
	var (
		objs   []*unstructured.Unstructured
		merged *Merged
		image  string
		err    error
	)
	switch src {
	case SourceChart:
		merged, objs, image, err = renderChart(repo, opts, ns)
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

	res := &Result{App: opts.App, Env: opts.Env, Namespace: ns, Source: src, Merged: merged, Image: image, Objects: objs}
	if res.Manifest, err = manifest(objs); err != nil {
		return nil, err
	}
	if res.Digest, err = digest(objs); err != nil {
		return nil, err
	}
	return res, nil
}

// renderChart merges the values files and renders the chart with them. It also returns the
// image of the deployment, "" if none.
func renderChart(repo fs.FS, opts Options, ns string) (*Merged, []*unstructured.Unstructured, string, error) {
	chartFS := opts.Chart
	if chartFS == nil {
		chartFS = assets.AppChart()
	}
	chrt, err := loadChart(chartFS)
	if err != nil {
		return nil, nil, "", err
	}
	var merged *Merged
	if opts.Preview > 0 {
		merged, err = MergePreviewValues(repo, opts.App, opts.Preview, opts.Overlay)
	} else {
		merged, err = MergeValues(repo, opts.App, opts.Env, opts.Overlay)
	}
	if err != nil {
		return nil, nil, "", err
	}
	schema, err := checkLayers(chrt, merged.Layers)
	if err != nil {
		return nil, nil, "", err
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
		return nil, nil, "", &Error{Reason: "merged values: " + strings.TrimSpace(err.Error())}
	}
	final, _ := top["Values"].(chartutil.Values)
	if schema != nil {
		if errs := schema.check(&Layer{File: "", Values: final.AsMap()}); len(errs) > 0 {
			for _, e := range errs {
				e.(*Error).Reason = "after merging with the chart defaults: " + e.(*Error).Reason
			}
			return nil, nil, "", errors.Join(errs...)
		}
	}
	image, err := resolveImage(final, merged.Layers, opts)
	if err != nil {
		return nil, nil, "", err
	}
	files, err := engine.Render(chrt, top)
	if err != nil {
		return nil, nil, "", &Error{Reason: "chart: " + strings.TrimSpace(err.Error())}
	}
	objs, err := decodeRendered(chrt.Name(), files)
	return merged, objs, image, err
}

// resolveImage works out the image the chart will run from its final values, as the
// built-in chart's "app.image" does, after replacing image.tag in vals with what
// opts.ResolveTag returns when the image is in the built-in registry. It returns "" when the
// deployment is disabled, and leaves a missing tag for the chart to report.
func resolveImage(vals map[string]any, layers []Layer, opts Options) (string, error) {
	deploy, _ := asMap(vals["deployment"])
	if enabled, _ := deploy["enabled"].(bool); !enabled {
		return "", nil
	}
	img, _ := asMap(vals["image"])
	reg, _ := img["registry"].(string)
	repository, _ := img["repository"].(string)
	if repository == "" {
		repository = opts.App
	}
	tag := valueString(img["tag"])
	if opts.ResolveTag != nil && reg == "" {
		resolved, err := opts.ResolveTag(repository, tag)
		if err != nil {
			e := &Error{Key: "image.tag", Reason: err.Error(), cause: err}
			e.File, e.Line = tagSetBy(layers)
			return "", e
		}
		withTag := make(map[string]any, len(img)+1)
		for k, v := range img {
			withTag[k] = v
		}
		withTag["tag"] = resolved
		vals["image"] = withTag
		tag = strings.TrimSpace(resolved)
	}
	if tag == "" {
		return "", nil
	}
	if reg == "" {
		reg = opts.Registry
	}
	ref := repository
	if reg != "" {
		ref = strings.TrimSuffix(reg, "/") + "/" + repository
	}
	if strings.HasPrefix(tag, "sha256:") {
		return ref + "@" + tag, nil
	}
	return ref + ":" + tag, nil
}

// tagSetBy finds the file and line of the image.tag in effect: the last layer that sets it,
// unless a later one deletes the whole image map. "" if the chart's default is in effect.
func tagSetBy(layers []Layer) (file string, line int) {
	for i := len(layers) - 1; i >= 0; i-- {
		v, ok := layers[i].Values["image"]
		if !ok {
			continue
		}
		img, isMap := v.(map[string]any)
		if !isMap {
			return "", 0 // image: null
		}
		if _, ok := img["tag"]; ok {
			return layers[i].File, lineOf(layers[i].node, []string{"image", "tag"})
		}
	}
	return "", 0
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case chartutil.Values:
		return m, true
	}
	return nil, false
}

// valueString formats a values scalar as the chart's toString does; null is "".
func valueString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return strings.TrimSpace(t)
	}
	return strings.TrimSpace(fmt.Sprint(v))
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
