// Package frontdoor owns gluebox's HTTP(S) entry on :80 and :443: it serves the Kubernetes
// Ingress objects (networking.k8s.io/v1) that apps produce, routing each request by Host and
// path to the backend Service, and terminates TLS with certificates from the Ingress's Secret or
// issued on demand by a separate internal CA (<CertDir>/ingress-ca.crt, never the cluster CA).
// It also mounts gluebox's own handlers (the Git webhook receiver...) under /.gluebox/ on every
// host.
//
// Proxying is net/http/httputil.ReverseProxy. We chose it over Caddy because Caddy's running
// configuration is process-global (caddy.Load replaces the one config of the process), which
// conflicts with our no-global-state rule and with running several nodes in one test process.
//
// Requests go straight to a pod, as with ingress-nginx: the front door reads the backend
// Service's EndpointSlices (discovery.k8s.io/v1) and picks, per request and round-robin, one
// endpoint that is ready and not terminating; when none is, one that is still serving while it
// terminates, so the last pod of a rollout answers until it is gone; when there is none at all,
// the answer is 503 with Retry-After: 1. It does not dial the ClusterIP: conntrack pins each
// kept-alive connection to the pod its first packet reached, so load would not spread and a
// rollout's old pod would keep getting requests until it died. A GET, HEAD or OPTIONS request
// without a body whose pod cannot be connected to (it has just died and the EndpointSlice does
// not say so yet) is sent once more to another endpoint. Headless Services are served too, since
// only their endpoints matter; ExternalName Services are not.
//
// Lifecycle: New validates the Config and loads or creates the ingress CA; nothing watches or
// listens yet. Run starts the Ingress (and Service, EndpointSlice and TLS Secret) informers,
// waits for their caches, builds the routing table, opens the listeners, closes Ready, and
// serves until its context ends; then it shuts the servers down within 5 s and returns nil. The
// table is rebuilt on every Ingress change and swapped atomically, so requests never see half a
// table. Run may be called once.
//
// Who may import it: the server wiring, and the status/API code that reports Routes and CAFile.
package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/gluebox/gluebox/appliance/pki"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults the CLI uses for the listeners (Config leaves them empty to mean "disabled").
const (
	DefaultHTTPAddr  = ":80"
	DefaultHTTPSAddr = ":443"
)

// DefaultResyncPeriod is the informer resync period when Config.ResyncPeriod is zero.
const DefaultResyncPeriod = 10 * time.Minute

// HandlerPrefix is the path prefix every Config.Handlers key must start with; apps never see
// requests for the mounted paths.
const HandlerPrefix = "/.gluebox/"

// Server limits. Reads and writes have no overall timeout because responses may stream and
// websockets stay open; a slow client is cut off while it sends headers or idles.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 5 * time.Second
)

// Backend connection limits. Connections go to pod IPs, so each pod has its own idle pool. An
// idle connection to a pod that left its Service is never picked again; the short idle timeout
// closes it soon instead of keeping a file descriptor (and the pod's) for minutes.
const (
	dialTimeout         = 5 * time.Second
	maxIdleConns        = 256
	maxIdleConnsPerHost = 16
	idleConnTimeout     = 30 * time.Second
)

// ResolveFunc returns the host:port that reaches port of Service namespace/service. It is called
// for every request, and once more when a retry is allowed, so it may balance.
type ResolveFunc func(ctx context.Context, namespace, service string, port networkingv1.ServiceBackendPort) (hostport string, err error)

