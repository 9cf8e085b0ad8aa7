package follow

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
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// The queue is the real build queue; only its BuildFunc stands in for BuildKit (that is
// tested in appliance/imagebuild and end to end): it "builds" the checked-out context by hashing
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

// fakeEngine stands in for the GitOps engine (tested in appliance/gitops/engine): it records
// the apps it was asked to re-apply.
type fakeEngine struct {
	changes atomic.Int64
	changed sync.Map // app → true
}

func (e *fakeEngine) TriggerApps(apps ...string) {
	e.changes.Add(1)
	for _, a := range apps {
		e.changed.Store(a, true)
	}
}

type fixture struct {
	t       *testing.T
	f       *Follower
	q       *imagebuild.Queue
	prev    *preview.Store
	pub     *platform.Publisher
	engine  *fakeEngine
	git     *gittest.Server
	secrets memSecrets
	clock   atomic.Int64 // the preview store's clock, Unix nanoseconds
	ctx     context.Context
}

// newFixture wires a follower to a real build queue (with fakeBuild), a real preview store
// reading the queue's index, a real platform.yaml publisher and a fake engine.
func newFixture(t *testing.T, cfg Config, pcfg preview.Config, secrets memSecrets) *fixture {
	t.Helper()
	if secrets == nil {
		secrets = memSecrets{}
	}
	fx := &fixture{t: t, git: gittest.NewServer(t), pub: platform.NewPublisher(), engine: &fakeEngine{}, secrets: secrets}
	fx.clock.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	fx.ctx = ctx
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := imagebuild.NewQueue(imagebuild.QueueConfig{Dir: t.TempDir()}, fakeBuild, log)
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
	pcfg.Dir = cfg.Dir
	pcfg.Now = fx.now
	fx.prev, err = preview.New(pcfg, q.Index(), log)
	if err != nil {
		t.Fatal(err)
	}
	fx.f, err = New(cfg, Deps{Queue: q, Previews: fx.prev, Platform: fx.pub, Engine: fx.engine, Secrets: secrets, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) now() time.Time { return time.Unix(0, fx.clock.Load()) }

func (fx *fixture) advance(d time.Duration) { fx.clock.Add(int64(d)) }

func (fx *fixture) setPlatform(raw string) { fx.pub.Publish(fx.ctx, []byte(raw)) }

func (fx *fixture) platform(extra string) {
	fx.setPlatform("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n" + extra)
}

// digest is the image index's answer for shop's key.
func (fx *fixture) digest(key string) (string, bool) {
	img, known := fx.q.Index().Latest("shop", key)
	return img.Digest, known
}

// settle waits until no build is queued or running.
func (fx *fixture) settle() {
	fx.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	testbin.Eventually(fx.t, time.Until(deadline), "the builds to finish", func() bool {
		for _, r := range fx.q.List(imagebuild.Filter{}) {
			if !r.Status.Final() {
				return false
			}
		}
		return true
	})
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
	fx := newFixture(t, Config{}, preview.Config{}, nil)
	c1 := fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n", "app.txt": "v1"}, "v1")
	fx.platform("")

	if d, known := fx.digest("main"); d != "" || known {
		// Not polled yet: nothing is built, the index knows nothing of main.
		t.Fatalf("index before the first poll = %q, %v", d, known)
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
	d1, _ := fx.digest("main")
	if d1 != bs[0].Digest {
		t.Fatalf("index(main) = %q; want %s", d1, bs[0].Digest)
	}
	waitFor(t, "a successful build triggers its app", func() bool { _, ok := fx.engine.changed.Load("shop"); return ok })

	fx.poll() // nothing new: no second build
	if n := len(fx.builds("main")); n != 1 {
		t.Fatalf("%d builds after an idle poll, want 1", n)
	}

	fx.git.Commit(map[string]string{"app.txt": "v2"}, "v2")
	fx.poll()
	d2, _ := fx.digest("main")
	if d2 == d1 || !strings.HasPrefix(d2, "sha256:") {
		t.Fatalf("after a new commit index(main) = %q, want a new digest (was %s)", d2, d1)
	}

	// A broken commit fails its build; the branch keeps resolving to the last good one.
	fx.git.Commit(map[string]string{"Dockerfile": "BROKEN\n"}, "broken")
	fx.poll()
	if bs := fx.builds("main"); bs[0].Status != imagebuild.StatusFailed || !strings.Contains(bs[0].Error, "unknown instruction") {
		t.Fatalf("newest build %+v, want failed with the Dockerfile error", bs[0])
	}
	if d, _ := fx.digest("main"); d != d2 {
		t.Fatalf("after a failed build index(main) = %q, want the last good %s", d, d2)
	}
	fx.poll() // the failed commit is not rebuilt on every poll
	if n := len(fx.builds("main")); n != 3 {
		t.Fatalf("%d builds, want 3", n)
	}
}

func TestBranchWithoutBuildIsAClearError(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{}, nil)
	fx.git.Commit(map[string]string{"Dockerfile": "BROKEN\n"}, "v1")
	fx.platform("    branches: [main, release]\n")
	fx.poll()
	if d, known := fx.digest("main"); d != "" || !known {
		t.Fatalf("index(main) with only a failed build = %q, known %v; want no digest, known", d, known)
	}
	apps := fx.f.Apps()
	if len(apps) != 1 || !strings.Contains(apps[0].Error, `branch "release"`) {
		t.Fatalf("Apps() = %+v, want an error naming the missing branch", apps)
	}
}

func TestBuildContextAndDockerfileFromPlatform(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{}, nil)
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
	fx := newFixture(t, Config{}, preview.Config{}, nil)
	base := fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n", "app.txt": "main"}, "main")
	fx.git.SetRef("refs/pull/1/head", base) // an old pull request: there before gluebox
	fx.platform("")
	fx.poll()
	if ps := fx.prev.List(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the first poll, want none (refs present at start are old)", ps)
	}

	fx.git.Branch = "feature"
	pr := fx.git.Commit(map[string]string{"app.txt": "feature"}, "feature")
	fx.git.SetRef("refs/pull/7/head", pr)
	fx.f.pollAll(fx.ctx)
	ps := fx.prev.List(false)
	if len(ps) != 1 || ps[0].Number != 7 || ps[0].Commit != pr || ps[0].Via != "ref" || ps[0].Env() != "pr-7" {
		t.Fatalf("previews %+v, want pr 7 at %s", ps, pr)
	}
	fx.settle()
	built := fx.prev.List(true)
	if len(built) != 1 || built[0].Digest == "" || built[0].BuiltCommit != pr {
		t.Fatalf("built previews %+v, want pr 7 with its digest", built)
	}
	if bs := fx.builds("pr-7"); len(bs) != 1 || bs[0].Refs[1] != "127.0.0.1:5000/shop:pr-7" {
		t.Fatalf("builds of pr-7: %+v", bs)
	}

	pr2 := fx.git.Commit(map[string]string{"app.txt": "feature 2"}, "feature 2")
	fx.git.SetRef("refs/pull/7/head", pr2)
	fx.poll()
	if ps := fx.prev.List(true); ps[0].Commit != pr2 || ps[0].BuiltCommit != pr2 {
		t.Fatalf("after a push to the pull request: %+v, want it at %s", ps[0], pr2)
	}

	before := fx.engine.changes.Load()
	fx.engine.changed.Clear()
	fx.git.DeleteRef("refs/pull/7/head")
	fx.poll()
	if ps := fx.prev.List(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the ref went away, want none", ps)
	}
	if _, ok := fx.engine.changed.Load("shop"); fx.engine.changes.Load() == before || !ok {
		t.Error("removing a preview did not trigger its app")
	}

	// The records survive a restart.
	fx.git.SetRef("refs/pull/8/head", pr2)
	fx.poll()
	p2, err := preview.New(preview.Config{Dir: fx.f.cfg.Dir}, fx.q.Index(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ps := p2.List(false); len(ps) != 1 || ps[0].Number != 8 {
		t.Fatalf("previews after a restart %+v, want pr 8", ps)
	}
}

func TestPreviewsFromBranchPattern(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{Branches: "preview/*"}, nil)
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.git.Branch = "preview/12"
	c := fx.git.Commit(map[string]string{"app.txt": "12"}, "p12")
	fx.git.Branch = "preview/next"
	fx.git.Commit(map[string]string{"app.txt": "x"}, "bad")
	fx.poll()
	ps := fx.prev.List(true)
	if len(ps) != 1 || ps[0].Number != 12 || ps[0].Via != "branch" || ps[0].Branch != "preview/12" || ps[0].BuiltCommit != c {
		t.Fatalf("previews %+v, want pr 12 from branch preview/12", ps)
	}
	if apps := fx.f.Apps(); !strings.Contains(apps[0].Error, `"next" is not a pull-request number`) {
		t.Fatalf("Apps()[0].Error = %q, want the bad branch named", apps[0].Error)
	}
	if _, err := preview.New(preview.Config{Dir: t.TempDir(), Branches: "pr-*-x"}, fx.q.Index(), nil); err == nil {
		t.Error("a pattern without a trailing * was accepted")
	}
}

func TestPreviewsFromWebhooks(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{}, memSecrets{webhook.DefaultSecretPath: {"secret": []byte("gluebox-wide")}})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.poll()
	fx.git.Branch = "feature"
	head := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/3/head", head)
	url, _ := webhook.NormalizeURL(fx.git.URL())

	if _, ok := fx.f.WebhookSecret("https://elsewhere.example/x.git"); ok {
		t.Error("a webhook secret was offered for another repository")
	}
	if s, ok := fx.f.WebhookSecret(url); !ok || string(s) != "gluebox-wide" {
		t.Errorf("WebhookSecret(app repository) = %q, %v; want the gluebox-wide secret", s, ok)
	}
	ev := webhook.Event{RepoURL: url, Kind: webhook.KindPullRequest,
		PullRequest: &webhook.PullRequest{Number: 3, Action: "opened", HeadSHA: head, HeadBranch: "feature"}}
	fx.f.HandleEvent(ev)
	fx.poll()
	ps := fx.prev.List(true)
	if len(ps) != 1 || ps[0].Number != 3 || ps[0].Via != "webhook" || ps[0].BuiltCommit != head {
		t.Fatalf("previews %+v, want pr 3 built from the webhook", ps)
	}

	ev.PullRequest.Action = "closed"
	fx.f.HandleEvent(ev)
	fx.poll() // refs/pull/3/head is still there, as forges keep it: the preview stays closed
	if ps := fx.prev.List(false); len(ps) != 0 {
		t.Fatalf("previews %+v after the close event, want none", ps)
	}

	// Reopened and pushed: back again.
	next := fx.git.Commit(map[string]string{"app.txt": "pr again"}, "again")
	fx.git.SetRef("refs/pull/3/head", next)
	fx.poll()
	if ps := fx.prev.List(false); len(ps) != 1 || ps[0].Commit != next {
		t.Fatalf("previews %+v after the ref moved, want pr 3 at %s", ps, next)
	}
}

func TestPreviewTTLAndDisabledPreviews(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{}, nil)
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.platform("")
	fx.poll()
	c := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/4/head", c)
	fx.poll()
	fx.advance(preview.DefaultTTL / 2)
	fx.git.SetRef("refs/pull/5/head", c)
	fx.poll()
	if n := len(fx.prev.List(false)); n != 2 {
		t.Fatalf("%d previews, want 2", n)
	}
	fx.advance(preview.DefaultTTL/2 + time.Hour) // pr 4 is past its TTL, pr 5 half a TTL from it
	fx.poll()
	if ps := fx.prev.List(false); len(ps) != 1 || ps[0].Number != 5 {
		t.Fatalf("previews %+v, want only pr 5 (pr 4 is past its TTL)", ps)
	}
	fx.poll() // its ref is still there: it stays gone
	if n := len(fx.prev.List(false)); n != 1 {
		t.Fatalf("%d previews, want 1", n)
	}

	fx.platform("    previews: false\n")
	fx.poll()
	if ps := fx.prev.List(false); len(ps) != 0 {
		t.Fatalf("previews %+v with previews: false, want none", ps)
	}
}

