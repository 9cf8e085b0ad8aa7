package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// platformYAML lists the apps whose image tags follow their builds.
const platformYAML = `apps:
  - name: hello
    repo: https://git.example/hello.git
    branches: [main]
  - name: shop
    repo: https://git.example/shop.git
    branches: [release]
`

func (te *testEngine) image(t *testing.T, ns string) string {
	t.Helper()
	te.cluster.mu.Lock()
	defer te.cluster.mu.Unlock()
	for _, o := range te.cluster.applied[ns].Objects {
		if o.GetKind() == "Deployment" {
			cs := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
			return cs[0].(map[string]any)["image"].(string)
		}
	}
	t.Fatalf("no Deployment applied in %s", ns)
	return ""
}

func TestBuildsMoveEnvironmentsAndPreviewsComeAndGo(t *testing.T) {
	te := newTestEngine(t)
	const d1, d2, dpr = "sha256:1111111111111111111111111111111111111111111111111111111111111111",
		"sha256:2222222222222222222222222222222222222222222222222222222222222222",
		"sha256:7777777777777777777777777777777777777777777777777777777777777777"
	head := te.git.Commit(map[string]string{
		"platform.yaml":                               platformYAML,
		"apps/hello/envs/prod/values.yaml":            fmt.Sprintf(helloValues, 1),
		"apps/hello/envs/previews/common/values.yaml": fmt.Sprintf(helloValues, 1),
	}, "hello")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}

	// No build of main yet: the environment waits, saying why.
	te.sync(t)
	if e := te.env(t, "hello", "prod"); !strings.Contains(e.LastError, "no successful build yet") || e.Revision != 0 {
		t.Fatalf("before the first build: %+v", e)
	}

	te.build(t, "hello", "main", "") // a failed build changes nothing
	te.sync(t)
	if e := te.env(t, "hello", "prod"); !strings.Contains(e.LastError, "no successful build yet") || e.Revision != 0 {
		t.Fatalf("after a failed build: %+v", e)
	}
	te.build(t, "hello", "main", d1)
	te.sync(t)
	if img := te.image(t, "hello-prod"); img != "registry.gluebox.local/hello@"+d1 {
		t.Fatalf("image %q, want the build's digest", img)
	}

	// A new build moves the environment: a new revision of the same commit, reason "build".
	te.build(t, "hello", "main", d2)
	te.sync(t)
	if img := te.image(t, "hello-prod"); img != "registry.gluebox.local/hello@"+d2 {
		t.Fatalf("image %q after a new build", img)
	}
	if e := te.env(t, "hello", "prod"); e.Image != "registry.gluebox.local/hello@"+d2 {
		t.Fatalf("recorded image %q, want the new build's", e.Image)
	}
	hist, err := te.History("hello", "prod")
	if err != nil || len(hist) != 2 || hist[0].Reason != "build" || hist[0].Commit != head {
		t.Fatalf("history %+v, %v: want a second revision with reason build", hist, err)
	}
	// Rollback goes back to the first build's image.
	if _, err := te.Rollback(te.ctx, "hello", "prod", 0); err != nil {
		t.Fatal(err)
	}
	if img := te.image(t, "hello-prod"); img != "registry.gluebox.local/hello@"+d1 {
		t.Fatalf("image %q after a rollback, want the first build", img)
	}
	if _, err := te.Release(te.ctx, "hello", "prod"); err != nil {
		t.Fatal(err)
	}

	// A built preview gets its own environment running the pull request's image.
	te.pullRequest("hello", 7, "opened")
	te.pullRequest("not-in-repo", 1, "opened")
	te.pullRequest("hello", 8, "opened") // not built yet: not deployed
	te.build(t, "hello", "pr-7", dpr)
	te.build(t, "not-in-repo", "pr-1", dpr)
	te.sync(t)
	if img := te.image(t, "hello-pr-7"); img != "registry.gluebox.local/hello@"+dpr {
		t.Fatalf("preview image %q", img)
	}
	if e := te.env(t, "hello", "pr-7"); e.Namespace != "hello-pr-7" || e.LastError != "" {
		t.Fatalf("preview env %+v", e)
	}
	if _, err := te.st.Env("not-in-repo", "pr-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a preview of an app without a folder was deployed: %v", err)
	}
	if _, err := te.st.Env("hello", "pr-8"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a preview without a successful build was deployed: %v", err)
	}

	// The pull request closed: the preview is deleted, prod stays.
	te.pullRequest("hello", 7, "closed")
	te.sync(t)
	if _, err := te.st.Env("hello", "pr-7"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed preview still recorded: %v", err)
	}
	if _, _, deleted := te.cluster.count(); !slices.Contains(deleted, "hello-pr-7") || slices.Contains(deleted, "hello-prod") {
		t.Fatalf("deleted namespaces %v, want hello-pr-7 only", deleted)
	}
}

