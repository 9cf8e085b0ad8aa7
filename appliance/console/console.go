// Package console is gluebox's local web console listener: HTTPS on --console-addr with a
// certificate from gluebox's console CA, a password login (the password lives in the secret
// store) with signed session cookies, and the pages and tools mounted behind it — today
// VictoriaMetrics' query UI under /metrics/. Everything but the login page needs a session.
//
// Lifecycle: New, then Run until its context ends; Ready is closed once it listens. Handler
// may be used without Run (tests, other listeners). Only the server wiring imports it.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/pki"
)

// Defaults for the zero values of Config.
const (
	DefaultSessionTTL  = 12 * time.Hour
	DefaultMaxFailures = 10
	DefaultFailWindow  = 5 * time.Minute
)

// CookieName is the session cookie.
const CookieName = "gluebox_session"

// Config configures the console. Password is required.
type Config struct {
	// Addr is the listener, e.g. 127.0.0.1:8443. Required for Run.
	Addr string
	// CertDir holds the console CA and the listener's certificate (Run issues it for
	// localhost, 127.0.0.1, the listener's host and Hosts). Required for Run.
	CertDir string
	Hosts   []string
	// Password returns the current login password. Required.
	Password func(ctx context.Context) ([]byte, error)
	// Tools are mounted behind the login: path prefix ("/metrics/") → handler, with a link on
	// the start page named by the Title.
	Tools []Tool
	// SessionTTL is how long a login lasts (default 12h). Sessions end when gluebox restarts.
	SessionTTL time.Duration
	// MaxFailures failed logins from one address within FailWindow lock that address out for
	// the rest of the window (defaults 10 and 5m).
	MaxFailures int
	FailWindow  time.Duration
	Logger      *slog.Logger
}

// Tool is a page or UI mounted behind the login.
type Tool struct {
	Prefix  string
	Title   string
	Handler http.Handler
}

// Console serves the login and the tools behind it.
type Console struct {
	cfg   Config
	log   *slog.Logger
	key   []byte
	ready chan struct{}
	caF   string
	addr  string

	mu       sync.Mutex
	failures map[string][]time.Time
	now      func() time.Time
}

// New returns a Console for cfg; nothing listens until Run.
func New(cfg Config) (*Console, error) {
	if cfg.Password == nil {
		return nil, errors.New("console: a password source is required")
	}
	for _, t := range cfg.Tools {
		if !strings.HasPrefix(t.Prefix, "/") || !strings.HasSuffix(t.Prefix, "/") || t.Prefix == "/" || t.Handler == nil {
			return nil, fmt.Errorf("console: tool %q needs a prefix like /name/ and a handler", t.Prefix)
		}
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.FailWindow <= 0 {
		cfg.FailWindow = DefaultFailWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), key: key, ready: make(chan struct{}),
		failures: map[string][]time.Time{}, now: time.Now}, nil
}

// Name and WaitReady make the Console a supervise.Component.
func (c *Console) Name() string { return "console" }

// WaitReady waits until Run listens.
func (c *Console) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CAFile is the console CA's certificate, for clients to trust (after Ready).
func (c *Console) CAFile() string { return c.caF }

// Tools are the tools mounted behind the login.
func (c *Console) Tools() []Tool { return c.cfg.Tools }

// Addr is the address Run listens on (after Ready).
func (c *Console) Addr() string { return c.addr }

// Run serves HTTPS on Addr until ctx ends.
func (c *Console) Run(ctx context.Context) error {
	if c.cfg.Addr == "" || c.cfg.CertDir == "" {
		return errors.New("console: Addr and CertDir are required to listen")
	}
	if err := os.MkdirAll(c.cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	ca, err := pki.EnsureCA(c.cfg.CertDir, "console-ca")
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	c.caF = ca.CertFile
	spec := pki.Spec{CommonName: "gluebox-console", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.Server}
	hosts := append([]string{}, c.cfg.Hosts...)
	if h, _, err := net.SplitHostPort(c.cfg.Addr); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !ip.Equal(net.IPv4(127, 0, 0, 1)) {
				spec.IPs = append(spec.IPs, ip)
			}
		} else if h != "" && h != "localhost" {
			spec.DNSNames = append(spec.DNSNames, h)
		}
	}
	sort.Strings(spec.DNSNames)
	pair, err := ca.Ensure(c.cfg.CertDir, "console", spec)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	l, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("console: cannot listen on %s (--console-addr): %w", c.cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           c.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	c.addr = l.Addr().String()
	close(c.ready)
	c.log.Info("console listening", "url", "https://"+l.Addr().String()+"/", "ca", ca.CertFile)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("console: %w", err)
	}
}