// Config configures the front door.
type Config struct {
	// HTTPAddr is the plain-HTTP listener (host:port). Empty disables it; the CLI passes
	// DefaultHTTPAddr (:80). Port 0 picks a free port, which BoundHTTPAddr reports.
	HTTPAddr string
	// HTTPSAddr is the HTTPS listener (host:port). Empty disables it and TLS altogether; the CLI
	// passes DefaultHTTPSAddr (:443).
	HTTPSAddr string
	// Client reaches the Kubernetes API; it needs list and watch on Ingresses, on Services and
	// discovery.k8s.io EndpointSlices (when Resolve is nil), and on Secrets of type
	// kubernetes.io/tls (when HTTPSAddr is set). Without one of them Run waits for that cache
	// until its context ends. Required.
	Client kubernetes.Interface
	// CertDir holds the ingress CA (ingress-ca.crt/.key) and, under ingress-certs/, the
	// certificates it issued. Required, as an absolute path, when HTTPSAddr is set.
	CertDir string
	// Handlers maps path prefixes to gluebox's own handlers, served on every host ahead of
	// Ingress routing (e.g. "/.gluebox/webhook" for the Git webhook receiver). A prefix matches
	// itself and the paths below it; the handler sees the full, unstripped path. Every prefix
	// must start with HandlerPrefix. Nil means none.
	Handlers map[string]http.Handler
	// Logger receives one line per routing-table change and lifecycle events. Nil discards.
	Logger *slog.Logger
	// ResyncPeriod is the informers' resync period. Zero means DefaultResyncPeriod (10m).
	ResyncPeriod time.Duration
	// Resolve maps a Service backend to the address to dial; its errors are answered with 502.
	// Nil means a pod endpoint from the Service's EndpointSlices (see the package doc): pod IPs
	// are routable from the host. Non-nil is for tests and embedders without a pod network; a
	// retry after a refused connection then happens only if Resolve returns another address.
	Resolve ResolveFunc
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("frontdoor: a Kubernetes client is required")
	}
	for _, a := range []struct{ addr, flag string }{{c.HTTPAddr, "--http-addr"}, {c.HTTPSAddr, "--https-addr"}} {
		if a.addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("frontdoor: %s %q is not host:port (e.g. :80): %w", a.flag, a.addr, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("frontdoor: %s %q has no valid port", a.flag, a.addr)
		}
	}
	if _, port, _ := net.SplitHostPort(c.HTTPAddr); c.HTTPAddr != "" && c.HTTPAddr == c.HTTPSAddr && port != "0" {
		return fmt.Errorf("frontdoor: --http-addr and --https-addr are both %s: use different addresses", c.HTTPAddr)
	}
	if c.HTTPSAddr != "" && !filepath.IsAbs(c.CertDir) {
		return fmt.Errorf("frontdoor: CertDir %q must be an absolute path when HTTPS is enabled (--https-addr %s)", c.CertDir, c.HTTPSAddr)
	}
	if c.ResyncPeriod < 0 {
		return fmt.Errorf("frontdoor: ResyncPeriod is %s: use 0 for the default (%s) or a positive duration", c.ResyncPeriod, DefaultResyncPeriod)
	}
	for p, h := range c.Handlers {
		if _, err := mountPrefix(p); err != nil {
			return err
		}
		if h == nil {
			return fmt.Errorf("frontdoor: handler for %q is nil", p)
		}
	}
	return nil
}

// mountPrefix validates a Handlers key and returns it without a trailing slash.
func mountPrefix(p string) (string, error) {
	trimmed := strings.TrimRight(p, "/")
	if !strings.HasPrefix(p, HandlerPrefix) || len(trimmed) < len(HandlerPrefix) {
		return "", fmt.Errorf("frontdoor: handler prefix %q must start with %s and name a path below it", p, HandlerPrefix)
	}
	if path.Clean(trimmed) != trimmed {
		return "", fmt.Errorf("frontdoor: handler prefix %q is not a clean path (no //, . or ..)", p)
	}
	return trimmed, nil
}

type mount struct {
	prefix string
	h      http.Handler
}

// FrontDoor is one front door instance.
type FrontDoor struct {
	cfg     Config
	log     *slog.Logger
	mounts  []mount // longest prefix first
	handler http.Handler
	proxy   *httputil.ReverseProxy
	tr      *http.Transport

	factories []informers.SharedInformerFactory
	ingresses networkinglisters.IngressLister
	endpoints *endpointPicker          // nil when Config.Resolve is set
	secrets   corelisters.SecretLister // nil when HTTPS is off
	synced    []cache.InformerSynced

	table atomic.Pointer[table]
	kick  chan struct{}

	certs *certStore // nil when HTTPS is off

	running   atomic.Bool  // a Run is under way
	httpsPort atomic.Int32 // bound HTTPS port for redirects; 0 while HTTPS is not listening
	ready     supervise.Readiness

	// informersOnce starts the informers the first time Run gets that far; they then run until
	// a Run ends because its context ended (a stop), so a Run that failed (a listener that
	// could not bind) and is run again by the supervisor keeps its synced caches.
	informersOnce sync.Once
	stopInformers context.CancelFunc
	informersCtx  context.Context

	mu         sync.Mutex
	boundHTTP  string
	boundHTTPS string
}

var _ supervise.Component = (*FrontDoor)(nil)

