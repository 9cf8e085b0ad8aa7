// Package builds follows the application source repositories that platform.yaml lists and
// turns their commits into images and preview environments:
//
//   - every new commit on a building branch (platform.yaml apps[].branches, default: the
//     repository's default branch) is submitted to the build queue (appliance/build) at that
//     exact SHA, pushed as <registry>/<app>:<sha> and <registry>/<app>:<branch>;
//   - every open pull request becomes a preview: discovered from webhook pull-request events,
//     from refs/pull/<n>/head and refs/merge-requests/<n>/head when polling, and from branches
//     matching Config.PreviewBranches. Its head is built as <app>:pr-<n>. A preview is handed
//     to the GitOps engine (Previews) only once a build of it succeeded, so its environment
//     never waits on a missing image; it goes away when the pull request is closed or merged
//     (webhook), its ref disappears (poll), or it has not moved for Config.PreviewTTL.
//   - ResolveTag tells the renderer which image an environment runs: image.tag: <branch> is
//     the newest successful build of that branch, by digest.
//
// It owns the app repositories' Git caches and the preview records (previews.json). It knows
// nothing of BuildKit (the Queue does the builds) or Kubernetes (the engine renders and
// applies).
//
// Lifecycle: New, SetPlatform whenever platform.yaml changes (the engine's OnPlatform hook),
// Run until its context ends. HandleEvent, BuildFinished, ResolveTag, Previews and Apps may
// be called at any time after New.
package builds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval = 15 * time.Second
	DefaultPreviewTTL   = 7 * 24 * time.Hour
)

// Config configures a Follower. Dir is required.
type Config struct {
	// Dir holds the app repositories' Git caches (Dir/git) and the preview records
	// (Dir/previews.json). Normally <data-dir>/gitops/builds.
	Dir string
	// Registry is the host[:port] builds push to. Empty means imagebuild.DefaultRegistry.
	Registry string
	// PollInterval is how often every app repository's refs are listed. Zero means 15s.
	PollInterval time.Duration
	// PreviewBranches is a pattern of branch names that are previews, with one "*" at the end
	// standing for the pull-request number: "preview/*" makes branch preview/7 the preview
	// pr-7. Empty means branches never make previews (pull-request refs and webhooks do).
	PreviewBranches string
	// Domain is the DNS suffix of preview hostnames, for the links of commit statuses.
	Domain string
	// PreviewTTL removes a preview whose head has not moved for this long, so a missed close
	// event does not keep it forever. Zero means 7 days; negative means never.
	PreviewTTL time.Duration
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("builds: config: Dir is required"))
	}
	if c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < time.Second) {
		errs = append(errs, fmt.Errorf("builds: config: poll interval %s must be 1s or more", c.PollInterval))
	}
	if p := c.PreviewBranches; p != "" {
		prefix, ok := strings.CutSuffix(p, "*")
		if !ok || prefix == "" || strings.ContainsAny(prefix, "*?[\\ ") {
			errs = append(errs, fmt.Errorf("builds: config: preview-branches %q must be a branch prefix followed by one \"*\" for the pull-request number, e.g. \"preview/*\"", p))
		}
	}
	return errors.Join(errs...)
}

// Queue is what the Follower needs of the build queue (appliance/imagebuild.Queue).
type Queue interface {
	Submit(imagebuild.Spec) (imagebuild.Record, error)
	List(imagebuild.Filter) []imagebuild.Record
}

var _ Queue = (*imagebuild.Queue)(nil)

// Secrets reads repository credentials from the secret store.
type Secrets interface {
	Values(ctx context.Context, path string) (map[string][]byte, error)
}

// Deps are the Follower's collaborators. Queue and Secrets are required.
type Deps struct {
	Queue   Queue
	Secrets Secrets
	// OnChange is called (from the Follower's goroutines; it must not block) when what the
	// engine renders for apps may have changed: a build succeeded, a preview appeared or went
	// away.
	OnChange func(apps ...string)
	// StatusPoster posts commit statuses for apps whose platform.yaml entry asks for them.
	// Nil means the forges' real APIs.
	StatusPoster StatusPoster
	Logger       *slog.Logger
}

// Preview is one pull request's preview environment.
type Preview struct {
	App    string `json:"app"`
	Number int64  `json:"number"`
	// Commit is the pull request's head commit; Branch its source branch, when known.
	Commit string `json:"commit"`
	Branch string `json:"branch,omitempty"`
	// Via says how it was discovered: "webhook", "ref" (refs/pull/<n>/head) or "branch".
	Via     string    `json:"via"`
	Opened  time.Time `json:"opened"`
	Updated time.Time `json:"updated"`
	// Digest is the image of its newest successful build; empty until a build succeeded.
	// BuiltCommit is the commit that build was of.
	Digest      string `json:"digest,omitempty"`
	BuiltCommit string `json:"builtCommit,omitempty"`
}

