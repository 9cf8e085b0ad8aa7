// Package source owns gluebox's view of one Git repository: a cheap change
// check (ls-remote style), shallow checkouts of exact commits into a bounded
// on-disk cache, and a listing of branches and pull/merge-request refs.
//
// Lifecycle: build a Config, call Validate (New does too), create the Source
// with New, then call Head as often as the poll interval asks; call Checkout
// only when Head reports a commit that has not been rendered yet. A Source is
// safe for concurrent use; it holds no goroutines and needs no Close.
//
// Importers: the GitOps engine (appliance/gitops) and the preview discovery
// of later issues. Nothing here talks to Kubernetes.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/skeema/knownhosts"
)

// DefaultMaxTreeBytes is the work-tree size limit used when
// Config.MaxTreeBytes is zero.
const DefaultMaxTreeBytes int64 = 256 << 20

// DefaultKeepTrees is the number of checked-out commits kept per repository
// when Config.KeepTrees is zero.
const DefaultKeepTrees = 3

// DefaultTimeout is the ref-listing timeout used when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config describes one repository to follow. Runtime handles never live here.
type Config struct {
	// URL is the repository: https://host/path, http://host/path,
	// ssh://[user@]host[:port]/path, user@host:path (scp-like) or an absolute
	// local path / file:// URL. Required. Credentials must not be embedded in
	// the URL; put them in Auth.
	URL string

	// Branch is the branch to follow, e.g. "main" (not "refs/heads/main").
	// Empty means the remote's default branch, i.e. what its HEAD points to.
	Branch string

	// Auth holds credentials. The zero value means anonymous access.
	Auth Auth

	// CacheDir is where checkouts are kept; each repository gets its own
	// sub-directory named after a hash of URL. Required for Checkout; Head
	// and ListRefs do not touch the disk except for SSH known_hosts.
	CacheDir string

	// MaxTreeBytes refuses checkouts whose work tree (sum of file sizes) is
	// larger. Zero means DefaultMaxTreeBytes (256 MiB); negative means no limit.
	MaxTreeBytes int64

	// KeepTrees is how many checked-out commits are kept on disk; older ones
	// are removed after a new checkout. Zero means DefaultKeepTrees (3).
	KeepTrees int

	// Timeout bounds one ref listing (Head, ListRefs); a Checkout's fetch
	// gets ten times as long. Zero means DefaultTimeout (30s). The caller's
	// context still applies.
	Timeout time.Duration

	// Logger receives debug lines about fetches. Nil means slog.Default().
	Logger *slog.Logger
}

// Auth holds credentials for one repository. Set at most one of Token,
// Password or SSHKey. The zero value means anonymous access.
type Auth struct {
	// Username is the HTTP basic-auth user, or the SSH user when the URL has
	// none. Empty means "git" for tokens and SSH.
	Username string

	// Password is an HTTP basic-auth password (HTTP(S) URLs only).
	Password string

	// Token is an HTTPS access token (GitHub/GitLab/Gitea personal access
	// token). It is sent as the basic-auth password, which all three accept.
	Token string

	// SSHKey is a PEM-encoded private key (SSH URLs only).
	SSHKey []byte

	// SSHKeyPassphrase decrypts SSHKey when it is encrypted. Empty means the
	// key is not encrypted.
	SSHKeyPassphrase string

	// KnownHosts is the content of a known_hosts file listing the server's
	// host key. Required with SSH: unknown host keys are always refused.
	KnownHosts []byte
}

// AuthFromSecret reads repository credentials from the values of a secret-store entry
// (path names it in errors): keys token, or username + password, or ssh-key (with
// ssh-key-passphrase when it is encrypted) and known_hosts.
func AuthFromSecret(path string, v map[string][]byte) (Auth, error) {
	a := Auth{
		Username:         string(v["username"]),
		Password:         string(v["password"]),
		Token:            string(v["token"]),
		SSHKey:           v["ssh-key"],
		SSHKeyPassphrase: string(v["ssh-key-passphrase"]),
		KnownHosts:       v["known_hosts"],
	}
	if a.Token == "" && a.Password == "" && len(a.SSHKey) == 0 {
		return Auth{}, fmt.Errorf("repository credentials %s hold none of token, password or ssh-key: set one with `gluebox secret set %s token=...`", path, path)
	}
	return a, nil
}

