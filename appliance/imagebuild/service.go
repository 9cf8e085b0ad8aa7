package imagebuild

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluebox/gluebox/appliance/supervise"
)

// ServiceConfig configures the image builder as gluebox runs it.
type ServiceConfig struct {
	// Daemon is buildkitd's configuration.
	Daemon Config
	// Timeout bounds one build (BuilderConfig.Timeout; zero means its default).
	Timeout time.Duration
	// Queue is the build queue's configuration.
	Queue QueueConfig
}

// shipLogTimeout bounds storing one finished build's log in the logs store.
const shipLogTimeout = 30 * time.Second

// Service is the image builder as gluebox runs it: buildkitd started on the first build
// (LazyDaemon), the Builder, the Queue with its image Index, the build metrics, and every
// finished build's log shipped to the logs store.
//
// Lifecycle: NewService; the wiring runs Components (buildkitd, then the queue) under the
// supervisor, registers Collector with the metrics registry and mounts Routes. Queue and
// Index may be used at once.
type Service struct {
	daemon *Daemon
	lazy   *LazyDaemon
	queue  *Queue
	counts *finishCounts
	sink   LogSink
	log    *slog.Logger
}

// NewService prepares buildkitd, the builder and the queue. sink receives every finished
// build's log; nil (no observability) ships nothing.
func NewService(cfg ServiceConfig, sink LogSink, log *slog.Logger) (*Service, error) {
	d, err := NewDaemon(cfg.Daemon, log)
	if err != nil {
		return nil, err
	}
	b, err := NewBuilder(BuilderConfig{Bin: d.Bin(), Addr: d.Addr(), Timeout: cfg.Timeout})
	if err != nil {
		return nil, err
	}
	s := &Service{daemon: d, lazy: NewLazyDaemon(d), counts: &finishCounts{}, sink: sink, log: log.With("component", "builds")}
	run := func(ctx context.Context, req Request, w io.Writer) (Result, error) {
		if err := s.lazy.Ensure(ctx, w); err != nil {
			return Result{}, err
		}
		return b.Build(ctx, req, w)
	}
	s.queue, err = NewQueue(cfg.Queue, run, log, WithOnFinish(s.finished))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// finished counts a finished build and ships its log.
func (s *Service) finished(r Record) {
	s.counts.add(r)
	if s.sink == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shipLogTimeout)
	defer cancel()
	if err := shipLog(ctx, s.sink, s.queue.LogPath(r.ID), r); err != nil {
		s.log.Warn("build log not stored in the logs store", "build", r.ID, "err", err)
	}
}

// Queue is the build queue.
func (s *Service) Queue() *Queue { return s.queue }

// Index is the queue's image index.
func (s *Service) Index() *Index { return s.queue.Index() }

// Daemon is buildkitd, the child whose state `gluebox status` shows.
func (s *Service) Daemon() *Daemon { return s.daemon }

// Components are what the supervisor runs, in order: buildkitd (idle until the first build),
// then the queue.
func (s *Service) Components() []supervise.Component {
	return []supervise.Component{s.lazy, s.queue}
}

// Collector exports gluebox_builds_total, gluebox_build_failures_total and
// gluebox_builds_in_progress. apps (optional) lists the apps whose failure counters start at 0.
func (s *Service) Collector(apps Apps) prometheus.Collector {
	return &collector{counts: s.counts, queue: s.queue, apps: apps}
}

// Routes adds the builds API to mux (see http.go).
func (s *Service) Register(mux *http.ServeMux) { s.queue.Register(mux) }
