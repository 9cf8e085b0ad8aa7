package follow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// Commit statuses: when platform.yaml gives an app `status: {provider: ...}`, every build is
// reported on its commit through the forge's API (pending when queued, then success or
// failure), with the preview's URL for pull requests. It is off by default and never blocks
// or fails a build: a forge that is down costs a log line.

// StatusContext is the name statuses are posted under.
const StatusContext = "gluebox/build"

// Status is one commit status to post.
type Status struct {
	App    platform.App
	Commit string
	// State is pending, success, failure or error (GitHub's words; translated per forge).
	State       string
	Description string
	// TargetURL is where the status links to: the preview for pull requests. May be empty.
	TargetURL string
	Token     string
}

// StatusPoster posts commit statuses. forgeStatus is the real one; tests may point it at a
// fake forge with platform.yaml's status.api.
type StatusPoster interface {
	Post(ctx context.Context, s Status) error
}

// forgeStatus speaks the commit-status APIs of GitHub, Gitea/Forgejo and GitLab.
type forgeStatus struct{ client *http.Client }

func (p forgeStatus) Post(ctx context.Context, s Status) error {
	st := s.App.Status
	host, repoPath, err := repoHostPath(s.App.Repo)
	if err != nil {
		return err
	}
	api := strings.TrimRight(st.API, "/")
	var req *http.Request
	switch st.Provider {
	case "github", "gitea", "forgejo":
		if api == "" {
			api = "https://" + host + "/api/v1"
			if st.Provider == "github" {
				api = "https://api.github.com"
			}
		}
		body, _ := json.Marshal(map[string]string{"state": s.State, "target_url": s.TargetURL, "description": clip(s.Description, 140), "context": StatusContext})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, api+"/repos/"+repoPath+"/statuses/"+s.Commit, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("Authorization", "token "+s.Token)
	case "gitlab":
		if api == "" {
			api = "https://" + host + "/api/v4"
		}
		state := map[string]string{"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}[s.State]
		q := url.Values{"state": {state}, "name": {StatusContext}, "description": {clip(s.Description, 140)}}
		if s.TargetURL != "" {
			q.Set("target_url", s.TargetURL)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, api+"/projects/"+url.PathEscape(repoPath)+"/statuses/"+s.Commit+"?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("PRIVATE-TOKEN", s.Token)
	default:
		return fmt.Errorf("commit status: provider %q is not supported", st.Provider)
	}
	c := p.client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("commit status for %s: %w", s.App.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("commit status for %s: %s answered %s: %s", s.App.Name, req.URL.Host, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// repoHostPath splits a repository URL (https://host/owner/repo.git, ssh://git@host/owner/repo,
// git@host:owner/repo.git) into its host and "owner/repo" path.
func repoHostPath(repo string) (host, p string, err error) {
	if !strings.Contains(repo, "://") {
		if at, rest, ok := strings.Cut(repo, ":"); ok && strings.Contains(at, "@") {
			_, h, _ := strings.Cut(at, "@")
			return h, strings.TrimSuffix(strings.Trim(rest, "/"), ".git"), nil
		}
		return "", "", fmt.Errorf("commit status: repository %q has no forge host (a local path cannot take statuses)", repo)
	}
	u, err := url.Parse(repo)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("commit status: repository URL %q has no host", repo)
	}
	return u.Hostname(), strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git"), nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// postStatus reports build r of app a, unless the app has no status setting. It runs in its
// own goroutine and only logs failures.
func (f *Follower) postStatus(a platform.App, r imagebuild.Record) {
	if a.Status == nil || r.Commit == "" {
		return
	}
	state, desc := "pending", fmt.Sprintf("build %s queued", r.ID)
	switch r.Status {
	case imagebuild.StatusRunning:
		desc = fmt.Sprintf("build %s running", r.ID)
	case imagebuild.StatusSucceeded:
		state, desc = "success", fmt.Sprintf("build %s pushed %s in %s", r.ID, short(strings.TrimPrefix(r.Digest, "sha256:")), r.Duration().Round(time.Second))
	case imagebuild.StatusFailed:
		state, desc = "failure", fmt.Sprintf("build %s failed: %s (gluebox build logs %s)", r.ID, r.Error, r.ID)
	case imagebuild.StatusCancelled:
		state, desc = "error", fmt.Sprintf("build %s cancelled: %s", r.ID, r.Error)
	}
	var target string
	if n, ok := render.ParsePreviewEnv(r.Branch); ok && f.cfg.Domain != "" {
		target = fmt.Sprintf("https://%s-pr-%d.%s/", a.Name, n, f.cfg.Domain)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		v, err := f.deps.Secrets.Values(ctx, a.Credentials)
		if err == nil && len(v["token"]) == 0 {
			err = fmt.Errorf("credentials %s have no token key", a.Credentials)
		}
		if err == nil {
			err = f.poster.Post(ctx, Status{App: a, Commit: r.Commit, State: state, Description: desc, TargetURL: target, Token: string(v["token"])})
		}
		if err != nil {
			f.log.Warn("commit status not posted", "app", a.Name, "commit", short(r.Commit), "err", err)
		}
	}()
}
