package preview

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
)

// Discover updates app a's previews from its review refs and preview branches, as one poll of
// its repository listed them. Previews that came from a webhook are left to webhooks and the
// TTL. It reports whether anything changed and what could not be used.
func (s *Store) Discover(a platform.App, refs source.Refs, log *slog.Logger) (changed bool, problems []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	type head struct{ sha, branch, via string }
	found := map[int64]head{}
	for n, sha := range refs.Reviews {
		found[n] = head{sha, "", "ref"}
	}
	if prefix, ok := strings.CutSuffix(s.cfg.Branches, "*"); ok && prefix != "" {
		for b, sha := range refs.Branches {
			rest, ok := strings.CutPrefix(b, prefix)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n <= 0 {
				problems = append(problems, fmt.Sprintf("branch %q matches preview-branches %q but %q is not a pull-request number", b, s.cfg.Branches, rest))
				continue
			}
			found[n] = head{sha, b, "branch"}
		}
	}
	first := !s.polled[a.Name]
	if first {
		s.polled[a.Name] = true
		changed = true // persist polled
	}
	for n, h := range found {
		k := key(a.Name, n)
		if p := s.previews[k]; p != nil {
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
		if h.via == "ref" && (first || s.seen[k] == h.sha) {
			if first {
				s.seen[k] = h.sha
			}
			continue
		}
		if s.closed[k] == h.sha {
			continue
		}
		delete(s.closed, k)
		delete(s.seen, k)
		log.Info("pull request found; building its preview", "pr", n, "via", h.via, "commit", short(h.sha))
		s.previews[k] = &Preview{App: a.Name, Number: n, Commit: h.sha, Branch: h.branch, Via: h.via, Opened: now, Updated: now}
		changed = true
	}
	for k, p := range s.previews {
		if p.App != a.Name || p.Via == "webhook" {
			continue
		}
		if _, ok := found[p.Number]; !ok {
			log.Info("preview removed: its ref is gone", "pr", p.Number, "via", p.Via)
			delete(s.previews, k)
			changed = true
		}
	}
	if first && len(found) > 0 {
		log.Info("existing pull-request refs recorded; their previews start with their next push or a webhook event", "refs", len(refs.Reviews))
	}
	if changed {
		s.saveLocked()
	}
	return changed, problems
}

// Actions of pull-request events, as GitHub, GitLab, Gitea and Forgejo spell them.
var (
	openActions  = map[string]bool{"opened": true, "reopened": true, "synchronize": true, "synchronized": true, "open": true, "reopen": true, "update": true}
	closeActions = map[string]bool{"closed": true, "close": true, "merge": true, "merged": true}
)

// PullRequest applies a verified webhook pull-request event of app a's repository: opening or
// pushing makes or moves the preview, closing or merging removes it. It reports whether the
// previews changed. Apps without previews ignore it.
func (s *Store) PullRequest(a platform.App, pr webhook.PullRequest) (changed bool) {
	if !a.PreviewsEnabled() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(a.Name, pr.Number)
	log := s.log.With("app", a.Name, "pr", pr.Number, "action", pr.Action)
	switch {
	case pr.Number <= 0:
		log.Warn("webhook pull-request event without a valid number ignored")
	case closeActions[pr.Action]:
		if p := s.previews[k]; p != nil {
			log.Info("pull request closed; removing its preview")
			s.closed[k] = p.Commit
			delete(s.previews, k)
			changed = true
		} else if pr.HeadSHA != "" {
			s.closed[k] = pr.HeadSHA
		}
	case openActions[pr.Action] && len(pr.HeadSHA) == 40:
		now := s.cfg.Now()
		p := s.previews[k]
		if p == nil {
			log.Info("pull request opened; building its preview", "commit", short(pr.HeadSHA))
			p = &Preview{App: a.Name, Number: pr.Number, Via: "webhook", Opened: now}
			s.previews[k] = p
		}
		p.Commit, p.Branch, p.Updated = strings.ToLower(pr.HeadSHA), pr.HeadBranch, now
		delete(s.closed, k)
		delete(s.seen, k)
		changed = true
	}
	if changed {
		s.saveLocked()
	}
	return changed
}

// Expire removes the previews of apps that are not in apps or no longer build previews, and
// previews whose head has not moved for the TTL. It returns the apps whose previews changed.
func (s *Store) Expire(apps []platform.App) (changed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for k, p := range s.previews {
		app, listed := findApp(apps, p.App)
		switch {
		case !listed || !app.PreviewsEnabled():
			s.log.Info("preview removed: its app no longer has previews", "app", p.App, "pr", p.Number)
		case s.cfg.TTL > 0 && now.Sub(p.Updated) > s.cfg.TTL:
			s.log.Info("preview removed: its head has not moved for the preview TTL", "app", p.App, "pr", p.Number, "ttl", s.cfg.TTL)
			s.closed[k] = p.Commit
		default:
			continue
		}
		delete(s.previews, k)
		changed = append(changed, p.App)
	}
	if len(changed) > 0 {
		s.saveLocked()
	}
	return changed
}

func findApp(apps []platform.App, name string) (platform.App, bool) {
	for _, a := range apps {
		if a.Name == name {
			return a, true
		}
	}
	return platform.App{}, false
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
