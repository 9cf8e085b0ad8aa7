// Package engine is gluebox's GitOps loop: it follows the deployment-configurations repository
// (polled every PollInterval with a cheap ref listing, or at once on a verified webhook), and
// for each new commit renders every apps/<app>/envs/<env> folder, applies it with an inventory
// and pruning, waits for it to become healthy, and records status and history. Environments
// whose folder disappeared are deleted; objects changed by hand are put back on the next
// resync and reported as drift; a rollback re-applies an earlier render and holds the
// environment there until Git renders something new or the user releases it.
//
// It owns the sync loop, the environment status and history (appliance/gitops/state), and
// the API routes under /v1/repo and /v1/apps. Rendering, Git access, applying and webhook
// verification are the sibling packages render, source, apply and webhook.
//
// Lifecycle: New, then Run until its context ends (nil on cancel); Ready is closed once the
// state is open. Handler methods may be called at any time after New. Only the server wiring
// imports it.
package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/builds"
	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval   = 15 * time.Second
	DefaultResyncInterval = time.Minute
	DefaultHealthTimeout  = 5 * time.Minute
)

// WebhookPath is where the front door serves the webhook receiver, on every host.
const WebhookPath = "/.gluebox/webhook"

// WebhookSecretPath is the secret-store path of the webhook secret used for repositories
// whose credentials do not hold their own "webhook-secret" key. It is created on first start.
const WebhookSecretPath = "secret/gluebox/webhook"

// Labels put on every environment's namespace.
const (
	LabelApp    = "gluebox.dev/app"
	LabelEnv    = "gluebox.dev/env"
	LabelCommit = "gluebox.dev/commit"
)

// Config configures the engine. Dir is required; every other zero value means the default.
type Config struct {
	// Repo is the deployment-configurations repository from /etc/gluebox/config.yaml. When
	// its URL is set it wins and `gluebox repo set-config` is refused; when empty, the
	// repository set at run time (kept in the state file) is used.
	Repo state.RepoConfig
	// Dir holds the state file and the Git cache.
	Dir string
	// PollInterval is how often the repository's branch head is checked (default 15s).
	PollInterval time.Duration
	// ResyncInterval is how often every environment is re-applied even without a new commit,
	// which puts back objects changed by hand (default 1m).
	ResyncInterval time.Duration
	// HealthTimeout bounds the wait for an applied environment to become healthy before it
	// is reported Degraded (default 5m).
	HealthTimeout time.Duration
	// Domain and Registry feed the renderer (default hostnames, default image registry).
	Domain   string
	Registry string
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("gitops: config: Dir is required"))
	}
	for name, d := range map[string]time.Duration{"poll interval": c.PollInterval, "resync interval": c.ResyncInterval, "health timeout": c.HealthTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("gitops: config: %s %s is negative", name, d))
		}
	}
	if c.PollInterval > 0 && c.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("gitops: config: poll interval %s is below 1s: use --poll-interval 1s or more", c.PollInterval))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	return c
}

// Applier is what the engine needs from appliance/gitops/apply.
type Applier interface {
	Apply(ctx context.Context, set apply.Set, previous []state.ObjRef) (apply.Result, error)
	Delete(ctx context.Context, set apply.Set, inventory []state.ObjRef) ([]string, error)
	Wait(ctx context.Context, inventory []state.ObjRef, timeout time.Duration) error
}

var _ Applier = (*apply.Applier)(nil)

// Secrets is what the engine needs from the secret store: repository credentials and the
// webhook secret.
type Secrets interface {
	Values(ctx context.Context, path string) (map[string][]byte, error)
	Set(ctx context.Context, path string, values map[string][]byte, by string) (uint64, error)
}

// Deps are the engine's collaborators.
type Deps struct {
	Applier Applier
	Secrets Secrets
	// SetBindings replaces the externalSecret bindings of one namespace (nil removes them).
	// Optional.
	SetBindings func(ctx context.Context, namespace string, bs []kubesync.Binding) error
	// OnPlatform receives platform.yaml's content (nil when the file is absent) after a sync
	// read it, whenever it differs from the last call's. Optional.
	OnPlatform func(ctx context.Context, raw []byte)
	// Builds follows the app repositories: it resolves image.tag: <branch> to the newest
	// successful build, lists the previews to deploy and takes their webhook events.
	// Optional: without it image tags are used as written and there are no previews.
	Builds Builds
	Logger *slog.Logger
}