// Fingerprint is a short hash of the credentials, to tell whether they changed without
// keeping a second copy of them.
func (a Auth) Fingerprint() string {
	h := sha256.New()
	for _, s := range []string{a.Username, a.Password, a.Token, string(a.SSHKey), a.SSHKeyPassphrase, string(a.KnownHosts)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (a Auth) isSSH() bool { return len(a.SSHKey) > 0 }

// Validate reports configuration mistakes with what is wrong and how to fix it.
// It does not contact the remote.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("source: url is empty: set the repository URL (https://…, ssh://…, git@host:path or a local path)")
	}
	ep, err := transport.NewEndpoint(c.URL)
	if err != nil {
		return fmt.Errorf("source: url %q is not a Git URL: use https://host/path, ssh://host/path, git@host:path or an absolute local path: %w", redact(c.URL), err)
	}
	if ep.Password != "" || (ep.User != "" && (ep.Protocol == "http" || ep.Protocol == "https")) {
		return fmt.Errorf("source: url %q embeds credentials: remove them from the URL and set auth.username/auth.password or auth.token instead", redact(c.URL))
	}
	if strings.HasPrefix(c.Branch, "refs/") || strings.ContainsAny(c.Branch, " ~^:?*[\\") || strings.Contains(c.Branch, "..") {
		return fmt.Errorf("source %s: branch %q is not a plain branch name: use e.g. \"main\", not \"refs/heads/main\"", redact(c.URL), c.Branch)
	}
	a := c.Auth
	set := 0
	for _, b := range []bool{a.Password != "", a.Token != "", a.isSSH()} {
		if b {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("source %s: auth sets more than one of password, token and ssh key: keep exactly one", redact(c.URL))
	}
	switch ep.Protocol {
	case "http", "https":
		if a.isSSH() || len(a.KnownHosts) > 0 {
			return fmt.Errorf("source %s: an SSH key or known_hosts was given for an HTTP(S) URL: use a token or password, or switch the URL to ssh://", redact(c.URL))
		}
	case "ssh":
		if a.Password != "" || a.Token != "" {
			return fmt.Errorf("source %s: a password or token was given for an SSH URL: use auth.ssh_key, or switch the URL to https://", redact(c.URL))
		}
		if !a.isSSH() {
			return fmt.Errorf("source %s: SSH URL without auth.ssh_key: add a private key (PEM) with read access (a deploy key)", redact(c.URL))
		}
		if len(a.KnownHosts) == 0 {
			return fmt.Errorf("source %s: SSH URL without auth.known_hosts: add the server's host key line (e.g. from `ssh-keyscan %s`); unknown host keys are refused", redact(c.URL), ep.Host)
		}
		if _, err := gitssh.NewPublicKeys("git", a.SSHKey, a.SSHKeyPassphrase); err != nil {
			return fmt.Errorf("source %s: cannot use auth.ssh_key (wrong passphrase or not a PEM private key?): %w", redact(c.URL), err)
		}
	case "file":
		if a.Username != "" || a.Password != "" || a.Token != "" || a.isSSH() || len(a.KnownHosts) > 0 {
			return fmt.Errorf("source %s: credentials were given for a local path: remove auth", redact(c.URL))
		}
	default:
		return fmt.Errorf("source: url %q uses unsupported scheme %q: use https, ssh or a local path", redact(c.URL), ep.Protocol)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("source %s: timeout is %v: use 0 for the default (%v) or a positive duration", redact(c.URL), c.Timeout, DefaultTimeout)
	}
	if c.KeepTrees < 0 {
		return fmt.Errorf("source %s: keep_trees is %d: use 0 for the default (%d) or a positive number", redact(c.URL), c.KeepTrees, DefaultKeepTrees)
	}
	return nil
}

// Source follows one repository. Create it with New.
type Source struct {
	cfg      Config
	url      string // redacted, for messages
	auth     transport.AuthMethod
	repoDir  string
	log      *slog.Logger
	checkout sync.Mutex // serialises Checkout and cache pruning
}

// New validates cfg and returns a Source. It prepares SSH host-key checking
// from cfg.Auth.KnownHosts but does not contact the remote.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxTreeBytes == 0 {
		cfg.MaxTreeBytes = DefaultMaxTreeBytes
	}
	if cfg.KeepTrees == 0 {
		cfg.KeepTrees = DefaultKeepTrees
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Source{cfg: cfg, url: redact(cfg.URL), log: cfg.Logger.With("component", "gitops/source", "url", redact(cfg.URL))}
	if cfg.CacheDir != "" {
		sum := sha256.Sum256([]byte(cfg.URL))
		s.repoDir = filepath.Join(cfg.CacheDir, repoName(cfg.URL)+"-"+hex.EncodeToString(sum[:6]))
	}
	auth, err := buildAuth(cfg)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	return s, nil
}