func TestImageTagResolution(t *testing.T) {
	te := newTestEngine(t)
	d := "sha256:" + strings.Repeat("4", 64)
	te.git.Commit(map[string]string{"platform.yaml": platformYAML}, "platform")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)
	plat, err := platform.Parse([]byte(platformYAML))
	if err != nil {
		t.Fatal(err)
	}
	te.build(t, "hello", "main", d)
	te.build(t, "hello", "feature", "") // built by gluebox (e.g. the default branch), never succeeded
	resolve := te.resolveTag(plat)
	for _, c := range []struct{ app, tag, want, err string }{
		{"hello", "main", d, ""},
		{"hello", "v1.2.0", "v1.2.0", ""},                               // a tag pushed by hand
		{"hello", strings.Repeat("c", 40), strings.Repeat("c", 40), ""}, // a commit SHA
		{"hello", "", "", ""},
		{"hello", d, d, ""},
		{"hello", "feature", "", "no successful build yet"},
		{"shop", "release", "", "gluebox build list --app shop"}, // listed in branches, nothing built
		{"other-app", "main", "main", ""},                        // not in platform.yaml
	} {
		got, err := resolve(c.app, c.tag)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("resolveTag(%s, %q) = %q, %v; want %q, error %q", c.app, c.tag, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrNoBuild) {
			t.Errorf("resolveTag(%s, %q) error %v does not wrap ErrNoBuild", c.app, c.tag, err)
		}
	}
}

func (te *testEngine) applies() int {
	n, _, _ := te.cluster.count()
	return n
}

func TestTriggerAppsAppliesOnlyThoseApps(t *testing.T) {
	te := newTestEngine(t)
	te.build(t, "hello", "main", "sha256:"+strings.Repeat("1", 64))
	te.build(t, "shop", "release", "sha256:"+strings.Repeat("2", 64))
	te.git.Commit(map[string]string{
		"platform.yaml":                               platformYAML,
		"apps/hello/envs/prod/values.yaml":            fmt.Sprintf(helloValues, 1),
		"apps/hello/envs/stage/values.yaml":           fmt.Sprintf(helloValues, 1),
		"apps/shop/envs/prod/values.yaml":             strings.Replace(fmt.Sprintf(helloValues, 1), "tag: main", "tag: release", 1),
		"apps/shop/envs/previews/common/values.yaml":  strings.Replace(fmt.Sprintf(helloValues, 1), "tag: main", "tag: release", 1),
		"apps/hello/envs/previews/common/values.yaml": fmt.Sprintf(helloValues, 1),
	}, "two apps")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)
	if n := te.applies(); n != 3 {
		t.Fatalf("first sync applied %d environments, want 3", n)
	}
	// syncAfter runs one sync after trigger and checks how many environments it applied.
	syncAfter := func(what string, trigger func(), want int) {
		t.Helper()
		before := te.applies()
		trigger()
		te.syncNow(t)
		if n := te.applies() - before; n != want {
			t.Fatalf("%s applied %d environments, want %d", what, n, want)
		}
	}

	// Nothing asked for and no resync due: nothing is applied.
	syncAfter("an idle check", func() {}, 0)

	// shop has a new build: only shop's environment is applied, with the new image.
	d3 := "sha256:" + strings.Repeat("3", 64)
	te.build(t, "shop", "release", d3)
	syncAfter("TriggerApps(shop)", func() { te.TriggerApps("shop") }, 1)
	if img := te.image(t, "shop-prod"); img != "registry.gluebox.local/shop@"+d3 {
		t.Fatalf("shop-prod runs %q, want the new build", img)
	}
	if e := te.env(t, "shop", "prod"); e.Revision != 2 {
		t.Fatalf("shop prod at revision %d, want 2", e.Revision)
	}
	if e := te.env(t, "hello", "prod"); e.Revision != 1 {
		t.Fatalf("hello prod at revision %d, want 1 (untouched)", e.Revision)
	}

	// A preview of hello appears: asking for hello applies hello's three environments.
	dpr := "sha256:" + strings.Repeat("7", 64)
	te.pullRequest("hello", 7, "opened")
	te.build(t, "hello", "pr-7", dpr)
	syncAfter("TriggerApps(hello): prod, stage and pr-7", func() { te.TriggerApps("hello") }, 3)
	if img := te.image(t, "hello-pr-7"); img != "registry.gluebox.local/hello@"+dpr {
		t.Fatalf("preview runs %q", img)
	}

	// The preview goes away while only shop is asked for: it is still removed.
	te.pullRequest("hello", 7, "closed")
	syncAfter("TriggerApps(shop)", func() { te.TriggerApps("shop") }, 1)
	if _, err := te.st.Env("hello", "pr-7"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed preview still recorded after a partial sync: %v", err)
	}

	// Trigger still re-applies everything.
	syncAfter("Trigger", te.Trigger, 3)
}
