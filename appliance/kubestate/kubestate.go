package kubestate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluebox/gluebox/appliance/supervise"
)

// Namespace labels copied into the app and env labels of namespaced series. They are the labels
// the GitOps engine puts on every environment's namespace (engine.LabelApp and engine.LabelEnv).
const (
	AppNamespaceLabel = "gluebox.dev/app"
	EnvNamespaceLabel = "gluebox.dev/env"
)

// Config configures an Exporter.
type Config struct {
	// Client is the API the informers list and watch. Required.
	Client kubernetes.Interface
	// ResyncPeriod is how often the informers replay their caches; 0 (the default) means never.
	// Metrics are computed from the caches at every scrape, so a replay changes nothing here;
	// the knob exists for parity with other informer users.
	ResyncPeriod time.Duration
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("kubestate: a Kubernetes client is required")
	}
	if c.ResyncPeriod < 0 {
		return fmt.Errorf("kubestate: ResyncPeriod is %s: use 0 (no resync) or a positive duration", c.ResyncPeriod)
	}
	return nil
}

// Exporter keeps informer caches of the cluster's state and serves them as metrics through
// Collector.
type Exporter struct {
	log     *slog.Logger
	factory informers.SharedInformerFactory

	pods         corelisters.PodLister
	nodes        corelisters.NodeLister
	namespaces   corelisters.NamespaceLister
	deployments  appslisters.DeploymentLister
	statefulSets appslisters.StatefulSetLister
	daemonSets   appslisters.DaemonSetLister

	started   atomic.Bool
	stopped   atomic.Bool // Run has returned: the caches no longer follow the cluster
	ready     supervise.Readiness
	collector *collector
}

// New returns an Exporter whose informers are set up but not started; Run starts them.
func New(cfg Config, logger *slog.Logger) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "kubestate")
	f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.ResyncPeriod,
		informers.WithTransform(trimObject))
	e := &Exporter{
		log:          log,
		factory:      f,
		pods:         f.Core().V1().Pods().Lister(),
		nodes:        f.Core().V1().Nodes().Lister(),
		namespaces:   f.Core().V1().Namespaces().Lister(),
		deployments:  f.Apps().V1().Deployments().Lister(),
		statefulSets: f.Apps().V1().StatefulSets().Lister(),
		daemonSets:   f.Apps().V1().DaemonSets().Lister(),
	}
	for name, inf := range map[string]cache.SharedIndexInformer{
		"pods":         f.Core().V1().Pods().Informer(),
		"nodes":        f.Core().V1().Nodes().Informer(),
		"namespaces":   f.Core().V1().Namespaces().Informer(),
		"deployments":  f.Apps().V1().Deployments().Informer(),
		"statefulsets": f.Apps().V1().StatefulSets().Informer(),
		"daemonsets":   f.Apps().V1().DaemonSets().Informer(),
	} {
		if err := inf.SetWatchErrorHandlerWithContext(e.watchErrorHandler(name)); err != nil {
			return nil, fmt.Errorf("kubestate: set up the %s informer: %w", name, err)
		}
	}
	e.collector = newCollector(e)
	return e, nil
}

// Run starts the informers, is ready (WaitReady) once their caches have synced, and keeps them
// watching until ctx ends; it returns nil then, also when ctx ends before the caches synced.
// It fails only when called a second time.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("kubestate: Run was already called: an Exporter runs once")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		e.stopped.Store(true)
		e.ready.Clear()
		cancel()
		e.factory.Shutdown() // waits for the informer goroutines to end
	}()
	start := time.Now()
	e.factory.StartWithContext(ctx)
	if res := e.factory.WaitForCacheSyncWithContext(ctx); res.Err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kubestate: sync the informer caches: %w", res.AsError())
	}
	e.log.Info("kube state caches synced", "took", time.Since(start).Round(time.Millisecond))
	e.ready.Set()
	<-ctx.Done()
	return nil
}

// WaitReady returns once every informer cache has synced, or ctx's error (at once, with ctx
// already ended, when they have not); from then on the collector emits metrics.
func (e *Exporter) WaitReady(ctx context.Context) error { return e.ready.Wait(ctx) }

// Collector returns the prometheus.Collector that computes the metrics from the caches at each
// scrape; it emits nothing before they have synced or once Run has returned. It is the same
// value on every call; register it in one registry of your own.
func (e *Exporter) Collector() prometheus.Collector { return e.collector }

// live reports whether the caches have synced and are still being kept up to date.
func (e *Exporter) live() bool {
	return e.ready.IsSet() && !e.stopped.Load()
}

// watchErrorHandler reports failed lists and watches in gluebox's log, where a missing RBAC
// permission or an unreachable API server shows up (client-go would only tell klog). The
// informers retry with backoff after each call.
func (e *Exporter) watchErrorHandler(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, _ *cache.Reflector, err error) {
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
			// Normal ends of a watch: the reflector lists again.
		case errors.Is(err, io.ErrUnexpectedEOF):
			e.log.Debug("watch closed early", "resource", resource, "err", err)
		default:
			e.log.Warn("cannot list or watch; retrying", "resource", resource, "err", err)
		}
	}
}

// trimObject drops what no metric reads before an object enters a cache, which on a busy node
// is most of its size: managed fields, and annotations (last-applied-configuration holds a
// whole copy of the object). Both are safe to drop as the caches serve only this package.
func trimObject(obj any) (any, error) {
	inner := obj
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		inner = d.Obj
	}
	if m, err := meta.Accessor(inner); err == nil {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}
