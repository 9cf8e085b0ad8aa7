package engine

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gluebox/gluebox/appliance/gitops/builds"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
)

// fakeBuilds is the engine's view of appliance/gitops/builds (tested on its own there):
// branch → newest digest, and the built previews.
type fakeBuilds struct {
	mu       sync.Mutex
	branches map[string]string
	previews []builds.Preview
	events   []webhook.Event
}

func (f *fakeBuilds) ResolveTag(repository, tag string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.branches[tag]; ok {
		if d == "" {
			return "", fmt.Errorf("image.tag %q: %w", tag, builds.ErrNoBuild)
		}
		return d, nil
	}
	return tag, nil
}

func (f *fakeBuilds) Previews(bool) []builds.Preview {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]builds.Preview(nil), f.previews...)
}

func (f *fakeBuilds) HandleEvent(ev webhook.Event) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return true
}

func (f *fakeBuilds) CredentialsFor(string) (string, bool) { return "", false }

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
	fb := &fakeBuilds{branches: map[string]string{"main": ""}}
	te.deps.Builds = fb
	const d1, d2, dpr = "sha256:1111111111111111111111111111111111111111111111111111111111111111",
		"sha256:2222222222222222222222222222222222222222222222222222222222222222",
		"sha256:7777777777777777777777777777777777777777777777777777777777777777"
	head := te.git.Commit(map[string]string{
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

	fb.mu.Lock()
	fb.branches["main"] = d1
	fb.mu.Unlock()
	te.sync(t)
	if img := te.image(t, "hello-prod"); img != "registry.gluebox.local/hello@"+d1 {
		t.Fatalf("image %q, want the build's digest", img)
	}

	// A new build moves the environment: a new revision of the same commit, reason "build".
	fb.mu.Lock()
	fb.branches["main"] = d2
	fb.mu.Unlock()
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
	fb.mu.Lock()
	fb.previews = []builds.Preview{{App: "hello", Number: 7, Digest: dpr}, {App: "not-in-repo", Number: 1, Digest: dpr}}
	fb.mu.Unlock()
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

	// The pull request closed: the preview is deleted, prod stays.
	fb.mu.Lock()
	fb.previews = nil
	fb.mu.Unlock()
	te.sync(t)
	if _, err := te.st.Env("hello", "pr-7"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed preview still recorded: %v", err)
	}
	if !strings.Contains(strings.Join(te.cluster.deleted, ","), "hello-pr-7") || strings.Contains(strings.Join(te.cluster.deleted, ","), "hello-prod") {
		t.Fatalf("deleted namespaces %v, want hello-pr-7 only", te.cluster.deleted)
	}

	// Webhook events reach the builds.
	te.onEvent(webhook.Event{RepoURL: "https://git.example/app.git", Kind: webhook.KindPush})
	if len(fb.events) != 1 {
		t.Fatalf("events given to builds: %d", len(fb.events))
	}
}

func (te *testEngine) applies() int {
	te.cluster.mu.Lock()
	defer te.cluster.mu.Unlock()
	return te.cluster.applies
}

func TestTriggerAppsAppliesOnlyThoseApps(t *testing.T) {
	te := newTestEngine(t)
	fb := &fakeBuilds{branches: map[string]string{"main": "sha256:" + strings.Repeat("1", 64), "release": "sha256:" + strings.Repeat("2", 64)}}
	te.deps.Builds = fb
	te.git.Commit(map[string]string{
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
		te.syncOnce(te.ctx)
		if n := te.applies() - before; n != want {
			t.Fatalf("%s applied %d environments, want %d", what, n, want)
		}
	}

	// Nothing asked for and no resync due: nothing is applied.
	syncAfter("an idle check", func() {}, 0)

	// shop has a new build: only shop's environment is applied, with the new image.
	d3 := "sha256:" + strings.Repeat("3", 64)
	fb.mu.Lock()
	fb.branches["release"] = d3
	fb.mu.Unlock()
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
	fb.mu.Lock()
	fb.previews = []builds.Preview{{App: "hello", Number: 7, Digest: dpr}}
	fb.mu.Unlock()
	syncAfter("TriggerApps(hello): prod, stage and pr-7", func() { te.TriggerApps("hello") }, 3)
	if img := te.image(t, "hello-pr-7"); img != "registry.gluebox.local/hello@"+dpr {
		t.Fatalf("preview runs %q", img)
	}

	// The preview goes away while only shop is asked for: it is still removed.
	fb.mu.Lock()
	fb.previews = nil
	fb.mu.Unlock()
	syncAfter("TriggerApps(shop)", func() { te.TriggerApps("shop") }, 1)
	if _, err := te.st.Env("hello", "pr-7"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("closed preview still recorded after a partial sync: %v", err)
	}

	// Trigger still re-applies everything.
	syncAfter("Trigger", te.Trigger, 3)
}