// Env is the preview's environment name, "pr-<n>", which is also the branch name its builds
// are recorded under.
func (p Preview) Env() string { return render.PreviewEnv(int(p.Number)) }

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

	mu       sync.Mutex
	apps     []platform.App
	state    map[string]*appState
	previews map[string]*Preview // by app/number
	// seen are the review refs present when an app was first polled (app/number → SHA):
	// forges keep refs/pull/<n>/head after a pull request closes, so refs that were there
	// before gluebox followed the app make previews only once they move.
	seen map[string]string
	// closed are previews that ended (app/number → head SHA then): their refs stay on the
	// forge, and must not bring them back unless they move.
	closed map[string]string
	polled map[string]bool
}

type appState struct {
	src     *source.Source
	srcKey  string
	status  AppStatus
	pollErr string
}

// New returns a Follower that follows nothing until SetPlatform, and polls nothing until Run.
func New(cfg Config, deps Deps) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Queue == nil || deps.Secrets == nil {
		return nil, errors.New("builds: a build queue and a secret store are required")
	}
	if cfg.Registry == "" {
		cfg.Registry = imagebuild.DefaultRegistry
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PreviewTTL == 0 {
		cfg.PreviewTTL = DefaultPreviewTTL
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.OnChange == nil {
		deps.OnChange = func(...string) {}
	}
	if deps.StatusPoster == nil {
		deps.StatusPoster = forgeStatus{}
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "git"), 0o700); err != nil {
		return nil, fmt.Errorf("builds: cannot create %s: %w", cfg.Dir, err)
	}
	f := &Follower{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "builds"),
		kick: make(chan struct{}, 1), poster: deps.StatusPoster,
		state: map[string]*appState{}, previews: map[string]*Preview{},
		seen: map[string]string{}, closed: map[string]string{}, polled: map[string]bool{},
	}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// recordsFile is the preview records' file.
func (f *Follower) recordsFile() string { return filepath.Join(f.cfg.Dir, "previews.json") }

type recordsJSON struct {
	Previews []*Preview        `json:"previews"`
	Seen     map[string]string `json:"seen,omitempty"`
	Closed   map[string]string `json:"closed,omitempty"`
	Polled   []string          `json:"polled,omitempty"`
}

func (f *Follower) load() error {
	b, err := os.ReadFile(f.recordsFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("builds: cannot read preview records: %w", err)
	}
	var r recordsJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("builds: %s is corrupt (%v): move it away to start with no previews; they are found again from the repositories", f.recordsFile(), err)
	}
	for _, p := range r.Previews {
		f.previews[previewKey(p.App, p.Number)] = p
	}
	for k, v := range r.Seen {
		f.seen[k] = v
	}
	for k, v := range r.Closed {
		f.closed[k] = v
	}
	for _, a := range r.Polled {
		f.polled[a] = true
	}
	return nil
}

// saveLocked writes the records atomically.
func (f *Follower) saveLocked() {
	r := recordsJSON{Seen: f.seen, Closed: f.closed}
	for _, p := range f.previews {
		r.Previews = append(r.Previews, p)
	}
	sort.Slice(r.Previews, func(i, j int) bool {
		return previewKey(r.Previews[i].App, r.Previews[i].Number) < previewKey(r.Previews[j].App, r.Previews[j].Number)
	})
	for a := range f.polled {
		r.Polled = append(r.Polled, a)
	}
	sort.Strings(r.Polled)
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		tmp := f.recordsFile() + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, f.recordsFile())
		}
	}
	if err != nil {
		f.log.Error("cannot save preview records", "err", err)
	}
}

func previewKey(app string, n int64) string { return app + "/" + strconv.FormatInt(n, 10) }

