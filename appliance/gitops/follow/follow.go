// Package follow follows the application source repositories that platform.yaml lists and
// turns their commits into build requests:
//
//   - every new commit on a building branch (platform.yaml apps[].branches, default: the
//     repository's default branch) is submitted to the build queue (appliance/imagebuild) at
//     that exact SHA, pushed as <registry>/<app>:<sha> and <registry>/<app>:<branch>;
//   - every open pull request of an app with previews is recorded in the preview store
//     (appliance/gitops/preview, from polls and webhook pull-request events) and its head is
//     built as <app>:pr-<n>;
//   - builds are reported on their commits when platform.yaml asks (status.go).
//
// When what the GitOps engine renders for an app may have changed (a build succeeded, a
// preview appeared or went away) the follower asks the engine to re-apply that app's
// environments (Trigger). Which image an environment runs is the build queue's image index's
// answer; the follower does not resolve tags.
//
// It owns the app repositories' Git caches and what the last poll saw of them (GET
// /v1/build-sources). It knows nothing of BuildKit (the queue builds) or Kubernetes (the
// engine renders and applies).
//
// Lifecycle: New subscribes to platform.yaml (the publisher the engine publishes into) and to
// the queue's finished builds; Run polls until its context ends. HandleEvent, WebhookSecret,
// Apps and AppNames may be called at any time after New.
package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// DefaultPollInterval is Config.PollInterval's default.
const DefaultPollInterval = 15 * time.Second

// Config configures a Follower. Dir is required.
type Config struct {
	// Dir holds the app repositories' Git caches (Dir/git). Normally <data-dir>/gitops/builds.
	Dir string
	// Registry is the host[:port] builds push to. Empty means imagebuild.DefaultRegistry.
	Registry string
	// PollInterval is how often every app repository's refs are listed. Zero means 15s.
	PollInterval time.Duration
	// Domain is the DNS suffix of preview hostnames, for the links of commit statuses.
	Domain string
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("follow: config: Dir is required"))
	}
	if c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < time.Second) {
		errs = append(errs, fmt.Errorf("follow: config: poll interval %s must be 1s or more", c.PollInterval))
	}
	return errors.Join(errs...)
}

// Queue is what the Follower needs of the build queue (imagebuild.Queue).
type Queue interface {
	Submit(imagebuild.Spec) (imagebuild.Record, error)
	List(imagebuild.Filter) []imagebuild.Record
	OnFinish(func(imagebuild.Record))
}

var _ Queue = (*imagebuild.Queue)(nil)

// Previews is what the Follower needs of the preview store (preview.Store).
type Previews interface {
	Discover(a platform.App, refs source.Refs, log *slog.Logger) (changed bool, problems []string)
	PullRequest(a platform.App, pr webhook.PullRequest) (changed bool)
	Expire(apps []platform.App) (changed []string)
	Of(app string) []preview.Preview
}

var _ Previews = (*preview.Store)(nil)

// Platform is where platform.yaml comes from (platform.Publisher).
type Platform interface {
	Subscribe(func(ctx context.Context, raw []byte))
}

var _ Platform = (*platform.Publisher)(nil)

// Trigger is what the Follower needs of the GitOps engine: re-apply the environments of
// some apps soon. It must not block.
type Trigger interface {
	TriggerApps(apps ...string)
}

// Secrets reads repository credentials from the secret store.
type Secrets interface {
	Values(ctx context.Context, path string) (map[string][]byte, error)
}

// Deps are the Follower's collaborators. All but StatusPoster and Logger are required.
type Deps struct {
	Queue    Queue
	Previews Previews
	Platform Platform
	Engine   Trigger
	Secrets  Secrets
	// StatusPoster posts commit statuses for apps whose platform.yaml entry asks for them.
	// Nil means the forges' real APIs.
	StatusPoster StatusPoster
	Logger       *slog.Logger
}

