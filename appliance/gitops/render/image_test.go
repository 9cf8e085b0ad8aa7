package render

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// resolver is a ResolveTag that records its calls and answers from a table.
type resolver struct {
	answers map[string]string // "repository tag" → result
	err     error
	calls   []string
}

func (r *resolver) resolve(repository, tag string) (string, error) {
	r.calls = append(r.calls, repository+" "+tag)
	if r.err != nil {
		return "", r.err
	}
	return r.answers[repository+" "+tag], nil
}

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
)

// TestResolveTagChangesDigest checks that a new build of the same tag renders a new image and
// so a new Digest.
func TestResolveTagChangesDigest(t *testing.T) {
	repo := openRepo(t, scenariosDir+"/minimal")
	render := func(digest string) *Result {
		t.Helper()
		r := &resolver{answers: map[string]string{"hello main": digest}}
		res, err := Render(repo, Options{App: "hello", Env: "dev", Domain: testDomain, Commit: testCommit, Registry: testRegistry, ResolveTag: r.resolve})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"hello main"}, r.calls); d != "" {
			t.Errorf("ResolveTag calls (-want +got):\n%s", d)
		}
		want := testRegistry + "/hello@" + digest
		if res.Image != want || containerImage(t, res, "hello") != want {
			t.Errorf("Image %q, container image %q; want %q", res.Image, containerImage(t, res, "hello"), want)
		}
		if tag := res.Merged.Values["image"].(map[string]any)["tag"]; tag != "main" {
			t.Errorf("Merged.Values image.tag = %v; want the file's main", tag)
		}
		return res
	}
	a, a2, b := render(digestA), render(digestA), render(digestB)
	if a.Digest != a2.Digest {
		t.Errorf("same resolution, different digests: %s != %s", a.Digest, a2.Digest)
	}
	if a.Digest == b.Digest {
		t.Errorf("digest %s did not change with the resolved image", a.Digest)
	}
	plain, err := Render(repo, Options{App: "hello", Env: "dev", Domain: testDomain, Commit: testCommit, Registry: testRegistry})
	if err != nil {
		t.Fatal(err)
	}
	if want := testRegistry + "/hello:main"; plain.Image != want {
		t.Errorf("Image without ResolveTag = %q; want %q", plain.Image, want)
	}
}

