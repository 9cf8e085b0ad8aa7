package builds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// The queue is the real build queue; only its BuildFunc stands in for BuildKit (that is
// tested in appliance/build and end to end): it "builds" the checked-out context by hashing
// its Dockerfile and app file, and fails on a Dockerfile that says BROKEN.
func fakeBuild(ctx context.Context, req imagebuild.Request, log io.Writer) (imagebuild.Result, error) {
	name := req.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	df, err := os.ReadFile(filepath.Join(req.ContextDir, name))
	if err != nil {
		return imagebuild.Result{}, fmt.Errorf("build: %w", imagebuild.ErrNoDockerfile)
	}
	if strings.Contains(string(df), "BROKEN") {
		return imagebuild.Result{}, errors.New("build: Dockerfile:1: unknown instruction BROKEN")
	}
	app, _ := os.ReadFile(filepath.Join(req.ContextDir, "app.txt"))
	sum := sha256.Sum256(append(df, app...))
	fmt.Fprintf(log, "built %s\n", req.Refs[0])
	return imagebuild.Result{Digest: "sha256:" + hex.EncodeToString(sum[:]), Refs: req.Refs}, nil
}

type memSecrets map[string]map[string][]byte

func (m memSecrets) Values(_ context.Context, path string) (map[string][]byte, error) {
	v, ok := m[path]
	if !ok {
		return nil, fmt.Errorf("secret %s not found", path)
	}
	return v, nil
}

