package render

import (
	"errors"
	"fmt"
	goldenfile "github.com/gluebox/gluebox/appliance/internal/golden"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/gluebox/gluebox/assets"
)

// scenariosDir holds the sample deployment-configurations repositories, one per scenario.
const scenariosDir = "../../../testdata/deployment-configurations"

const (
	testDomain   = "apps.example.test"
	testCommit   = "0123456789abcdef0123456789abcdef01234567"
	testRegistry = "127.0.0.1:5000"
)

func openRepo(t *testing.T, dir string) fs.FS {
	t.Helper()
	repo, closeRepo, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRepo() })
	return repo
}

func scenarios(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(scenariosDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatalf("no scenarios under %s", scenariosDir)
	}
	return out
}

// golden compares got with testdata/golden/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, "golden/"+name, got)
}

func TestGoldenMergeAndRender(t *testing.T) {
	for _, sc := range scenarios(t) {
		repo := openRepo(t, filepath.Join(scenariosDir, sc))
		list, err := List(repo)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			t.Fatalf("scenario %s has no app environments", sc)
		}
		for _, ae := range list {
			t.Run(sc+"/"+ae.App+"/"+ae.Env, func(t *testing.T) {
				src, err := SourceOf(repo, ae.App, ae.Env)
				if err != nil {
					t.Fatal(err)
				}
				if src == SourceChart {
					m, err := MergeValues(repo, ae.App, ae.Env, "")
					if err != nil {
						t.Fatal(err)
					}
					golden(t, filepath.Join(sc, ae.App+"-"+ae.Env+".merged.yaml"), mustYAML(t, m))
				}

				res, err := Render(repo, Options{App: ae.App, Env: ae.Env, Domain: testDomain, Commit: testCommit, Registry: testRegistry})
				if err != nil {
					t.Fatal(err)
				}
				out := fmt.Sprintf("# source: %s\n# namespace: %s\n# digest: %s\n%s", res.Source, res.Namespace, res.Digest, res.Manifest)
				golden(t, filepath.Join(sc, ae.App+"-"+ae.Env+".render.yaml"), []byte(out))

				// Image is what the Deployment runs, built the same way in Go as in the chart.
				var deployed string
				for _, o := range res.Objects {
					if o.GetKind() == "Deployment" && src == SourceChart {
						deployed = containerImage(t, res, o.GetName())
					}
				}
				if res.Image != deployed {
					t.Errorf("Image = %q; the Deployment runs %q", res.Image, deployed)
				}
			})
		}
	}
}