// AppStatus is what the Follower last saw of one app repository.
type AppStatus struct {
	Name     string            `json:"name"`
	Repo     string            `json:"repo"`
	Default  string            `json:"defaultBranch,omitempty"`
	Building []string          `json:"buildingBranches"`
	Heads    map[string]string `json:"heads,omitempty"`
	LastPoll time.Time         `json:"lastPoll,omitzero"`
	Error    string            `json:"error,omitempty"`
}

// Follower follows the app repositories. See the package doc.
type Follower struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	kick   chan struct{}
	poster StatusPoster

	mu    sync.Mutex
	apps  []platform.App
	state map[string]*appState
}

var _ supervise.Component = (*Follower)(nil)

type appState struct {
	src     *source.Source
	srcKey  string
	status  AppStatus
	pollErr string
}

// New returns a Follower subscribed to platform.yaml and to finished builds. It follows
// nothing until platform.yaml is published, and polls nothing until Run.
func New(cfg Config, deps Deps) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Queue == nil || deps.Previews == nil || deps.Platform == nil || deps.Engine == nil || deps.Secrets == nil {
		return nil, errors.New("follow: a build queue, a preview store, a platform.yaml publisher, the GitOps engine and a secret store are required")
	}
	if cfg.Registry == "" {
		cfg.Registry = imagebuild.DefaultRegistry
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.StatusPoster == nil {
		deps.StatusPoster = forgeStatus{}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "git"), 0o700); err != nil {
		return nil, fmt.Errorf("follow: cannot create %s: %w", cfg.Dir, err)
	}
	f := &Follower{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "app-follower"),
		kick: make(chan struct{}, 1), poster: deps.StatusPoster,
		state: map[string]*appState{},
	}
	deps.Queue.OnFinish(f.buildFinished)
	deps.Platform.Subscribe(func(_ context.Context, raw []byte) { f.setPlatform(raw) })
	return f, nil
}

// setPlatform replaces the followed apps with platform.yaml's (raw is its content, nil when
// the file is absent) and polls them soon. Content that does not parse changes nothing: the
// engine reports it.
func (f *Follower) setPlatform(raw []byte) {
	var apps []platform.App
	if len(raw) > 0 {
		p, err := platform.Parse(raw)
		if err != nil {
			f.log.Warn("platform.yaml not applied to builds", "err", err)
			return
		}
		apps = p.Apps
	}
	f.mu.Lock()
	f.apps = apps
	f.mu.Unlock()
	f.Trigger()
}

// Trigger asks for a poll of every app repository as soon as possible.
func (f *Follower) Trigger() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run polls the app repositories until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	for {
		f.pollAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.kick:
		}
	}
}

// Name, WaitReady: Follower is a supervise.Component.
func (f *Follower) Name() string                    { return "app-follower" }
func (f *Follower) WaitReady(context.Context) error { return nil }

// pollAll polls every app, then removes previews of apps that left platform.yaml and
// previews past their TTL.
func (f *Follower) pollAll(ctx context.Context) {
	f.mu.Lock()
	apps := slices.Clone(f.apps)
	f.mu.Unlock()
	var changed []string
	names := map[string]bool{}
	for _, a := range apps {
		names[a.Name] = true
		if f.pollApp(ctx, a) {
			changed = append(changed, a.Name)
		}
		if ctx.Err() != nil {
			return
		}
	}
	changed = append(changed, f.deps.Previews.Expire(apps)...)
	f.mu.Lock()
	for name := range f.state {
		if !names[name] {
			delete(f.state, name)
		}
	}
	f.mu.Unlock()
	if len(changed) > 0 {
		f.deps.Engine.TriggerApps(changed...)
	}
}

func findApp(apps []platform.App, name string) (platform.App, bool) {
	for _, a := range apps {
		if a.Name == name {
			return a, true
		}
	}
	return platform.App{}, false
}

