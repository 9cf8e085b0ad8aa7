package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
)

// NormalizeURL returns the key under which a repository is matched: "host/path", with the
// host in lower case and without user or port, and the path without a ".git" suffix or
// trailing slash. The HTTPS, SSH and scp-like ("git@host:org/repo.git") forms of one
// repository, and the forge's web address of it, all give the same key, and so does the key
// itself. It is a key, not a URL to fetch from: the scheme and port are gone.
//
// The path keeps its case. GitHub, GitLab and Gitea ignore it, but plain Git servers do not,
// so configure repositories with the case the forge reports them in.
func NormalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("webhook: normalise repository URL: empty")
	}
	host, p, err := splitRepoURL(s)
	if err != nil {
		return "", fmt.Errorf("webhook: normalise repository URL %q: %w", clip(raw), err)
	}
	host = strings.ToLower(strings.TrimRight(host, "."))
	if host == "" || strings.ContainsAny(host, "/@\\?#[]") || strings.IndexFunc(host, unicode.IsSpace) >= 0 || hasControl(host) {
		return "", fmt.Errorf("webhook: normalise repository URL %q: bad host %q", clip(raw), clip(host))
	}
	if strings.Contains(host, ":") { // IPv6
		host = "[" + host + "]"
	}
	if hasControl(p) || strings.IndexFunc(p, unicode.IsSpace) >= 0 {
		// Forges allow neither in repository paths, and trimmed input must stay trimmed.
		return "", fmt.Errorf("webhook: normalise repository URL %q: space or control character in path", clip(raw))
	}
	p = path.Clean("/" + p)
	for {
		q := path.Clean(strings.TrimSuffix(p, ".git"))
		if q == p {
			break
		}
		p = q
	}
	if p == "/" || p == "." {
		return "", fmt.Errorf("webhook: normalise repository URL %q: no repository path", clip(raw))
	}
	return host + p, nil
}

// splitRepoURL splits the three spellings Git accepts into host and path: a URL with a
// scheme, the scp-like "[user@]host:path", and the "host/path" keys NormalizeURL returns.
func splitRepoURL(s string) (host, p string, err error) {
	if i := strings.Index(s, "://"); i > 0 && isScheme(s[:i]) {
		u, err := url.Parse(s)
		if err != nil {
			return "", "", err
		}
		switch strings.ToLower(u.Scheme) {
		case "https", "http", "ssh", "git", "git+ssh", "ssh+git":
		default:
			return "", "", fmt.Errorf("unsupported scheme %q", u.Scheme)
		}
		return u.Hostname(), u.Path, nil
	}
	rest := s
	if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexAny(rest+":", ":/") {
		rest = rest[at+1:] // user@ of the scp-like form
	}
	if strings.HasPrefix(rest, "[") { // [::1]:org/repo or [::1]/org/repo
		end := strings.IndexByte(rest, ']')
		if end < 0 || end+1 >= len(rest) || (rest[end+1] != ':' && rest[end+1] != '/') {
			return "", "", errors.New("bad bracketed host")
		}
		return rest[1:end], rest[end+2:], nil
	}
	i := strings.IndexAny(rest, ":/")
	if i <= 0 {
		return "", "", errors.New("not a repository URL")
	}
	return rest[:i], rest[i+1:], nil
}

// isScheme reports whether s is spelt like a URL scheme, so that "host/a://b" is a path.
func isScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}