func TestCredentialsAndBadRepository(t *testing.T) {
	fx := newFixture(t, Config{}, preview.Config{}, nil)
	fx.setPlatform("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n    credentials: secret/git/missing\n")
	fx.poll()
	if apps := fx.f.Apps(); !strings.Contains(apps[0].Error, "secret/git/missing") {
		t.Fatalf("Apps() = %+v, want the missing credentials named", apps)
	}
	fx.setPlatform("apps: [{name: shop, repo: 'http://127.0.0.1:1/nothing.git'}]\n")
	fx.poll()
	if apps := fx.f.Apps(); apps[0].Error == "" {
		t.Fatalf("Apps() = %+v, want an unreachable-repository error", apps)
	}
	fx.setPlatform("apps: [{name: Bad_Name}]\n") // refused: the apps stay as they were
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
	fx := newFixture(t, Config{Domain: "apps.example"}, preview.Config{}, memSecrets{"secret/git/shop": {"token": []byte("t0ken")}})
	fx.git.Commit(map[string]string{"Dockerfile": "FROM busybox\n"}, "main")
	fx.setPlatform("apps:\n  - name: shop\n    repo: " + fx.git.URL() + "\n    credentials: secret/git/shop\n    status: {provider: github, api: '" + srv.URL + "'}\n")
	fx.poll()
	fx.git.Branch = "feature"
	c := fx.git.Commit(map[string]string{"app.txt": "pr"}, "pr")
	fx.git.SetRef("refs/pull/9/head", c)
	fx.poll()
	testbin.Eventually(t, 10*time.Second, "four commit statuses", func() bool { return len(forge.states()) >= 4 })
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
	fx := newFixture(t, Config{}, preview.Config{}, nil)
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
	if d, _ := fx.digest(branch); d != bs[0].Digest {
		t.Fatalf("index(%q) = %q, want %s", branch, d, bs[0].Digest)
	}
}

// waitFor polls cond until it holds, failing after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.Eventually(t, 10*time.Second, what, cond)
}
