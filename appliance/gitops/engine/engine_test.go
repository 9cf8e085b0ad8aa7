package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// fakeCluster stands in for the Kubernetes API behind apply.Applier (the applier itself is
// exercised against a real node in appliance/e2e).
type fakeCluster struct {
	mu       sync.Mutex
	applied  map[string]apply.Set // namespace → last set
	deleted  []string
	applies  int
	waits    int
	drift    []string // reported as configured by the next apply
	waitErr  error
	applyErr error
	// gate, when set, holds every Apply until it is closed.
	gate chan struct{}
	// block makes Wait wait for its context (an environment that never becomes ready).
	block bool
}

func newFakeCluster() *fakeCluster { return &fakeCluster{applied: map[string]apply.Set{}} }

func (f *fakeCluster) Apply(ctx context.Context, set apply.Set, _ []state.ObjRef) (apply.Result, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return apply.Result{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applyErr != nil {
		return apply.Result{}, f.applyErr
	}
	f.applies++
	f.applied[set.Namespace] = set
	res := apply.Result{Configured: f.drift, Inventory: []state.ObjRef{{Version: "v1", Kind: "Namespace", Name: set.Namespace}}}
	f.drift = nil
	for _, o := range set.Objects {
		gvk := o.GroupVersionKind()
		res.Inventory = append(res.Inventory, state.ObjRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	return res, nil
}

func (f *fakeCluster) Delete(_ context.Context, set apply.Set, inv []state.ObjRef) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.applied, set.Namespace)
	f.deleted = append(f.deleted, set.Namespace)
	return nil, nil
}

func (f *fakeCluster) Wait(ctx context.Context, _ []state.ObjRef, _ time.Duration) error {
	f.mu.Lock()
	f.waits++
	block, err := f.block, f.waitErr
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeCluster) set(change func(*fakeCluster)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeCluster) count() (applies, waits int, deleted []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies, f.waits, slices.Clone(f.deleted)
}

func (f *fakeCluster) replicas(t *testing.T, ns string) int64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.applied[ns].Objects {
		if o.GetKind() == "Deployment" {
			n, _, _ := unstructuredInt(o.Object, "spec", "replicas")
			return n
		}
	}
	t.Fatalf("no Deployment applied in %s", ns)
	return 0
}

func unstructuredInt(obj map[string]any, path ...string) (int64, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, false, nil
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case int64:
		return v, true, nil
	case float64:
		return int64(v), true, nil
	}
	return 0, false, fmt.Errorf("not a number: %T", cur)
}

type memSecrets struct {
	mu sync.Mutex
	m  map[string]map[string][]byte
	// setCalled, when set, is closed by the first Set, which then waits for setGate.
	setCalled, setGate chan struct{}
}

func newMemSecrets() *memSecrets { return &memSecrets{m: map[string]map[string][]byte{}} }

func (s *memSecrets) Values(_ context.Context, path string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[path]
	if !ok {
		return nil, fmt.Errorf("%s: not found", path)
	}
	return v, nil
}