func TestResolveTag(t *testing.T) {
	const base = "apps/web/base/base-values.yaml"
	tests := []struct {
		name      string
		repo      fstest.MapFS
		opts      Options // App web, Env prod unless set
		answers   map[string]string
		wantCalls []string
		wantImage string
	}{
		{
			name:      "repository and tag from the values",
			repo:      repoFS(okEnv, "image: {repository: acme/web, tag: v1}\ndeployment: {enabled: true}\n"),
			answers:   map[string]string{"acme/web v1": digestA},
			wantCalls: []string{"acme/web v1"},
			wantImage: testRegistry + "/acme/web@" + digestA,
		},
		{
			name:      "a tag may resolve to another tag",
			repo:      repoFS(okEnv, okValues),
			answers:   map[string]string{"web v1": "v1-42"},
			wantCalls: []string{"web v1"},
			wantImage: testRegistry + "/web:v1-42",
		},
		{
			name:      "a number tag is passed as the chart formats it",
			repo:      repoFS(okEnv, "image: {tag: 2024.10}\ndeployment: {enabled: true}\n"),
			answers:   map[string]string{"web 2024.1": digestA},
			wantCalls: []string{"web 2024.1"},
			wantImage: testRegistry + "/web@" + digestA,
		},
		{
			name:      "an empty tag is passed, for the resolver to choose",
			repo:      repoFS(okEnv, "deployment: {enabled: true}\n"),
			answers:   map[string]string{"web ": digestA},
			wantCalls: []string{"web "},
			wantImage: testRegistry + "/web@" + digestA,
		},
		{
			name:      "without Options.Registry the image has no registry",
			repo:      repoFS(okEnv, okValues),
			opts:      Options{App: "web", Env: "prod", Registry: "-"},
			answers:   map[string]string{"web v1": digestA},
			wantCalls: []string{"web v1"},
			wantImage: "web@" + digestA,
		},
		{
			name:      "another registry is not resolved",
			repo:      repoFS(okEnv, "image: {registry: ghcr.io/, repository: acme/web, tag: v1}\ndeployment: {enabled: true}\n"),
			wantImage: "ghcr.io/acme/web:v1",
		},
		{
			name: "deployment disabled by default is not resolved",
			repo: repoFS(okEnv, "image: {tag: v1}\nservice: {enabled: true}\n"),
		},
		{
			name: "deployment disabled by a later file is not resolved",
			repo: repoFS(base, okValues, okEnv, "deployment: {enabled: false}\n"),
		},
		{
			name: "manifests are not resolved",
			repo: repoFS("apps/web/envs/prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
		},
		{
			name:      "a preview is resolved",
			repo:      repoFS(base, okValues),
			opts:      Options{App: "web", Env: "pr-3", Preview: 3},
			answers:   map[string]string{"web v1": digestB},
			wantCalls: []string{"web v1"},
			wantImage: testRegistry + "/web@" + digestB,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.App == "" {
				opts.App, opts.Env = "web", "prod"
			}
			switch opts.Registry {
			case "":
				opts.Registry = testRegistry
			case "-":
				opts.Registry = ""
			}
			opts.Domain = testDomain
			r := &resolver{answers: tt.answers}
			opts.ResolveTag = r.resolve
			res, err := Render(tt.repo, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.wantCalls, r.calls); d != "" {
				t.Errorf("ResolveTag calls (-want +got):\n%s", d)
			}
			if res.Image != tt.wantImage {
				t.Errorf("Image = %q; want %q", res.Image, tt.wantImage)
			}
			if tt.wantImage != "" && containerImage(t, res, "web") != tt.wantImage {
				t.Errorf("container image = %q; want %q", containerImage(t, res, "web"), tt.wantImage)
			}
		})
	}
}

func TestResolveTagError(t *testing.T) {
	errNoBuild := errors.New("no build of web:v1 yet")
	tests := []struct {
		name     string
		repo     fstest.MapFS
		wantFile string
		wantLine int
	}{
		{
			name:     "names the file that set the tag",
			repo:     repoFS("apps/web/base/base-values.yaml", "deployment:\n  enabled: true\nimage:\n  port: 80\n  tag: v1\n", okEnv, "image: {port: 81}\n"),
			wantFile: "apps/web/base/base-values.yaml", wantLine: 5,
		},
		{
			name:     "the last file that sets it wins",
			repo:     repoFS("common/common-values.yaml", "image: {tag: v0}\n", okEnv, "\n"+okValues),
			wantFile: okEnv, wantLine: 2,
		},
		{
			name: "the chart default has no file",
			repo: repoFS("common/common-values.yaml", "image: {tag: v0}\n", okEnv, "image: null\ndeployment: {enabled: true}\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &resolver{err: errNoBuild}
			res, err := Render(tt.repo, Options{App: "web", Env: "prod", Domain: testDomain, Registry: testRegistry, ResolveTag: r.resolve})
			if err == nil {
				t.Fatalf("Render succeeded with %d objects; want the resolver's error", len(res.Objects))
			}
			if res != nil {
				t.Errorf("Render returned a result with its error")
			}
			t.Logf("error: %v", err)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			want := &Error{File: tt.wantFile, Line: tt.wantLine, Key: "image.tag", Reason: errNoBuild.Error()}
			if d := cmp.Diff(want.Error(), e.Error()); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
			if e.File != tt.wantFile || e.Line != tt.wantLine {
				t.Errorf("error at %s:%d; want %s:%d", e.File, e.Line, tt.wantFile, tt.wantLine)
			}
			if !errors.Is(err, errNoBuild) {
				t.Errorf("errors.Is(%v, the resolver's error) is false", err)
			}
		})
	}
}