// buildAuth turns Auth into a go-git transport.AuthMethod. For SSH it builds
// a host-key callback from the known_hosts content only: there is no
// fallback to ~/.ssh/known_hosts and no way to skip verification.
func buildAuth(cfg Config) (transport.AuthMethod, error) {
	a := cfg.Auth
	ep, err := transport.NewEndpoint(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("source: parse url %q: %w", redact(cfg.URL), err)
	}
	switch {
	case a.Token != "":
		user := a.Username
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: a.Token}, nil
	case a.Password != "" || a.Username != "" && ep.Protocol != "ssh":
		return &githttp.BasicAuth{Username: a.Username, Password: a.Password}, nil
	case a.isSSH():
		user := ep.User
		if user == "" {
			user = a.Username
		}
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("source %s: load ssh key: %w", redact(cfg.URL), err)
		}
		db, err := knownHostsDB(a.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("source %s: parse auth.known_hosts: fix the known_hosts content (one `host keytype base64key` per line): %w", redact(cfg.URL), err)
		}
		port := ep.Port
		if port == 0 {
			port = 22
		}
		hostPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))
		keys.HostKeyCallback = db.HostKeyCallback()
		keys.HostKeyAlgorithms = db.HostKeyAlgorithms(hostPort)
		return keys, nil
	}
	return nil, nil
}

// knownHostsDB parses known_hosts content. skeema/knownhosts reads files
// only, so the content goes through a short-lived temporary file.
func knownHostsDB(content []byte) (*knownhosts.HostKeyDB, error) {
	f, err := os.CreateTemp("", "gluebox-known-hosts-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return knownhosts.NewDB(f.Name())
}

// listRefs does one ref advertisement round trip; no objects are fetched.
func (s *Source) listRefs(ctx context.Context) ([]*plumbing.Reference, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}})
	refs, err := r.ListContext(ctx, &git.ListOptions{Auth: s.auth})
	if err != nil {
		return nil, s.classify("list refs", err)
	}
	return refs, nil
}

// Head returns the commit SHA of the followed branch (or of the remote's
// default branch) using only the ref advertisement: no objects are
// transferred, so polling an unchanged repository is one small request.
func (s *Source) Head(ctx context.Context) (string, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return "", err
	}
	sha, _, err := s.resolve(refs)
	return sha, err
}

// resolve finds the followed branch in refs and returns its SHA and full ref name.
func (s *Source) resolve(refs []*plumbing.Reference) (sha string, ref plumbing.ReferenceName, err error) {
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	want := plumbing.NewBranchReferenceName(s.cfg.Branch)
	if s.cfg.Branch == "" {
		head, ok := byName[plumbing.HEAD]
		if !ok {
			if len(refs) == 0 {
				return "", "", &Error{Kind: ErrEmptyRepository, URL: s.url, Err: transport.ErrEmptyRemoteRepository}
			}
			return "", "", &Error{Kind: ErrBranchNotFound, URL: s.url, Err: errors.New("remote advertises no HEAD"), Branch: "(default)"}
		}
		if head.Type() == plumbing.HashReference {
			return head.Hash().String(), plumbing.HEAD, nil
		}
		want = head.Target()
	}
	r, ok := byName[want]
	if !ok || r.Type() != plumbing.HashReference {
		if len(refs) == 0 {
			return "", "", &Error{Kind: ErrEmptyRepository, URL: s.url, Err: transport.ErrEmptyRemoteRepository}
		}
		return "", "", &Error{Kind: ErrBranchNotFound, URL: s.url, Branch: want.Short(), Err: fmt.Errorf("no ref %s", want), Branches: branchNames(refs)}
	}
	return r.Hash().String(), want, nil
}

