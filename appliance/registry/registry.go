// Package registry owns gluebox's built-in OCI registry: distribution/distribution v3 running
// in-process on the filesystem under <data-dir>/registry, wrapped with what gluebox adds around it —
// authentication off loopback, request logs and Prometheus metrics, the OCI 1.1 referrers API and
// a few conformance fixes, garbage collection with a retention policy, and its routes of the local
// JSON API (http.go; the `gluebox registry` commands live in appliance/cli).
//
// Lifecycle: New builds the component (storage is opened, nothing listens yet); Run listens,
// closes Ready once the socket is bound, runs the GC schedule, and returns nil when its context
// ends; Close releases everything and may be called any number of times. GC may be called at any
// time, also while Run serves. From New to Close the file <Dir>/gluebox/open marks the storage as
// in use; a New that finds it knows the last run did not end cleanly (see markOpen).
//
// Who may import it: the server wiring (appliance/server or cmd), the typed client and the CLI (for
// the API types), and components that need the registry address or GC (build, gitops). It imports only
// appliance/api and third-party modules.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	digest "github.com/opencontainers/go-digest"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// DefaultAddr is where the registry listens when Config.Addr is empty.
const DefaultAddr = "127.0.0.1:5000"

// Defaults for the zero values of Config.
const (
	DefaultKeepLast         = 10
	DefaultGCInterval       = 24 * time.Hour
	DefaultGCGrace          = time.Hour
	DefaultMaxManifestBytes = 4 << 20
)

// Config is everything the registry needs to know; the zero value of every field except Dir is
// meaningful. Runtime handles (credential checkers, the deployed-images source) are Options.
type Config struct {
	// Dir is the storage root, normally paths.Layout.RegistryDir(). Required. Distribution keeps
	// its tree under Dir/docker; gluebox's own state (referrers index, HTTP secret) lives under
	// Dir/gluebox.
	Dir string

	// Addr is the host:port to listen on. Empty means DefaultAddr (127.0.0.1:5000). Port 0 picks a
	// free port; Addr() reports the bound one.
	Addr string

	// TLSCertFile and TLSKeyFile are the PEM serving certificate and key. Empty means plain HTTP,
	// which is only allowed when Addr is a loopback address.
	TLSCertFile string
	TLSKeyFile  string

	// HtpasswdFile is an htpasswd file of bcrypt hashes ("user:$2y$..." lines) whose users may push
	// and pull. Empty means no file users. The file is re-read when it changes.
	HtpasswdFile string

	// RequireAuth forces authentication even on a loopback address. False means loopback
	// listeners are open and any other listener requires credentials.
	RequireAuth bool

	// KeepLast is how many of the newest manifests per repository GC keeps. Zero means
	// DefaultKeepLast (10); negative means keep none except the caller's Keep set.
	KeepLast int

	// GCInterval is how often Run garbage-collects. Zero means DefaultGCInterval (24h); negative
	// disables the schedule (GC is then only run on request).
	GCInterval time.Duration

	// GCGrace protects blobs younger than this from the sweep, so a push whose blobs are uploaded
	// but whose manifest is not yet written survives a concurrent GC. Zero means DefaultGCGrace
	// (1h); negative means no grace (tests).
	GCGrace time.Duration

	// MaxManifestBytes is the largest manifest accepted. Zero means DefaultMaxManifestBytes (4 MiB).
	MaxManifestBytes int64
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("registry: Dir is required (normally <data-dir>/registry)")
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("registry: Dir %q must be an absolute path", c.Dir)
	}
	addr := c.addr()
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("registry: cannot parse address %q (want host:port): %w", addr, err)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("registry: TLSCertFile and TLSKeyFile must be set together")
	}
	if !isLoopbackAddr(addr) && c.TLSCertFile == "" {
		return fmt.Errorf("registry: address %s is not loopback, so TLS is required: set a certificate and key, or listen on 127.0.0.1", addr)
	}
	if c.MaxManifestBytes < 0 {
		return fmt.Errorf("registry: MaxManifestBytes %d must not be negative", c.MaxManifestBytes)
	}
	return nil
}

func (c Config) addr() string {
	if c.Addr == "" {
		return DefaultAddr
	}
	return c.Addr
}

func (c Config) keepLast() int {
	switch {
	case c.KeepLast == 0:
		return DefaultKeepLast
	case c.KeepLast < 0:
		return 0
	}
	return c.KeepLast
}

func (c Config) gcGrace() time.Duration {
	switch {
	case c.GCGrace == 0:
		return DefaultGCGrace
	case c.GCGrace < 0:
		return 0
	}
	return c.GCGrace
}

func (c Config) maxManifest() int64 {
	if c.MaxManifestBytes == 0 {
		return DefaultMaxManifestBytes
	}
	return c.MaxManifestBytes
}

// authRequired says whether requests on this listener need credentials.
func (c Config) authRequired() bool { return c.RequireAuth || !isLoopbackAddr(c.addr()) }

