// Package engine is gluebox's GitOps loop: it follows the deployment-configurations repository
// (polled every PollInterval with a cheap ref listing, or at once on a verified webhook), and
// for each new commit renders every apps/<app>/envs/<env> folder, applies it with an inventory
// and pruning, waits for it to become healthy, and records status and history. Environments
// whose folder disappeared are deleted; objects changed by hand are put back on the next
// resync and reported as drift; a rollback re-applies an earlier render and holds the
// environment there until Git renders something new or the user releases it.
//
// Images come from the build queue's image index (image.tag: <branch> runs the newest
// successful build of that branch, by digest), previews from the preview store; the
// platform.yaml of each synced commit is published to whoever subscribed (the app follower,
// the alerting rules). The engine calls none of them back: the follower asks it for syncs
// through TriggerApps.
//
// It owns the sync loop, the environment status and history (appliance/gitops/state), and
// the API routes under /v1/repo and /v1/apps. Rendering, Git access, applying and webhook
// verification are the sibling packages render, source, apply and webhook.
//
// Files: engine.go (configuration, construction, Run), triggers.go (what asks for a sync),
// sync.go (render and apply), health.go (health watches), rollback.go (rollback and release),
// webhook.go (webhook target), repo.go (the repository setting and the read views), http.go
// (API routes).
//
// Lifecycle: New, then Run until its context ends (nil on cancel); Ready is closed once Run
// has prepared the webhook secret and resumed the health watches, before the first sync.
// Handler methods may be called at any time after New. Only the server wiring imports it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/registry"
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
const WebhookSecretPath = webhook.DefaultSecretPath

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
	// Domain feeds the renderer's default hostnames.
	Domain string
	// Registry is the registry host images that name none are pulled from (default
	// registry.Host).
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
	if c.Registry == "" {
		c.Registry = registry.Host
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

// Images is what the engine needs of the build queue's image index (imagebuild.Index): the
// newest successful build of an (app, branch or "pr-<n>"), and whether gluebox builds that
// key at all.
type Images interface {
	Latest(app, key string) (img imagebuild.Image, known bool)
}

var _ Images = (*imagebuild.Index)(nil)

// Previews is what the engine needs of the preview store: the previews to deploy.
type Previews interface {
	List(built bool) []preview.Preview
}

var _ Previews = (*preview.Store)(nil)

// Platform receives the platform.yaml of every synced commit (platform.Publisher).
type Platform interface {
	Publish(ctx context.Context, raw []byte)
}

var _ Platform = (*platform.Publisher)(nil)

// Deps are the engine's collaborators. Applier and Secrets are required.
type Deps struct {
	Applier Applier
	Secrets Secrets
	// SetBindings replaces the externalSecret bindings of one namespace (nil removes them).
	// Optional.
	SetBindings func(ctx context.Context, namespace string, bs []kubesync.Binding) error
	// Platform receives platform.yaml's content (nil when the file is absent) after each sync
	// read it. Optional.
	Platform Platform
	// Images resolves image.tag: <branch> to the newest successful build. Optional: without
	// it image tags are used as written.
	Images Images
	// Previews lists the built previews to deploy. Optional: without it there are none.
	Previews Previews
	// Now is the clock of status and history times and of the resync schedule. Nil means
	// time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Engine is the GitOps loop.
type Engine struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	st    *state.Store
	ready supervise.Readiness
	// queue holds the one item the loop works on ("sync"): asking twice before the loop gets to
	// it syncs once, and a failed sync is retried with backoff (up to PollInterval).
	queue workqueue.TypedRateLimitingInterface[string]
	now   func() time.Time

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

	// syncs counts the loop's syncs, for SyncNow.
	syncs *syncCounter

	// healthMu guards the health watches and the context they run under (Run's; nil before
	// Run and after it ended, so no watch starts then and wg is never added to after Wait).
	healthMu  sync.Mutex
	health    map[string]*watch
	healthCtx context.Context
	wg        sync.WaitGroup
}

// syncKey is the workqueue's one item.
const syncKey = "sync"

// retryBase is the first retry delay of a failed sync; retries double up to PollInterval.
const retryBase = time.Second

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
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "git"), 0o700); err != nil {
		return nil, fmt.Errorf("gitops: cannot create %s: %w", cfg.Dir, err)
	}
	st, err := state.Open(filepath.Join(cfg.Dir, "gitops.db"), 0)
	if err != nil {
		return nil, err
	}
	return &Engine{
		cfg:  cfg,
		deps: deps,
		log:  deps.Logger.With("component", "gitops"),
		st:   st,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, max(retryBase, cfg.PollInterval)),
			workqueue.TypedRateLimitingQueueConfig[string]{}),
		health: map[string]*watch{},
		now:    deps.Now,
		syncs:  newSyncCounter(),
	}, nil
}

// WaitReady returns once Run has started (prepared the webhook secret and resumed the health
// watches), or ctx's error.
func (e *Engine) WaitReady(ctx context.Context) error { return e.ready.Wait(ctx) }

// Run polls and syncs until ctx ends, then waits for its health watchers and closes the
// state. In order: the gluebox-wide webhook secret is created if missing, the health watches
// of environments that were progressing are resumed, the engine is ready, the first sync runs.
// It fails in no other way, so the Group never runs it a second time (which the closed state
// and the shut-down queue would not allow).
func (e *Engine) Run(ctx context.Context) error {
	defer e.st.Close()
	defer e.ready.Clear()
	if err := e.ensureWebhookSecret(ctx); err != nil {
		e.log.Warn("cannot prepare the webhook secret; webhooks are refused until it exists", "err", err)
	}
	e.healthMu.Lock()
	e.healthCtx = ctx
	e.healthMu.Unlock()
	e.resumeHealth()
	e.ready.Set()

	e.queue.Add(syncKey) // the first sync
	go func() {
		t := time.NewTicker(e.cfg.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				e.queue.ShutDown()
				return
			case <-t.C:
				e.queue.Add(syncKey)
			}
		}
	}()
	for {
		item, shutdown := e.queue.Get()
		if shutdown {
			break
		}
		e.syncs.start()
		ok := e.syncOnce(ctx)
		e.syncs.finish()
		if ok || ctx.Err() != nil {
			e.queue.Forget(item)
		} else {
			e.queue.AddRateLimited(item)
		}
		e.queue.Done(item)
	}
	e.stopHealth()
	e.wg.Wait()
	return nil
}
