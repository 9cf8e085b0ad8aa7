package registry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Principal is who a request authenticated as and what it may do.
type Principal struct {
	// Name identifies the user, token or robot in logs.
	Name string
	// Push allows mutating requests (uploads, manifest and tag writes, deletes); false means
	// pull-only, as for the pull credentials of joined clusters.
	Push bool
	// Repos limits the principal to these repositories (exact names, or a prefix ending in "/").
	// Empty means every repository, including the catalog.
	Repos []string
}

// may reports whether p may do a request on repo ("" for the base endpoint and catalog).
func (p *Principal) may(repo string, push bool) bool {
	if push && !p.Push {
		return false
	}
	if len(p.Repos) == 0 {
		return true
	}
	if repo == "" {
		return false
	}
	for _, r := range p.Repos {
		if r == repo || (strings.HasSuffix(r, "/") && strings.HasPrefix(repo, r)) {
			return true
		}
	}
	return false
}

// Authenticator checks the credentials a request carries. It returns (nil, nil) when the request
// carries no credentials it recognises, so the next authenticator may try; an error means the
// credentials were recognised and are wrong. Robot/pull credentials for joined clusters and
// gluebox-issued bearer tokens plug in here.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// errBadCredentials is returned for recognised but invalid credentials.
var errBadCredentials = errors.New("invalid credentials")

// TokenAuthenticator accepts gluebox-issued tokens, sent either as "Authorization: Bearer T" or as
// the password of HTTP basic auth (what `docker login` sends). Verify returns the principal of a
// valid token, (nil, nil) for a token it does not know, or an error.
type TokenAuthenticator struct {
	Verify func(ctx context.Context, token string) (*Principal, error)
}

var _ Authenticator = TokenAuthenticator{}

// Authenticate implements Authenticator.
func (t TokenAuthenticator) Authenticate(r *http.Request) (*Principal, error) {
	var token string
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		token = strings.TrimSpace(h[7:])
	} else if _, pass, ok := r.BasicAuth(); ok {
		token = pass
	}
	if token == "" {
		return nil, nil
	}
	return t.Verify(r.Context(), token)
}

// htpasswd authenticates HTTP basic auth against a file of bcrypt hashes, re-read when it changes.
type htpasswd struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	users map[string][]byte
}

var _ Authenticator = (*htpasswd)(nil)

func newHtpasswd(path string) (*htpasswd, error) {
	h := &htpasswd{path: path}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *htpasswd) reload() error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("cannot read htpasswd file: %w", err)
	}
	if fi.ModTime().Equal(h.mtime) && fi.Size() == h.size && h.users != nil {
		return nil
	}
	b, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("cannot read htpasswd file: %w", err)
	}
	users, err := parseHtpasswd(b)
	if err != nil {
		return fmt.Errorf("cannot parse htpasswd file %s: %w", h.path, err)
	}
	h.users, h.mtime, h.size = users, fi.ModTime(), fi.Size()
	return nil
}

// parseHtpasswd reads "user:bcrypt-hash" lines; other hash schemes are refused rather than
// silently never matching.
func parseHtpasswd(b []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: only bcrypt hashes are supported (htpasswd -B): %w", n, user, err)
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// Authenticate implements Authenticator. htpasswd users may push and pull everything.
func (h *htpasswd) Authenticate(r *http.Request) (*Principal, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil, nil
	}
	h.mu.Lock()
	if err := h.reload(); err != nil && h.users == nil {
		h.mu.Unlock()
		return nil, err
	}
	hash, known := h.users[user]
	h.mu.Unlock()
	if !known {
		return nil, nil
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return nil, errBadCredentials
	}
	return &Principal{Name: user, Push: true}, nil
}

type principalKey struct{}

// authenticate requires credentials on every /v2/ request when the listener is not loopback (or
// RequireAuth is set); otherwise requests pass as an anonymous principal with full rights.
func (r *Registry) authenticate(next http.Handler) http.Handler {
	if !r.cfg.authRequired() {
		return next
	}
	return authMiddleware(r.auths, next)
}

func authMiddleware(auths []Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p *Principal
		var authErr error
		for _, a := range auths {
			got, err := a.Authenticate(req)
			if err != nil {
				authErr = err
				continue
			}
			if got != nil {
				p = got
				break
			}
		}
		if p == nil {
			msg := "authentication required"
			if authErr != nil {
				msg = "authentication failed: " + authErr.Error()
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="gluebox registry"`)
			writeOCIError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg, nil)
			return
		}
		// Any authenticated principal may ping the base endpoint; clients do so before anything.
		route := parseRoute(req.URL.Path)
		if route.kind != "base" && !p.may(route.repo, isWrite(req.Method)) {
			writeOCIError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied", nil)
			return
		}
		if rec, ok := w.(*recorder); ok {
			rec.user = p.Name
		}
		next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), principalKey{}, p)))
	})
}

func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