// isLoopbackAddr reports whether host:port only accepts connections from this host.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Option adds a runtime dependency to New.
type Option func(*Registry)

// WithAuthenticator adds a credential checker (bearer tokens issued by gluebox, robot/pull
// credentials of joined clusters, ...) consulted after the htpasswd users.
func WithAuthenticator(a Authenticator) Option {
	return func(r *Registry) { r.auths = append(r.auths, a) }
}

// WithDeployed sets the source of digests that scheduled GC must keep (images currently deployed).
func WithDeployed(f func(ctx context.Context) ([]digest.Digest, error)) Option {
	return func(r *Registry) { r.deployed = f }
}

// Registry is one running registry instance.
type Registry struct {
	cfg   Config
	log   *slog.Logger
	auths []Authenticator

	deployed func(ctx context.Context) ([]digest.Digest, error)

	app       *handlers.App
	driver    driver.StorageDriver
	namespace distribution.Namespace
	referrers *referrerIndex
	aliases   aliasIndex
	pushes    *pushOrder
	metrics   *metrics
	handler   http.Handler

	// writes is held shared by every mutating registry request and exclusively by GC's mark and
	// sweep, so readers never wait and writers wait only while blobs are being reclaimed.
	writes sync.RWMutex
	gcMu   sync.Mutex // one GC at a time

	uploadBufs *bufPool // 1 MiB upload buffers, see countingBody.WriteTo

	mu       sync.Mutex
	boundTo  string
	lastGC   *Report
	size     int64     // storage bytes, cached
	sizeAt   time.Time // when size was measured
	ready    supervise.Readiness
	closeOne sync.Once
	cancel   context.CancelFunc
}

// New opens the storage under cfg.Dir and builds the handler chain; nothing listens until Run.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{
		cfg:        cfg,
		log:        logger.With("component", "registry"),
		uploadBufs: newBufPool(keptUploadBufs),
	}
	for _, o := range opts {
		o(r)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "gluebox"), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create registry dir %s: %w", cfg.Dir, err)
	}
	if cfg.HtpasswdFile != "" {
		h, err := newHtpasswd(cfg.HtpasswdFile)
		if err != nil {
			return nil, err
		}
		r.auths = append([]Authenticator{h}, r.auths...)
	}
	if cfg.authRequired() && len(r.auths) == 0 {
		return nil, fmt.Errorf("registry: address %s requires authentication but no credentials are configured: set HtpasswdFile or add an authenticator", cfg.addr())
	}
	secret, err := loadSecret(filepath.Join(cfg.Dir, "gluebox", "http-secret"))
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	app, err := newApp(ctx, distConfig(cfg, secret))
	if err != nil {
		cancel()
		return nil, err
	}
	r.app = app
	r.driver = newFSDriver(cfg.Dir)
	r.namespace, err = storage.NewRegistry(ctx, r.driver, storage.EnableDelete)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot open registry storage %s: %w", cfg.Dir, err)
	}
	r.referrers = newReferrerIndex(filepath.Join(cfg.Dir, "gluebox", "referrers"))
	r.aliases = aliasIndex{root: filepath.Join(cfg.Dir, "gluebox", "aliases")}
	r.pushes = &pushOrder{root: filepath.Join(cfg.Dir, "gluebox", "pushes")}
	if _, err := os.Stat(r.referrers.root); errors.Is(err, os.ErrNotExist) {
		n, err := r.rebuildReferrers(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		if n > 0 {
			r.log.Info("rebuilt referrers index", "referrers", n)
		}
	}
	r.metrics = newMetrics(r)

	var h http.Handler = app
	h = r.ociFixes(h)
	h = r.gateWrites(h)
	h = r.authenticate(h)
	h = r.observe(h)
	r.handler = h
	// Last, so a New that fails leaves no marker behind; nothing is served before Run.
	if err := r.markOpen(); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

// newApp turns distribution's panics on bad configuration into an error.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot start distribution: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// distConfig translates Config into distribution's configuration. Storage is fsDriver
// (distribution's filesystem driver with gluebox's write path); caches are off so a GC is
// visible to the next request without a restart.
func distConfig(cfg Config, secret string) *configuration.Configuration {
	c := &configuration.Configuration{Version: "0.1"}
	c.HTTP.Addr = cfg.addr()
	c.HTTP.Secret = secret
	c.HTTP.Headers = http.Header{"X-Content-Type-Options": []string{"nosniff"}}
	c.Storage = configuration.Storage{
		storageDriverName: configuration.Parameters{"rootdirectory": cfg.Dir},
		"delete":          configuration.Parameters{"enabled": true},
		"redirect":        configuration.Parameters{"disable": true},
		"maintenance": configuration.Parameters{
			"uploadpurging": map[any]any{"enabled": true, "age": "168h", "interval": "24h", "dryrun": false},
		},
	}
	// Non-distributable layers carry http(s) URLs and are never pushed; accept them.
	c.Validation.Manifests.URLs.Allow = []string{"^https?://"}
	return c
}

// loadSecret returns the HMAC secret distribution signs upload state with, kept across restarts
// so an interrupted chunked upload can resume after a restart.
func loadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cannot read registry secret %s: %w", path, err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("cannot generate registry secret: %w", err)
	}
	s := hex.EncodeToString(buf)
	if err := writeFileAtomic(path, []byte(s), 0o600); err != nil {
		return "", fmt.Errorf("cannot write registry secret: %w", err)
	}
	return s, nil
}

