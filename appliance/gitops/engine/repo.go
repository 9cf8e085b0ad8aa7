package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/state"
)

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