// source returns the app's Source, reusing it while the URL and credentials are unchanged.
func (f *Follower) source(ctx context.Context, a platform.App) (*source.Source, error) {
	var auth source.Auth
	if a.Credentials != "" {
		v, err := f.deps.Secrets.Values(ctx, a.Credentials)
		if err != nil {
			return nil, fmt.Errorf("cannot read repository credentials %s: %w", a.Credentials, err)
		}
		if auth, err = source.AuthFromSecret(a.Credentials, v); err != nil {
			return nil, err
		}
	}
	key := a.Repo + "\x00" + auth.Fingerprint()
	f.mu.Lock()
	st := f.state[a.Name]
	if st == nil {
		st = &appState{}
		f.state[a.Name] = st
	}
	if st.src != nil && st.srcKey == key {
		src := st.src
		f.mu.Unlock()
		return src, nil
	}
	f.mu.Unlock()
	src, err := source.New(source.Config{
		URL: a.Repo, Auth: auth, CacheDir: filepath.Join(f.cfg.Dir, "git"),
		KeepTrees: 8, Logger: f.log,
	})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	st.src, st.srcKey = src, key
	f.mu.Unlock()
	return src, nil
}

// pollApp lists one app repository's refs, submits builds for new heads and updates its
// previews. It reports whether the previews changed.
func (f *Follower) pollApp(ctx context.Context, a platform.App) (changed bool) {
	log := f.log.With("app", a.Name)
	fail := func(err error) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		st := f.state[a.Name]
		if st == nil {
			st = &appState{}
			f.state[a.Name] = st
		}
		if st.status.Error != err.Error() {
			log.Warn("app repository poll failed", "repo", a.Repo, "err", err)
		}
		st.status = AppStatus{Name: a.Name, Repo: a.Repo, Building: a.Branches, Default: st.status.Default, Heads: st.status.Heads,
			LastPoll: time.Now(), Error: err.Error()}
		return false
	}
	src, err := f.source(ctx, a)
	if err != nil {
		return fail(err)
	}
	refs, err := src.Refs(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		return fail(err)
	}
	building := a.Branches
	if len(building) == 0 && refs.Default != "" {
		building = []string{refs.Default}
	}
	var problems []string
	heads := map[string]string{}
	for _, b := range building {
		sha, ok := refs.Branches[b]
		if !ok {
			problems = append(problems, fmt.Sprintf("branch %q (platform.yaml apps[%s].branches) does not exist in %s", b, a.Name, a.Repo))
			continue
		}
		heads[b] = sha
		f.ensureBuild(a, src, b, sha, log)
	}
	if a.PreviewsEnabled() {
		var perr []string
		changed, perr = f.deps.Previews.Discover(a, refs, log)
		problems = append(problems, perr...)
	}
	for _, p := range f.deps.Previews.Of(a.Name) {
		f.ensureBuild(a, src, p.Env(), p.Commit, log)
	}
	f.mu.Lock()
	st := f.state[a.Name]
	st.status = AppStatus{Name: a.Name, Repo: a.Repo, Default: refs.Default, Building: building, Heads: heads,
		LastPoll: time.Now(), Error: strings.Join(problems, "; ")}
	if msg := strings.Join(problems, "; "); msg != st.pollErr {
		st.pollErr = msg
		if msg != "" {
			log.Warn("app repository", "problem", msg)
		}
	}
	f.mu.Unlock()
	return changed
}

