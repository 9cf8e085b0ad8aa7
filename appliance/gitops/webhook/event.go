package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
)

// Provider names the forge that sent a delivery.
type Provider string

// Providers the Receiver understands. Forgejo is told apart from Gitea by its own headers.
const (
	GitHub  Provider = "github"
	GitLab  Provider = "gitlab"
	Gitea   Provider = "gitea"
	Forgejo Provider = "forgejo"
)

// Kind is the kind of an Event.
type Kind string

// Kinds of Event.
const (
	KindPush        Kind = "push"
	KindPullRequest Kind = "pull_request"
)

// Event is a verified push or pull-request notification for a followed repository.
type Event struct {
	// Provider is the forge that sent it.
	Provider Provider
	// RepoURL is the repository's normalised URL (see NormalizeURL), the one whose secret
	// verified the delivery.
	RepoURL string
	// Kind is KindPush or KindPullRequest.
	Kind Kind
	// Ref is the full ref pushed to ("refs/heads/main", "refs/tags/v1"), or for a pull
	// request the branch it targets ("refs/heads/main").
	Ref string
	// Before and After are the commit IDs of Ref before and after a push; empty for a pull
	// request. Before is all zeros when the ref was created.
	Before, After string
	// Deleted is true when the push deleted Ref (After is all zeros).
	Deleted bool
	// PullRequest is set for KindPullRequest only.
	PullRequest *PullRequest
	// DeliveryID is the forge's ID for this delivery (X-GitHub-Delivery, GitLab's
	// Idempotency-Key or X-Gitlab-Event-UUID, X-Gitea-Delivery/X-Forgejo-Delivery), or
	// empty when it sent none.
	DeliveryID string
}

// PullRequest describes the pull (or merge) request of a KindPullRequest Event.
type PullRequest struct {
	// Number is the request's number in its repository (GitLab's iid).
	Number int64
	// Action is the provider's own word for what happened, unchanged: GitHub "opened",
	// "synchronize", "closed"…; GitLab "open", "update", "merge", "close"…; Gitea and Forgejo
	// "opened", "synchronized", "closed"…
	Action string
	// HeadSHA is the commit at the tip of the request's source branch.
	HeadSHA string
	// HeadBranch and BaseBranch are the short names of the source and target branches. The
	// source branch may live in a fork.
	HeadBranch, BaseBranch string
}

// eventKind maps a provider's event header to the Kind it is delivered as, or false for
// events that trigger nothing (ping, issues, comments, GitLab system hooks…).
func eventKind(p Provider, event string) (Kind, bool) {
	switch p {
	case GitHub, Gitea, Forgejo:
		switch event {
		case "push":
			return KindPush, true
		case "pull_request":
			return KindPullRequest, true
		}
	case GitLab:
		switch event {
		case "Push Hook", "Tag Push Hook":
			return KindPush, true
		case "Merge Request Hook":
			return KindPullRequest, true
		}
	}
	return "", false
}

// parsed is a payload's event, without the parts that come from headers, and the
// normalised URLs its repository goes by, to be looked up in order.
type parsed struct {
	event    Event
	repoURLs []string
}

// Payload shapes, reduced to the fields used. GitHub, Gitea and Forgejo share theirs.
type (
	ghRepo struct {
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		HTMLURL  string `json:"html_url"`
	}
	ghPush struct {
		Ref        string  `json:"ref"`
		Before     string  `json:"before"`
		After      string  `json:"after"`
		Deleted    bool    `json:"deleted"`
		Repository *ghRepo `json:"repository"`
	}
	ghBranch struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	}
	ghPull struct {
		Action      string `json:"action"`
		Number      int64  `json:"number"`
		PullRequest *struct {
			Number int64    `json:"number"`
			Head   ghBranch `json:"head"`
			Base   ghBranch `json:"base"`
		} `json:"pull_request"`
		Repository *ghRepo `json:"repository"`
	}
	glProject struct {
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		WebURL     string `json:"web_url"`
	}
	glPush struct {
		ObjectKind string     `json:"object_kind"`
		Ref        string     `json:"ref"`
		Before     string     `json:"before"`
		After      string     `json:"after"`
		Project    *glProject `json:"project"`
		Repository *struct {
			GitHTTPURL string `json:"git_http_url"`
			GitSSHURL  string `json:"git_ssh_url"`
			Homepage   string `json:"homepage"`
		} `json:"repository"`
	}
	glMerge struct {
		ObjectKind string     `json:"object_kind"`
		Project    *glProject `json:"project"`
		Attrs      *struct {
			IID          int64  `json:"iid"`
			Action       string `json:"action"`
			SourceBranch string `json:"source_branch"`
			TargetBranch string `json:"target_branch"`
			LastCommit   struct {
				ID string `json:"id"`
			} `json:"last_commit"`
		} `json:"object_attributes"`
	}
)

var errNoRepo = errors.New("no usable repository URL")