func (s *memSecrets) Set(_ context.Context, path string, values map[string][]byte, _ string) (uint64, error) {
	if s.setCalled != nil {
		close(s.setCalled)
		<-s.setGate
		s.setCalled = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[path] = values
	return 1, nil
}

// clock is the engine's clock in tests: it moves only when the test says.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// testEngine is an engine running (Run) against a real Git server, a real build queue (only
// its BuildFunc stands in for BuildKit) and a real preview store; the fake cluster stands in
// for Kubernetes.
type testEngine struct {
	*Engine
	cluster  *fakeCluster
	git      *gittest.Server
	secrets  *memSecrets
	builds   *imagebuild.Queue
	previews *preview.Store
	ctx      context.Context
	clock    *clock
	done     chan error
	stop     context.CancelFunc
}

type engineOptions struct {
	dir     string
	git     *gittest.Server
	cluster *fakeCluster
	secrets *memSecrets
	repo    state.RepoConfig
	noRun   bool
	// noWait returns without waiting for Ready.
	noWait bool
}

func newTestEngine(t *testing.T) *testEngine { return newTestEngineWith(t, engineOptions{}) }

func newTestEngineWith(t *testing.T, o engineOptions) *testEngine {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.git == nil {
		o.git = gittest.NewServer(t)
	}
	if o.cluster == nil {
		o.cluster = newFakeCluster()
	}
	if o.secrets == nil {
		o.secrets = newMemSecrets()
	}
	te := &testEngine{cluster: o.cluster, git: o.git, secrets: o.secrets, clock: &clock{}, done: make(chan error, 1)}
	te.clock.ns.Store(time.Unix(1_800_000_000, 0).UnixNano())
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	te.ctx, te.stop = ctx, cancel
	q, err := imagebuild.NewQueue(imagebuild.QueueConfig{Dir: filepath.Join(o.dir, "builds")}, digestBuild, log)
	if err != nil {
		t.Fatal(err)
	}
	qdone := make(chan error, 1)
	go func() { qdone <- q.Run(ctx) }()
	te.builds = q
	te.previews, err = preview.New(preview.Config{Dir: filepath.Join(o.dir, "previews")}, q.Index(), log)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Dir: o.dir, Repo: o.repo, Domain: "example.test", HealthTimeout: time.Second},
		Deps{Applier: te.cluster, Secrets: te.secrets, Images: q.Index(), Previews: te.previews, Now: te.clock.now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	if o.noRun {
		te.done <- nil
		t.Cleanup(func() { cancel(); <-qdone; e.st.Close() })
		return te
	}
	go func() { te.done <- e.Run(ctx) }()
	t.Cleanup(func() {
		te.shutdown(t)
		<-qdone
	})
	if o.noWait {
		return te
	}
	select {
	case <-e.ready.C():
	case err := <-te.done:
		t.Fatalf("Run ended before it was ready: %v", err)
	}
	return te
}

// shutdown stops Run and waits for it.
func (te *testEngine) shutdown(t *testing.T) {
	t.Helper()
	te.stop()
	if err := <-te.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	te.done <- nil // a second shutdown returns at once
}

// digestBuild is the queue's BuildFunc in engine tests: a build "pushes" the digest its
// DIGEST build argument names, and fails when it names none.
func digestBuild(_ context.Context, req imagebuild.Request, _ io.Writer) (imagebuild.Result, error) {
	d := req.BuildArgs["DIGEST"]
	if d == "" {
		return imagebuild.Result{}, errors.New("build failed")
	}
	return imagebuild.Result{Digest: d, Refs: req.Refs}, nil
}

// build runs one build of (app, key) through the real queue; digest "" makes it fail.
func (te *testEngine) build(t *testing.T, app, key, digest string) {
	t.Helper()
	rec, err := te.builds.Submit(imagebuild.Spec{App: app, Branch: key, Commit: strings.Repeat("c", 40),
		Request: imagebuild.Request{ContextDir: t.TempDir(), BuildArgs: map[string]string{"DIGEST": digest}, Refs: []string{"registry.gluebox.local/" + app + ":" + key}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(te.ctx, 10*time.Second)
	defer cancel()
	if _, err := te.builds.Wait(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
}

// openPreview opens (action "opened") or closes ("closed") pull request n of app.
func (te *testEngine) pullRequest(app string, n int64, action string) {
	te.previews.PullRequest(platform.App{Name: app}, webhook.PullRequest{Number: n, Action: action, HeadSHA: strings.Repeat("a", 40)})
}

const helloValues = `image:
  tag: main
deployment:
  enabled: true
  replicas: %d
service:
  enabled: true
ingress:
  enabled: true
`

// sync makes a resync due and waits for the loop to run one.
func (te *testEngine) sync(t *testing.T) {
	t.Helper()
	te.clock.advance(2 * DefaultResyncInterval)
	te.syncNow(t)
}

// syncNow waits for the loop to run a sync, with no resync due.
func (te *testEngine) syncNow(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(te.ctx, 30*time.Second)
	defer cancel()
	if err := te.SyncNow(ctx); err != nil {
		t.Fatalf("no sync: %v", err)
	}
}

func (te *testEngine) env(t *testing.T, app, env string) state.Env {
	t.Helper()
	e, err := te.st.Env(app, env)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSyncLifecycle(t *testing.T) {
	te := newTestEngine(t)
	c1 := te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 1)}, "hello dev")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)
	e := te.env(t, "hello", "dev")
	if e.Commit != c1 || e.Revision != 1 || e.LastError != "" || e.Namespace != "hello-dev" {
		t.Fatalf("after first sync: %+v", e)
	}
	if got := te.cluster.replicas(t, "hello-dev"); got != 1 {
		t.Fatalf("replicas = %d, want 1", got)
	}
	rs, _ := te.st.RepoStatus()
	if rs.Synced != c1 || rs.LastError != "" {
		t.Fatalf("repo status %+v", rs)
	}

	// A values change is applied as a new revision.
	c2 := te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 3)}, "scale")
	te.sync(t)
	if e = te.env(t, "hello", "dev"); e.Commit != c2 || e.Revision != 2 {
		t.Fatalf("after scale: %+v", e)
	}
	if got := te.cluster.replicas(t, "hello-dev"); got != 3 {
		t.Fatalf("replicas = %d, want 3", got)
	}

	// Broken YAML: a clear error on the environment, nothing applied, revision 2 keeps running.
	applies, _, _ := te.cluster.count()
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": "deployment: [oops\n"}, "broken")
	te.sync(t)
	e = te.env(t, "hello", "dev")
	if !strings.Contains(e.LastError, "values.yaml") || e.Revision != 2 || e.Commit != c2 {
		t.Fatalf("after broken commit: %+v", e)
	}
	if n, _, _ := te.cluster.count(); n != applies {
		t.Fatalf("a broken render was applied")
	}

	// Fixed again → revision 3.
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 2)}, "fix")
	te.sync(t)
	if e = te.env(t, "hello", "dev"); e.Revision != 3 || e.LastError != "" {
		t.Fatalf("after fix: %+v", e)
	}

	// Rollback to the previous revision holds the environment there across resyncs.
	if _, err := te.Rollback(te.ctx, "hello", "dev", 0); err != nil {
		t.Fatal(err)
	}
	if got := te.cluster.replicas(t, "hello-dev"); got != 3 {
		t.Fatalf("after rollback replicas = %d, want 3 (revision 2)", got)
	}
	te.sync(t)
	e = te.env(t, "hello", "dev")
	if !e.Held || te.cluster.replicas(t, "hello-dev") != 3 || e.Revision != 4 {
		t.Fatalf("held environment changed by a resync: %+v", e)
	}
	if _, err := te.Rollback(te.ctx, "hello", "dev", 99); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("rollback to a missing revision: %v", err)
	}

	// Release: back to Git's render.
	if _, err := te.Release(te.ctx, "hello", "dev"); err != nil {
		t.Fatal(err)
	}
	te.syncNow(t)
	if e = te.env(t, "hello", "dev"); e.Held || te.cluster.replicas(t, "hello-dev") != 2 {
		t.Fatalf("after release: %+v", e)
	}
	if _, err := te.Release(te.ctx, "hello", "dev"); err == nil {
		t.Fatal("releasing an environment that is not held succeeded")
	}

	// A new commit releases a hold too.
	if _, err := te.Rollback(te.ctx, "hello", "dev", 1); err != nil {
		t.Fatal(err)
	}
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 4)}, "scale again")
	te.sync(t)
	if e = te.env(t, "hello", "dev"); e.Held || te.cluster.replicas(t, "hello-dev") != 4 {
		t.Fatalf("a new commit did not release the hold: %+v", e)
	}

	// Drift: an unchanged render whose apply changed something is reported.
	rev := e.Revision
	te.cluster.set(func(c *fakeCluster) { c.drift = []string{"Deployment/hello-dev/hello"} })
	te.sync(t)
	if e = te.env(t, "hello", "dev"); len(e.Drift) != 1 || e.Revision != rev {
		t.Fatalf("drift not reported (or a revision added): %+v", e)
	}

	hist, err := te.st.History("hello", "dev")
	if err != nil || len(hist) != e.Revision {
		t.Fatalf("history %v %v", hist, err)
	}

	// Removing the env folder deletes the environment.
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": gittest.Deleted}, "remove dev")
	te.sync(t)
	if _, err := te.st.Env("hello", "dev"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("removed environment still recorded: %v", err)
	}
	if _, _, deleted := te.cluster.count(); len(deleted) != 1 || deleted[0] != "hello-dev" {
		t.Fatalf("deleted %v", deleted)
	}
}