// New validates cfg and loads or creates the ingress CA; nothing is watched or served until Run.
func New(cfg Config) (*FrontDoor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = DefaultResyncPeriod
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &FrontDoor{
		cfg:  cfg,
		log:  logger.With("component", "frontdoor"),
		kick: make(chan struct{}, 1),
	}
	f.informersCtx, f.stopInformers = context.WithCancel(context.Background())
	f.table.Store(buildTable(nil))
	for p, h := range cfg.Handlers {
		prefix, _ := mountPrefix(p) // validated above
		f.mounts = append(f.mounts, mount{prefix: prefix, h: h})
	}
	slices.SortFunc(f.mounts, func(a, b mount) int { return len(b.prefix) - len(a.prefix) })

	factory := informers.NewSharedInformerFactory(cfg.Client, cfg.ResyncPeriod)
	f.factories = append(f.factories, factory)
	ingInf := factory.Networking().V1().Ingresses()
	if _, err := ingInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f.requestRebuild() },
		UpdateFunc: func(any, any) { f.requestRebuild() },
		DeleteFunc: func(any) { f.requestRebuild() },
	}); err != nil {
		return nil, fmt.Errorf("frontdoor: cannot watch Ingresses: %w", err)
	}
	f.ingresses = ingInf.Lister()
	f.synced = append(f.synced, ingInf.Informer().HasSynced)
	if cfg.Resolve == nil {
		svcInf := factory.Core().V1().Services()
		// Only slices that belong to a Service are watched; the index finds a Service's slices
		// without scanning its namespace.
		ef := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName }))
		f.factories = append(f.factories, ef)
		sliceInf := ef.Discovery().V1().EndpointSlices().Informer()
		if err := sliceInf.AddIndexers(cache.Indexers{serviceIndex: indexByService}); err != nil {
			return nil, fmt.Errorf("frontdoor: cannot index EndpointSlices by Service: %w", err)
		}
		f.endpoints = &endpointPicker{services: svcInf.Lister(), slices: sliceInf.GetIndexer()}
		f.synced = append(f.synced, svcInf.Informer().HasSynced, sliceInf.HasSynced)
	}

	if cfg.HTTPSAddr != "" {
		ca, err := pki.EnsureCA(cfg.CertDir, "ingress-ca")
		if err != nil {
			return nil, fmt.Errorf("frontdoor: cannot load or create the ingress CA in %s: %w", cfg.CertDir, err)
		}
		// Only TLS Secrets are watched, so the cache does not hold every Secret of the cluster.
		sf := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "type=kubernetes.io/tls" }))
		f.factories = append(f.factories, sf)
		secInf := sf.Core().V1().Secrets()
		f.secrets = secInf.Lister()
		f.synced = append(f.synced, secInf.Informer().HasSynced)
		f.certs = newCertStore(ca, filepath.Join(cfg.CertDir, "ingress-certs"), f.secrets, f.log, f.table.Load)
	}

	f.tr = &http.Transport{
		Proxy:                 nil, // never send cluster traffic through $HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          maxIdleConns,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite:       rewrite,
		Transport:     roundTripFunc(f.roundTrip),
		FlushInterval: -1, // stream responses (SSE, long polls) as they come
		ErrorLog:      slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
		ErrorHandler:  f.proxyError,
	}
	f.handler = http.HandlerFunc(f.serveHTTP)
	return f, nil
}

// Name names the component in supervisor logs.
func (f *FrontDoor) Name() string { return "frontdoor" }

// Handler is the routing handler (mounted Handlers, then Ingress routes). Run serves it on both
// listeners; tests and embedders may serve it themselves. Before Run has synced, every Ingress
// request gets 404.
func (f *FrontDoor) Handler() http.Handler { return f.handler }

// WaitReady blocks until the current Run has built its first routing table and bound its
// listeners, or ctx ends. A Run that fails says why itself (the supervisor watches both).
func (f *FrontDoor) WaitReady(ctx context.Context) error { return f.ready.Wait(ctx) }

// Routes returns the current routing table, sorted by host, path and path type, with the default
// backend (if any) last.
func (f *FrontDoor) Routes() []Route { return slices.Clone(f.table.Load().routes) }

// CAFile is the PEM file of the ingress CA that clients must trust for hosts without a
// certificate of their own; empty when HTTPS is disabled.
func (f *FrontDoor) CAFile() string {
	if f.certs == nil {
		return ""
	}
	return f.certs.ca.CertFile
}

// BoundHTTPAddr is the address the HTTP listener is bound to once Ready; empty when disabled.
func (f *FrontDoor) BoundHTTPAddr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boundHTTP
}

// BoundHTTPSAddr is the address the HTTPS listener is bound to once Ready; empty when disabled.
func (f *FrontDoor) BoundHTTPSAddr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boundHTTPS
}

func (f *FrontDoor) requestRebuild() {
	select {
	case f.kick <- struct{}{}:
	default: // a rebuild is already pending and will see this change
	}
}