// Builds is what the engine needs of appliance/gitops/builds.
type Builds interface {
	ResolveTag(repository, tag string) (string, error)
	Previews(built bool) []builds.Preview
	HandleEvent(ev webhook.Event) bool
	CredentialsFor(repoURL string) (path string, ok bool)
}

var _ Builds = (*builds.Follower)(nil)

// Engine is the GitOps loop.
type Engine struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	st    *state.Store
	ready supervise.Readiness
	kick  chan struct{}
	hook  *webhook.Receiver

	// mu serialises syncs, rollbacks and releases: one writer of environments at a time.
	mu         sync.Mutex
	src        *source.Source
	srcKey     string
	lastResync time.Time

	// trigMu guards what the next sync is asked to do beyond its schedule: re-apply
	// everything (force), or the environments of some apps (pending). It is not mu, so
	// asking never waits for a sync in progress.
	trigMu  sync.Mutex
	force   bool
	pending map[string]bool
	// platformSum is the hash of the platform.yaml last handed to OnPlatform.
	platformSum  [32]byte
	platformSeen bool

	healthMu sync.Mutex
	health   map[string]*watch
	runCtx   context.Context
	wg       sync.WaitGroup

	now func() time.Time
}

// New opens the state under cfg.Dir and returns an engine that does nothing until Run.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Applier == nil || deps.Secrets == nil {
		return nil, errors.New("gitops: an applier and a secret store are required")
	}
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "git"), 0o700); err != nil {
		return nil, fmt.Errorf("gitops: cannot create %s: %w", cfg.Dir, err)
	}
	st, err := state.Open(filepath.Join(cfg.Dir, "gitops.db"), 0)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		deps:   deps,
		log:    deps.Logger.With("component", "gitops"),
		st:     st,
		kick:   make(chan struct{}, 1),
		health: map[string]*watch{},
		now:    time.Now,
	}
	e.hook, err = webhook.New(webhook.Config{Secret: e.webhookSecret, OnEvent: e.onEvent}, deps.Logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	return e, nil
}

// WaitReady returns once Run has started (prepared the webhook secret and resumed the health
// watches), or ctx's error.
func (e *Engine) WaitReady(ctx context.Context) error { return e.ready.Wait(ctx) }

// Webhook is the receiver to mount at WebhookPath on the front door.
func (e *Engine) Webhook() *webhook.Receiver { return e.hook }

// Trigger asks for a sync as soon as possible, re-applying every environment.
func (e *Engine) Trigger() {
	e.trigMu.Lock()
	e.force = true
	e.trigMu.Unlock()
	e.wake()
}

// TriggerApps asks for a sync as soon as possible that re-applies the environments (previews
// included) of the named apps, for example because one of them has a new build. The others are
// left for their next scheduled resync; a new commit of the repository re-applies everything
// anyway, and environments that are gone are removed either way.
func (e *Engine) TriggerApps(apps ...string) {
	if len(apps) == 0 {
		return
	}
	e.trigMu.Lock()
	if e.pending == nil {
		e.pending = map[string]bool{}
	}
	for _, a := range apps {
		e.pending[a] = true
	}
	e.trigMu.Unlock()
	e.wake()
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run polls and syncs until ctx ends, then waits for its health watchers and closes the state.
// It fails in no other way, so the Group never runs it a second time (which the closed state
// would not allow).
func (e *Engine) Run(ctx context.Context) error {
	defer e.ready.Clear()
	defer e.st.Close()
	e.runCtx = ctx
	if err := e.ensureWebhookSecret(ctx); err != nil {
		e.log.Warn("cannot prepare the webhook secret; webhooks are refused until it exists", "err", err)
	}
	e.resumeHealth()
	e.ready.Set()
	e.syncOnce(ctx)
	t := time.NewTicker(e.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.stopHealth()
			e.wg.Wait()
			return nil
		case <-t.C:
		case <-e.kick:
		}
		e.syncOnce(ctx)
	}
}