func TestBadPlatformAndApplyErrorsKeepRunningVersion(t *testing.T) {
	te := newTestEngine(t)
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 1)}, "hello dev")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)

	te.git.Commit(map[string]string{"platform.yaml": "apps:\n  - name: Bad_Name\n    repo: x\n", "apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 5)}, "bad platform")
	te.sync(t)
	rs, _ := te.st.RepoStatus()
	if !strings.Contains(rs.LastError, "platform.yaml:2") || !strings.Contains(rs.LastError, "Bad_Name") {
		t.Fatalf("platform error = %q", rs.LastError)
	}
	if got := te.cluster.replicas(t, "hello-dev"); got != 1 {
		t.Fatalf("a commit with a bad platform.yaml was applied: replicas %d", got)
	}

	te.git.Commit(map[string]string{"platform.yaml": gittest.Deleted}, "drop platform")
	te.cluster.set(func(c *fakeCluster) { c.applyErr = errors.New("admission webhook said no") })
	te.sync(t)
	if e := te.env(t, "hello", "dev"); !strings.Contains(e.LastError, "admission webhook said no") || e.Revision != 1 {
		t.Fatalf("apply error not recorded: %+v", e)
	}
}

func TestSetRepoRefusesUnreachable(t *testing.T) {
	te := newTestEngine(t)
	_, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL() + "-missing"})
	var in *InputError
	if !errors.As(err, &in) {
		t.Fatalf("unreachable repository accepted: %v", err)
	}
	if _, ok, _ := te.st.RepoConfig(); ok {
		t.Fatal("unreachable repository was saved")
	}
	_, err = te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL(), Credentials: "secret/git/none"})
	if err == nil || !strings.Contains(err.Error(), "secret/git/none") {
		t.Fatalf("missing credentials: %v", err)
	}
}