type fixture struct {
	t       *testing.T
	f       *Follower
	q       *imagebuild.Queue
	git     *gittest.Server
	changes atomic.Int64
	changed sync.Map // app → true: the apps OnChange named
	ctx     context.Context
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{t: t, git: gittest.NewServer(t)}
	ctx, cancel := context.WithCancel(context.Background())
	fx.ctx = ctx
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var follower atomic.Pointer[Follower]
	q, err := imagebuild.NewQueue(imagebuild.QueueConfig{Dir: t.TempDir()}, fakeBuild, log, imagebuild.WithOnFinish(func(r imagebuild.Record) {
		if f := follower.Load(); f != nil {
			f.BuildFinished(r)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	fx.q = q
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	fx.f, err = New(cfg, Deps{Queue: q, Secrets: memSecrets{}, OnChange: func(apps ...string) {
		fx.changes.Add(1)
		for _, a := range apps {
			fx.changed.Store(a, true)
		}
	}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	follower.Store(fx.f)
	return fx
}

func (fx *fixture) platform(extra string) {
	fx.f.SetPlatform([]byte("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n" + extra))
}

// settle waits until no build is queued or running.
func (fx *fixture) settle() {
	fx.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for _, r := range fx.q.List(imagebuild.Filter{}) {
			if !r.Status.Final() {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	fx.t.Fatal("builds did not finish")
}

func (fx *fixture) poll() {
	fx.t.Helper()
	fx.f.pollAll(fx.ctx)
	fx.settle()
}

func (fx *fixture) builds(branch string) []imagebuild.Record {
	return fx.q.List(imagebuild.Filter{App: "shop", Branch: branch})
}

func TestBranchBuildsAndTagResolution(t *testing.T) {
	fx := newFixture(t, Config{})
	c1 := fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n", "app.txt": "v1"}, "v1")
	fx.platform("")

	if got, err := fx.f.ResolveTag("shop", "main"); err != nil || got != "main" {
		// Not polled yet: the default branch is unknown, so "main" is just a tag.
		t.Fatalf("ResolveTag before the first poll = %q, %v", got, err)
	}
	fx.poll()
	bs := fx.builds("main")
	if len(bs) != 1 || bs[0].Commit != c1 || bs[0].Status != imagebuild.StatusSucceeded {
		t.Fatalf("builds of main = %+v, want one succeeded build of %s", bs, c1)
	}
	wantRefs := []string{"127.0.0.1:5000/shop:" + c1, "127.0.0.1:5000/shop:main"}
	if fmt.Sprint(bs[0].Refs) != fmt.Sprint(wantRefs) {
		t.Errorf("refs %v, want %v", bs[0].Refs, wantRefs)
	}
	d1, err := fx.f.ResolveTag("shop", "main")
	if err != nil || d1 != bs[0].Digest {
		t.Fatalf("ResolveTag(main) = %q, %v; want %s", d1, err, bs[0].Digest)
	}
	if _, ok := fx.changed.Load("shop"); !ok {
		t.Error("a successful build did not call OnChange for its app")
	}

	fx.poll() // nothing new: no second build
	if n := len(fx.builds("main")); n != 1 {
		t.Fatalf("%d builds after an idle poll, want 1", n)
	}

	fx.git.Commit(map[string]string{"app.txt": "v2"}, "v2")
	fx.poll()
	d2, _ := fx.f.ResolveTag("shop", "main")
	if d2 == d1 || !strings.HasPrefix(d2, "sha256:") {
		t.Fatalf("after a new commit ResolveTag(main) = %q, want a new digest (was %s)", d2, d1)
	}

	// A broken commit fails its build; the branch keeps resolving to the last good one.
	fx.git.Commit(map[string]string{"Dockerfile": "BROKEN\n"}, "broken")
	fx.poll()
	if bs := fx.builds("main"); bs[0].Status != imagebuild.StatusFailed || !strings.Contains(bs[0].Error, "unknown instruction") {
		t.Fatalf("newest build %+v, want failed with the Dockerfile error", bs[0])
	}
	if d, _ := fx.f.ResolveTag("shop", "main"); d != d2 {
		t.Fatalf("after a failed build ResolveTag(main) = %q, want the last good %s", d, d2)
	}
	fx.poll() // the failed commit is not rebuilt on every poll
	if n := len(fx.builds("main")); n != 3 {
		t.Fatalf("%d builds, want 3", n)
	}

	for tag, want := range map[string]string{"v1.2.0": "v1.2.0", c1: c1, "": ""} {
		if got, err := fx.f.ResolveTag("shop", tag); err != nil || got != want {
			t.Errorf("ResolveTag(shop, %q) = %q, %v; want it unchanged", tag, got, err)
		}
	}
	if got, _ := fx.f.ResolveTag("other-app", "main"); got != "main" {
		t.Errorf("ResolveTag of an app that does not build = %q, want main", got)
	}
}

func TestBranchWithoutBuildIsAClearError(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.git.Commit(map[string]string{"Dockerfile": "BROKEN\n"}, "v1")
	fx.platform("    branches: [main, release]\n")
	fx.poll()
	_, err := fx.f.ResolveTag("shop", "main")
	if !errors.Is(err, ErrNoBuild) || !strings.Contains(err.Error(), "gluebox build list --app shop") {
		t.Fatalf("ResolveTag(main) with only a failed build: %v", err)
	}
	apps := fx.f.Apps()
	if len(apps) != 1 || !strings.Contains(apps[0].Error, `branch "release"`) {
		t.Fatalf("Apps() = %+v, want an error naming the missing branch", apps)
	}
}

func TestBuildContextAndDockerfileFromPlatform(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.git.Commit(map[string]string{"svc/build/Containerfile": "FROM busybox\n", "svc/app.txt": "x"}, "v1")
	fx.platform("    context: svc\n    dockerfile: build/Containerfile\n    buildArgs: {GREETING: hi}\n")
	fx.poll()
	if bs := fx.builds("main"); len(bs) != 1 || bs[0].Status != imagebuild.StatusSucceeded || bs[0].Dockerfile != "build/Containerfile" {
		t.Fatalf("builds %+v, want a succeeded build of svc/build/Containerfile", bs)
	}

	fx.platform("    context: missing\n")
	fx.git.Commit(map[string]string{"svc/app.txt": "y"}, "v2")
	fx.poll()
	bs := fx.builds("main")
	if bs[0].Status != imagebuild.StatusFailed || !strings.Contains(bs[0].Error, `build context "missing"`) {
		t.Fatalf("newest build %+v, want failed naming the missing context", bs[0])
	}
}

func TestPreviewsFromPullRequestRefs(t *testing.T) {
	fx := newFixture(t, Config{})
	base := fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n", "app.txt": "main"}, "main")
	fx.git.SetRef("refs/pull/1/head", base) // an old pull request: there before gluebox
	fx.platform("")
	fx.poll()
	if ps := fx.f.Previews(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the first poll, want none (refs present at start are old)", ps)
	}

	fx.git.Branch = "feature"
	pr := fx.git.Commit(map[string]string{"app.txt": "feature"}, "feature")
	fx.git.SetRef("refs/pull/7/head", pr)
	fx.f.pollAll(fx.ctx)
	ps := fx.f.Previews(false)
	if len(ps) != 1 || ps[0].Number != 7 || ps[0].Commit != pr || ps[0].Via != "ref" || ps[0].Env() != "pr-7" {
		t.Fatalf("previews %+v, want pr 7 at %s", ps, pr)
	}
	fx.settle()
	built := fx.f.Previews(true)
	if len(built) != 1 || built[0].Digest == "" || built[0].BuiltCommit != pr {
		t.Fatalf("built previews %+v, want pr 7 with its digest", built)
	}
	if bs := fx.builds("pr-7"); len(bs) != 1 || bs[0].Refs[1] != "127.0.0.1:5000/shop:pr-7" {
		t.Fatalf("builds of pr-7: %+v", bs)
	}

	pr2 := fx.git.Commit(map[string]string{"app.txt": "feature 2"}, "feature 2")
	fx.git.SetRef("refs/pull/7/head", pr2)
	fx.poll()
	if ps := fx.f.Previews(true); ps[0].Commit != pr2 || ps[0].BuiltCommit != pr2 {
		t.Fatalf("after a push to the pull request: %+v, want it at %s", ps[0], pr2)
	}

	before := fx.changes.Load()
	fx.changed.Clear()
	fx.git.DeleteRef("refs/pull/7/head")
	fx.poll()
	if ps := fx.f.Previews(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the ref went away, want none", ps)
	}
	if _, ok := fx.changed.Load("shop"); fx.changes.Load() == before || !ok {
		t.Error("removing a preview did not call OnChange for its app")
	}

	// The records survive a restart.
	fx.git.SetRef("refs/pull/8/head", pr2)
	fx.poll()
	f2, err := New(fx.f.cfg, fx.f.deps)
	if err != nil {
		t.Fatal(err)
	}
	if ps := f2.Previews(false); len(ps) != 1 || ps[0].Number != 8 {
		t.Fatalf("previews after a restart %+v, want pr 8", ps)
	}
}

func TestPreviewsFromBranchPattern(t *testing.T) {
	fx := newFixture(t, Config{PreviewBranches: "preview/*"})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.git.Branch = "preview/12"
	c := fx.git.Commit(map[string]string{"app.txt": "12"}, "p12")
	fx.git.Branch = "preview/next"
	fx.git.Commit(map[string]string{"app.txt": "x"}, "bad")
	fx.poll()
	ps := fx.f.Previews(true)
	if len(ps) != 1 || ps[0].Number != 12 || ps[0].Via != "branch" || ps[0].Branch != "preview/12" || ps[0].BuiltCommit != c {
		t.Fatalf("previews %+v, want pr 12 from branch preview/12", ps)
	}
	if apps := fx.f.Apps(); !strings.Contains(apps[0].Error, `"next" is not a pull-request number`) {
		t.Fatalf("Apps()[0].Error = %q, want the bad branch named", apps[0].Error)
	}
	if _, err := New(Config{Dir: t.TempDir(), PreviewBranches: "pr-*-x"}, fx.f.deps); err == nil {
		t.Error("a pattern without a trailing * was accepted")
	}
}

func TestPreviewsFromWebhooks(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.poll()
	fx.git.Branch = "feature"
	head := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/3/head", head)
	url, _ := webhook.NormalizeURL(fx.git.URL())

	if fx.f.HandleEvent(webhook.Event{RepoURL: "https://elsewhere.example/x.git", Kind: webhook.KindPush}) {
		t.Error("an event for another repository was taken")
	}
	if _, ok := fx.f.CredentialsFor(url); !ok {
		t.Error("CredentialsFor does not know the app repository")
	}
	ev := webhook.Event{RepoURL: url, Kind: webhook.KindPullRequest,
		PullRequest: &webhook.PullRequest{Number: 3, Action: "opened", HeadSHA: head, HeadBranch: "feature"}}
	if !fx.f.HandleEvent(ev) {
		t.Fatal("the pull-request event was not taken")
	}
	fx.poll()
	ps := fx.f.Previews(true)
	if len(ps) != 1 || ps[0].Number != 3 || ps[0].Via != "webhook" || ps[0].BuiltCommit != head {
		t.Fatalf("previews %+v, want pr 3 built from the webhook", ps)
	}

	ev.PullRequest.Action = "closed"
	fx.f.HandleEvent(ev)
	fx.poll() // refs/pull/3/head is still there, as forges keep it: the preview stays closed
	if ps := fx.f.Previews(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the close event, want none", ps)
	}

	// Reopened and pushed: back again.
	next := fx.git.Commit(map[string]string{"app.txt": "pr again"}, "again")
	fx.git.SetRef("refs/pull/3/head", next)
	fx.poll()
	if ps := fx.f.Previews(false); len(ps) != 1 || ps[0].Commit != next {
		t.Fatalf("previews %+v after the ref moved, want pr 3 at %s", ps, next)
	}
}

func TestPreviewTTLAndDisabledPreviews(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.poll()
	c := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/4/head", c)
	fx.git.SetRef("refs/pull/5/head", c)
	fx.poll()
	if n := len(fx.f.Previews(false)); n != 2 {
		t.Fatalf("%d previews, want 2", n)
	}
	fx.f.mu.Lock()
	fx.f.previews[previewKey("shop", 4)].Updated = time.Now().Add(-DefaultPreviewTTL - time.Hour)
	fx.f.mu.Unlock()
	fx.poll()
	if ps := fx.f.Previews(false); len(ps) != 1 || ps[0].Number != 5 {
		t.Fatalf("previews %+v, want only pr 5 (pr 4 is past its TTL)", ps)
	}
	fx.poll() // its ref is still there: it stays gone
	if n := len(fx.f.Previews(false)); n != 1 {
		t.Fatalf("%d previews, want 1", n)
	}

	fx.platform("    previews: false\n")
	fx.poll()
	if ps := fx.f.Previews(false); len(ps) != 0 {
		t.Fatalf("previews %+v with previews: false, want none", ps)
	}
}

func TestCredentialsAndBadRepository(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.f.SetPlatform([]byte("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n    credentials: secret/git/missing\n"))
	fx.poll()
	if apps := fx.f.Apps(); !strings.Contains(apps[0].Error, "secret/git/missing") {
		t.Fatalf("Apps() = %+v, want the missing credentials named", apps)
	}
	fx.f.SetPlatform([]byte("apps: [{name: shop, repo: 'http://127.0.0.1:1/nothing.git'}]\n"))
	fx.poll()
	if apps := fx.f.Apps(); apps[0].Error == "" {
		t.Fatalf("Apps() = %+v, want an unreachable-repository error", apps)
	}
	fx.f.SetPlatform([]byte("apps: [{name: Bad_Name}]\n")) // refused: the apps stay as they were
	if apps := fx.f.Apps(); len(apps) != 1 || apps[0].Name != "shop" {
		t.Fatalf("a bad platform.yaml replaced the apps: %+v", apps)
	}
}

// fakeForge is a forge's commit-status API: it records what was posted.
type fakeForge struct {
	mu    sync.Mutex
	posts []map[string]string
	paths []string
	auth  []string
}

func (ff *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]string
	_ = json.NewDecoder(r.Body).Decode(&body)
	ff.mu.Lock()
	ff.posts = append(ff.posts, body)
	ff.paths = append(ff.paths, r.URL.Path)
	ff.auth = append(ff.auth, r.Header.Get("Authorization"))
	ff.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

func (ff *fakeForge) states() []string {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	var out []string
	for _, p := range ff.posts {
		out = append(out, p["state"])
	}
	return out
}

func TestCommitStatusesWithPreviewLink(t *testing.T) {
	forge := &fakeForge{}
	srv := httptest.NewServer(forge)
	t.Cleanup(srv.Close)
	fx := newFixture(t, Config{Domain: "apps.example"})
	fx.f.deps.Secrets = memSecrets{"secret/git/shop": {"token": []byte("t0ken")}}
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.f.SetPlatform([]byte("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n    credentials: secret/git/shop\n    status: {provider: github, api: '" + srv.URL + "'}\n"))
	fx.poll()
	fx.git.Branch = "feature"
	c := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/9/head", c)
	fx.poll()
	deadline := time.Now().Add(10 * time.Second)
	for len(forge.states()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	forge.mu.Lock()
	defer forge.mu.Unlock()
	if len(forge.posts) != 4 {
		t.Fatalf("posted %d statuses, want 4 (pending and success for main and for pr 9): %v", len(forge.posts), forge.posts)
	}
	var preview map[string]string
	for i, p := range forge.posts {
		if !strings.HasPrefix(forge.paths[i], "/repos/repo/statuses/") || forge.auth[i] != "token t0ken" || p["context"] != StatusContext {
			t.Errorf("post %d: %s %q %v", i, forge.paths[i], forge.auth[i], p)
		}
		if forge.paths[i] == "/repos/repo/statuses/"+c && p["state"] == "success" {
			preview = p
		}
	}
	if preview == nil || preview["target_url"] != "https://shop-pr-9.apps.example/" {
		t.Fatalf("the pull request's success status %v does not link to its preview", preview)
	}
}

func TestCommitStatusSettingsAreChecked(t *testing.T) {
	for _, bad := range []string{
		"status: {provider: bitbucket}\n    credentials: secret/x",
		"status: {provider: github, api: 'ftp://x'}\n    credentials: secret/x",
		"status: {provider: github}",
	} {
		if _, err := platform.Parse([]byte("apps:\n  - name: shop\n    repo: https://git.example/a/b.git\n    " + bad + "\n")); err == nil {
			t.Errorf("platform.yaml with %q was accepted", bad)
		}
	}
	for repo, want := range map[string]string{
		"https://github.com/acme/shop.git":           "github.com acme/shop",
		"git@gitlab.example:grp/sub/shop":            "gitlab.example grp/sub/shop",
		"ssh://git@gitea.example:2222/acme/shop.git": "gitea.example acme/shop",
	} {
		h, p, err := repoHostPath(repo)
		if err != nil || h+" "+p != want {
			t.Errorf("repoHostPath(%q) = %q %q %v, want %s", repo, h, p, err, want)
		}
	}
}

func TestOddBranchNamesGetValidTags(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	const branch = "Fix/Ünïcode+odd#name"
	fx.git.Branch = branch
	c := fx.git.Commit(map[string]string{"app.txt": "x"}, "odd")
	fx.platform("    branches: ['" + branch + "']\n")
	fx.poll()
	bs := fx.builds(branch)
	if len(bs) != 1 || bs[0].Status != imagebuild.StatusSucceeded || bs[0].Commit != c {
		t.Fatalf("builds of %q: %+v", branch, bs)
	}
	if got := bs[0].Refs[1]; got != "127.0.0.1:5000/shop:"+imagebuild.SanitizeTag(branch) || strings.ContainsAny(strings.TrimPrefix(got, "127.0.0.1:5000/shop:"), "/+#Ü") {
		t.Fatalf("branch tag %q is not a valid sanitized tag", got)
	}
	if d, err := fx.f.ResolveTag("shop", branch); err != nil || d != bs[0].Digest {
		t.Fatalf("ResolveTag(%q) = %q, %v", branch, d, err)
	}
}