// ensureBuild submits a build of sha for (app, key) unless the newest build of that key is
// already of sha (queued, running or finished; a build interrupted by a restart is redone).
// f.mu is not held.
func (f *Follower) ensureBuild(a platform.App, src *source.Source, key, sha string, log *slog.Logger) {
	if last := f.deps.Queue.List(imagebuild.Filter{App: a.Name, Branch: key, Limit: 1}); len(last) > 0 {
		r := last[0]
		if r.Commit == sha && !strings.HasPrefix(r.Error, "interrupted by") {
			return
		}
	}
	refs := []string{}
	for _, tag := range []string{sha, key} {
		ref, err := imagebuild.ImageRef(f.cfg.Registry, a.Name, tag)
		if err != nil {
			log.Warn("cannot name the image", "err", err)
			return
		}
		refs = append(refs, ref)
	}
	contextDir := a.Context
	if contextDir == "" {
		contextDir = "."
	}
	spec := imagebuild.Spec{
		App: a.Name, Branch: key, Commit: sha,
		Request: imagebuild.Request{
			Dockerfile: a.Dockerfile,
			BuildArgs:  a.BuildArgs,
			Labels: map[string]string{
				"org.opencontainers.image.revision": sha,
				"org.opencontainers.image.source":   a.Repo,
			},
			Refs: refs,
		},
		Prepare: func(ctx context.Context, w io.Writer) (string, error) {
			fmt.Fprintf(w, "checking out %s of %s\n", sha, a.Repo)
			dir, err := src.Checkout(ctx, sha)
			if err != nil {
				return "", err
			}
			ctxDir := filepath.Join(dir, filepath.FromSlash(path.Clean(contextDir)))
			if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
				return "", fmt.Errorf("the build context %q (platform.yaml apps[%s].context) is not a directory in commit %s", contextDir, a.Name, short(sha))
			}
			return ctxDir, nil
		},
	}
	rec, err := f.deps.Queue.Submit(spec)
	if err != nil {
		log.Warn("cannot queue a build", "branch", key, "commit", short(sha), "err", err)
		return
	}
	log.Info("build queued", "build", rec.ID, "branch", key, "commit", short(sha))
	f.postStatus(a, rec)
}

// app returns the followed app whose repository is repoURL (as webhook.NormalizeURL spells it).
func (f *Follower) app(repoURL string) (platform.App, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.apps {
		if u, err := webhook.NormalizeURL(a.Repo); err == nil && u == repoURL {
			return a, true
		}
	}
	return platform.App{}, false
}

// HandleEvent takes a verified webhook event; events of repositories that are not app
// repositories are ignored (the engine takes the deployment-configurations repository's). A
// pull-request event opens, moves or closes a preview; every event of an app repository polls
// it at once.
func (f *Follower) HandleEvent(ev webhook.Event) {
	a, ok := f.app(ev.RepoURL)
	if !ok {
		return
	}
	if pr := ev.PullRequest; ev.Kind == webhook.KindPullRequest && pr != nil && f.deps.Previews.PullRequest(a, *pr) {
		f.deps.Engine.TriggerApps(a.Name)
	}
	f.Trigger()
}

// WebhookSecret returns the secret that verifies deliveries for the app repository repoURL:
// its credentials' "webhook-secret" key, else the gluebox-wide secret. ok is false for
// repositories that are not app repositories.
func (f *Follower) WebhookSecret(repoURL string) ([]byte, bool) {
	a, ok := f.app(repoURL)
	if !ok {
		return nil, false
	}
	return webhook.LookupSecret(f.deps.Secrets, a.Credentials)
}

var _ webhook.Target = (*Follower)(nil)

// buildFinished is the queue's finish hook: a successful build may move environments, and
// the build is reported on its commit when the app asks for that.
func (f *Follower) buildFinished(r imagebuild.Record) {
	if r.Status == imagebuild.StatusSucceeded {
		f.deps.Engine.TriggerApps(r.App)
	}
	f.mu.Lock()
	a, ok := findApp(f.apps, r.App)
	f.mu.Unlock()
	if ok && r.SupersededBy == "" {
		f.postStatus(a, r)
	}
}

// Apps returns what the last poll saw of each followed app repository.
func (f *Follower) Apps() []AppStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []AppStatus{}
	for _, a := range f.apps {
		s := AppStatus{Name: a.Name, Repo: a.Repo, Building: a.Branches}
		if st := f.state[a.Name]; st != nil && !st.status.LastPoll.IsZero() {
			s = st.status
		}
		out = append(out, s)
	}
	return out
}

// AppNames lists the followed apps (for the build metrics).
func (f *Follower) AppNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.apps))
	for _, a := range f.apps {
		out = append(out, a.Name)
	}
	return out
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