// SetPlatform replaces the followed apps with platform.yaml's (raw is its content, nil when
// the file is absent) and polls them soon. Content that does not parse changes nothing: the
// engine reports it.
func (f *Follower) SetPlatform(raw []byte) {
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
func (f *Follower) Name() string                    { return "builds" }
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
	f.mu.Lock()
	now := time.Now()
	for k, p := range f.previews {
		app, listed := findApp(apps, p.App)
		switch {
		case !listed || !app.PreviewsEnabled():
			f.log.Info("preview removed: its app no longer has previews", "app", p.App, "pr", p.Number)
		case f.cfg.PreviewTTL > 0 && now.Sub(p.Updated) > f.cfg.PreviewTTL:
			f.log.Info("preview removed: its head has not moved for the preview TTL", "app", p.App, "pr", p.Number, "ttl", f.cfg.PreviewTTL)
			f.closed[k] = p.Commit
		default:
			continue
		}
		delete(f.previews, k)
		changed = append(changed, p.App)
	}
	for name := range f.state {
		if !names[name] {
			delete(f.state, name)
		}
	}
	if len(changed) > 0 {
		f.saveLocked()
	}
	f.mu.Unlock()
	if len(changed) > 0 {
		f.deps.OnChange(changed...)
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
		changed, perr = f.discoverPreviews(a, refs, log)
		problems = append(problems, perr...)
	}
	f.mu.Lock()
	for _, p := range f.previews {
		if p.App == a.Name {
			f.ensureBuild(a, src, p.Env(), p.Commit, log)
		}
	}
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

// discoverPreviews updates the app's previews from its review refs and preview branches.
// Previews that came from a webhook are left to webhooks and the TTL. It reports whether
// anything changed and what could not be used.
func (f *Follower) discoverPreviews(a platform.App, refs source.Refs, log *slog.Logger) (changed bool, problems []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	found := map[int64]struct{ sha, branch, via string }{}
	for n, sha := range refs.Reviews {
		found[n] = struct{ sha, branch, via string }{sha, "", "ref"}
	}
	if prefix, ok := strings.CutSuffix(f.cfg.PreviewBranches, "*"); ok && prefix != "" {
		for b, sha := range refs.Branches {
			rest, ok := strings.CutPrefix(b, prefix)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n <= 0 {
				problems = append(problems, fmt.Sprintf("branch %q matches preview-branches %q but %q is not a pull-request number", b, f.cfg.PreviewBranches, rest))
				continue
			}
			found[n] = struct{ sha, branch, via string }{sha, b, "branch"}
		}
	}
	first := !f.polled[a.Name]
	if first {
		f.polled[a.Name] = true
		changed = true // persist polled
	}
	for n, h := range found {
		k := previewKey(a.Name, n)
		if p := f.previews[k]; p != nil {
			if p.Commit != h.sha {
				log.Info("preview head moved", "pr", n, "commit", short(h.sha))
				p.Commit, p.Updated = h.sha, now
				if h.branch != "" {
					p.Branch = h.branch
				}
				changed = true
			}
			continue
		}
		if h.via == "ref" && (first || f.seen[k] == h.sha) {
			if first {
				f.seen[k] = h.sha
			}
			continue
		}
		if f.closed[k] == h.sha {
			continue
		}
		delete(f.closed, k)
		delete(f.seen, k)
		log.Info("pull request found; building its preview", "pr", n, "via", h.via, "commit", short(h.sha))
		f.previews[k] = &Preview{App: a.Name, Number: n, Commit: h.sha, Branch: h.branch, Via: h.via, Opened: now, Updated: now}
		changed = true
	}
	for k, p := range f.previews {
		if p.App != a.Name || p.Via == "webhook" {
			continue
		}
		if _, ok := found[p.Number]; !ok {
			log.Info("preview removed: its ref is gone", "pr", p.Number, "via", p.Via)
			delete(f.previews, k)
			changed = true
		}
	}
	if first && len(found) > 0 {
		log.Info("existing pull-request refs recorded; their previews start with their next push or a webhook event", "refs", len(refs.Reviews))
	}
	if changed {
		f.saveLocked()
	}
	return changed, problems
}

// ensureBuild submits a build of sha for (app, key) unless the newest build of that key is
// already of sha (queued, running or finished; a build interrupted by a restart is redone).
// f.mu may be held.
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

// HandleEvent takes a verified webhook event. It reports whether the event was for an app
// repository (the engine handles the others).
func (f *Follower) HandleEvent(ev webhook.Event) bool {
	f.mu.Lock()
	var app platform.App
	found := false
	for _, a := range f.apps {
		if u, err := webhook.NormalizeURL(a.Repo); err == nil && u == ev.RepoURL {
			app, found = a, true
			break
		}
	}
	if !found {
		f.mu.Unlock()
		return false
	}
	changed := false
	if pr := ev.PullRequest; ev.Kind == webhook.KindPullRequest && pr != nil && app.PreviewsEnabled() {
		k := previewKey(app.Name, pr.Number)
		log := f.log.With("app", app.Name, "pr", pr.Number, "action", pr.Action)
		switch {
		case pr.Number <= 0:
			log.Warn("webhook pull-request event without a valid number ignored")
		case closeActions[pr.Action]:
			if p := f.previews[k]; p != nil {
				log.Info("pull request closed; removing its preview")
				f.closed[k] = p.Commit
				delete(f.previews, k)
				changed = true
			} else if pr.HeadSHA != "" {
				f.closed[k] = pr.HeadSHA
			}
		case openActions[pr.Action] && len(pr.HeadSHA) == 40:
			now := time.Now()
			p := f.previews[k]
			if p == nil {
				log.Info("pull request opened; building its preview", "commit", short(pr.HeadSHA))
				p = &Preview{App: app.Name, Number: pr.Number, Via: "webhook", Opened: now}
				f.previews[k] = p
			}
			p.Commit, p.Branch, p.Updated = strings.ToLower(pr.HeadSHA), pr.HeadBranch, now
			delete(f.closed, k)
			delete(f.seen, k)
			changed = true
		}
		if changed {
			f.saveLocked()
		}
	}
	f.mu.Unlock()
	if changed {
		f.deps.OnChange(app.Name)
	}
	f.Trigger()
	return true
}

// Actions of pull-request events, as GitHub, GitLab, Gitea and Forgejo spell them.
var (
	openActions  = map[string]bool{"opened": true, "reopened": true, "synchronize": true, "synchronized": true, "open": true, "reopen": true, "update": true}
	closeActions = map[string]bool{"closed": true, "close": true, "merge": true, "merged": true}
)

// CredentialsFor returns the credentials path of the app whose repository is repoURL (as
// webhook.NormalizeURL spells it), for the webhook secret; ok is false for other URLs.
func (f *Follower) CredentialsFor(repoURL string) (path string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.apps {
		if u, err := webhook.NormalizeURL(a.Repo); err == nil && u == repoURL {
			return a.Credentials, true
		}
	}
	return "", false
}

// BuildFinished is the queue's finish hook: a successful build may move environments, and
// the build is reported on its commit when the app asks for that.
func (f *Follower) BuildFinished(r imagebuild.Record) {
	if r.Status == imagebuild.StatusSucceeded {
		f.deps.OnChange(r.App)
	}
	f.mu.Lock()
	a, ok := findApp(f.apps, r.App)
	f.mu.Unlock()
	if ok && r.SupersededBy == "" {
		f.postStatus(a, r)
	}
}

// ErrNoBuild is wrapped by ResolveTag when an environment follows a branch that has no
// successful build yet.
var ErrNoBuild = errors.New("no successful build yet")

// ResolveTag is the image tag an environment of the app named repository runs for image.tag
// tag: for a branch that builds, the digest of its newest successful build; anything else
// (a commit SHA, a version, a tag pushed by hand) is returned as it is.
func (f *Follower) ResolveTag(repository, tag string) (string, error) {
	f.mu.Lock()
	a, ok := findApp(f.apps, repository)
	var def string
	if st := f.state[repository]; st != nil {
		def = st.status.Default
	}
	f.mu.Unlock()
	if !ok || tag == "" || strings.HasPrefix(tag, "sha256:") {
		return tag, nil
	}
	if rs := f.deps.Queue.List(imagebuild.Filter{App: repository, Branch: tag, Status: imagebuild.StatusSucceeded, Limit: 1}); len(rs) > 0 {
		return rs[0].Digest, nil
	}
	if slices.Contains(a.Branches, tag) || (len(a.Branches) == 0 && tag == def) {
		return "", fmt.Errorf("image.tag %q follows branch %s of app %s, which has %w: see `gluebox build list --app %s`", tag, tag, repository, ErrNoBuild, repository)
	}
	return tag, nil
}

// Previews returns the open previews, sorted by app and number, with the digest of their
// newest successful build. built keeps only those that have one.
func (f *Follower) Previews(built bool) []Preview {
	f.mu.Lock()
	ps := make([]Preview, 0, len(f.previews))
	for _, p := range f.previews {
		ps = append(ps, *p)
	}
	f.mu.Unlock()
	out := ps[:0]
	for _, p := range ps {
		if rs := f.deps.Queue.List(imagebuild.Filter{App: p.App, Branch: p.Env(), Status: imagebuild.StatusSucceeded, Limit: 1}); len(rs) > 0 {
			p.Digest, p.BuiltCommit = rs[0].Digest, rs[0].Commit
		}
		if built && p.Digest == "" {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Number < out[j].Number
	})
	return out
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

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