// repoConfig is the repository to follow: the config file's, else the run-time one.
func (e *Engine) repoConfig() (state.RepoConfig, bool, error) {
	if e.cfg.Repo.URL != "" {
		return e.cfg.Repo, true, nil
	}
	return e.st.RepoConfig()
}

// source returns a Source for rc with current credentials, reusing the last one when nothing
// changed.
func (e *Engine) source(ctx context.Context, rc state.RepoConfig) (*source.Source, error) {
	auth, err := e.credentials(ctx, rc.Credentials)
	if err != nil {
		return nil, err
	}
	key := rc.URL + "\x00" + rc.Branch + "\x00" + auth.Fingerprint()
	if e.src != nil && e.srcKey == key {
		return e.src, nil
	}
	src, err := source.New(source.Config{
		URL: rc.URL, Branch: rc.Branch, Auth: auth,
		CacheDir: filepath.Join(e.cfg.Dir, "git"),
		Logger:   e.log,
	})
	if err != nil {
		return nil, err
	}
	e.src, e.srcKey = src, key
	return src, nil
}

// credentials reads a repository's credentials from the secret store: keys token, or
// username + password, or ssh-key (+ ssh-key-passphrase) with known_hosts.
func (e *Engine) credentials(ctx context.Context, path string) (source.Auth, error) {
	if path == "" {
		return source.Auth{}, nil
	}
	v, err := e.deps.Secrets.Values(ctx, path)
	if err != nil {
		return source.Auth{}, fmt.Errorf("cannot read repository credentials %s: %w", path, err)
	}
	return source.AuthFromSecret(path, v)
}

// syncOnce checks the branch head and syncs when it moved, a resync is due or one was asked.
func (e *Engine) syncOnce(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.trigMu.Lock()
	force, only := e.force, e.pending
	e.force, e.pending = false, nil
	e.trigMu.Unlock()
	resync := force || e.now().Sub(e.lastResync) >= e.cfg.ResyncInterval

	rc, ok, err := e.repoConfig()
	if err != nil {
		e.log.Error("cannot read the repository setting", "err", err)
		return
	}
	if !ok {
		return
	}
	fail := func(err error) {
		e.log.Warn("deployment-configurations sync failed", "url", rc.URL, "err", err)
		_, _ = e.st.UpdateRepoStatus(func(s *state.RepoStatus) {
			s.URL, s.Branch = rc.URL, rc.Branch
			s.LastCheckAt = e.now()
			s.LastError, s.LastErrorAt = err.Error(), e.now()
		})
	}
	src, err := e.source(ctx, rc)
	if err != nil {
		fail(err)
		return
	}
	head, err := src.Head(ctx)
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	rs, err := e.st.UpdateRepoStatus(func(s *state.RepoStatus) {
		if s.URL != rc.URL || s.Branch != rc.Branch {
			*s = state.RepoStatus{URL: rc.URL, Branch: rc.Branch}
		}
		s.Commit, s.LastCheckAt = head, e.now()
	})
	if err != nil {
		e.log.Error("cannot record repository status", "err", err)
		return
	}
	// With the commit already synced and no resync due, only the apps asked for are applied.
	partial := head == rs.Synced && !resync
	if partial && len(only) == 0 {
		return
	}
	if !partial {
		only = nil
	}
	if err := e.sync(ctx, src, head, only); err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	if !partial {
		e.lastResync = e.now()
	}
	_, _ = e.st.UpdateRepoStatus(func(s *state.RepoStatus) {
		s.Synced, s.LastSyncAt = head, e.now()
		s.LastError, s.LastErrorAt = "", time.Time{}
	})
}

