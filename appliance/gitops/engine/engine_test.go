package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
)

// fakeCluster stands in for the Kubernetes API behind apply.Applier (the applier itself is
// exercised against a real node in appliance/e2e).
type fakeCluster struct {
	mu       sync.Mutex
	applied  map[string]apply.Set // namespace → last set
	deleted  []string
	applies  int
	drift    []string // reported as configured by the next apply
	waitErr  error
	applyErr error
}

func (f *fakeCluster) Apply(_ context.Context, set apply.Set, _ []state.ObjRef) (apply.Result, error) {
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

func (f *fakeCluster) Wait(context.Context, []state.ObjRef, time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waitErr
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
}

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
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[path] = values
	return 1, nil
}

type testEngine struct {
	*Engine
	cluster *fakeCluster
	git     *gittest.Server
	ctx     context.Context
	clock   time.Time
}

func newTestEngine(t *testing.T) *testEngine {
	t.Helper()
	te := &testEngine{cluster: &fakeCluster{applied: map[string]apply.Set{}}, git: gittest.NewServer(t), clock: time.Unix(1_800_000_000, 0)}
	e, err := New(Config{Dir: t.TempDir(), Domain: "example.test", Registry: "registry.gluebox.local", HealthTimeout: time.Second},
		Deps{Applier: te.cluster, Secrets: &memSecrets{m: map[string]map[string][]byte{}}})
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return te.clock }
	ctx, cancel := context.WithCancel(context.Background())
	e.runCtx = ctx
	t.Cleanup(func() {
		cancel()
		e.wg.Wait()
		e.st.Close()
	})
	te.Engine, te.ctx = e, ctx
	return te
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

func (te *testEngine) sync(t *testing.T) {
	t.Helper()
	te.clock = te.clock.Add(2 * DefaultResyncInterval)
	te.syncOnce(te.ctx)
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
	applies := te.cluster.applies
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": "deployment: [oops\n"}, "broken")
	te.sync(t)
	e = te.env(t, "hello", "dev")
	if !strings.Contains(e.LastError, "values.yaml") || e.Revision != 2 || e.Commit != c2 {
		t.Fatalf("after broken commit: %+v", e)
	}
	if te.cluster.applies != applies {
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
	te.syncOnce(te.ctx)
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
	te.cluster.mu.Lock()
	te.cluster.drift = []string{"Deployment/hello-dev/hello"}
	te.cluster.mu.Unlock()
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
	if len(te.cluster.deleted) != 1 || te.cluster.deleted[0] != "hello-dev" {
		t.Fatalf("deleted %v", te.cluster.deleted)
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
	te.cluster.mu.Lock()
	te.cluster.applyErr = errors.New("admission webhook said no")
	te.cluster.mu.Unlock()
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
	te.cluster.waitErr = errors.New("Deployment/hello-dev/hello status: 'InProgress'")
	te.git.Commit(map[string]string{"apps/hello/envs/dev/values.yaml": fmt.Sprintf(helloValues, 1)}, "hello dev")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL()}); err != nil {
		t.Fatal(err)
	}
	te.sync(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := te.env(t, "hello", "dev")
		if e.Health == state.HealthDegraded && strings.Contains(e.HealthMessage, "InProgress") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health = %s %q, want Degraded", e.Health, e.HealthMessage)
		}
		time.Sleep(20 * time.Millisecond)
	}
	te.cluster.mu.Lock()
	te.cluster.waitErr = nil
	te.cluster.mu.Unlock()
	te.sync(t) // a resync re-checks a degraded environment
	for {
		if e := te.env(t, "hello", "dev"); e.Health == state.HealthHealthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("environment never became healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhookTriggersOnlyForFollowedRepo(t *testing.T) {
	te := newTestEngine(t)
	te.git.Commit(map[string]string{"README": "x"}, "init")
	if _, err := te.SetRepo(te.ctx, state.RepoConfig{URL: te.git.URL(), Branch: "main"}); err != nil {
		t.Fatal(err)
	}
	<-te.kick // SetRepo triggers a sync
	norm, err := webhook.NormalizeURL(te.git.URL())
	if err != nil {
		t.Fatal(err)
	}
	te.onEvent(webhook.Event{RepoURL: norm + "-other", Kind: webhook.KindPush, Ref: "refs/heads/main"})
	te.onEvent(webhook.Event{RepoURL: norm, Kind: webhook.KindPush, Ref: "refs/heads/feature"})
	select {
	case <-te.kick:
		t.Fatal("an event for another repository or branch triggered a sync")
	default:
	}
	te.onEvent(webhook.Event{RepoURL: norm, Kind: webhook.KindPush, Ref: "refs/heads/main"})
	select {
	case <-te.kick:
	default:
		t.Fatal("a push to the followed branch did not trigger a sync")
	}
	if err := te.ensureWebhookSecret(te.ctx); err != nil {
		t.Fatal(err)
	}
	if sec, ok := te.webhookSecret(norm); !ok || len(sec) < 32 {
		t.Fatalf("webhook secret = %q, %v", sec, ok)
	}
	if _, ok := te.webhookSecret(norm + "-other"); ok {
		t.Fatal("a secret was offered for a repository gluebox does not follow")
	}
}