// Handler is the console: /login, /logout, the start page and the tools, all but the login
// behind a session.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	mux.Handle("GET /{$}", c.require(http.HandlerFunc(c.home)))
	for _, t := range c.cfg.Tools {
		mux.Handle(t.Prefix, c.require(t.Handler))
	}
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// require lets requests with a valid session through and sends the others to the login
// (browsers) or answers 401 (API calls the tools make).
func (c *Console) require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ck, err := r.Cookie(CookieName); err == nil && c.validSession(ck.Value) {
			h.ServeHTTP(w, withoutSession(r))
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") || r.URL.Path == "/" {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		http.Error(w, "log in to the gluebox console first", http.StatusUnauthorized)
	})
}

// withoutSession is r without the session cookie: the tools behind the console never see it.
func withoutSession(r *http.Request) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Header.Del("Cookie")
	for _, ck := range r.Cookies() {
		if ck.Name != CookieName {
			r2.AddCookie(ck)
		}
	}
	return r2
}

// A session is "<expiry unix seconds>.<nonce>.<mac>", base64url, signed with a key that lives
// only in this process.
func (c *Console) newSession() string {
	buf := make([]byte, 8+16)
	binary.BigEndian.PutUint64(buf, uint64(c.now().Add(c.cfg.SessionTTL).Unix()))
	_, _ = rand.Read(buf[8:])
	m := hmac.New(sha256.New, c.key)
	m.Write(buf)
	return base64.RawURLEncoding.EncodeToString(append(buf, m.Sum(nil)...))
}

func (c *Console) validSession(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) != 8+16+sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, c.key)
	m.Write(b[:24])
	if !hmac.Equal(m.Sum(nil), b[24:]) {
		return false
	}
	return c.now().Unix() < int64(binary.BigEndian.Uint64(b[:8]))
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>gluebox console — log in</title></head>
<body><h1>gluebox</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{.Next}}">
<label>Password <input type="password" name="password" autofocus required></label>
<button type="submit">Log in</button>
</form>
<p>The password is in the secret store: <code>gluebox console password</code>.</p>
</body></html>
`))

var homeTmpl = template.Must(template.New("home").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>gluebox console</title></head>
<body><h1>gluebox</h1>
<ul>{{range .}}<li><a href="{{.Prefix}}">{{.Title}}</a></li>{{end}}</ul>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
</body></html>
`))

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginTmpl.Execute(w, map[string]string{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = homeTmpl.Execute(w, c.cfg.Tools)
}

// safeNext keeps redirects after the login on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	if wait := c.lockedOut(ip); wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		http.Error(w, fmt.Sprintf("too many failed logins from %s: try again in %s", ip, wait.Round(time.Second)), http.StatusTooManyRequests)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad login form", http.StatusBadRequest)
		return
	}
	want, err := c.cfg.Password(r.Context())
	if err != nil || len(want) == 0 {
		c.log.Error("console password unavailable", "err", err)
		http.Error(w, "the console password cannot be read from the secret store; see gluebox's log", http.StatusServiceUnavailable)
		return
	}
	got := sha256.Sum256([]byte(r.PostForm.Get("password")))
	exp := sha256.Sum256(want)
	if subtle.ConstantTimeCompare(got[:], exp[:]) != 1 {
		c.fail(ip)
		c.log.Warn("console login failed", "from", ip)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginTmpl.Execute(w, map[string]string{"Next": safeNext(r.PostForm.Get("next")), "Error": "Wrong password."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: c.newSession(), Path: "/", MaxAge: int(c.cfg.SessionTTL.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console login", "from", ip)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) fail(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures[ip] = append(c.recentLocked(ip), c.now())
}

// lockedOut says how long ip must wait, or 0.
func (c *Console) lockedOut(ip string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	fs := c.recentLocked(ip)
	c.failures[ip] = fs
	if len(fs) == 0 {
		delete(c.failures, ip)
	}
	if len(fs) < c.cfg.MaxFailures {
		return 0
	}
	return fs[0].Add(c.cfg.FailWindow).Sub(c.now())
}

func (c *Console) recentLocked(ip string) []time.Time {
	var out []time.Time
	for _, t := range c.failures[ip] {
		if c.now().Sub(t) < c.cfg.FailWindow {
			out = append(out, t)
		}
	}
	return out
}