// sync renders and applies the environments of commit head: every one, or with only set those
// of the apps in only. Environments that commit head (or the previews) no longer have are
// removed either way.
func (e *Engine) sync(ctx context.Context, src *source.Source, head string, only map[string]bool) error {
	dir, err := src.Checkout(ctx, head)
	if err != nil {
		return err
	}
	repo, closeRepo, err := render.OpenRepo(dir)
	if err != nil {
		return err
	}
	defer closeRepo()
	plat, err := platform.Read(repo)
	if err != nil {
		return fmt.Errorf("commit %s: %w", short(head), err)
	}
	if e.deps.OnPlatform != nil {
		if sum := sha256.Sum256(plat.Raw); sum != e.platformSum || !e.platformSeen {
			e.platformSum, e.platformSeen = sum, true
			e.deps.OnPlatform(ctx, plat.Raw)
		}
	}
	list, err := render.List(repo)
	if err != nil {
		return fmt.Errorf("commit %s: %w", short(head), err)
	}
	present := map[string]bool{}
	apps := map[string]bool{}
	for _, ae := range list {
		present[ae.App+"/"+ae.Env] = true
		apps[ae.App] = true
		if only != nil && !only[ae.App] {
			continue
		}
		e.syncEnv(ctx, repo, head, ae.App, ae.Env, nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if e.deps.Builds != nil {
		for _, p := range e.deps.Builds.Previews(true) {
			if !apps[p.App] {
				continue // previews need the app's folder for their values
			}
			if present[p.App+"/"+p.Env()] {
				e.log.Warn("preview not deployed: an env folder has its name", "app", p.App, "env", p.Env())
				continue
			}
			present[p.App+"/"+p.Env()] = true
			if only != nil && !only[p.App] {
				continue
			}
			e.syncEnv(ctx, repo, head, p.App, p.Env(), &p)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	envs, err := e.st.Envs()
	if err != nil {
		return err
	}
	for _, env := range envs {
		if !present[env.App+"/"+env.Env] {
			e.removeEnv(ctx, env)
		}
	}
	return nil
}

func envID(app, env string) string { return app + "/" + env }

// renderOptions are the options that render app's env (a preview when p is set).
func (e *Engine) renderOptions(app, env, head string, p *builds.Preview) render.Options {
	opts := render.Options{App: app, Env: env, Domain: e.cfg.Domain, Commit: head, Registry: e.cfg.Registry}
	if e.deps.Builds == nil {
		return opts
	}
	opts.ResolveTag = e.deps.Builds.ResolveTag
	if p != nil {
		opts.Preview = int(p.Number)
		digest, resolve := p.Digest, opts.ResolveTag
		opts.ResolveTag = func(repository, tag string) (string, error) {
			if repository == app {
				return digest, nil // a preview runs its pull request's build
			}
			return resolve(repository, tag)
		}
	}
	return opts
}

// syncEnv renders and applies one environment (a preview when p is set). Its errors are
// recorded on the environment, whose running version is left alone.
func (e *Engine) syncEnv(ctx context.Context, repo fs.FS, head, app, env string, p *builds.Preview) {
	log := e.log.With("app", app, "env", env, "commit", short(head))
	now := e.now()
	res, err := render.Render(repo, e.renderOptions(app, env, head, p))
	if err != nil {
		log.Warn("render failed; the running version is kept", "err", err)
		_, _ = e.st.UpdateEnv(app, env, func(s *state.Env) {
			s.Namespace = render.Namespace(app, env)
			s.LastError, s.LastErrorAt, s.LastSyncAt = fmt.Sprintf("commit %s: %v", short(head), err), now, now
		})
		return
	}
	cur, err := e.st.Env(app, env)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		log.Error("cannot read environment state", "err", err)
		return
	}
	if cur.Held {
		if res.Digest == cur.HeldGitDigest {
			_, _ = e.st.UpdateEnv(app, env, func(s *state.Env) { s.GitDigest, s.LastSyncAt = res.Digest, now })
			return
		}
		log.Info("new render released the rollback hold", "digest", res.Digest)
	}
	// With an unchanged render, whatever the apply changes was changed by hand: drift.
	unchanged := cur.Digest == res.Digest && !cur.Held
	ar, applyErr := e.deps.Applier.Apply(ctx, e.set(app, env, head, res.Objects), cur.Inventory)
	if applyErr != nil {
		log.Warn("apply failed", "err", applyErr)
		_, _ = e.st.UpdateEnv(app, env, func(s *state.Env) {
			s.Namespace, s.Source, s.GitDigest = res.Namespace, string(res.Source), res.Digest
			if len(ar.Inventory) > 0 {
				s.Inventory = ar.Inventory
			}
			s.LastError, s.LastErrorAt, s.LastSyncAt = fmt.Sprintf("commit %s: %v", short(head), applyErr), now, now
		})
		return
	}
	if e.deps.SetBindings != nil {
		var bs []kubesync.Binding
		if res.Merged != nil {
			bs, err = kubesync.BindingsFromValues(res.Namespace, res.Merged.Values)
		}
		if err == nil {
			err = e.deps.SetBindings(ctx, res.Namespace, bs)
		}
		if err != nil {
			log.Warn("externalSecret bindings not applied", "err", err)
		}
	}
	changed := append(append([]string{}, ar.Created...), ar.Configured...)
	rev := cur.Revision
	if !unchanged || cur.Revision == 0 {
		reason := "sync"
		if cur.Revision != 0 && cur.Commit == head {
			reason = "build" // same configuration, new image
		}
		rev, err = e.st.AddRevision(app, env, state.Revision{Commit: head, Digest: res.Digest, AppliedAt: now, Reason: reason, Image: res.Image, Manifest: res.Manifest})
		if err != nil {
			log.Error("cannot record revision", "err", err)
		}
		log.Info("environment applied", "digest", res.Digest, "revision", rev, "changed", len(changed), "pruned", len(ar.Pruned))
	} else if len(changed) > 0 {
		log.Warn("drift put back", "objects", strings.Join(changed, ", "))
	}
	st, _ := e.st.UpdateEnv(app, env, func(s *state.Env) {
		s.Namespace, s.Source = res.Namespace, string(res.Source)
		s.GitDigest, s.Digest, s.Revision, s.Inventory = res.Digest, res.Digest, rev, ar.Inventory
		s.Image = res.Image
		s.Held, s.HeldGitDigest = false, ""
		if !unchanged || s.Commit == "" {
			s.Commit, s.LastAppliedAt = head, now
		}
		if unchanged && len(changed) > 0 {
			s.Drift, s.DriftAt = changed, now
		}
		s.LastError, s.LastErrorAt, s.LastSyncAt = "", time.Time{}, now
		if !unchanged || len(changed) > 0 || s.Health != state.HealthHealthy {
			s.Health, s.HealthMessage = state.HealthProgressing, "waiting for the applied objects to become ready"
		}
	})
	if st.Health == state.HealthProgressing {
		e.watchHealth(st, true)
	} else {
		e.watchHealth(st, false) // notice a crash since the last check
	}
}

// set is the apply.Set of one rendered environment.
func (e *Engine) set(app, env, commit string, objs []*unstructured.Unstructured) apply.Set {
	ns := render.Namespace(app, env)
	labels := map[string]string{LabelApp: app, LabelEnv: env}
	if commit != "" {
		labels[LabelCommit] = commit
	}
	return apply.Set{Owner: ns, Namespace: ns, NamespaceLabels: labels, Objects: objs}
}

// removeEnv deletes an environment whose folder left the repository.
func (e *Engine) removeEnv(ctx context.Context, env state.Env) {
	log := e.log.With("app", env.App, "env", env.Env)
	e.cancelHealth(envID(env.App, env.Env))
	ns := render.Namespace(env.App, env.Env)
	deleted, err := e.deps.Applier.Delete(ctx, apply.Set{Owner: ns, Namespace: ns}, env.Inventory)
	if err != nil {
		log.Warn("cannot delete removed environment; retrying at the next sync", "err", err)
		_, _ = e.st.UpdateEnv(env.App, env.Env, func(s *state.Env) {
			s.LastError, s.LastErrorAt = fmt.Sprintf("environment folder removed, delete failed: %v", err), e.now()
		})
		return
	}
	if e.deps.SetBindings != nil {
		if err := e.deps.SetBindings(ctx, ns, nil); err != nil {
			log.Warn("cannot remove externalSecret bindings", "err", err)
		}
	}
	if err := e.st.DeleteEnv(env.App, env.Env); err != nil {
		log.Error("cannot forget removed environment", "err", err)
		return
	}
	log.Info("environment folder removed; environment deleted", "objects", len(deleted))
}

// Rollback re-applies revision to (0: the newest revision older than the running one with a
// different render) and holds the environment there.
func (e *Engine) Rollback(ctx context.Context, app, env string, to int) (state.Env, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.st.Env(app, env)
	if err != nil {
		return state.Env{}, err
	}
	if to == 0 {
		hist, err := e.st.History(app, env)
		if err != nil {
			return state.Env{}, err
		}
		for _, r := range hist {
			if r.N < cur.Revision && r.Digest != cur.Digest {
				to = r.N
				break
			}
		}
		if to == 0 {
			return state.Env{}, &InputError{fmt.Sprintf("%s/%s has no earlier revision to roll back to", app, env)}
		}
	}
	if to == cur.Revision {
		return state.Env{}, &InputError{fmt.Sprintf("%s/%s already runs revision %d", app, env, to)}
	}
	rev, err := e.st.Revision(app, env, to)
	if err != nil {
		return state.Env{}, err
	}
	objs, err := decodeManifest(rev.Manifest)
	if err != nil {
		return state.Env{}, fmt.Errorf("revision %d of %s/%s: %w", to, app, env, err)
	}
	ar, err := e.deps.Applier.Apply(ctx, e.set(app, env, rev.Commit, objs), cur.Inventory)
	now := e.now()
	if err != nil {
		_, _ = e.st.UpdateEnv(app, env, func(s *state.Env) {
			if len(ar.Inventory) > 0 {
				s.Inventory = ar.Inventory
			}
			s.LastError, s.LastErrorAt = fmt.Sprintf("rollback to revision %d: %v", to, err), now
		})
		return state.Env{}, err
	}
	n, err := e.st.AddRevision(app, env, state.Revision{Commit: rev.Commit, Digest: rev.Digest, AppliedAt: now, Reason: fmt.Sprintf("rollback to %d", to), Image: rev.Image, Manifest: rev.Manifest})
	if err != nil {
		return state.Env{}, err
	}
	st, err := e.st.UpdateEnv(app, env, func(s *state.Env) {
		s.Commit, s.Digest, s.Revision, s.Inventory, s.LastAppliedAt = rev.Commit, rev.Digest, n, ar.Inventory, now
		s.Image = rev.Image
		s.Held, s.HeldGitDigest = true, s.GitDigest
		s.Health, s.HealthMessage = state.HealthProgressing, "waiting for the rolled-back objects to become ready"
		s.LastError, s.LastErrorAt = "", time.Time{}
	})
	if err != nil {
		return state.Env{}, err
	}
	e.log.Info("environment rolled back and held", "app", app, "env", env, "to", to, "revision", n)
	e.watchHealth(st, true)
	return st, nil
}

// Release lifts a rollback hold and syncs the environment back to Git at once.
func (e *Engine) Release(ctx context.Context, app, env string) (state.Env, error) {
	e.mu.Lock()
	cur, err := e.st.Env(app, env)
	if err == nil && !cur.Held {
		err = &InputError{fmt.Sprintf("%s/%s is not held (only a rollback holds an environment)", app, env)}
	}
	if err == nil {
		// Forget the held digest so the next sync applies Git's render even if unchanged.
		cur, err = e.st.UpdateEnv(app, env, func(s *state.Env) { s.Held, s.HeldGitDigest, s.Digest = false, "", "" })
	}
	e.mu.Unlock()
	if err != nil {
		return state.Env{}, err
	}
	e.Trigger()
	return cur, nil
}

// InputError is a request the engine refuses as it stands (the API answers 400).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// decodeManifest reads a YAML stream of objects.
func decodeManifest(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("cannot decode stored manifest: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// watchHealth waits, in the background, for env's objects to become healthy and records the
// outcome. With replace, a running watch of the same environment is replaced; without, an
// environment already watched is left alone.
func (e *Engine) watchHealth(env state.Env, replace bool) {
	parent := e.runCtx
	if parent == nil || parent.Err() != nil {
		return
	}
	id := envID(env.App, env.Env)
	ctx, cancel := context.WithCancel(parent)
	w := &watch{cancel: cancel}
	e.healthMu.Lock()
	if old := e.health[id]; old != nil {
		if !replace {
			e.healthMu.Unlock()
			cancel()
			return
		}
		old.cancel()
	}
	e.health[id] = w
	e.healthMu.Unlock()

	var refs []state.ObjRef
	for _, r := range env.Inventory {
		if r.Kind != "Namespace" || r.Group != "" {
			refs = append(refs, r)
		}
	}
	digest := env.Digest
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			cancel()
			e.healthMu.Lock()
			if e.health[id] == w {
				delete(e.health, id)
			}
			e.healthMu.Unlock()
		}()
		err := e.deps.Applier.Wait(ctx, refs, e.cfg.HealthTimeout)
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // replaced or stopping
		}
		_, _ = e.st.UpdateEnv(env.App, env.Env, func(s *state.Env) {
			if s.Digest != digest {
				return // superseded
			}
			if err != nil {
				s.Health, s.HealthMessage = state.HealthDegraded, err.Error()
				return
			}
			if s.Health != state.HealthHealthy {
				s.HealthyAt = e.now()
			}
			s.Health, s.HealthMessage = state.HealthHealthy, ""
		})
		if err != nil {
			e.log.Warn("environment not healthy", "app", env.App, "env", env.Env, "err", err)
		}
	}()
}

// watch is one running health wait.
type watch struct{ cancel context.CancelFunc }

// resumeHealth restarts the health watch of environments that were progressing at shutdown.
func (e *Engine) resumeHealth() {
	envs, err := e.st.Envs()
	if err != nil {
		e.log.Error("cannot read environments", "err", err)
		return
	}
	for _, env := range envs {
		if env.Health == state.HealthProgressing || env.Health == state.HealthUnknown {
			e.watchHealth(env, true)
		}
	}
}

func (e *Engine) cancelHealth(id string) {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	if w := e.health[id]; w != nil {
		w.cancel()
		delete(e.health, id)
	}
}

func (e *Engine) stopHealth() {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	for id, w := range e.health {
		w.cancel()
		delete(e.health, id)
	}
}

// onEvent triggers a sync when a verified push names the followed repository, and hands
// events of app repositories to the builds.
func (e *Engine) onEvent(ev webhook.Event) {
	if e.deps.Builds != nil {
		e.deps.Builds.HandleEvent(ev)
	}
	rc, ok, err := e.repoConfig()
	if err != nil || !ok {
		return
	}
	want, err := webhook.NormalizeURL(rc.URL)
	if err != nil || want != ev.RepoURL {
		return
	}
	if ev.Kind == webhook.KindPush && rc.Branch != "" && ev.Ref != "refs/heads/"+rc.Branch {
		e.log.Debug("webhook push to another branch ignored", "ref", ev.Ref)
		return
	}
	e.log.Info("webhook: deployment-configurations changed; syncing now", "provider", ev.Provider, "ref", ev.Ref, "after", short(ev.After))
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// webhookSecret returns the secret that verifies deliveries for repoURL, which must be the
// followed repository or an app repository of platform.yaml: its credentials' "webhook-secret"
// key, else the gluebox-wide secret.
func (e *Engine) webhookSecret(repoURL string) ([]byte, bool) {
	creds, ok := "", false
	if rc, set, err := e.repoConfig(); err == nil && set {
		if want, err := webhook.NormalizeURL(rc.URL); err == nil && want == repoURL {
			creds, ok = rc.Credentials, true
		}
	}
	if !ok && e.deps.Builds != nil {
		creds, ok = e.deps.Builds.CredentialsFor(repoURL)
	}
	if !ok {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if creds != "" {
		if v, err := e.deps.Secrets.Values(ctx, creds); err == nil && len(v["webhook-secret"]) > 0 {
			return v["webhook-secret"], true
		}
	}
	v, err := e.deps.Secrets.Values(ctx, WebhookSecretPath)
	if err != nil || len(v["secret"]) == 0 {
		return nil, false
	}
	return v["secret"], true
}

// ensureWebhookSecret creates the gluebox-wide webhook secret on first start.
func (e *Engine) ensureWebhookSecret(ctx context.Context) error {
	if v, err := e.deps.Secrets.Values(ctx, WebhookSecretPath); err == nil && len(v["secret"]) > 0 {
		return nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	_, err := e.deps.Secrets.Set(ctx, WebhookSecretPath, map[string][]byte{"secret": []byte(hex.EncodeToString(b))}, "gluebox")
	return err
}

// SetRepo checks that rc's repository is reachable with its credentials, then follows it.
// Nothing changes when the check fails.
func (e *Engine) SetRepo(ctx context.Context, rc state.RepoConfig) (state.RepoStatus, error) {
	if e.cfg.Repo.URL != "" {
		return state.RepoStatus{}, &InputError{fmt.Sprintf("the deployment-configurations repository is set in the config file (config-repo: %s); change it there and restart gluebox", e.cfg.Repo.URL)}
	}
	rc.URL = strings.TrimSpace(rc.URL)
	auth, err := e.credentials(ctx, rc.Credentials)
	if err != nil {
		return state.RepoStatus{}, &InputError{err.Error()}
	}
	src, err := source.New(source.Config{URL: rc.URL, Branch: rc.Branch, Auth: auth, CacheDir: filepath.Join(e.cfg.Dir, "git"), Logger: e.log})
	if err != nil {
		return state.RepoStatus{}, &InputError{err.Error()}
	}
	head, err := src.Head(ctx)
	if err != nil {
		return state.RepoStatus{}, &InputError{fmt.Sprintf("repository not changed: %v", err)}
	}
	rc.SetAt = e.now()
	e.mu.Lock()
	err = e.st.SetRepoConfig(rc)
	e.mu.Unlock()
	if err != nil {
		return state.RepoStatus{}, err
	}
	e.log.Info("deployment-configurations repository set", "url", rc.URL, "branch", rc.Branch, "head", short(head))
	e.Trigger()
	return state.RepoStatus{URL: rc.URL, Branch: rc.Branch, Commit: head}, nil
}

// RepoView is the repository setting and status, for the API.
type RepoView struct {
	Config state.RepoConfig `json:"config"`
	// FromConfigFile is true when the setting comes from /etc/gluebox/config.yaml.
	FromConfigFile bool             `json:"from_config_file"`
	Status         state.RepoStatus `json:"status"`
	WebhookPath    string           `json:"webhook_path"`
	// WebhookSecret is the secret-store path and key that verify webhook deliveries.
	WebhookSecret string        `json:"webhook_secret"`
	PollInterval  time.Duration `json:"poll_interval"`
}

// Repo returns the repository setting and status.
func (e *Engine) Repo() (RepoView, error) {
	rc, ok, err := e.repoConfig()
	if err != nil {
		return RepoView{}, err
	}
	st, err := e.st.RepoStatus()
	if err != nil {
		return RepoView{}, err
	}
	v := RepoView{FromConfigFile: e.cfg.Repo.URL != "", WebhookPath: WebhookPath, PollInterval: e.cfg.PollInterval, WebhookSecret: WebhookSecretPath + " (key secret)"}
	if ok {
		v.Config = rc
		if st.URL == rc.URL {
			v.Status = st
		}
		if rc.Credentials != "" {
			v.WebhookSecret = rc.Credentials + " (key webhook-secret), else " + v.WebhookSecret
		}
	}
	return v, nil
}

// Envs lists every environment's status (without inventories).
func (e *Engine) Envs() ([]state.Env, error) {
	envs, err := e.st.Envs()
	for i := range envs {
		envs[i].Inventory = nil
	}
	return envs, err
}

// EnvView is one environment with its history.
type EnvView struct {
	state.Env
	History []state.Revision `json:"history"`
}

// Env returns one environment's status and history.
func (e *Engine) Env(app, env string) (EnvView, error) {
	st, err := e.st.Env(app, env)
	if err != nil {
		return EnvView{}, err
	}
	hist, err := e.st.History(app, env)
	return EnvView{Env: st, History: hist}, err
}

// History lists an environment's revisions, newest first, without manifests.
func (e *Engine) History(app, env string) ([]state.Revision, error) { return e.st.History(app, env) }

// Manifest returns the applied manifest of one revision.
func (e *Engine) Manifest(app, env string, n int) ([]byte, error) {
	r, err := e.st.Revision(app, env, n)
	return r.Manifest, err
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