func mustYAML(t *testing.T, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestList(t *testing.T) {
	repo := openRepo(t, filepath.Join(scenariosDir, "layered"))
	got, err := List(repo)
	if err != nil {
		t.Fatal(err)
	}
	want := []AppEnv{{"web", "prod"}, {"web", "stage"}, {"web", "uat"}, {"worker", "prod"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	empty, err := List(fstest.MapFS{})
	if err != nil || len(empty) != 0 {
		t.Errorf("List(empty repo) = %v, %v; want nothing, no error", empty, err)
	}
}

func TestOverlayFor(t *testing.T) {
	repo := openRepo(t, filepath.Join(scenariosDir, "layered"))
	for env, want := range map[string]string{"prod": "prod", "uat": "uat", "stage": "nonprod", "qa": "nonprod"} {
		got, err := OverlayFor(repo, env)
		if err != nil || got != want {
			t.Errorf("OverlayFor(%q) = %q, %v; want %q", env, got, err, want)
		}
	}
	onlyProd := fstest.MapFS{"env-overlays/prod/env-values.yaml": {Data: []byte("{}")}}
	if got, _ := OverlayFor(onlyProd, "stage"); got != "" {
		t.Errorf("OverlayFor(stage) without nonprod = %q; want none", got)
	}
	if got, _ := OverlayFor(fstest.MapFS{}, "prod"); got != "" {
		t.Errorf("OverlayFor(prod) without overlays = %q; want none", got)
	}
}

// TestDigest checks that the digest follows content and ignores the commit.
func TestDigest(t *testing.T) {
	repo := openRepo(t, filepath.Join(scenariosDir, "minimal"))
	render := func(commit, domain string) string {
		t.Helper()
		res, err := Render(repo, Options{App: "hello", Env: "dev", Domain: domain, Commit: commit, Registry: testRegistry})
		if err != nil {
			t.Fatal(err)
		}
		return res.Digest
	}
	a, b := render(testCommit, testDomain), render("89abcdef", testDomain)
	if a != b {
		t.Errorf("digest changed with the commit only: %s != %s", a, b)
	}
	if c := render(testCommit, "other.test"); c == a {
		t.Errorf("digest did not change with the host")
	}
}

func TestBuiltinChartSchemaIsValid(t *testing.T) {
	data, err := fs.ReadFile(assets.AppChart(), "values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compileSchema(data); err != nil {
		t.Fatal(err)
	}
	// The chart's own defaults must pass its schema.
	l, err := readLayer(assets.AppChart(), "values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := compileSchema(data)
	if errs := s.check(l); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
}

// repoFS builds a repository from path → content pairs.
func repoFS(files ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i+1 < len(files); i += 2 {
		m[files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	return m
}

const okEnv = "apps/web/envs/prod/values.yaml"
const okValues = "image: {tag: v1}\ndeployment: {enabled: true}\n"

// chartWith is the built-in chart plus one extra template.
func chartWith(name, tpl string) fs.FS {
	m := fstest.MapFS{}
	fs.WalkDir(assets.AppChart(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := fs.ReadFile(assets.AppChart(), p)
			m[p] = &fstest.MapFile{Data: data}
		}
		return err
	})
	m["templates/"+name] = &fstest.MapFile{Data: []byte(tpl)}
	return m
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		repo  fstest.MapFS
		opts  Options
		want  []string // substrings of the error, in order of appearance is not required
		check func(t *testing.T, err error)
	}{
		{
			name: "broken YAML names file and line",
			repo: repoFS(okEnv, "image:\n  tag: v1\ndeployment:\n  enabled: true\n  replicas: [1\n"),
			want: []string{okEnv + ":5: invalid YAML: did not find expected ',' or ']'"},
		},
		{
			name: "broken YAML in common",
			repo: repoFS("common/common-values.yaml", "a: b\n c: d\n", okEnv, okValues),
			want: []string{"common/common-values.yaml:2: invalid YAML: mapping values are not allowed"},
		},
		{
			name: "tab in indentation",
			repo: repoFS(okEnv, "image:\n  tag: v1\n\tport: 80\n"),
			want: []string{okEnv + ":3: invalid YAML: found a tab character"},
		},
		{
			name: "duplicate key",
			repo: repoFS(okEnv, "image: {tag: v1}\nservice: {enabled: true}\nservice: {enabled: false}\n"),
			want: []string{okEnv + ":3: invalid YAML", `"service" already defined at line 2`},
		},
		{
			name: "values not a mapping",
			repo: repoFS(okEnv, "- a\n- b\n"),
			want: []string{okEnv + ":1: values must be a mapping"},
		},
		{
			name: "unknown top-level key",
			repo: repoFS(okEnv, okValues+"replicaCount: 3\n"),
			want: []string{okEnv + ":3: replicaCount: unknown key; accepted here: commonAnnotations"},
		},
		{
			name: "unknown section key with path and line, from the base file",
			repo: repoFS("apps/web/base/base-values.yaml", "deployment:\n  enabled: true\n  replcas: 2\n", okEnv, "image: {tag: v1}\n"),
			want: []string{"apps/web/base/base-values.yaml:3: deployment.replcas: unknown key; accepted here: ", "replicas"},
		},
		{
			name: "unknown key inside a list item",
			repo: repoFS(okEnv, okValues+"ingress:\n  enabled: true\n  entries:\n    - name: x\n      hosts:\n        - hostname: a.example.com\n          tls: true\n"),
			want: []string{okEnv + ":9: ingress.entries[0].hosts[0].tls: unknown key"},
		},
		{
			name: "wrong type",
			repo: repoFS(okEnv, "image: {tag: v1}\ndeployment:\n  enabled: true\n  replicas: three\n"),
			want: []string{okEnv + ":4: deployment.replicas: got string, want integer"},
		},
		{
			name: "several problems are all reported",
			repo: repoFS("common/common-values.yaml", "foo: 1\n", okEnv, okValues+"bar: 2\n"),
			want: []string{"common/common-values.yaml:1: foo: unknown key", okEnv + ":3: bar: unknown key"},
		},
		{
			name: "reserved key",
			repo: repoFS(okEnv, okValues+"gluebox: {app: other}\n"),
			want: []string{okEnv + ":3: gluebox: is reserved"},
		},
		{
			name: "missing tag",
			repo: repoFS(okEnv, "deployment: {enabled: true}\n"),
			want: []string{"image.tag is required"},
		},
		{
			name: "no such env",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "stage"},
			want: []string{`apps/web/envs/stage: app "web" has no environment "stage"`},
		},
		{
			name: "invalid app name",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "../web", Env: "prod"},
			want: []string{`app name "../web" is invalid`},
		},
		{
			name: "namespace too long",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: strings.Repeat("a", 40), Env: strings.Repeat("b", 30)},
			want: []string{"is 71 characters long, the limit is 63"},
		},
		{
			name: "ingress without hosts or domain",
			repo: repoFS(okEnv, okValues+"ingress: {enabled: true}\n"),
			opts: Options{App: "web", Env: "prod", Domain: "-"},
			want: []string{"no hosts and gluebox has no --domain"},
		},
		{
			name: "template producing a ClusterRole is refused",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: chartWith("role.yaml",
				"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: web-admin\nrules: []\n")},
			want: []string{"ClusterRole/web-admin: refused: ClusterRole is cluster-scoped", `namespace "web-prod"`},
		},
		{
			name: "template producing a Namespace is refused",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: chartWith("ns.yaml",
				"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: elsewhere\n")},
			want: []string{"Namespace/elsewhere: refused: Namespace is cluster-scoped"},
		},
		{
			name: "template producing an object in another namespace is refused",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: chartWith("cm.yaml",
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: steal\n  namespace: kube-system\ndata: {}\n")},
			want: []string{`ConfigMap/steal: refused: metadata.namespace is "kube-system"`},
		},
		{
			name: "template producing invalid YAML names the template",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: chartWith("bad.yaml", "kind: [\n")},
			want: []string{"chart templates/bad.yaml:1: invalid YAML"},
		},
		{
			name: "template producing no kind",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: chartWith("nokind.yaml", "metadata:\n  name: x\n")},
			want: []string{"templates/nokind.yaml"},
		},
		{
			name: "plain manifest with a ClusterRoleBinding is refused",
			repo: repoFS("apps/web/envs/prod/rbac.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: me-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"),
			want: []string{"ClusterRoleBinding/me-admin: refused: ClusterRoleBinding is cluster-scoped"},
		},
		{
			name: "plain manifest in another namespace is refused",
			repo: repoFS("apps/web/envs/prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: web-stage}\n"),
			want: []string{`ConfigMap/x: refused: metadata.namespace is "web-stage"; an app may only create objects in its namespace "web-prod"`},
		},
		{
			name: "broken YAML in the second document of a manifest names file and line",
			repo: repoFS("apps/web/envs/prod/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: b\n"),
			want: []string{"apps/web/envs/prod/app.yaml:8: invalid YAML"},
		},
		{
			name: "values.yaml next to manifests",
			repo: repoFS(okEnv, okValues, "apps/web/envs/prod/extra.yaml", "kind: ConfigMap\n"),
			want: []string{"apps/web/envs/prod: holds values.yaml and extra.yaml"},
		},
		{
			name: "remote kustomize base is refused",
			repo: repoFS("apps/web/envs/prod/kustomization.yaml", "resources:\n  - https://github.com/acme/infra//base?ref=v1\n"),
			want: []string{`apps/web/envs/prod/kustomization.yaml: resources[0]: "https://github.com/acme/infra//base?ref=v1" is remote`},
		},
		{
			name: "kustomize base outside the app folder is refused",
			repo: repoFS("apps/web/envs/prod/kustomization.yaml", "resources:\n  - ../../../other/base\n", "apps/other/base/kustomization.yaml", "resources: []\n"),
			want: []string{`resources[0]: "../../../other/base" does not exist inside apps/web`},
		},
		{
			name: "kustomize error names the env folder",
			repo: repoFS("apps/web/envs/prod/kustomization.yaml", "resources:\n  - cm.yaml\npatches:\n  - path: nope.yaml\n", "apps/web/envs/prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"),
			want: []string{"apps/web/envs/prod: kustomize:"},
		},
		{
			name: "kustomize producing a Namespace is refused",
			repo: repoFS("apps/web/envs/prod/kustomization.yaml", "resources: [ns.yaml]\n", "apps/web/envs/prod/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: web-prod}\n"),
			want: []string{"Namespace/web-prod: refused: Namespace is cluster-scoped"},
		},
		{
			name: "chart schema with a remote $ref is refused, not fetched",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Chart: fstest.MapFS{
				"Chart.yaml":         {Data: []byte("apiVersion: v2\nname: remote\nversion: 0.1.0\n")},
				"values.schema.json": {Data: []byte(`{"$ref": "https://schemas.example.com/values.json"}`)},
			}},
			want: []string{"chart values.schema.json"},
		},
		{
			name: "bad commit",
			repo: repoFS(okEnv, okValues),
			opts: Options{App: "web", Env: "prod", Commit: "main; rm -rf"},
			want: []string{"is not a hexadecimal commit id"},
		},
		{
			name: "file too large",
			repo: repoFS(okEnv, "x: \""+strings.Repeat("a", MaxValuesFileSize)+"\"\n"),
			want: []string{okEnv + ": is larger than"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.App == "" {
				opts.App, opts.Env = "web", "prod"
			}
			if opts.Domain == "" {
				opts.Domain = testDomain
			} else if opts.Domain == "-" {
				opts.Domain = ""
			}
			res, err := Render(tt.repo, opts)
			if err == nil {
				t.Fatalf("Render succeeded with %d objects; want an error containing %q", len(res.Objects), tt.want)
			}
			if testing.Verbose() {
				t.Logf("error: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
			if strings.Contains(tt.name, "file and line") || strings.Contains(tt.name, "unknown section key") {
				var e *Error
				if !errors.As(err, &e) || e.File == "" || e.Line == 0 {
					t.Errorf("error %v is not an *Error with file and line", err)
				}
			}
		})
	}
}

func TestSymlinkOutsideRepoIsRefused(t *testing.T) {
	tmp := t.TempDir()
	secret := filepath.Join(tmp, "host-secret.yaml")
	if err := os.WriteFile(secret, []byte("image: {tag: stolen}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "repo", "apps", "web", "envs", "prod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "values.yaml")); err != nil {
		t.Fatal(err)
	}
	repo := openRepo(t, filepath.Join(tmp, "repo"))
	res, err := Render(repo, Options{App: "web", Env: "prod", Domain: testDomain})
	if err == nil {
		t.Fatalf("Render read a file outside the repository: %s", res.Manifest)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "apps/web/envs/prod/values.yaml: cannot open") {
		t.Errorf("error %v does not name the file", err)
	}
}