func TestHealthRecorded(t *testing.T) {
	te := newTestEngine(t)
	te.cluster.set(func(c *fakeCluster) { c.waitErr = errors.New("Deployment/hello-dev/hello status: 'InProgress'") })
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 1)}, "hello dev")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)
	waitFor(t, "health Degraded naming InProgress", func() bool {
		e := te.env(t, "hello", "dev")
		return e.Health == state.HealthDegraded && strings.Contains(e.HealthMessage, "InProgress")
	})
	te.cluster.set(func(c *fakeCluster) { c.waitErr = nil })
	te.sync(t) // a resync re-checks a degraded environment
	waitFor(t, "health Healthy", func() bool { return te.env(t, "hello", "dev").Health == state.HealthHealthy })
}

func TestWebhookTriggersOnlyForFollowedRepo(t *testing.T) {
	// Not running, so the loop does not take the sync it is asked for: the test sees it queued.
	te := newTestEngineWith(t, engineOptions{noRun: true})
	te.git.Commit(map[string]string{"README": "x"}, "init")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL(), Branch: "main"}); err != nil {
		t.Fatal(err)
	}
	asked := func() bool {
		t.Helper()
		if te.queue.Len() == 0 {
			return false
		}
		item, _ := te.queue.Get()
		te.queue.Done(item)
		return true
	}
	if !asked() {
		t.Fatal("SetRepo did not ask for a sync")
	}
	norm, err := webhook.NormalizeURL(te.git.URL())
	if err != nil {
		t.Fatal(err)
	}
	te.HandleEvent(webhook.Event{RepoURL: norm + "-other", Kind: webhook.KindPush, Ref: "refs/heads/main"})
	te.HandleEvent(webhook.Event{RepoURL: norm, Kind: webhook.KindPush, Ref: "refs/heads/feature"})
	if asked() {
		t.Fatal("an event for another repository or branch asked for a sync")
	}
	te.HandleEvent(webhook.Event{RepoURL: norm, Kind: webhook.KindPush, Ref: "refs/heads/main"})
	if !asked() {
		t.Fatal("a push to the followed branch did not ask for a sync")
	}
	if _, ok := te.WebhookSecret(norm); ok {
		t.Fatal("a webhook secret was offered before Run created it")
	}
	if err := te.ensureWebhookSecret(te.ctx); err != nil {
		t.Fatal(err)
	}
	if sec, ok := te.WebhookSecret(norm); !ok || len(sec) < 32 {
		t.Fatalf("webhook secret = %q, %v", sec, ok)
	}
	if _, ok := te.WebhookSecret(norm + "-other"); ok {
		t.Fatal("a secret was offered for a repository gluebox does not follow")
	}
}

