package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
)

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
// It reports false when the check or sync failed (and should be retried).
func (e *Engine) syncOnce(ctx context.Context) (ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.trigMu.Lock()
	force, only := e.force, e.pending
	e.force, e.pending = false, nil
	e.trigMu.Unlock()
	resync := force || e.now().Sub(e.lastResync) >= e.cfg.ResyncInterval

	rc, set, err := e.repoConfig()
	if err != nil {
		e.log.Error("cannot read the repository setting", "err", err)
		return false
	}
	if !set {
		return true
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
		return false
	}
	head, err := src.Head(ctx)
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return false
	}
	rs, err := e.st.UpdateRepoStatus(func(s *state.RepoStatus) {
		if s.URL != rc.URL || s.Branch != rc.Branch {
			*s = state.RepoStatus{URL: rc.URL, Branch: rc.Branch}
		}
		s.Commit, s.LastCheckAt = head, e.now()
	})
	if err != nil {
		e.log.Error("cannot record repository status", "err", err)
		return false
	}
	// With the commit already synced and no resync due, only the apps asked for are applied.
	partial := head == rs.Synced && !resync
	if partial && len(only) == 0 {
		return true
	}
	if !partial {
		only = nil
	}
	if err := e.sync(ctx, src, head, only); err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return false
	}
	if !partial {
		e.lastResync = e.now()
	}
	_, _ = e.st.UpdateRepoStatus(func(s *state.RepoStatus) {
		s.Synced, s.LastSyncAt = head, e.now()
		s.LastError, s.LastErrorAt = "", time.Time{}
	})
	return true
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
	if e.deps.Platform != nil {
		e.deps.Platform.Publish(ctx, plat.Raw)
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
		e.syncEnv(ctx, repo, plat, head, ae.App, ae.Env, nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if e.deps.Previews != nil {
		for _, p := range e.deps.Previews.List(true) {
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
			e.syncEnv(ctx, repo, plat, head, p.App, p.Env(), &p)
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

// renderOptions are the options that render app's env of a commit whose platform.yaml is plat
// (a preview when p is set).
func (e *Engine) renderOptions(plat *platform.Platform, app, env, head string, p *preview.Preview) render.Options {
	opts := render.Options{App: app, Env: env, Domain: e.cfg.Domain, Commit: head, Registry: e.cfg.Registry}
	if e.deps.Images == nil {
		return opts
	}
	opts.ResolveTag = e.resolveTag(plat)
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
func (e *Engine) syncEnv(ctx context.Context, repo fs.FS, plat *platform.Platform, head, app, env string, p *preview.Preview) {
	log := e.log.With("app", app, "env", env, "commit", short(head))
	now := e.now()
	res, err := render.Render(repo, e.renderOptions(plat, app, env, head, p))
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

// ErrNoBuild is wrapped by the render error of an environment whose image.tag follows a branch
// that gluebox builds but that has no successful build yet.
var ErrNoBuild = errors.New("no successful build yet")

// resolveTag is the renderer's ResolveTag for a commit whose platform.yaml is plat: for an app
// of platform.yaml, image.tag naming a branch gluebox builds (listed in apps[].branches, or
// one the build queue holds builds of, such as the default branch) is the digest of its newest
// successful build; anything else (a commit SHA, a version, a tag pushed by hand) is used as
// it is written.
func (e *Engine) resolveTag(plat *platform.Platform) func(repository, tag string) (string, error) {
	return func(repository, tag string) (string, error) {
		a, ok := plat.App(repository)
		if !ok || tag == "" || strings.HasPrefix(tag, "sha256:") {
			return tag, nil
		}
		img, known := e.deps.Images.Latest(repository, tag)
		if img.Digest != "" {
			return img.Digest, nil
		}
		if known || slices.Contains(a.Branches, tag) {
			return "", fmt.Errorf("image.tag %q follows branch %s of app %s, which has %w: see `gluebox build list --app %s`", tag, tag, repository, ErrNoBuild, repository)
		}
		return tag, nil
	}
}