// writeFileAtomic replaces path with b, creating its directory (0700) first: repositories and
// aliases get their directories on first write.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", filepath.Dir(path), err)
	}
	return atomicfile.WriteFile(path, b, mode)
}

// Handler is the registry's full HTTP handler (auth, logs, metrics, referrers, distribution). Run
// serves it; tests and embedders may serve it themselves.
func (r *Registry) Handler() http.Handler { return r.handler }

// WaitReady returns once Run has bound its listener, or ctx's error. After a Run has
// returned, it waits for the next one.
func (r *Registry) WaitReady(ctx context.Context) error { return r.ready.Wait(ctx) }

// Addr is the address Run is bound to, or the configured one before that.
func (r *Registry) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.boundTo != "" {
		return r.boundTo
	}
	return r.cfg.addr()
}

// Run listens on Config.Addr and serves until ctx ends, then shuts down gracefully and returns nil.
// It also runs the GC schedule.
func (r *Registry) Run(ctx context.Context) error {
	defer r.ready.Clear()
	addr := r.cfg.addr()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("registry: cannot listen on %s: address already in use; stop the program holding it or set --registry-addr to a free address", addr)
		}
		return fmt.Errorf("registry: cannot listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	if r.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.cfg.TLSCertFile, r.cfg.TLSKeyFile)
		if err != nil {
			l.Close()
			return fmt.Errorf("registry: cannot load TLS certificate %s: %w", r.cfg.TLSCertFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		l = tls.NewListener(l, srv.TLSConfig)
	}
	r.mu.Lock()
	r.boundTo = l.Addr().String()
	r.mu.Unlock()
	r.log.Info("registry listening", "addr", r.boundTo, "tls", r.cfg.TLSCertFile != "", "auth", r.cfg.authRequired())
	r.ready.Set()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	gcDone := make(chan struct{})
	gcCtx, stopGC := context.WithCancel(ctx)
	go func() { defer close(gcDone); r.gcLoop(gcCtx) }()
	defer func() { stopGC(); <-gcDone }()

	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil {
			srv.Close()
		}
		r.log.Info("registry stopped")
		return nil
	case err := <-errc:
		return fmt.Errorf("registry: cannot serve on %s: %w", r.boundTo, err)
	}
}

// gcLoop runs GC every GCInterval until ctx ends.
func (r *Registry) gcLoop(ctx context.Context) {
	every := r.cfg.GCInterval
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultGCInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var keep []digest.Digest
		if r.deployed != nil {
			var err error
			keep, err = r.deployed(ctx)
			if err != nil {
				// Without the deployed set, retention could delete a running image: skip.
				r.log.Warn("scheduled gc skipped: cannot list deployed images", "err", err)
				continue
			}
		}
		if _, err := r.GC(ctx, GCOptions{Keep: keep}); err != nil && ctx.Err() == nil {
			r.log.Warn("scheduled gc failed", "err", err)
		}
	}
}

// Close stops distribution's background work and marks the storage as cleanly closed. It is
// safe to call more than once.
func (r *Registry) Close() error {
	var err error
	r.closeOne.Do(func() {
		if r.app != nil {
			err = r.app.Shutdown()
		}
		if r.cancel != nil {
			r.cancel()
		}
		if rerr := os.Remove(r.openMarker()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("registry: cannot remove %s: %w", r.openMarker(), rerr))
		}
	})
	return err
}

// openMarker exists while a Registry has the storage open. Found at start, it means the last
// run ended without Close (a crash, a kill, a power cut).
func (r *Registry) openMarker() string { return filepath.Join(r.cfg.Dir, "gluebox", "open") }

// markOpen empties the trash, checks for an unclean shutdown and cleans up after one, and
// durably creates the marker before any upload can be accepted.
func (r *Registry) markOpen() error {
	path := r.openMarker()
	if err := os.RemoveAll(trashDir(r.cfg.Dir)); err != nil {
		return fmt.Errorf("registry: cannot empty %s: %w", trashDir(r.cfg.Dir), err)
	}
	if _, err := os.Stat(path); err == nil {
		n, err := recoverUploads(r.cfg.Dir)
		if err != nil {
			return err
		}
		r.log.Warn("registry storage was not closed cleanly; uploads in progress will be re-verified from disk when committed", "uploads", n)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("registry: cannot check %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("registry: cannot create %s: %w", path, err)
	}
	return nil
}