// TestRunOrder checks what Run does before its first sync: the webhook secret exists when
// Ready closes, and the health watches of environments that were progressing at shutdown are
// resumed before the first sync applies anything.
func TestRunOrder(t *testing.T) {
	dir, git := t.TempDir(), gittest.NewServer(t)
	git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 1)}, "hello dev")
	repo := state.RepoConfig{URL: git.URL()}

	// A first run applies hello/dev, which never becomes ready before it stops.
	first := newFakeCluster()
	first.block = true
	te := newTestEngineWith(t, engineOptions{dir: dir, git: git, cluster: first, repo: repo})
	te.syncNow(t)
	if e := te.env(t, "hello", "dev"); e.Health != state.HealthProgressing || e.Revision != 1 {
		t.Fatalf("in the first run: %+v, want revision 1 progressing", e)
	}
	te.shutdown(t)

	// The second run's cluster holds every apply until the test lets it go.
	second := newFakeCluster()
	second.gate = make(chan struct{})
	secrets := newMemSecrets()
	secrets.setCalled, secrets.setGate = make(chan struct{}), make(chan struct{})
	te = newTestEngineWith(t, engineOptions{dir: dir, git: git, cluster: second, secrets: secrets, repo: repo, noWait: true})
	var release sync.Once
	open := func() { release.Do(func() { close(secrets.setGate) }) }
	t.Cleanup(open)     // before the engine's cleanup stops Run
	<-secrets.setCalled // Run stores the webhook secret...
	select {
	case <-te.ready.C():
		t.Fatal("Ready closed before the webhook secret was stored")
	default:
	}
	open() // ...and is ready only once it is stored
	<-te.ready.C()
	if v, err := secrets.Values(te.ctx, WebhookSecretPath); err != nil || len(v["secret"]) == 0 {
		t.Fatalf("webhook secret when Ready closed: %v, %v", v, err)
	}
	waitFor(t, "the resumed health watch to record hello/dev healthy", func() bool {
		return te.env(t, "hello", "dev").Health == state.HealthHealthy
	})
	if applies, _, _ := second.count(); applies != 0 {
		t.Fatalf("%d applies before the health watch was resumed", applies)
	}
	close(second.gate)
	te.syncNow(t)
	if applies, _, _ := second.count(); applies != 1 {
		t.Fatalf("first sync applied %d environments, want 1", applies)
	}
	if e := te.env(t, "hello", "dev"); e.Revision != 1 || e.LastError != "" {
		t.Fatalf("after the first sync of the second run: %+v", e)
	}
}

// waitFor polls cond until it holds, failing after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.Eventually(t, 10*time.Second, what, cond)
}