// ListRefs returns branches (short name, e.g. "main") and pull/merge-request
// heads (full name, e.g. "refs/pull/7/head", "refs/merge-requests/3/head")
// mapped to their commit SHA. Tags and other refs are left out.
func (s *Source) ListRefs(ctx context.Context) (map[string]string, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for _, r := range refs {
		if r.Type() != plumbing.HashReference {
			continue
		}
		name := r.Name()
		switch {
		case name.IsBranch():
			out[name.Short()] = r.Hash().String()
		case isReviewHead(name.String()):
			out[name.String()] = r.Hash().String()
		}
	}
	return out, nil
}

// Refs is one ref listing of a repository, as a builder needs it.
type Refs struct {
	// Default is the branch the remote's HEAD points to, or "" when it does not say.
	Default string
	// Branches maps branch short names ("main", "feature/x") to commit SHAs.
	Branches map[string]string
	// Reviews maps pull/merge-request numbers to the SHA of refs/pull/<n>/head
	// (GitHub, Gitea, Forgejo) or refs/merge-requests/<n>/head (GitLab).
	Reviews map[int64]string
}

// Refs lists the repository's branches, its default branch and its review heads in one
// ref advertisement round trip; no objects are fetched.
func (s *Source) Refs(ctx context.Context) (Refs, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return Refs{}, err
	}
	out := Refs{Branches: map[string]string{}, Reviews: map[int64]string{}}
	for _, r := range refs {
		name := r.Name()
		if name == plumbing.HEAD {
			if r.Type() == plumbing.SymbolicReference && r.Target().IsBranch() {
				out.Default = r.Target().Short()
			}
			continue
		}
		if r.Type() != plumbing.HashReference {
			continue
		}
		switch {
		case name.IsBranch():
			out.Branches[name.Short()] = r.Hash().String()
		case isReviewHead(name.String()):
			if n, ok := reviewNumber(name.String()); ok {
				out.Reviews[n] = r.Hash().String()
			}
		}
	}
	return out, nil
}

// reviewNumber returns n of refs/pull/<n>/head or refs/merge-requests/<n>/head.
func reviewNumber(name string) (int64, bool) {
	for _, p := range []string{"refs/pull/", "refs/merge-requests/"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(rest, "/head"), 10, 64)
			return n, err == nil && n > 0
		}
	}
	return 0, false
}

// isReviewHead matches refs/pull/<n>/head (GitHub, Gitea/Forgejo) and
// refs/merge-requests/<n>/head (GitLab).
func isReviewHead(name string) bool {
	for _, p := range []string{"refs/pull/", "refs/merge-requests/"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			n, tail, ok := strings.Cut(rest, "/")
			if !ok || tail != "head" || n == "" {
				return false
			}
			_, err := strconv.ParseUint(n, 10, 64)
			return err == nil
		}
	}
	return false
}

func branchNames(refs []*plumbing.Reference) []string {
	var out []string
	for _, r := range refs {
		if r.Name().IsBranch() {
			out = append(out, r.Name().Short())
		}
	}
	sort.Strings(out)
	return out
}

// repoName makes a readable directory prefix from the last URL path element.
func repoName(u string) string {
	u = strings.TrimSuffix(strings.TrimRight(u, "/"), ".git")
	if i := strings.LastIndexAny(u, "/:"); i >= 0 {
		u = u[i+1:]
	}
	var b strings.Builder
	for _, r := range u {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || strings.Trim(b.String(), ".") == "" {
		return "repo"
	}
	return b.String()
}

// redact removes any password from a URL so it can appear in messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}