// parse reads the payload of a delivery whose event header maps to kind. contentType
// matters only for the form encoding GitHub and Gitea offer as an alternative to JSON.
func parse(p Provider, kind Kind, contentType string, body []byte) (parsed, error) {
	body, err := jsonBody(contentType, body)
	if err != nil {
		return parsed{}, err
	}
	var out parsed
	switch {
	case p == GitLab && kind == KindPush:
		var v glPush
		if err := json.Unmarshal(body, &v); err != nil {
			return parsed{}, fmt.Errorf("decode gitlab push: %w", err)
		}
		if v.ObjectKind != "push" && v.ObjectKind != "tag_push" {
			return parsed{}, fmt.Errorf("gitlab push: object_kind %q", v.ObjectKind)
		}
		out.event = Event{Kind: KindPush, Ref: v.Ref, Before: v.Before, After: v.After}
		if v.Project != nil {
			out.repoURLs = candidates(v.Project.GitHTTPURL, v.Project.GitSSHURL, v.Project.WebURL)
		}
		if v.Repository != nil {
			out.repoURLs = append(out.repoURLs, candidates(v.Repository.GitHTTPURL, v.Repository.GitSSHURL, v.Repository.Homepage)...)
		}
	case p == GitLab && kind == KindPullRequest:
		var v glMerge
		if err := json.Unmarshal(body, &v); err != nil {
			return parsed{}, fmt.Errorf("decode gitlab merge request: %w", err)
		}
		if v.ObjectKind != "merge_request" || v.Attrs == nil {
			return parsed{}, fmt.Errorf("gitlab merge request: object_kind %q", v.ObjectKind)
		}
		a := v.Attrs
		out.event = Event{Kind: KindPullRequest, Ref: "refs/heads/" + a.TargetBranch, PullRequest: &PullRequest{
			Number: a.IID, Action: a.Action, HeadSHA: a.LastCommit.ID, HeadBranch: a.SourceBranch, BaseBranch: a.TargetBranch,
		}}
		if v.Project != nil {
			out.repoURLs = candidates(v.Project.GitHTTPURL, v.Project.GitSSHURL, v.Project.WebURL)
		}
	case kind == KindPush:
		var v ghPush
		if err := json.Unmarshal(body, &v); err != nil {
			return parsed{}, fmt.Errorf("decode %s push: %w", p, err)
		}
		out.event = Event{Kind: KindPush, Ref: v.Ref, Before: v.Before, After: v.After, Deleted: v.Deleted}
		if v.Repository != nil {
			out.repoURLs = candidates(v.Repository.CloneURL, v.Repository.SSHURL, v.Repository.HTMLURL)
		}
	case kind == KindPullRequest:
		var v ghPull
		if err := json.Unmarshal(body, &v); err != nil {
			return parsed{}, fmt.Errorf("decode %s pull request: %w", p, err)
		}
		if v.PullRequest == nil {
			return parsed{}, fmt.Errorf("%s pull request: no pull_request object", p)
		}
		n := v.Number
		if n == 0 {
			n = v.PullRequest.Number
		}
		pr := v.PullRequest
		out.event = Event{Kind: KindPullRequest, Ref: "refs/heads/" + pr.Base.Ref, PullRequest: &PullRequest{
			Number: n, Action: v.Action, HeadSHA: pr.Head.SHA, HeadBranch: pr.Head.Ref, BaseBranch: pr.Base.Ref,
		}}
		if v.Repository != nil {
			out.repoURLs = candidates(v.Repository.CloneURL, v.Repository.SSHURL, v.Repository.HTMLURL)
		}
	default:
		return parsed{}, fmt.Errorf("unsupported %s event kind %q", p, kind)
	}
	if len(out.repoURLs) == 0 {
		return parsed{}, errNoRepo
	}
	out.repoURLs = dedupe(out.repoURLs)
	if err := check(&out.event); err != nil {
		return parsed{}, err
	}
	return out, nil
}

// check validates the fields the engine will act on, and flags branch deletions.
func check(ev *Event) error {
	if err := checkRef(ev.Ref); err != nil {
		return err
	}
	switch ev.Kind {
	case KindPush:
		if !isSHA(ev.Before) || !isSHA(ev.After) {
			return fmt.Errorf("push: before %q or after %q is not a commit ID", clip(ev.Before), clip(ev.After))
		}
		ev.Deleted = ev.Deleted || isZero(ev.After)
	case KindPullRequest:
		pr := ev.PullRequest
		if pr.Number <= 0 {
			return fmt.Errorf("pull request: number %d", pr.Number)
		}
		if !isSHA(pr.HeadSHA) || isZero(pr.HeadSHA) {
			return fmt.Errorf("pull request: head %q is not a commit ID", clip(pr.HeadSHA))
		}
		if len(pr.Action) > 64 || hasControl(pr.Action) || len(pr.HeadBranch) > 1024 || hasControl(pr.HeadBranch) {
			return errors.New("pull request: action or head branch is not printable")
		}
	}
	return nil
}

func checkRef(ref string) error {
	if !strings.HasPrefix(ref, "refs/") || ref == "refs/" || strings.HasSuffix(ref, "/") || len(ref) > 1024 || hasControl(ref) {
		return fmt.Errorf("ref %q is not a full ref name", clip(ref))
	}
	return nil
}

// isSHA accepts SHA-1 and SHA-256 object IDs in lower-case hex, as all three forges send.
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isZero(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// clip keeps log lines and errors short when a payload is hostile.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// candidates normalises the URLs a payload gives for its repository, dropping those that do
// not normalise.
func candidates(raw ...string) []string {
	var out []string
	for _, r := range raw {
		if r == "" {
			continue
		}
		if n, err := NormalizeURL(r); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func dedupe(s []string) []string {
	out := s[:0]
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// jsonBody returns the JSON document of a body, which GitHub and Gitea may send form-encoded
// as the "payload" field. Signatures are checked over the raw body, never over this.
func jsonBody(contentType string, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("decode form body: %w", err)
	}
	p := v.Get("payload")
	if p == "" {
		return nil, errors.New("form body without payload field")
	}
	return []byte(p), nil
}
