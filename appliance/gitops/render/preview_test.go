package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// scenarioWith is the scenario sc as an in-memory repository, plus path → content pairs.
func scenarioWith(t *testing.T, sc string, files ...string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(filepath.Join(scenariosDir, sc)), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(scenariosDir, sc, p))
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range repoFS(files...) {
		m[k] = v
	}
	return m
}

// object returns the object kind/name of res, failing the test if there is none.
func object(t *testing.T, res *Result, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range res.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s/%s among the rendered objects:\n%s", kind, name, res.Manifest)
	return nil
}

// containerImage is the image of the first container of the Deployment named name.
func containerImage(t *testing.T, res *Result, name string) string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(object(t, res, "Deployment", name).Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		t.Fatalf("Deployment/%s has no containers", name)
	}
	img, _ := cs[0].(map[string]any)["image"].(string)
	return img
}

func TestPreviewEnv(t *testing.T) {
	for _, n := range []int{1, 7, 42, 123456789} {
		env := PreviewEnv(n)
		if want := fmt.Sprintf("pr-%d", n); env != want {
			t.Errorf("PreviewEnv(%d) = %q; want %q", n, env, want)
		}
		if got, ok := ParsePreviewEnv(env); !ok || got != n {
			t.Errorf("ParsePreviewEnv(%q) = %d, %v; want %d, true", env, got, ok, n)
		}
	}
	for _, env := range []string{"", "pr-", "pr-0", "pr-01", "pr--1", "pr-+1", "pr-1a", "pr-1 ", "PR-1", "prod", "previews", "pr-99999999999999999999"} {
		if n, ok := ParsePreviewEnv(env); ok {
			t.Errorf("ParsePreviewEnv(%q) = %d, true; want false", env, n)
		}
	}
	if err := ValidateNames("web", PreviewsEnv); err == nil {
		t.Errorf("ValidateNames accepts env %q", PreviewsEnv)
	}
}

const prFile = "apps/web/envs/previews/pull-request-number/7/values.yaml"

func TestMergePreviewValues(t *testing.T) {
	repo := scenarioWith(t, "layered", prFile, "deployment:\n  replicas: 4\ncommonLabels:\n  pr: \"7\"\n")
	files := func(m *Merged) []string {
		var out []string
		for _, l := range m.Layers {
			out = append(out, l.File)
		}
		return out
	}

	m, err := MergePreviewValues(repo, "web", 7, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"common/common-values.yaml",
		"env-overlays/nonprod/env-values.yaml",
		"apps/web/base/base-values.yaml",
		"apps/web/envs/previews/common/values.yaml",
		prFile,
	}
	if d := cmp.Diff(want, files(m)); d != "" {
		t.Errorf("layers (-want +got):\n%s", d)
	}
	if m.Overlay != NonProdOverlay {
		t.Errorf("overlay = %q; want %q", m.Overlay, NonProdOverlay)
	}
	if got := m.Values["deployment"].(map[string]any)["replicas"]; got != float64(4) {
		t.Errorf("deployment.replicas = %v; want 4 from the pull request's file", got)
	}
	if got := m.Values["commonLabels"]; !cmp.Equal(got, map[string]any{"team": "platform", "tier": "nonprod", "pr": "7"}) {
		t.Errorf("commonLabels = %v", got)
	}

	// Another pull request has no file of its own: previews/common is the last layer.
	m, err = MergePreviewValues(repo, "web", 8, "")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want[:4], files(m)); d != "" {
		t.Errorf("layers of pr 8 (-want +got):\n%s", d)
	}
	if got := m.Values["deployment"].(map[string]any)["replicas"]; got != float64(1) {
		t.Errorf("deployment.replicas of pr 8 = %v; want 1 from previews/common", got)
	}

	// An overlay named previews wins over nonprod; an explicit overlay wins over both.
	repo["env-overlays/previews/env-values.yaml"] = &fstest.MapFile{Data: []byte("commonLabels: {tier: preview}\n")}
	for overlay, want := range map[string]string{"": "previews", "prod": "prod", "-": ""} {
		m, err := MergePreviewValues(repo, "web", 7, overlay)
		if err != nil {
			t.Fatal(err)
		}
		if m.Overlay != want {
			t.Errorf("MergePreviewValues(overlay %q) used overlay %q; want %q", overlay, m.Overlay, want)
		}
	}
}