// rebuild replaces the routing table from the Ingress cache and logs what changed.
func (f *FrontDoor) rebuild() {
	ings, err := f.ingresses.List(labels.Everything())
	if err != nil { // the cache lister does not fail; keep the old table if it ever does
		f.log.Error("cannot list Ingresses from the cache; keeping the current routes", "err", err)
		return
	}
	t := buildTable(ings)
	old := f.table.Swap(t)
	if !slices.Equal(old.routes, t.routes) {
		added, removed := diffRoutes(old.routes, t.routes)
		f.log.Info("routes changed", "routes", len(t.routes), "added", added, "removed", removed)
	}
	if !slices.Equal(old.problems, t.problems) && len(t.problems) > 0 {
		f.log.Warn("some Ingress rules are not served as written", "problems", t.problems)
	}
}

func diffRoutes(old, cur []Route) (added, removed []string) {
	in := func(rs []Route, r Route) bool { return slices.Contains(rs, r) }
	for _, r := range cur {
		if !in(old, r) {
			added = append(added, r.String())
		}
	}
	for _, r := range old {
		if !in(cur, r) {
			removed = append(removed, r.String())
		}
	}
	return added, removed
}

// Run watches Ingresses, serves them on the configured listeners until ctx ends, then shuts
// down within 5 s and returns nil. Errors name the address and the flag that set it. After a
// Run that failed, Run may be called again (the supervisor does, with backoff); two at once are
// refused.
func (f *FrontDoor) Run(ctx context.Context) (err error) {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("frontdoor: Run is already running")
	}
	defer f.running.Store(false)
	defer f.ready.Clear()

	ictx, stopLoop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		stopLoop()
		if ctx.Err() != nil { // a stop, not a failure: the informers end with it
			f.stopInformers()
			for _, fac := range f.factories {
				fac.Shutdown()
			}
		}
		bg.Wait()
		f.tr.CloseIdleConnections()
	}()
	f.informersOnce.Do(func() {
		for _, fac := range f.factories {
			fac.Start(f.informersCtx.Done())
		}
	})
	if !cache.WaitForCacheSync(ictx.Done(), f.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("frontdoor: cannot sync the Ingress, Service, EndpointSlice and Secret caches")
	}
	f.rebuild()
	bg.Go(func() {
		for {
			select {
			case <-ictx.Done():
				return
			case <-f.kick:
				f.rebuild()
			}
		}
	})

	var httpL, httpsL net.Listener
	if f.cfg.HTTPAddr != "" {
		if httpL, err = listen(f.cfg.HTTPAddr, "--http-addr"); err != nil {
			return err
		}
	}
	if f.cfg.HTTPSAddr != "" {
		if httpsL, err = listen(f.cfg.HTTPSAddr, "--https-addr"); err != nil {
			if httpL != nil {
				httpL.Close()
			}
			return err
		}
	}

	// Request contexts derive from connCtx, so ending it after the graceful shutdown closes what
	// Shutdown does not wait for: hijacked (websocket) connections and endless streams.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	var servers []*http.Server
	errc := make(chan error, 2)
	serve := func(l net.Listener, secure bool) {
		srv := &http.Server{
			Handler:           f.handler,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			// Per-connection noise (TLS handshakes for unknown names, resets) is not worth a warning.
			ErrorLog:    slog.NewLogLogger(f.log.Handler(), slog.LevelDebug),
			BaseContext: func(net.Listener) context.Context { return connCtx },
		}
		if secure {
			srv.TLSConfig = f.certs.tlsConfig()
		}
		servers = append(servers, srv)
		bg.Go(func() {
			var err error
			if secure {
				err = srv.ServeTLS(l, "", "")
			} else {
				err = srv.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("frontdoor: cannot serve on %s: %w", l.Addr(), err)
			}
		})
	}
	f.mu.Lock()
	if httpL != nil {
		f.boundHTTP = httpL.Addr().String()
		serve(httpL, false)
	}
	if httpsL != nil {
		f.boundHTTPS = httpsL.Addr().String()
		f.httpsPort.Store(int32(httpsL.Addr().(*net.TCPAddr).Port))
		serve(httpsL, true)
	}
	f.mu.Unlock()
	f.log.Info("front door serving", "http", f.BoundHTTPAddr(), "https", f.BoundHTTPSAddr(), "routes", len(f.Routes()), "ca", f.CAFile())
	f.ready.Set()

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if srv.Shutdown(shut) != nil {
				srv.Close()
			}
		})
	}
	wg.Wait()
	closeConns()
	f.httpsPort.Store(0)
	if err != nil {
		return err
	}
	f.log.Info("front door stopped")
	return nil
}

// listen binds addr, explaining the usual failures in terms of the flag that set it.
func listen(addr, flag string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("frontdoor: cannot listen on %s (%s): address already in use; stop the program holding it or set %s to a free address: %w", addr, flag, flag, err)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("frontdoor: cannot listen on %s (%s): permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, or set %s to a port above 1023: %w", addr, flag, flag, err)
	}
	return nil, fmt.Errorf("frontdoor: cannot listen on %s (%s): %w", addr, flag, err)
}