func TestRenderPreview(t *testing.T) {
	repo := scenarioWith(t, "layered", prFile, "deployment:\n  replicas: 4\n")
	var calls []string
	opts := Options{App: "web", Env: "pr-7", Preview: 7, Domain: testDomain, Commit: testCommit, Registry: testRegistry,
		ResolveTag: func(repository, tag string) (string, error) {
			calls = append(calls, repository+" "+tag)
			return "sha256:" + strings.Repeat("7", 64), nil
		}}
	res, err := Render(repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("# source: %s\n# namespace: %s\n# image: %s\n# digest: %s\n%s", res.Source, res.Namespace, res.Image, res.Digest, res.Manifest)
	golden(t, "layered/web-pr-7.render.yaml", []byte(out))

	if res.Source != SourceChart || res.Namespace != "web-pr-7" || res.Env != "pr-7" {
		t.Errorf("source, namespace, env = %s, %s, %s; want chart, web-pr-7, pr-7", res.Source, res.Namespace, res.Env)
	}
	if d := cmp.Diff([]string{"acme/web v1.4.2"}, calls); d != "" {
		t.Errorf("ResolveTag calls (-want +got):\n%s", d)
	}
	wantImage := testRegistry + "/acme/web@sha256:" + strings.Repeat("7", 64)
	if res.Image != wantImage || containerImage(t, res, "web") != wantImage {
		t.Errorf("image = %q, container image %q; want %q", res.Image, containerImage(t, res, "web"), wantImage)
	}
	if got, _, _ := unstructured.NestedInt64(object(t, res, "Deployment", "web").Object, "spec", "replicas"); got != 4 {
		t.Errorf("replicas = %d; want 4", got)
	}
	rules, _, _ := unstructured.NestedSlice(object(t, res, "Ingress", "web-public").Object, "spec", "rules")
	if len(rules) != 1 || rules[0].(map[string]any)["host"] != "web-pr-7."+testDomain {
		t.Errorf("ingress rules = %v; want one for host web-pr-7.%s", rules, testDomain)
	}
	for _, o := range res.Objects {
		if o.GetLabels()[EnvLabel] != "pr-7" {
			t.Errorf("%s/%s has env label %q; want pr-7", o.GetKind(), o.GetName(), o.GetLabels()[EnvLabel])
		}
	}

	// An env folder named like the preview is not read: a preview is always the chart.
	repo["apps/web/envs/pr-7/cm.yaml"] = &fstest.MapFile{Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")}
	again, err := Render(repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("an env folder pr-7 changed the preview's render")
	}
}

func TestRenderPreviewBadInput(t *testing.T) {
	repo := scenarioWith(t, "layered")
	tests := []struct {
		name string
		repo fstest.MapFS
		opts Options
		want string
	}{
		{"env does not match", repo, Options{App: "web", Env: "pr-8", Preview: 7},
			`env "pr-8" is not the env of preview 7: it must be "pr-7"`},
		{"env missing", repo, Options{App: "web", Preview: 7}, `env "" is not the env of preview 7`},
		{"env is previews", repo, Options{App: "web", Env: "previews", Preview: 7}, `must be "pr-7"`},
		{"negative number", repo, Options{App: "web", Env: "pr--1", Preview: -1}, "preview -1 is invalid"},
		{"no such app", repo, Options{App: "api", Env: "pr-7", Preview: 7}, `apps/api: there is no app "api" to preview`},
		{"namespace too long", repo, Options{App: strings.Repeat("a", 59), Env: "pr-7", Preview: 7}, "is 64 characters long, the limit is 63"},
		{"broken YAML in the pull request's file names file and line",
			scenarioWith(t, "layered", prFile, "deployment:\n  replicas: [1\n"), Options{App: "web", Env: "pr-7", Preview: 7},
			prFile + ":2: invalid YAML"},
		{"unknown key in previews/common names file and line",
			scenarioWith(t, "layered", "apps/web/envs/previews/common/values.yaml", "deployment:\n  replicas: 1\n  replcas: 2\n"),
			Options{App: "web", Env: "pr-7", Preview: 7},
			"apps/web/envs/previews/common/values.yaml:3: deployment.replcas: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Domain = testDomain
			res, err := Render(tt.repo, tt.opts)
			if err == nil {
				t.Fatalf("Render succeeded with %d objects; want an error containing %q", len(res.Objects), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\ndoes not contain\n  %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v is not an *Error", err)
			}
			if strings.Contains(tt.name, "file and line") && (e == nil || e.File == "" || e.Line == 0) {
				t.Errorf("error %v is not an *Error with file and line", err)
			}
		})
	}
}
